//! One test (or more) for every numbered defence of the hardening issue: admission control,
//! nested batches, staying on the origin, smuggling and injection, auth, resource limits, time,
//! panics and cancellation, duplicate ids, and the JSON shape of batch-level errors.
//!
//! Each test is written so that it fails when its defence is taken out of the layer: refused
//! items are sent to routes that would answer `200` (and count the call) if they ran.
//!
//! Server tests bind `127.0.0.1:0` and talk HTTP/1.1 over real sockets, with hyper's client or
//! a raw `TcpStream` where the bytes on the wire matter (trickling, disconnecting, oversize
//! bodies). Tests that are about one service stack drive `Batch<S>` in-process with `oneshot`.

mod support;
use support::serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_batch::format::multipart::{boundary_of, parse_response, split_parts};
use http_batch::{AuthPolicy, BatchLayer, Execution, Limits};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::{Layer, ServiceBuilder, ServiceExt};

// ---------------------------------------------------------------------------------------------
// The app the batches run against
// ---------------------------------------------------------------------------------------------

/// Counters the handlers update, so tests can tell which items really reached the app.
#[derive(Clone, Default)]
struct Probe {
    calls: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
}

impl Probe {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Counts a handler as running until dropped, so a cancelled handler leaves the count too.
struct InFlight(Probe);

impl InFlight {
    fn enter(probe: &Probe) -> Self {
        let now = probe.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(probe.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

type Params = Query<HashMap<String, String>>;

fn number(q: &HashMap<String, String>, key: &str) -> u64 {
    q.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Answers with what the handler saw: method, path, query, every header, and the body.
/// It also copies `x-a` into the response header `x-echo-a`, so header reflection is exercised.
async fn echo(
    State(p): State<Probe>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    p.calls.fetch_add(1, Ordering::SeqCst);
    let mut seen = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|v| Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        seen.insert(name.as_str().to_owned(), Value::Array(values));
    }
    let mut res = Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": seen,
        "body": String::from_utf8_lossy(&body),
    }))
    .into_response();
    if let Some(a) = headers.get("x-a") {
        res.headers_mut().insert("x-echo-a", a.clone());
    }
    res
}

async fn slow(State(p): State<Probe>, Query(q): Params) -> &'static str {
    p.calls.fetch_add(1, Ordering::SeqCst);
    let _running = InFlight::enter(&p);
    tokio::time::sleep(Duration::from_millis(number(&q, "ms"))).await;
    "slow"
}

async fn big(State(p): State<Probe>, Query(q): Params) -> String {
    p.calls.fetch_add(1, Ordering::SeqCst);
    "x".repeat(number(&q, "n") as usize)
}

async fn panics(State(p): State<Probe>) -> &'static str {
    p.calls.fetch_add(1, Ordering::SeqCst);
    panic!("a handler inside a batch item panicked on purpose");
}

/// Counts its start, sleeps 1.5 s, then counts its completion: a dropped item never completes.
async fn cancellable(State(p): State<Probe>) -> &'static str {
    p.started.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.completed.fetch_add(1, Ordering::SeqCst);
    "done"
}

async fn named(State(p): State<Probe>, uri: Uri) -> String {
    p.calls.fetch_add(1, Ordering::SeqCst);
    format!("route {}", uri.path())
}

fn app(probe: Probe) -> Router {
    Router::new()
        .route("/echo", any(echo))
        .route("/slow", get(slow))
        .route("/big", get(big))
        .route("/panic", get(panics))
        .route("/cancel", get(cancellable))
        .route("/admin/x", any(named))
        .route("/api/batch", any(named))
        .route("/batch/", any(named))
        .with_state(probe)
}

/// The app wrapped by `layer`, served on a fresh port.
async fn start(layer: BatchLayer) -> (SocketAddr, Probe) {
    let probe = Probe::default();
    let addr = serve(layer.wrap_router(app(probe.clone()))).await;
    (addr, probe)
}

// ---------------------------------------------------------------------------------------------
// Building batches and sending them
// ---------------------------------------------------------------------------------------------

const CT: &str = "multipart/mixed; boundary=b";

/// One request part with `Content-ID: <cid>` around the raw nested request text.
fn part(cid: &str, request: &str) -> String {
    format!("--b\r\nContent-Type: application/http\r\nContent-ID: <{cid}>\r\n\r\n{request}\r\n")
}

fn get_part(cid: &str, target: &str) -> String {
    part(cid, &format!("GET {target} HTTP/1.1\r\n\r\n"))
}

fn envelope(parts: &[String]) -> String {
    let mut body = parts.concat();
    body.push_str("--b--\r\n");
    body
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request over a fresh HTTP/1.1 connection and reads the whole answer.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body.into())).expect("request");
    let work = async move {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let res = sender.send_request(req).await.expect("response");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("the server answered within 30 s")
}

async fn post_batch(addr: SocketAddr, headers: &[(&str, &str)], body: String) -> Reply {
    let mut all = vec![("content-type", CT)];
    all.extend_from_slice(headers);
    send(addr, Method::POST, "/batch", &all, body).await
}

/// Drives a `Batch<S>` in-process: the same code path as a server, without a socket.
async fn oneshot<S>(svc: S, req: Request<Body>) -> Reply
where
    S: tower::Service<Request<Body>, Response = http::Response<http_batch::ResponseBody<Body>>>,
    S::Error: std::fmt::Debug,
{
    let work = async move {
        let res = svc
            .oneshot(req)
            .await
            .expect("the batch service does not fail");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("the batch answered within 30 s")
}

fn batch_request(body: String, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::post("/batch")
        .header("host", "api.test")
        .header("content-type", CT);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::from(body)).expect("request")
}

// ---------------------------------------------------------------------------------------------
// Reading batch answers, strictly
// ---------------------------------------------------------------------------------------------

