//! Arbitrary bytes as the HTTP/1.x message nested in a part.
//!
//! Input layout: the first byte picks the limits (odd: tight limits, to reach the limit paths),
//! the rest is the message.
//!
//! Oracle beyond "no panic": what the reader accepts, the writer writes back into a part that
//! the reader reads to the same message (method, target, headers, body; status for responses).
#![no_main]

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http_batch::format::multipart::{
    parse_request, parse_response, split_parts, write_request, write_response_part,
};
use http_batch::Limits;
use libfuzzer_sys::fuzz_target;

const BOUNDARY: &str = "fuzz_boundary_Zq8";

/// Headers the writer drops or computes itself, and so cannot round-trip.
fn framing(name: &header::HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name == header::HOST
        || name == "keep-alive"
}

fn assert_same_headers(a: &HeaderMap, b: &HeaderMap) {
    for name in a.keys().chain(b.keys()) {
        if framing(name) {
            continue;
        }
        let va: Vec<_> = a.get_all(name).iter().collect();
        let vb: Vec<_> = b.get_all(name).iter().collect();
        assert_eq!(va, vb, "header {name} changed in the round trip");
    }
}

/// Writes one part with `write`, closes the batch, and returns the nested message of the single
/// part read back.
fn round_trip(write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut out = BytesMut::new();
    write(&mut out);
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let out = out.freeze();
    let roomy = Limits::default();
    let parts = split_parts(&out, BOUNDARY.as_bytes(), &roomy).expect("written batch splits");
    assert_eq!(
        parts.len(),
        1,
        "one part written, {} read: {out:?}",
        parts.len()
    );
    let part = &parts[0];
    let at = memchr::memmem::find(part, b"\r\n\r\n").expect("part headers end") + 4;
    part.slice(at..)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, raw)) = data.split_first() else {
        return;
    };
    let limits = if pick & 1 == 1 {
        Limits::default().max_headers(2).max_header_bytes(40)
    } else {
        Limits::default()
    };
    let raw = Bytes::copy_from_slice(raw);
    let request = parse_request(&raw, &limits);
    let response = parse_response(&raw, &limits);

    // A body holding the writer's own delimiter cannot round-trip; that is the boundary's job.
    let delimiter = format!("--{BOUNDARY}");
    if memchr::memmem::find(&raw, delimiter.as_bytes()).is_some() {
        return;
    }
    // The writer adds a Content-Length, so the re-read may see one header more than the input.
    let roomy = Limits::default()
        .max_header_bytes(1 << 20)
        .max_headers(1024);

    if let Ok(req) = request {
        let nested = round_trip(|out| write_request(BOUNDARY, Some("id"), &req, out));
        let again = parse_request(&nested, &roomy)
            .unwrap_or_else(|e| panic!("rewritten request does not parse: {e:?}\n{nested:?}"));
        assert_eq!(again.method(), req.method());
        assert_eq!(again.uri().path(), req.uri().path(), "{nested:?}");
        assert_eq!(again.uri().query(), req.uri().query(), "{nested:?}");
        assert_same_headers(req.headers(), again.headers());
        assert_eq!(again.body(), req.body());
    }
    if let Ok(res) = response {
        let nested = round_trip(|out| write_response_part(BOUNDARY, Some("<id>"), &res, out));
        let again = parse_response(&nested, &roomy)
            .unwrap_or_else(|e| panic!("rewritten response does not parse: {e:?}\n{nested:?}"));
        assert_eq!(again.status(), res.status());
        assert_same_headers(res.headers(), again.headers());
        assert_eq!(again.body(), res.body());
    }
});
