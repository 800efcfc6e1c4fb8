//! Google / OData style `multipart/mixed` batches, where each part is `application/http`.
//!
//! # Dependencies
//!
//! Google's format has no way for items to wait for each other. As an extension, a part may
//! carry `Depends-On: <id1>, <id2>` naming the `Content-ID`s of earlier or later parts: it then
//! runs only after those answered with a 2xx, and is answered `424 Failed Dependency` otherwise,
//! exactly like `dependsOn` in JSON batches. Parts without the header are unaffected.
//!
//! The reader is tolerant (bare LF, folded part headers, preambles, request lines without a
//! version, ...); the writer is strict RFC 2046 / RFC 9112 text with CRLF everywhere.

pub(crate) mod http1;
pub(crate) mod part;
pub(crate) mod scan;
pub(crate) mod write;

use std::sync::Arc;

use bytes::Bytes;

use super::{DecodeContext, Encoder, Format};
use crate::error::{BatchError, ItemError};
use crate::item::Item;

pub use http1::{parse_request, parse_response};
pub use scan::split_parts;
pub use write::{new_boundary, write_request, write_response_part, MultipartEncoder};

/// The `multipart/mixed` batch format of Google's APIs and OData.
#[derive(Clone, Copy, Debug, Default)]
pub struct Multipart {
    _priv: (),
}

impl Multipart {
    /// The multipart format.
    pub fn new() -> Self {
        Multipart { _priv: () }
    }
}

/// Reads the `boundary` parameter of a `multipart/*` content type.
pub fn boundary_of(content_type: &mime::Mime) -> Result<String, BatchError> {
    let boundary = content_type
        .get_param(mime::BOUNDARY)
        .ok_or(BatchError::MissingBoundary)?;
    let b = boundary.as_str();
    if b.is_empty() {
        return Err(BatchError::InvalidBoundary {
            reason: "the boundary is empty",
        });
    }
    if b.len() > 70 {
        return Err(BatchError::InvalidBoundary {
            reason: "the boundary is longer than 70 characters",
        });
    }
    if b.bytes().any(|c| c.is_ascii_control() || !c.is_ascii()) {
        return Err(BatchError::InvalidBoundary {
            reason: "the boundary contains control or non-ASCII characters",
        });
    }
    Ok(b.to_owned())
}

