//! The farm example's page (`examples/farm/page.html`) in a real headless Chromium: served from
//! one loopback origin, it calls the farm API on another, so every cross-origin rule of a real
//! browser applies, the batch's CORS preflight among them. It sends 20 calls one by one and as
//! one batch; the test checks that both ways got the answers the server gives directly, that
//! the batch went as one request after one preflight, and saves a screenshot of the page to
//! `target/browser/page.png`.
//!
//! The test installs what it needs itself: Chromium from the Debian archive when the machine
//! lacks it (`scripts/system-deps.sh chromium`; `CHROMIUM=/path` names another build), and
//! `playwright-core` under `target/js` (`scripts/js-deps.sh`, pinned, instant when already
//! there). It skips, saying why, only when Chromium cannot be installed here (no apt-get, or
//! not root) or npm cannot reach the registry.

#[path = "../examples/farm/app.rs"]
mod farm;
mod support;
use support::serve;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::{self, Next};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use tokio::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Chromium's path, installed first when missing; `None` (after saying why) when it cannot be.
async fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let find = || {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(path) = find() {
        return Some(path);
    }
    let out = Command::new("bash")
        .arg(root().join("scripts/system-deps.sh"))
        .arg("chromium")
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run scripts/system-deps.sh chromium");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(1) => {
            eprintln!("SKIPPED browser test, Chromium cannot be installed here:\n{stderr}");
            return None;
        }
        _ => panic!(
            "scripts/system-deps.sh chromium failed ({}):\n{stderr}",
            out.status
        ),
    }
    Some(find().expect("Chromium installed but not found in /usr/bin"))
}

/// Runs `scripts/js-deps.sh`; `None` (after saying why) when npm cannot reach the registry.
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
            eprintln!("SKIPPED browser test, playwright-core cannot be installed here:\n{stderr}");
            return None;
        }
        _ => panic!("scripts/js-deps.sh failed ({}):\n{stderr}", out.status),
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let dir = stdout.lines().last().expect("node_modules path").trim();
    Some(PathBuf::from(dir))
}

/// One request as it reached the API, before CORS and the batch layer saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    origin: Option<String>,
    /// `Access-Control-Request-Method`: the request is a CORS preflight.
    preflight: bool,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// The farm app with a counter outside everything, CORS included.
async fn spawn_counted() -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let app = farm::app(None).layer(middleware::from_fn(move |req: Request, next: Next| {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        seen.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            origin: header("origin"),
            preflight: header("access-control-request-method").is_some(),
        });
        next.run(req)
    }));
    (serve(app).await, log)
}

/// What the farm answers to `call` (one entry of the page's `calls`) when asked directly.
async fn direct(api: SocketAddr, call: &Value) -> (u16, String) {
    let mut req = http::Request::builder()
        .method(call["method"].as_str().unwrap())
        .uri(format!("http://{api}{}", call["path"].as_str().unwrap()));
    if let Some(headers) = call["headers"].as_object() {
        for (name, value) in headers {
            req = req.header(name, value.as_str().unwrap());
        }
    }
    let body = call["body"].as_str().unwrap_or("").to_owned();
    let raw = support::send(req.body(Full::new(Bytes::from(body))).unwrap()).await;
    (raw.status.as_u16(), raw.text())
}

