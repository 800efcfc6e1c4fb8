//! Interop with Microsoft's JavaScript Graph client (`@microsoft/microsoft-graph-client`): its
//! `BatchRequestContent` builds a JSON batch against a Graph-style API served in-process, and
//! its `BatchResponseContent` reads the answer (`tests/js/graph_batch.mjs`). Once with the
//! batch route next to the API (`/v1.0/$batch`), once published under another prefix
//! (`/graph/v1.0/$batch`), where the SDK's items (`/graph/v1.0/me`) are named under the batch's
//! base and must reach the API at `/v1.0/me`, `dependsOn` chains included.
//!
//! The test installs the SDK itself under `target/js` (`scripts/js-deps.sh`, pinned versions,
//! instant when already there; Node.js itself from the Debian archive when the machine lacks it)
//! and skips, saying why, only when npm cannot reach the registry or Node.js cannot be had.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Graph-shaped API: the signed-in user, and their messages, of which only `m1` exists.
fn graph_api() -> Router {
    Router::new()
        .route(
            "/v1.0/me",
            get(|| async { Json(json!({ "id": "u1", "displayName": "Ann" })) }),
        )
        .route(
            "/v1.0/me/messages",
            get(|| async { Json(json!({ "value": [] })) }).post(
                |Json(mut message): Json<Value>| async move {
                    message["id"] = json!("m1");
                    (StatusCode::CREATED, Json(message))
                },
            ),
        )
        .route("/v1.0/me/messages/{id}", get(message))
}

async fn message(UrlPath(id): UrlPath<String>) -> impl IntoResponse {
    if id == "m1" {
        return (
            StatusCode::OK,
            Json(json!({ "id": "m1", "subject": "hello" })),
        );
    }
    let error =
        json!({ "error": { "code": "ResourceNotFound", "message": format!("no message {id}") } });
    (StatusCode::NOT_FOUND, Json(error))
}

/// The Graph-style API with its batch route at `{prefix}/v1.0/$batch`; the API itself is
/// served at `/v1.0` whatever the prefix, as behind a gateway that publishes it elsewhere.
async fn spawn(prefix: &str) -> SocketAddr {
    let app = http_batch::BatchLayer::new()
        .path(format!("{prefix}/v1.0/$batch"))
        .service_root("/v1.0")
        .wrap_router(graph_api());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Runs `scripts/js-deps.sh`; `None` when the JS client cannot be had here (exit status 75:
/// npm cannot reach the registry, or Node.js is missing and cannot be installed).
async fn node_modules() -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(root().join("scripts/js-deps.sh"))
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run scripts/js-deps.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(75) => {
            eprintln!(
                "SKIPPED graph JS interop, the JS client cannot be installed here:\n{stderr}"
            );
            return None;
        }
        _ => panic!("scripts/js-deps.sh failed ({}):\n{stderr}", out.status),
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let dir = stdout.lines().last().expect("node_modules path").trim();
    Some(PathBuf::from(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_js_sdk_batches_against_graph_style_api() {
    let Some(modules) = node_modules().await else {
        return;
    };
    run_sdk(&modules, "").await;
}

/// The SDK names items by the path under the origin (`/graph/v1.0/me` next to
/// `/graph/v1.0/$batch`): under the batch's base, they reach the API at `/v1.0/me`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_js_sdk_items_named_under_the_batch_base() {
    let Some(modules) = node_modules().await else {
        return;
    };
    run_sdk(&modules, "/graph").await;
}

async fn run_sdk(modules: &Path, prefix: &str) {
    let modules = modules.to_path_buf();
    let addr = spawn(prefix).await;
    // Run from an empty directory so the SDK can only come from NODE_PATH, i.e. target/js.
    let out = Command::new("node")
        .arg(root().join("tests/js/graph_batch.mjs"))
        .arg(format!("http://{addr}{prefix}"))
        .env("NODE_PATH", &modules)
        .current_dir(std::env::temp_dir())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run node tests/js/graph_batch.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stdout}"));
    assert!(out.status.success(), "graph_batch.mjs failed:\n{summary:#}");
    eprintln!("{summary}");
    assert_eq!(summary["ok"], true, "{summary:#}");
    assert_eq!(summary["failures"], json!([]), "{summary:#}");

    let sdk_path = summary["sdk_path"].as_str().expect("sdk_path");
    assert!(
        Path::new(sdk_path).starts_with(&modules),
        "SDK resolved outside {}: {sdk_path}",
        modules.display()
    );
    assert_eq!(summary["sdk_version"], "3.0.7");

    // What the SDK put on the wire: host-stripped urls, the serial chain, the JSON body.
    let sent = summary["sent"]["requests"]
        .as_array()
        .expect("sent requests");
    assert_eq!(sent.len(), 4, "{summary:#}");
    assert_eq!(sent[0]["url"], format!("{prefix}/v1.0/me"));
    assert_eq!(sent[1]["method"], "POST");
    assert_eq!(sent[1]["dependsOn"], json!(["1"]));
    assert_eq!(sent[1]["body"]["subject"], "hello");
    assert_eq!(sent[3]["dependsOn"], json!(["3"]));

    // What it read back.
    assert_eq!(summary["order"], json!(["1", "2", "3", "4"]));
    assert_eq!(
        summary["statuses"],
        json!({ "1": 200, "2": 201, "3": 404, "4": 424 }),
        "{summary:#}"
    );
    assert_eq!(summary["bodies"]["1"]["displayName"], "Ann");
    assert_eq!(summary["bodies"]["2"]["id"], "m1");
    assert_eq!(summary["bodies"]["2"]["body"]["content"], "from js");
    assert_eq!(summary["bodies"]["3"]["error"]["code"], "ResourceNotFound");
    assert!(
        summary["bodies"]["4"]["error"]["message"].is_string(),
        "{summary:#}"
    );

    // The SDK only reads JSON bodies under a header key spelled exactly "Content-Type"; the
    // server writes header names in that canonical case, so the answer is read as sent.
    assert_eq!(summary["sdk_reads_answer_as_sent"], true, "{summary:#}");
    assert_eq!(summary["quirks"], json!([]), "{summary:#}");
}
