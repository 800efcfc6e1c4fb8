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

// ---------------------------------------------------------------------------------------------
// Dialect fidelity: the family's item URLs, change-set answer shapes, encoded slashes, routing
// parameters and header-name case, each as its real clients need it.

use axum::extract::RawQuery;
use axum::routing::{delete, put};
use futures_util::future::{BoxFuture, FutureExt};
use http_batch::format::dialect::ChangeSetAnswers;
use http_batch::{BoxError, Transact, Transaction, TransactionProvider};

/// Commits and rolls back nothing: these tests look at how answers are laid out.
struct Nothing;

impl Transact for Nothing {
    fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
        async { Ok(()) }.boxed()
    }
    fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
        async { Ok(()) }.boxed()
    }
}

struct NoStore;

impl TransactionProvider for NoStore {
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
        async { Ok(Transaction::new(Nothing)) }.boxed()
    }
}

fn fidelity_api() -> Router {
    api()
        .route(
            "/farm/v1/things/{name}",
            put(|Path(name): Path<String>| async move {
                if name == "bad" {
                    (axum::http::StatusCode::BAD_REQUEST, "bad thing").into_response()
                } else {
                    ([("etag", "W/\"7\"")], axum::http::StatusCode::NO_CONTENT).into_response()
                }
            }),
        )
        .route(
            "/farm/v1/query",
            get(|RawQuery(q): RawQuery| async move { q.unwrap_or_default() }),
        )
        .route(
            "/storage/v1/b/{bucket}/o/{object}",
            delete(|Path((_, object)): Path<(String, String)>| async move { object }),
        )
        .route(
            "/v1.0/me",
            get(|| async { Json(json!({ "displayName": "Ann" })) }),
        )
}

use axum::response::IntoResponse;

async fn spawn_fidelity(layer: BatchLayer) -> SocketAddr {
    support::serve(layer.wrap_router(fidelity_api())).await
}

/// OData allows an item URL as an absolute URL, an absolute path, or relative to the batch
/// URL's base; all three name the same resource, mapped onto the route's internal root.
#[tokio::test]
async fn items_under_the_batch_base_name_the_service_root() {
    let layer = layer()
        .route(
            BatchRoute::path("/v1.0/$batch")
                .dialect(Dialect::odata_v4())
                .service_root("/v1.0"),
        )
        .deny_path_prefixes(["/farm/v1/animals/secret"]);
    let addr = spawn_fidelity(layer).await;
    let raw = post(
        addr,
        "/odata/v4/farm/v1/$batch",
        "multipart/mixed; boundary=b",
        body(
            "b",
            &[
                (
                    "1",
                    &format!("GET http://{addr}/odata/v4/farm/v1/animals/pony HTTP/1.1"),
                ),
                ("2", "GET /odata/v4/farm/v1/animals/cow HTTP/1.1"),
                ("3", "GET animals/hen HTTP/1.1"),
                ("4", "GET /farm/v1/animals/goat HTTP/1.1"),
                // The deny list sees the resolved path.
                ("5", "GET /odata/v4/farm/v1/animals/secret HTTP/1.1"),
                // Another origin stays another origin after resolution.
                (
                    "6",
                    "GET http://elsewhere.example/odata/v4/farm/v1/animals/pony HTTP/1.1",
                ),
            ],
        ),
        &[("prefer", "odata.continue-on-error")],
    )
    .await;
    let (_, parts) = read(&raw).await;
    for (p, name) in parts.iter().zip(["pony", "cow", "hen", "goat"]) {
        assert_eq!(p.status_line, "HTTP/1.1 200 OK", "{}", p.text);
        assert!(
            p.text.contains(&format!("\"animalName\":\"{name}\"")),
            "{}",
            p.text
        );
    }
    assert_eq!(
        parts[4].status_line, "HTTP/1.1 403 Forbidden",
        "{}",
        parts[4].text
    );
    assert!(
        parts[5].status_line.starts_with("HTTP/1.1 4"),
        "{}",
        parts[5].text
    );
    assert!(!parts[5].status_line.contains("200"), "{}", parts[5].text);

    // The JSON batch names items the same way.
    let raw = post(
        addr,
        "/odata/v4/farm/v1/$batch",
        "application/json",
        json!({ "requests": [
            { "id": "a", "method": "GET", "url": "/odata/v4/farm/v1/animals/pony" },
            { "id": "b", "method": "GET", "url": format!("http://{addr}/odata/v4/farm/v1/animals/cow") },
        ]})
        .to_string(),
        &[],
    )
    .await;
    let answers = raw.json();
    for (r, name) in answers["responses"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["pony", "cow"])
    {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["body"]["animalName"], name, "{r}");
    }

    // Microsoft Graph: `/v1.0/me` next to `/v1.0/$batch` is `/me`.
    let raw = post(
        addr,
        "/v1.0/$batch",
        "application/json",
        json!({ "requests": [
            { "id": "1", "method": "GET", "url": "/me" },
            { "id": "2", "method": "GET", "url": "/v1.0/me" },
        ]})
        .to_string(),
        &[],
    )
    .await;
    for r in raw.json()["responses"].as_array().unwrap() {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["body"]["displayName"], "Ann", "{r}");
    }
}