/// One answered item: the part's own headers and the nested response.
#[derive(Debug)]
struct Answer {
    part_headers: Vec<(String, String)>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "item body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn content_id(&self) -> Option<&str> {
        self.part_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-id"))
            .map(|(_, v)| v.as_str())
    }

    /// The item's error message, from the `{"error":{"message":..}}` body.
    fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.text()))
            .to_owned()
    }

    /// The header values the echo handler saw under `name`.
    fn seen(&self, name: &str) -> Vec<String> {
        match &self.json()["headers"][name] {
            Value::Array(values) => values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Splits a multipart batch answer into its items, checking the framing strictly on the way:
/// every line ends in CRLF, no bare CR or LF anywhere, each part has only `Content-Type:
/// application/http` and an optional `Content-ID`, and the body ends with the close delimiter.
fn parse_multipart(content_type: &str, body: &Bytes) -> Vec<Answer> {
    assert_crlf_only(body);
    let mime: mime::Mime = content_type.parse().expect("content type parses");
    assert_eq!(
        mime.essence_str(),
        "multipart/mixed",
        "answer is multipart/mixed"
    );
    let boundary = boundary_of(&mime).expect("boundary");
    assert!(
        body.starts_with(format!("--{boundary}\r\n").as_bytes()),
        "answer starts with the first delimiter"
    );
    assert!(
        body.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()),
        "answer ends with the close delimiter"
    );
    let limits = Limits::default()
        .max_part_bytes(usize::MAX / 2)
        .max_items(usize::MAX / 2);
    let parts = split_parts(body, boundary.as_bytes(), &limits).expect("answer splits into parts");
    parts
        .into_iter()
        .map(|raw| {
            let end = memchr::memmem::find(&raw, b"\r\n\r\n")
                .expect("part headers end with a blank line");
            let head = std::str::from_utf8(&raw[..end]).expect("part headers are text");
            let mut part_headers = Vec::new();
            for line in head.split("\r\n") {
                let (name, value) = line
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("part header `{line}`"));
                assert!(
                    name.eq_ignore_ascii_case("content-type")
                        || name.eq_ignore_ascii_case("content-id"),
                    "unexpected part header `{line}`"
                );
                part_headers.push((name.to_owned(), value.to_owned()));
            }
            assert_eq!(
                part_headers[0],
                ("Content-Type".to_owned(), "application/http".to_owned())
            );
            let res = parse_response(&raw.slice(end + 4..), &Limits::default())
                .expect("nested response parses");
            let (parts, body) = res.into_parts();
            Answer {
                part_headers,
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
        .collect()
}

fn parts_of(reply: &Reply) -> Vec<Answer> {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "batch answered 200: {}",
        reply.text()
    );
    let ct = reply.headers["content-type"]
        .to_str()
        .expect("content type is text");
    parse_multipart(ct, &reply.body)
}

fn statuses(answers: &[Answer]) -> Vec<u16> {
    answers.iter().map(|a| a.status.as_u16()).collect()
}

fn assert_crlf_only(body: &[u8]) {
    for (i, &c) in body.iter().enumerate() {
        if c == b'\n' {
            assert!(i > 0 && body[i - 1] == b'\r', "bare LF at byte {i}");
        }
        if c == b'\r' {
            assert_eq!(body.get(i + 1), Some(&b'\n'), "bare CR at byte {i}");
        }
    }
}

/// Checks a batch-level error: its status, JSON content type, and Google's error shape with a
/// message in words.
fn assert_batch_error(reply: &Reply, status: u16, kind: &str) -> Value {
    assert_eq!(reply.status.as_u16(), status, "status of {}", reply.text());
    let ct = reply.headers["content-type"].to_str().unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "JSON content type, got `{ct}`"
    );
    let v = reply.json();
    let error = &v["error"];
    assert_eq!(error["code"], status, "code in {v}");
    // Google's shape: `status` is the canonical code name, `reason` the specific problem.
    let canonical = error["status"].as_str().unwrap_or_default();
    assert!(
        !canonical.is_empty()
            && canonical
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c == b'_'),
        "canonical status in {v}"
    );
    assert_eq!(error["reason"], kind, "reason in {v}");
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("message in {v}"));
    assert!(
        message.split_whitespace().count() >= 3,
        "the message says what went wrong in words: `{message}`"
    );
    v
}

/// Reads a raw HTTP/1.1 response until the connection closes or the response is complete;
/// understands `Content-Length` and chunked bodies.
async fn read_raw_response(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let work = async {
        loop {
            if let Some(reply) = parse_raw_response(&buf) {
                return reply;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        parse_raw_response(&buf)
            .unwrap_or_else(|| panic!("incomplete response: {}", String::from_utf8_lossy(&buf)))
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("the server answered within 30 s")
}

fn parse_raw_response(buf: &[u8]) -> Option<Reply> {
    let end = memchr::memmem::find(buf, b"\r\n\r\n")?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut headers);
    res.parse(&buf[..end + 4]).ok()?;
    let status = StatusCode::from_u16(res.code?).ok()?;
    let mut map = HeaderMap::new();
    for h in res.headers.iter() {
        map.append(
            http::HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            http::HeaderValue::from_bytes(h.value).ok()?,
        );
    }
    let rest = &buf[end + 4..];
    let chunked = map
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = at + memchr::memmem::find(&rest[at..], b"\r\n")?;
            let size = std::str::from_utf8(&rest[at..line_end]).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(at..at + size)?);
            at += size + 2;
        }
        body
    } else {
        let len: usize = map.get("content-length")?.to_str().ok()?.parse().ok()?;
        rest.get(..len)?.to_vec()
    };
    Some(Reply {
        status,
        headers: map,
        body: Bytes::from(body),
    })
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

// ---------------------------------------------------------------------------------------------
// 1. Amplification and admission control
// ---------------------------------------------------------------------------------------------

/// A concurrency limit of 1 inside the layer sees every item: a batch of slow items runs one at
/// a time, although the layer would run 8 at once, and the batch still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_inside_admits_items_one_at_a_time() {
    let probe = Probe::default();
    let limited = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(app(probe.clone()));
    let batch = BatchLayer::new().concurrency(8).layer(limited);
    let addr = serve(Router::new().fallback_service(batch)).await;

    let parts: Vec<String> = (0..6)
        .map(|i| get_part(&i.to_string(), "/slow?ms=40"))
        .collect();
    let reply = post_batch(addr, &[], envelope(&parts)).await;
    let answers = parts_of(&reply);
    assert_eq!(statuses(&answers), vec![200; 6]);
    assert!(answers.iter().all(|a| a.text() == "slow"));
    assert_eq!(probe.calls(), 6);
    assert_eq!(
        probe.max_in_flight.load(Ordering::SeqCst),
        1,
        "the limit admitted one item at a time"
    );

    // The batch request gave back the permit it reserved: a direct call still gets through.
    let direct = send(addr, Method::GET, "/slow?ms=1", &[], "").await;
    assert_eq!(direct.status, 200);
}

/// A long-lived `Batch` (one service value driven to `poll_ready` and then called, as a
/// connection-level server does) gives back the permit its own `poll_ready` took: otherwise its
/// items would wait forever for the only permit of a concurrency limit of 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_call_gives_back_the_readiness_it_reserved() {
    let probe = Probe::default();
    let limited = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(app(probe.clone()));
    let mut batch = BatchLayer::new().layer(limited);
    let parts: Vec<String> = (0..3).map(|i| get_part(&i.to_string(), "/echo")).collect();
    let work = async {
        let ready = ServiceExt::<Request<Body>>::ready(&mut batch)
            .await
            .expect("ready");
        let res = tower::Service::call(ready, batch_request(envelope(&parts), &[])).await;
        let (head, body) = res.expect("the batch service does not fail").into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        // `batch` is still alive here, with whatever it reserved.
        Reply {
            status: head.status,
            headers: head.headers,
            body,
        }
    };
    let reply = tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("items were admitted while the batch service was alive");
    assert_eq!(statuses(&parts_of(&reply)), vec![200; 3]);
    assert_eq!(probe.calls(), 3);
    drop(batch);
}

