//! The MIME headers at the top of one part (`Content-Type`, `Content-ID`, ...).
//!
//! These are RFC 5322 style headers, so folded (continued) lines are allowed here, unlike in the
//! nested HTTP message. httparse does not unfold, so this small reader does.

use std::borrow::Cow;
use std::ops::Range;

use crate::error::ItemError;
use crate::limits::Limits;

/// The part headers the batch format cares about. `content_type` and `transfer_encoding` are
/// only kept when they are not the expected `application/http` and `binary`/`7bit`/`8bit`.
///
/// Values borrow from the part unless a folded line had to be joined (or invalid UTF-8
/// replaced), so the usual `Content-ID` costs no copy here.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PartHead<'a> {
    pub(crate) content_type: Option<Cow<'a, str>>,
    pub(crate) content_id: Option<Cow<'a, str>>,
    pub(crate) transfer_encoding: Option<Cow<'a, str>>,
    pub(crate) depends_on: Option<Cow<'a, str>>,
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
    // `eq_lower` fails fast on a length mismatch, so each line costs at most one full compare.
    if eq_lower(name, b"content-type") {
        Field::ContentType
    } else if eq_lower(name, b"content-id") {
        Field::ContentId
    } else if eq_lower(name, b"content-transfer-encoding") {
        Field::TransferEncoding
    } else if eq_lower(name, b"depends-on") {
        Field::DependsOn
    } else {
        Field::Other
    }
}