fn shaped(dialect: Dialect) -> BatchLayer {
    BatchLayer::new().route(
        BatchRoute::path("/odata/farm/v1/$batch")
            .dialect(dialect)
            .service_root("/farm/v1")
            .transactions(NoStore),
    )
}

/// A batch of one read and one change set of two writes, the second failing when `fail`.
fn change_set_batch(fail: bool) -> String {
    let second = if fail { "bad" } else { "hay" };
    format!(
        "--b\r\nContent-Type: application/http\r\n\r\nGET animals/pony HTTP/1.1\r\n\r\n\
         --b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nPUT things/straw HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: 2\r\n\r\nPUT things/{second} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\n\
         --cs--\r\n--b--\r\n"
    )
}

async fn answer_shape(dialect: Dialect, fail: bool) -> serde_json::Value {
    let addr = spawn_fidelity(shaped(dialect)).await;
    let raw = post(
        addr,
        "/odata/farm/v1/$batch",
        "multipart/mixed; boundary=b",
        change_set_batch(fail),
        &[("prefer", "odata.continue-on-error")],
    )
    .await;
    assert!(raw.status.is_success(), "{}", raw.text());
    python_check(&raw)["parts"].clone()
}

/// Where each shape comes from is cited on `ChangeSetAnswers`.
#[tokio::test]
async fn change_set_answers_are_shaped_per_dialect() {
    // OData 4: committed nested; failed, the failing answer bare.
    let v4 = answer_shape(Dialect::odata_v4(), false).await;
    assert_eq!(v4[1]["parts"].as_array().unwrap().len(), 2, "{v4}");
    let v4 = answer_shape(Dialect::odata_v4(), true).await;
    assert_eq!(v4[1]["status"], 400, "{v4}");
    assert_eq!(v4.as_array().unwrap().len(), 2, "{v4}");

    // OData 3 and Azure Tables: a failed change set is still a change-set part.
    for dialect in [Dialect::odata_v3(), Dialect::azure_tables()] {
        let failed = answer_shape(dialect.clone(), true).await;
        let cs = &failed[1];
        assert!(
            cs["changeSet"]
                .as_str()
                .unwrap()
                .starts_with("changesetresponse_"),
            "{failed}"
        );
        assert_eq!(cs["parts"][0]["status"], 400, "{failed}");
        assert_eq!(cs["parts"][0]["contentId"], "2", "{failed}");
        let ok = answer_shape(dialect, false).await;
        assert_eq!(ok[1]["parts"].as_array().unwrap().len(), 2, "{ok}");
    }

    // SharePoint: every answer a part of the batch itself.
    let sp = answer_shape(Dialect::sharepoint(), false).await;
    let statuses: Vec<_> = sp
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(200), json!(204), json!(204)], "{sp}");
    assert_eq!(sp[2]["contentId"], "2", "{sp}");
    // A rolled-back change set answers every member, since SharePoint's clients match answers
    // to requests by position: the one that ran and was undone says so with 424.
    let sp = answer_shape(Dialect::sharepoint(), true).await;
    let statuses: Vec<_> = sp
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(200), json!(424), json!(400)], "{sp}");
    assert_eq!(sp[1]["contentId"], "1", "{sp}");
    assert_eq!(sp[2]["contentId"], "2", "{sp}");

    // And a knob on any preset.
    let wrapped = answer_shape(
        Dialect::odata_v4().change_set_answers(ChangeSetAnswers::WrapFailed),
        true,
    )
    .await;
    assert_eq!(wrapped[1]["parts"][0]["status"], 400, "{wrapped}");
}

