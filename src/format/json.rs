//! JSON batches: OData 4.01 JSON batch, as Microsoft Graph's `$batch` speaks it.
//!
//! A JSON batch is a `POST` with `Content-Type: application/json` (parameters such as
//! `charset=utf-8` are fine) whose body lists the requests; the answer lists one response per
//! request, in the same order.
//!
//! # Example
//!
//! The client helpers [`encode_requests`] and [`decode_responses`] write and read the same wire
//! shape the server side uses:
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_batch::format::json::{decode_responses, encode_requests};
//!
//! let get = Request::get("/farm/v1/animals/pony").body(Bytes::new()).unwrap();
//! let body = encode_requests(&[("1".to_owned(), &get, vec![])]);
//! assert_eq!(
//!     body,
//!     r#"{"requests":[{"id":"1","method":"GET","url":"/farm/v1/animals/pony"}]}"#
//! );
//!
//! let answer = br#"{"responses":[{"id":"1","status":200,
//!     "headers":{"content-type":"application/json"},"body":{"animalName":"pony"}}]}"#;
//! let responses = decode_responses(answer).unwrap();
//! assert_eq!(responses[0].0, "1");
//! assert_eq!(responses[0].1.status(), 200);
//! assert_eq!(responses[0].1.body(), &br#"{"animalName":"pony"}"#[..]);
//! ```
//!
//! # Request
//!
//! ```json
//! {"requests": [
//!   {"id": "1", "method": "GET", "url": "/farm/v1/animals/pony"},
//!   {"id": "2", "method": "POST", "url": "farm/v1/animals",
//!    "headers": {"content-type": "application/json"},
//!    "body": {"animalName": "goat"}},
//!   {"id": "3", "method": "GET", "url": "/farm/v1/animals/goat", "dependsOn": ["2"]}
//! ]}
//! ```
//!
//! - `id` (required): a string, unique in the batch. A number is accepted and read as its
//!   decimal text. A request without an `id` rejects the whole batch with `400`, naming the
//!   request's position; so do two requests with the same id.
//! - `method` (required): an HTTP method; lower case is read as upper case.
//! - `url` (required): relative to the service root (`/farm/v1/animals`, or `farm/v1/animals`
//!   and `me`, which are read with a leading `/`), or an absolute `http`/`https` URL naming this
//!   server's own authority.
//! - `headers`: an object of name → value. A value may be a string, a number, a boolean, or an
//!   array of those (one header line each). The batch request's own headers (such as
//!   `Authorization`) fill in whatever an item does not set.
//! - `body`: see [Bodies](#bodies).
//! - `dependsOn`: the ids this request waits for (the snake-case `depends_on` that the
//!   Microsoft Graph Python SDK writes is read as well).
//! - `atomicityGroup`: OData change sets are not supported; such a request is answered with
//!   its own `501 Not Implemented` and not run, so a change set never half-applies.
//!
//! A problem confined to one request (a bad method, URL, header or body) becomes that request's
//! own `400` answer, carrying its id, and the other requests still run. A problem with the
//! envelope (invalid JSON, no `requests` array, a request that is not an object, a missing or
//! repeated id, a `dependsOn` naming an unknown id, a dependency cycle, more requests than
//! [`Limits::items`](crate::Limits::items)) rejects the whole batch with one `4xx` answer whose
//! JSON body says what was wrong.
//!
//! # Response
//!
//! ```json
//! {"responses": [
//!   {"id": "1", "status": 200, "headers": {"Content-Type": "application/json"},
//!    "body": {"animalName": "pony"}},
//!   {"id": "2", "status": 201, "headers": {"Content-Type": "application/json"},
//!    "body": {"animalName": "goat"}},
//!   {"id": "3", "status": 200, "headers": {"Content-Type": "application/json"},
//!    "body": {"animalName": "goat"}}
//! ]}
//! ```
//!
//! The response is `Content-Type: application/json`. It lists the answers **in request
//! order**, whatever order the requests finished in, and streams: each answer is written as soon
//! as it and every answer before it are done. `headers` maps each header name, written in
//! canonical case as Graph writes it (`Content-Type`; names are case-insensitive, but Graph's
//! JavaScript SDK needs this spelling), to one string; repeated headers are joined with `", "`. `body` is left out when the answer has none.
//!
//! # Bodies
//!
//! One rule, the same in both directions, follows OData 4.01 and keeps every body byte for
//! byte. It looks at the message's `Content-Type`:
//!
//! | content type | `body` on the wire |
//! |---|---|
//! | `application/json` or `*/*+json` | the JSON value itself |
//! | `text/*`, or none | a string: the body's text |
//! | anything else (`image/png`, `application/octet-stream`, ...) | a string: the body in base64 |
//!
//! When writing (answers, and [`encode_requests`]): a JSON body that does not parse as JSON,
//! a text body that is not UTF-8, and every binary body are written in standard padded base64,
//! and the `headers` object then carries the marker `"content-transfer-encoding": "base64"`.
//! So a reader never has to guess: a string `body` is base64 exactly when that marker is there
//! (readers that go by the content type alone, as OData clients do, read it right as well).
//! HTTP itself has no use for `Content-Transfer-Encoding`, so one that a handler sets is left
//! out of `headers`; the marker is the only way that name appears.
//! A JSON body is copied verbatim, so large numbers keep all their digits.
//!
//! When reading (requests, and [`decode_responses`]):
//! - a `body` that is absent or `null` is an empty body;
//! - a string `body` with a `Content-Transfer-Encoding: base64` header is base64 (standard or
//!   URL-safe alphabet, padding optional, whitespace ignored); the marker header is removed;
//! - otherwise a string is read by the content type: a JSON type takes it as a JSON string
//!   value (`"hi"` becomes the body `"hi"`, quotes included); `text/*` takes its text as is; no
//!   content type also takes its text as is, and a request then gets
//!   `Content-Type: text/plain; charset=utf-8`; any other type takes it as base64. A request
//!   whose binary body is not valid base64 gets its own `400`;
//! - any other JSON value (object, array, number, boolean) is sent as its JSON text, exactly as
//!   the client wrote it (numbers of any size keep every digit), and a message without a content
//!   type gets `Content-Type: application/json`; `null` is no body.
//!
//! Client quirk: the Microsoft Graph Python SDK (`msgraph-core`) writes a body that is JSON but
//! not an object (an array, say) as base64 without the marker header while keeping
//! `Content-Type: application/json`; such a body arrives as a JSON string, as OData says it
//! should.
//!
//! # Dependencies
//!
//! A request with `dependsOn` runs only after every request it names has answered with a `2xx`
//! status. If one of them answers otherwise, the request is not run and is answered with
//! `424 Failed Dependency`, and so, in turn, is everything that depends on it. Requests without
//! dependencies run concurrently, up to the layer's [concurrency](crate::BatchLayer::concurrency).

