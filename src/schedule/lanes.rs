//! `Execution::Spawned`: a batch's items shared out in blocks between the body's own task and
//! one lane task per other worker thread, each lane held to the batch's window.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use http::Response;

use super::budget::{self, Admit, Budget};
use super::launch::{Indexed, Launch, Waiting};

/// Answers a lane hands back together, in no particular order.
pub(super) type Answers = Vec<(usize, Response<Bytes>)>;

/// A share of a batch's items running as a task of its own (`Execution::Spawned`).
///
/// The lane hands back what it has answered whenever it would otherwise wait (and every
/// `FLUSH` answers), so the batch's task wakes once per handful of items rather than once per
/// item, and an answer never waits in the lane for a slower sibling. The batch takes every
/// answer as it arrives; a lane starts an item only within the batch's window of what has been
/// emitted, so with a slow reader answers do not pile up.
pub(crate) struct Lane {
    pub(super) answers: tokio::sync::mpsc::UnboundedReceiver<Answers>,
    shared: Arc<LaneShared>,
    // Held for its `Drop`: a lane outlives neither its batch nor a passed deadline.
    _task: AbortOnDrop,
}

/// What a lane and its batch share: how far the batch has emitted (one counter for all the
/// batch's lanes), and the lane's waker for when it waits on that.
struct LaneShared {
    emitted: Arc<AtomicUsize>,
    parked: AtomicBool,
    waker: AtomicWaker,
}

impl Lane {
    /// Runs `items` as a task of its own on a fork of `launcher`; `emitted` is the batch's
    /// count of answers handed to the body, shared by all its lanes.
    pub(super) fn spawn(
        launcher: &dyn Launch,
        items: Vec<Waiting>,
        concurrency: usize,
        window: usize,
        emitted: Arc<AtomicUsize>,
        budget: Arc<Budget>,
    ) -> Lane {
        let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(LaneShared {
            emitted,
            parked: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        let run = run_lane(
            launcher.fork(),
            items,
            concurrency,
            window,
            shared.clone(),
            budget,
            tx,
        );
        Lane {
            answers,
            shared,
            _task: AbortOnDrop(tokio::spawn(run)),
        }
    }

    /// The batch has moved its `emitted` counter on: a lane waiting for room may go on. The load
    /// comes first so that a lane that is not waiting costs no read-modify-write per answer.
    pub(super) fn wake_if_parked(&self) {
        if self.shared.parked.load(Ordering::SeqCst)
            && self.shared.parked.swap(false, Ordering::SeqCst)
        {
            self.shared.waker.wake();
        }
    }
}

/// A lane hands back its answers at least this often.
const FLUSH: usize = 32;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `items` in order on a launcher of the lane's own, at most `concurrency` at once and
/// none beyond `window` past what the batch has emitted.
async fn run_lane(
    mut launcher: Box<dyn Launch>,
    items: Vec<Waiting>,
    concurrency: usize,
    window: usize,
    shared: Arc<LaneShared>,
    budget: Arc<Budget>,
    tx: tokio::sync::mpsc::UnboundedSender<Answers>,
) {
    let mut waiting = items.into_iter().peekable();
    let mut running: FuturesUnordered<Indexed> = FuturesUnordered::new();
    let mut answers: Answers = Vec::new();
    // In the window, and not held back by the held answers' byte budget.
    let may_start = |i: usize| {
        let emitted = shared.emitted.load(Ordering::SeqCst);
        if i >= emitted.saturating_add(window) {
            return Admit::Wait;
        }
        budget.admit(i, emitted)
    };
    std::future::poll_fn(|cx| loop {
        let mut blocked = false;
        while running.len() < concurrency {
            let Some((i, ..)) = waiting.peek() else { break };
            let admit = may_start(*i);
            if admit == Admit::Wait {
                blocked = true;
                break;
            }
            let Some((i, req, span, id)) = waiting.next() else {
                break;
            };
            if admit == Admit::Refuse {
                let res = budget::no_room(budget.max_response());
                budget.hold(&res);
                answers.push((i, res));
                continue;
            }
            // As in the batch's own task: an item that answers on its first poll never joins
            // the running set.
            let mut fut = launcher.launch(i, req, span, id);
            match fut.as_mut().poll(cx) {
                Poll::Ready(answer) => {
                    budget.hold(&answer.1);
                    answers.push(answer);
                }
                Poll::Pending => running.push(fut),
            }
        }
        let progressed = match running.poll_next_unpin(cx) {
            Poll::Ready(Some(answer)) => {
                budget.hold(&answer.1);
                answers.push(answer);
                true
            }
            Poll::Ready(None) | Poll::Pending => false,
        };
        if progressed && answers.len() < FLUSH {
            continue;
        }
        // About to wait, or holding `FLUSH` answers: hand them over.
        if !answers.is_empty() && tx.send(std::mem::take(&mut answers)).is_err() {
            // The batch is gone.
            return Poll::Ready(());
        }
        if progressed {
            continue;
        }
        if running.is_empty() && waiting.peek().is_none() {
            return Poll::Ready(());
        }
        if blocked {
            shared.waker.register(cx.waker());
            shared.parked.store(true, Ordering::SeqCst);
            // The batch may have moved on between the check above and the registration.
            if waiting
                .peek()
                .is_some_and(|(i, ..)| may_start(*i) != Admit::Wait)
            {
                continue;
            }
        }
        return Poll::Pending;
    })
    .await;
}

/// How the items of an `Execution::Spawned` batch are shared out: in rounds, each a block of
/// `local` items that the batch's own task runs, then a block of `block` items for each lane.
/// The batch's task also decodes and encodes every item, so its block is the smaller one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shares {
    pub(super) lanes: usize,
    local: usize,
    block: usize,
}

/// The fewest items worth a share of their own: below that, a task's start and hand-over cost
/// more than the items.
const MIN_SHARE: usize = 4;

/// The most items in one lane block: large enough that a hand-over between threads is paid for,
/// small enough to bound the answers a lane holds.
const MAX_BLOCK: usize = 64;

impl Shares {
    /// `None` when the batch should not be shared out: one worker thread, a concurrency of one,
    /// or too few items. There are at most as many shares as workers, as the concurrency (each
    /// share runs at least one item at a time) and as `MIN_SHARE`-item shares the batch fills.
    pub(super) fn new(items: usize, workers: usize, concurrency: usize) -> Option<Shares> {
        let shares = workers.min(concurrency).min(items / MIN_SHARE);
        if shares < 2 {
            return None;
        }
        let lanes = shares - 1;
        // One round should hold a small batch: local + lanes * block >= items, local = block/2.
        let block = (2 * items).div_ceil(2 * lanes + 1).clamp(1, MAX_BLOCK);
        Some(Shares {
            lanes,
            local: block.div_ceil(2),
            block,
        })
    }