/// Google Storage's clients send object names with `/` as `%2F`; a route may accept them, and
/// the layer's policies still read them decoded.
#[tokio::test]
async fn encoded_slashes_by_choice_with_policies_decoded() {
    let storage = |layer: BatchLayer| {
        layer.deny_path_prefixes([
            "/storage/v1/b/bkt/o/secret",
            "/admin",
            "/storage/v1/b/bkt/o/private/area",
        ])
    };
    let open =
        storage(BatchLayer::new().route(BatchRoute::path("/batch/storage/v1").encoded_slashes()));
    let addr = spawn_fidelity(open).await;
    let raw = post(
        addr,
        "/batch/storage/v1",
        "multipart/mixed; boundary=b",
        body(
            "b",
            &[
                ("1", "DELETE /storage/v1/b/bkt/o/dir%2Fname HTTP/1.1"),
                ("2", "DELETE /storage/v1/b/bkt/o/a%20b%2Fc%20d HTTP/1.1"),
                ("3", "DELETE /storage/v1/b/bkt/o/secret%2Fx HTTP/1.1"),
                (
                    "4",
                    "DELETE /storage/v1/b/bkt/o/x%2F..%2F..%2F..%2F..%2Fadmin HTTP/1.1",
                ),
                ("5", "DELETE /admin%2Fx HTTP/1.1"),
                ("6", "DELETE /storage/v1/b/bkt/o/secret%5Cx HTTP/1.1"),
                ("7", "DELETE /storage/v1/b/bkt/o/private%2F%2Farea HTTP/1.1"),
            ],
        ),
        &[],
    )
    .await;
    let (_, parts) = read(&raw).await;
    assert_eq!(parts[0].status_line, "HTTP/1.1 200 OK", "{}", parts[0].text);
    assert!(
        parts[0].text.ends_with("\r\n\r\ndir/name"),
        "{}",
        parts[0].text
    );
    assert!(
        parts[1].text.ends_with("\r\n\r\na b/c d"),
        "{}",
        parts[1].text
    );
    assert_eq!(
        parts[2].status_line, "HTTP/1.1 403 Forbidden",
        "{}",
        parts[2].text
    );
    assert_eq!(
        parts[3].status_line, "HTTP/1.1 400 Bad Request",
        "{}",
        parts[3].text
    );
    assert_eq!(
        parts[4].status_line, "HTTP/1.1 403 Forbidden",
        "{}",
        parts[4].text
    );
    // `\` and runs of encoded slashes read as one `/` for policies.
    for p in &parts[5..] {
        assert_eq!(p.status_line, "HTTP/1.1 403 Forbidden", "{}", p.text);
    }

    // By default such a name is refused, in words.
    let closed = storage(BatchLayer::new().route(BatchRoute::path("/batch/storage/v1")));
    let addr = spawn_fidelity(closed).await;
    let raw = post(
        addr,
        "/batch/storage/v1",
        "multipart/mixed; boundary=b",
        body(
            "b",
            &[("1", "DELETE /storage/v1/b/bkt/o/dir%2Fname HTTP/1.1")],
        ),
        &[],
    )
    .await;
    let (_, parts) = read(&raw).await;
    assert_eq!(parts[0].status_line, "HTTP/1.1 400 Bad Request");
    assert!(parts[0].text.contains("encoded `/`"), "{}", parts[0].text);
    assert!(
        parts[0].text.contains("encoded_slashes"),
        "{}",
        parts[0].text
    );
}

/// Azure posts a container's batch to `?restype=container&comp=batch`; its items must not run
/// with that query, which retargets a blob request to its container.
#[tokio::test]
async fn routing_parameters_stay_with_the_batch() {
    let addr = spawn_fidelity(layer()).await;
    let raw = post(
        addr,
        "/farm/v1?restype=container&comp=batch&sv=2024",
        "multipart/mixed; boundary=b",
        body(
            "b",
            &[
                ("0", "GET /farm/v1/query HTTP/1.1"),
                ("1", "GET /farm/v1/query?comp=metadata HTTP/1.1"),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(raw.status, 202, "{}", raw.text());
    let (_, parts) = read(&raw).await;
    // Other parameters of the batch URL are still inherited.
    assert!(
        parts[0].text.ends_with("\r\n\r\nsv=2024"),
        "{}",
        parts[0].text
    );
    assert!(
        parts[1].text.ends_with("\r\n\r\ncomp=metadata&sv=2024"),
        "{}",
        parts[1].text
    );
}

/// Nested answers carry header names as the family's servers write them.
#[tokio::test]
async fn nested_header_names_in_conventional_case() {
    let addr = spawn_fidelity(shaped(Dialect::azure_tables())).await;
    let raw = post(
        addr,
        "/odata/farm/v1/$batch",
        "multipart/mixed; boundary=b",
        change_set_batch(false),
        &[],
    )
    .await;
    let text = raw.text();
    assert!(text.contains("\r\nETag: W/\"7\"\r\n"), "{text}");
    assert!(
        text.contains("\r\nContent-Type: application/json\r\n"),
        "{text}"
    );
    assert!(!text.contains("\r\netag:"), "{text}");
    assert!(!text.contains("\r\ncontent-type:"), "{text}");
    assert!(!text.contains("\r\ncontent-length:"), "{text}");
}