use std::borrow::Cow;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{DecodeContext, Encoder, Format};
use crate::error::{BatchError, ItemError};
use crate::item::{Item, ItemMeta};

/// The JSON batch format (OData 4.01 JSON batch / Microsoft Graph `$batch`): see the
/// [module docs](self) for the wire shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json {
    _priv: (),
}

impl Json {
    /// The JSON format.
    pub fn new() -> Self {
        Json { _priv: () }
    }
}

impl Format for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn content_types(&self) -> Vec<String> {
        vec!["application/json".to_owned()]
    }

    fn accepts(&self, content_type: &mime::Mime) -> bool {
        content_type.essence_str() == "application/json"
    }

    fn decode(&self, cx: &DecodeContext<'_>, body: Bytes) -> Result<Vec<Item>, BatchError> {
        let envelope: RequestEnvelope =
            serde_json::from_slice(&body).map_err(|e| envelope_error(&e, "requests"))?;
        let requests = envelope.requests.ok_or_else(|| BatchError::Malformed {
            reason: "the JSON batch has no `requests` array; send {\"requests\":[...]}".into(),
        })?;
        let limit = cx.limits.items();
        if requests.len() > limit {
            return Err(BatchError::TooManyItems {
                count: requests.len(),
                limit,
            });
        }
        requests
            .into_iter()
            .enumerate()
            .map(|(index, wire)| decode_item(index, wire))
            .collect()
    }

    fn encoder(&self, _cx: &DecodeContext<'_>) -> Box<dyn Encoder> {
        Box::new(JsonEncoder { first: true })
    }
}

/// `Content-Transfer-Encoding`, the marker of a base64 `body`.
const TRANSFER_ENCODING_MARKER: &str = "content-transfer-encoding";

/// The top level of a request batch. Fields are loosely typed so that a wrong type inside one
/// request becomes that request's own error instead of rejecting the batch.
#[derive(Deserialize)]
struct RequestEnvelope {
    requests: Option<Vec<WireRequest>>,
}

