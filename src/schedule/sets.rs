//! Change sets and `$` references in the scheduler.
//!
//! A change set's members are items like any other: each waits for its dependencies, is
//! admitted under the byte budgets and the batch's concurrency, and runs as its own item (its
//! own index, id and request id). What a change set adds: its members run one after another
//! under its transaction, which begins before the first one starts; their answers are held
//! until the change set is decided; it commits only when every member answered `2xx` and its
//! answers fit the batch response; and only then are its members answered, all at once, so an
//! item that depends on any of them waits for the outcome. The body then receives the whole
//! change set as one [`Answer::ChangeSet`].

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Request, Response, StatusCode};

use super::{Scheduler, Slot, Work};
use crate::change_set::{self, Phase, SetRun, Step, StepFuture};
use crate::error::{error_response, not_run, ran};
use crate::transaction::TransactionProvider;

/// What the body receives, in request order.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    /// One item's answer.
    Item(usize, Response<Bytes>),
    /// A whole change set's.
    ChangeSet(SetOutcome, Vec<Response<Bytes>>),
}

/// How a change set ended, for its encoder.
#[derive(Debug)]
pub(crate) struct SetOutcome {
    pub(crate) members: Range<usize>,
    pub(crate) committed: bool,
    pub(crate) atomic: bool,
    /// The member whose answer says why it failed.
    pub(crate) failed: Option<usize>,
    pub(crate) boundary: String,
}

/// A batch's change sets as the scheduler runs them.
pub(crate) struct Sets {
    runs: Vec<SetRun>,
    provider: Option<Arc<dyn TransactionProvider>>,
    steps: FuturesUnordered<StepFuture>,
}

impl Sets {
    /// The change sets of `plan`, each with an answer boundary from `boundary`.
    pub(crate) fn new(plan: change_set::Plan, boundary: impl Fn() -> String) -> Self {
        Sets {
            runs: plan
                .sets
                .into_iter()
                .map(|members| SetRun::new(members, boundary()))
                .collect(),
            provider: plan.provider,
            steps: FuturesUnordered::new(),
        }
    }

    /// Change set `k` enters `phase`, whose transaction step `f` is bounded by `limit` (what is
    /// left of the batch deadline).
    fn enter<F>(
        &mut self,
        k: usize,
        phase: Phase,
        limit: Option<Duration>,
        f: F,
        wrap: fn(F::Output) -> Step,
    ) where
        F: std::future::Future + Send + 'static,
    {
        self.runs[k].phase = phase;
        self.steps.push(change_set::step(k, phase, limit, f, wrap));
    }

    fn of(&self, i: usize) -> Option<usize> {
        let k = self.runs.partition_point(|r| r.members.end <= i);
        self.runs
            .get(k)
            .filter(|r| r.members.contains(&i))
            .map(|_| k)
    }
}

/// The items whose path is a `$` reference to an earlier item, and what those earlier items
/// are found at.
pub(crate) struct References {
    /// The referring item: the item it names, and the rest of its path.
    refs: HashMap<usize, (usize, String)>,
    /// The named item: its `Location` once it answered with one, its own URL until then.
    targets: HashMap<usize, String>,
    root: Option<String>,
}

impl References {
    pub(crate) fn new(root: Option<String>) -> Self {
        References {
            refs: HashMap::new(),
            targets: HashMap::new(),
            root,
        }
    }

    /// Item `from`'s path names item `to`, then `tail`; `to` is found at `url` unless it
    /// answers with a `Location`.
    pub(crate) fn add(&mut self, from: usize, to: usize, tail: String, url: String) {
        self.refs.insert(from, (to, tail));
        self.targets.entry(to).or_insert(url);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }
}

impl Scheduler {
    pub(super) fn is_member(&self, i: usize) -> bool {
        self.sets.as_ref().is_some_and(|s| s.of(i).is_some())
    }

    /// What is left of the batch's deadline, which bounds every transaction step.
    fn time_left(&self) -> Option<Duration> {
        self.deadline.as_ref().map(|(sleep, _)| {
            sleep
                .deadline()
                .saturating_duration_since(tokio::time::Instant::now())
        })
    }

