//! [`Cancel`]: the word from a status monitor's `DELETE` that a running batch should start no
//! more items. The items that have started finish; the others are answered as not run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Context;

use futures_util::task::AtomicWaker;

/// Shared by the batch's scheduler, which polls it beside the batch deadline, and whoever may
/// cancel the batch. It travels to the scheduler in the outer request's extensions.
#[derive(Clone, Default)]
pub(crate) struct Cancel(Arc<Inner>);

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    waker: AtomicWaker,
}

impl Cancel {
    /// Asks the batch to start no more items, and wakes its scheduler to hear it.
    pub(crate) fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Acquire)
    }

    /// Whether the batch is cancelled; if not, `cx` is woken when it is.
    pub(crate) fn poll_cancelled(&self, cx: &mut Context<'_>) -> bool {
        if self.is_cancelled() {
            return true;
        }
        self.0.waker.register(cx.waker());
        self.is_cancelled()
    }
}