#[derive(Deserialize)]
struct WireRequest {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<Value>,
    #[serde(default)]
    url: Option<Value>,
    #[serde(default)]
    headers: Option<Value>,
    /// Kept as raw text, so a JSON body reaches the item byte for byte (big numbers intact).
    #[serde(default)]
    body: Option<Box<RawValue>>,
    #[serde(default, rename = "dependsOn", alias = "depends_on")]
    depends_on: Option<Value>,
    #[serde(default, rename = "atomicityGroup")]
    atomicity_group: Option<Value>,
}

#[derive(Deserialize)]
struct ResponseEnvelope {
    responses: Option<Vec<WireResponse>>,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    headers: Option<Value>,
    #[serde(default)]
    body: Option<Box<RawValue>>,
}

/// Words for an envelope that serde could not read.
fn envelope_error(err: &serde_json::Error, list: &str) -> BatchError {
    let reason = if err.is_data() {
        format!("the JSON batch must be an object with a `{list}` array of objects ({err})")
    } else {
        format!("invalid JSON: {err}")
    };
    BatchError::Malformed { reason }
}

/// An id as text: strings as they are, numbers as their decimal text.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn decode_item(index: usize, mut wire: WireRequest) -> Result<Item, BatchError> {
    let id = match wire.id.take().map(|v| match v {
        // The string itself, not a copy of it.
        Value::String(s) => (Value::Null, Some(s)),
        other => {
            let text = id_text(&other);
            (other, text)
        }
    }) {
        Some((_, Some(id))) if !id.is_empty() => id,
        Some((other, None)) => {
            return Err(BatchError::Malformed {
                reason: format!(
                    "request {index} (counting from 0) has an `id` that is not a string: {other}"
                ),
            })
        }
        // Absent, `null` or empty.
        _ => {
            return Err(BatchError::Malformed {
                reason: format!(
                    "request {index} (counting from 0) has no `id`; every request in a JSON batch needs a unique id"
                ),
            })
        }
    };
    let depends_on = match wire.depends_on.take() {
        None => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| id_text(v).filter(|s| !s.is_empty()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| BatchError::Malformed {
                reason: format!("request `{id}`: `dependsOn` must list ids as strings"),
            })?,
        // A lone id is what some hand-written batches send; it means the obvious thing.
        Some(ref single @ (Value::String(_) | Value::Number(_))) => {
            vec![id_text(single).expect("a string or a number")]
        }
        Some(other) => {
            return Err(BatchError::Malformed {
                reason: format!("request `{id}`: `dependsOn` must be an array of ids, not {other}"),
            })
        }
    };
    let item = match build_request(wire) {
        Ok(req) => Item::new(req),
        Err(err) => Item::invalid(err),
    };
    Ok(item.with_id(id).with_depends_on(depends_on))
}

fn build_request(wire: WireRequest) -> Result<Request<Bytes>, ItemError> {
    if wire.atomicity_group.is_some() {
        return Err(ItemError::new(
            StatusCode::NOT_IMPLEMENTED,
            "atomicity groups (OData change sets) are not supported; send the request without `atomicityGroup`",
        ));
    }
    let method = match &wire.method {
        Some(Value::String(m)) if !m.is_empty() => {
            // Methods are case-sensitive, but some clients write `get`; most write `GET`, which
            // needs no upper-case copy.
            let parsed = if m.bytes().any(|c| c.is_ascii_lowercase()) {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            } else {
                Method::from_bytes(m.as_bytes())
            };
            parsed
                .map_err(|_| ItemError::bad_request(format!("`{m}` is not a valid HTTP method")))?
        }
        Some(Value::String(_)) | None => {
            return Err(ItemError::bad_request("the request has no `method`"))
        }
        Some(other) => {
            return Err(ItemError::bad_request(format!(
                "`method` must be a string, not {other}"
            )))
        }
    };
    let uri = match &wire.url {
        Some(Value::String(url)) => parse_url(url).map_err(ItemError::bad_request)?,
        None => return Err(ItemError::bad_request("the request has no `url`")),
        Some(other) => {
            return Err(ItemError::bad_request(format!(
                "`url` must be a string, not {other}"
            )))
        }
    };
    let mut headers = read_headers(wire.headers, true).map_err(ItemError::bad_request)?;
    let body = read_body(&mut headers, wire.body, Side::Request).map_err(ItemError::bad_request)?;
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Reads an item `url`: origin-form as is, absolute `http(s)` as is (the layer checks its
/// authority), and anything else as a path relative to the root.
fn parse_url(url: &str) -> Result<Uri, String> {
    if url.is_empty() {
        return Err("the request's `url` is empty".into());
    }
    let target: Cow<'_, str> = match scheme_of(url) {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            Cow::Borrowed(url)
        }
        Some(scheme) => {
            return Err(format!(
                "`{url}` uses the `{scheme}` scheme; item URLs are relative paths or http(s) URLs"
            ))
        }
        None if url.starts_with('/') => Cow::Borrowed(url),
        None => Cow::Owned(format!("/{url}")),
    };
    target
        .parse::<Uri>()
        .map_err(|e| format!("`{url}` is not a valid URL: {e}"))
}

