//! `RecFormat`: a batch wire format of our own, registered at `/rec/batch/`.
//!
//! This is the "bring your own format" part of the example: the envelope is a recommender
//! service's batch shape (similar to Recombee's), not multipart and not the OData JSON batch.
//!
//! Request (`Content-Type: application/json`):
//!
//! ```json
//! {"requests": [
//!     {"method": "GET", "path": "/recomms/users/alice/items", "params": {"count": 10}},
//!     {"method": "POST", "path": "/callback", "body": {"uid": "alice", "...": "..."}}
//!  ],
//!  "distinctRecomms": true}
//! ```
//!
//! - `method` defaults to `GET`; `path` must start with `/`.
//! - `params` become the query string, form-URL-encoded. Strings, numbers and booleans are
//!   written as they read; `null` leaves the parameter out; an array repeats the parameter once
//!   per element. An object as a value makes that one request a `400`.
//! - `body`, if present, is sent as the JSON body of the request.
//! - `distinctRecomms: true` puts a [`DistinctRecomms`] marker into the batch's shared store,
//!   which the recommendation handler reads.
//!
//! Response: a JSON array with one entry per request, in request order:
//! `{"code": <status>, "json": <body>}`. `json` is the parsed body when the item answered with
//! a JSON content type and a body that parses; otherwise it is `null`, and a non-empty body is
//! given as a string in a `"text"` field instead.
//!
//! A broken envelope (not JSON, no `requests` array) rejects the whole batch with the layer's
//! usual `400`; a broken single request is answered in its own entry with code `400`.

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response};
use http_batch::format::{DecodeContext, Encoder, Format};
use http_batch::{BatchError, Item, ItemError, ItemMeta};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Marker in a batch's [`BatchStore`](http_batch::BatchStore): the envelope asked that the
/// recommendation items of this batch never repeat an item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistinctRecomms;

/// The recommender batch format described in the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct RecFormat;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    requests: Vec<Value>,
    #[serde(default)]
    distinct_recomms: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecRequest {
    #[serde(default)]
    method: Option<String>,
    path: String,
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
}

impl Format for RecFormat {
    fn name(&self) -> &'static str {
        "rec"
    }

    fn content_types(&self) -> Vec<String> {
        vec!["application/json".to_owned()]
    }

    fn accepts(&self, content_type: &mime::Mime) -> bool {
        content_type.essence_str() == "application/json"
    }

    fn decode(&self, cx: &DecodeContext<'_>, body: Bytes) -> Result<Vec<Item>, BatchError> {
        let envelope: Envelope =
            serde_json::from_slice(&body).map_err(|e| BatchError::Malformed {
                reason: format!(
                    "the body must be {{\"requests\": [...], \"distinctRecomms\": bool}}: {e}"
                ),
            })?;
        // Refuse before building anything: the layer would refuse later anyway, but only after
        // every request had been turned into an item.
        if envelope.requests.len() > cx.limits.get_max_items() {
            return Err(BatchError::TooManyItems {
                count: envelope.requests.len(),
                limit: cx.limits.get_max_items(),
            });
        }
        if envelope.distinct_recomms {
            cx.store.insert(DistinctRecomms);
        }
        Ok(envelope
            .requests
            .into_iter()
            .enumerate()
            .map(|(i, raw)| match to_request(raw) {
                Ok(req) => Item::new(req),
                Err(why) => Item::invalid(ItemError::bad_request(format!("request {i}: {why}"))),
            })
            .collect())
    }

    fn encoder(&self, _cx: &DecodeContext<'_>) -> Box<dyn Encoder> {
        Box::new(RecEncoder)
    }
}

fn to_request(raw: Value) -> Result<Request<Bytes>, String> {
    let rec: RecRequest = serde_json::from_value(raw).map_err(|e| e.to_string())?;
    let method = rec.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    if !rec.path.starts_with('/') || rec.path.contains('#') {
        return Err(format!(
            "path `{}` must start with `/` and carry no fragment",
            rec.path
        ));
    }
    let query = query_string(&rec.params)?;
    let target = match (query.is_empty(), rec.path.contains('?')) {
        (true, _) => rec.path,
        (false, false) => format!("{}?{query}", rec.path),
        (false, true) => format!("{}&{query}", rec.path),
    };
    let mut builder = Request::builder().method(method).uri(target.as_str());
    let body = match rec.body {
        None => Bytes::new(),
        Some(value) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(value.to_string())
        }
    };
    builder
        .body(body)
        .map_err(|e| format!("`{target}` is not a valid request target: {e}"))
}