/// `text.eq_ignore_ascii_case(lower)` for a constant `lower` written in lowercase: a letter
/// matches itself or its uppercase form, any other byte only itself. Branch-free over the whole
/// length, which the compiler unrolls for a constant.
fn eq_lower<const N: usize>(text: &[u8], lower: &[u8; N]) -> bool {
    let Ok(text) = <&[u8; N]>::try_from(text) else {
        return false;
    };
    let mut diff = 0;
    for (t, l) in text.iter().zip(lower) {
        let fold = if l.is_ascii_lowercase() { 0x20 } else { 0 };
        diff |= (t | fold) ^ l;
    }
    diff == 0
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
pub(crate) fn parse_part<'a>(
    raw: &'a [u8],
    limits: &Limits,
) -> Result<(PartHead<'a>, Range<usize>), ItemError> {
    let mut head = PartHead::default();
    if starts_like_request_line(raw) {
        return Ok((head, 0..raw.len()));
    }
    let mut pos = 0;
    let mut count = 0;
    // The header being built: which one, and its value (copied only once a fold joins lines).
    let mut current: Option<(Field, Value<'a>)> = None;
    loop {
        if pos > limits.max_header_bytes {
            return Err(ItemError::bad_request(format!(
                "part headers are longer than the limit of {} bytes",
                limits.max_header_bytes
            )));
        }
        if let Some(len) = expected_line(&raw[pos..]) {
            // What the general path below does with this line, minus finding its end and colon,
            // matching its name and checking its value: the value is the expected one, so
            // nothing is kept, and no continuation line follows that could change it.
            if let Some(header) = current.take() {
                finish(&mut head, header);
            }
            count += 1;
            if count > limits.max_headers {
                return Err(too_many_headers(limits));
            }
            pos += len;
            continue;
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
            if let Some(header) = current.take() {
                finish(&mut head, header);
            }
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
        if let Some(header) = current.take() {
            finish(&mut head, header);
        }
        count += 1;
        if count > limits.max_headers {
            return Err(too_many_headers(limits));
        }
        // The Content-ID as clients write it needs no search for its colon.
        if starts_with(line, CONTENT_ID) {
            current = Some((Field::ContentId, Value::Slice(&line[CONTENT_ID.len()..])));
            continue;
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

/// The `Content-ID` of a part whose headers could not be read (too long, too many, malformed),
/// looked for in the lines within the header limit, so that the error answer still carries the
/// id its client matches answers by. Only on that error path; bounded by the limit.
pub(crate) fn salvage_content_id<'a>(raw: &'a [u8], limits: &Limits) -> Option<Cow<'a, str>> {
    let window = &raw[..raw.len().min(limits.max_header_bytes)];
    for line in window.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if let Some(colon) = memchr::memchr(b':', line) {
            if field_of(&line[..colon]) == Field::ContentId {
                let value = trim(&line[colon + 1..]);
                return (!value.is_empty()).then(|| String::from_utf8_lossy(value));
            }
        }
    }
    None
}

fn too_many_headers(limits: &Limits) -> ItemError {
    ItemError::bad_request(format!("part has more than {} headers", limits.max_headers))
}

/// The part header lines every batch client writes, in the case they write them.
const EXPECTED_TYPE: &[u8; 30] = b"Content-Type: application/http";
const EXPECTED_ENCODING: &[u8; 33] = b"Content-Transfer-Encoding: binary";
const CONTENT_ID: &[u8; 11] = b"Content-ID:";

/// The length (with its line ending) of the line `rest` starts with, when it is one of the
/// expected lines exactly and the next line is not its continuation.
fn expected_line(rest: &[u8]) -> Option<usize> {
    let len = if starts_with(rest, EXPECTED_TYPE) {
        EXPECTED_TYPE.len()
    } else if starts_with(rest, EXPECTED_ENCODING) {
        EXPECTED_ENCODING.len()
    } else {
        return None;
    };
    let ending = match &rest[len..] {
        [b'\r', b'\n', ..] => 2,
        [b'\n', ..] => 1,
        _ => return None,
    };
    match rest.get(len + ending) {
        Some(b' ' | b'\t') | None => None,
        Some(_) => Some(len + ending),
    }
}

/// Whether `s` starts with the constant `text`.
fn starts_with<const N: usize>(s: &[u8], text: &[u8; N]) -> bool {
    s.starts_with(text)
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

fn finish<'a>(head: &mut PartHead<'a>, (field, value): (Field, Value<'a>)) {
    let slot = match field {
        // The expected values are not kept: `None` means "fine" to the caller, which only
        // looks closer at unexpected ones.
        Field::ContentType => {
            let value = value.bytes();
            let end = value.iter().position(|c| *c == b';').unwrap_or(value.len());
            if eq_lower(trim(&value[..end]), b"application/http") {
                return;
            }
            &mut head.content_type
        }
        Field::TransferEncoding => {
            let cte = trim(value.bytes());
            if eq_lower(cte, b"binary") || eq_lower(cte, b"7bit") || eq_lower(cte, b"8bit") {
                return;
            }
            &mut head.transfer_encoding
        }
        Field::ContentId => &mut head.content_id,
        Field::DependsOn => &mut head.depends_on,
        Field::Other => return,
    };
    // `from_utf8_lossy` borrows when the bytes are valid UTF-8, and copies only to replace.
    *slot = Some(match value {
        Value::Slice(s) => String::from_utf8_lossy(trim(s)),
        Value::Owned(v) => Cow::Owned(String::from_utf8_lossy(trim(&v)).into_owned()),
    });
}

/// `GET /x`, `POST http://...`: an uppercase token and a space, with no colon before the space.
fn starts_like_request_line(raw: &[u8]) -> bool {
    // The token is at most 15 bytes; a space must follow it directly.
    let token = raw
        .iter()
        .take(16)
        .take_while(|c| c.is_ascii_uppercase())
        .count();
    token > 0 && token < 16 && raw.get(token) == Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(PartHead<'_>, String), ItemError> {
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
    fn names_and_expected_values_ignore_case_only() {
        let (h, _) = parse(
            "CONTENT-type: Application/HTTP; msgtype=request\ncontent-TRANSFER-encoding: BINARY\nDEPENDS-on: a\n\nGET /\n",
        )
        .unwrap();
        assert_eq!(h.content_type, None);
        assert_eq!(h.transfer_encoding, None);
        assert_eq!(h.depends_on.as_deref(), Some("a"));
        // `\r` is `-` with the case bit cleared; it must not pass for one.
        let (h, _) =
            parse("content\rtype: text/plain\nContent-Type: application\x0fhttp\n\nGET /\n")
                .unwrap();
        assert_eq!(h.content_type.as_deref(), Some("application\x0fhttp"));
        let (h, _) = parse("Content-Transfer-Encoding: 8BIT\n\nGET /\n").unwrap();
        assert_eq!(h.transfer_encoding, None);
        let (h, _) = parse("Content-Transfer-Encoding: base64\n\nGET /\n").unwrap();
        assert_eq!(h.transfer_encoding.as_deref(), Some("base64"));
    }

    #[test]
    fn expected_lines_follow_the_general_rules() {
        let (h, rest) = parse(
            "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\nContent-ID: <1>\r\n\r\nGET /\r\n",
        )
        .unwrap();
        assert_eq!(h.content_type, None);
        assert_eq!(h.transfer_encoding, None);
        assert_eq!(h.content_id.as_deref(), Some("<1>"));
        assert_eq!(rest, "GET /\r\n");
        // A continuation line joins the expected value, which then is not the expected one.
        let (h, _) =
            parse("Content-Type: application/http\r\n x\r\nContent-ID: <1>\r\n\r\nGET /\r\n")
                .unwrap();
        assert_eq!(h.content_type.as_deref(), Some("application/http x"));
        let (h, _) = parse("Content-Type: application/http\r\r\n\r\nGET /\r\n").unwrap();
        assert_eq!(h.content_type.as_deref(), Some("application/http\r"));
        // An earlier unexpected value is not undone by a later expected one.
        let (h, _) = parse(
            "Content-Transfer-Encoding: base64\nContent-Transfer-Encoding: binary\n\nGET /\n",
        )
        .unwrap();
        assert_eq!(h.transfer_encoding.as_deref(), Some("base64"));
        // Expected lines count towards the header limit.
        let two = "Content-Type: application/http\nContent-Transfer-Encoding: binary\n\nGET /\n";
        let err = parse_part(two.as_bytes(), &Limits::default().max_headers(1)).unwrap_err();
        assert!(err.message().contains("more than 1 headers"), "{err:?}");
        assert!(parse("Content-Type: application/http\r\n").is_err());
        assert!(parse("Content-Type: application/http").is_err());
    }

    #[test]
    fn constant_prefix_compare() {
        let text = b"Content-Transfer-Encoding: binary";
        assert!(starts_with(b"Content-Transfer-Encoding: binary\r\n", text));
        assert!(starts_with(text, text));
        assert!(!starts_with(&text[..32], text));
        for i in 0..text.len() {
            let mut other = *text;
            other[i] ^= 0x20;
            assert!(!starts_with(&other, text), "{i}");
        }
        assert!(starts_with(b"12345678", b"12345678"));
        assert!(!starts_with(b"12345679", b"12345678"));
    }

    #[test]
    fn request_line_detection() {
        assert!(starts_like_request_line(b"GET /"));
        assert!(starts_like_request_line(b"ABCDEFGHIJKLMNO /"));
        assert!(!starts_like_request_line(b"ABCDEFGHIJKLMNOP /"));
        assert!(!starts_like_request_line(b" GET /"));
        assert!(!starts_like_request_line(b"GET"));
        assert!(!starts_like_request_line(b"GET:/ x"));
        assert!(!starts_like_request_line(b"Content-Type: x"));
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
