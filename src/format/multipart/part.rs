//! The MIME headers at the top of one part (`Content-Type`, `Content-ID`, ...).
//!
//! These are RFC 5322 style headers, so folded (continued) lines are allowed here, unlike in the
//! nested HTTP message. httparse does not unfold, so this small reader does.

use std::ops::Range;

use crate::error::ItemError;
use crate::limits::Limits;

/// The part headers the batch format cares about.
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
    // The header being built: which one, and its value with folded lines joined.
    let mut current: Option<(Field, Vec<u8>)> = None;
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
                value.extend_from_slice(line);
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
        let value = if field == Field::Other {
            Vec::new()
        } else {
            line[colon + 1..].to_vec()
        };
        current = Some((field, value));
    }
}

fn finish(head: &mut PartHead, header: Option<(Field, Vec<u8>)>) {
    let Some((field, value)) = header else { return };
    let slot = match field {
        Field::ContentType => &mut head.content_type,
        Field::ContentId => &mut head.content_id,
        Field::TransferEncoding => &mut head.transfer_encoding,
        Field::DependsOn => &mut head.depends_on,
        Field::Other => return,
    };
    let value = trim(&value);
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
        assert_eq!(h.content_type.as_deref(), Some("application/http"));
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
