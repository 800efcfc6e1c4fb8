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
    parse_request_in(raw, raw, limits)
}

/// [`parse_request`] of `raw`, a sub-slice of `src`: the target, header values and body are
/// shared slices of `src` rather than copies.
#[inline]
pub(crate) fn parse_request_in(
    src: &Bytes,
    raw: &[u8],
    limits: &Limits,
) -> Result<Request<Bytes>, ItemError> {
    let start = skip_blank_lines(raw);
    let (line, after_line) = next_line(raw, start)
        .ok_or_else(|| ItemError::bad_request("the part holds no HTTP request"))?;
    let mut words = line;
    let method = next_word(&mut words)
        .ok_or_else(|| ItemError::bad_request("the part holds no HTTP request"))?;
    let method = Method::from_bytes(method).map_err(|_| {
        ItemError::bad_request(format!(
            "invalid method `{}` in nested request line",
            String::from_utf8_lossy(method)
        ))
    })?;
    let target = next_word(&mut words).ok_or_else(|| {
        ItemError::bad_request(format!(
            "nested request line `{}` has no target",
            lossy(line)
        ))
    })?;
    let version = match next_word(&mut words) {
        None | Some(b"HTTP/1.1") => Version::HTTP_11,
        Some(b"HTTP/1.0") => Version::HTTP_10,
        Some(other) => {
            return Err(ItemError::bad_request(format!(
                "unsupported version `{}` in nested request line `{}`; a part holds an HTTP \
                 request such as `GET /path HTTP/1.1`",
                lossy(other),
                lossy(line)
            )))
        }
    };
    if next_word(&mut words).is_some() {
        return Err(ItemError::bad_request(format!(
            "nested request line `{}` has too many words",
            lossy(line)
        )));
    }
    let uri = parse_target(src, target)?;

    let head = parse_headers(src, raw, after_line, limits)?;
    let body = body_of(src, raw, &head)?;

    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = head.headers;
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
    let head = parse_headers(raw, raw, after_line, limits)?;
    let body = body_of(raw, raw, &head)?;
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = head.headers;
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

/// The next word of a request line (words are separated by runs of spaces and tabs), and
/// `rest` moved past it.
fn next_word<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut s = *rest;
    while let [b' ' | b'\t', tail @ ..] = s {
        s = tail;
    }
    if s.is_empty() {
        return None;
    }
    let (word, tail) = s.split_at(find_blank(s).unwrap_or(s.len()));
    *rest = tail;
    Some(word)
}

/// The index of the first space or tab in `s`.
fn find_blank(s: &[u8]) -> Option<usize> {
    memchr::memchr2(b' ', b'\t', s)
}

