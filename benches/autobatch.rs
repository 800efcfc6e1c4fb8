//! Latency of single calls at low load: direct through hyper-util's client, and through the
//! auto-batching layer with several windows. A lone call through the layer should take about
//! one window plus one direct call (the batch of one it travels in is a little larger).
//!
//! Throughput under load: calls per second when many callers share the layer at once.
//!
//! Run with: cargo bench --bench autobatch

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http_batch::client::{AutoBatchLayer, BatchRequest};
use http_batch::BatchLayer;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::runtime::Runtime;
use tower::{Layer, ServiceExt};

async fn server() -> SocketAddr {
    let api = Router::new().route(
        "/echo/{n}",
        get(|Path(n): Path<u64>| async move { n.to_string() }),
    );
    let app = BatchLayer::new().path("/batch").wrap_router(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn request(addr: SocketAddr) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://{addr}/echo/7"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn single_call_latency(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let addr = rt.block_on(server());
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    let mut group = c.benchmark_group("single_call");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("direct", |b| {
        b.to_async(&rt).iter(|| async {
            let res = client.clone().oneshot(request(addr)).await.unwrap();
            res.into_body().collect().await.unwrap();
        })
    });
    group.bench_function("explicit_batch_of_one", |b| {
        b.to_async(&rt).iter(|| async {
            let mut batch = BatchRequest::new(format!("http://{addr}/batch").parse().unwrap());
            batch.add(http::Request::get("/echo/7").body(Bytes::new()).unwrap());
            batch.send(client.clone()).await.unwrap();
        })
    });
    for window_ms in [0u64, 1, 2, 5] {
        let batched = rt.block_on(async {
            AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
                .window(Duration::from_millis(window_ms))
                .layer(client.clone())
        });
        group.bench_with_input(
            BenchmarkId::new("auto_batch_window_ms", window_ms),
            &window_ms,
            |b, _| {
                b.to_async(&rt).iter(|| async {
                    let res = batched.clone().oneshot(request(addr)).await.unwrap();
                    res.into_body().collect().await.unwrap();
                })
            },
        );
    }
    group.finish();
}

/// Calls per second with 256 callers at once, each making one call at a time: the batches fill
/// up, so this measures what the layer does per call (gathering, encoding, reading, handing
/// out), not the window.
fn calls_per_second(c: &mut Criterion) {
    const CALLERS: usize = 256;
    const CALLS: usize = 4096;
    let rt = Runtime::new().unwrap();
    let addr = rt.block_on(server());
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let batched = rt.block_on(async {
        AutoBatchLayer::new(format!("http://{addr}/batch").parse().unwrap())
            .window(Duration::from_millis(1))
            .layer(client.clone())
    });
    let mut group = c.benchmark_group("auto_batch_load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(criterion::Throughput::Elements(CALLS as u64));
    group.bench_function("calls_256_callers", |b| {
        b.to_async(&rt).iter(|| {
            let batched = batched.clone();
            async move {
                let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(CALLS));
                let mut callers = Vec::with_capacity(CALLERS);
                for _ in 0..CALLERS {
                    let (batched, left) = (batched.clone(), left.clone());
                    callers.push(tokio::spawn(async move {
                        while left
                            .fetch_update(
                                std::sync::atomic::Ordering::Relaxed,
                                std::sync::atomic::Ordering::Relaxed,
                                |n| n.checked_sub(1),
                            )
                            .is_ok()
                        {
                            let res = batched.clone().oneshot(request(addr)).await.unwrap();
                            res.into_body().collect().await.unwrap();
                        }
                    }));
                }
                for caller in callers {
                    caller.await.unwrap();
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, single_call_latency, calls_per_second);
criterion_main!(benches);