/// Chromium logs every 4xx a page fetches; those are answers the page expects, not faults.
fn unexpected_console_errors(summary: &Value) -> Vec<String> {
    summary["consoleErrors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|m| !m.contains("the server responded with a status of 4"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn farm_page_in_headless_chromium_batches_across_origins() {
    let Some(chromium) = chromium().await else {
        return;
    };
    let Some(modules) = node_modules().await else {
        return;
    };
    let (api, log) = spawn_counted().await;
    // The page comes from a second listener: another port is another origin.
    let page_origin = serve(farm::app(None)).await;
    assert_ne!(api.port(), page_origin.port());
    let url = format!("http://{page_origin}/?api=http://{api}");

    let shots = root().join("target/browser");
    std::fs::create_dir_all(&shots).unwrap();
    let screenshot = shots.join("page.png");
    let _ = std::fs::remove_file(&screenshot);

    let started = Instant::now();
    let run = Command::new("node")
        .arg(root().join("tests/js/browser_page.mjs"))
        .arg(&chromium)
        .arg(&url)
        .arg(&screenshot)
        .env("NODE_PATH", &modules)
        .current_dir(std::env::temp_dir())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser did not finish within 90 s")
        .expect("run node tests/js/browser_page.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("browser summary is not JSON ({e}): {stdout}"));
    assert!(
        out.status.success() && summary["ok"] == true,
        "the page did not finish in Chromium:\n{summary:#}"
    );
    eprintln!(
        "Chromium {} ran the page in {:.1} s",
        summary["browser"].as_str().unwrap_or("?"),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(summary["pageErrors"], serde_json::json!([]), "{summary:#}");
    assert_eq!(
        unexpected_console_errors(&summary),
        Vec::<String>::new(),
        "{summary:#}"
    );

    // What reached the API, read before the direct checks below add to it.
    let seen = log.lock().unwrap().clone();
    let page_url_origin = format!("http://{page_origin}");
    let batch_posts: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "POST" && s.path == "/batch/farm/v1")
        .collect();
    assert_eq!(
        batch_posts.len(),
        1,
        "the batch went as one request: {seen:#?}"
    );
    assert_eq!(batch_posts[0].origin.as_deref(), Some(&*page_url_origin));
    let batch_preflights = seen
        .iter()
        .filter(|s| s.method == "OPTIONS" && s.preflight && s.path == "/batch/farm/v1")
        .count();
    assert_eq!(
        batch_preflights, 1,
        "one preflight for the batch: {seen:#?}"
    );
    let singles = seen
        .iter()
        .filter(|s| s.method != "OPTIONS" && s.path.starts_with("/farm/"))
        .count();
    assert_eq!(singles, 20, "20 single calls: {seen:#?}");
    assert!(
        seen.iter()
            .all(|s| s.origin.as_deref() == Some(&*page_url_origin)),
        "every call came from the page's origin: {seen:#?}"
    );
    assert_eq!(
        seen.len(),
        1 + batch_preflights + singles + preflights_of_singles(&seen)
    );

    // Both ways got the same answers, and the answers the server gives directly.
    let result = &summary["result"];
    assert_eq!(result["api"], format!("http://{api}"));
    let calls = result["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 20, "{result:#}");
    let want_statuses = [
        200, 200, 200, 200, 404, 404, 404, 200, 200, 304, 200, 200, 200, 200, 400, 404, 200, 404,
        400, 404,
    ];
    for (i, call) in calls.iter().enumerate() {
        let what = format!("call {} {} {}", i + 1, call["method"], call["path"]);
        let (status, body) = direct(api, call).await;
        assert_eq!(status, want_statuses[i], "{what}: direct answer {body}");
        for way in ["single", "batch"] {
            assert_eq!(
                call[way]["status"], status,
                "{what}, {way}: {:#}",
                call[way]
            );
            assert_eq!(call[way]["body"], body, "{what}, {way}");
        }
        assert_eq!(call["same"], true, "{what}");
    }
    assert_eq!(result["differing"], 0);

    // The page shows both times, and says the answers agree.
    let shown = &summary["shown"];
    for total in ["singleMs", "batchMs"] {
        let text = shown[total].as_str().unwrap_or("");
        let ms = text.strip_suffix(" ms").and_then(|n| n.parse::<u64>().ok());
        assert!(ms.is_some(), "{total} shown as {text:?}");
    }
    assert_eq!(shown["rows"], 20);
    assert_eq!(
        shown["verdict"],
        "All 20 answers are the same both ways (status and body)."
    );
    // And it says so loudly when an answer differs between the ways.
    let differs = &summary["differs"];
    assert_eq!(
        differs["verdict"], "1 of 20 answers DIFFER between the two ways: call 5.",
        "{differs:#}"
    );
    assert_eq!(differs["rowClass"], "differs");
    assert_eq!(differs["sameCell"], "DIFFERS");

    let png = std::fs::metadata(&screenshot).expect("screenshot saved");
    assert!(png.len() > 10_000, "screenshot is {} bytes", png.len());
    eprintln!(
        "one by one {}, one batch {}; screenshot at {}",
        shown["singleMs"],
        shown["batchMs"],
        screenshot.display()
    );
}

/// Preflights for the single calls that are not simple requests (PUT, DELETE, JSON bodies,
/// `If-None-Match`); a browser may cache one and skip the next, so they are only counted.
fn preflights_of_singles(seen: &[Seen]) -> usize {
    let n = seen
        .iter()
        .filter(|s| s.method == "OPTIONS" && s.preflight && s.path.starts_with("/farm/"))
        .count();
    assert!(
        n >= 1,
        "the non-simple single calls were preflighted: {seen:#?}"
    );
    n
}

/// Without a browser: CORS answers the batch's preflight and marks the batch answer, while the
/// items inside the batch never see it.
#[tokio::test]
async fn cors_wraps_the_batch_not_its_items() {
    let api = farm::spawn(None).await;
    let preflight = support::send(
        http::Request::options(format!("http://{api}/batch/farm/v1"))
            .header("origin", "http://page.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(preflight.status, 200, "{}", preflight.text());
    assert_eq!(preflight.headers["access-control-allow-origin"], "*");
    let methods = preflight.headers["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let headers = preflight.headers["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(
        headers.contains("content-type") && headers.contains("authorization"),
        "{headers}"
    );

    // tower-http's CorsLayer answers every OPTIONS itself, preflight or not, so the batch
    // layer's own answer to OPTIONS (204, with the endpoint's limits) is only seen without CORS.
    let options = |addr: SocketAddr| {
        support::send(
            http::Request::options(format!("http://{addr}/batch/farm/v1"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    };
    assert_eq!(options(api).await.status, 200);
    let without_cors = serve(
        http_batch::BatchLayer::new()
            .path("/batch/farm/v1")
            .wrap_router(farm::api(None)),
    )
    .await;
    let own = options(without_cors).await;
    assert_eq!(own.status, 204, "{}", own.text());
    assert_eq!(own.headers["allow"], "POST, OPTIONS");

    let body = support::batch(
        "b",
        &[
            ("<1>", "GET /farm/v1/animals/pony HTTP/1.1"),
            ("<2>", "GET /farm/v1/animals/unicorn HTTP/1.1"),
        ],
    );
    let answer = support::post(
        api,
        "/batch/farm/v1",
        "multipart/mixed; boundary=b",
        body,
        &[("origin", "http://page.example")],
    )
    .await;
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    let parts = support::parts(&answer).await;
    assert_eq!(parts.len(), 2);
    for part in &parts {
        assert!(
            part.headers
                .keys()
                .all(|name| !name.as_str().starts_with("access-control-")),
            "an item saw CORS: {:?}",
            part.headers
        );
    }
    assert_eq!(parts[0].status, 200);
    assert_eq!(parts[1].status, 404);
}

#[test]
fn page_is_self_contained() {
    let page = farm::PAGE;
    // No internet where the example runs: nothing may be loaded from elsewhere.
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!page.contains(external), "the page loads {external}");
    }
    assert!(Path::new(&root().join("examples/farm/page.html")).is_file());
}
