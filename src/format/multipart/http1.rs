//! The HTTP/1.x message nested in a part: a request on the server side, a response on the client
//! side.
//!
//! Header fields are parsed by `httparse`, which also rejects obs-fold and invalid names. The
//! request line is read here, because real clients leave out the `HTTP/1.1` version, which
//! httparse (rightly, for a wire request) requires.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

use crate::error::ItemError;
use crate::limits::Limits;

/// Parses the nested HTTP/1.x request of one part.
///
/// `raw` must be the part's content after its MIME headers. The target may be origin-form, a path
/// without its leading `/`, or absolute-form; the layer checks an absolute target's authority
/// later. The request keeps the body bytes as a zero-copy slice of `raw`.
pub fn parse_request(raw: &Bytes, limits: &Limits) -> Result<Request<Bytes>, ItemError> {
    let start = skip_blank_lines(raw);
    let (line, after_line) = next_line(raw, start)
        .ok_or_else(|| ItemError::bad_request("the part holds no HTTP request"))?;
    let mut words = line
        .split(|c| *c == b' ' || *c == b'\t')
        .filter(|w| !w.is_empty());
    let method = words
        .next()
        .ok_or_else(|| ItemError::bad_request("the part holds no HTTP request"))?;
    let method = Method::from_bytes(method).map_err(|_| {
        ItemError::bad_request(format!(
            "invalid method `{}` in nested request line",
            String::from_utf8_lossy(method)
        ))
    })?;
    let target = words.next().ok_or_else(|| {
        ItemError::bad_request(format!(
            "nested request line `{}` has no target",
            lossy(line)
        ))
    })?;
    let version = match words.next() {
        None | Some(b"HTTP/1.1") => Version::HTTP_11,
        Some(b"HTTP/1.0") => Version::HTTP_10,
        Some(other) => {
            return Err(ItemError::bad_request(format!(
                "unsupported version `{}` in nested request line",
                lossy(other)
            )))
        }
    };
    if words.next().is_some() {
        return Err(ItemError::bad_request(format!(
            "nested request line `{}` has too many words",
            lossy(line)
        )));
    }
    let uri = parse_target(target)?;

    let (headers, body_start) = parse_headers(raw, after_line, limits)?;
    let body = body_of(raw, body_start, &headers)?;

    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Parses the nested HTTP/1.x response of one part (the client side of the format).
pub fn parse_response(raw: &Bytes, limits: &Limits) -> Result<Response<Bytes>, ItemError> {
    let start = skip_blank_lines(raw);
    let (line, after_line) = next_line(raw, start)
        .ok_or_else(|| ItemError::bad_request("the part holds no HTTP response"))?;
    let mut words = line.splitn(3, |c| *c == b' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/") {
        return Err(ItemError::bad_request(format!(
            "nested status line `{}` does not start with HTTP/",
            lossy(line)
        )));
    }
    let code = words.next().unwrap_or_default();
    let status = StatusCode::from_bytes(code).map_err(|_| {
        ItemError::bad_request(format!(
            "invalid status code in nested status line `{}`",
            lossy(line)
        ))
    })?;
    let (headers, body_start) = parse_headers(raw, after_line, limits)?;
    let body = body_of(raw, body_start, &headers)?;
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    Ok(res)
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn skip_blank_lines(raw: &[u8]) -> usize {
    let mut i = 0;
    while i < raw.len() && (raw[i] == b'\r' || raw[i] == b'\n') {
        i += 1;
    }
    i
}

/// The line starting at `start` without its ending, and the index after the ending.
fn next_line(raw: &[u8], start: usize) -> Option<(&[u8], usize)> {
    if start >= raw.len() {
        return None;
    }
    let (end, next) = match memchr::memchr(b'\n', &raw[start..]) {
        Some(i) => (start + i, start + i + 1),
        None => (raw.len(), raw.len()),
    };
    let line = &raw[start..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, next))
}

fn parse_target(target: &[u8]) -> Result<Uri, ItemError> {
    let bad =
        |why: &str| ItemError::bad_request(format!("invalid target `{}`: {why}", lossy(target)));
    let uri = if target.first() == Some(&b'/') {
        Uri::try_from(target).map_err(|e| bad(&e.to_string()))?
    } else if target.starts_with(b"http://") || target.starts_with(b"https://") {
        let uri = Uri::try_from(target).map_err(|e| bad(&e.to_string()))?;
        if uri.authority().is_none() {
            return Err(bad("absolute target without authority"));
        }
        uri
    } else if target == b"*" {
        return Err(bad("asterisk-form targets cannot be batched"));
    } else if has_scheme(target) {
        return Err(bad("only http and https absolute targets are allowed"));
    } else {
        // A path without its leading slash, as some clients write it.
        let mut with_slash = Vec::with_capacity(target.len() + 1);
        with_slash.push(b'/');
        with_slash.extend_from_slice(target);
        Uri::try_from(with_slash).map_err(|e| bad(&e.to_string()))?
    };
    Ok(uri)
}

/// Whether a target starts with a URI scheme (`ftp:`, `mailto:`): a colon before any `/`, `?`
/// or `#`. A colon later on (`a/b?next=http://x`) belongs to the path or query.
fn has_scheme(target: &[u8]) -> bool {
    let end = target
        .iter()
        .position(|c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(target.len());
    target[..end].contains(&b':')
}

/// Parses header fields starting at `start`, up to and including the blank line.
fn parse_headers(
    raw: &[u8],
    start: usize,
    limits: &Limits,
) -> Result<(HeaderMap, usize), ItemError> {
    if start >= raw.len() {
        return Ok((HeaderMap::new(), raw.len()));
    }
    let rest = &raw[start..];
    // The default limit fits on the stack; only a larger configured limit allocates.
    let mut on_stack = [httparse::EMPTY_HEADER; 64];
    let mut on_heap = Vec::new();
    let wanted = limits.max_headers.min(1024);
    let storage: &mut [httparse::Header<'_>] = if wanted <= on_stack.len() {
        &mut on_stack[..wanted]
    } else {
        on_heap.resize(wanted, httparse::EMPTY_HEADER);
        &mut on_heap
    };
    let parsed = match httparse::parse_headers(rest, storage) {
        Ok(httparse::Status::Complete((len, fields))) => Some((len, fields.len())),
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ItemError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("nested message has more than {} headers", limits.max_headers),
            ))
        }
        Err(e) => {
            return Err(ItemError::bad_request(format!(
                "invalid header in nested message: {e} (header lines may not be folded inside a nested message)"
            )))
        }
    };
    let (len, n) = match parsed {
        Some(done) => done,
        None => {
            // Headers that run to the end of the part with no blank line: a message without a
            // body, as lenient clients write it. Parse again with the blank line added.
            let mut owned = rest.to_vec();
            owned.extend_from_slice(b"\r\n\r\n");
            storage.iter_mut().for_each(|h| *h = httparse::EMPTY_HEADER);
            match httparse::parse_headers(&owned, storage) {
                Ok(httparse::Status::Complete((_, fields))) => {
                    let map = to_header_map(fields)?;
                    check_head_size(rest.len(), limits)?;
                    return Ok((map, raw.len()));
                }
                _ => {
                    return Err(ItemError::bad_request(
                        "nested message headers are malformed",
                    ))
                }
            }
        }
    };
    check_head_size(len, limits)?;
    let map = to_header_map(&storage[..n])?;
    Ok((map, start + len))
}

