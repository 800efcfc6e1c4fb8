//! Running the items of one batch: bounded concurrency, a bounded reorder window, dependencies
//! and the whole-batch timeout. What happens to one item (its call, its answer's size limit, its
//! own timeout, panic isolation) is [`RunItem`]'s, in `run.rs`.
//!
//! The scheduler is polled by the batch response body. Items are futures it owns, so dropping the
//! body drops every item still running. A polled item gets its first poll as it starts; one that
//! answers at once never joins the running set.
//!
//! With `Execution::Spawned` (and no dependencies), the items are shared out in blocks: the body's
//! own task runs some, and one lane per other worker thread runs the rest as a task of its own
//! (see [`Shares`] and [`Lane`]). The scheduler owns the lanes' handles, so dropping the body
//! aborts them too. Each share gets an equal part of the batch's concurrency, and no share starts
//! an item beyond the window past what the body has emitted.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use http::{Request, Response, StatusCode};
use tower::Service;

use crate::context::BatchContext;
use crate::error::error_response;
use crate::inherit::{prepare, Outer};
use crate::layer::Execution;
use crate::run::RunItem;
use crate::BoxError;

/// An item's future that also says which item it is: the one box each item costs.
pub(crate) type Indexed = Pin<Box<dyn Future<Output = (usize, Response<Bytes>)> + Send>>;

/// Starts one item: sends it through a clone of the inner service.
pub(crate) trait Launch: Send {
    fn launch(
        &mut self,
        index: usize,
        request: Request<Bytes>,
        span: tracing::Span,
        id: Option<Arc<str>>,
    ) -> Indexed;

    /// Runs `items` as a task of its own (`Execution::Spawned`); `emitted` is the batch's count
    /// of answers handed to the body, shared by all its lanes.
    fn spawn_lane(
        &self,
        items: Vec<Waiting>,
        concurrency: usize,
        window: usize,
        emitted: Arc<AtomicUsize>,
    ) -> Lane;
}

/// The launcher over a concrete inner service.
pub(crate) struct Launcher<S, ReqBody> {
    pub(crate) service: S,
    /// What every item's `BatchContext` shares; `index` and `id` are set per item.
    pub(crate) context: BatchContext,
    /// What items inherit from the outer request.
    pub(crate) outer: std::sync::Arc<Outer>,
    pub(crate) config: std::sync::Arc<crate::layer::Config>,
    pub(crate) item_timeout: Option<Duration>,
    pub(crate) max_response_bytes: usize,
    /// The layer's configuration when nested batches are allowed: items that target a batch
    /// path then run through the batch layer again instead of straight to the inner service.
    pub(crate) nest: Option<std::sync::Arc<crate::layer::Config>>,
    pub(crate) _body: std::marker::PhantomData<fn(ReqBody)>,
}