    /// Whether member `i` may start now. When its change set has yet to begin, this begins it
    /// (the member waits for that); a member whose turn has not come waits for it.
    pub(super) fn members_turn(&mut self, i: usize) -> bool {
        let limit = self.time_left();
        let Some(sets) = self.sets.as_deref_mut() else {
            return true;
        };
        let Some(k) = sets.of(i) else { return true };
        let run = &mut sets.runs[k];
        if i != run.next || run.failed.is_some() {
            return false;
        }
        match run.phase {
            Phase::Running => true,
            Phase::Idle => match &sets.provider {
                None => {
                    run.phase = Phase::Running;
                    true
                }
                Some(provider) => {
                    let begin = provider.begin();
                    sets.enter(k, Phase::Beginning, limit, begin, Step::Begun);
                    false
                }
            },
            _ => false,
        }
    }

    /// Gives a member its change set's transaction, and an item with a `$` reference the target
    /// it stands for. An answer returned is the item's own: it is not run.
    pub(super) fn prepare_start(
        &mut self,
        i: usize,
        req: &mut Request<Bytes>,
    ) -> Option<Response<Bytes>> {
        if let Some(sets) = &self.sets {
            if let Some(k) = sets.of(i) {
                change_set::lend(req, sets.runs[k].tx.get());
            }
        }
        let refs = self.refs.as_ref()?;
        let (to, tail) = refs.refs.get(&i)?;
        let base = refs.targets.get(to).map_or("", String::as_str);
        let resolved = change_set::resolve(base, tail, req.uri().query()).and_then(|uri| {
            match crate::path::resolve(&uri, None, refs.root.as_deref()) {
                Ok(Some(rooted)) => Some(rooted),
                Ok(None) => Some(uri),
                Err(_) => None,
            }
        });
        match resolved {
            Some(uri) => {
                *req.uri_mut() = uri;
                None
            }
            None => Some(not_run(error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the reference in this request's URL stands for `{base}{tail}`, which is not \
                     a URL this batch can run"
                ),
            ))),
        }
    }

    /// Keeps where item `j`'s resource is, when a later item refers to it.
    pub(super) fn note_location(&mut self, j: usize, res: &Response<Bytes>) {
        if let Some(refs) = &mut self.refs {
            if let Some(target) = refs.targets.get_mut(&j) {
                if let Some(location) = change_set::location(res) {
                    *target = location;
                }
            }
        }
    }

    /// Members answered before anything ran (they could not be decoded) fail their change set.
    pub(super) fn settle_members_answered_up_front(&mut self) {
        let Some(sets) = &self.sets else { return };
        let mut work = Vec::new();
        for run in &sets.runs {
            for m in run.members.clone() {
                if matches!(self.slots[m], Slot::Done(_)) {
                    let Slot::Done(res) = std::mem::replace(&mut self.slots[m], Slot::Running)
                    else {
                        unreachable!("checked above")
                    };
                    self.budget.release(&res);
                    work.push(Work::Answered(m, res));
                }
            }
        }
        self.work(work);
    }

    /// Member `j` answered: its answer is held; the next member gets its turn, or the change
    /// set commits or rolls back.
    pub(super) fn member_answered(&mut self, j: usize, res: Response<Bytes>, work: &mut Vec<Work>) {
        self.budget.hold(&res);
        self.note_location(j, &res);
        let ok = change_set::succeeded(&res);
        self.slots[j] = Slot::Held(res);
        let Some(k) = self.sets.as_ref().and_then(|s| s.of(j)) else {
            return;
        };
        let run = &mut self.sets.as_deref_mut().expect("a member").runs[k];
        if !ok {
            run.failed = Some(run.failed.map_or(j, |f| f.min(j)));
            self.fail_set(k, work);
            return;
        }
        if j != run.next {
            return;
        }
        run.next = j + 1;
        if run.failed.is_some() {
            self.fail_set(k, work);
        } else if run.next < run.members.end {
            self.wake_member(k);
        } else {
            self.all_answered(k, work);
        }
    }

    /// Puts the member whose turn it is among the ready items, if nothing else holds it back.
    fn wake_member(&mut self, k: usize) {
        let Some(sets) = &self.sets else { return };
        let i = sets.runs[k].next;
        let free = self.graph.as_ref().is_none_or(|g| g.remaining[i] == 0);
        if free && matches!(self.slots[i], Slot::Waiting(..)) {
            self.ready.push_front(i);
        }
    }

    /// Every member answered `2xx`: commit, when the answers fit the batch response.
    fn all_answered(&mut self, k: usize, work: &mut Vec<Work>) {
        let limit = self.time_left();
        let fits = self.budget.fits();
        let max = self.budget.max_response();
        let sets = self.sets.as_deref_mut().expect("a member");
        let run = &mut sets.runs[k];
        if !fits {
            let last = run.members.end - 1;
            run.failed = Some(last);
            let res = error_response(
                StatusCode::INSUFFICIENT_STORAGE,
                &format!(
                    "every request of the change set succeeded, but their answers would not fit \
                     in the batch response's limit of {max} bytes, so the change set was rolled \
                     back"
                ),
            );
            self.replace_held(last, res);
            self.fail_set(k, work);
            return;
        }
        match run.tx.take() {
            Some(tx) => sets.enter(k, Phase::Committing, limit, tx.commit(), Step::Committed),
            None => {
                run.committed = true;
                self.decide(k, work);
            }
        }
    }

    /// The change set failed: roll back what it began, then answer its members. Waits while a
    /// member or the begin is still under way; their end calls this again.
    fn fail_set(&mut self, k: usize, work: &mut Vec<Work>) {
        let limit = self.time_left();
        let sets = self.sets.as_deref_mut().expect("a member");
        let run = &mut sets.runs[k];
        let busy = run.phase == Phase::Beginning
            || run.phase == Phase::RollingBack
            || run.phase == Phase::Committing
            || run.phase == Phase::Decided
            || run
                .members
                .clone()
                .any(|m| matches!(self.slots[m], Slot::Running));
        if busy {
            return;
        }
        match run.tx.take() {
            Some(tx) => sets.enter(
                k,
                Phase::RollingBack,
                limit,
                tx.rollback(),
                Step::RolledBack,
            ),
            None => self.decide(k, work),
        }
    }

    /// A transaction step of change set `k` ended.
    fn on_step(&mut self, k: usize, step: Step, work: &mut Vec<Work>) {
        let sets = self.sets.as_deref_mut().expect("a step");
        let run = &mut sets.runs[k];
        match step {
            Step::Begun(Ok(tx)) => {
                run.tx = change_set::Open::new(tx);
                run.phase = Phase::Running;
                if run.failed.is_some() {
                    self.fail_set(k, work);
                } else {
                    self.wake_member(k);
                }
            }
            Step::Begun(Err(err)) => {
                tracing::warn!(error = %err, "change set transaction did not begin");
                run.phase = Phase::Idle;
                let first = run.members.start;
                run.failed = Some(first);
                let res = not_run(change_set::transaction_failed(
                    &err,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the change set's transaction could not begin, so none of it was run",
                ));
                self.replace_held(first, res);
                self.decide(k, work);
            }
            Step::Committed(Ok(())) => {
                run.committed = true;
                self.decide(k, work);
            }
            Step::Committed(Err(err)) => {
                tracing::warn!(error = %err, "change set commit failed");
                let last = run.members.end - 1;
                run.failed = Some(last);
                let res = change_set::transaction_failed(
                    &err,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the change set's transaction failed to commit, so nothing of it was kept",
                );
                self.replace_held(last, res);
                self.decide(k, work);
            }
            Step::RolledBack(result) => {
                if let Err(err) = result {
                    // Not committed is not kept, whatever the rollback said.
                    tracing::warn!(error = %err, "change set rollback failed");
                }
                self.decide(k, work);
            }
            Step::TimedOut(phase) => {
                let members = run.members.clone();
                let ms = self.deadline.as_ref().map_or(0, |(_, d)| d.as_millis());
                let words = match phase {
                    Phase::Committing => format!(
                        "the batch deadline of {ms} ms passed while the change set was \
                         committing; whether it was kept is not known"
                    ),
                    _ => format!(
                        "the batch deadline of {ms} ms passed before the change set's \
                         transaction answered, so nothing of it was kept"
                    ),
                };
                self.answer_all(k, members, &words);
                self.decide(k, work);
            }
        }
    }

    /// Replaces member `m`'s answer (held, or never given) with `res`.
    fn replace_held(&mut self, m: usize, res: Response<Bytes>) {
        if let Slot::Held(old) = &self.slots[m] {
            self.budget.release(old);
        }
        self.budget.hold(&res);
        self.slots[m] = Slot::Held(res);
    }

    /// Answers every member of change set `k` with `504` and `words`.
    fn answer_all(&mut self, k: usize, members: Range<usize>, words: &str) {
        for m in members {
            let res = error_response(StatusCode::GATEWAY_TIMEOUT, words);
            let res = if matches!(self.slots[m], Slot::Waiting(..)) {
                not_run(res)
            } else {
                res
            };
            self.replace_held(m, res);
        }
        if let Some(sets) = self.sets.as_deref_mut() {
            let run = &mut sets.runs[k];
            run.failed = Some(run.next.min(run.members.end - 1));
            run.answered_whole = true;
        }
    }

    /// Change set `k` committed or rolled back: its members' answers become final, and what
    /// depends on them is told.
    fn decide(&mut self, k: usize, work: &mut Vec<Work>) {
        let sets = self.sets.as_deref_mut().expect("a member");
        let run = &mut sets.runs[k];
        run.phase = Phase::Decided;
        let (committed, failed) = (run.committed, run.failed);
        // Without a transaction nothing is undone: what ran keeps its own answer.
        let keep = committed || run.answered_whole || sets.provider.is_none();
        let why = failed
            .and_then(|f| match &self.slots[f] {
                Slot::Held(res) => Some(format!("request {f} answered {}", res.status().as_u16())),
                _ => None,
            })
            .unwrap_or_else(|| "it did not finish".to_owned());
        for m in run.members.clone() {
            let slot = std::mem::replace(&mut self.slots[m], Slot::Running);
            let res = match slot {
                // A member that was never run (its dependency failed, the batch was
                // cancelled) keeps the answer that says why.
                Slot::Held(res) if keep || Some(m) == failed || !ran(&res) => res,
                Slot::Held(res) => {
                    self.budget.release(&res);
                    let res = change_set::rolled_back(failed, &why);
                    self.budget.hold(&res);
                    res
                }
                _ => {
                    let res = change_set::not_run_member(failed, &why);
                    self.budget.hold(&res);
                    res
                }
            };
            self.slots[m] = Slot::Done(res);
            work.push(Work::Propagate(m));
        }
    }

    /// Takes in the transaction steps that ended; says whether any did.
    pub(super) fn poll_steps(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = false;
        loop {
            let Some(sets) = self.sets.as_deref_mut() else {
                return any;
            };
            let std::task::Poll::Ready(Some((k, step))) = sets.steps.poll_next_unpin(cx) else {
                return any;
            };
            any = true;
            let mut work = Vec::new();
            self.on_step(k, step, &mut work);
            self.work(work);
        }
    }

    pub(super) fn steps_pending(&self) -> bool {
        self.sets.as_ref().is_some_and(|s| !s.steps.is_empty())
    }

    /// The batch's deadline passed: every change set not yet decided is, now. One that was
    /// committing cannot say whether it was kept; the others are rolled back (their open
    /// transactions are dropped, which rolls them back).
    pub(super) fn expire_sets(&mut self, d: Duration) {
        let Some(sets) = self.sets.as_deref_mut() else {
            return;
        };
        sets.steps = FuturesUnordered::new();
        let ms = d.as_millis();
        let open: Vec<(usize, Phase, Range<usize>)> = sets
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.phase != Phase::Decided)
            .map(|(k, r)| (k, r.phase, r.members.clone()))
            .collect();
        for (k, phase, members) in open {
            let words = if phase == Phase::Committing {
                format!(
                    "the batch deadline of {ms} ms passed while the change set was committing; \
                     whether it was kept is not known"
                )
            } else {
                format!(
                    "the batch deadline of {ms} ms passed before the change set finished, so it \
                     was rolled back and nothing of it was kept"
                )
            };
            if let Some(sets) = self.sets.as_deref_mut() {
                sets.runs[k].tx.close();
            }
            self.answer_all(k, members, &words);
            let mut work = Vec::new();
            self.decide(k, &mut work);
            // The dependents are answered by the expiry too; nothing else is to be told.
            drop(work);
        }
    }

    /// The change set starting at item `i` is decided: hand it to the body whole.
    pub(super) fn emit_set(&mut self, i: usize) -> Answer {
        let sets = self.sets.as_deref().expect("a member");
        let k = sets.of(i).expect("a member");
        let run = &sets.runs[k];
        let outcome = SetOutcome {
            members: run.members.clone(),
            committed: run.committed,
            atomic: sets.provider.is_some(),
            failed: run.failed,
            boundary: run.boundary.clone(),
        };
        let mut answers = Vec::with_capacity(outcome.members.len());
        for m in outcome.members.clone() {
            if let Slot::Done(res) = std::mem::replace(&mut self.slots[m], Slot::Emitted) {
                self.budget.release(&res);
                answers.push(res);
            }
        }
        self.emitted_to(outcome.members.end);
        Answer::ChangeSet(outcome, answers)
    }
}