fn check_head_size(len: usize, limits: &Limits) -> Result<(), ItemError> {
    if len > limits.max_header_bytes {
        return Err(ItemError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "nested message headers are longer than the limit of {} bytes",
                limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}

fn to_header_map(fields: &[httparse::Header<'_>]) -> Result<HeaderMap, ItemError> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for h in fields {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| ItemError::bad_request(format!("invalid header name `{}`", h.name)))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| {
            ItemError::bad_request(format!("invalid value for header `{}`", h.name))
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// The message body: what follows the head, checked against `Content-Length`.
fn body_of(raw: &Bytes, start: usize, headers: &HeaderMap) -> Result<Bytes, ItemError> {
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(ItemError::bad_request(
            "Transfer-Encoding is not allowed in a nested message; a part's body is delimited by its boundary",
        ));
    }
    let body = raw.slice(start.min(raw.len())..);
    let mut declared: Option<usize> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let n = value
            .to_str()
            .ok()
            .map(str::trim)
            // Digits only: `parse` would also take a leading `+`.
            .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| ItemError::bad_request("invalid Content-Length in nested message"))?;
        if declared.is_some_and(|d| d != n) {
            return Err(ItemError::bad_request(
                "conflicting Content-Length values in nested message",
            ));
        }
        declared = Some(n);
    }
    let Some(n) = declared else { return Ok(body) };
    if n > body.len() {
        return Err(ItemError::bad_request(format!(
            "nested message declares Content-Length {n} but its part carries {} bytes",
            body.len()
        )));
    }
    if body[n..]
        .iter()
        .any(|c| !matches!(c, b'\r' | b'\n' | b' ' | b'\t'))
    {
        return Err(ItemError::bad_request(format!(
            "nested message declares Content-Length {n} but its part carries {} bytes",
            body.len()
        )));
    }
    Ok(body.slice(..n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Request<Bytes>, ItemError> {
        parse_request(&Bytes::copy_from_slice(s.as_bytes()), &Limits::default())
    }

    #[test]
    fn full_request() {
        let r = req("PUT /farm/v1/animals/pony HTTP/1.1\r\nContent-Type: application/json\r\nIf-Match: \"x\"\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.uri(), "/farm/v1/animals/pony");
        assert_eq!(r.headers()["if-match"], "\"x\"");
        assert_eq!(r.body().as_ref(), b"{}");
    }

    #[test]
    fn bare_lf_no_version_no_slash() {
        let r = req("GET farm/v1/animals?x=1\nAccept: */*\n\n").unwrap();
        assert_eq!(r.uri(), "/farm/v1/animals?x=1");
        assert_eq!(r.headers()["accept"], "*/*");
        assert!(r.body().is_empty());
    }

    #[test]
    fn request_line_only() {
        let r = req("GET /farm/v1/animals").unwrap();
        assert_eq!(r.uri(), "/farm/v1/animals");
        let r = req("GET /a HTTP/1.1\r\nHost: x\r\n").unwrap();
        assert_eq!(r.headers()["host"], "x");
    }

    #[test]
    fn absolute_form() {
        let r = req("GET https://www.googleapis.com/farm/v1/animals HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.uri().host(), Some("www.googleapis.com"));
        assert!(req("GET ftp://x/y HTTP/1.1\r\n\r\n").is_err());
        assert!(req("OPTIONS * HTTP/1.1\r\n\r\n").is_err());
        assert!(req("GET mailto:a@b HTTP/1.1\r\n\r\n").is_err());
        let r = req("GET farm/v1/animals?next=http://x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.uri(), "/farm/v1/animals?next=http://x");
    }

    #[test]
    fn content_length_checks() {
        assert!(req("POST /a\r\nContent-Length: 5\r\n\r\nab").is_err());
        assert!(req("POST /a\r\nContent-Length: 1\r\n\r\nab").is_err());
        let r = req("POST /a\r\nContent-Length: 2\r\n\r\nab\r\n").unwrap();
        assert_eq!(r.body().as_ref(), b"ab");
        assert!(req("POST /a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab").is_err());
        assert!(req("POST /a\r\nContent-Length: +2\r\n\r\nab").is_err());
    }

    #[test]
    fn smuggling_rejected() {
        assert!(req("POST /a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n").is_err());
        assert!(
            req("POST /a\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nab").is_err()
        );
    }

    #[test]
    fn obs_fold_rejected_in_nested_message() {
        let err = req("GET /a\r\nX-A: b\r\n c\r\n\r\n").unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn invalid_header_name() {
        assert!(req("GET /a\r\nBad Name: x\r\n\r\n").is_err());
    }

    #[test]
    fn too_many_headers() {
        let mut s = String::from("GET /a\r\n");
        for i in 0..70 {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        assert_eq!(req(&s).unwrap_err().status(), 431);
    }

    #[test]
    fn leading_blank_lines_skipped() {
        let r = req("\r\n\r\nDELETE /a HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.method(), Method::DELETE);
    }

    #[test]
    fn response_parses() {
        let raw = Bytes::from_static(
            b"HTTP/1.1 404 Not Found\nContent-Type: application/json\nContent-Length: 2\n\n{}",
        );
        let r = parse_response(&raw, &Limits::default()).unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.body().as_ref(), b"{}");
        let raw = Bytes::from_static(b"HTTP/1.1 204\r\n\r\n");
        assert_eq!(
            parse_response(&raw, &Limits::default()).unwrap().status(),
            204
        );
    }
}