/// `target` is a sub-slice of `src`; the URI shares its bytes.
fn parse_target(src: &Bytes, target: &[u8]) -> Result<Uri, ItemError> {
    let bad =
        |why: &str| ItemError::bad_request(format!("invalid target `{}`: {why}", lossy(target)));
    let uri = if target.first() == Some(&b'/') {
        Uri::from_maybe_shared(src.slice_ref(target)).map_err(|e| bad(&e.to_string()))?
    } else if target.starts_with(b"http://") || target.starts_with(b"https://") {
        let uri = Uri::from_maybe_shared(src.slice_ref(target)).map_err(|e| bad(&e.to_string()))?;
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

/// The head of a nested message: its header fields, where its body starts, and what the
/// framing headers said (noted while the map is built, so the body check needs no lookups).
struct Head {
    headers: HeaderMap,
    body_start: usize,
    /// A `Transfer-Encoding` field was present.
    transfer_encoding: bool,
    /// The `Content-Length` all its fields agree on, or why they are unusable (the first
    /// problem in field order).
    content_length: Result<Option<usize>, &'static str>,
}

/// How many header slots are tried first; a message with more is parsed again with room for
/// the configured limit. Small, because httparse wants the slots initialised on every call.
const FIRST_SLOTS: usize = 16;

/// Parses header fields of `raw` (a sub-slice of `src`) starting at `start`, up to and
/// including the blank line.
#[inline]
fn parse_headers(
    src: &Bytes,
    raw: &[u8],
    start: usize,
    limits: &Limits,
) -> Result<Head, ItemError> {
    if start >= raw.len() {
        return Ok(Head {
            headers: HeaderMap::new(),
            body_start: raw.len(),
            transfer_encoding: false,
            content_length: Ok(None),
        });
    }
    let rest = &raw[start..];
    let wanted = limits.max_headers.min(1024);
    let slots = wanted.min(FIRST_SLOTS);
    let mut first = [httparse::EMPTY_HEADER; FIRST_SLOTS];
    let mut on_stack;
    let mut on_heap;
    let mut status = httparse::parse_headers(rest, &mut first[..slots]);
    if matches!(status, Err(httparse::Error::TooManyHeaders)) && wanted > slots {
        // The default limit fits on the stack; only a larger configured limit allocates.
        let storage: &mut [httparse::Header<'_>] = if wanted <= 64 {
            on_stack = [httparse::EMPTY_HEADER; 64];
            &mut on_stack[..wanted]
        } else {
            on_heap = vec![httparse::EMPTY_HEADER; wanted];
            &mut on_heap
        };
        status = httparse::parse_headers(rest, storage);
    }
    match status {
        Ok(httparse::Status::Complete((len, fields))) => {
            check_head_size(len, limits)?;
            to_head(Some(src), fields, start + len)
        }
        Ok(httparse::Status::Partial) => {
            // Headers that run to the end of the part with no blank line: a message without a
            // body, as lenient clients write it. Parse again with the blank line added.
            let mut owned = rest.to_vec();
            owned.extend_from_slice(b"\r\n\r\n");
            let mut slots = vec![httparse::EMPTY_HEADER; wanted];
            match httparse::parse_headers(&owned, &mut slots) {
                Ok(httparse::Status::Complete((_, fields))) => {
                    let head = to_head(None, fields, raw.len())?;
                    check_head_size(rest.len(), limits)?;
                    Ok(head)
                }
                _ => Err(ItemError::bad_request(
                    "nested message headers are malformed",
                )),
            }
        }
        Err(httparse::Error::TooManyHeaders) => Err(ItemError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("nested message has more than {} headers", limits.max_headers),
        )),
        Err(e) => Err(ItemError::bad_request(format!(
            "invalid header in nested message: {e} (header lines may not be folded inside a nested message)"
        ))),
    }
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

/// Builds the header map. With `src`, the fields are sub-slices of it and the values share its
/// bytes; without, they are copied.
fn to_head(
    src: Option<&Bytes>,
    fields: &[httparse::Header<'_>],
    body_start: usize,
) -> Result<Head, ItemError> {
    let mut map = HeaderMap::with_capacity(fields.len());
    let mut transfer_encoding = false;
    let mut content_length = Ok(None);
    for h in fields {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| ItemError::bad_request(format!("invalid header name `{}`", h.name)))?;
        let value = match src {
            Some(src) => HeaderValue::from_maybe_shared(src.slice_ref(h.value)),
            None => HeaderValue::from_bytes(h.value),
        }
        .map_err(|_| ItemError::bad_request(format!("invalid value for header `{}`", h.name)))?;
        if name == TRANSFER_ENCODING {
            transfer_encoding = true;
        } else if name == CONTENT_LENGTH {
            if let Ok(declared) = content_length {
                content_length = match (declared, content_length_value(h.value)) {
                    (_, None) => Err("invalid Content-Length in nested message"),
                    (Some(d), Some(n)) if d != n => {
                        Err("conflicting Content-Length values in nested message")
                    }
                    (_, Some(n)) => Ok(Some(n)),
                };
            }
        }
        map.try_append(name, value).map_err(|_| {
            ItemError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "nested message has more headers than a request can hold",
            )
        })?;
    }
    Ok(Head {
        headers: map,
        body_start,
        transfer_encoding,
        content_length,
    })
}

/// A `Content-Length` value: digits only (`parse` would also take a leading `+`), with optional
/// spaces or tabs around them, that fit a `usize`.
fn content_length_value(value: &[u8]) -> Option<usize> {
    let mut v = value;
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0usize, |n, c| {
        if c.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(usize::from(c - b'0'))
        } else {
            None
        }
    })
}

