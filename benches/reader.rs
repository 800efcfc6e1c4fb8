//! The multipart reader: a whole envelope decoded into items, and the boundary scan alone.
//!
//! Run with `cargo bench --bench reader`. Every bench id ends in the item count, and the summary
//! printed at the end divides the mean time by it (ns per item), which is the figure the
//! performance targets are stated in. `READER_PROFILE=<rounds>` skips criterion and decodes the
//! 1000-item envelope that many times, for callgrind.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use http::Request;
use http_batch::format::multipart::{split_parts, write_request, Multipart};
use http_batch::format::{DecodeContext, Format};
use http_batch::{BatchStore, Limits};

mod support;

const BOUNDARY: &str = "batch_0123456789abcdef0123456789abcdef";

/// One envelope as a real client writes it: `n` items, each with a `Content-ID`, and a body of
/// `body_len` bytes (a PUT) or none (a GET).
fn envelope(n: usize, body_len: usize) -> Bytes {
    let mut out = BytesMut::new();
    let payload = Bytes::from(vec![b'x'; body_len]);
    for i in 0..n {
        let req = if body_len == 0 {
            Request::get(format!("/items/{i}"))
                .header("accept", "application/json")
                .body(Bytes::new())
        } else {
            Request::put(format!("/items/{i}"))
                .header("content-type", "application/octet-stream")
                .body(payload.clone())
        }
        .expect("valid request");
        write_request(BOUNDARY, Some(&format!("item{i}")), &req, &mut out);
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(BOUNDARY.as_bytes());
    out.extend_from_slice(b"--\r\n");
    out.freeze()
}

/// The cases: (label, items, body bytes per item).
const CASES: [(&str, usize, usize); 5] = [
    ("small_get", 1, 0),
    ("small_get", 10, 0),
    ("small_get", 100, 0),
    ("small_get", 1000, 0),
    ("body_10k", 100, 10 * 1024),
];

fn decode(c: &mut Criterion) {
    let parts = Request::post("/batch")
        .body(())
        .expect("valid")
        .into_parts()
        .0;
    let mime: mime::Mime = format!("multipart/mixed; boundary={BOUNDARY}")
        .parse()
        .expect("valid content type");
    let limits = Limits::default();
    let store = BatchStore::new();
    let format = Multipart::new();

    let mut group = c.benchmark_group("reader_decode");
    for (label, n, body_len) in CASES {
        let body = envelope(n, body_len);
        let cx = DecodeContext::new(&parts, &mime, &limits, &store);
        // Sanity: every part must decode into a runnable request, or the bench measures errors.
        let items = format.decode(&cx, body.clone()).expect("envelope decodes");
        assert_eq!(items.len(), n);
        assert!(items.iter().all(|i| i.request().is_ok()));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new(label, n), &body, |b, body| {
            b.iter(|| {
                format
                    .decode(&cx, black_box(body.clone()))
                    .expect("decodes")
            })
        });
    }
    group.finish();

    // The boundary scan alone, so the cost of part headers and nested requests can be told apart.
    let mut group = c.benchmark_group("reader_split");
    for (label, n, body_len) in CASES {
        let body = envelope(n, body_len);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new(label, n), &body, |b, body| {
            b.iter(|| split_parts(black_box(body), BOUNDARY.as_bytes(), &limits).expect("splits"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::config();
    targets = decode
}

fn main() {
    if let Ok(iters) = std::env::var("READER_PROFILE") {
        profile(iters.parse().expect("READER_PROFILE is a number of rounds"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary(&["reader_decode", "reader_split"]);
}

/// Decodes the 1000-item envelope `iters` times without criterion's machinery, for callgrind:
/// `READER_PROFILE=50 valgrind --tool=callgrind target/release/deps/reader-<hash>`.
fn profile(iters: usize) {
    let parts = Request::post("/batch")
        .body(())
        .expect("valid")
        .into_parts()
        .0;
    let mime: mime::Mime = format!("multipart/mixed; boundary={BOUNDARY}")
        .parse()
        .expect("valid content type");
    let limits = Limits::default();
    let store = BatchStore::new();
    let cx = DecodeContext::new(&parts, &mime, &limits, &store);
    let body = envelope(1000, 0);
    let mut items = 0;
    for _ in 0..iters {
        items += Multipart::new()
            .decode(&cx, body.clone())
            .expect("decodes")
            .len();
    }
    println!("decoded {items} items");
}

/// Prints ns per item and MiB/s for every case, from criterion's saved estimates.
fn summary(groups: &[&str]) {
    println!("\nper item:");
    for group in groups {
        for (label, n, body_len) in CASES {
            support::print_per_item(group, label, n, || envelope(n, body_len).len());
        }
    }
}
