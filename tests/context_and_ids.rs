//! `BatchContext`, the shared `BatchStore` and request-id derivation (alone and composed with
//! tower-http's request-id layers), all over real sockets. The `batch_item` tracing span has its
//! own test binary, `tests/tracing_spans.rs`.

mod support;
use support::serve;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http_batch::format::multipart::{boundary_of, parse_response, split_parts};
use http_batch::{BatchContext, BatchLayer, Execution, Limits};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

// ---------------------------------------------------------------------------------------------
// The app under test

#[derive(Clone)]
struct Note(String);

#[derive(Default)]
struct Count(u64);

fn header_str(headers: &HeaderMap, name: &str) -> Value {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map_or(Value::Null, |v| Value::String(v.to_owned()))
}

/// Everything an item can know about itself, as JSON.
async fn whoami(
    ctx: Option<Extension<BatchContext>>,
    tower_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
) -> Json<Value> {
    let ctx = ctx.map(|Extension(c)| {
        json!({
            "batchId": c.batch_id(),
            "index": c.index(),
            "id": c.id(),
            "total": c.total(),
            "depth": c.depth(),
        })
    });
    let tower_id =
        tower_id.and_then(|Extension(id)| id.header_value().to_str().ok().map(str::to_owned));
    Json(json!({
        "ctx": ctx,
        "requestId": header_str(&headers, "x-request-id"),
        "correlationId": header_str(&headers, "x-correlation-id"),
        "towerRequestId": tower_id,
    }))
}

async fn put_note(ctx: Extension<BatchContext>, Path(text): Path<String>) -> StatusCode {
    ctx.store().insert(Note(text));
    StatusCode::NO_CONTENT
}

async fn get_note(ctx: Extension<BatchContext>) -> Json<Value> {
    Json(json!({ "note": ctx.store().get::<Note>().map(|n| n.0) }))
}

async fn count(ctx: Extension<BatchContext>) -> String {
    // Give the other items a chance to run in between, so increments really interleave.
    tokio::task::yield_now().await;
    ctx.store()
        .update(|c: &mut Count| {
            c.0 += 1;
            c.0
        })
        .to_string()
}

async fn own_id() -> impl IntoResponse {
    ([("x-request-id", "set-by-handler")], "mine")
}

fn api() -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/note", get(get_note))
        .route("/note/{text}", put(put_note))
        .route("/count", get(count))
        .route("/own-id", get(own_id))
}

/// Request ids `req-1`, `req-2`, ... from one counter shared by every clone.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Some(RequestId::new(
            HeaderValue::from_str(&format!("req-{n}")).unwrap(),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// A small multipart client

const BOUNDARY: &str = "test_boundary_7Rq";

/// One request part: `content_id` as written on the wire (`<a>` or bare), `head` the nested
/// request line and header lines, CRLF-separated, without the blank line.
fn part(content_id: Option<&str>, head: &str) -> String {
    let cid = content_id.map_or(String::new(), |c| format!("Content-ID: {c}\r\n"));
    format!("--{BOUNDARY}\r\nContent-Type: application/http\r\n{cid}\r\n{head}\r\n\r\n\r\n")
}

fn envelope(parts: &[String]) -> String {
    let mut body: String = parts.concat();
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    body
}

#[derive(Debug)]
struct Answer {
    content_id: Option<String>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("item body is not JSON ({e}): {:?}", self.body))
    }

    fn request_id(&self) -> Option<&str> {
        self.headers
            .get("x-request-id")
            .map(|v| v.to_str().unwrap())
    }
}

struct Reply {
    headers: HeaderMap,
    answers: Vec<Answer>,
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: String,
) -> (StatusCode, HeaderMap, Bytes) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

async fn batch(addr: SocketAddr, path: &str, headers: &[(&str, &str)], parts: &[String]) -> Reply {
    let ct = format!("multipart/mixed; boundary={BOUNDARY}");
    let (status, headers, body) =
        send(addr, "POST", path, headers, Some(&ct), envelope(parts)).await;
    assert_eq!(status, StatusCode::OK, "batch refused: {body:?}");
    let mime: mime::Mime = headers["content-type"].to_str().unwrap().parse().unwrap();
    let boundary = boundary_of(&mime).unwrap();
    let limits = Limits::default();
    let answers = split_parts(&body, boundary.as_bytes(), &limits)
        .unwrap()
        .into_iter()
        .map(|raw| {
            let split = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("part headers end with a blank line");
            let head = std::str::from_utf8(&raw[..split]).unwrap();
            let content_id = head.lines().find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-id"))
                    .map(|(_, v)| v.trim().to_owned())
            });
            let res = parse_response(&raw.slice(split + 4..), &limits).unwrap();
            let (p, body) = res.into_parts();
            Answer {
                content_id,
                status: p.status,
                headers: p.headers,
                body,
            }
        })
        .collect();
    Reply { headers, answers }
}

fn get_line(path: &str) -> String {
    format!("GET {path} HTTP/1.1")
}

// ---------------------------------------------------------------------------------------------
// BatchContext