impl<S, ReqBody, ResBody> Launch for Launcher<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    fn launch(
        &mut self,
        index: usize,
        request: Request<Bytes>,
        span: tracing::Span,
        id: Option<Arc<str>>,
    ) -> Indexed {
        let ctx = BatchContext {
            index,
            id,
            ..self.context.clone()
        };
        let id_header = self.config.request_id_header.as_ref();
        // The answer carries the item's request id: its own, or the one derived from the batch's.
        let mut request = request;
        let request_id = match prepare(&mut request, &self.outer, &self.config, ctx) {
            Ok(request_id) => request_id,
            Err((err, request_id)) => {
                tracing::debug!(parent: &span, index, error = %err, "batch item refused");
                span.record("status", err.status().as_u16());
                let mut res = err.to_response();
                if let (Some(name), Some(id)) = (id_header, request_id) {
                    res.headers_mut().insert(name.clone(), id);
                }
                return Box::pin(std::future::ready((index, res)));
            }
        };
        let request_id = id_header.cloned().zip(request_id);
        if let Some((_, id)) = &request_id {
            span.record("request_id", id.to_str().unwrap_or(""));
        }
        let service = self.service.clone();
        let limit = self.max_response_bytes;
        let timeout = self.item_timeout;
        let request = request.map(ReqBody::from);
        match &self.nest {
            Some(config) if config.is_batch_path(request.uri().path()) => {
                let nested = crate::service::Batch::from_parts(service, config.clone());
                Box::pin(RunItem::new(
                    index, span, request_id, limit, timeout, nested, request,
                ))
            }
            _ => Box::pin(RunItem::new(
                index, span, request_id, limit, timeout, service, request,
            )),
        }
    }

    fn spawn_lane(
        &self,
        items: Vec<Waiting>,
        concurrency: usize,
        window: usize,
        emitted: Arc<AtomicUsize>,
    ) -> Lane {
        let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(LaneShared {
            emitted,
            parked: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        let launcher: Box<dyn Launch> = Box::new(self.fork());
        let run = run_lane(launcher, items, concurrency, window, shared.clone(), tx);
        Lane {
            answers,
            shared,
            _task: AbortOnDrop(tokio::spawn(run)),
        }
    }
}

/// An item waiting to run, as handed to a lane: its index, request, span and id.
pub(crate) type Waiting = (usize, Request<Bytes>, tracing::Span, Option<Arc<str>>);

/// Answers a lane hands back together, in no particular order.
type Answers = Vec<(usize, Response<Bytes>)>;

/// A share of a batch's items running as a task of its own (`Execution::Spawned`).
///
/// The lane hands back what it has answered whenever it would otherwise wait (and every
/// `FLUSH` answers), so the batch's task wakes once per handful of items rather than once per
/// item, and an answer never waits in the lane for a slower sibling. The batch takes every
/// answer as it arrives; a lane starts an item only within the batch's window of what has been
/// emitted, so with a slow reader answers do not pile up.
pub(crate) struct Lane {
    answers: tokio::sync::mpsc::UnboundedReceiver<Answers>,
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
    /// The batch has moved its `emitted` counter on: a lane waiting for room may go on. The load
    /// comes first so that a lane that is not waiting costs no read-modify-write per answer.
    fn wake_if_parked(&self) {
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

impl<S, ReqBody> Launcher<S, ReqBody>
where
    S: Clone,
{
    fn fork(&self) -> Self {
        Launcher {
            service: self.service.clone(),
            context: self.context.clone(),
            outer: self.outer.clone(),
            config: self.config.clone(),
            item_timeout: self.item_timeout,
            max_response_bytes: self.max_response_bytes,
            nest: self.nest.clone(),
            _body: std::marker::PhantomData,
        }
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
    tx: tokio::sync::mpsc::UnboundedSender<Answers>,
) {
    let mut waiting = items.into_iter().peekable();
    let mut running: FuturesUnordered<Indexed> = FuturesUnordered::new();
    let mut answers: Answers = Vec::new();
    let in_window = |i: usize| i < shared.emitted.load(Ordering::SeqCst).saturating_add(window);
    std::future::poll_fn(|cx| loop {
        let mut blocked = false;
        while running.len() < concurrency {
            let Some((i, ..)) = waiting.peek() else { break };
            if !in_window(*i) {
                blocked = true;
                break;
            }
            let Some((i, req, span, id)) = waiting.next() else {
                break;
            };
            // As in the batch's own task: an item that answers on its first poll never joins
            // the running set.
            let mut fut = launcher.launch(i, req, span, id);
            match fut.as_mut().poll(cx) {
                Poll::Ready(answer) => answers.push(answer),
                Poll::Pending => running.push(fut),
            }
        }
        let progressed = match running.poll_next_unpin(cx) {
            Poll::Ready(Some(answer)) => {
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
            if waiting.peek().is_some_and(|(i, ..)| in_window(*i)) {
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
struct Shares {
    lanes: usize,
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
    fn new(items: usize, workers: usize, concurrency: usize) -> Option<Shares> {
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
    fn lane_of(&self, i: usize) -> Option<usize> {
        let round = self.local + self.lanes * self.block;
        let at = i % round;
        (at >= self.local).then(|| (at - self.local) / self.block)
    }

    /// How far past the next answer to emit any share may start items: one round, so the
    /// batch's own task can run its next block while a lane finishes the one before. It bounds
    /// the answers held (96 with two workers, against 32 for `Polled` at the default
    /// concurrency).
    fn window(&self) -> usize {
        self.local + self.lanes * self.block
    }
}

/// The number of worker threads of the runtime the batch runs on (1 outside a runtime).
fn workers() -> usize {
    tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers())
}

/// One item as the scheduler sees it. The batch hands items over as `Waiting` (a request to run)
/// or `Done` (an answer known up front, such as an item that could not be decoded).
// The slots live in one vector allocated once per batch; boxing the large variant would cost an
// allocation per item instead.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Slot {
    /// Waiting to run (for its turn, or for its dependencies).
    Waiting(Request<Bytes>, tracing::Span, Option<Arc<str>>),
    Running,
    /// Answered, not yet handed to the encoder.
    Done(Response<Bytes>),
    Emitted,
}

/// Dependencies between items: who waits for whom.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) dependents: Vec<Vec<usize>>,
    pub(crate) remaining: Vec<usize>,
}

pub(crate) struct Scheduler {
    launcher: Box<dyn Launch>,
    slots: Vec<Slot>,
    ready: VecDeque<usize>,
    graph: Option<Graph>,
    running: FuturesUnordered<Indexed>,
    /// `Execution::Spawned`: how the items are shared out, and the lanes running the shares
    /// that are not this task's. `None` and empty for `Execution::Polled`.
    shares: Option<Shares>,
    lanes: Vec<Lane>,
    /// `next_emit`, as the lanes read it.
    emitted: Arc<AtomicUsize>,
    next_emit: usize,
    concurrency: usize,
    /// Launched but not yet emitted items may not exceed this, bounding buffered answers.
    window: usize,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
}

impl Scheduler {
    pub(crate) fn new(
        launcher: Box<dyn Launch>,
        slots: Vec<Slot>,
        graph: Option<Graph>,
        concurrency: usize,
        execution: Execution,
        batch_timeout: Option<Duration>,
    ) -> Self {
        let n = slots.len();
        // Only the dependents of items answered up front need telling.
        let answered: Vec<usize> = match graph {
            Some(_) => (0..n)
                .filter(|i| matches!(slots[*i], Slot::Done(_)))
                .collect(),
            None => Vec::new(),
        };
        // Items with dependencies wait on each other's answers, so they are not shared out.
        let shares = match (execution, &graph) {
            (Execution::Spawned, None) => Shares::new(n, workers(), concurrency),
            _ => None,
        };
        let window = match (&graph, &shares) {
            (Some(_), _) => n.max(1),
            (None, Some(shares)) => shares.window().max(concurrency.saturating_mul(2)),
            (None, None) => concurrency.saturating_mul(2),
        };
        let mut s = Scheduler {
            launcher,
            slots,
            ready: VecDeque::new(),
            graph,
            running: FuturesUnordered::new(),
            shares,
            lanes: Vec::new(),
            emitted: Arc::new(AtomicUsize::new(0)),
            next_emit: 0,
            // Each share gets an equal part of the batch's concurrency.
            concurrency: match &shares {
                Some(shares) => concurrency / (shares.lanes + 1),
                None => concurrency,
            },
            window,
            deadline: batch_timeout.map(|d| (Box::pin(tokio::time::sleep(d)), d)),
        };
        match &s.graph {
            None => s
                .ready
                .extend((0..n).filter(|i| matches!(s.slots[*i], Slot::Waiting(..)))),
            Some(g) => {
                let roots: Vec<usize> = (0..n)
                    .filter(|i| g.remaining[*i] == 0 && matches!(s.slots[*i], Slot::Waiting(..)))
                    .collect();
                s.ready.extend(roots);
            }
        }
        for i in answered {
            s.propagate(i);
        }
        if let Some(shares) = s.shares {
            s.start_lanes(shares);
        }
        s
    }

    /// Hands the lanes' items to their tasks; the ready queue keeps this task's own.
    fn start_lanes(&mut self, shares: Shares) {
        let mut items: Vec<Vec<Waiting>> = (0..shares.lanes).map(|_| Vec::new()).collect();
        let mut own = VecDeque::with_capacity(self.ready.len());
        for i in std::mem::take(&mut self.ready) {
            let Some(lane) = shares.lane_of(i) else {
                own.push_back(i);
                continue;
            };
            let Slot::Waiting(req, span, id) = std::mem::replace(&mut self.slots[i], Slot::Running)
            else {
                continue;
            };
            items[lane].push((i, req, span, id));
        }
        self.ready = own;
        self.lanes = items
            .into_iter()
            .map(|items| {
                self.launcher
                    .spawn_lane(items, self.concurrency, self.window, self.emitted.clone())
            })
            .collect();
        if !self.lanes.is_empty() {
            // tokio runs a task spawned from a worker thread on that same thread once the
            // spawning task lets go of it, and no other worker may take it meanwhile: the lane
            // would wait for this task. The next spawn moves it to the queue other workers take
            // from (and wakes one); the empty task left in its place costs next to nothing.
            drop(tokio::spawn(async {}));
        }
    }

    /// After item `i` is answered: release or fail its dependents.
    fn propagate(&mut self, i: usize) {
        let Some(graph) = self.graph.as_mut() else {
            return;
        };
        let failed = match &self.slots[i] {
            Slot::Done(res) => !res.status().is_success(),
            _ => false,
        };
        let mut stack = vec![(i, failed)];
        while let Some((j, failed)) = stack.pop() {
            for d in std::mem::take(&mut graph.dependents[j]) {
                if !matches!(self.slots[d], Slot::Waiting(..)) {
                    continue;
                }
                if failed {
                    self.slots[d] = Slot::Done(error_response(
                        StatusCode::FAILED_DEPENDENCY,
                        "an item this one depends on did not succeed, so it was not run",
                    ));
                    stack.push((d, true));
                } else {
                    graph.remaining[d] -= 1;
                    if graph.remaining[d] == 0 {
                        self.ready.push_back(d);
                    }
                }
            }
        }
    }

    /// Starts ready items while there is room; says whether any of them answered at once, and
    /// gives back the answer the body waits for if it came at once (without dependencies to tell,
    /// it need not pass through its slot).
    fn launch_ready(&mut self, cx: &mut Context<'_>) -> (bool, Option<Response<Bytes>>) {
        let mut answered = false;
        while self.running.len() < self.concurrency {
            let Some(&i) = self.ready.front() else { break };
            if i >= self.next_emit + self.window {
                break;
            }
            self.ready.pop_front();
            let Slot::Waiting(req, span, id) = std::mem::replace(&mut self.slots[i], Slot::Running)
            else {
                continue;
            };
            let mut fut = self.launcher.launch(i, req, span, id);
            // Many items answer on their first poll (a quick handler, a refused item): they never
            // need a place among the running futures. The others join them, where they are
            // polled again with a waker of their own.
            match fut.as_mut().poll(cx) {
                Poll::Ready((j, res)) => {
                    // The answer the body waits for: hand it over before starting more, so quick
                    // items do not fill the whole window with buffered answers.
                    if j == self.next_emit && self.graph.is_none() {
                        return (true, Some(res));
                    }
                    self.slots[j] = Slot::Done(res);
                    self.propagate(j);
                    answered = true;
                    if j == self.next_emit {
                        break;
                    }
                }
                Poll::Pending => self.running.push(fut),
            }
        }
        (answered, None)
    }

    /// Takes in every answer the lane that runs item `i` has handed back, if `i` runs in a lane
    /// and is not answered yet. `Some(false)`: it is not answered yet.
    fn poll_lane(&mut self, i: usize, cx: &mut Context<'_>) -> Option<bool> {
        let lane = self.shares?.lane_of(i)?;
        if !matches!(self.slots[i], Slot::Running) {
            return None;
        }
        loop {
            match self.lanes[lane].answers.poll_recv(cx) {
                Poll::Ready(Some(answers)) => {
                    for (j, res) in answers {
                        self.slots[j] = Slot::Done(res);
                    }
                }
                Poll::Ready(None) => {
                    // The lane ended without this answer: its task was cancelled (the runtime is
                    // shutting down).
                    let shares = self.shares?;
                    for (j, slot) in self.slots.iter_mut().enumerate() {
                        if matches!(slot, Slot::Running) && shares.lane_of(j) == Some(lane) {
                            *slot = Slot::Done(error_response(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "the item's task failed",
                            ));
                        }
                    }
                    return Some(true);
                }
                Poll::Pending => return Some(matches!(self.slots[i], Slot::Done(_))),
            }
        }
    }

    /// Answers every unfinished item with `504` (the whole-batch deadline passed).
    fn expire(&mut self, d: Duration) {
        self.running = FuturesUnordered::new();
        // What the lanes answered in time still counts; dropping a lane then aborts its task.
        for lane in std::mem::take(&mut self.lanes) {
            let mut answers = lane.answers;
            while let Ok(answered) = answers.try_recv() {
                for (j, res) in answered {
                    self.slots[j] = Slot::Done(res);
                }
            }
        }
        self.ready.clear();
        for slot in &mut self.slots {
            if matches!(slot, Slot::Waiting(..) | Slot::Running) {
                *slot = Slot::Done(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the batch deadline of {} ms passed before this item finished",
                        d.as_millis()
                    ),
                ));
            }
        }
    }

    /// Item `i`, the next in order, is answered with `res`: the body may have it.
    fn emit(&mut self, i: usize, res: Response<Bytes>) -> (usize, Response<Bytes>) {
        self.next_emit = i + 1;
        if !self.lanes.is_empty() {
            self.emitted.store(self.next_emit, Ordering::SeqCst);
            for lane in &self.lanes {
                lane.wake_if_parked();
            }
        }
        (i, res)
    }

    /// The next answer in request order, when it and all before it are done.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(usize, Response<Bytes>)>> {
        loop {
            let i = self.next_emit;
            if i >= self.slots.len() {
                return Poll::Ready(None);
            }
            if matches!(self.slots[i], Slot::Done(_)) {
                let Slot::Done(res) = std::mem::replace(&mut self.slots[i], Slot::Emitted) else {
                    unreachable!("checked above")
                };
                return Poll::Ready(Some(self.emit(i, res)));
            }
            if let Some((sleep, d)) = &mut self.deadline {
                if sleep.as_mut().poll(cx).is_ready() {
                    let d = *d;
                    self.deadline = None;
                    self.expire(d);
                    continue;
                }
            }
            let (mut answered, next) = self.launch_ready(cx);
            if let Some(res) = next {
                self.slots[i] = Slot::Emitted;
                return Poll::Ready(Some(self.emit(i, res)));
            }
            if let Poll::Ready(Some((j, res))) = self.running.poll_next_unpin(cx) {
                self.slots[j] = Slot::Done(res);
                self.propagate(j);
                answered = true;
            }
            let lane = self.poll_lane(i, cx);
            if answered || lane == Some(true) {
                continue;
            }
            if !self.running.is_empty() || lane == Some(false) {
                return Poll::Pending;
            }
            // Nothing runs and the next item is not done: it waits on something that can never
            // happen. Dependency validation prevents this; answer rather than hang if it ever
            // does.
            if self.ready.is_empty() {
                self.slots[i] = Slot::Done(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the item could not be scheduled",
                ));
            }
        }
    }
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
