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

/// Reads the part headers; returns them and the range of the part's content (the nested
/// message). A part that starts straight with a request line has no headers.
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
    // The header being built, as (name, value) with folded lines joined.
    let mut current: Option<(String, String)> = None;
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
            let Some((_, value)) = current.as_mut() else {
                return Err(ItemError::bad_request(
                    "part headers start with a continuation line",
                ));
            };
            value.push_str(&String::from_utf8_lossy(line));
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
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_owned();
        let value = String::from_utf8_lossy(&line[colon + 1..]).to_string();
        current = Some((name, value));
    }
}

fn finish(head: &mut PartHead, header: Option<(String, String)>) {
    let Some((name, value)) = header else { return };
    let value = value.trim_matches(|c| c == ' ' || c == '\t').to_owned();
    if name.eq_ignore_ascii_case("content-type") {
        head.content_type = Some(value);
    } else if name.eq_ignore_ascii_case("content-id") {
        head.content_id = Some(value);
    } else if name.eq_ignore_ascii_case("content-transfer-encoding") {
        head.transfer_encoding = Some(value);
    } else if name.eq_ignore_ascii_case("depends-on") {
        head.depends_on = Some(value);
    }
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