#[tokio::test]
async fn every_item_sees_its_place_in_the_batch() {
    let addr = serve(BatchLayer::new().wrap_router(api())).await;
    let parts = [
        part(Some("<a>"), &get_line("/whoami")),
        part(Some("b"), &get_line("/whoami")),
        part(None, &get_line("/whoami")),
        part(Some("<item-4>"), &get_line("/whoami")),
    ];
    let first = batch(addr, "/batch", &[], &parts).await;
    assert_eq!(first.answers.len(), 4);
    let ctxs: Vec<Value> = first
        .answers
        .iter()
        .map(|a| a.json()["ctx"].clone())
        .collect();
    let batch_id = ctxs[0]["batchId"].as_str().unwrap().to_owned();
    assert!(!batch_id.is_empty());
    let expected_ids = [json!("a"), json!("b"), Value::Null, json!("item-4")];
    for (i, ctx) in ctxs.iter().enumerate() {
        assert_eq!(ctx["batchId"], json!(batch_id), "item {i}");
        assert_eq!(ctx["index"], json!(i));
        assert_eq!(ctx["id"], expected_ids[i]);
        assert_eq!(ctx["total"], json!(4));
        assert_eq!(ctx["depth"], json!(1));
    }
    // The Content-ID echo is untouched by the id derivation.
    let echoed: Vec<Option<&str>> = first
        .answers
        .iter()
        .map(|a| a.content_id.as_deref())
        .collect();
    assert_eq!(
        echoed,
        [
            Some("<response-a>"),
            Some("response-b"),
            None,
            Some("<response-item-4>")
        ]
    );

    let second = batch(addr, "/batch", &[], &parts[..1]).await;
    let other_id = second.answers[0].json()["ctx"]["batchId"].clone();
    assert_ne!(
        other_id,
        json!(batch_id),
        "two batches must not share an id"
    );
    assert_eq!(second.answers[0].json()["ctx"]["total"], json!(1));

    // A plain call is not in a batch.
    let (status, _, body) = send(addr, "GET", "/whoami", &[], None, String::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["ctx"],
        Value::Null
    );
}

