//! Running the items of one batch: bounded concurrency, a bounded reorder window, dependencies
//! and the whole-batch timeout. What happens to one item (its call, its answer's size limit, its
//! own timeout, panic isolation) is [`RunItem`]'s, in `run.rs`.
//!
//! The scheduler is polled by the batch response body. Items are futures it owns (or, with
//! `Execution::Spawned`, groups of them spawned as tasks whose handles it owns), so dropping the
//! body drops every item still running. A polled item gets its first poll as it starts; one that
//! answers at once never joins the running set.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
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
        let (request, request_id) = match prepare(request, &self.outer, &self.config, ctx) {
            Ok(prepared) => prepared,
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
}

/// Items run together as one task of their own (`Execution::Spawned`); its future gives their
/// answers once all are done.
type Group = Pin<Box<dyn Future<Output = Vec<(usize, Response<Bytes>)>> + Send>>;

/// Spawns a group of items as one task; the returned future waits for it, and aborts it if the
/// batch is dropped first.
///
/// Items are spawned in groups, not one task each: for handlers that answer quickly, a task and
/// its cross-thread wake-up per item cost more than the item, while a few groups still spread a
/// batch over every worker thread.
fn spawn_group(items: Vec<(usize, Indexed)>) -> Group {
    let indexes: Vec<usize> = items.iter().map(|(i, _)| *i).collect();
    let task = async move {
        let n = items.len();
        let mut running: FuturesUnordered<Indexed> = items.into_iter().map(|(_, f)| f).collect();
        let mut answers = Vec::with_capacity(n);
        while let Some(answer) = running.next().await {
            answers.push(answer);
        }
        answers
    };
    let mut handle = AbortOnDrop(tokio::spawn(task));
    Box::pin(async move {
        match (&mut handle.0).await {
            Ok(answers) => answers,
            // Items catch their own panics, so this is the runtime shutting down.
            Err(_) => indexes
                .into_iter()
                .map(|i| {
                    let res =
                        error_response(StatusCode::INTERNAL_SERVER_ERROR, "the item's task failed");
                    (i, res)
                })
                .collect(),
        }
    })
}

/// How many items one spawned group holds: enough groups to keep every core busy at the
/// batch's concurrency, and no more.
fn group_size(concurrency: usize) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    concurrency.div_ceil(cores).max(1)
}

struct AbortOnDrop(tokio::task::JoinHandle<Vec<(usize, Response<Bytes>)>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    /// `Execution::Spawned`: groups of items running as tasks, how many items they hold, and
    /// how many items make a group. `group_size` is 0 for `Execution::Polled`.
    groups: FuturesUnordered<Group>,
    grouped: usize,
    group_size: usize,
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
        let window = if graph.is_some() {
            n.max(1)
        } else {
            concurrency.saturating_mul(2)
        };
        let mut s = Scheduler {
            launcher,
            slots,
            ready: VecDeque::new(),
            graph,
            running: FuturesUnordered::new(),
            groups: FuturesUnordered::new(),
            grouped: 0,
            group_size: match execution {
                Execution::Polled => 0,
                Execution::Spawned => group_size(concurrency),
            },
            next_emit: 0,
            concurrency,
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
        s
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

    /// Starts ready items while there is room; says whether any of them answered at once.
    fn launch_ready(&mut self, cx: &mut Context<'_>) -> bool {
        let mut answered = false;
        let mut group = Vec::new();
        while self.running.len() + self.grouped + group.len() < self.concurrency {
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
            if self.group_size == 0 {
                // Many items answer on their first poll (a quick handler, a refused item): they
                // never need a place among the running futures. The others join them, where
                // they are polled again with a waker of their own.
                match fut.as_mut().poll(cx) {
                    Poll::Ready((j, res)) => {
                        self.slots[j] = Slot::Done(res);
                        self.propagate(j);
                        answered = true;
                        // The answer the body waits for: hand it over before starting more, so
                        // quick items do not fill the whole window with buffered answers.
                        if j == self.next_emit {
                            break;
                        }
                    }
                    Poll::Pending => self.running.push(fut),
                }
                continue;
            }
            group.push((i, fut));
            if group.len() == self.group_size {
                self.grouped += group.len();
                self.groups.push(spawn_group(std::mem::take(&mut group)));
            }
        }
        if !group.is_empty() {
            self.grouped += group.len();
            self.groups.push(spawn_group(group));
        }
        answered
    }

    /// Answers every unfinished item with `504` (the whole-batch deadline passed).
    fn expire(&mut self, d: Duration) {
        self.running = FuturesUnordered::new();
        self.groups = FuturesUnordered::new();
        self.grouped = 0;
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
                self.next_emit += 1;
                return Poll::Ready(Some((i, res)));
            }
            if let Some((sleep, d)) = &mut self.deadline {
                if sleep.as_mut().poll(cx).is_ready() {
                    let d = *d;
                    self.deadline = None;
                    self.expire(d);
                    continue;
                }
            }
            let mut answered = self.launch_ready(cx);
            if let Poll::Ready(Some((j, res))) = self.running.poll_next_unpin(cx) {
                self.slots[j] = Slot::Done(res);
                self.propagate(j);
                answered = true;
            }
            if !self.groups.is_empty() {
                if let Poll::Ready(Some(answers)) = self.groups.poll_next_unpin(cx) {
                    self.grouped -= answers.len();
                    for (j, res) in answers {
                        self.slots[j] = Slot::Done(res);
                        self.propagate(j);
                    }
                    answered = true;
                }
            }
            if answered {
                continue;
            }
            if !self.running.is_empty() || !self.groups.is_empty() {
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