/// The scheme of an absolute URL (RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) "://"`).
fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    (first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
    .then_some(scheme)
}

/// Reads a `headers` object. `strict` (server side) reports bad names and values; the client
/// side skips them, since one odd header from a foreign server should not lose the batch.
fn read_headers(value: Option<Value>, strict: bool) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let map = match value {
        None => return Ok(headers),
        Some(Value::Object(map)) => map,
        Some(_) if !strict => return Ok(headers),
        Some(other) => return Err(format!("`headers` must be an object, not {other}")),
    };
    for (name, value) in map {
        let parsed = HeaderName::from_bytes(name.as_bytes());
        let Ok(header_name) = parsed else {
            if strict {
                return Err(format!("`{name}` is not a valid header name"));
            }
            continue;
        };
        let values: Vec<Value> = match value {
            Value::Array(values) => values,
            single => vec![single],
        };
        for v in values {
            let text = match v {
                Value::Null => continue,
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other if strict => {
                    return Err(format!(
                        "header `{name}` must be a string or an array of strings, not {other}"
                    ))
                }
                _ => continue,
            };
            match HeaderValue::from_str(&text) {
                Ok(hv) => {
                    headers.append(header_name.clone(), hv);
                }
                Err(_) if strict => {
                    return Err(format!(
                        "header `{name}` has a value that is not allowed in HTTP (control characters or line breaks)"
                    ))
                }
                Err(_) => {}
            }
        }
    }
    Ok(headers)
}

/// How a body travels in the `body` field, by the message's content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `application/json`, `*/*+json`: the JSON value itself.
    Json,
    /// `text/*`: a string.
    Text,
    /// Everything else: base64.
    Binary,
}

