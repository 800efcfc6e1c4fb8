//! Every per-item limit, checked once after decoding (by `batch.rs`, item by item), whatever the format (custom formats too).
//!
//! Decoders may check early where that protects their own parsing (the multipart reader does),
//! but this stage is what holds every format to the same limits: an item over one of them is
//! answered with its own `413` or `431` and not run, and the other items still run.

use http::StatusCode;

use crate::error::ItemError;
use crate::limits::Limits;

/// The bytes a header line costs on the wire: `name: value\r\n`.
const LINE_OVERHEAD: usize = 4;

/// The error of an item over a per-item limit.
pub(crate) fn check_limits(
    request: &http::Request<bytes::Bytes>,
    limits: &Limits,
) -> Result<(), ItemError> {
    let headers = request.headers();
    if headers.len() > limits.max_headers {
        return Err(ItemError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the item has {} headers; the limit is {}, so it was not run",
                headers.len(),
                limits.max_headers
            ),
        ));
    }
    let head: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + LINE_OVERHEAD)
        .fold(0, usize::saturating_add);
    if head > limits.max_header_bytes {
        return Err(ItemError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the item's headers take {head} bytes; the limit is {}, so it was not run",
                limits.max_header_bytes
            ),
        ));
    }
    let size = head.saturating_add(request.body().len());
    if size > limits.max_part_bytes {
        return Err(ItemError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the item takes {size} bytes; the limit is {}, so it was not run",
                limits.max_part_bytes
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::Request;

    fn status(req: Request<Bytes>, limits: &Limits) -> Option<u16> {
        check_limits(&req, limits)
            .err()
            .map(|e| e.status().as_u16())
    }

    #[test]
    fn each_limit_answers_the_item() {
        let limits = Limits::default()
            .max_headers(2)
            .max_header_bytes(40)
            .max_part_bytes(60);
        let ok = Request::get("/")
            .header("a", "1")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(status(ok, &limits), None);
        let many = Request::get("/")
            .header("a", "1")
            .header("b", "1")
            .header("c", "1")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(status(many, &limits), Some(431));
        let long = Request::get("/")
            .header("a", "x".repeat(50))
            .body(Bytes::new())
            .unwrap();
        assert_eq!(status(long, &limits), Some(431));
        let big = Request::post("/")
            .body(Bytes::from(vec![b'x'; 61]))
            .unwrap();
        assert_eq!(status(big, &limits), Some(413));
    }
}
