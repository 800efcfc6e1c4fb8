//! The MIME headers at the top of one part (`Content-Type`, `Content-ID`, ...).
//!
//! These are RFC 5322 style headers, so folded (continued) lines are allowed here, unlike in the
//! nested HTTP message. httparse does not unfold, so this small reader does.

use std::ops::Range;

use crate::error::ItemError;
use crate::limits::Limits;

/// The part headers the batch format cares about. `content_type` and `transfer_encoding` are
/// only kept when they are not the expected `application/http` and `binary`/`7bit`/`8bit`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PartHead {
    pub(crate) content_type: Option<String>,
    pub(crate) content_id: Option<String>,
    pub(crate) transfer_encoding: Option<String>,
    pub(crate) depends_on: Option<String>,
}

/// Which of the headers we keep a line belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    ContentType,
    ContentId,
    TransferEncoding,
    DependsOn,
    /// A header the batch format does not use: skipped without copying.
    Other,
}

fn field_of(name: &[u8]) -> Field {
    let name = trim(name);
    if name.eq_ignore_ascii_case(b"content-type") {
        Field::ContentType
    } else if name.eq_ignore_ascii_case(b"content-id") {
        Field::ContentId
    } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
        Field::TransferEncoding
    } else if name.eq_ignore_ascii_case(b"depends-on") {
        Field::DependsOn
    } else {
        Field::Other
    }
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// Reads the part headers; returns them and the range of the part's content (the nested
/// message). A part that starts straight with a request line has no headers.
///
/// Only the headers the format uses are copied out; the rest are skipped in place.
pub(crate) fn parse_part(
    raw: &[u8],
    limits: &Limits,
) -> Result<(PartHead, Range<usize>), ItemError> {
    let mut head = PartHead::default();
    if starts_like_request_line(raw) {
        return Ok((head, 0..raw.len()));
    }
    let mut pos = 0;
    let mut count = 0;
    // The header being built: which one, and its value (copied only once a fold joins lines).
    let mut current: Option<(Field, Value<'_>)> = None;
    loop {
        if pos > limits.max_header_bytes {
            return Err(ItemError::bad_request(format!(
                "part headers are longer than the limit of {} bytes",
                limits.max_header_bytes
            )));
        }
        let Some(line_len) = memchr::memchr(b'\n', &raw[pos..]) else {
            return Err(ItemError::bad_request(
                "part headers are not followed by an empty line and a nested HTTP request",
            ));
        };
        let mut line = &raw[pos..pos + line_len];
        pos += line_len + 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            finish(&mut head, current.take());
            return Ok((head, pos..raw.len()));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Folded: per RFC 5322 unfolding removes only the line break.
            let Some((field, value)) = current.as_mut() else {
                return Err(ItemError::bad_request(
                    "part headers start with a continuation line",
                ));
            };
            if *field != Field::Other {
                value.push_line(line);
            }
            continue;
        }
        finish(&mut head, current.take());
        count += 1;
        if count > limits.max_headers {
            return Err(ItemError::bad_request(format!(
                "part has more than {} headers",
                limits.max_headers
            )));
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(ItemError::bad_request(format!(
                "part header line `{}` has no colon",
                String::from_utf8_lossy(line)
            )));
        };
        let field = field_of(&line[..colon]);
        current = Some((field, Value::Slice(&line[colon + 1..])));
    }
}

/// A header value: a slice of the part, or an owned copy once a folded line was joined to it.
enum Value<'a> {
    Slice(&'a [u8]),
    Owned(Vec<u8>),
}

impl Value<'_> {
    fn push_line(&mut self, line: &[u8]) {
        if let Value::Slice(first) = self {
            *self = Value::Owned(first.to_vec());
        }
        if let Value::Owned(v) = self {
            v.extend_from_slice(line);
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Value::Slice(s) => s,
            Value::Owned(v) => v,
        }
    }
}

fn finish(head: &mut PartHead, header: Option<(Field, Value<'_>)>) {
    let Some((field, value)) = header else { return };
    let value = value.bytes();
    let slot = match field {
        // The expected values are not kept: `None` means "fine" to the caller, which only
        // looks closer at unexpected ones.
        Field::ContentType => {
            let essence = trim(value.split(|c| *c == b';').next().unwrap_or_default());
            if essence.eq_ignore_ascii_case(b"application/http") {
                return;
            }
            &mut head.content_type
        }
        Field::TransferEncoding => {
            let cte = trim(value);
            if [&b"binary"[..], b"7bit", b"8bit"]
                .iter()
                .any(|e| cte.eq_ignore_ascii_case(e))
            {
                return;
            }
            &mut head.transfer_encoding
        }
        Field::ContentId => &mut head.content_id,
        Field::DependsOn => &mut head.depends_on,
        Field::Other => return,
    };
    let value = trim(value);
    *slot = Some(match std::str::from_utf8(value) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    });
}

/// `GET /x`, `POST http://...`: an uppercase token and a space, with no colon before the space.
fn starts_like_request_line(raw: &[u8]) -> bool {
    let Some(sp) = memchr::memchr(b' ', raw) else {
        return false;
    };
    sp > 0 && sp < 16 && raw[..sp].iter().all(|c| c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(PartHead, String), ItemError> {
        parse_part(s.as_bytes(), &Limits::default()).map(|(h, r)| (h, s[r].to_owned()))
    }

    #[test]
    fn headers_and_content() {
        let (h, rest) =
            parse("Content-Type: application/http\r\nContent-ID: <a+b>\r\n\r\nGET / HTTP/1.1\r\n")
                .unwrap();
        assert_eq!(h.content_type, None, "the expected type is not kept");
        assert_eq!(h.content_id.as_deref(), Some("<a+b>"));
        assert_eq!(rest, "GET / HTTP/1.1\r\n");
    }

    #[test]
    fn folded_content_id_is_unfolded() {
        let (h, _) =
            parse("content-id:\n <abc+\n\tdef>\nContent-Type: application/http\n\nGET /\n")
                .unwrap();
        assert_eq!(h.content_id.as_deref(), Some("<abc+\tdef>"));
    }

    #[test]
    fn value_keeps_inner_spaces() {
        let (h, _) = parse("Content-ID: <a b+c>\n\nGET /\n").unwrap();
        assert_eq!(h.content_id.as_deref(), Some("<a b+c>"));
    }

    #[test]
    fn empty_content_id() {
        let (h, _) = parse("Content-ID:\r\n\r\nGET /\r\n").unwrap();
        assert_eq!(h.content_id.as_deref(), Some(""));
    }

    #[test]
    fn no_headers_at_all() {
        let (h, rest) = parse("GET /farm/v1/animals HTTP/1.1\r\n").unwrap();
        assert_eq!(h, PartHead::default());
        assert_eq!(rest, "GET /farm/v1/animals HTTP/1.1\r\n");
    }

    #[test]
    fn missing_blank_line() {
        assert!(parse("Content-Type: application/http").is_err());
    }

    #[test]
    fn header_without_colon() {
        assert!(parse("Content-Type application/http\n\nGET /\n").is_err());
    }
}
