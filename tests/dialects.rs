//! Each dialect's answers over a real socket, read back by `multer` and by Python's `email`
//! package (`tests/python/dialect_check.py`): status, version header, boundaries, `Content-ID`
//! echo, item URLs resolved against the route's service root, and routes chosen by a test on
//! the request.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use http_batch::format::Dialect;
use http_batch::{BatchLayer, BatchRoute};
use serde_json::json;

use support::{post, Raw};

fn api() -> Router {
    Router::new().route(
        "/farm/v1/animals/{name}",
        get(|Path(name): Path<String>| async move { Json(json!({ "animalName": name })) }),
    )
}

fn layer() -> BatchLayer {
    BatchLayer::new()
        .route(BatchRoute::path("/batch"))
        .route(
            BatchRoute::path("/odata/v4/farm/v1/$batch")
                .dialect(Dialect::odata_v4())
                .service_root("/farm/v1/"),
        )
        .route(
            BatchRoute::path("/odata/v2/farm/v1/$batch")
                .dialect(Dialect::odata_v2())
                .service_root("/farm/v1"),
        )
        .route(
            BatchRoute::when(|req| {
                req.uri().query().is_some_and(|q| {
                    let mut pairs = q.split('&');
                    let pairs: Vec<&str> = pairs.by_ref().collect();
                    pairs.contains(&"comp=batch") && pairs.contains(&"restype=container")
                })
            })
            .dialect(Dialect::azure_storage()),
        )
}

