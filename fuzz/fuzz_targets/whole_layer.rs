//! Arbitrary outer headers and bodies, in either format, through the real layer over a small
//! axum app.
//!
//! Input layout: the first byte picks the format (even: JSON, odd: multipart with the boundary
//! `b`) and the execution mode (bit 1); the bytes up to the first `\n\n` are outer header lines
//! (`name: value`, the invalid ones skipped) and the URL's query on the first line; the rest is
//! the body.
//!
//! Oracles beyond "no panic, no hang": the layer answers 200 or a 4xx; a 200 JSON answer is one
//! JSON object with a `responses` array, a 200 multipart answer is strict multipart text whose
//! every part parses as a response; and this thread's live heap never passes 64 MiB, a small
//! multiple of the largest body the limits below let in.
#![no_main]

use axum::body::Body;
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_batch::format::multipart::{boundary_of, parse_response, split_parts};
use http_batch::{BatchLayer, Execution, Limits};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

// The tests' counter; this target reads only what is live, not the peak.
#[allow(dead_code)]
#[path = "../../tests/support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

const HEAP_LIMIT: isize = 64 << 20;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fn app() -> Router {
    Router::new()
        .route("/echo", any(|body: Bytes| async move { body }))
        .route("/big", any(|| async { vec![b'x'; 64 * 1024] }))
        .fallback(any(|| async { "" }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (head, body) = match memchr::memmem::find(rest, b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (&[][..], rest),
    };
    let mut lines = head.split(|&c| c == b'\n');
    let query = lines.next().unwrap_or_default();
    let json = mode & 1 == 0;
    let uri = format!("/batch?{}", String::from_utf8_lossy(query));
    let Ok(uri) = uri.parse::<http::Uri>() else {
        return;
    };
    let mut req = Request::new(Body::from(Bytes::copy_from_slice(body)));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    for line in lines {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        if req.headers_mut().try_append(name, value).is_err() {
            return;
        }
    }
    let content_type = if json {
        "application/json"
    } else {
        "multipart/mixed; boundary=b"
    };
    req.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    req.headers_mut().remove("content-length");
    let execution = if mode & 2 == 0 {
        Execution::Polled
    } else {
        Execution::Spawned
    };
    let svc = BatchLayer::new()
        .limits(
            Limits::default()
                .max_items(64)
                .max_body_bytes(1 << 20)
                .max_response_bytes(2 << 20)
                .max_held_bytes(256 << 10),
        )
        .execution(execution)
        .wrap_router(app());
    let base = counting::live();
    let (status, ct, out) = runtime().block_on(async move {
        let res = svc.oneshot(req).await.expect("infallible");
        let status = res.status();
        let ct = res.headers().get("content-type").cloned();
        let out = res.into_body().collect().await.expect("body").to_bytes();
        (status, ct, out)
    });
    let grown = counting::live() - base;
    assert!(grown < HEAP_LIMIT, "live heap grew by {grown} bytes");
    if status != StatusCode::OK {
        assert!(
            status.is_client_error(),
            "batch answered {status}: {}",
            String::from_utf8_lossy(&out)
        );
        return;
    }
    let ct = ct.expect("a 200 batch answer has a content type");
    if json {
        let v: serde_json::Value = serde_json::from_slice(&out).expect("the answer is JSON");
        assert!(v["responses"].is_array(), "{v}");
        return;
    }
    let mime: mime::Mime = ct
        .to_str()
        .unwrap()
        .parse()
        .expect("answer content type parses");
    let boundary = boundary_of(&mime).expect("answer boundary");
    let answered = split_parts(&out, boundary.as_bytes(), &Limits::default())
        .expect("the answer is well-formed multipart");
    for part in answered {
        let at = memchr::memmem::find(&part, b"\r\n\r\n").expect("part headers end") + 4;
        parse_response(&part.slice(at..), &Limits::default()).expect("answer part parses");
    }
});
