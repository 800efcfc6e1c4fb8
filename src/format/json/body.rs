//! The body rules, the same both ways: a JSON body as JSON, text as a string, anything else as
//! base64 with a marker header.

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use serde_json::value::RawValue;
use serde_json::Value;

/// `Content-Transfer-Encoding`, the marker of a base64 `body`.
pub(super) const TRANSFER_ENCODING_MARKER: &str = "content-transfer-encoding";

/// How a body travels in the `body` field, by the message's content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `application/json`, `*/*+json`: the JSON value itself.
    Json,
    /// `text/*`: a string.
    Text,
    /// Everything else: base64.
    Binary,
}

pub(super) fn kind_of(headers: &HeaderMap) -> Option<Kind> {
    let value = headers.get(header::CONTENT_TYPE)?;
    // Only the media type's essence matters here; reading it without `mime`'s parser spares an
    // allocation per answer. Anything that is not `type/subtype` made of token characters counts
    // as binary, as a value `mime` refuses did.
    let essence = value
        .as_bytes()
        .split(|&c| c == b';')
        .next()
        .unwrap_or_default();
    let essence = trim_whitespace(essence);
    let Some(slash) = essence.iter().position(|&c| c == b'/') else {
        return Some(Kind::Binary);
    };
    let (kind, subtype) = (&essence[..slash], &essence[slash + 1..]);
    if kind.is_empty() || subtype.is_empty() || !kind.iter().chain(subtype).all(|&c| is_token(c)) {
        return Some(Kind::Binary);
    }
    let subtype_is_json = subtype.eq_ignore_ascii_case(b"json")
        || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json");
    Some(
        if kind.eq_ignore_ascii_case(b"application") && subtype_is_json {
            Kind::Json
        } else if kind.eq_ignore_ascii_case(b"text") {
            Kind::Text
        } else {
            Kind::Binary
        },
    )
}

/// A `tchar` of RFC 9110 §5.6.2.
pub(super) fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Which end reads a body: requests must be right, answers from foreign servers are taken as
/// they come.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

/// Accepts both base64 alphabets, with or without padding.
pub(super) const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
pub(super) const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(super) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    // MIME-style base64 wraps lines; the breaks carry nothing.
    let compact: Cow<'_, [u8]> = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        Cow::Owned(text.bytes().filter(|b| !b.is_ascii_whitespace()).collect())
    } else {
        Cow::Borrowed(text.as_bytes())
    };
    let url_safe = compact.iter().any(|b| matches!(b, b'-' | b'_'));
    let engine = if url_safe {
        &BASE64_URL_SAFE
    } else {
        &BASE64_STANDARD
    };
    engine.decode(&compact).ok()
}

/// Turns a `body` field into body bytes; may remove the base64 marker and add a content type
/// (see "Bodies" in the module docs).
pub(super) fn read_body(
    headers: &mut HeaderMap,
    body: Option<Box<RawValue>>,
    side: Side,
) -> Result<Bytes, String> {
    let marked = headers
        .get(TRANSFER_ENCODING_MARKER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("base64"));
    if marked {
        headers.remove(TRANSFER_ENCODING_MARKER);
    }
    let Some(raw) = body else {
        return Ok(Bytes::new());
    };
    let raw = raw.get().trim();
    let text = if raw.starts_with('"') {
        serde_json::from_str::<String>(raw)
            .map_err(|e| format!("`body` is not a valid string: {e}"))?
    } else if raw == "null" {
        return Ok(Bytes::new());
    } else {
        // A JSON value: its text, exactly as the client wrote it.
        if !headers.contains_key(header::CONTENT_TYPE) {
            headers
                .try_insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .map_err(|_| "the message has more headers than it can hold".to_owned())?;
        }
        return Ok(Bytes::copy_from_slice(raw.as_bytes()));
    };
    if marked {
        return match decode_base64(&text) {
            Some(bytes) => Ok(Bytes::from(bytes)),
            None if side == Side::Response => Ok(Bytes::from(text)),
            None => Err(
                "`body` is marked `Content-Transfer-Encoding: base64` but is not valid base64"
                    .into(),
            ),
        };
    }
    match kind_of(headers) {
        Some(Kind::Json) => Ok(Bytes::from(
            serde_json::to_vec(&Value::String(text)).expect("a string always serializes"),
        )),
        Some(Kind::Text) => Ok(Bytes::from(text)),
        None => {
            if side == Side::Request {
                headers
                    .try_insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    )
                    .map_err(|_| "the message has more headers than it can hold".to_owned())?;
            }
            Ok(Bytes::from(text))
        }
        Some(Kind::Binary) => match decode_base64(&text) {
            Some(bytes) => Ok(Bytes::from(bytes)),
            None if side == Side::Response => Ok(Bytes::from(text)),
            None => Err(format!(
                "the body of a `{}` request must be base64 (or set a text or JSON content type)",
                headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("binary")
            )),
        },
    }
}

/// How a body is written into the `body` field.
pub(super) enum WireBody<'a> {
    None,
    /// Valid JSON, copied verbatim.
    Json(&'a [u8]),
    Text(&'a str),
    Base64(String),
}

pub(super) fn wire_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> WireBody<'a> {
    if body.is_empty() {
        return WireBody::None;
    }
    let base64 = || WireBody::Base64(base64::engine::general_purpose::STANDARD.encode(body));
    match kind_of(headers) {
        Some(Kind::Json) => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
                WireBody::Json(body)
            } else {
                base64()
            }
        }
        Some(Kind::Text) | None => match std::str::from_utf8(body) {
            Ok(text) => WireBody::Text(text),
            Err(_) => base64(),
        },
        Some(Kind::Binary) => base64(),
    }
}

/// `raw` without the JSON whitespace around it (`<[u8]>::trim_ascii` is newer than our MSRV).
pub(super) fn trim_whitespace(raw: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = raw.iter().position(|b| !is_ws(b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !is_ws(b)).map_or(start, |i| i + 1);
    &raw[start..end]
}