async fn spawn(layer: BatchLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = layer.wrap_router(api());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn body(boundary: &str, parts: &[(&str, &str)]) -> String {
    support::batch(boundary, parts)
}

/// One answer part as multer reads it: its headers and the nested response's status line.
struct Read {
    content_id: Option<String>,
    status_line: String,
    text: String,
}

async fn read(raw: &Raw) -> (String, Vec<Read>) {
    let ct = raw.headers["content-type"].to_str().unwrap().to_owned();
    let boundary = ct
        .strip_prefix("multipart/mixed; boundary=")
        .unwrap_or_else(|| panic!("{ct}"))
        .to_owned();
    let stream = futures_util::stream::once({
        let b = raw.body.clone();
        async move { Ok::<_, std::io::Error>(b) }
    });
    let mut mp = multer::Multipart::new(stream, boundary.clone());
    let mut out = Vec::new();
    while let Some(field) = mp.next_field().await.expect("multer reads the answer") {
        let content_id = field
            .headers()
            .get("content-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = field.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let status_line = text.lines().next().unwrap_or("").to_owned();
        out.push(Read {
            content_id,
            status_line,
            text,
        });
    }
    (boundary, out)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Python's `email` package reads the answer, change sets included.
pub fn python_check(raw: &Raw) -> serde_json::Value {
    let ct = raw.headers["content-type"].to_str().unwrap();
    let mut capture = format!("{ct}\r\n").into_bytes();
    capture.extend_from_slice(&raw.body);
    let mut child = std::process::Command::new("python3")
        .arg(root().join("tests/python/dialect_check.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&capture).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "dialect_check.py: {text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn google_is_unchanged() {
    let addr = spawn(layer()).await;
    let raw = post(
        addr,
        "/batch",
        "multipart/mixed; boundary=b",
        body(
            "b",
            &[
                ("<a>", "GET /farm/v1/animals/pony HTTP/1.1"),
                ("b2", "GET /farm/v1/animals/cow"),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(raw.status, 200);
    assert!(raw.headers.get("odata-version").is_none());
    let (boundary, parts) = read(&raw).await;
    assert!(boundary.starts_with("batch_"), "{boundary}");
    assert_eq!(parts[0].content_id.as_deref(), Some("<response-a>"));
    assert_eq!(parts[1].content_id.as_deref(), Some("response-b2"));
    let py = python_check(&raw);
    assert_eq!(py["statuses"], json!([200, 200]));
}

#[tokio::test]
async fn odata_v4_echoes_ids_and_resolves_relative_urls() {
    let addr = spawn(layer()).await;
    let raw = post(
        addr,
        "/odata/v4/farm/v1/$batch",
        "multipart/mixed; boundary=batch_36522ad7",
        body(
            "batch_36522ad7",
            &[
                ("1", "GET animals/pony HTTP/1.1"),
                ("<two>", "GET /farm/v1/animals/cow HTTP/1.1"),
                (
                    "",
                    &format!("GET http://{addr}/farm/v1/animals/hen HTTP/1.1"),
                ),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!(raw.headers["odata-version"], "4.0");
    let (boundary, parts) = read(&raw).await;
    assert!(boundary.starts_with("batchresponse_"), "{boundary}");
    assert_eq!(parts[0].content_id.as_deref(), Some("1"));
    assert_eq!(parts[1].content_id.as_deref(), Some("<two>"));
    assert_eq!(parts[2].content_id, None);
    for (p, name) in parts.iter().zip(["pony", "cow", "hen"]) {
        assert_eq!(p.status_line, "HTTP/1.1 200 OK", "{}", p.text);
        assert!(
            p.text.contains(&format!("\"animalName\":\"{name}\"")),
            "{}",
            p.text
        );
    }
    let py = python_check(&raw);
    assert_eq!(py["contentIds"], json!(["1", "<two>", null]));
}

#[tokio::test]
async fn odata_v2_answers_202_with_its_version() {
    let addr = spawn(layer()).await;
    let raw = post(
        addr,
        "/odata/v2/farm/v1/$batch",
        "multipart/mixed; boundary=batch_x",
        body("batch_x", &[("", "GET animals/pony HTTP/1.1")]),
        &[],
    )
    .await;
    assert_eq!(raw.status, 202, "{}", raw.text());
    assert_eq!(raw.headers["dataserviceversion"], "2.0");
    let (boundary, parts) = read(&raw).await;
    assert!(boundary.starts_with("batchresponse_"));
    assert_eq!(parts[0].status_line, "HTTP/1.1 200 OK");
    python_check(&raw);
}

#[tokio::test]
async fn azure_route_is_chosen_by_its_query() {
    let addr = spawn(layer()).await;
    let raw = post(
        addr,
        "/farm/v1?restype=container&comp=batch",
        "multipart/mixed; boundary=batch_a",
        body("batch_a", &[("0", "GET /farm/v1/animals/pony HTTP/1.1")]),
        &[],
    )
    .await;
    assert_eq!(raw.status, 202, "{}", raw.text());
    let (boundary, parts) = read(&raw).await;
    assert!(boundary.starts_with("batchresponse_"));
    assert_eq!(parts[0].content_id.as_deref(), Some("0"));
    assert_eq!(parts[0].status_line, "HTTP/1.1 200 OK");
    python_check(&raw);
    // Without the query it is an ordinary request.
    let plain = post(addr, "/farm/v1?comp=batch", "text/plain", "", &[]).await;
    assert_eq!(plain.status, 404);
}

#[tokio::test]
async fn route_order_does_not_matter() {
    let a = BatchLayer::new()
        .route(BatchRoute::path("/odata/$batch").dialect(Dialect::odata_v2()))
        .path("/batch");
    let b = BatchLayer::new()
        .path("/batch")
        .route(BatchRoute::path("/odata/$batch").dialect(Dialect::odata_v2()));
    for layer in [a, b] {
        let addr = spawn(layer).await;
        for (path, status) in [("/batch", 200), ("/odata/$batch", 202)] {
            let raw = post(
                addr,
                path,
                "multipart/mixed; boundary=b",
                body("b", &[("", "GET /farm/v1/animals/pony")]),
                &[],
            )
            .await;
            assert_eq!(raw.status, status, "{path}: {}", raw.text());
        }
    }
}

#[tokio::test]
async fn odata_stops_at_the_first_failure_unless_asked_to_go_on() {
    let addr = spawn(layer()).await;
    let items = body(
        "b",
        &[
            ("1", "GET animals/pony HTTP/1.1"),
            ("2", "GET nowhere HTTP/1.1"),
            ("3", "GET animals/cow HTTP/1.1"),
        ],
    );
    let ct = "multipart/mixed; boundary=b";
    let raw = post(addr, "/odata/v4/farm/v1/$batch", ct, items.clone(), &[]).await;
    assert!(raw.headers.get("preference-applied").is_none());
    let (_, parts) = read(&raw).await;
    assert_eq!(parts[0].status_line, "HTTP/1.1 200 OK");
    assert_eq!(parts[1].status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(parts[2].status_line, "HTTP/1.1 424 Failed Dependency");
    assert!(
        parts[2].text.contains("not run: an earlier item"),
        "{}",
        parts[2].text
    );

    let prefer = [("prefer", "odata.continue-on-error")];
    let raw = post(addr, "/odata/v4/farm/v1/$batch", ct, items.clone(), &prefer).await;
    assert_eq!(raw.headers["preference-applied"], "odata.continue-on-error");
    let (_, parts) = read(&raw).await;
    assert_eq!(parts[1].status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(parts[2].status_line, "HTTP/1.1 200 OK");

    // Google's rules run every item, as before.
    let raw = post(
        addr,
        "/batch",
        ct,
        items.replace("GET animals", "GET /farm/v1/animals"),
        &[],
    )
    .await;
    let (_, parts) = read(&raw).await;
    assert_eq!(parts[2].status_line, "HTTP/1.1 200 OK");
    assert!(raw.headers.get("preference-applied").is_none());
}