impl Format for Multipart {
    fn name(&self) -> &'static str {
        "multipart"
    }

    fn content_types(&self) -> Vec<String> {
        vec!["multipart/mixed".to_owned()]
    }

    fn accepts(&self, content_type: &mime::Mime) -> bool {
        content_type.type_() == mime::MULTIPART && content_type.subtype() == "mixed"
    }

    fn decode(&self, cx: &DecodeContext<'_>, body: Bytes) -> Result<Vec<Item>, BatchError> {
        let boundary = boundary_of(cx.content_type)?;
        let parts = scan::part_ranges(&body, boundary.as_bytes(), cx.limits)?;
        let mut items = Vec::with_capacity(parts.len());
        let mut group = 0u32;
        for range in parts {
            let raw = &body[range.clone()];
            // The part's headers are read once: they say whether it is a change set, and then
            // make the item.
            let (head, content) = match part::parse_part(raw, cx.limits) {
                Ok(parsed) => parsed,
                Err(err) => {
                    items.push(invalid_part(raw, err, cx.limits));
                    continue;
                }
            };
            match change_set(&head, &content) {
                None => items.push(decode_part(&body, raw, head, content, cx.limits)),
                Some(Err(err)) => items.push(Item::invalid(err)),
                Some(Ok((inner, content))) => {
                    // A change set: its parts are items of one change set, each counted like
                    // any other item. The change set's own `Content-ID` names it as a whole,
                    // and its `Depends-On` holds for each of its items.
                    group += 1;
                    let (set_id, _) = ids_of(head.content_id.clone());
                    let set_deps: Vec<String> = head
                        .depends_on
                        .as_deref()
                        .map(|d| {
                            d.split(',')
                                .map(strip_angles)
                                .filter(|d| !d.is_empty())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    let start = range.start + content.start;
                    let end = range.start + content.end;
                    let sub = scan::part_ranges(&body[start..end], inner.as_bytes(), cx.limits)
                        .map_err(|err| match err {
                            BatchError::TooManyItems { .. } => err,
                            err => BatchError::Framing {
                                reason: format!("in change set {group}: {err}"),
                            },
                        })?;
                    if items.len() + sub.len() > cx.limits.max_items {
                        return Err(BatchError::TooManyItems {
                            count: items.len() + sub.len(),
                            limit: cx.limits.max_items,
                        });
                    }
                    for r in sub {
                        let raw = &body[start + r.start..start + r.end];
                        let mut item = match part::parse_part(raw, cx.limits) {
                            Err(err) => invalid_part(raw, err, cx.limits),
                            Ok((head, _)) if change_set(&head, &(0..0)).is_some() => {
                                Item::invalid(ItemError::bad_request(
                                    "a change set may not hold another change set",
                                ))
                            }
                            Ok((head, content)) => {
                                decode_part(&body, raw, head, content, cx.limits)
                            }
                        };
                        item.group = Some(group);
                        item.group_id.clone_from(&set_id);
                        item.depends_on.extend(set_deps.iter().cloned());
                        items.push(item);
                    }
                }
            }
        }
        Ok(items)
    }

    fn encoder(&self, cx: &DecodeContext<'_>) -> Box<dyn Encoder> {
        Box::new(
            MultipartEncoder::new(cx.dialect.batch_boundary())
                .content_id_echo(cx.dialect.get_content_id_echo())
                .change_set_answers(cx.dialect.get_change_set_answers()),
        )
    }
}

/// When the part is a change set (its type is `multipart/mixed`): its boundary and the range of
/// its content within `raw`.
fn change_set(
    head: &part::PartHead<'_>,
    content: &std::ops::Range<usize>,
) -> Option<Result<(String, std::ops::Range<usize>), ItemError>> {
    let ct = head.content_type.as_deref()?;
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    let boundary = super::parse_content_type(ct)
        .ok_or(BatchError::MissingBoundary)
        .and_then(|m| boundary_of(&m))
        .map_err(|err| ItemError::bad_request(format!("change set: {err}")));
    Some(boundary.map(|b| (b, content.clone())))
}

/// Turns one part (`raw`, a sub-slice of `body`, whose headers are `head` and whose content is
/// `raw[content]`) into an item: its headers, then the nested HTTP request. The item is built in one go rather than through `Item`'s builder methods, which
/// would move it (a few hundred bytes) once per call.
#[inline]
fn decode_part(
    body: &Bytes,
    raw: &[u8],
    head: part::PartHead<'_>,
    content: std::ops::Range<usize>,
    limits: &crate::limits::Limits,
) -> Item {
    let request = match check_part_type(&head) {
        Err(err) => Err(err),
        Ok(()) => http1::parse_request_in(body, &raw[content], limits),
    };
    let (id, echo) = ids_of(head.content_id);
    let depends_on = match head.depends_on {
        Some(deps) => deps
            .split(',')
            .map(strip_angles)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    Item {
        request,
        id,
        echo,
        depends_on,
        group: None,
        group_id: None,
        condition: None,
    }
}

/// A part whose headers could not be read: answered with `err`, under its `Content-ID` where
/// one can still be found, so that the client can match the answer to its call.
fn invalid_part(raw: &[u8], err: ItemError, limits: &crate::limits::Limits) -> Item {
    let (id, echo) = ids_of(part::salvage_content_id(raw, limits));
    Item {
        request: Err(err),
        id,
        echo,
        depends_on: Vec::new(),
        group: None,
        group_id: None,
        condition: None,
    }
}

/// The item's id and the `Content-ID` text to echo, from the part's `Content-ID`.
fn ids_of(content_id: Option<std::borrow::Cow<'_, str>>) -> (Option<Arc<str>>, Option<String>) {
    match content_id {
        Some(cid) => {
            // Empty ids count as no id, as in `Item::with_id`.
            let key = strip_angles(&cid);
            // One allocation for the id, straight from the part's bytes.
            let id = (!key.is_empty()).then(|| Arc::from(key));
            // The usual `<id>` needs no copy of its own: the encoder writes `<response-id>`
            // from the id (see `MultipartEncoder::item`). Anything else is echoed as it came.
            let plain = cid.len() == key.len() + 2
                && cid.starts_with('<')
                && cid.ends_with('>')
                && !key.is_empty()
                && !key.bytes().any(|c| c.is_ascii_control());
            (id, (!plain).then(|| cid.into_owned()))
        }
        None => (None, None),
    }
}

fn check_part_type(head: &part::PartHead<'_>) -> Result<(), ItemError> {
    if let Some(ct) = &head.content_type {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("multipart/mixed") {
            return Err(ItemError::new(
                http::StatusCode::NOT_IMPLEMENTED,
                "change sets (nested multipart/mixed parts) are not supported",
            ));
        }
        if !essence.eq_ignore_ascii_case("application/http") {
            return Err(ItemError::bad_request(format!(
                "part has content type `{essence}`; batch parts must be application/http"
            )));
        }
    }
    if let Some(cte) = &head.transfer_encoding {
        let cte = cte.trim();
        let ok = ["binary", "7bit", "8bit"]
            .iter()
            .any(|e| cte.eq_ignore_ascii_case(e));
        if !ok {
            return Err(ItemError::bad_request(format!(
                "part uses Content-Transfer-Encoding `{cte}`; only binary, 7bit and 8bit are supported"
            )));
        }
    }
    Ok(())
}

/// `<x>` → `x`; anything else unchanged.
pub(crate) fn strip_angles(id: &str) -> &str {
    let t = id.trim();
    t.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(t)
}
