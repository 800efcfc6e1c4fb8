//! Wire formats: how a batch envelope becomes [`Item`]s and how item responses become a body.
//!
//! The layer picks a format by the request's content type. Two formats ship with the crate:
//! [`Multipart`] (Google / OData `multipart/mixed`) and, with the `json` feature, [`Json`]
//! (OData 4.01 JSON batch / Microsoft Graph `$batch`). Implement [`Format`] to add your own and
//! register it with [`BatchLayer::format`](crate::BatchLayer::format) or
//! [`BatchLayer::path_with_format`](crate::BatchLayer::path_with_format).

use std::fmt;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response};

use crate::context::BatchStore;
use crate::error::BatchError;
use crate::item::{ChangeSetAnswer, Item, ItemMeta};
use crate::limits::Limits;

pub mod dialect;
#[cfg(feature = "json")]
pub mod json;
pub mod multipart;

pub use dialect::Dialect;

#[cfg(feature = "json")]
pub use json::Json;
pub use multipart::Multipart;

/// A batch wire format.
///
/// `decode` turns one envelope into items; `encoder` returns the object that writes the answers,
/// one item at a time and in request order, so the response can stream.
pub trait Format: Send + Sync + 'static {
    /// A short name for logs and traces, such as `"multipart"`.
    fn name(&self) -> &'static str;

    /// The content types this format accepts, listed in `415` answers.
    fn content_types(&self) -> Vec<String>;

    /// Whether this format decodes a request with this content type.
    fn accepts(&self, content_type: &mime::Mime) -> bool;

    /// Splits the envelope into items.
    ///
    /// Problems with a single item go into that item ([`Item::invalid`]); only problems with the
    /// envelope itself are an `Err`. Respect `cx.limits` (in particular
    /// [`Limits::items`]).
    fn decode(&self, cx: &DecodeContext<'_>, body: Bytes) -> Result<Vec<Item>, BatchError>;

    /// A writer for the answers of one batch.
    fn encoder(&self, cx: &DecodeContext<'_>) -> Box<dyn Encoder>;
}

/// What a format may look at while decoding an envelope.
#[non_exhaustive]
pub struct DecodeContext<'a> {
    /// The outer request's head.
    pub parts: &'a http::request::Parts,
    /// The parsed content type of the outer request.
    pub content_type: &'a mime::Mime,
    /// The limits in force.
    pub limits: &'a Limits,
    /// The store the items of this batch will share; a format may put envelope-wide settings
    /// here (for example a flag carried in a JSON envelope).
    pub store: &'a BatchStore,
    /// The rules of the route the batch was posted to (Google's outside a route).
    pub dialect: &'a Dialect,
}

impl<'a> DecodeContext<'a> {
    /// A context for decoding outside the layer: in tests, benches, or a client.
    pub fn new(
        parts: &'a http::request::Parts,
        content_type: &'a mime::Mime,
        limits: &'a Limits,
        store: &'a BatchStore,
    ) -> Self {
        DecodeContext {
            parts,
            content_type,
            limits,
            store,
            dialect: &dialect::GOOGLE,
        }
    }

    /// The same context under another dialect's rules.
    pub fn with_dialect(self, dialect: &'a Dialect) -> Self {
        DecodeContext { dialect, ..self }
    }
}

impl fmt::Debug for DecodeContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeContext")
            .field("uri", &self.parts.uri)
            .field("content_type", &self.content_type)
            .field("dialect", &self.dialect.name())
            .finish()
    }
}

/// Writes the answers of one batch, in request order.
pub trait Encoder: Send {
    /// The `Content-Type` of the batch response.
    fn content_type(&self) -> HeaderValue;

    /// Writes what comes before the first item.
    fn begin(&mut self, out: &mut BytesMut) {
        let _ = out;
    }

    /// Writes one item's answer. `meta.index` counts up from zero without gaps.
    fn item(&mut self, meta: &ItemMeta, response: &Response<Bytes>, out: &mut BytesMut);

    /// Writes the answers of one change set, whose members' metas count on from the item
    /// before it. The default writes each member's answer as an item.
    fn change_set(&mut self, answer: &ChangeSetAnswer, out: &mut BytesMut) {
        for (meta, response) in &answer.members {
            self.item(meta, response, out);
        }
    }

    /// Writes what comes after the last item.
    fn end(&mut self, out: &mut BytesMut) {
        let _ = out;
    }
}

/// Parses a content type, tolerating what real clients send and `mime` refuses: parameter values
/// with characters that should have been quoted (`type=application/http`, `boundary=a=b`).
pub(crate) fn parse_content_type(ct: &str) -> Option<mime::Mime> {
    if let Ok(m) = ct.parse() {
        return Some(m);
    }
    let mut pieces = ct.split(';');
    let mut fixed = pieces.next()?.trim().to_owned();
    for param in pieces {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (name, value) = param.split_once('=')?;
        let value = value.trim();
        fixed.push_str("; ");
        fixed.push_str(name.trim());
        fixed.push('=');
        if value.starts_with('"') {
            fixed.push_str(value);
        } else if value.contains('"') || value.contains('\\') {
            return None;
        } else {
            fixed.push('"');
            fixed.push_str(value);
            fixed.push('"');
        }
    }
    fixed.parse().ok()
}

/// Finds the registered format for a content type.
pub(crate) fn pick<'a>(
    formats: &'a [std::sync::Arc<dyn Format>],
    content_type: &mime::Mime,
) -> Option<&'a std::sync::Arc<dyn Format>> {
    formats.iter().find(|f| f.accepts(content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_content_types() {
        let m =
            parse_content_type("multipart/mixed; boundary=batch_1; type=application/http").unwrap();
        assert_eq!(m.essence_str(), "multipart/mixed");
        assert_eq!(m.get_param("boundary").unwrap(), "batch_1");
        let m = parse_content_type("multipart/mixed; boundary===a=b==").unwrap();
        assert_eq!(m.get_param("boundary").unwrap(), "==a=b==");
        assert!(parse_content_type("multipart/mixed; boundary").is_none());
        assert!(parse_content_type("not a type").is_none());
    }
}