fn kind_of(headers: &HeaderMap) -> Option<Kind> {
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
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Which end reads a body: requests must be right, answers from foreign servers are taken as
/// they come.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// Accepts both base64 alphabets, with or without padding.
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_base64(text: &str) -> Option<Vec<u8>> {
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
fn read_body(
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
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
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
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
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
enum WireBody<'a> {
    None,
    /// Valid JSON, copied verbatim.
    Json(&'a [u8]),
    Text(&'a str),
    Base64(String),
}

fn wire_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> WireBody<'a> {
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
fn trim_whitespace(raw: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = raw.iter().position(|b| !is_ws(b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !is_ws(b)).map_or(start, |i| i + 1);
    &raw[start..end]
}

/// Appends `value` as JSON.
fn put_json<T: serde::Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    serde_json::to_writer((&mut *out).writer(), value)
        .expect("writing JSON into memory cannot fail");
}

/// A header value as text: as it is when it is visible ASCII (nearly always), else decoded with
/// replacement characters.
fn lossy(value: &HeaderValue) -> std::borrow::Cow<'_, str> {
    match value.to_str() {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value.as_bytes()),
    }
}

/// Writes `"Content-Type"` for `content-type`, as Microsoft Graph writes header names. Names are
/// case-insensitive, but Graph's JavaScript SDK only recognises a JSON body when the key is
/// spelled exactly `Content-Type`. Header names are tokens, which JSON strings hold unescaped.
fn put_canonical_name(out: &mut BytesMut, name: &str) {
    out.reserve(name.len() + 2);
    out.put_u8(b'"');
    let mut upper = true;
    for &c in name.as_bytes() {
        out.put_u8(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == b'-';
    }
    out.put_u8(b'"');
}

/// Writes `,"headers":{...},"body":...` for one message; headers and body are left out when
/// there are none. Written straight into `out`: a `serde_json::Map` of `String`s cost about ten
/// allocations per answer.
fn put_headers_and_body(out: &mut BytesMut, headers: &HeaderMap, body: &[u8]) {
    let wire = wire_body(headers, body);
    let mut first = true;
    let mut open = |out: &mut BytesMut| {
        out.put_slice(if std::mem::take(&mut first) {
            b",\"headers\":{"
        } else {
            b","
        });
    };
    // `iter` gives a name's other values right after its first, so they are gathered without
    // looking the name up again.
    let mut fields = headers.iter().peekable();
    while let Some((name, value)) = fields.next() {
        let alone = !fields.peek().is_some_and(|(next, _)| *next == name);
        // HTTP never uses this header (RFC 9110 does not define it), so in the envelope it can
        // only be the marker: one a handler set itself must not make a reader decode text.
        let marker = name.as_str() == TRANSFER_ENCODING_MARKER;
        let mut joined = (!alone && !marker).then(|| lossy(value).into_owned());
        while let Some((_, value)) = fields.next_if(|(next, _)| *next == name) {
            if let Some(joined) = &mut joined {
                joined.push_str(", ");
                joined.push_str(&lossy(value));
            }
        }
        if marker {
            continue;
        }
        open(out);
        put_canonical_name(out, name.as_str());
        out.put_u8(b':');
        match joined {
            Some(joined) => put_json(out, &joined),
            None => put_json(out, &*lossy(value)),
        }
    }
    if matches!(wire, WireBody::Base64(_)) {
        open(out);
        // The marker keeps its lowercase spelling (see `TRANSFER_ENCODING_MARKER`).
        put_json(out, TRANSFER_ENCODING_MARKER);
        out.put_slice(b":\"base64\"");
    }
    if !first {
        out.put_u8(b'}');
    }
    match wire {
        WireBody::None => {}
        WireBody::Json(raw) => {
            out.put_slice(b",\"body\":");
            out.put_slice(trim_whitespace(raw));
        }
        WireBody::Text(text) => {
            out.put_slice(b",\"body\":");
            put_json(out, text);
        }
        WireBody::Base64(text) => {
            out.put_slice(b",\"body\":");
            put_json(out, &text);
        }
    }
}

/// Writes `{"responses":[ ... ]}`, one object per item, in request order.
#[derive(Debug)]
struct JsonEncoder {
    first: bool,
}

impl Encoder for JsonEncoder {
    fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static("application/json")
    }

    fn begin(&mut self, out: &mut BytesMut) {
        out.put_slice(b"{\"responses\":[");
    }

    fn item(&mut self, meta: &ItemMeta, response: &Response<Bytes>, out: &mut BytesMut) {
        if !std::mem::take(&mut self.first) {
            out.put_u8(b',');
        }
        out.put_slice(b"{\"id\":");
        // Decoding requires ids, so the index only stands in for items of other formats.
        match &meta.id {
            Some(id) => put_json(out, &**id),
            None => put_json(out, &meta.index.to_string()),
        }
        out.put_slice(b",\"status\":");
        out.put_slice(response.status().as_str().as_bytes());
        put_headers_and_body(out, response.headers(), response.body());
        out.put_u8(b'}');
    }

    fn end(&mut self, out: &mut BytesMut) {
        out.put_slice(b"]}");
    }
}

/// Writes a JSON batch request body: one `{"id","method","url","headers","body","dependsOn"}`
/// object per `(id, request, depends_on)`.
///
/// The `url` is the request's path and query (an absolute URI loses its scheme and authority,
/// since batch items always go to the batch's own server). Bodies follow the rule in the
/// [module docs](self#bodies); `headers`, `body` and `dependsOn` are left out when empty.
pub fn encode_requests(
    items: &[(String, &http::Request<bytes::Bytes>, Vec<String>)],
) -> bytes::Bytes {
    let mut out = BytesMut::with_capacity(64 + items.len() * 128);
    out.put_slice(b"{\"requests\":[");
    for (i, (id, req, depends_on)) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(b"{\"id\":");
        put_json(&mut out, id);
        out.put_slice(b",\"method\":");
        put_json(&mut out, req.method().as_str());
        out.put_slice(b",\"url\":");
        let url = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        put_json(&mut out, url);
        put_headers_and_body(&mut out, req.headers(), req.body());
        if !depends_on.is_empty() {
            out.put_slice(b",\"dependsOn\":");
            put_json(&mut out, depends_on);
        }
        out.put_u8(b'}');
    }
    out.put_slice(b"]}");
    out.freeze()
}

/// Reads a JSON batch response body into `(id, response)` pairs, in the order the server wrote
/// them (match them to requests by id: foreign servers need not keep request order).
///
/// It is tolerant of other servers' answers: ids may be numbers, `headers` may be missing or
/// hold odd entries (those are skipped), `body` may be absent or `null`, and a string body of a
/// binary type is base64-decoded when it is valid base64 even without the marker header (as
/// Microsoft Graph writes it). Only a body that is not JSON, or a response without an `id` or a
/// valid `status`, is an error ([`BatchError::Malformed`]).
pub fn decode_responses(
    body: &[u8],
) -> Result<Vec<(String, http::Response<bytes::Bytes>)>, BatchError> {
    let envelope: ResponseEnvelope =
        serde_json::from_slice(body).map_err(|e| envelope_error(&e, "responses"))?;
    let responses = envelope.responses.ok_or_else(|| BatchError::Malformed {
        reason: "the JSON batch response has no `responses` array".into(),
    })?;
    responses
        .into_iter()
        .enumerate()
        .map(|(index, wire)| {
            let id = wire
                .id
                .as_ref()
                .and_then(id_text)
                .ok_or_else(|| BatchError::Malformed {
                    reason: format!("response {index} (counting from 0) has no `id`"),
                })?;
            let status = match &wire.status {
                Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
                _ => None,
            }
            .and_then(|n| StatusCode::from_u16(n).ok())
            .ok_or_else(|| BatchError::Malformed {
                reason: format!("response `{id}` has no valid `status`"),
            })?;
            let mut headers =
                read_headers(wire.headers, false).expect("lenient reading cannot fail");
            let body = read_body(&mut headers, wire.body, Side::Response)
                .expect("lenient reading cannot fail");
            let mut res = Response::new(body);
            *res.status_mut() = status;
            *res.headers_mut() = headers;
            Ok((id, res))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::BatchStore;
    use crate::limits::Limits;

    fn decode(body: &str) -> Result<Vec<Item>, BatchError> {
        decode_with(body, Limits::default())
    }

    fn decode_with(body: &str, limits: Limits) -> Result<Vec<Item>, BatchError> {
        let parts = Request::post("/batch").body(()).unwrap().into_parts().0;
        let content_type: mime::Mime = "application/json".parse().unwrap();
        let store = BatchStore::new();
        let cx = DecodeContext {
            parts: &parts,
            content_type: &content_type,
            limits: &limits,
            store: &store,
        };
        Json::new().decode(&cx, Bytes::copy_from_slice(body.as_bytes()))
    }

    fn malformed(err: BatchError) -> String {
        match err {
            BatchError::Malformed { reason } => reason,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_plain_batch() {
        let items = decode(
            r#"{"requests":[
                {"id":"1","method":"get","url":"me"},
                {"id":2,"method":"POST","url":"/farm/v1/animals?x=1",
                 "headers":{"Content-Type":"application/json","X-Many":["a","b"],"X-N":5},
                 "body":{"animalName":"goat"},"dependsOn":["1"]}
            ]}"#,
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        let first = items[0].request().unwrap();
        assert_eq!(first.method(), Method::GET);
        assert_eq!(first.uri(), "/me");
        assert_eq!(items[0].id(), Some("1"));
        let second = items[1].request().unwrap();
        assert_eq!(items[1].id(), Some("2"));
        assert_eq!(items[1].depends_on(), ["1".to_owned()]);
        assert_eq!(second.uri(), "/farm/v1/animals?x=1");
        assert_eq!(second.body(), &br#"{"animalName":"goat"}"#[..]);
        let many: Vec<_> = second.headers().get_all("x-many").iter().collect();
        assert_eq!(many, ["a", "b"]);
        assert_eq!(second.headers()["x-n"], "5");
    }

    #[test]
    fn envelope_problems_reject_the_batch() {
        assert!(malformed(decode("{").unwrap_err()).starts_with("invalid JSON"));
        assert!(malformed(decode("[1]").unwrap_err()).contains("`requests` array"));
        assert!(malformed(decode(r#"{"other":1}"#).unwrap_err()).contains("no `requests`"));
        assert!(malformed(decode(r#"{"requests":[5]}"#).unwrap_err()).contains("array of objects"));
        let missing = malformed(
            decode(
                r#"{"requests":[{"id":"a","method":"GET","url":"/"},{"method":"GET","url":"/"}]}"#,
            )
            .unwrap_err(),
        );
        assert!(missing.contains("request 1"), "{missing}");
        assert!(malformed(
            decode(r#"{"requests":[{"id":"","method":"GET","url":"/"}]}"#).unwrap_err()
        )
        .contains("no `id`"));
        let not_text = malformed(
            decode(r#"{"requests":[{"id":true,"method":"GET","url":"/"}]}"#).unwrap_err(),
        );
        assert!(not_text.contains("not a string: true"), "{not_text}");
        assert!(malformed(
            decode(r#"{"requests":[{"id":"a","method":"GET","url":"/","dependsOn":{}}]}"#)
                .unwrap_err()
        )
        .contains("dependsOn"));
    }

    #[test]
    fn too_many_requests() {
        let err = decode_with(
            r#"{"requests":[{"id":"a","method":"GET","url":"/"},{"id":"b","method":"GET","url":"/"}]}"#,
            Limits::default().max_items(1),
        )
        .unwrap_err();
        assert_eq!(err, BatchError::TooManyItems { count: 2, limit: 1 });
    }

    #[test]
    fn item_problems_stay_with_the_item() {
        let items = decode(
            r#"{"requests":[
                {"id":"m","method":"GE T","url":"/"},
                {"id":"u","method":"GET","url":"/a b"},
                {"id":"h","method":"GET","url":"/","headers":{"x":"a\nb"}},
                {"id":"s","method":"GET","url":"ftp://example.com/"},
                {"id":"b","method":"PUT","url":"/","headers":{"content-type":"image/png"},"body":"not base64!"},
                {"id":"g","method":"GET","url":"/","atomicityGroup":"g1"},
                {"id":"ok","method":"GET","url":"/"}
            ]}"#,
        )
        .unwrap();
        for item in &items[..5] {
            assert_eq!(
                item.request().unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{:?}",
                item.id()
            );
        }
        assert_eq!(
            items[5].request().unwrap_err().status(),
            StatusCode::NOT_IMPLEMENTED
        );
        assert!(items[6].request().is_ok());
        let ids: Vec<_> = items.iter().map(|i| i.id().unwrap()).collect();
        assert_eq!(ids, ["m", "u", "h", "s", "b", "g", "ok"]);
    }

    #[test]
    fn request_bodies_follow_the_content_type() {
        let items = decode(
            r#"{"requests":[
                {"id":"1","method":"POST","url":"/","headers":{"content-type":"application/json"},"body":"hi"},
                {"id":"2","method":"POST","url":"/","headers":{"content-type":"text/plain"},"body":"hi"},
                {"id":"3","method":"POST","url":"/","body":"hi"},
                {"id":"4","method":"POST","url":"/","headers":{"content-type":"application/octet-stream"},"body":"AP-_"},
                {"id":"5","method":"POST","url":"/","headers":{"content-type":"text/plain","content-transfer-encoding":"base64"},"body":"aGk="},
                {"id":"6","method":"POST","url":"/","body":[1,2]},
                {"id":"7","method":"POST","url":"/","body":null}
            ]}"#,
        )
        .unwrap();
        let req = |i: usize| items[i].request().unwrap();
        assert_eq!(req(0).body(), "\"hi\"");
        assert_eq!(req(1).body(), "hi");
        assert_eq!(req(2).body(), "hi");
        assert_eq!(
            req(2).headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(req(3).body(), &[0x00, 0xff, 0xbf][..]);
        assert_eq!(req(4).body(), "hi");
        assert!(!req(4).headers().contains_key(TRANSFER_ENCODING_MARKER));
        assert_eq!(req(5).body(), "[1,2]");
        assert_eq!(req(5).headers()[header::CONTENT_TYPE], "application/json");
        assert!(req(6).body().is_empty());
    }

    fn encode_one(res: Response<Bytes>) -> Value {
        let mut enc = JsonEncoder { first: true };
        let mut out = BytesMut::new();
        enc.begin(&mut out);
        let meta = ItemMeta {
            index: 0,
            id: Some("a\"b".into()),
            echo: None,
        };
        enc.item(&meta, &res, &mut out);
        enc.end(&mut out);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        v["responses"][0].clone()
    }

    #[test]
    fn response_bodies_follow_the_content_type() {
        let json = Response::builder()
            .header("content-type", "application/json; charset=utf-8")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(Bytes::from_static(
                br#" {"n": 123456789012345678901234567890} "#,
            ))
            .unwrap();
        let mut out = BytesMut::new();
        put_headers_and_body(&mut out, json.headers(), json.body());
        // Verbatim: the big number keeps its digits.
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .ends_with(r#""body":{"n": 123456789012345678901234567890}"#));
        let v = encode_one(json);
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["status"], 200);
        assert_eq!(v["headers"]["Set-Cookie"], "a=1, b=2");

        // Header values are JSON-escaped; bytes that are not UTF-8 become U+FFFD.
        let odd = Response::builder()
            .header("x-quote", "say \"hi\" \\ there")
            .header("x-latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .header("content-transfer-encoding", "base64")
            .header("content-transfer-encoding", "again")
            .body(Bytes::new())
            .unwrap();
        let v = encode_one(odd);
        assert_eq!(
            v["headers"],
            serde_json::json!({"X-Quote": "say \"hi\" \\ there", "X-Latin1": "caf\u{fffd}"})
        );

        let text = Response::builder()
            .header("content-type", "text/plain")
            .header("content-transfer-encoding", "base64")
            .body(Bytes::from("héllo"))
            .unwrap();
        let v = encode_one(text);
        assert_eq!(v["body"], "héllo");
        assert!(v["headers"].get(TRANSFER_ENCODING_MARKER).is_none());

        let latin1 = Response::builder()
            .status(404)
            .header("content-type", "text/plain")
            .body(Bytes::from_static(b"caf\xe9"))
            .unwrap();
        let v = encode_one(latin1);
        assert_eq!(v["status"], 404);
        assert_eq!(v["body"], "Y2Fm6Q==");
        assert_eq!(v["headers"][TRANSFER_ENCODING_MARKER], "base64");

        let bad_json = Response::builder()
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{oops"))
            .unwrap();
        let v = encode_one(bad_json);
        assert_eq!(v["headers"][TRANSFER_ENCODING_MARKER], "base64");

        let empty = Response::builder().status(204).body(Bytes::new()).unwrap();
        let v = encode_one(empty);
        assert!(v.get("body").is_none());
        assert!(v.get("headers").is_none());
    }

    #[test]
    fn client_helpers_round_trip() {
        let binary = Request::put("http://example.com/blob?v=2")
            .header("content-type", "image/png")
            .body(Bytes::from_static(&[0, 1, 2, 250, 255]))
            .unwrap();
        let text = Request::post("/note")
            .header("content-type", "text/plain")
            .body(Bytes::from("line\n"))
            .unwrap();
        let encoded = encode_requests(&[
            ("b".to_owned(), &binary, vec![]),
            ("t".to_owned(), &text, vec!["b".to_owned()]),
        ]);
        let items = decode(std::str::from_utf8(&encoded).unwrap()).unwrap();
        let b = items[0].request().unwrap();
        assert_eq!(b.uri(), "/blob?v=2");
        assert_eq!(b.body(), &[0, 1, 2, 250, 255][..]);
        assert_eq!(b.headers()[header::CONTENT_TYPE], "image/png");
        let t = items[1].request().unwrap();
        assert_eq!(t.body(), "line\n");
        assert_eq!(items[1].depends_on(), ["b".to_owned()]);
    }

    #[test]
    fn decode_responses_is_tolerant() {
        let parsed = decode_responses(
            br#"{"responses":[
                {"id":1,"status":200},
                {"id":"2","status":"201","headers":{"Content-Type":"application/json","bad name":"x"},"body":{"a":1}},
                {"id":"3","status":200,"headers":{"content-type":"image/jpeg"},"body":"AAEC"},
                {"id":"4","status":204,"body":null},
                {"id":"5","status":200,"headers":{"content-type":"application/json"},"body":"s"}
            ],"nextLink":null}"#,
        )
        .unwrap();
        let ids: Vec<_> = parsed.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5"]);
        assert_eq!(parsed[0].1.status(), 200);
        assert!(parsed[0].1.body().is_empty());
        assert_eq!(parsed[1].1.status(), 201);
        assert_eq!(parsed[1].1.body(), r#"{"a":1}"#);
        assert_eq!(parsed[1].1.headers().len(), 1);
        assert_eq!(parsed[2].1.body(), &[0, 1, 2][..]);
        assert!(parsed[3].1.body().is_empty());
        assert_eq!(parsed[4].1.body(), "\"s\"");

        assert!(decode_responses(b"{\"responses\":[{\"status\":200}]}").is_err());
        assert!(decode_responses(b"{\"responses\":[{\"id\":\"a\",\"status\":99}]}").is_err());
        assert!(decode_responses(b"not json").is_err());
    }

    #[test]
    fn base64_accepts_both_alphabets_and_line_breaks() {
        assert_eq!(decode_base64("AP+/").unwrap(), [0x00, 0xff, 0xbf]);
        assert_eq!(decode_base64("AP-_").unwrap(), [0x00, 0xff, 0xbf]);
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("aG\r\nk=").unwrap(), b"hi");
        // One alphabet per body: mixing them is not base64.
        assert!(decode_base64("a+b-").is_none());
        assert!(decode_base64("!!").is_none());
    }

    #[test]
    fn urls() {
        assert_eq!(parse_url("me").unwrap(), "/me");
        assert_eq!(parse_url("/a?b=c").unwrap(), "/a?b=c");
        assert_eq!(
            parse_url("HTTP://h:1/x").unwrap().authority().unwrap(),
            "h:1"
        );
        assert!(parse_url("").is_err());
        assert!(parse_url("mailto://x").is_err());
        assert_eq!(scheme_of("/path?next=http://x"), None);
    }
}