    /// Which lane runs item `i`: `None` for the batch's own task.
    pub(super) fn lane_of(&self, i: usize) -> Option<usize> {
        let round = self.local + self.lanes * self.block;
        let at = i % round;
        (at >= self.local).then(|| (at - self.local) / self.block)
    }

    /// How far past the next answer to emit any share may start items: one round, so the
    /// batch's own task can run its next block while a lane finishes the one before. It bounds
    /// the answers held (96 with two workers, against 32 for `Polled` at the default
    /// concurrency).
    pub(super) fn window(&self) -> usize {
        self.local + self.lanes * self.block
    }
}

/// The number of worker threads of the runtime the batch runs on (1 outside a runtime).
pub(super) fn workers() -> usize {
    tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_need_two_workers_two_slots_and_enough_items() {
        assert_eq!(Shares::new(100, 1, 16), None);
        assert_eq!(Shares::new(100, 2, 1), None);
        assert_eq!(Shares::new(7, 2, 16), None);
        assert!(Shares::new(8, 2, 16).is_some());
        // A big machine at the default concurrency still shares the batch out, 16 ways at most.
        assert_eq!(Shares::new(1000, 64, 16).map(|s| s.lanes), Some(15));
        // A small batch makes fewer shares than there are workers.
        assert_eq!(Shares::new(12, 64, 16).map(|s| s.lanes), Some(2));
    }

    #[test]
    fn every_item_has_one_share_and_the_batchs_task_starts() {
        for (items, workers) in [(8, 2), (100, 2), (1000, 2), (1000, 4), (37, 3)] {
            let shares = Shares::new(items, workers, 16).expect("shared out");
            assert_eq!(
                shares.lane_of(0),
                None,
                "the body's task runs the first block"
            );
            let mut per_lane = vec![0; shares.lanes];
            let mut own = 0;
            for i in 0..items {
                match shares.lane_of(i) {
                    Some(lane) => per_lane[lane] += 1,
                    None => own += 1,
                }
            }
            assert!(
                own > 0 && per_lane.iter().all(|&n| n > 0),
                "{items}/{workers}: {own} {per_lane:?}"
            );
            assert!(shares.block <= MAX_BLOCK && shares.local <= shares.block);
            assert!(shares.window() >= shares.local + shares.block);
        }
    }
}