/// The message body: what follows the head of `raw` (a sub-slice of `src`), checked against
/// `Content-Length`.
fn body_of(src: &Bytes, raw: &[u8], head: &Head) -> Result<Bytes, ItemError> {
    if head.transfer_encoding {
        return Err(ItemError::bad_request(
            "Transfer-Encoding is not allowed in a nested message; a part's body is delimited by its boundary",
        ));
    }
    let body = &raw[head.body_start.min(raw.len())..];
    let Some(n) = head.content_length.map_err(ItemError::bad_request)? else {
        return Ok(src.slice_ref(body));
    };
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
    Ok(src.slice_ref(&body[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Request<Bytes>, ItemError> {
        parse_request(&Bytes::copy_from_slice(s.as_bytes()), &Limits::default())
    }

    #[test]
    fn junk_says_what_a_part_should_hold() {
        let err = req("this is not http").unwrap_err();
        assert!(
            err.message().contains("`this is not http`"),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("GET /path HTTP/1.1"),
            "{}",
            err.message()
        );
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
    fn more_headers_than_first_slots() {
        // More fields than the first parse has room for, with and without the blank line.
        let mut s = String::from("GET /a\r\n");
        for i in 0..(FIRST_SLOTS + 4) {
            s.push_str(&format!("X-{i}: v{i}\r\n"));
        }
        let r = req(&s).unwrap();
        assert_eq!(r.headers().len(), FIRST_SLOTS + 4);
        s.push_str("Content-Length: 2\r\n\r\nab");
        let r = req(&s).unwrap();
        assert_eq!(r.headers().len(), FIRST_SLOTS + 5);
        assert_eq!(r.body().as_ref(), b"ab");
        let limits = Limits::default().max_headers(FIRST_SLOTS + 2);
        let err = parse_request(&Bytes::from(s), &limits).unwrap_err();
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn framing_headers_in_any_case_and_order() {
        let r = req("POST /a\r\ncontent-length:  2 \r\nCONTENT-LENGTH: 2\r\n\r\nab").unwrap();
        assert_eq!(r.body().as_ref(), b"ab");
        assert!(req("POST /a\r\nContent-Length: 2\r\nTRANSFER-encoding: x\r\n\r\nab").is_err());
        assert!(req("POST /a\r\nContent-Length: 99999999999999999999999\r\n\r\nab").is_err());
        assert!(req("POST /a\r\nContent-Length: \r\n\r\n").is_err());
    }

    #[test]
    fn blanks_found_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for blank in [b' ', b'\t'] {
                    // Bytes around the blank that differ from it by one bit or by borrow-prone
                    // values, so a sloppy zero-byte test would show.
                    let mut s: Vec<u8> = (0..len)
                        .map(|i| [0x21, 0x80, 0x08, 0xff, 0x00][i % 5])
                        .collect();
                    if at < len {
                        s[at] = blank;
                        s.push(blank);
                    }
                    let want = s.iter().position(|c| *c == b' ' || *c == b'\t');
                    assert_eq!(find_blank(&s), want, "{s:?}");
                }
            }
        }
        let mut line: &[u8] = b" \tGET\t /a  HTTP/1.1 ";
        assert_eq!(next_word(&mut line), Some(&b"GET"[..]));
        assert_eq!(next_word(&mut line), Some(&b"/a"[..]));
        assert_eq!(next_word(&mut line), Some(&b"HTTP/1.1"[..]));
        assert_eq!(next_word(&mut line), None);
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
