//! The whole layer in process: a 1000-item batch through `wrap_router` over a trivial axum
//! handler, next to the same 1000 calls made directly on the Router.
//!
//! Run with `cargo bench --bench end_to_end`. The summary at the end prints the ratio batch /
//! direct and Spawned / Polled.
//!
//! `E2E_PAIRS=200` skips criterion and times Polled, Spawned and direct in interleaved rounds,
//! printing the medians of the per-round ratios (steadier on a shared machine than whole runs of
//! one case after another).
//!
//! For profiling, `E2E_PROFILE=batch` (or `json`, `layer`, `direct`, `spawned`) with `E2E_ITERS=n` skips criterion
//! and runs `n` rounds of 1000 calls, so instruction counts can be divided per item:
//!
//! ```text
//! E2E_PROFILE=batch E2E_ITERS=20 valgrind --tool=callgrind target/release/deps/end_to_end-<hash>
//! ```
//!
//! Built with `--features metrics`, `E2E_RECORDER=1` installs a Prometheus recorder first.

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use http::{header, Request, Uri};
use http_batch::format::multipart::write_request;
use http_batch::{BatchLayer, Execution};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

mod support;

const BOUNDARY: &str = "batch_0123456789abcdef0123456789abcdef";
const ITEMS: usize = 1000;

fn api() -> Router {
    Router::new().route("/items/{id}", get(|| async { "ok" }))
}

/// The batch request, built once: its body is cloned (a reference count) per iteration.
struct BatchRequest {
    body: Bytes,
    content_type: String,
}

impl BatchRequest {
    fn new(n: usize) -> Self {
        let mut out = BytesMut::new();
        for i in 0..n {
            let req = Request::get(format!("/items/{i}"))
                .body(Bytes::new())
                .expect("valid request");
            write_request(BOUNDARY, Some(&format!("item{i}")), &req, &mut out);
        }
        out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        BatchRequest {
            body: out.freeze(),
            content_type: format!("multipart/mixed; boundary={BOUNDARY}"),
        }
    }

    fn request(&self) -> Request<Body> {
        Request::post("/batch")
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, &self.content_type)
            .body(Body::from(self.body.clone()))
            .expect("valid request")
    }
}

/// One batch: send it, read the whole streamed answer. Returns the body length.
///
/// `app` is the batched Router from `wrap_router`, or the `Batch<Router>` service itself.
async fn run_batch<S, B>(app: &S, req: &BatchRequest) -> usize
where
    S: tower::Service<Request<Body>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let res = app
        .clone()
        .oneshot(req.request())
        .await
        .expect("infallible");
    assert!(res.status().is_success());
    drain(res.into_body()).await
}

/// Reads a body frame by frame, as a server writing it to a socket would, and returns its length.
/// (Collecting it into one buffer would add a copy of the whole answer that no server makes.)
async fn drain<B>(body: B) -> usize
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut body = std::pin::pin!(body);
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body").into_data() {
            len += bytes::Buf::remaining(&data);
        }
    }
    len
}

/// The same calls made one after the other, straight on the Router.
async fn run_direct(app: &Router, uris: &[Uri]) -> usize {
    let mut total = 0;
    for uri in uris {
        let req = Request::get(uri.clone())
            .header(header::HOST, "localhost")
            .body(Body::empty())
            .expect("valid request");
        let res = app.clone().oneshot(req).await.expect("infallible");
        assert!(res.status().is_success());
        total += drain(res.into_body()).await;
    }
    total
}

