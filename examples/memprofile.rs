//! Run with: cargo run --release --example memprofile
//!
//! Measures the peak heap of one 1000-item batch whose handler answers 10 KiB each, run through
//! the layer in process while the response body is read slowly, a frame at a time. A counting
//! global allocator tracks live and peak bytes. The peak is compared with the bound the design
//! promises (about 2 × the concurrency window's worth of answers) and with the whole answer.
//!
//! Options: `--items 1000`, `--body 10240` (bytes per answer), `--concurrency 16`,
//! `--delay-us 200` (pause after each frame read), `--spawned` (use `Execution::Spawned`),
//! `--change-set` (the items as one OData change set under a transaction that keeps nothing:
//! its members' answers are held until it is decided, under `max_held_bytes`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{header, Request};
use http_batch::format::multipart::write_request;
use http_batch::format::Dialect;
use http_batch::{
    BatchLayer, BatchRoute, BoxError, Execution, Transact, Transaction, TransactionProvider,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Wraps the system allocator and keeps the live byte count and its high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the same arguments; the counters are only
// bookkeeping beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// A transaction that keeps nothing: enough to make the items one change set.
struct Nothing;

impl Transact for Nothing {
    fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }

    fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}

impl TransactionProvider for Nothing {
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
        Box::pin(async { Ok(Transaction::new(Nothing)) })
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

struct Options {
    items: usize,
    body: usize,
    concurrency: usize,
    delay: Duration,
    spawned: bool,
    change_set: bool,
}

fn options() -> Options {
    let mut o = Options {
        items: 1000,
        body: 10 * 1024,
        concurrency: 16,
        delay: Duration::from_micros(200),
        spawned: false,
        change_set: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--spawned" {
            o.spawned = true;
            continue;
        }
        if flag == "--change-set" {
            o.change_set = true;
            continue;
        }
        let value = args.next().unwrap_or_default();
        let parsed: usize = value
            .parse()
            .unwrap_or_else(|_| panic!("{flag} wants a number, not `{value}`"));
        match flag.as_str() {
            "--items" => o.items = parsed,
            "--body" => o.body = parsed,
            "--concurrency" => o.concurrency = parsed,
            "--delay-us" => o.delay = Duration::from_micros(parsed as u64),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn kib(bytes: usize) -> f64 {
    bytes as f64 / 1024.0
}

fn main() {
    let o = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(o));
}

async fn run(o: Options) {
    let size = o.body;
    // Each answer is a fresh heap buffer, as a real handler's serialized output would be.
    let api = Router::new().route(
        "/items/{id}",
        get(move || async move { Bytes::from(vec![b'x'; size]) }),
    );
    let layer = BatchLayer::new().concurrency(o.concurrency);
    let layer = if o.spawned {
        layer.execution(Execution::Spawned)
    } else {
        layer
    };
    let layer = if o.change_set {
        layer.route(
            BatchRoute::path("/batch")
                .dialect(Dialect::odata_v4())
                .transactions(Nothing),
        )
    } else {
        layer
    };
    let app = layer.wrap_router(api);

    let boundary = "batch_memprofile";
    let mut out = BytesMut::new();
    let items_boundary = if o.change_set {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: multipart/mixed; boundary=cs_memprofile\r\n\r\n"
            )
            .as_bytes(),
        );
        "cs_memprofile"
    } else {
        boundary
    };
    for i in 0..o.items {
        let req = Request::get(format!("/items/{i}"))
            .body(Bytes::new())
            .expect("valid request");
        write_request(items_boundary, Some(&format!("item{i}")), &req, &mut out);
    }
    if o.change_set {
        out.extend_from_slice(b"--cs_memprofile--\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let body = out.freeze();
    let request_bytes = body.len();

    // Measure from here: the request body, the runtime and the router already exist.
    let baseline = LIVE.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);

    let req = Request::post("/batch")
        .header(header::HOST, "localhost")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/mixed; boundary={boundary}"),
        )
        .body(Body::from(body))
        .expect("valid request");
    let res = app.oneshot(req).await.expect("infallible");
    assert!(res.status().is_success(), "batch answered {}", res.status());
    let head_peak = PEAK.load(Ordering::Relaxed) - baseline;
    // The decoded items are held from here on and shrink as items run; what grows while the
    // body streams is the buffered answers.
    let head_live = LIVE.load(Ordering::Relaxed);
    PEAK.store(head_live, Ordering::Relaxed);

    let mut body = res.into_body();
    let (mut frames, mut total, mut largest, mut answered) = (0usize, 0usize, 0usize, 0usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        if let Ok(data) = frame.into_data() {
            frames += 1;
            total += data.len();
            largest = largest.max(data.len());
            answered += memchr::memmem::find_iter(&data, b"HTTP/1.1 200 OK").count();
        }
        // A slow reader: the layer must not run ahead and buffer the rest of the batch.
        tokio::time::sleep(o.delay).await;
    }
    drop(body);
    if o.change_set {
        // A change set too large to hold is rolled back: it is answered by the member that
        // found no room, and none of it is kept.
        println!("change set: {answered} of {} members answered 200", o.items);
    } else {
        assert_eq!(answered, o.items, "every item answers 200");
    }

    let streaming_peak = PEAK.load(Ordering::Relaxed);
    let peak = head_peak.max(streaming_peak - baseline);
    let growth = streaming_peak - head_live;
    let window = 2 * o.concurrency;
    let window_bound = window * o.body;
    let whole = o.items * o.body;
    println!(
        "memprofile: {} items x {} B answers, concurrency {}, window {} items, {} execution",
        o.items,
        o.body,
        o.concurrency,
        window,
        if o.spawned { "spawned" } else { "polled" }
    );
    println!(
        "request body {:.1} KiB; response {:.1} KiB in {frames} frames (largest {:.1} KiB)",
        kib(request_bytes),
        kib(total),
        kib(largest)
    );
    println!(
        "heap held by the decoded batch when the head is ready: {:.1} KiB ({:.0} B per item); peak so far {:.1} KiB",
        kib(head_live - baseline),
        (head_live - baseline) as f64 / o.items as f64,
        kib(head_peak)
    );
    println!(
        "growth above that level while the body streams:        {:.1} KiB",
        kib(growth)
    );
    println!(
        "peak heap above baseline:                   {:>9.1} KiB",
        kib(peak)
    );
    println!(
        "streaming growth vs window x body ({:.1} KiB): {:.2}x",
        kib(window_bound),
        growth as f64 / window_bound as f64
    );
    println!(
        "(a) 2 x window x body = {window} x {} B:    {:>9.1} KiB  -> peak is {:.2}x",
        o.body,
        kib(2 * window_bound),
        peak as f64 / (2 * window_bound) as f64
    );
    println!(
        "    window x body = {window} x {} B:        {:>9.1} KiB  -> peak is {:.2}x",
        o.body,
        kib(window_bound),
        peak as f64 / window_bound as f64
    );
    println!(
        "(b) whole batch {} x {} B:             {:>9.1} KiB  -> peak is {:.2}x",
        o.items,
        o.body,
        kib(whole),
        peak as f64 / whole as f64
    );
}
