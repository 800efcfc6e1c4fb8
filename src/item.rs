//! What a format hands to the scheduler ([`Item`]) and what it gets back ([`ItemMeta`] plus the
//! item's `http::Response<Bytes>`).

use std::sync::Arc;

use bytes::Bytes;
use http::Request;

use crate::error::ItemError;

/// One call inside a batch, as decoded by a [`Format`](crate::format::Format).
///
/// An item either holds a request to run, or the reason it could not be decoded; the latter is
/// answered with its own error response while the other items still run.
#[derive(Debug)]
pub struct Item {
    pub(crate) request: Result<Request<Bytes>, ItemError>,
    pub(crate) id: Option<Arc<str>>,
    pub(crate) echo: Option<String>,
    pub(crate) depends_on: Vec<String>,
    /// The change set the item belongs to (numbered from 1 in the batch), if any.
    pub(crate) group: Option<u32>,
}

impl Item {
    /// An item that runs `request`.
    ///
    /// The request's URI may be origin-form (`/path?query`), absolute-form with the batch's own
    /// authority, or a path without its leading `/`; the layer normalises it.
    pub fn new(request: Request<Bytes>) -> Self {
        Item {
            request: Ok(request),
            id: None,
            echo: None,
            depends_on: Vec::new(),
            group: None,
        }
    }

    /// An item that could not be decoded; it is answered with `error` and not run.
    pub fn invalid(error: ItemError) -> Self {
        Item {
            request: Err(error),
            id: None,
            echo: None,
            depends_on: Vec::new(),
            group: None,
        }
    }

    /// Sets the item's id: the key that must be unique within a batch and that other items name
    /// in their dependencies. Empty ids count as no id.
    pub fn with_id(mut self, id: impl Into<Arc<str>>) -> Self {
        let id = id.into();
        self.id = if id.is_empty() { None } else { Some(id) };
        self
    }

    /// Sets format-private text that the encoder receives back with the response, such as the
    /// raw `Content-ID` to echo.
    pub fn with_echo(mut self, echo: impl Into<String>) -> Self {
        self.echo = Some(echo.into());
        self
    }

    /// Sets the ids of the items that must succeed (2xx) before this one runs.
    pub fn with_depends_on(mut self, ids: Vec<String>) -> Self {
        self.depends_on = ids;
        self
    }

    /// The item's id, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The decoded request, or the reason it could not be decoded.
    pub fn request(&self) -> Result<&Request<Bytes>, &ItemError> {
        self.request.as_ref()
    }

    /// Puts the item in change set `group` (a number of the format's choosing, the same for
    /// every item of one change set). The items of a change set must follow each other.
    pub fn in_group(mut self, group: u32) -> Self {
        self.group = Some(group);
        self
    }

    /// The change set the item belongs to, if any.
    pub fn group(&self) -> Option<u32> {
        self.group
    }

    /// The ids this item depends on.
    pub fn depends_on(&self) -> &[String] {
        &self.depends_on
    }

    /// Takes out what the encoder needs to know about the item (its id is shared, not taken).
    pub(crate) fn take_meta(&mut self, index: usize) -> ItemMeta {
        ItemMeta {
            index,
            id: self.id.clone(),
            echo: self.echo.take(),
        }
    }
}

/// What an encoder knows about an item when it writes the item's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemMeta {
    /// The item's zero-based position in the batch.
    pub index: usize,
    /// The item's id, if it had one (shared with the item's [`BatchContext`](crate::BatchContext)).
    pub id: Option<Arc<str>>,
    /// The format-private text set with [`Item::with_echo`].
    pub echo: Option<String>,
}

/// The answers of a change set, carried as an extension of the one response that stands for the
/// whole change set. The encoder writes them as the change set's answer.
#[derive(Clone, Debug)]
pub(crate) struct GroupAnswers {
    /// The boundary of the change set's answer, for formats that need one.
    pub(crate) boundary: String,
    /// Each item's meta and answer, in order. When the change set failed, only the failing
    /// item's, which answers for the whole change set.
    pub(crate) answers: Vec<(ItemMeta, http::Response<Bytes>)>,
    /// Whether the change set failed (and was rolled back, when it ran under a transaction).
    pub(crate) failed: bool,
}

/// Every member of a change set, in order, carried next to its [`GroupAnswers`]: a failed
/// change set's answers hold only the failing item's, while a dialect that answers change sets
/// flat answers each member.
#[derive(Clone, Debug)]
pub(crate) struct ChangeSetMembers(pub(crate) Vec<ItemMeta>);

/// How many bytes an answer's body holds, a change set's answers counted in full (the one
/// response that stands for a change set has an empty body of its own).
pub(crate) fn answer_len(response: &http::Response<Bytes>) -> usize {
    match response.extensions().get::<GroupAnswers>() {
        Some(group) => group
            .answers
            .iter()
            .map(|(_, r)| r.body().len() + 256)
            .sum(),
        None => response.body().len(),
    }
}