fn uris(n: usize) -> Vec<Uri> {
    (0..n)
        .map(|i| format!("/items/{i}").parse().expect("valid uri"))
        .collect()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn end_to_end(c: &mut Criterion) {
    let req = BatchRequest::new(ITEMS);
    let uris = uris(ITEMS);
    let polled = BatchLayer::new().wrap_router(api()).into_router();
    // The layer straight over the Router, without the outer Router `wrap_router` adds.
    let layered = BatchLayer::new().layer(api());
    let spawned = BatchLayer::new()
        .execution(Execution::Spawned)
        .wrap_router(api())
        .into_router();
    let direct = api();

    // Sanity: every item answered, not an error page.
    let rt = current_thread();
    let body = rt.block_on(async {
        let res = polled
            .clone()
            .oneshot(req.request())
            .await
            .expect("infallible");
        res.into_body().collect().await.expect("body").to_bytes()
    });
    let text = String::from_utf8_lossy(&body);
    assert_eq!(
        text.matches("HTTP/1.1 200 OK").count(),
        ITEMS,
        "every item answers 200"
    );

    let mut group = c.benchmark_group("e2e_current_thread");
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function(BenchmarkId::new("batch_polled", ITEMS), |b| {
        b.to_async(&rt).iter(|| run_batch(&polled, &req))
    });
    group.bench_function(BenchmarkId::new("batch_layer", ITEMS), |b| {
        b.to_async(&rt).iter(|| run_batch(&layered, &req))
    });
    group.bench_function(BenchmarkId::new("direct", ITEMS), |b| {
        b.to_async(&rt).iter(|| run_direct(&direct, &uris))
    });
    group.finish();

    let mt = multi_thread();
    let mut group = c.benchmark_group("e2e_multi_thread");
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function(BenchmarkId::new("batch_polled", ITEMS), |b| {
        b.to_async(&mt).iter(|| run_batch(&polled, &req))
    });
    group.bench_function(BenchmarkId::new("batch_spawned", ITEMS), |b| {
        b.to_async(&mt).iter(|| run_batch(&spawned, &req))
    });
    group.bench_function(BenchmarkId::new("direct", ITEMS), |b| {
        b.to_async(&mt).iter(|| run_direct(&direct, &uris))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::config();
    targets = end_to_end
}

fn main() {
    // With `--features metrics`, `E2E_RECORDER=1` installs a Prometheus recorder first, so that
    // the layer's metrics are recorded for real rather than dropped by the facade's no-op.
    #[cfg(feature = "metrics")]
    if std::env::var_os("E2E_RECORDER").is_some() {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder");
    }
    if let Ok(mode) = std::env::var("E2E_PROFILE") {
        profile(&mode);
        return;
    }
    if let Some(pairs) = std::env::var("E2E_PAIRS").ok().and_then(|s| s.parse().ok()) {
        paired(pairs);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();

    println!("\nper item:");
    for group in ["e2e_current_thread", "e2e_multi_thread"] {
        for function in ["batch_polled", "batch_layer", "batch_spawned", "direct"] {
            if let Some(ns) = support::mean_ns(group, function, ITEMS) {
                println!("  {group}/{function}: {:>8.1} ns/item", ns / ITEMS as f64);
            }
        }
    }
    let ratio = |group: &str, a: &str, b: &str| {
        Some(support::mean_ns(group, a, ITEMS)? / support::mean_ns(group, b, ITEMS)?)
    };
    if let Some(r) = ratio("e2e_current_thread", "batch_polled", "direct") {
        println!("  ratio batch / direct (current thread): {r:.2}");
    }
    if let Some(r) = ratio("e2e_current_thread", "batch_layer", "direct") {
        println!("  ratio Batch<Router> / direct (current thread): {r:.2}");
    }
    if let Some(r) = ratio("e2e_multi_thread", "batch_polled", "direct") {
        println!("  ratio batch / direct (multi thread):   {r:.2}");
    }
    if let Some(r) = ratio("e2e_multi_thread", "batch_spawned", "batch_polled") {
        println!("  ratio Spawned / Polled (multi thread): {r:.2}");
    }
}

/// Polled, Spawned and direct, one batch (or 1000 direct calls) of each in turn, `pairs` times, on
/// one 2-worker runtime: each round's ratios are taken between runs made milliseconds apart, so
/// load from outside that comes and goes over seconds moves both sides of a ratio alike. Prints
/// the median time per item of each, and the median and quartiles of the per-round ratios.
fn paired(pairs: usize) {
    let req = BatchRequest::new(ITEMS);
    let uris = uris(ITEMS);
    let polled = BatchLayer::new().wrap_router(api()).into_router();
    let spawned = BatchLayer::new()
        .execution(Execution::Spawned)
        .wrap_router(api())
        .into_router();
    let direct = api();
    let rt = multi_thread();
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    rt.block_on(async {
        for round in 0..pairs + 5 {
            let t = std::time::Instant::now();
            run_batch(&polled, &req).await;
            let p = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            run_batch(&spawned, &req).await;
            let s = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            run_direct(&direct, &uris).await;
            let d = t.elapsed().as_secs_f64();
            // The first rounds warm caches and allocator pools.
            if round >= 5 {
                for (v, x) in times.iter_mut().zip([p, s, d]) {
                    v.push(x);
                }
            }
        }
    });
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.25), at(0.5), at(0.75))
    };
    let per_item = |v: &Vec<f64>| quartiles(v.clone()).1 * 1e9 / ITEMS as f64;
    println!("{pairs} interleaved rounds on a 2-worker runtime, median ns per item:");
    println!("  polled  {:>8.1}", per_item(&times[0]));
    println!("  spawned {:>8.1}", per_item(&times[1]));
    println!("  direct  {:>8.1}", per_item(&times[2]));
    let ratio =
        |a: &Vec<f64>, b: &Vec<f64>| quartiles(a.iter().zip(b).map(|(x, y)| x / y).collect());
    let (q1, m, q3) = ratio(&times[1], &times[0]);
    println!("  Spawned / Polled: median {m:.2} (quartiles {q1:.2}-{q3:.2})");
    let (q1, m, q3) = ratio(&times[0], &times[2]);
    println!("  Polled / direct:  median {m:.2} (quartiles {q1:.2}-{q3:.2})");
}

/// Runs a fixed number of rounds without criterion's machinery, for callgrind.
fn profile(mode: &str) {
    let iters: usize = std::env::var("E2E_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let req = BatchRequest::new(ITEMS);
    let uris = uris(ITEMS);
    if mode == "json" {
        // The same 1000 calls as a JSON batch (OData 4.01 / Microsoft Graph shape).
        let requests: Vec<String> = (0..ITEMS)
            .map(|i| format!(r#"{{"id":"{i}","method":"GET","url":"/items/{i}"}}"#))
            .collect();
        let body = Bytes::from(format!(r#"{{"requests":[{}]}}"#, requests.join(",")));
        let app = BatchLayer::new().wrap_router(api()).into_router();
        let bytes = current_thread().block_on(async {
            let mut bytes = 0;
            for _ in 0..iters {
                let req = Request::post("/batch")
                    .header(header::HOST, "localhost")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.clone()))
                    .expect("valid request");
                let res = app.clone().oneshot(req).await.expect("infallible");
                assert!(res.status().is_success());
                bytes += drain(res.into_body()).await;
            }
            bytes
        });
        println!("{mode}: {iters} rounds of {ITEMS} calls, {bytes} response bytes");
        return;
    }
    if mode == "layer" {
        let app = BatchLayer::new().layer(api());
        let bytes = current_thread().block_on(async {
            let mut bytes = 0;
            for _ in 0..iters {
                bytes += run_batch(&app, &req).await;
            }
            bytes
        });
        println!("{mode}: {iters} rounds of {ITEMS} calls, {bytes} response bytes");
        return;
    }
    let (rt, app) = match mode {
        "batch" => (
            current_thread(),
            BatchLayer::new().wrap_router(api()).into_router(),
        ),
        "spawned" => (
            multi_thread(),
            BatchLayer::new()
                .execution(Execution::Spawned)
                .wrap_router(api())
                .into_router(),
        ),
        "direct" => (current_thread(), api()),
        other => panic!("E2E_PROFILE must be batch, json, layer, spawned or direct, not {other}"),
    };
    let mut bytes = 0;
    rt.block_on(async {
        for _ in 0..iters {
            bytes += if mode == "direct" {
                run_direct(&app, &uris).await
            } else {
                run_batch(&app, &req).await
            };
        }
    });
    println!("{mode}: {iters} rounds of {ITEMS} calls, {bytes} response bytes");
}
