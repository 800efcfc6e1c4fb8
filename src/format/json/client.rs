//! The client's side of the JSON format: writing a request batch and reading its answer.

use bytes::{BufMut, BytesMut};
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::body::{read_body, Side};
use super::decode::{envelope_error, id_text, read_headers};
use super::encode::{put_headers_and_body, put_json};
use crate::error::BatchError;

#[derive(Deserialize)]
pub(super) struct ResponseEnvelope {
    pub(super) responses: Option<Vec<WireResponse>>,
}

#[derive(Deserialize)]
pub(super) struct WireResponse {
    #[serde(default)]
    pub(super) id: Option<Value>,
    #[serde(default)]
    pub(super) status: Option<Value>,
    #[serde(default)]
    pub(super) headers: Option<Value>,
    #[serde(default)]
    pub(super) body: Option<Box<RawValue>>,
}

/// Writes a JSON batch request body: one `{"id","method","url","headers","body","dependsOn"}`
/// object per `(id, request, depends_on)`.
///
/// The `url` is the request's path and query (an absolute URI loses its scheme and authority,
/// since batch items always go to the batch's own server). Bodies follow the rule in the
/// [module docs](super#bodies); `headers`, `body` and `dependsOn` are left out when empty.
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