/// A rate limit of 5 per window inside the layer counts every item: of 10 items, no more than 5
/// reach the app within any one window, and all 10 are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_inside_counts_every_item() {
    let probe = Probe::default();
    let entries: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let record = entries.clone();
    let window = Duration::from_millis(200);
    let svc = ServiceBuilder::new()
        .buffer(64)
        .rate_limit(5, window)
        .map_request(move |req: Request<Body>| {
            // Recorded in `call`, right after the rate limiter let the request through.
            record.lock().expect("lock").push(Instant::now());
            req
        })
        .service(app(probe.clone()));
    let batch = BatchLayer::new().concurrency(16).layer(svc);

    let parts: Vec<String> = (0..10).map(|i| get_part(&i.to_string(), "/echo")).collect();
    let reply = oneshot(batch, batch_request(envelope(&parts), &[])).await;
    assert_eq!(statuses(&parts_of(&reply)), vec![200; 10]);
    assert_eq!(probe.calls(), 10);

    let mut times = entries.lock().expect("lock").clone();
    assert_eq!(times.len(), 10, "every item went through the rate limiter");
    times.sort();
    // The 6th admission can only come once the first window has passed. Allow the timer's
    // millisecond rounding.
    for i in 0..times.len() - 5 {
        let gap = times[i + 5] - times[i];
        assert!(
            gap >= window - Duration::from_millis(5),
            "admissions {i} and {} are only {gap:?} apart: more than 5 items in one window",
            i + 5
        );
    }
}

/// `cost_budget(3)`: every item weighs 1, a 4-item batch is refused whole with its cost named,
/// and a 3-item batch runs.
#[tokio::test]
async fn cost_budget_refuses_batches_over_budget() {
    let (addr, probe) = start(BatchLayer::new().cost_budget(3)).await;
    let four: Vec<String> = (0..4).map(|i| get_part(&i.to_string(), "/echo")).collect();
    let reply = post_batch(addr, &[], envelope(&four)).await;
    let v = assert_batch_error(&reply, 413, "COST_EXCEEDED");
    assert_eq!(v["error"]["cost"], 4);
    assert_eq!(v["error"]["limit"], 3);
    assert_eq!(probe.calls(), 0, "no item of a refused batch ran");

    let reply = post_batch(addr, &[], envelope(&four[..3])).await;
    assert_eq!(statuses(&parts_of(&reply)), vec![200; 3]);
    assert_eq!(probe.calls(), 3);
}

/// `cost_budget_with`: reads weigh 1 and writes 5 against a budget of 10.
#[tokio::test]
async fn cost_budget_with_weighs_each_item() {
    let layer =
        BatchLayer::new()
            .cost_budget_with(10, |req| if req.method() == Method::GET { 1 } else { 5 });
    let (addr, probe) = start(layer).await;
    let write = |cid: &str| part(cid, "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");

    let reply = post_batch(addr, &[], envelope(&[write("w1"), write("w2")])).await;
    assert_eq!(
        statuses(&parts_of(&reply)),
        vec![200, 200],
        "two writes cost exactly 10"
    );

    let reply = post_batch(
        addr,
        &[],
        envelope(&[write("w1"), get_part("r", "/echo"), write("w2")]),
    )
    .await;
    let v = assert_batch_error(&reply, 413, "COST_EXCEEDED");
    assert_eq!(v["error"]["cost"], 11);
    assert_eq!(v["error"]["limit"], 10);

    let reads: Vec<String> = (0..10).map(|i| get_part(&i.to_string(), "/echo")).collect();
    let reply = post_batch(addr, &[], envelope(&reads)).await;
    assert_eq!(
        statuses(&parts_of(&reply)),
        vec![200; 10],
        "ten reads cost exactly 10"
    );
    assert_eq!(probe.calls(), 12);
}

// ---------------------------------------------------------------------------------------------
// 2. Nested batches
// ---------------------------------------------------------------------------------------------

fn nested_batch_part(cid: &str, boundary: &str, inner_parts: &[String]) -> String {
    let mut body: String = inner_parts.concat();
    body.push_str(&format!("--{boundary}--"));
    part(
        cid,
        &format!("POST /batch HTTP/1.1\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n{body}"),
    )
}

/// An inner part written with its own boundary.
fn inner_part(boundary: &str, cid: &str, request: &str) -> String {
    format!("--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{cid}>\r\n\r\n{request}\r\n")
}

