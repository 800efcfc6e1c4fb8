//! The auto-batching client layer against a real server over a real socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request};
use axum::middleware::{self, Next};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_batch::client::{AutoBatchLayer, ClientError};
use http_batch::BatchLayer;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, Service, ServiceExt};

/// A server whose `GET /echo/{n}` answers `n` and `POST /echo` echoes the body, behind a batch
/// layer at `/batch`; returns its address and the number of HTTP requests it has received.
async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
    let api = Router::new()
        .route(
            "/echo/{n}",
            get(|Path(n): Path<u64>| async move { n.to_string() }),
        )
        .route("/echo", post(|body: Bytes| async move { body }));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    // Outside the batch layer, so it counts HTTP requests, not items; not the `OPTIONS` the
    // layer asks once for the server's limits.
    let app = BatchLayer::new()
        .path("/batch")
        .wrap_router(api)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            if req.method() != Method::OPTIONS {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            next.run(req)
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, requests)
}

fn layer(addr: SocketAddr) -> AutoBatchLayer {
    AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
}

fn http_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get_echo(addr: SocketAddr, n: u64) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://{addr}/echo/{n}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_calls_each_get_their_own_answer() {
    let (addr, requests) = server().await;
    let client = layer(addr)
        .window(Duration::from_millis(2))
        .max_batch(100)
        .layer(http_client());

    const TASKS: u64 = 100;
    const PER_TASK: u64 = 100;
    let answered = Arc::new(AtomicUsize::new(0));
    let batched = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let client = client.clone();
        let answered = answered.clone();
        let batched = batched.clone();
        tasks.push(tokio::spawn(async move {
            let calls = (0..PER_TASK).map(|i| {
                let n = t * PER_TASK + i;
                let client = client.clone();
                async move {
                    let res = client.oneshot(get_echo(addr, n)).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                    let was_batched = res.body().was_batched();
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(body, n.to_string(), "call {n} got someone else's answer");
                    was_batched
                }
            });
            for was_batched in futures_util::future::join_all(calls).await {
                answered.fetch_add(1, Ordering::SeqCst);
                if was_batched {
                    batched.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let calls = (TASKS * PER_TASK) as usize;
    assert_eq!(answered.load(Ordering::SeqCst), calls);
    assert_eq!(batched.load(Ordering::SeqCst), calls);
    let requests = requests.load(Ordering::SeqCst);
    // At most 100 calls per batch, so at least 100 requests; gathering works when there are
    // far fewer requests than calls.
    assert!(requests >= calls / 100, "{requests} requests");
    assert!(
        requests <= calls / 10,
        "{requests} requests for {calls} calls"
    );
    println!("{calls} calls travelled in {requests} HTTP requests");
}

#[tokio::test]
async fn what_must_not_be_batched_passes_straight_through() {
    let (addr, requests) = server().await;
    let mut client = layer(addr)
        .idempotent_only()
        .max_body_bytes(16)
        .batch_if(|parts| !parts.uri.path().ends_with("/7"))
        .layer(http_client());

    let post = |body: &'static str| {
        http::Request::post(format!("http://{addr}/echo"))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    // A POST with idempotent_only: direct.
    let res = client
        .ready()
        .await
        .unwrap()
        .call(post("hi"))
        .await
        .unwrap();
    assert!(!res.body().was_batched());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");
    // The predicate says no: direct.
    let res = client
        .ready()
        .await
        .unwrap()
        .call(get_echo(addr, 7))
        .await
        .unwrap();
    assert!(!res.body().was_batched());
    // A GET with a body above the threshold: direct.
    let big = http::Request::get(format!("http://{addr}/echo/8"))
        .body(Full::new(Bytes::from(vec![b'x'; 17])))
        .unwrap();
    let res = client.ready().await.unwrap().call(big).await.unwrap();
    assert!(!res.body().was_batched());
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    // An ordinary GET: batched (one more HTTP request, to /batch).
    let res = client
        .ready()
        .await
        .unwrap()
        .call(get_echo(addr, 9))
        .await
        .unwrap();
    assert!(res.body().was_batched());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "9");
    assert_eq!(requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn calls_to_another_host_are_not_batched() {
    let (batch_addr, batch_requests) = server().await;
    let (other_addr, other_requests) = server().await;
    let client = layer(batch_addr).layer(http_client());
    let res = client.oneshot(get_echo(other_addr, 5)).await.unwrap();
    assert!(!res.body().was_batched());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "5");
    assert_eq!(other_requests.load(Ordering::SeqCst), 1);
    assert_eq!(batch_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn post_is_batched_by_default() {
    let (addr, requests) = server().await;
    let client = layer(addr).layer(http_client());
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/echo"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert!(res.body().was_batched());
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "payload"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dropped_callers_do_not_wedge_the_worker() {
    let (addr, _) = server().await;
    let client = layer(addr)
        .window(Duration::from_millis(20))
        .layer(http_client());
    // Start many calls and abandon them while they wait for their window.
    let mut abandoned = Vec::new();
    for n in 0..200 {
        let client = client.clone();
        abandoned.push(tokio::spawn(async move {
            client.oneshot(get_echo(addr, n)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    for task in &abandoned {
        task.abort();
    }
    // Later calls are still answered, each with its own answer.
    let calls = (1000..1050).map(|n| {
        let client = client.clone();
        async move {
            let res = client.oneshot(get_echo(addr, n)).await.unwrap();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, n.to_string());
        }
    });
    futures_util::future::join_all(calls).await;
}

#[tokio::test]
async fn outer_rejection_reaches_each_caller_as_its_response() {
    let (addr, _) = server().await;
    // Not a batch path: the server answers the outer request with 404, as it would each call.
    let client = AutoBatchLayer::new(format!("http://{addr}/no-batch-here").parse().unwrap())
        .layer(http_client());
    let calls = (0..3).map(|n| client.clone().oneshot(get_echo(addr, n)));
    for res in futures_util::future::join_all(calls).await {
        assert_eq!(res.unwrap().status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn transport_failure_reaches_each_caller_as_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = layer(addr).layer(http_client());
    let calls = (0..3).map(|n| client.clone().oneshot(get_echo(addr, n)));
    for res in futures_util::future::join_all(calls).await {
        let err = res.unwrap_err();
        let err = err.downcast_ref::<ClientError>().expect("a ClientError");
        assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    }
}

/// `max_in_flight(1)`: however many calls are made at once, at most one batch request is on its
/// way at a time, and every call is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_are_capped() {
    let busy = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (b, m) = (busy.clone(), most.clone());
    let api = Router::new().route(
        "/echo/{n}",
        get(|Path(n): Path<u64>| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            n.to_string()
        }),
    );
    // Counts batch requests being served at once, outside the batch layer.
    let app = BatchLayer::new()
        .wrap_router(api)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let (b, m) = (b.clone(), m.clone());
            async move {
                let now = b.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let res = next.run(req).await;
                // The batch body streams after the head; wait for it to be read in full.
                let (parts, body) = res.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                b.fetch_sub(1, Ordering::SeqCst);
                axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
            }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let svc = layer(addr)
        .window(Duration::from_millis(1))
        .max_batch(10)
        .max_in_flight(1)
        .layer(http_client());
    let tasks: Vec<_> = (0..100u64)
        .map(|n| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let res = svc.oneshot(get_echo(addr, n)).await.unwrap();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, n.to_string());
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "more than one batch was in flight"
    );
}