/// `params` as a form-URL-encoded query string, in the envelope's order.
pub fn query_string(params: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut push = |name: &str, value: &str| {
        if !out.is_empty() {
            out.push('&');
        }
        encode_into(name, &mut out);
        out.push('=');
        encode_into(value, &mut out);
    };
    for (name, value) in params {
        match value {
            Value::Null => {}
            Value::Array(values) => {
                for v in values {
                    push(name, &scalar(name, v)?);
                }
            }
            v => push(name, &scalar(name, v)?),
        }
    }
    Ok(out)
}

fn scalar(name: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!(
            "parameter `{name}` must be a string, number, boolean or an array of those"
        )),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a value can never
/// smuggle in a `&`, `=` or `#`.
fn encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Writes the JSON array of answers, one element per item as it becomes ready.
struct RecEncoder;

impl Encoder for RecEncoder {
    fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static("application/json")
    }

    fn begin(&mut self, out: &mut BytesMut) {
        out.put_u8(b'[');
    }

    fn item(&mut self, meta: &ItemMeta, response: &Response<Bytes>, out: &mut BytesMut) {
        if meta.index > 0 {
            out.put_u8(b',');
        }
        let entry = answer(response);
        serde_json::to_writer(out.writer(), &entry).expect("a Value always serialises");
    }

    fn end(&mut self, out: &mut BytesMut) {
        out.put_u8(b']');
    }
}

fn answer(response: &Response<Bytes>) -> Value {
    let body = response.body();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON));
    let parsed = is_json
        .then(|| serde_json::from_slice::<Value>(body).ok())
        .flatten();
    let mut entry = json!({ "code": response.status().as_u16() });
    match parsed {
        Some(value) => entry["json"] = value,
        None => {
            entry["json"] = Value::Null;
            if !body.is_empty() {
                entry["text"] = Value::String(String::from_utf8_lossy(body).into_owned());
            }
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_form_url_encoded_in_order() {
        let params: Map<String, Value> = serde_json::from_str(
            r#"{"count": 3, "filter": "a b&c=d#", "flag": true, "skip": null, "tag": ["x", 1]}"#,
        )
        .unwrap();
        assert_eq!(
            query_string(&params).unwrap(),
            "count=3&filter=a%20b%26c%3Dd%23&flag=true&tag=x&tag=1"
        );
    }

    #[test]
    fn object_params_are_refused() {
        let params: Map<String, Value> = serde_json::from_str(r#"{"x": {"y": 1}}"#).unwrap();
        assert!(query_string(&params).unwrap_err().contains("`x`"));
    }

    #[test]
    fn request_from_envelope_entry() {
        let req = to_request(json!({
            "method": "post", "path": "/callback?v=1", "params": {"a": "b"}, "body": {"k": 1}
        }))
        .unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "/callback?v=1&a=b");
        assert_eq!(req.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(&req.body()[..], br#"{"k":1}"#);
        assert!(to_request(json!({"path": "relative"})).is_err());
        assert!(to_request(json!({"path": "/x", "extra": 1})).is_err());
    }

    #[test]
    fn answers_keep_json_and_fall_back_to_text() {
        let res = |ct: Option<&str>, body: &'static str| {
            let mut r = Response::new(Bytes::from_static(body.as_bytes()));
            if let Some(ct) = ct {
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            }
            r
        };
        assert_eq!(
            answer(&res(Some("application/json"), r#"{"a":1}"#)),
            json!({"code": 200, "json": {"a": 1}})
        );
        assert_eq!(
            answer(&res(Some("application/problem+json"), "[1]")),
            json!({"code": 200, "json": [1]})
        );
        assert_eq!(
            answer(&res(Some("text/plain"), "hi")),
            json!({"code": 200, "json": null, "text": "hi"})
        );
        assert_eq!(answer(&res(None, "")), json!({"code": 200, "json": null}));
    }
}
