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

pub(crate) mod budget;
mod lanes;
pub(crate) mod launch;
pub(crate) mod launcher;
mod sets;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Request, Response, StatusCode};

use crate::cancel::Cancel;
use crate::config::Execution;
use crate::error::{error_response, not_run};
use crate::graph::Graph;
use budget::{Admit, Budget};
use lanes::{workers, Lane, Shares};
use launch::{Indexed, Launch, Waiting};
pub(crate) use sets::{Answer, References, Sets};

/// One item as the scheduler sees it. The batch hands items over as `Waiting` (a request to run)
/// or `Done` (an answer known up front, such as an item that could not be decoded).
// The slots live in one vector allocated once per batch; boxing the large variant would cost an
// allocation per item instead.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Slot {
    /// Waiting to run (for its turn, or for its dependencies).
    Waiting(Request<Bytes>, tracing::Span, Option<Arc<str>>),
    Running,
    /// A change-set member's answer, kept until its change set has committed or rolled back.
    Held(Response<Bytes>),
    /// Answered, not yet handed to the encoder.
    Done(Response<Bytes>),
    Emitted,
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
    /// Bytes held and written, shared with the lanes and the body.
    budget: Arc<Budget>,
    /// The batch's change sets, if it has any.
    sets: Option<Box<Sets>>,
    /// Items whose path starts with a `$` reference to an earlier item, if any.
    refs: Option<Box<References>>,
    /// Set when the batch may be cancelled (an asynchronous batch's monitor).
    cancel: Option<Cancel>,
}

/// A `status` answer in words, marked as the answer of an item that was not run.
fn not_run_response(status: StatusCode, words: &str) -> Response<Bytes> {
    not_run(error_response(status, words))
}

/// What makes items wait for each other: dependencies, change sets and `$` references.
pub(crate) struct Order {
    pub(crate) graph: Option<Graph>,
    pub(crate) sets: Option<Box<Sets>>,
    pub(crate) refs: Option<Box<References>>,
}

/// Work left over after an answer: an answer to settle, or an answered item whose dependents
/// are to be told. Kept on a list rather than done by recursion, so that long chains of
/// dependencies and change sets cannot overflow the stack.
pub(crate) enum Work {
    Answered(usize, Response<Bytes>),
    Propagate(usize),
}

impl Scheduler {
    pub(crate) fn new(
        launcher: Box<dyn Launch>,
        slots: Vec<Slot>,
        order: Order,
        concurrency: usize,
        execution: Execution,
        batch_timeout: Option<Duration>,
        budget: Arc<Budget>,
    ) -> Self {
        let Order { graph, sets, refs } = order;
        let n = slots.len();
        // Answers known up front wait in their slots like any other.
        for slot in &slots {
            if let Slot::Done(res) = slot {
                budget.hold(res);
            }
        }
        // Only the dependents of items answered up front need telling.
        let answered: Vec<usize> = match graph {
            Some(_) => (0..n)
                .filter(|i| matches!(slots[*i], Slot::Done(_)))
                .collect(),
            None => Vec::new(),
        };
        // Items with dependencies, and change sets, wait on each other's answers, so they are
        // not shared out.
        let shares = match (execution, &graph, &sets) {
            (Execution::Spawned, None, None) => Shares::new(n, workers(), concurrency),
            _ => None,
        };
        let window = match (&graph, &shares) {
            (Some(_), _) => n.max(1),
            (None, _) if sets.is_some() => n.max(1),
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
            budget,
            sets,
            refs,
            cancel: None,
        };
        match &s.graph {
            None => s
                .ready
                .extend((0..n).filter(|i| matches!(s.slots[*i], Slot::Waiting(..)))),
            Some(g) => {
                let roots: Vec<usize> = (0..n)
                    .filter(|i| g.remaining[*i] == 0 && matches!(s.slots[*i], Slot::Waiting(..)))
                    .collect();
                // A condition that names no item (`false`) is decided before anything runs.
                let mut decided = Vec::new();
                for i in roots {
                    match g.conditions.get(&i).map(|c| c.verdict()) {
                        Some(Err(words)) => decided.push(Work::Answered(
                            i,
                            not_run_response(StatusCode::FAILED_DEPENDENCY, &words),
                        )),
                        _ => s.ready.push_back(i),
                    }
                }
                decided.reverse();
                s.work(decided);
            }
        }
        for i in answered {
            s.propagate(i);
        }
        s.settle_members_answered_up_front();
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
                Lane::spawn(
                    &*self.launcher,
                    items,
                    self.concurrency,
                    self.window,
                    self.emitted.clone(),
                    self.budget.clone(),
                )
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
        self.work(vec![Work::Propagate(i)]);
    }

