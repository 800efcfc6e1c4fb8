//! What the scheduler asks of whoever starts its items: the [`Launch`] trait, and the shapes of
//! an item handed over (waiting) and of a started one (its future).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};

/// An item's future that also says which item it is: the one box each item costs.
pub(crate) type Indexed = Pin<Box<dyn Future<Output = (usize, Response<Bytes>)> + Send>>;

/// Starts items: checks each one, gives it what it inherits, and sends it through a clone of the
/// service items run through. The scheduler knows items only through this trait.
pub(crate) trait Launch: Send {
    /// Starts item `index`; the future answers with the index and the item's whole answer.
    fn launch(
        &mut self,
        index: usize,
        request: Request<Bytes>,
        span: tracing::Span,
        id: Option<Arc<str>>,
    ) -> Indexed;

    /// A launcher of its own for a lane (`Execution::Spawned`), sharing this one's batch.
    fn fork(&self) -> Box<dyn Launch>;
}

/// An item waiting to run, as handed to a lane: its index, request, span and id.
pub(crate) type Waiting = (usize, Request<Bytes>, tracing::Span, Option<Arc<str>>);