#[tokio::test]
async fn sequential_items_share_the_store_within_one_batch_only() {
    let addr = serve(BatchLayer::new().sequential().wrap_router(api())).await;
    let put_then_get = [
        part(Some("<put>"), "PUT /note/hello HTTP/1.1"),
        part(Some("<get>"), &get_line("/note")),
    ];
    let reply = batch(addr, "/batch", &[], &put_then_get).await;
    assert_eq!(reply.answers[0].status, StatusCode::NO_CONTENT);
    assert_eq!(reply.answers[1].json(), json!({ "note": "hello" }));

    // A new batch starts with an empty store.
    let reply = batch(addr, "/batch", &[], &[part(None, &get_line("/note"))]).await;
    assert_eq!(reply.answers[0].json(), json!({ "note": null }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_count_every_item() {
    for execution in [Execution::Polled, Execution::Spawned] {
        let layer = BatchLayer::new().concurrency(64).execution(execution);
        let addr = serve(layer.wrap_router(api())).await;
        let parts: Vec<String> = (0..200).map(|_| part(None, &get_line("/count"))).collect();
        let reply = batch(addr, "/batch", &[], &parts).await;
        assert_eq!(reply.answers.len(), 200);
        let mut seen: Vec<u64> = reply
            .answers
            .iter()
            .map(|a| {
                assert_eq!(a.status, StatusCode::OK);
                std::str::from_utf8(&a.body).unwrap().parse().unwrap()
            })
            .collect();
        seen.sort_unstable();
        // Each update saw a distinct count, and together they reached exactly 200: no update
        // was lost or doubled.
        assert_eq!(seen, (1..=200).collect::<Vec<u64>>(), "{execution:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Request ids

#[tokio::test]
async fn items_derive_request_ids_from_the_outer_one() {
    let addr = serve(BatchLayer::new().wrap_router(api())).await;
    let parts = [
        part(Some("<a>"), &get_line("/whoami")),
        part(
            Some("<b>"),
            &format!("{}\r\nx-request-id: item-own", get_line("/whoami")),
        ),
        part(Some("<c>"), &get_line("/whoami")),
        part(Some("<d>"), &get_line("/own-id")),
        part(Some("<e>"), &get_line("/no-such-route")),
    ];
    let reply = batch(addr, "/batch", &[("x-request-id", "abc")], &parts).await;
    let seen: Vec<Value> = reply.answers[..3]
        .iter()
        .map(|a| a.json()["requestId"].clone())
        .collect();
    assert_eq!(seen, [json!("abc-0"), json!("item-own"), json!("abc-2")]);
    let on_parts: Vec<Option<&str>> = reply.answers.iter().map(Answer::request_id).collect();
    assert_eq!(
        on_parts,
        [
            Some("abc-0"),
            Some("item-own"),
            Some("abc-2"),
            // The handler's own header wins over the derived one.
            Some("set-by-handler"),
            // Even an answer the app did not route carries the item's id.
            Some("abc-4"),
        ]
    );
    assert_eq!(reply.answers[4].status, StatusCode::NOT_FOUND);
    // The batch layer itself does not add an id to the outer response.
    assert!(reply.headers.get("x-request-id").is_none());

    // Without an outer id nothing is derived.
    let reply = batch(addr, "/batch", &[], &parts[..1]).await;
    assert_eq!(reply.answers[0].json()["requestId"], Value::Null);
    assert_eq!(reply.answers[0].request_id(), None);
}

#[tokio::test]
async fn request_id_header_name_is_configurable() {
    let layer = BatchLayer::new().request_id_header(HeaderName::from_static("x-correlation-id"));
    let addr = serve(layer.wrap_router(api())).await;
    let parts = [
        part(None, &get_line("/whoami")),
        part(
            None,
            &format!("{}\r\nX-Correlation-ID: own", get_line("/whoami")),
        ),
    ];
    let reply = batch(addr, "/batch", &[("x-correlation-id", "corr")], &parts).await;
    let seen: Vec<Value> = reply
        .answers
        .iter()
        .map(|a| a.json()["correlationId"].clone())
        .collect();
    assert_eq!(seen, [json!("corr-0"), json!("own")]);
    let on_parts: Vec<&str> = reply
        .answers
        .iter()
        .map(|a| a.headers["x-correlation-id"].to_str().unwrap())
        .collect();
    assert_eq!(on_parts, ["corr-0", "own"]);
    // `x-request-id` is not special any more: nothing is derived into it.
    assert_eq!(reply.answers[0].json()["requestId"], Value::Null);
    assert!(reply.answers[0].headers.get("x-request-id").is_none());
}

#[tokio::test]
async fn tower_http_request_ids_outside_the_batch_layer() {
    let counter = Counter::default();
    let batched = BatchLayer::new().wrap_router(api());
    let svc = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(counter.clone()))
        .layer(PropagateRequestIdLayer::x_request_id())
        .service(batched);
    let addr = serve(Router::new().fallback_service(svc)).await;
    let parts = [
        part(None, &get_line("/whoami")),
        part(None, &get_line("/whoami")),
    ];

    // The outer request gets `req-1`; the items derive theirs from it.
    let reply = batch(addr, "/batch", &[], &parts).await;
    assert_eq!(reply.headers["x-request-id"], "req-1");
    for (i, answer) in reply.answers.iter().enumerate() {
        let expected = format!("req-1-{i}");
        assert_eq!(answer.json()["requestId"], json!(expected));
        assert_eq!(answer.request_id(), Some(expected.as_str()));
        // Items inherit the outer request's extensions, tower-http's `RequestId` among them:
        // it names the batch, the header names the item.
        assert_eq!(answer.json()["towerRequestId"], json!("req-1"));
    }

    // A client-chosen id is kept by SetRequestId and used as the prefix.
    let reply = batch(addr, "/batch", &[("x-request-id", "client-7")], &parts).await;
    assert_eq!(reply.headers["x-request-id"], "client-7");
    assert_eq!(reply.answers[1].request_id(), Some("client-7-1"));

    // Plain calls are numbered by the same counter, which the batches used once.
    let (_, headers, body) = send(addr, "GET", "/whoami", &[], None, String::new()).await;
    assert_eq!(headers["x-request-id"], "req-2");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["requestId"],
        json!("req-2")
    );
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tower_http_request_ids_inside_the_batch_layer() {
    let counter = Counter::default();
    // `Router::layer` wraps every route: each item passes through both layers after routing.
    let inner = api()
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(counter.clone()));
    let addr = serve(BatchLayer::new().sequential().wrap_router(inner)).await;
    let parts = [
        part(None, &get_line("/whoami")),
        part(
            None,
            &format!("{}\r\nx-request-id: item-own", get_line("/whoami")),
        ),
        part(None, &get_line("/whoami")),
    ];

    // With an outer id, the derived ids are already there: SetRequestId keeps them (and makes
    // them the `RequestId` extension), PropagateRequestId echoes them.
    let reply = batch(addr, "/batch", &[("x-request-id", "abc")], &parts).await;
    let expected = ["abc-0", "item-own", "abc-2"];
    for (answer, id) in reply.answers.iter().zip(expected) {
        assert_eq!(answer.json()["requestId"], json!(id));
        assert_eq!(answer.json()["towerRequestId"], json!(id));
        assert_eq!(answer.request_id(), Some(id));
    }
    assert_eq!(counter.0.load(Ordering::SeqCst), 0, "no id had to be made");
    // The batch layer is outside both, so the outer response gets no id.
    assert!(reply.headers.get("x-request-id").is_none());

    // Without one, each item that has none gets a fresh id of its own, in order (sequential).
    let reply = batch(addr, "/batch", &[], &parts).await;
    let expected = ["req-1", "item-own", "req-2"];
    for (answer, id) in reply.answers.iter().zip(expected) {
        assert_eq!(answer.json()["requestId"], json!(id));
        assert_eq!(answer.request_id(), Some(id));
    }
    assert!(reply.headers.get("x-request-id").is_none());
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);
}