    /// Item `j` answered `res`: it waits in its slot (a change set's member, until the change
    /// set is decided), and its dependents are told.
    fn settle(&mut self, j: usize, res: Response<Bytes>) {
        self.work(vec![Work::Answered(j, res)]);
    }

    /// Does `work` and all the work it leads to.
    fn work(&mut self, mut work: Vec<Work>) {
        while let Some(next) = work.pop() {
            match next {
                Work::Answered(j, res) => {
                    // An item answered meanwhile keeps that answer: a change set decided
                    // while this answer waited on the list (a dependency failed for two of its
                    // members at once) has answered every member already.
                    if !matches!(self.slots[j], Slot::Waiting(..) | Slot::Running) {
                        continue;
                    }
                    if self.is_member(j) {
                        self.member_answered(j, res, &mut work);
                    } else {
                        self.budget.hold(&res);
                        self.note_location(j, &res);
                        self.slots[j] = Slot::Done(res);
                        work.push(Work::Propagate(j));
                    }
                }
                Work::Propagate(i) => self.release_dependents(i, &mut work),
            }
        }
    }

    /// Releases the dependents of item `i`, or, when it did not succeed, fails them. A dependent
    /// with a condition (OData's `if`) is not failed by a dependency its condition governs: it
    /// notes the outcome, and once everything it waits for is answered, runs if the condition
    /// holds.
    fn release_dependents(&mut self, i: usize, work: &mut Vec<Work>) {
        let Some(graph) = self.graph.as_mut() else {
            return;
        };
        let failed = match &self.slots[i] {
            Slot::Done(res) => !res.status().is_success(),
            _ => false,
        };
        let mut not_run = Vec::new();
        for d in std::mem::take(&mut graph.dependents[i]) {
            if !matches!(self.slots[d], Slot::Waiting(..)) {
                continue;
            }
            let governed = match graph.conditions.get_mut(&d) {
                Some(c) if c.governs.contains(&i) => {
                    c.outcomes.push((i, !failed));
                    true
                }
                _ => false,
            };
            if failed && !governed {
                not_run.push((d, graph.not_run.to_owned()));
                continue;
            }
            graph.remaining[d] -= 1;
            if graph.remaining[d] == 0 {
                match graph.conditions.get(&d).map(|c| c.verdict()) {
                    Some(Err(words)) => not_run.push((d, words)),
                    _ => self.ready.push_back(d),
                }
            }
        }
        // The work list is a stack: the dependents go on it last first, so that they are
        // answered in request order (the first member of a change set fails it first).
        for (d, words) in not_run.into_iter().rev() {
            let res = not_run_response(StatusCode::FAILED_DEPENDENCY, &words);
            work.push(Work::Answered(d, res));
        }
    }

