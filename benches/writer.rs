//! The multipart writer: item answers encoded into one batch response body.
//!
//! Run with `cargo bench --bench writer`. Bench ids end in the item count; the summary printed at
//! the end gives ns per item.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use http::{header, HeaderValue, Response};
use http_batch::format::multipart::{write_response_part, MultipartEncoder};
use http_batch::format::Encoder;
use http_batch::ItemMeta;

const BOUNDARY: &str = "batch_0123456789abcdef0123456789abcdef";

/// The cases: (label, items, body bytes per item).
const CASES: [(&str, usize, usize); 5] = [
    ("small", 1, 0),
    ("small", 10, 0),
    ("small", 100, 0),
    ("small", 1000, 0),
    ("body_10k", 100, 10 * 1024),
];

/// What an axum handler returning a `&'static str` (or a 10 KiB body) answers with, after the
/// layer collected the body.
fn answers(n: usize, body_len: usize) -> Vec<(ItemMeta, Response<Bytes>)> {
    let body = if body_len == 0 {
        Bytes::from_static(b"ok")
    } else {
        Bytes::from(vec![b'x'; body_len])
    };
    (0..n)
        .map(|i| {
            let mut res = Response::new(body.clone());
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            res.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            let meta = ItemMeta {
                index: i,
                id: Some(format!("item{i}").into()),
                echo: Some(format!("<item{i}>")),
            };
            (meta, res)
        })
        .collect()
}

fn encode_all(answers: &[(ItemMeta, Response<Bytes>)]) -> BytesMut {
    let mut enc = MultipartEncoder::new(BOUNDARY.to_owned());
    let mut out = BytesMut::new();
    enc.begin(&mut out);
    for (meta, res) in answers {
        enc.item(meta, res, &mut out);
    }
    enc.end(&mut out);
    out
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("writer_encoder");
    for (label, n, body_len) in CASES {
        let answers = answers(n, body_len);
        let len = encode_all(&answers).len();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new(label, n), &answers, |b, answers| {
            b.iter(|| encode_all(black_box(answers)))
        });
    }
    group.finish();

    // The part writer into a buffer that is already large enough, so buffer growth is left out.
    let mut group = c.benchmark_group("writer_part");
    for (label, n, body_len) in CASES {
        let answers = answers(n, body_len);
        let len = encode_all(&answers).len();
        let mut out = BytesMut::with_capacity(len * 2);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new(label, n), &answers, |b, answers| {
            b.iter(|| {
                out.clear();
                for (meta, res) in black_box(answers) {
                    write_response_part(BOUNDARY, meta.echo.as_deref(), res, &mut out);
                }
                out.len()
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\nper item:");
    for group in ["writer_encoder", "writer_part"] {
        for (label, n, body_len) in CASES {
            let Some(ns) = mean_ns(group, label, n) else {
                continue;
            };
            let bytes = encode_all(&answers(n, body_len)).len() as f64;
            println!(
                "  {group}/{label}/{n}: {:>9.1} ns/item  {:>8.1} MiB/s",
                ns / n as f64,
                bytes / (ns / 1e9) / (1024.0 * 1024.0)
            );
        }
    }
}

/// The time per iteration of the last run of a bench, in nanoseconds, read from criterion's output directory.
fn mean_ns(group: &str, function: &str, param: usize) -> Option<f64> {
    let root = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|d| std::path::PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| std::path::PathBuf::from("target/criterion"));
    let path = root
        .join(group)
        .join(function)
        .join(param.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    // Criterion reports the slope when it has one (linear sampling), else the mean.
    v["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| v["mean"]["point_estimate"].as_f64())
}
