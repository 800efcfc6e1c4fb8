//! Writing a JSON response batch: one answer at a time, in request order.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue};
use http::Response;

use super::body::{trim_whitespace, wire_body, WireBody, TRANSFER_ENCODING_MARKER};
use crate::format::Encoder;
use crate::item::ItemMeta;

/// Appends `value` as JSON.
pub(super) fn put_json<T: serde::Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    serde_json::to_writer((&mut *out).writer(), value)
        .expect("writing JSON into memory cannot fail");
}

/// A header value as text: as it is when it is visible ASCII (nearly always), else decoded with
/// replacement characters.
pub(super) fn lossy(value: &HeaderValue) -> std::borrow::Cow<'_, str> {
    match value.to_str() {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value.as_bytes()),
    }
}

/// Writes `"Content-Type"` for `content-type`, as Microsoft Graph writes header names. Names are
/// case-insensitive, but Graph's JavaScript SDK only recognises a JSON body when the key is
/// spelled exactly `Content-Type`. Header names are tokens, which JSON strings hold unescaped.
pub(super) fn put_canonical_name(out: &mut BytesMut, name: &str) {
    out.reserve(name.len() + 2);
    out.put_u8(b'"');
    // The same spelling as in multipart answers (`ETag`, `OData-EntityId`, `x-ms-*`).
    crate::format::multipart::write::put_name(name, out);
    out.put_u8(b'"');
}

/// Writes `,"headers":{...},"body":...` for one message; headers and body are left out when
/// there are none. Written straight into `out`: a `serde_json::Map` of `String`s cost about ten
/// allocations per answer.
pub(super) fn put_headers_and_body(out: &mut BytesMut, headers: &HeaderMap, body: &[u8]) {
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
pub(super) struct JsonEncoder {
    pub(super) first: bool,
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
        if let Some(group) = &meta.echo {
            out.put_slice(b",\"atomicityGroup\":");
            put_json(out, group);
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
