//! The multipart writer: item answers encoded into one batch response body.
//!
//! Run with `cargo bench --bench writer`. Bench ids end in the item count; the summary printed at
//! the end gives ns per item.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use http::{header, HeaderValue, Response};
use http_batch::format::multipart::{write_response_part, MultipartEncoder};
use http_batch::format::Encoder;
use http_batch::ItemMeta;

mod support;

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

criterion_group! {
    name = benches;
    config = support::config();
    targets = encode
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\nper item:");
    for group in ["writer_encoder", "writer_part"] {
        for (label, n, body_len) in CASES {
            support::print_per_item(group, label, n, || encode_all(&answers(n, body_len)).len());
        }
    }
}