/// By default an item that targets the batch path is answered 400 on its own; its siblings run.
#[tokio::test]
async fn item_targeting_the_batch_path_is_refused_and_siblings_run() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let nested = nested_batch_part(
        "n",
        "inner",
        &[inner_part("inner", "i", "GET /echo HTTP/1.1\r\n")],
    );
    let body = envelope(&[
        get_part("a", "/echo"),
        nested,
        get_part("g", "/batch"),
        get_part("z", "/echo"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![200, 400, 400, 200]);
    assert!(
        answers[1].message().contains("batch"),
        "{}",
        answers[1].message()
    );
    assert_eq!(probe.calls(), 2, "the nested batch's item never ran");
}

/// With `max_nesting(1)` one level of nesting is answered with a nested multipart response;
/// a batch inside that one is refused.
#[tokio::test]
async fn max_nesting_one_allows_exactly_one_level() {
    let (addr, probe) = start(BatchLayer::new().max_nesting(1)).await;
    let deep = nested_batch_part(
        "deep",
        "deep",
        &[inner_part("deep", "d", "GET /echo HTTP/1.1\r\n")],
    )
    .replace("--b\r\n", "--inner\r\n");
    let inner = vec![
        inner_part("inner", "i1", "GET /echo?level=2 HTTP/1.1\r\n"),
        deep,
    ];
    let body = envelope(&[
        get_part("a", "/echo?level=1"),
        nested_batch_part("n", "inner", &inner),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![200, 200]);
    assert_eq!(answers[1].content_id(), Some("<response-n>"));

    let nested_ct = answers[1].headers["content-type"].to_str().expect("text");
    assert!(
        nested_ct.starts_with("multipart/mixed"),
        "nested answer is multipart: {nested_ct}"
    );
    let nested = parse_multipart(nested_ct, &answers[1].body);
    assert_eq!(
        statuses(&nested),
        vec![200, 400],
        "level 2 runs, level 3 is refused"
    );
    assert_eq!(nested[0].content_id(), Some("<response-i1>"));
    assert_eq!(nested[0].json()["query"], "level=2");
    assert!(
        nested[1].message().contains("batch"),
        "{}",
        nested[1].message()
    );
    assert_eq!(probe.calls(), 2, "the third-level item never ran");
}

/// A nested batch is a way around the cost budget: the budget should bound the calls one
/// request makes, at every level, not only the items of the outer envelope.
#[tokio::test]
async fn cost_budget_covers_nested_batches() {
    let (addr, probe) = start(BatchLayer::new().max_nesting(1).cost_budget(4)).await;
    let inner: Vec<String> = (0..4)
        .map(|i| inner_part("inner", &format!("i{i}"), "GET /echo HTTP/1.1\r\n"))
        .collect();
    let body = envelope(&[
        get_part("a", "/echo"),
        nested_batch_part("n1", "inner", &inner),
        nested_batch_part("n2", "inner", &inner),
    ]);
    let reply = post_batch(addr, &[], body).await;
    assert!(
        probe.calls() <= 4,
        "a budget of 4 let {} calls through (answer {})",
        probe.calls(),
        reply.status
    );
}

/// Batch paths match exactly: `/api/batch` and `/batch/` are ordinary routes, in a batch and
/// when called directly.
#[tokio::test]
async fn batch_path_matching_is_exact() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let body = envelope(&[get_part("1", "/api/batch"), get_part("2", "/batch/")]);
    let answers = parts_of(&post_batch(addr, &[], body.clone()).await);
    assert_eq!(statuses(&answers), vec![200, 200]);
    assert_eq!(answers[0].text(), "route /api/batch");
    assert_eq!(answers[1].text(), "route /batch/");

    for path in ["/api/batch", "/batch/"] {
        let direct = send(addr, Method::GET, path, &[], "").await;
        assert_eq!(
            (direct.status.as_u16(), direct.text()),
            (200, format!("route {path}"))
        );
        // Even a multipart POST there is the app's business, not a batch.
        let direct = send(
            addr,
            Method::POST,
            path,
            &[("content-type", CT)],
            body.clone(),
        )
        .await;
        assert_eq!(
            (direct.status.as_u16(), direct.text()),
            (200, format!("route {path}"))
        );
    }
    assert_eq!(probe.calls(), 6);
}

// ---------------------------------------------------------------------------------------------
// 3. Escaping the origin
// ---------------------------------------------------------------------------------------------

/// An absolute target must name the authority the client used; anything else is a 400.
#[tokio::test]
async fn absolute_targets_must_name_this_origin() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let port = addr.port();
    let body = envelope(&[
        get_part("evil", "http://evil.example/echo"),
        get_part("evil-tls", "https://evil.example:443/echo"),
        get_part(
            "other-port",
            &format!("http://127.0.0.1:{}/echo", if port == 1 { 2 } else { 1 }),
        ),
        get_part("same", &format!("http://127.0.0.1:{port}/echo?x=1")),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![400, 400, 400, 200]);
    assert!(
        answers[0].message().contains("another host"),
        "{}",
        answers[0].message()
    );
    assert_eq!(answers[3].json()["path"], "/echo");
    assert_eq!(answers[3].json()["query"], "x=1");
    assert_eq!(probe.calls(), 1);
}

/// An item's own `Host` header is advisory: the item runs under the batch's own origin, so a
/// `Host` naming another host is replaced by the batch's, and never reaches the app.
#[tokio::test]
async fn item_host_header_is_replaced_by_the_batchs() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let body = envelope(&[
        part("evil", "GET /echo HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
        part(
            "same",
            &format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        ),
        get_part("none", "/echo"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![200, 200, 200]);
    for answer in &answers {
        assert_eq!(
            answer.seen("host"),
            vec![addr.to_string()],
            "items run under the batch's Host"
        );
    }
    assert_eq!(probe.calls(), 3);
}

/// RFC 9112 §3.2: a request with more than one `Host` is answered 400. An item whose first
/// `Host` is ours and whose second names another host must not reach the app.
#[tokio::test]
async fn item_with_two_host_headers_is_refused() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let body = envelope(&[
        part(
            "ours-first",
            &format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nHost: evil.example\r\n\r\n"),
        ),
        part(
            "evil-first",
            &format!("GET /echo HTTP/1.1\r\nHost: evil.example\r\nHost: {addr}\r\n\r\n"),
        ),
        get_part("ok", "/echo"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![400, 400, 200]);
    assert_eq!(probe.calls(), 1);
}

/// `CONNECT` and protocol upgrades cannot be batched, even to a route that takes any method.
#[tokio::test]
async fn connect_and_upgrades_are_refused() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let body = envelope(&[
        part("c1", "CONNECT /echo HTTP/1.1\r\n\r\n"),
        part("c2", "CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n"),
        part(
            "ws",
            "GET /echo HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        ),
        part(
            "key",
            "GET /echo HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        ),
        get_part("ok", "/echo"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![400, 400, 400, 400, 200]);
    assert!(
        answers[0].message().contains("CONNECT"),
        "{}",
        answers[0].message()
    );
    assert!(
        answers[2].message().contains("upgrade"),
        "{}",
        answers[2].message()
    );
    assert!(
        answers[3].message().contains("upgrade"),
        "{}",
        answers[3].message()
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn method_policies_answer_403() {
    let (addr, probe) = start(BatchLayer::new().allow_methods([Method::GET, Method::POST])).await;
    let body = envelope(&[
        part("d", "DELETE /echo HTTP/1.1\r\n\r\n"),
        get_part("g", "/echo"),
        part("p", "POST /echo HTTP/1.1\r\n\r\n"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![403, 200, 200]);
    assert!(
        answers[0].message().contains("DELETE"),
        "{}",
        answers[0].message()
    );
    assert_eq!(probe.calls(), 2);

    let (addr, probe) = start(BatchLayer::new().deny_methods([Method::DELETE])).await;
    let body = envelope(&[
        part("d", "DELETE /echo HTTP/1.1\r\n\r\n"),
        part("p", "PUT /echo HTTP/1.1\r\n\r\n"),
    ]);
    assert_eq!(
        statuses(&parts_of(&post_batch(addr, &[], body).await)),
        vec![403, 200]
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn path_prefix_policies_answer_403() {
    let (addr, probe) = start(BatchLayer::new().allow_path_prefixes(["/echo"])).await;
    let body = envelope(&[get_part("big", "/big?n=1"), get_part("echo", "/echo")]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![403, 200]);
    assert!(
        answers[0].message().contains("/big"),
        "{}",
        answers[0].message()
    );
    assert_eq!(probe.calls(), 1);

    let (addr, probe) = start(BatchLayer::new().deny_path_prefixes(["/admin"])).await;
    let body = envelope(&[get_part("admin", "/admin/x"), get_part("echo", "/echo")]);
    assert_eq!(
        statuses(&parts_of(&post_batch(addr, &[], body).await)),
        vec![403, 200]
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn form_data_items_are_refused_unless_allowed() {
    let form = "--f\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--f--";
    let upload = format!(
        "POST /echo HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=f\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let upload = upload.as_str();
    let body = envelope(&[part("up", upload), get_part("g", "/echo")]);

    let (addr, probe) = start(BatchLayer::new()).await;
    let refused = parts_of(&post_batch(addr, &[], body.clone()).await);
    assert_eq!(statuses(&refused), vec![415, 200]);
    assert!(
        refused[0].message().contains("form-data"),
        "{}",
        refused[0].message()
    );
    assert_eq!(probe.calls(), 1);

    let (addr, probe) = start(BatchLayer::new().allow_form_data(true)).await;
    let allowed = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&allowed), vec![200, 200]);
    assert!(allowed[0].json()["body"]
        .as_str()
        .unwrap_or_default()
        .contains("form-data"));
    assert_eq!(probe.calls(), 2);
}

// ---------------------------------------------------------------------------------------------
// 4. Request smuggling and header injection
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn framing_headers_that_disagree_with_the_part_are_refused() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let body = envelope(&[
        // Both framings at once: the classic smuggling shape.
        part(
            "te-cl",
            "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nab",
        ),
        // Chunked framing inside a part, which is delimited by its boundary.
        part(
            "chunked",
            "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        ),
        // Content-Length longer than the part, and shorter with a smuggled request after it.
        part(
            "long",
            "POST /echo HTTP/1.1\r\nContent-Length: 50\r\n\r\nab",
        ),
        part(
            "short",
            "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET /admin/x HTTP/1.1\r\n\r\n",
        ),
        part(
            "twice",
            "POST /echo HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
        ),
        part(
            "exact",
            "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
        ),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![400, 400, 400, 400, 400, 200]);
    assert!(
        answers[0].message().contains("Transfer-Encoding"),
        "{}",
        answers[0].message()
    );
    assert!(
        answers[1].message().contains("Transfer-Encoding"),
        "{}",
        answers[1].message()
    );
    assert!(
        answers[2].message().contains("Content-Length"),
        "{}",
        answers[2].message()
    );
    assert!(
        answers[3].message().contains("Content-Length"),
        "{}",
        answers[3].message()
    );
    assert_eq!(answers[5].json()["body"], "ab");
    assert_eq!(probe.calls(), 1, "only the well framed item ran");
}

#[tokio::test]
async fn invalid_header_names_and_values_are_refused() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let body = envelope(&[
        part("space", "GET /echo HTTP/1.1\r\nBad Name: x\r\n\r\n"),
        part("colon", "GET /echo HTTP/1.1\r\n: no name\r\n\r\n"),
        part("ctl", "GET /echo HTTP/1.1\r\nX-A: a\x01b\r\n\r\n"),
        part("del", "GET /echo HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n"),
        part("nul", "GET /echo HTTP/1.1\r\nX-A: a\0b\r\n\r\n"),
        part("ok", "GET /echo HTTP/1.1\r\nX-A: fine\r\n\r\n"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![400, 400, 400, 400, 400, 200]);
    assert_eq!(answers[5].seen("x-a"), vec!["fine"]);
    assert_eq!(probe.calls(), 1);
}

/// Folding is refused inside the nested HTTP request (RFC 9112 §5.2) but allowed in the part's
/// MIME headers, whose folded `Content-ID` is echoed unfolded.
#[tokio::test]
async fn obs_fold_is_refused_in_requests_and_unfolded_in_part_headers() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let folded_request = part(
        "fold",
        "GET /echo HTTP/1.1\r\nX-A: first\r\n second\r\n\r\n",
    );
    let folded_part = "--b\r\nContent-Type: application/http\r\nContent-ID: <abc+\r\n def>\r\n\r\nGET /echo HTTP/1.1\r\n\r\n\r\n".to_owned();
    let answers = parts_of(&post_batch(addr, &[], envelope(&[folded_request, folded_part])).await);
    assert_eq!(statuses(&answers), vec![400, 200]);
    assert!(
        answers[0].message().contains("folded"),
        "{}",
        answers[0].message()
    );
    assert_eq!(answers[1].content_id(), Some("<response-abc+ def>"));
    assert_eq!(probe.calls(), 1);
}

/// Hop-by-hop headers of the batch request (the fixed list and those named in `Connection`)
/// describe the client's connection, not the items: no item sees them.
#[tokio::test]
async fn hop_by_hop_outer_headers_never_reach_items() {
    let probe = Probe::default();
    let batch = BatchLayer::new().layer(app(probe.clone()));
    let hop = [
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "from the client's connection"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("upgrade", "h2c"),
        ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
        ("proxy-connection", "keep-alive"),
    ];
    let mut headers = hop.to_vec();
    headers.push(("x-visible", "yes"));
    let body = envelope(&[
        get_part("1", "/echo"),
        part("2", "POST /echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"),
    ]);
    let answers = parts_of(&oneshot(batch, batch_request(body, &headers)).await);
    assert_eq!(statuses(&answers), vec![200, 200]);
    for answer in &answers {
        let seen = answer.json()["headers"].clone();
        for (name, _) in hop {
            assert!(
                seen.get(name).is_none(),
                "item saw hop-by-hop `{name}`: {seen}"
            );
        }
        assert_eq!(
            answer.seen("x-visible"),
            vec!["yes"],
            "end-to-end headers are inherited"
        );
    }
}

/// No input puts a CR or LF where it does not belong in the answer: bare CRs in a Content-ID or
/// a part header, CR/LF tricks in nested header values and targets. The answer stays strictly
/// framed, every part has only its two allowed headers, and no injected header shows up.
#[tokio::test]
async fn no_input_injects_cr_or_lf_into_the_response() {
    let (addr, _probe) = start(BatchLayer::new()).await;
    let body = envelope(&[
        "--b\r\nContent-Type: application/http\r\nContent-ID: <a\rb>\r\n\r\nGET /echo HTTP/1.1\r\n\r\n\r\n".to_owned(),
        "--b\r\nContent-Type: application/http\r\nContent-ID: <c>\rX-Injected: cid\r\n\r\nGET /echo HTTP/1.1\r\n\r\n\r\n".to_owned(),
        "--b\r\nContent-Type: application/http\rX-Injected: ct\r\nContent-ID: <d>\r\n\r\nGET /echo HTTP/1.1\r\n\r\n\r\n".to_owned(),
        part("e", "GET /echo HTTP/1.1\r\nX-A: v\rX-Injected: value\r\n\r\n"),
        part("f", "GET /echo\rX-Injected: target HTTP/1.1\r\n\r\n"),
        part("g", "GET /echo HTTP/1.1\r\nX-A: v\nX-Injected: lf\r\n\r\n"),
        part("h", "GET /echo HTTP/1.1\r\nX-A: reflected\r\n\r\n"),
    ]);
    let reply = post_batch(addr, &[], body).await;
    // `answers` checks the framing strictly: CRLF only, and only Content-Type / Content-ID.
    let answers = parts_of(&reply);
    assert_eq!(answers.len(), 7);
    for answer in &answers {
        assert!(
            !answer.headers.contains_key("x-injected"),
            "injected header in {answer:?}"
        );
        for (_, value) in &answer.part_headers {
            assert!(
                !value.contains("Injected"),
                "injected text in a part header: {value}"
            );
        }
    }
    assert_eq!(
        (answers[0].status, answers[1].status),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(
        answers[0].content_id(),
        None,
        "a Content-ID with a CR is not echoed"
    );
    assert_eq!(
        answers[1].content_id(),
        None,
        "a Content-ID with a CR is not echoed"
    );
    assert_eq!(
        answers[2].status, 400,
        "a part content type with a CR is not application/http"
    );
    assert_eq!(answers[3].status, 400);
    assert_eq!(answers[4].status, 400);
    assert_eq!(answers[6].status, 200);
    assert_eq!(answers[6].headers["x-echo-a"], "reflected");
    // A bare LF ends the header line (tolerant reader); the item runs with two plain headers,
    // and the answer is still framed with CRLF only.
    if answers[5].status == 200 {
        assert_eq!(answers[5].seen("x-a"), vec!["v"]);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Auth policy
// ---------------------------------------------------------------------------------------------

fn token_batch(n: usize) -> String {
    let parts: Vec<String> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                part(
                    &i.to_string(),
                    &format!("GET /echo HTTP/1.1\r\nAuthorization: Bearer item-{i}\r\n\r\n"),
                )
            } else {
                get_part(&i.to_string(), "/echo")
            }
        })
        .collect();
    envelope(&parts)
}

/// Default policy: the outer `Authorization` reaches items, an item's own replaces it for that
/// item only, and no item ever sees a sibling's credentials, with items running concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_inherit_or_override_authorization_and_never_see_a_siblings() {
    let (addr, _probe) = start(BatchLayer::new().concurrency(8)).await;
    let n = 24;
    let with_outer =
        parts_of(&post_batch(addr, &[("authorization", "Bearer outer")], token_batch(n)).await);
    let without_outer = parts_of(&post_batch(addr, &[], token_batch(n)).await);
    for i in 0..n {
        let own = format!("Bearer item-{i}");
        if i % 2 == 0 {
            assert_eq!(
                with_outer[i].seen("authorization"),
                vec![own.clone()],
                "item {i}"
            );
            assert_eq!(
                without_outer[i].seen("authorization"),
                vec![own],
                "item {i}"
            );
        } else {
            assert_eq!(
                with_outer[i].seen("authorization"),
                vec!["Bearer outer"],
                "item {i}"
            );
            assert!(
                without_outer[i].seen("authorization").is_empty(),
                "item {i} saw credentials"
            );
        }
    }
}

#[tokio::test]
async fn outer_only_refuses_items_with_their_own_authorization() {
    let (addr, probe) = start(BatchLayer::new().auth_policy(AuthPolicy::OuterOnly)).await;
    let answers =
        parts_of(&post_batch(addr, &[("authorization", "Bearer outer")], token_batch(4)).await);
    assert_eq!(statuses(&answers), vec![400, 200, 400, 200]);
    assert!(
        answers[0].message().contains("Authorization"),
        "{}",
        answers[0].message()
    );
    assert_eq!(answers[1].seen("authorization"), vec!["Bearer outer"]);
    assert_eq!(answers[3].seen("authorization"), vec!["Bearer outer"]);
    assert_eq!(probe.calls(), 2);
}

// ---------------------------------------------------------------------------------------------
// 6. Resource exhaustion
// ---------------------------------------------------------------------------------------------

#[test]
fn limits_are_finite_by_default_and_builders_change_them() {
    let d = Limits::default();
    let sizes = [
        ("max_items", d.get_max_items(), 100_000),
        ("max_body_bytes", d.get_max_body_bytes(), 1 << 30),
        ("max_part_bytes", d.get_max_part_bytes(), 1 << 30),
        ("max_headers", d.get_max_headers(), 10_000),
        ("max_header_bytes", d.get_max_header_bytes(), 1 << 20),
        (
            "max_item_response_bytes",
            d.get_max_item_response_bytes(),
            1 << 30,
        ),
        ("max_response_bytes", d.get_max_response_bytes(), 1 << 30),
    ];
    for (name, value, bound) in sizes {
        assert!(
            value > 0 && value <= bound,
            "{name} = {value} is not a finite, sane default"
        );
    }
    assert!(d.get_max_part_bytes() <= d.get_max_body_bytes());
    assert!(d.get_max_item_response_bytes() <= d.get_max_response_bytes());
    let t = d.get_read_timeout();
    assert!(
        t > Duration::ZERO && t <= Duration::from_secs(300),
        "read timeout {t:?}"
    );

    let c = Limits::default()
        .max_items(7)
        .max_body_bytes(8)
        .max_part_bytes(9)
        .max_headers(10)
        .max_header_bytes(11)
        .max_item_response_bytes(12)
        .max_response_bytes(13)
        .read_timeout(Duration::from_millis(14));
    assert_eq!(
        (
            c.get_max_items(),
            c.get_max_body_bytes(),
            c.get_max_part_bytes(),
            c.get_max_headers(),
            c.get_max_header_bytes()
        ),
        (7, 8, 9, 10, 11)
    );
    assert_eq!(
        (c.get_max_item_response_bytes(), c.get_max_response_bytes()),
        (12, 13)
    );
    assert_eq!(c.get_read_timeout(), Duration::from_millis(14));

    let layer = BatchLayer::new()
        .max_items(7)
        .max_body_bytes(8)
        .max_part_bytes(9)
        .max_headers(10)
        .max_header_bytes(11)
        .max_item_response_bytes(12)
        .max_response_bytes(13)
        .read_timeout(Duration::from_millis(14));
    assert_eq!(layer.current_limits(), &c);
    assert_eq!(BatchLayer::new().limits(c.clone()).current_limits(), &c);
    assert_eq!(BatchLayer::new().current_limits(), &d);
}

/// Writes a request head and body in one write, then reads the answer.
async fn raw_exchange(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(body);
    // The server may answer and close before reading all of it; that is its right.
    let _ = stream.write_all(&bytes).await;
    read_raw_response(&mut stream).await
}

#[tokio::test]
async fn body_over_the_limit_is_413_with_or_without_content_length() {
    let (addr, probe) = start(BatchLayer::new().max_body_bytes(1000)).await;
    let parts: Vec<String> = (0..60).map(|i| get_part(&i.to_string(), "/echo")).collect();
    let body = envelope(&parts);
    assert!(body.len() > 2000 && body.len() < 6000);

    let head = format!(
        "POST /batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {CT}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let reply = raw_exchange(addr, &head, body.as_bytes()).await;
    let v = assert_batch_error(&reply, 413, "BODY_TOO_LARGE");
    assert_eq!(v["error"]["limit"], 1000);

    // Chunked, so the size is only known by reading: the limit still holds.
    let head = format!(
        "POST /batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {CT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut chunked = Vec::new();
    for chunk in body.as_bytes().chunks(300) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = raw_exchange(addr, &head, &chunked).await;
    let v = assert_batch_error(&reply, 413, "BODY_TOO_LARGE");
    assert_eq!(v["error"]["limit"], 1000);
    assert_eq!(probe.calls(), 0);

    // Under the limit, the same chunked framing is served.
    let small = envelope(&parts[..3]);
    let reply = raw_exchange(
        addr,
        &head,
        format!("{:x}\r\n{small}\r\n0\r\n\r\n", small.len()).as_bytes(),
    )
    .await;
    assert_eq!(statuses(&parts_of(&reply)), vec![200; 3]);
}

#[tokio::test]
async fn too_many_parts_is_413_naming_count_and_limit() {
    let (addr, probe) = start(BatchLayer::new().max_items(3)).await;
    let parts: Vec<String> = (0..5).map(|i| get_part(&i.to_string(), "/echo")).collect();
    let reply = post_batch(addr, &[], envelope(&parts)).await;
    let v = assert_batch_error(&reply, 413, "TOO_MANY_ITEMS");
    assert_eq!(v["error"]["count"], 5);
    assert_eq!(v["error"]["limit"], 3);
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains('5') && message.contains('3'), "{message}");
    assert_eq!(probe.calls(), 0);

    let reply = post_batch(addr, &[], envelope(&parts[..3])).await;
    assert_eq!(statuses(&parts_of(&reply)), vec![200; 3]);
}

#[tokio::test]
async fn part_over_the_limit_is_413() {
    let (addr, probe) = start(BatchLayer::new().max_part_bytes(300)).await;
    let payload = "y".repeat(400);
    let big = part(
        "big",
        &format!("POST /echo HTTP/1.1\r\nContent-Length: 400\r\n\r\n{payload}"),
    );
    let reply = post_batch(addr, &[], envelope(&[get_part("a", "/echo"), big])).await;
    let v = assert_batch_error(&reply, 413, "PART_TOO_LARGE");
    assert_eq!(v["error"]["limit"], 300);
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("300"), "{message}");
    assert_eq!(probe.calls(), 0);
}

#[tokio::test]
async fn nested_head_too_large_is_431_for_that_item() {
    let (addr, probe) = start(BatchLayer::new().max_header_bytes(1024)).await;
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long = format!("X-Long: {}\r\n", "z".repeat(2000));
    let body = envelope(&[
        part("many", &format!("GET /echo HTTP/1.1\r\n{many}\r\n")),
        get_part("ok", "/echo"),
        part("long", &format!("GET /echo HTTP/1.1\r\n{long}\r\n")),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![431, 200, 431]);
    assert!(
        answers[0].message().contains("64"),
        "{}",
        answers[0].message()
    );
    assert!(
        answers[2].message().contains("1024"),
        "{}",
        answers[2].message()
    );
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn item_response_over_the_limit_is_502_and_others_are_kept() {
    let (addr, _probe) = start(BatchLayer::new().max_item_response_bytes(1000)).await;
    let body = envelope(&[
        get_part("small", "/big?n=10"),
        get_part("huge", "/big?n=5000"),
        get_part("exact", "/big?n=1000"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![200, 502, 200]);
    assert_eq!(answers[0].text(), "x".repeat(10));
    assert!(
        answers[1].message().contains("1000"),
        "{}",
        answers[1].message()
    );
    assert_eq!(answers[2].body.len(), 1000);
}

/// Past the whole-response limit the remaining items are answered 507 and the answer stays
/// well formed; what was sent before the limit is within it.
#[tokio::test]
async fn response_over_the_limit_turns_later_items_into_507() {
    let limit = 8000;
    let (addr, _probe) = start(BatchLayer::new().max_response_bytes(limit)).await;
    let parts: Vec<String> = (0..6)
        .map(|i| get_part(&i.to_string(), "/big?n=2000"))
        .collect();
    let reply = post_batch(addr, &[], envelope(&parts)).await;
    let answers = parts_of(&reply);
    let codes = statuses(&answers);
    assert_eq!(codes.len(), 6);
    let first_507 = codes
        .iter()
        .position(|c| *c == 507)
        .expect("some item is over the limit");
    assert!(first_507 >= 1, "the first items fit: {codes:?}");
    assert!(codes[..first_507].iter().all(|c| *c == 200), "{codes:?}");
    assert!(codes[first_507..].iter().all(|c| *c == 507), "{codes:?}");
    assert!(
        answers[first_507].message().contains("8000"),
        "{}",
        answers[first_507].message()
    );

    // Everything up to the end of the last full answer fits the limit.
    let last_full = "x".repeat(2000);
    let mut end = 0;
    for _ in 0..first_507 {
        end += memchr::memmem::find(&reply.body[end..], last_full.as_bytes()).expect("full body")
            + 2000;
    }
    assert!(
        end <= limit,
        "{end} bytes of full answers exceed the limit {limit}"
    );
}

/// A client that trickles its body is cut off with `408` once the read timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_client_gets_408() {
    let (addr, probe) = start(BatchLayer::new().read_timeout(Duration::from_millis(300))).await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {CT}\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.expect("head");
    let writer = tokio::spawn(async move {
        // 5 bytes every 100 ms would take 40 s for the whole body; stop after 10 s at most.
        for _ in 0..100 {
            if write.write_all(b"--b\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let reply = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(reply) = parse_raw_response(&buf) {
                return reply;
            }
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!(
                    "connection closed before a full answer: {}",
                    String::from_utf8_lossy(&buf)
                ),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("answered while the client was still trickling");
    writer.abort();
    let v = assert_batch_error(&reply, 408, "READ_TIMEOUT");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("300"),
        "{v}"
    );
    assert_eq!(probe.calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// 7. Time
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn item_timeout_answers_the_slow_item_504_and_keeps_the_rest() {
    let (addr, _probe) = start(BatchLayer::new().item_timeout(Duration::from_millis(250))).await;
    let body = envelope(&[
        get_part("a", "/echo"),
        get_part("slow", "/slow?ms=30000"),
        get_part("z", "/echo"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![200, 504, 200]);
    assert!(
        answers[1].message().contains("250"),
        "{}",
        answers[1].message()
    );
}

#[tokio::test]
async fn batch_timeout_answers_unfinished_items_504_and_keeps_finished_ones() {
    let (addr, _probe) = start(BatchLayer::new().batch_timeout(Duration::from_millis(1000))).await;
    let body = envelope(&[
        get_part("a", "/echo"),
        get_part("slow", "/slow?ms=30000"),
        get_part("b", "/echo"),
        get_part("slow2", "/slow?ms=30000"),
        get_part("c", "/echo"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body).await);
    assert_eq!(statuses(&answers), vec![200, 504, 200, 504, 200]);
    assert!(
        answers[1].message().contains("deadline"),
        "{}",
        answers[1].message()
    );
    assert_eq!(answers[4].content_id(), Some("<response-c>"));
}

// ---------------------------------------------------------------------------------------------
// 8. Panics and cancellation
// ---------------------------------------------------------------------------------------------

async fn panic_isolation(execution: Execution) {
    let (addr, probe) = start(BatchLayer::new().execution(execution)).await;
    let body = envelope(&[
        get_part("a", "/echo"),
        get_part("p", "/panic"),
        get_part("z", "/echo"),
    ]);
    let answers = parts_of(&post_batch(addr, &[], body.clone()).await);
    assert_eq!(statuses(&answers), vec![200, 500, 200]);
    assert!(
        answers[1].message().contains("panicked"),
        "{}",
        answers[1].message()
    );
    assert_eq!(probe.calls(), 3);

    // The server is still up, for direct calls and for batches.
    assert_eq!(send(addr, Method::GET, "/echo", &[], "").await.status, 200);
    assert_eq!(
        statuses(&parts_of(&post_batch(addr, &[], body).await)),
        vec![200, 500, 200]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_item_is_500_and_the_rest_complete_polled() {
    panic_isolation(Execution::Polled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_item_is_500_and_the_rest_complete_spawned() {
    panic_isolation(Execution::Spawned).await;
}

/// A client that disconnects mid-batch takes its in-flight items with it: none of them gets to
/// finish its work.
async fn disconnect_drops_items(execution: Execution) {
    let (addr, probe) = start(BatchLayer::new().execution(execution)).await;
    // Eight items: enough for `Spawned` to share them out between two workers.
    let n = 8;
    let parts: Vec<String> = (0..n)
        .map(|i| get_part(&i.to_string(), "/cancel"))
        .collect();
    let body = envelope(&parts);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {CT}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut first = [0u8; 12];
    stream
        .read_exact(&mut first)
        .await
        .expect("the answer starts");
    assert_eq!(&first, b"HTTP/1.1 200");
    let started = probe.started.clone();
    eventually("every item started", || started.load(Ordering::SeqCst) == n).await;
    drop(stream);

    // Each item would finish 1.5 s after it started; wait past that.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(probe.started.load(Ordering::SeqCst), n);
    assert_eq!(
        probe.completed.load(Ordering::SeqCst),
        0,
        "items kept running after the client went away"
    );
    assert_eq!(
        send(addr, Method::GET, "/echo", &[], "").await.status,
        200,
        "server still up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_drops_items_polled() {
    disconnect_drops_items(Execution::Polled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_drops_items_spawned() {
    disconnect_drops_items(Execution::Spawned).await;
}

/// `Execution::Spawned` spreads one batch over the runtime's worker threads, in groups of items.
/// (`Execution::Polled` runs the items inside the task that polls the response body; that task
/// may still move between workers, so there is nothing to assert for it.)
async fn worker_threads_used(execution: Execution) -> usize {
    let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let seen = threads.clone();
    let api = Router::new().route(
        "/work",
        get(move || {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().insert(std::thread::current().id());
                // Hold the thread, as a CPU-bound handler would, so that a second worker has
                // time to take the next group.
                std::thread::sleep(Duration::from_millis(20));
                "done"
            }
        }),
    );
    let addr = serve(
        BatchLayer::new()
            .concurrency(16)
            .execution(execution)
            .wrap_router(api),
    )
    .await;
    let parts: Vec<String> = (0..32).map(|i| get_part(&i.to_string(), "/work")).collect();
    let answers = parts_of(&post_batch(addr, &[], envelope(&parts)).await);
    assert_eq!(statuses(&answers), vec![200; 32]);
    let n = threads.lock().unwrap().len();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_items_run_on_every_worker() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        assert_eq!(worker_threads_used(Execution::Spawned).await, 2);
    }
}

/// `Execution::Spawned` shares a batch out in blocks between the body's task and lanes of their
/// own: every item still answers once, in request order, whichever share ran it, and with
/// handlers that finish out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_batch_answers_every_item_in_order_across_shares() {
    let (addr, probe) = start(BatchLayer::new().execution(Execution::Spawned)).await;
    // 300 items make several rounds of blocks; the delays make later items finish first.
    let parts: Vec<String> = (0..300)
        .map(|i| match i % 3 {
            0 => get_part(&format!("i{i}"), &format!("/slow?ms={}", (i * 7) % 11)),
            _ => get_part(&format!("i{i}"), &format!("/echo?n={i}")),
        })
        .collect();
    let answers = parts_of(&post_batch(addr, &[], envelope(&parts)).await);
    assert_eq!(answers.len(), 300);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "item {i}");
        let id = format!("<response-i{i}>");
        assert_eq!(answer.content_id(), Some(id.as_str()));
        if i % 3 != 0 {
            assert_eq!(answer.json()["query"], format!("n={i}"), "item {i}");
        }
    }
    assert_eq!(probe.calls(), 300);
}

/// The batch's concurrency bounds the items running at once over all shares together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_batch_keeps_to_its_concurrency() {
    let (addr, probe) = start(
        BatchLayer::new()
            .concurrency(4)
            .execution(Execution::Spawned),
    )
    .await;
    let parts: Vec<String> = (0..64)
        .map(|i| get_part(&i.to_string(), "/slow?ms=5"))
        .collect();
    let answers = parts_of(&post_batch(addr, &[], envelope(&parts)).await);
    assert_eq!(statuses(&answers), vec![200; 64]);
    let max = probe.max_in_flight.load(Ordering::SeqCst);
    assert!(
        max <= 4,
        "{max} items ran at once, over the concurrency of 4"
    );
    assert!(
        max >= 2,
        "the shares never overlapped ({max} at most at once)"
    );
}

/// A passed batch deadline answers 504 for unfinished items in every share, and stops the lanes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_batch_deadline_answers_unfinished_items_in_every_share() {
    let (addr, probe) = start(
        BatchLayer::new()
            .execution(Execution::Spawned)
            .batch_timeout(Duration::from_millis(500)),
    )
    .await;
    // 40 items: the first share runs the first ones, a lane the later ones. One slow item in
    // each.
    let parts: Vec<String> = (0..40)
        .map(|i| match i {
            3 | 35 => get_part(&i.to_string(), "/cancel"),
            _ => get_part(&i.to_string(), "/echo"),
        })
        .collect();
    let started = std::time::Instant::now();
    let answers = parts_of(&post_batch(addr, &[], envelope(&parts)).await);
    let mut expected = vec![200; 40];
    expected[3] = 504;
    expected[35] = 504;
    assert_eq!(statuses(&answers), expected);
    assert!(answers[35].message().contains("deadline"));
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "the batch waited for its slow items"
    );
    // The cancelled items never complete, in the lane either.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(probe.started.load(Ordering::SeqCst), 2);
    assert_eq!(probe.completed.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------------
// 9. Duplicate Content-IDs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_content_ids_reject_the_whole_batch() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let body = envelope(&[
        get_part("item-7", "/echo"),
        get_part("other", "/echo"),
        get_part("item-7", "/echo"),
    ]);
    let v = assert_batch_error(&post_batch(addr, &[], body).await, 400, "DUPLICATE_ID");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("item-7"),
        "{v}"
    );

    // `<x>` and a bare `x` are the same id.
    let bare = "--b\r\nContent-Type: application/http\r\nContent-ID: item-8\r\n\r\nGET /echo HTTP/1.1\r\n\r\n\r\n".to_owned();
    let body = envelope(&[get_part("item-8", "/echo"), bare]);
    let v = assert_batch_error(&post_batch(addr, &[], body).await, 400, "DUPLICATE_ID");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("item-8"),
        "{v}"
    );
    assert_eq!(probe.calls(), 0, "no item of a refused batch ran");
}

// ---------------------------------------------------------------------------------------------
// Every batch-level 4xx is JSON with a message in words
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn batch_level_errors_are_json_with_a_message() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let ok = envelope(&[get_part("1", "/echo")]);
    // RFC 2046 caps a boundary at 70 characters.
    let long_boundary = format!("multipart/mixed; boundary={}", "b".repeat(71));
    let cases: Vec<(Method, Option<&str>, String, u16, &str)> = vec![
        (Method::GET, None, String::new(), 405, "METHOD_NOT_ALLOWED"),
        (
            Method::POST,
            None,
            ok.clone(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            Method::POST,
            Some("text/plain"),
            ok.clone(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            Method::POST,
            Some("multipart/mixed"),
            ok.clone(),
            400,
            "MISSING_BOUNDARY",
        ),
        (
            Method::POST,
            Some(long_boundary.as_str()),
            ok.clone(),
            400,
            "INVALID_BOUNDARY",
        ),
        (
            Method::POST,
            Some(CT),
            "no delimiter here".into(),
            400,
            "BROKEN_FRAMING",
        ),
        (
            Method::POST,
            Some(CT),
            "--b\r\nGET /echo\r\n".into(),
            400,
            "BROKEN_FRAMING",
        ),
        (
            Method::POST,
            Some(CT),
            "--b--\r\n".into(),
            400,
            "EMPTY_BATCH",
        ),
        (
            Method::POST,
            Some("application/json"),
            "{not json".into(),
            400,
            "MALFORMED_BATCH",
        ),
    ];
    for (method, ct, body, status, kind) in cases {
        let headers: Vec<(&str, &str)> = ct.map(|ct| ("content-type", ct)).into_iter().collect();
        let reply = send(addr, method.clone(), "/batch", &headers, body).await;
        assert_batch_error(&reply, status, kind);
        if status == 405 {
            assert_eq!(reply.headers["allow"], "POST, OPTIONS");
        }
    }
    assert_eq!(probe.calls(), 0);
}
