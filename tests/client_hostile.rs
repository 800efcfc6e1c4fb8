//! The client side and the tail of a long answer, against hostile peers: a reader that trickles,
//! servers that leave answers open, flood the client with tiny parts, refuse batches for their
//! size behind tower-http's `RequestBodyLimitLayer`, or throttle. Every test talks HTTP/1.1
//! over a real socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_batch::client::{AutoBatchLayer, BatchRequest, ClientError, RetryReason, RetrySafe};
use http_batch::BatchLayer;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt};

mod support;
use support::serve;

#[global_allocator]
static ALLOC: support::counting::Counting = support::counting::Counting;

use support::counting::{peak_growth, reset_peak};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get_req(addr: SocketAddr, path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn post_req(addr: SocketAddr, path: &str, body: Vec<u8>) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// An API: `GET /echo/{n}` answers `n`, `POST /echo` echoes the body, `GET /big/{kib}` answers
/// `kib` KiB.
fn api() -> Router {
    Router::new()
        .route(
            "/echo/{n}",
            get(|Path(n): Path<u64>| async move { n.to_string() }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/big/{kib}",
            get(|Path(kib): Path<usize>| async move { vec![b'x'; kib * 1024] }),
        )
}

/// Counts the HTTP requests (batches and direct calls) that reach the server.
fn counted(app: Router, counter: Arc<AtomicUsize>) -> Router {
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        counter.fetch_add(1, Ordering::SeqCst);
        next.run(req)
    }))
}

