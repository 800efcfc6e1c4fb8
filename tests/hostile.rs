//! Hostile input, one test per defence: time linear in the input, memory bounded by the body and
//! a byte budget, every limit in every format, no panic, pinned headers, and policies that see
//! the path the inner service sees.
//!
//! Every test talks HTTP/1.1 over a real socket to a server in this process. Tests of memory run
//! the server and the client on one current-thread runtime and read a per-thread allocation
//! counter, so that other tests running at the same time do not disturb the figures.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_batch::{AuthPolicy, BatchLayer, Execution};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tower::Layer;

mod support;
use support::serve;

#[global_allocator]
static ALLOC: support::counting::Counting = support::counting::Counting;

use support::counting::{peak_growth, reset_peak};

// ---------------------------------------------------------------------------------------------
// The app, the server, and JSON batches
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Probe {
    calls: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    created: Arc<Mutex<HashSet<String>>>,
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn ok(State(p): State<Probe>) -> StatusCode {
    p.calls.fetch_add(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn named(State(p): State<Probe>, Path(name): Path<String>) -> String {
    p.calls.fetch_add(1, Ordering::SeqCst);
    name
}

async fn big(State(p): State<Probe>, Path(kib): Path<usize>) -> Vec<u8> {
    p.calls.fetch_add(1, Ordering::SeqCst);
    p.started.fetch_add(1, Ordering::SeqCst);
    vec![b'x'; kib * 1024]
}

/// Sleeps for `ms`, counted as in flight until it ends or is dropped; answers with how many
/// `big` handlers had started by then.
async fn slow(State(p): State<Probe>, Path(ms): Path<u64>) -> String {
    p.calls.fetch_add(1, Ordering::SeqCst);
    p.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(p.in_flight.clone());
    tokio::time::sleep(Duration::from_millis(ms)).await;
    p.started.load(Ordering::SeqCst).to_string()
}

/// Waits `ms`, counted as in flight until it answers or is dropped, then answers `kib` KiB.
async fn slowbig(State(p): State<Probe>, Path((ms, kib)): Path<(u64, usize)>) -> Vec<u8> {
    p.calls.fetch_add(1, Ordering::SeqCst);
    p.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(p.in_flight.clone());
    tokio::time::sleep(Duration::from_millis(ms)).await;
    vec![b'x'; kib * 1024]
}

async fn create(State(p): State<Probe>, Path(name): Path<String>) -> impl IntoResponse {
    p.calls.fetch_add(1, Ordering::SeqCst);
    p.created.lock().unwrap().insert(name.clone());
    (StatusCode::CREATED, "y".repeat(400) + &name)
}

async fn whoami(State(p): State<Probe>, headers: HeaderMap) -> axum::Json<Value> {
    p.calls.fetch_add(1, Ordering::SeqCst);
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    axum::Json(json!({
        "user": h("x-forwarded-user"),
        "ip": h("x-real-ip"),
        "cookie": h("cookie"),
        "forwarded": h("forwarded"),
    }))
}

fn app(probe: Probe) -> Router {
    Router::new()
        .route("/ok", any(ok))
        .route("/big/{kib}", get(big))
        .route("/slow/{ms}", get(slow))
        .route("/slowbig/{ms}/{kib}", get(slowbig))
        .route("/animals/{name}", post(create))
        .route("/whoami", get(whoami))
        .route("/admin/{name}", get(named))
        .route("/administrator", get(ok))
        .route("/users/{name}", get(named))
        .route("/v1/expensive", get(ok))
        .with_state(probe)
}

async fn start(layer: BatchLayer) -> (SocketAddr, Probe) {
    let probe = Probe::default();
    let addr = serve(layer.wrap_router(app(probe.clone()))).await;
    (addr, probe)
}

fn item(id: impl ToString, method: &str, url: &str) -> Value {
    json!({"id": id.to_string(), "method": method, "url": url})
}

async fn post_json(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> support::Raw {
    support::post(addr, path, "application/json", body, &[]).await
}

/// The answers of a JSON batch, by id: (status, body as JSON or text).
fn answers(raw: &support::Raw) -> HashMap<String, (u16, Value)> {
    assert_eq!(raw.status, 200, "batch status: {}", raw.text());
    raw.json()["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                (r["status"].as_u64().unwrap() as u16, r["body"].clone()),
            )
        })
        .collect()
}

fn message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or("").to_owned()
}

// ---------------------------------------------------------------------------------------------
// 1. Query merge
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn outer_and_item_queries_merge_in_linear_time() {
    let (addr, probe) = start(BatchLayer::new().max_items(1000)).await;
    // Each query is about 24 KB, so that the merged one stays under `http`'s URI limit (64 KB).
    let query = |prefix: &str| {
        (0..3000)
            .map(|i| format!("{prefix}{i:04}=1"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let outer = query("o");
    let url = format!("/ok?{}", query("i"));
    let items: Vec<Value> = (0..400).map(|i| item(i, "GET", &url)).collect();
    let body = json!({ "requests": items }).to_string();
    let started = Instant::now();
    let raw = post_json(addr, &format!("/batch?{outer}"), body).await;
    let took = started.elapsed();
    let answers = answers(&raw);
    assert!(
        answers.values().all(|(s, _)| *s == 204),
        "{:?}",
        answers.get("0")
    );
    assert_eq!(probe.calls.load(Ordering::SeqCst), 400);
    // Linear: a few hundred milliseconds in a debug build. The nested scan took tens of seconds.
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// 2. The JSON envelope is counted while it is read
// ---------------------------------------------------------------------------------------------

#[test]
fn json_requests_are_counted_while_they_are_read() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (addr, probe) = start(BatchLayer::new()).await;
        // 16 MiB minus a little: millions of empty requests.
        let mut body = String::with_capacity(16 * 1024 * 1024);
        body.push_str("{\"requests\":[{}");
        let mut requests = 1;
        while body.len() < 16 * 1024 * 1024 - 16 {
            body.push_str(",{}");
            requests += 1;
        }
        body.push_str("]}");
        let body = Bytes::from(body);
        let len = body.len();
        let base = reset_peak();
        let raw = post_json(addr, "/batch", body).await;
        let peak = peak_growth(base);
        assert_eq!(raw.status, 413, "{}", raw.text());
        assert_eq!(raw.json()["error"]["reason"], "TOO_MANY_ITEMS");
        // Past the limit they are counted, not kept: the answer says how many there were.
        assert_eq!(raw.json()["error"]["count"], requests, "{}", raw.text());
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
        // The body is read whole (and copied once); nothing grows with the number of requests.
        assert!(
            peak < 4 * len,
            "peak heap grew by {} MiB for a {} MiB body",
            peak >> 20,
            len >> 20
        );
    });
}

// ---------------------------------------------------------------------------------------------
// 3. Held answers are counted in bytes, with or without dependencies, in both modes
// ---------------------------------------------------------------------------------------------

/// Item 0 is slow; the 120 after it answer 256 KiB each at once. The slow item reports how many
/// of them had started by the time it finished: those answers were all held in memory.
async fn started_behind_a_slow_item(layer: BatchLayer, with_edge: bool) -> usize {
    let (addr, _probe) = start(layer.max_held_bytes(2 * 1024 * 1024)).await;
    let mut items = vec![item(0, "GET", "/slow/600")];
    for i in 1..=120 {
        items.push(item(i, "GET", "/big/256"));
    }
    if with_edge {
        items[120]["dependsOn"] = json!(["1"]);
    }
    let raw = post_json(addr, "/batch", json!({ "requests": items }).to_string()).await;
    let answers = answers(&raw);
    assert_eq!(answers.len(), 121);
    assert!(
        answers.values().all(|(s, _)| *s == 200),
        "every item runs, in its turn"
    );
    answers["0"].1.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dependency_edge_does_not_lift_the_held_bytes_budget() {
    // 2 MiB of held answers is 8 of 256 KiB; 16 more may be running.
    let polled = started_behind_a_slow_item(BatchLayer::new(), true).await;
    assert!(
        polled <= 40,
        "{polled} answers were started behind the slow item"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_lanes_keep_to_the_held_bytes_budget() {
    let spawned =
        started_behind_a_slow_item(BatchLayer::new().execution(Execution::Spawned), false).await;
    assert!(
        spawned <= 40,
        "{spawned} answers were started behind the slow item"
    );
    let polled = started_behind_a_slow_item(BatchLayer::new(), false).await;
    assert!(
        polled <= 40,
        "{polled} answers were started behind the slow item"
    );
}

/// At the batch deadline an item still waiting to start is answered "not run", and one that was
/// running "may have taken effect": a client needs to know which it may simply send again.
#[tokio::test]
async fn a_batch_deadline_says_which_items_never_started() {
    let layer = BatchLayer::new()
        .concurrency(1)
        .batch_timeout(Duration::from_millis(300));
    let (addr, probe) = start(layer).await;
    let items = vec![
        item(0, "GET", "/ok"),
        item(1, "GET", "/slow/5000"),
        item(2, "POST", "/animals/late"),
        item(3, "POST", "/animals/later"),
    ];
    let raw = post_json(addr, "/batch", json!({ "requests": items }).to_string()).await;
    let answers = answers(&raw);
    assert_eq!(answers["0"].0, 204);
    assert_eq!(answers["1"].0, 504);
    assert!(
        message(&answers["1"].1).contains("while this item was running"),
        "{:?}",
        answers["1"]
    );
    for id in ["2", "3"] {
        assert_eq!(answers[id].0, 504);
        let msg = message(&answers[id].1);
        assert!(
            msg.contains("before this item started, so it was not run"),
            "{id}: {msg}"
        );
    }
    // True to their words: of the two POSTs, neither ran.
    assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_item_that_could_never_be_held_is_answered_and_not_run() {
    // The first item waits on the last; everything between is held, and the budget runs out.
    let (addr, probe) = start(BatchLayer::new().max_held_bytes(1024 * 1024).concurrency(4)).await;
    let mut items = vec![item(0, "GET", "/ok")];
    items[0]["dependsOn"] = json!(["40"]);
    for i in 1..=40 {
        items.push(item(i, "GET", "/big/256"));
    }
    let raw = post_json(addr, "/batch", json!({ "requests": items }).to_string()).await;
    let answers = answers(&raw);
    let not_run: Vec<_> = answers
        .iter()
        .filter(|(_, (s, _))| *s == 507)
        .map(|(id, (_, b))| (id.clone(), message(b)))
        .collect();
    assert!(!not_run.is_empty(), "the budget was never reached");
    for (id, msg) in &not_run {
        assert!(msg.contains("not run"), "{id}: {msg}");
    }
    let ran = answers.values().filter(|(s, _)| *s == 200).count();
    assert_eq!(probe.calls.load(Ordering::SeqCst), ran);
}

// ---------------------------------------------------------------------------------------------
// 4. A client that stops reading
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_ends_the_batch() {
    let (addr, probe) = start(BatchLayer::new().stall_timeout(Duration::from_millis(500))).await;
    // 50 MiB of answers, each after a short wait, so that items are always in flight.
    let items: Vec<Value> = (0..200)
        .map(|i| item(i, "GET", "/slowbig/50/256"))
        .collect();
    let body = json!({ "requests": items }).to_string();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let head = format!(
        "POST /batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    // Never read. Items run until the answer stalls; then, after the stall timeout, the ones in
    // flight are dropped and nothing more runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    while probe.calls.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while probe.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        probe.in_flight.load(Ordering::SeqCst),
        0,
        "the items of a stalled batch are dropped"
    );
    let calls = probe.calls.load(Ordering::SeqCst);
    assert!(
        calls < 200,
        "every item ran for a client that reads nothing"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        probe.calls.load(Ordering::SeqCst),
        calls,
        "nothing more runs"
    );
    // Reading again, the client finds the answer cut off: no last chunk, and the connection
    // closed, so neither it nor a proxy can take the part it got for a whole answer.
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection of a cut-off answer is closed");
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &got[..got.len().min(100)]
    );
    assert!(
        !got.ends_with(b"\r\n0\r\n\r\n"),
        "a cut-off answer ends with the last chunk, as a whole one would"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Pinned headers
// ---------------------------------------------------------------------------------------------

/// A front proxy: strips what the client claims and says who it is.
async fn proxy(mut req: Request, next: Next) -> Response {
    let headers = req.headers_mut();
    headers.remove("x-forwarded-user");
    headers.insert("x-forwarded-user", HeaderValue::from_static("alice"));
    headers.insert("x-real-ip", HeaderValue::from_static("10.0.0.1"));
    next.run(req).await
}

/// Three calls per client address.
async fn rate_limit(
    State(seen): State<Arc<Mutex<HashMap<String, usize>>>>,
    req: Request,
    next: Next,
) -> Response {
    let ip = req
        .headers()
        .get("x-real-ip")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let n = {
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(ip).or_default();
        *n += 1;
        *n
    };
    if n > 3 {
        return StatusCode::TOO_MANY_REQUESTS.into_response();
    }
    next.run(req).await
}

#[tokio::test]
async fn items_cannot_set_the_headers_a_front_proxy_sets() {
    let probe = Probe::default();
    let limits = Arc::new(Mutex::new(HashMap::new()));
    let inner = app(probe.clone()).layer(middleware::from_fn_with_state(limits, rate_limit));
    let batched = BatchLayer::new()
        .auth_policy(AuthPolicy::OuterOnly)
        .layer(inner);
    let router = Router::new()
        .fallback_service(batched)
        .layer(middleware::from_fn(proxy));
    let addr = serve(router).await;
    let items: Vec<Value> = (0..6)
        .map(|i| {
            json!({"id": i.to_string(), "method": "GET", "url": "/whoami", "headers": {
                "x-forwarded-user": "admin",
                "x-real-ip": format!("192.0.2.{i}"),
                "forwarded": "for=192.0.2.9",
                "cookie": "session=stolen",
            }})
        })
        .collect();
    let raw = support::post(
        addr,
        "/batch",
        "application/json",
        json!({ "requests": items }).to_string(),
        &[("cookie", "session=mine")],
    )
    .await;
    let answers = answers(&raw);
    let mut allowed = 0;
    for (id, (status, body)) in &answers {
        if *status == 429 {
            continue;
        }
        assert_eq!(*status, 200, "{id}: {body}");
        allowed += 1;
        assert_eq!(body["user"], "alice", "{id}");
        assert_eq!(body["ip"], "10.0.0.1", "{id}");
        assert_eq!(body["forwarded"], Value::Null, "{id}");
        assert_eq!(body["cookie"], "session=mine", "{id}");
    }
    assert_eq!(allowed, 3, "one client, three calls");
}

// ---------------------------------------------------------------------------------------------
// 6, 7, 8. Headers: Connection lists, too many headers, per-item limits in JSON
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_long_connection_list_is_checked_in_linear_time() {
    let (addr, probe) = start(
        BatchLayer::new()
            .max_headers(20_000)
            .max_header_bytes(8 * 1024 * 1024)
            .max_part_bytes(8 * 1024 * 1024),
    )
    .await;
    let mut headers = serde_json::Map::new();
    for i in 0..10_000 {
        headers.insert(format!("x-h{i}"), json!("1"));
    }
    let listed: Vec<String> = (0..150_000).map(|i| format!("x-c{i}")).collect();
    headers.insert("connection".into(), json!(listed.join(",")));
    let body =
        json!({"requests": [{"id": "1", "method": "GET", "url": "/ok", "headers": headers}]});
    let started = Instant::now();
    let raw = post_json(addr, "/batch", body.to_string()).await;
    let took = started.elapsed();
    assert_eq!(answers(&raw)["1"].0, 204);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
    // Linear: well under a second in a debug build; the nested scan took about ten.
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test]
async fn an_item_with_more_headers_than_a_map_holds_is_answered_not_panicked() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let mut headers = serde_json::Map::new();
    for i in 0..33_000 {
        headers.insert(format!("x-{i}"), json!("1"));
    }
    let body = json!({"requests": [
        {"id": "many", "method": "GET", "url": "/ok", "headers": headers},
        {"id": "plain", "method": "GET", "url": "/ok"},
    ]});
    let raw = post_json(addr, "/batch", body.to_string()).await;
    let answers = answers(&raw);
    assert!(
        matches!(answers["many"].0, 400 | 431),
        "{:?}",
        answers["many"]
    );
    assert_eq!(answers["plain"].0, 204);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn json_items_are_held_to_the_header_and_part_limits() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let mut many = serde_json::Map::new();
    for i in 0..200 {
        many.insert(format!("x-{i}"), json!("1"));
    }
    let body = json!({"requests": [
        {"id": "many", "method": "GET", "url": "/ok", "headers": many},
        {"id": "long", "method": "GET", "url": "/ok", "headers": {"x-long": "a".repeat(1 << 20)}},
        {"id": "big", "method": "POST", "url": "/ok", "headers": {"content-type": "text/plain"},
         "body": "b".repeat(3 << 20)},
        {"id": "plain", "method": "GET", "url": "/ok"},
    ]});
    let raw = post_json(addr, "/batch", body.to_string()).await;
    let answers = answers(&raw);
    assert_eq!(answers["many"].0, 431, "{:?}", answers["many"]);
    assert_eq!(answers["long"].0, 431, "{:?}", answers["long"]);
    assert_eq!(answers["big"].0, 413, "{:?}", answers["big"]);
    assert_eq!(answers["plain"].0, 204);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// 9. Paths
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn path_policies_see_the_path_the_inner_service_sees() {
    let probe = Probe::default();
    let inner = tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash()
        .layer(app(probe.clone()));
    let batched = BatchLayer::new()
        .deny_path_prefixes(["/admin", "/users/root"])
        .layer(inner);
    let addr = serve(Router::new().fallback_service(batched)).await;
    let body = json!({"requests": [
        item("double", "GET", "//admin/x"),
        item("inner", "GET", "/admin//x"),
        item("encoded", "GET", "/users/%72oot"),
        item("slash", "GET", "/users%2Froot"),
        item("longer", "GET", "/administrator"),
        item("other", "GET", "/users/bob"),
    ]});
    let raw = post_json(addr, "/batch", body.to_string()).await;
    let answers = answers(&raw);
    assert_eq!(answers["double"].0, 403, "{:?}", answers["double"]);
    assert_eq!(answers["inner"].0, 403, "{:?}", answers["inner"]);
    assert_eq!(answers["encoded"].0, 403, "{:?}", answers["encoded"]);
    assert_eq!(answers["slash"].0, 400, "{:?}", answers["slash"]);
    // A prefix covers whole segments.
    assert_eq!(answers["longer"].0, 204, "{:?}", answers["longer"]);
    assert_eq!(answers["other"].0, 200);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// 10. The whole-answer limit is checked before an item runs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_item_answered_507_did_not_run() {
    let (addr, probe) = start(BatchLayer::new().max_response_bytes(4000).sequential()).await;
    let items: Vec<Value> = (0..12)
        .map(|i| item(i, "POST", &format!("/animals/a{i}")))
        .collect();
    let raw = post_json(addr, "/batch", json!({ "requests": items }).to_string()).await;
    let answers = answers(&raw);
    let created = probe.created.lock().unwrap().clone();
    let mut refused = 0;
    for i in 0..12 {
        let (status, body) = &answers[&i.to_string()];
        let ran = created.contains(&format!("a{i}"));
        match status {
            201 => assert!(ran),
            507 => {
                let msg = message(body);
                if ran {
                    assert!(msg.contains("ran"), "a{i} ran, but the answer says: {msg}");
                } else {
                    assert!(msg.contains("not run"), "a{i}: {msg}");
                    refused += 1;
                }
            }
            other => panic!("a{i}: {other}"),
        }
    }
    assert!(refused > 0, "the limit was never reached");
}

// ---------------------------------------------------------------------------------------------
// 11. Cost after the service root, nesting across layers, default ports
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_cost_budget_weighs_the_resolved_path() {
    let (addr, probe) = start(
        BatchLayer::new()
            .service_root("/v1")
            .cost_budget_with(50, |req| {
                if req.uri().path().starts_with("/v1/expensive") {
                    100
                } else {
                    1
                }
            }),
    )
    .await;
    let body = json!({"requests": [item("1", "GET", "/expensive")]});
    let raw = post_json(addr, "/batch", body.to_string()).await;
    assert_eq!(raw.status, 413, "{}", raw.text());
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_batch_inside_a_batch_is_nested_whichever_layer_serves_it() {
    let probe = Probe::default();
    let inner_batch = BatchLayer::new().any_path().layer(app(probe.clone()));
    let router = app(probe.clone()).route_service("/inner/batch", inner_batch);
    let addr = serve(BatchLayer::new().wrap_router(router)).await;
    let nested = json!({"requests": [item("n", "GET", "/ok")]});
    let body = json!({"requests": [{
        "id": "1", "method": "POST", "url": "/inner/batch",
        "headers": {"content-type": "application/json"}, "body": nested,
    }]});
    let raw = post_json(addr, "/batch", body.to_string()).await;
    let answers = answers(&raw);
    assert_eq!(answers["1"].0, 400, "{:?}", answers["1"]);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_port_is_the_schemes_default() {
    let (addr, probe) = start(BatchLayer::new()).await;
    let body = json!({"requests": [
        item("noport", "GET", &format!("http://{}/ok", addr.ip())),
        item("same", "GET", &format!("http://{addr}/ok")),
    ]});
    let raw = post_json(addr, "/batch", body.to_string()).await;
    let answers = answers(&raw);
    assert_eq!(answers["noport"].0, 400, "{:?}", answers["noport"]);
    assert_eq!(answers["same"].0, 204);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}
