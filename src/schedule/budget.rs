//! The byte budgets an item must fit before it starts, shared by the scheduler and its lanes.
//!
//! - *Held answers*: an answer that waits for an earlier item to be sent is held in memory. The
//!   bytes held, across the scheduler and every lane, are counted against one budget, with or
//!   without dependencies. An item that is not next in order does not start while the budget is
//!   spent; it waits for the body to send what is held. (The item next in order always may: its
//!   answer is sent, not held.)
//! - *The whole answer*: an item starts only while the answer written so far, plus what is held,
//!   leaves room under `max_response_bytes`. An item refused here did not run, and its answer says
//!   so; one that ran but whose answer did not fit is told apart in the body.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::error::{error_response, not_run, response_full};
/// What an answer is counted as: its body and a fair allowance for its head and framing.
pub(crate) fn cost(res: &Response<Bytes>) -> usize {
    res.body().len() + 256
}

#[derive(Debug)]
pub(crate) struct Budget {
    max_held: usize,
    max_response: usize,
    held: AtomicUsize,
    /// The most `held` has been, for the batch's record.
    peak: AtomicUsize,
    written: AtomicUsize,
}

/// Whether an item may start now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    Start,
    /// Not yet: the held answers fill their budget.
    Wait,
    /// Never: the whole answer has no room left for it.
    Refuse,
}

impl Budget {
    pub(crate) fn new(max_held: usize, max_response: usize) -> Self {
        Budget {
            max_held,
            max_response,
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
        }
    }

    /// May item `index` start, with `next` the item the body waits for?
    pub(crate) fn admit(&self, index: usize, next: usize) -> Admit {
        // Relaxed: the counts only bound memory; a lane that reads a stale one is woken again at
        // the next emit.
        let held = self.held.load(Ordering::Relaxed);
        let written = self.written.load(Ordering::Relaxed);
        if written.saturating_add(held).saturating_add(256) > self.max_response {
            return Admit::Refuse;
        }
        if index != next && held >= self.max_held {
            return Admit::Wait;
        }
        Admit::Start
    }

    pub(crate) fn hold(&self, res: &Response<Bytes>) {
        let c = cost(res);
        let held = self.held.fetch_add(c, Ordering::AcqRel) + c;
        self.peak.fetch_max(held, Ordering::Relaxed);
    }

    /// The most bytes of answers held at once so far.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub(crate) fn release(&self, res: &Response<Bytes>) {
        let c = cost(res);
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(c))
            });
    }

    /// The body has written `bytes` of the answer so far.
    pub(crate) fn written(&self, bytes: usize) {
        self.written.store(bytes, Ordering::Release);
    }

    /// Whether what is written and held so far fits the whole answer's limit: a change set
    /// commits only then, so that its answers can be sent once it has.
    pub(crate) fn fits(&self) -> bool {
        let held = self.held.load(Ordering::Acquire);
        let written = self.written.load(Ordering::Acquire);
        written.saturating_add(held) <= self.max_response
    }

    pub(crate) fn max_response(&self) -> usize {
        self.max_response
    }

    pub(crate) fn max_held(&self) -> usize {
        self.max_held
    }
}

/// The answer of an item refused for want of room in the whole answer: it was not run.
pub(crate) fn no_room(limit: usize) -> Response<Bytes> {
    response_full(limit, false)
}

/// The answer of an item that could never be held: it was not run.
pub(crate) fn never_held(limit: usize) -> Response<Bytes> {
    not_run(error_response(
        StatusCode::INSUFFICIENT_STORAGE,
        &format!(
            "the answers waiting for earlier items filled their budget of {limit} bytes and could not be sent first, so this item was not run"
        ),
    ))
}