async fn status_and_text(
    res: http::Response<http_batch::client::AutoBatchBody<hyper::body::Incoming>>,
) -> (StatusCode, String) {
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// 1. A trickle reader: the answer has a bounded life
// ---------------------------------------------------------------------------------------------

/// A reader that takes a little now and then passes every stall check; the answer timeout ends
/// the answer all the same, cut off (no last chunk), and the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_reader_is_cut_off_at_the_answer_timeout() {
    let app = BatchLayer::new()
        .path("/batch")
        .answer_timeout(Duration::from_secs(2))
        .wrap_router(api());
    // Small send buffers (inherited by accepted sockets), so that the kernel does not hold
    // megabytes of the answer that the reader would still drain after the cut.
    let listener = tokio::net::TcpSocket::new_v4().unwrap();
    listener.set_send_buffer_size(4096).unwrap();
    listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = listener.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let app: Router = app.into();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // 400 answers of 64 KiB: 25 MiB, far more than the socket buffers hold.
    let boundary = "trickle";
    let mut body = String::new();
    for i in 0..400 {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{i}>\r\n\r\nGET /big/64 HTTP/1.1\r\n\r\n\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let head = format!(
        "POST /batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/mixed; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    // About 20 KB/s: each read comes well within the stall timeout (30 s), and the whole answer
    // would take over 20 minutes.
    let started = Instant::now();
    let mut got = Vec::new();
    let mut ended = false;
    let mut buf = vec![0; 1024];
    while started.elapsed() < Duration::from_secs(20) {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => {
                ended = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    assert!(
        ended,
        "a trickling reader was still being fed after {elapsed:?} ({} bytes)",
        got.len()
    );
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(
        !got.ends_with(b"\r\n0\r\n\r\n"),
        "a cut-off answer ends as a whole one would"
    );
    assert!(
        got.len() < 20 * 1024 * 1024,
        "most of the answer was never sent"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A server that leaves batch answers open cannot wedge AutoBatchLayer
// ---------------------------------------------------------------------------------------------

/// A server whose first `stuck` batch answers start and never end; then it is healthy.
async fn wedging_server(stuck: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let batches = Arc::new(AtomicUsize::new(0));
    let seen = batches.clone();
    let app = BatchLayer::new()
        .path("/batch")
        .wrap_router(api())
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let seen = seen.clone();
            async move {
                let batch = req.method() == Method::POST && req.uri().path() == "/batch";
                if batch && seen.fetch_add(1, Ordering::SeqCst) < stuck {
                    let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
                    return Response::builder()
                        .header("content-type", "multipart/mixed; boundary=never")
                        .body(axum::body::Body::from_stream(never))
                        .unwrap();
                }
                next.run(req).await
            }
        }));
    (serve(app).await, batches)
}

/// Sixteen batches left open, each by callers that gave up; later calls still get answers
/// from the (now healthy) server, as a direct call does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_free_their_slots() {
    let (addr, batches) = wedging_server(16).await;
    let client = AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
        .window(Duration::from_millis(1))
        .layer(http_client());
    let mut quitters = Vec::new();
    for i in 0..16 {
        let client = client.clone();
        quitters.push(tokio::spawn(async move {
            let call = client.oneshot(get_req(addr, &format!("/echo/{i}")));
            tokio::time::timeout(Duration::from_millis(300), call)
                .await
                .is_err()
        }));
        // One batch each.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for quitter in quitters {
        assert!(quitter.await.unwrap(), "a stuck batch answered");
    }
    assert!(batches.load(Ordering::SeqCst) >= 16);
    let direct = http_client()
        .oneshot(get_req(addr, "/echo/1"))
        .await
        .unwrap();
    assert_eq!(direct.status(), StatusCode::OK);
    let calls = (0..5).map(|i| {
        let client = client.clone();
        async move {
            let call = client.oneshot(get_req(addr, &format!("/echo/{i}")));
            match tokio::time::timeout(Duration::from_secs(3), call).await {
                Ok(Ok(res)) => Some(status_and_text(res).await),
                _ => None,
            }
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(
            answer,
            Some((StatusCode::OK, i.to_string())),
            "call {i} after the stuck batches"
        );
    }
}

/// An exchange the server never finishes fails at the layer's timeout, with words that say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exchange_has_a_deadline() {
    let (addr, _) = wedging_server(usize::MAX).await;
    let client = AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
        .timeout(Duration::from_millis(500))
        .layer(http_client());
    let started = Instant::now();
    let call = client.oneshot(get_req(addr, "/echo/1"));
    let error = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the exchange has no deadline")
        .expect_err("a never-ending answer answered");
    assert!(started.elapsed() < Duration::from_secs(3));
    let error = error.downcast::<ClientError>().expect("a ClientError");
    assert!(
        std::error::Error::source(&*error)
            .unwrap()
            .to_string()
            .contains("did not answer within"),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A call never receives an error caused only by other calls
// ---------------------------------------------------------------------------------------------

/// The production shape: a 1 MiB body limit (tower-http) in front of the batch layer.
async fn limited_server(body_limit: usize, max_items: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let app = BatchLayer::new()
        .path("/batch")
        .max_items(max_items)
        .wrap_router(api())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(body_limit));
    let app: Router = app.into();
    (serve(counted(app, requests.clone())).await, requests)
}

/// 20 POSTs of 60 KB and 3 tiny GETs at once against a 1 MiB body limit: each alone answers
/// 200, and so does each together.
async fn burst_of_posts_and_gets(client: impl Fn() -> AutoBatchClient, addr: SocketAddr) {
    let mut calls = Vec::new();
    for i in 0..20u8 {
        let client = client();
        calls.push(tokio::spawn(async move {
            let body = vec![b'a' + i; 60_000];
            let res = client
                .oneshot(post_req(addr, "/echo", body.clone()))
                .await
                .unwrap();
            let (status, text) = status_and_text(res).await;
            (status, text.into_bytes() == body)
        }));
    }
    for i in 0..3 {
        let client = client();
        calls.push(tokio::spawn(async move {
            let res = client
                .oneshot(get_req(addr, &format!("/echo/{i}")))
                .await
                .unwrap();
            let (status, text) = status_and_text(res).await;
            (status, text == i.to_string())
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), (StatusCode::OK, true), "call {i}");
    }
}

type AutoBatchClient = http_batch::client::AutoBatch<HttpClient>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_fit_under_a_one_mebibyte_body_limit() {
    let (addr, _) = limited_server(1024 * 1024, 1000).await;
    let client = AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
        .window(Duration::from_millis(20))
        .layer(http_client());
    burst_of_posts_and_gets(|| client.clone(), addr).await;
}

/// Told nothing, and allowed 8 MiB batches: the `413` of the body limit (plain text, no
/// numbers) splits the batch until each part passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_its_size_is_split() {
    let (addr, requests) = limited_server(1024 * 1024, 1000).await;
    let client = AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
        .window(Duration::from_millis(20))
        .learn_limits(false)
        .max_batch_bytes(8 * 1024 * 1024)
        .layer(http_client());
    burst_of_posts_and_gets(|| client.clone(), addr).await;
    assert!(
        requests.load(Ordering::SeqCst) >= 3,
        "one refused batch and at least two halves"
    );
}

/// A call too large for the server on its own is sent alone, directly, and gets its own 413;
/// the calls that shared its batch get their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_too_large_alone_gets_its_own_answer() {
    let (addr, _) = limited_server(64 * 1024, 1000).await;
    let client = AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
        .window(Duration::from_millis(20))
        .learn_limits(false)
        .max_body_bytes(1024 * 1024)
        .layer(http_client());
    let big = {
        let client = client.clone();
        tokio::spawn(async move {
            // Sent alone and directly, it meets the server's body limit as a direct call does:
            // a `413`, or, when the server answers and closes before the client has written the
            // whole body, the connection's error. Either is what the call would get alone.
            match client
                .oneshot(post_req(addr, "/echo", vec![b'z'; 100_000]))
                .await
            {
                Ok(res) => status_and_text(res).await.0,
                Err(err) => {
                    let text = format!("{err:?}");
                    assert!(
                        text.contains("IncompleteMessage") || text.contains("BrokenPipe"),
                        "{text}"
                    );
                    StatusCode::PAYLOAD_TOO_LARGE
                }
            }
        })
    };
    let small = {
        let client = client.clone();
        tokio::spawn(async move {
            let res = client.oneshot(get_req(addr, "/echo/5")).await.unwrap();
            status_and_text(res).await
        })
    };
    assert_eq!(big.await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(small.await.unwrap(), (StatusCode::OK, "5".to_owned()));
}

/// Against `max_items(20)`, 50 plain GETs at once all answer 200; with the limit learned from
/// the server's `OPTIONS`, no batch is refused at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_item_limit_is_learned_and_kept() {
    let (addr, requests) = limited_server(16 * 1024 * 1024, 20).await;
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let client = AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
        .window(Duration::from_millis(20))
        .layer(http_client());
    // The first batched call starts the probe; let it land.
    let res = client
        .clone()
        .oneshot(get_req(addr, "/echo/0"))
        .await
        .unwrap();
    assert_eq!(status_and_text(res).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = requests.load(Ordering::SeqCst);
    let calls = (0..50u64).map(|i| {
        let client = client.clone();
        let sizes = sizes.clone();
        async move {
            let res = client
                .oneshot(get_req(addr, &format!("/echo/{i}")))
                .await
                .unwrap();
            sizes.lock().unwrap().push(res.status());
            status_and_text(res).await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer, (StatusCode::OK, i.to_string()), "call {i}");
    }
    // 50 calls in batches of at most 20: three batches, none refused and sent again.
    assert_eq!(requests.load(Ordering::SeqCst) - before, 3);
}

/// Without the probe, the numbers in the `413` (`TOO_MANY_ITEMS`, limit 20) are learned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_item_limit_in_a_refusal_is_learned() {
    let (addr, requests) = limited_server(16 * 1024 * 1024, 20).await;
    let client = AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
        .window(Duration::from_millis(20))
        .learn_limits(false)
        .layer(http_client());
    for round in 0..2 {
        let before = requests.load(Ordering::SeqCst);
        let calls = (0..50u64).map(|i| {
            let client = client.clone();
            async move {
                let res = client
                    .oneshot(get_req(addr, &format!("/echo/{i}")))
                    .await
                    .unwrap();
                status_and_text(res).await
            }
        });
        let answers = futures_util::future::join_all(calls).await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(
                answer,
                (StatusCode::OK, i.to_string()),
                "round {round}, call {i}"
            );
        }
        if round == 1 {
            assert_eq!(requests.load(Ordering::SeqCst) - before, 3, "learned");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Throttled items are retried after their Retry-After, when safe
// ---------------------------------------------------------------------------------------------

/// `/limited/{key}` answers `429` with `Retry-After: 1` the first time each key is asked for,
/// and `200` after.
async fn throttling_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let handler = move |Path(key): Path<String>| {
        let seen = seen.clone();
        let hits = counter.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            if seen.lock().unwrap().insert(key) {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    "slow down",
                )
                    .into_response()
            } else {
                "done".into_response()
            }
        }
    };
    let api = Router::new().route("/limited/{key}", get(handler.clone()).post(handler));
    let app = BatchLayer::new().path("/batch").wrap_router(api);
    (serve(app).await, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_calls_are_retried_after_their_delay_when_safe() {
    let (addr, hits) = throttling_server().await;
    let client =
        AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap()).layer(http_client());
    let started = Instant::now();
    let res = client
        .clone()
        .oneshot(get_req(addr, "/limited/a"))
        .await
        .unwrap();
    assert_eq!(
        status_and_text(res).await,
        (StatusCode::OK, "done".to_owned())
    );
    assert!(started.elapsed() >= Duration::from_millis(900), "no wait");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // A POST is not safe to repeat: its 429 comes back at once.
    let res = client
        .clone()
        .oneshot(post_req(addr, "/limited/b", Vec::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Unless the user marked it so.
    let mut request = post_req(addr, "/limited/c", Vec::new());
    request.extensions_mut().insert(RetrySafe);
    let res = client.clone().oneshot(request).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // And with retries off, nothing is retried.
    let plain = AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
        .retries(0)
        .layer(http_client());
    let res = plain.oneshot(get_req(addr, "/limited/d")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

// ---------------------------------------------------------------------------------------------
// 5. The client reads in bounded memory: a flood of tiny parts
// ---------------------------------------------------------------------------------------------

/// A server (on its own thread, so its allocations are not counted) that answers every batch
/// with `bytes` of empty parts.
fn tiny_parts_server(bytes: usize) -> SocketAddr {
    let part = b"--b\r\n\r\n";
    let mut answer = Vec::with_capacity(bytes + 8);
    while answer.len() + part.len() < bytes {
        answer.extend_from_slice(part);
    }
    answer.extend_from_slice(b"--b--\r\n");
    let answer = Bytes::from(answer);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = Router::new().route(
                "/batch",
                post(move || {
                    let answer = answer.clone();
                    async move {
                        ([("content-type", "multipart/mixed; boundary=b")], answer).into_response()
                    }
                }),
            );
            tx.send(serve(app).await).unwrap();
            std::future::pending::<()>().await
        })
    });
    rx.recv().unwrap()
}

/// Two items asked for, millions of tiny parts answered: the extra parts are counted, not kept,
/// and the client's heap stays within a small multiple of the answer. Set `TINY_PARTS_MIB` to
/// try other sizes (the default 8; the finding was 61).
#[test]
fn a_flood_of_tiny_parts_is_refused_in_bounded_memory() {
    let mib: usize = std::env::var("TINY_PARTS_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let size = mib * 1024 * 1024;
    let addr = tiny_parts_server(size);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = reset_peak();
    let started = Instant::now();
    let result = rt.block_on(async {
        let mut batch = BatchRequest::new(format!("http://{addr}/batch").parse().unwrap());
        batch.add(http::Request::get("/a").body(Bytes::new()).unwrap());
        batch.add(http::Request::get("/b").body(Bytes::new()).unwrap());
        batch.send(http_client()).await
    });
    let elapsed = started.elapsed();
    let peak = peak_growth(base);
    eprintln!(
        "tiny parts: answer {mib} MiB, client peak heap {:.1} MiB, {elapsed:?}",
        peak as f64 / (1024.0 * 1024.0)
    );
    let error = result.expect_err("an answer of millions of parts for two items was taken");
    assert!(
        matches!(&error, ClientError::Decode { reason } if reason.contains("parts for 2 items")),
        "{error}"
    );
    assert!(
        peak < 3 * size,
        "the client's heap grew by {peak} bytes for an answer of {size}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. A retry plan for explicit batches
// ---------------------------------------------------------------------------------------------

/// A server that answers every batch with one canned multipart answer.
async fn canned_server(answer: String) -> SocketAddr {
    let app =
        Router::new().route(
            "/batch",
            post(move || {
                let answer = answer.clone();
                async move {
                    ([("content-type", "multipart/mixed; boundary=b")], answer).into_response()
                }
            }),
        );
    serve(app).await
}

fn part(id: &str, status: &str, headers: &str, body: &str) -> String {
    format!(
        "--b\r\nContent-Type: application/http\r\nContent-ID: <response-{id}>\r\n\r\nHTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n{body}\r\n",
        body.len()
    )
}

#[tokio::test]
async fn the_retry_plan_names_what_did_not_run_and_what_was_throttled() {
    let not_run = r#"{"error":{"code":504,"message":"the batch deadline of 50 ms passed before this item started, so it was not run"}}"#;
    let stopped = r#"{"error":{"code":504,"message":"the batch deadline of 50 ms passed while this item was running; it was stopped, and may have taken effect in part"}}"#;
    let no_room = r#"{"error":{"code":507,"message":"the batch response reached its limit of 1000 bytes before this item started, so it was not run"}}"#;
    let answer = [
        part("ok", "200 OK", "", "fine"),
        part("dep", "424 Failed Dependency", "", "{}"),
        part("late", "504 Gateway Timeout", "", not_run),
        part("stopped", "504 Gateway Timeout", "", stopped),
        part("full", "507 Insufficient Storage", "", no_room),
        part("slow", "429 Too Many Requests", "Retry-After: 4\r\n", ""),
        part("busy", "503 Service Unavailable", "Retry-After: 2\r\n", ""),
        part("down", "503 Service Unavailable", "", ""),
        part("bad", "400 Bad Request", "", ""),
    ]
    .concat()
        + "--b--\r\n";
    let addr = canned_server(answer).await;
    let mut batch = BatchRequest::new(format!("http://{addr}/batch").parse().unwrap());
    for id in [
        "ok", "dep", "late", "stopped", "full", "slow", "busy", "down", "bad",
    ] {
        batch
            .add_with_id(id, http::Request::get("/x").body(Bytes::new()).unwrap())
            .unwrap();
    }
    let answers = batch.send(http_client()).await.unwrap();
    let plan = answers.retry_plan();
    let items: Vec<_> = plan
        .iter()
        .map(|r| (r.id().to_owned(), r.reason(), r.after().as_secs()))
        .collect();
    assert_eq!(
        items,
        [
            ("dep".to_owned(), RetryReason::NotRun, 0),
            ("late".to_owned(), RetryReason::NotRun, 0),
            ("full".to_owned(), RetryReason::NotRun, 0),
            ("slow".to_owned(), RetryReason::Throttled, 4),
            ("busy".to_owned(), RetryReason::Throttled, 2),
        ]
    );
    assert_eq!(plan.wait(), Duration::from_secs(4));
}
