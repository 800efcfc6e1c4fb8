//! Arbitrary bytes as a multipart batch: the reader on its own, then the whole layer.
//!
//! Input layout: the first byte `n` picks the boundary. `n <= 70`: the next `n` bytes are the
//! `boundary=` parameter text of the Content-Type (so quoted and invalid boundaries are reached
//! too) and the rest is the body. `n > 70`: the boundary is the fixed `batch_foobarbaz` and
//! everything after the first byte is the body; most first bytes land here, so the fuzzer
//! spends most of its time on bodies rather than on boundaries.
//!
//! Oracles beyond "no panic, no hang": the layer answers 200 or a 4xx; a 200 answer is strict
//! multipart text with one readable response per request part.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_batch::format::multipart::{boundary_of, parse_request, parse_response, split_parts};
use http_batch::{BatchLayer, Limits};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt};

const FIXED: &str = "batch_foobarbaz";

fn split_input(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = data.split_first()?;
    let n = usize::from(n);
    if n > 70 {
        return Some((FIXED.as_bytes(), rest));
    }
    if rest.len() < n {
        return None;
    }
    Some(rest.split_at(n))
}

/// The reader alone: every part through the nested-request parser, with and without its MIME
/// headers.
fn read(body: &Bytes, boundary: &[u8], limits: &Limits) -> Option<usize> {
    let parts = split_parts(body, boundary, limits).ok()?;
    for part in &parts {
        let _ = parse_request(part, limits);
        if let Some(at) = blank_line(part) {
            let _ = parse_request(&part.slice(at..), limits);
        }
    }
    Some(parts.len())
}

/// Where the content after the first blank line starts, for either line ending.
fn blank_line(part: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(part, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(part, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

async fn answer(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from(req.uri().to_string()))))
}

/// The whole layer, in process, with an inner service that answers every item with its URI.
fn serve(content_type: HeaderValue, body: Bytes, parts: Option<usize>) {
    let req = Request::post("/batch")
        .header("host", "localhost")
        .header("content-type", content_type)
        .body(Full::new(body))
        .expect("request");
    let svc = BatchLayer::new().layer(tower::service_fn(answer));
    let (status, ct, out) = runtime().block_on(async move {
        let res = svc.oneshot(req).await.expect("infallible");
        let status = res.status();
        let ct = res.headers().get("content-type").cloned();
        let out = res.into_body().collect().await.expect("body").to_bytes();
        (status, ct, out)
    });
    if status != StatusCode::OK {
        assert!(status.is_client_error(), "batch answered {status}: {out:?}");
        return;
    }
    let ct = ct.expect("a 200 batch answer has a content type");
    let mime: mime::Mime = ct
        .to_str()
        .unwrap()
        .parse()
        .expect("answer content type parses");
    let boundary = boundary_of(&mime).expect("answer boundary");
    let answered = split_parts(&out, boundary.as_bytes(), &Limits::default())
        .expect("the answer is well-formed multipart");
    if let Some(n) = parts {
        assert_eq!(answered.len(), n, "one answer per request part");
    }
    for part in answered {
        // The writer is strict: CRLF and a blank line after the part headers.
        let at = memchr::memmem::find(&part, b"\r\n\r\n").expect("part headers end") + 4;
        parse_response(&part.slice(at..), &Limits::default()).expect("answer part parses");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((param, body)) = split_input(data) else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    let tight = Limits::default()
        .max_items(3)
        .max_part_bytes(64)
        .max_headers(3)
        .max_header_bytes(48);
    // The raw parameter bytes as a boundary, as a caller of `split_parts` might pass them.
    read(&body, param, &Limits::default());
    read(&body, param, &tight);

    // The way the layer gets its boundary: from the Content-Type header.
    let mut ct = b"multipart/mixed; boundary=".to_vec();
    ct.extend_from_slice(param);
    let Ok(ct) = HeaderValue::from_bytes(&ct) else {
        return;
    };
    let boundary = ct
        .to_str()
        .ok()
        .and_then(|s| s.parse::<mime::Mime>().ok())
        .and_then(|m| boundary_of(&m).ok());
    let parts = boundary.and_then(|b| read(&body, b.as_bytes(), &Limits::default()));
    serve(ct, body, parts);
});