    /// Starts ready items while there is room; says whether any of them answered at once, and
    /// gives back the answer the body waits for if it came at once (without dependencies to tell,
    /// it need not pass through its slot).
    fn launch_ready(&mut self, cx: &mut Context<'_>) -> (bool, Option<Response<Bytes>>) {
        let mut answered = false;
        while self.running.len() < self.concurrency {
            let Some(&i) = self.ready.front() else { break };
            if !matches!(self.slots[i], Slot::Waiting(..)) {
                // Settled while it waited (a change set that failed first).
                self.ready.pop_front();
                continue;
            }
            if i >= self.next_emit + self.window {
                break;
            }
            match self.budget.admit(i, self.next_emit) {
                Admit::Start => {}
                Admit::Wait => {
                    // The item the body waits for may start whatever is held: move it up.
                    match self.ready.iter().position(|&j| j == self.next_emit) {
                        Some(at) => {
                            self.ready.swap(0, at);
                            continue;
                        }
                        None => break,
                    }
                }
                Admit::Refuse => {
                    self.ready.pop_front();
                    let res = budget::no_room(self.budget.max_response());
                    self.settle(i, res);
                    answered = true;
                    continue;
                }
            }
            self.ready.pop_front();
            if self.is_member(i) && !self.members_turn(i) {
                continue;
            }
            let Slot::Waiting(mut req, span, id) =
                std::mem::replace(&mut self.slots[i], Slot::Running)
            else {
                continue;
            };
            if let Some(res) = self.prepare_start(i, &mut req) {
                self.settle(i, res);
                answered = true;
                continue;
            }
            let mut fut = self.launcher.launch(i, req, span, id);
            // Many items answer on their first poll (a quick handler, a refused item): they never
            // need a place among the running futures. The others join them, where they are
            // polled again with a waker of their own.
            match fut.as_mut().poll(cx) {
                Poll::Ready((j, res)) => {
                    // The answer the body waits for: hand it over before starting more, so quick
                    // items do not fill the whole window with buffered answers.
                    if j == self.next_emit && self.graph.is_none() && self.sets.is_none() {
                        self.budget.hold(&res);
                        return (true, Some(res));
                    }
                    self.settle(j, res);
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
                            let res = error_response(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "the item's task failed",
                            );
                            self.budget.hold(&res);
                            *slot = Slot::Done(res);
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
        self.expire_sets(d);
        for slot in &mut self.slots {
            let waiting = matches!(slot, Slot::Waiting(..));
            if waiting || matches!(slot, Slot::Running) {
                // Whether the item started decides whether a client may simply send it again.
                let ms = d.as_millis();
                let res = if waiting {
                    not_run(error_response(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "the batch deadline of {ms} ms passed before this item started, so it was not run"
                        ),
                    ))
                } else {
                    error_response(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "the batch deadline of {ms} ms passed while this item was running; it was stopped, and may have taken effect in part"
                        ),
                    )
                };
                self.budget.hold(&res);
                *slot = Slot::Done(res);
            }
        }
    }

    /// Starts no more items once `cancel` says so.
    pub(crate) fn cancel_on(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Answers every item that has not started as not run (the batch was cancelled); running
    /// items finish. The answers go the way of any other, so a change set with a member not yet
    /// run fails and rolls back once its running member is done, and dependents are told. Items
    /// already handed to a lane (`Execution::Spawned`) are the lane's.
    fn cancel_waiting(&mut self) {
        self.ready.clear();
        for i in 0..self.slots.len() {
            if matches!(self.slots[i], Slot::Waiting(..)) {
                let res = not_run(error_response(
                    StatusCode::CONFLICT,
                    "the batch was cancelled before this item started, so it was not run",
                ));
                self.settle(i, res);
            }
        }
    }

    /// Item `i`, the next in order, is answered with `res`: the body may have it.
    fn emit(&mut self, i: usize, res: Response<Bytes>) -> Answer {
        self.budget.release(&res);
        self.emitted_to(i + 1);
        Answer::Item(i, res)
    }

    /// Every item before `next` has been handed to the body.
    fn emitted_to(&mut self, next: usize) {
        self.next_emit = next;
        if !self.lanes.is_empty() {
            self.emitted.store(self.next_emit, Ordering::SeqCst);
            for lane in &self.lanes {
                lane.wake_if_parked();
            }
        }
    }

    /// The byte budgets this batch's items start under.
    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The next answer in request order, when it and all before it are done.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Answer>> {
        loop {
            let i = self.next_emit;
            if i >= self.slots.len() {
                return Poll::Ready(None);
            }
            if matches!(self.slots[i], Slot::Done(_)) && self.is_member(i) {
                return Poll::Ready(Some(self.emit_set(i)));
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
            if self.cancel.as_ref().is_some_and(|c| c.poll_cancelled(cx)) {
                self.cancel = None;
                self.cancel_waiting();
                continue;
            }
            let (mut answered, next) = self.launch_ready(cx);
            if let Some(res) = next {
                self.slots[i] = Slot::Emitted;
                return Poll::Ready(Some(self.emit(i, res)));
            }
            if let Poll::Ready(Some((j, res))) = self.running.poll_next_unpin(cx) {
                self.settle(j, res);
                answered = true;
            }
            if self.poll_steps(cx) {
                answered = true;
            }
            let lane = self.poll_lane(i, cx);
            if answered || lane == Some(true) {
                continue;
            }
            if !self.running.is_empty() || lane == Some(false) || self.steps_pending() {
                return Poll::Pending;
            }
            // Nothing runs and the next item is not done. If items are ready, the held answers
            // fill their budget and none of them may start: the next item waits on one of them
            // (a dependency), and nothing held can be sent first. The first is answered, not
            // run, which frees its dependents to fail or go on; the batch never hangs.
            if let Some(j) = self.ready.pop_front() {
                if matches!(self.slots[j], Slot::Waiting(..)) {
                    let res = budget::never_held(self.budget.max_held());
                    self.settle(j, res);
                }
                continue;
            }
            // Otherwise it waits on something that can never happen. Dependency validation
            // prevents this; answer rather than hang if it ever does.
            let res = error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the item could not be scheduled",
            );
            self.budget.hold(&res);
            self.slots[i] = Slot::Done(res);
        }
    }
}
