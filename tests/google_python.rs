//! Interop with Google's own Python client (`google-api-python-client`): its `BatchHttpRequest`
//! runs against the farm example, and every raw batch answer is also checked by Python's
//! `email` package in strict mode (`tests/python/strict_check.py`).
//!
//! The test installs what it needs itself, in a virtualenv under `target/pyvenv`
//! (`scripts/python-venv.sh`, pinned versions, instant when already there).

#[path = "../examples/farm/app.rs"]
mod farm;

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;
use tokio::sync::OnceCell;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, created once per test binary.
async fn python() -> &'static str {
    static PY: OnceCell<String> = OnceCell::const_new();
    PY.get_or_init(|| async {
        let out = Command::new("bash")
            .arg(root().join("scripts/python-venv.sh"))
            .stderr(Stdio::inherit())
            .output()
            .await
            .expect("run scripts/python-venv.sh");
        assert!(out.status.success(), "python-venv.sh failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout
            .lines()
            .last()
            .expect("python path")
            .trim()
            .to_owned()
    })
    .await
}

async fn run_client(addr: std::net::SocketAddr, token: Option<&str>) -> serde_json::Value {
    let py = python().await;
    let mut cmd = Command::new(py);
    cmd.arg(root().join("tests/python/google_batch.py"))
        .arg(addr.to_string());
    if let Some(t) = token {
        cmd.arg("--token").arg(t);
    }
    cmd.env_remove("FARM_TOKEN");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run google_batch.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "google_batch.py failed:\n{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}"));
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(
        report["failures"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_python_client_batches_against_farm() {
    let addr = farm::spawn(None).await;
    let report = run_client(addr, None).await;
    let scenarios = report["scenarios"].as_object().expect("scenarios");
    for name in [
        "basic",
        "long_ids",
        "conditional",
        "generic_path",
        "inherit",
    ] {
        assert!(
            scenarios.contains_key(name),
            "scenario {name} missing: {report:#}"
        );
    }
    assert_eq!(
        report["strictChecked"].as_u64().map(|n| n > 0),
        Some(true),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_python_client_auth_flows() {
    let addr = farm::spawn(Some("py-s3cret".into())).await;
    let report = run_client(addr, Some("py-s3cret")).await;
    let scenarios = report["scenarios"].as_object().expect("scenarios");
    for name in ["auth_outer", "auth_none", "auth_refresh", "auth_part"] {
        assert!(
            scenarios.contains_key(name),
            "scenario {name} missing: {report:#}"
        );
    }
}
