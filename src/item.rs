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
    /// The id of that change set, when the client gave it one (a JSON `atomicityGroup`, the
    /// `Content-ID` of a multipart change set): other items may depend on it by that id.
    pub(crate) group_id: Option<Arc<str>>,
    /// OData's `if`: the condition under which the item runs, in place of "everything it
    /// depends on succeeded".
    pub(crate) condition: Option<String>,
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
            group_id: None,
            condition: None,
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
            group_id: None,
            condition: None,
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

    /// Sets the condition under which the item runs (OData's `if`), in place of "every item it
    /// depends on succeeded": `$<id>/$succeeded` combined with `not`, `and`, `or`, `true`,
    /// `false` and parentheses. The items it names are waited for as dependencies. A condition
    /// that does not hold, or that this crate cannot evaluate (one on a response body), answers
    /// the item `424` and it is not run.
    pub fn with_condition(mut self, condition: impl Into<String>) -> Self {
        self.condition = Some(condition.into());
        self
    }

    /// The item's condition, if it has one.
    pub fn condition(&self) -> Option<&str> {
        self.condition.as_deref()
    }

    /// The item's id, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The decoded request, or the reason it could not be decoded.
    pub fn request(&self) -> Result<&Request<Bytes>, &ItemError> {
        self.request.as_ref()
    }

    /// Puts the item in change set `change_set` (a number of the format's choosing, the same
    /// for every item of one change set). The items of a change set must follow each other.
    pub fn in_change_set(mut self, change_set: u32) -> Self {
        self.group = Some(change_set);
        self
    }

    /// Names the item's change set, so that other items can depend on the change set as a
    /// whole by this id (OData 4.01 lets `dependsOn` name an atomicity group). Every item of one
    /// change set should carry the same id; ids of change sets and of items share one space.
    pub fn with_change_set_id(mut self, id: impl Into<Arc<str>>) -> Self {
        let id = id.into();
        self.group_id = (!id.is_empty()).then_some(id);
        self
    }

    /// The change set the item belongs to, if any.
    pub fn change_set(&self) -> Option<u32> {
        self.group
    }

    /// The id of the item's change set, if it has one.
    pub fn change_set_id(&self) -> Option<&str> {
        self.group_id.as_deref()
    }

    /// Puts the item in change set `group`.
    #[deprecated(since = "0.1.0", note = "renamed to `in_change_set`")]
    pub fn in_group(self, group: u32) -> Self {
        self.in_change_set(group)
    }

    /// The change set the item belongs to, if any.
    #[deprecated(since = "0.1.0", note = "renamed to `change_set`")]
    pub fn group(&self) -> Option<u32> {
        self.change_set()
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

/// The answers of one change set, as an [`Encoder`](crate::format::Encoder) receives them: every
/// member's answer, in request order, and whether the change set's effects were kept.
///
/// When a change set fails, the member that made it fail keeps its own answer (or, when the
/// transaction failed to begin or commit, carries the reason); the members that ran before it
/// are answered `424` saying their effects were rolled back, and those after it `424` saying
/// they were not run. Dialects differ in what they send of this: OData multipart answers a
/// failed change set with the failing answer alone, JSON batches answer every member.
#[derive(Debug)]
#[non_exhaustive]
pub struct ChangeSetAnswer {
    /// Whether the change set committed. Without a transaction (a route that allows non-atomic
    /// change sets) this says whether every member answered `2xx`.
    pub committed: bool,
    /// Whether the change set ran under a transaction, so that a failure undid its members.
    pub atomic: bool,
    /// The boundary for the change set's own answer, for formats that nest it.
    pub boundary: String,
    /// Each member's meta and answer, in request order.
    pub members: Vec<(ItemMeta, http::Response<Bytes>)>,
    /// When it did not commit: the position in `members` of the answer that says why.
    pub failed: Option<usize>,
}

impl ChangeSetAnswer {
    /// The member whose answer says why the change set failed, if it failed.
    pub fn failing(&self) -> Option<&(ItemMeta, http::Response<Bytes>)> {
        self.failed.and_then(|i| self.members.get(i))
    }
}
