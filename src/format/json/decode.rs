//! Reading a JSON request batch: the envelope, and each request's id, method, URL and headers.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::body::{read_body, Side};
use crate::error::{BatchError, ItemError};
use crate::item::Item;

/// Reads the top level of a request batch, `{"requests": [...]}`, counting the requests as they
/// are read: past `limit` it only counts them, so a body of millions of `{}` costs no more
/// memory than a batch at the limit. `None`: there is no `requests` array.
pub(super) fn read_envelope(
    body: &[u8],
    limit: usize,
) -> Result<Option<Vec<WireRequest>>, BatchError> {
    // How many requests there are, once there are more than `limit`; 0 until then.
    let over = Cell::new(0);
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = EnvelopeSeed { limit, over: &over }
        .deserialize(&mut de)
        .and_then(|requests| de.end().map(|()| requests));
    match read {
        Ok(requests) => Ok(requests),
        Err(_) if over.get() > 0 => Err(BatchError::TooManyItems {
            count: over.get(),
            limit,
        }),
        Err(err) => Err(envelope_error(&err, "requests")),
    }
}

/// The envelope object: `requests` is read with [`RequestsSeed`], any other field is skipped.
struct EnvelopeSeed<'a> {
    limit: usize,
    over: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Option<Vec<WireRequest>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Option<Vec<WireRequest>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a `requests` array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut requests = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "requests" {
                if requests.is_some() {
                    return Err(de::Error::duplicate_field("requests"));
                }
                requests = Some(map.next_value_seed(RequestsSeed {
                    limit: self.limit,
                    over: self.over,
                })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(requests.flatten())
    }
}

/// The `requests` array (or `null`), read one request at a time up to the limit.
struct RequestsSeed<'a> {
    limit: usize,
    over: &'a Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for RequestsSeed<'_> {
    type Value = Option<Vec<WireRequest>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RequestsSeed<'_> {
    type Value = Option<Vec<WireRequest>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of objects")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut requests = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.limit));
        while let Some(request) = seq.next_element::<WireRequest>()? {
            if requests.len() == self.limit {
                // The rest are counted, not kept, so the answer can say how many there were.
                let mut count = self.limit + 1;
                self.over.set(count);
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                    self.over.set(count);
                }
                return Err(de::Error::custom("too many requests"));
            }
            requests.push(request);
        }
        Ok(Some(requests))
    }
}

#[derive(Deserialize)]
pub(super) struct WireRequest {
    #[serde(default)]
    pub(super) id: Option<Value>,
    #[serde(default)]
    pub(super) method: Option<Value>,
    #[serde(default)]
    pub(super) url: Option<Value>,
    #[serde(default)]
    pub(super) headers: Option<Value>,
    /// Kept as raw text, so a JSON body reaches the item byte for byte (big numbers intact).
    #[serde(default)]
    pub(super) body: Option<Box<RawValue>>,
    #[serde(default, rename = "dependsOn", alias = "depends_on")]
    pub(super) depends_on: Option<Value>,
    #[serde(default, rename = "atomicityGroup")]
    pub(super) atomicity_group: Option<Value>,
    /// OData 4.01's condition on the outcomes of the requests this one depends on.
    #[serde(default, rename = "if")]
    pub(super) condition: Option<Value>,
}

/// Words for an envelope that serde could not read.
pub(super) fn envelope_error(err: &serde_json::Error, list: &str) -> BatchError {
    let reason = if err.is_data() {
        format!("the JSON batch must be an object with a `{list}` array of objects ({err})")
    } else {
        format!("invalid JSON: {err}")
    };
    BatchError::Malformed { reason }
}

/// An id as text: strings as they are, numbers as their decimal text.
pub(super) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn decode_item(index: usize, mut wire: WireRequest) -> Result<Item, BatchError> {
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
    let condition = match wire.condition.take() {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => {
            return Err(BatchError::Malformed {
                reason: format!("request `{id}`: `if` must be a string, not {other}"),
            })
        }
    };
    let item = match build_request(wire) {
        Ok(req) => Item::new(req),
        Err(err) => Item::invalid(err),
    };
    let item = item.with_id(id).with_depends_on(depends_on);
    Ok(match condition {
        Some(text) => item.with_condition(text),
        None => item,
    })
}

pub(super) fn build_request(wire: WireRequest) -> Result<Request<Bytes>, ItemError> {
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
pub(super) fn parse_url(url: &str) -> Result<Uri, String> {
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
pub(super) fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    (first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
    .then_some(scheme)
}

/// Reads a `headers` object. `strict` (server side) reports bad names and values; the client
/// side skips them, since one odd header from a foreign server should not lose the batch.
pub(super) fn read_headers(value: Option<Value>, strict: bool) -> Result<HeaderMap, String> {
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
                    // `HeaderMap` holds at most 32,768 fields and panics past that on `append`.
                    if headers.try_append(header_name.clone(), hv).is_err() {
                        if strict {
                            return Err("the request has more headers than a request can hold".into());
                        }
                        break;
                    }
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
