//! The batching task: gathers calls for one window, sends them as one batch, and hands each
//! caller its answer.
//!
//! Each call is answered with what it would have got alone. So a batch the server refuses as a
//! whole for its size or item count (`413`) is split in two and each half sent again, down to a
//! single call, which is then sent alone, directly; and what the refusal says of the server's
//! limits (and what its `OPTIONS` answer says) shapes the batches that follow. Every exchange
//! has a deadline, and an exchange whose callers have all given up is dropped at once, so a
//! server that leaves answers open cannot hold the batch slots for long.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{self, Either};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_service::Service;

use super::Config;
use crate::client::batch::read_body;
use crate::client::{BatchRequest, ClientError, DEFAULT_MAX_RESPONSE_BYTES};
use crate::error::BoxError;

/// One call waiting for its batch.
pub(crate) struct Call {
    request: Request<Bytes>,
    reply: oneshot::Sender<Result<Response<Bytes>, BoxError>>,
    /// About how many bytes this call adds to a multipart batch.
    size: u64,
}

impl Call {
    pub(crate) fn new(
        request: Request<Bytes>,
        reply: oneshot::Sender<Result<Response<Bytes>, BoxError>>,
    ) -> Self {
        // Its head, its body, and the part's own lines.
        let head: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        let uri = request.uri();
        let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path_and_query().map_or(1, |p| p.as_str().len());
        let line = request.method().as_str().len() + target;
        let size = (head + line + request.body().len() + PART_OVERHEAD) as u64;
        Call {
            request,
            reply,
            size,
        }
    }

    fn size(&self) -> u64 {
        self.size
    }
}

/// A part's boundary line, part headers and nested request line, roughly.
const PART_OVERHEAD: usize = 160;

/// What the task has learned of the server's limits; `MAX` where it knows nothing.
#[derive(Debug)]
pub(crate) struct Learned {
    items: AtomicUsize,
    body_bytes: AtomicU64,
    part_bytes: AtomicU64,
}

impl Learned {
    pub(crate) fn new() -> Self {
        Learned {
            items: AtomicUsize::new(usize::MAX),
            body_bytes: AtomicU64::new(u64::MAX),
            part_bytes: AtomicU64::new(u64::MAX),
        }
    }

    /// The most calls in one batch: the setting, or less if the server said so.
    pub(crate) fn items(&self, config: &Config) -> usize {
        config
            .max_batch
            .min(self.items.load(Ordering::Relaxed))
            .max(1)
    }

    /// The largest batch body: the setting, or less if the server said so.
    pub(crate) fn body_bytes(&self, config: &Config) -> u64 {
        config
            .max_batch_bytes
            .min(self.body_bytes.load(Ordering::Relaxed))
    }

    /// Whether a call is too large to share a batch with the server's limits as known.
    fn too_large(&self, config: &Config, call: &Call) -> bool {
        let size = call.size();
        size > self.body_bytes(config) || size > self.part_bytes.load(Ordering::Relaxed)
    }

    fn lower_items(&self, n: usize) {
        self.items.fetch_min(n.max(1), Ordering::Relaxed);
    }

    fn lower_body_bytes(&self, n: u64) {
        self.body_bytes.fetch_min(n, Ordering::Relaxed);
    }

    fn lower_part_bytes(&self, n: u64) {
        self.part_bytes.fetch_min(n, Ordering::Relaxed);
    }

    /// Reads the limits a batch endpoint of this crate advertises in its `OPTIONS` answer.
    fn learn_from_options(&self, headers: &http::HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(n) = number("batch-max-items") {
            self.lower_items(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(n) = number("batch-max-body-bytes") {
            self.lower_body_bytes(n);
        }
        if let Some(n) = number("batch-max-part-bytes") {
            self.lower_part_bytes(n);
        }
    }

    /// Learns from a `413` refusing a batch of `calls` calls and about `sent` bytes: the limit
    /// its JSON body names, or, from a body without numbers (a body limit outside the batch
    /// layer), that a batch this large does not pass.
    fn learn_from_refusal(&self, body: &[u8], calls: usize, sent: u64) {
        let error = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").cloned());
        let reason = error
            .as_ref()
            .and_then(|e| e.get("reason"))
            .and_then(|r| r.as_str());
        let limit = error
            .as_ref()
            .and_then(|e| e.get("limit"))
            .and_then(serde_json::Value::as_u64);
        match (reason, limit) {
            (Some("TOO_MANY_ITEMS"), Some(n)) => {
                self.lower_items(usize::try_from(n).unwrap_or(usize::MAX))
            }
            (Some("BODY_TOO_LARGE"), Some(n)) => self.lower_body_bytes(n),
            (Some("PART_TOO_LARGE"), Some(n)) => self.lower_part_bytes(n),
            // A cost budget counts what the items do, not their bytes: fewer items per batch.
            (Some("COST_EXCEEDED"), _) => self.lower_items(calls.div_ceil(2)),
            _ => self.lower_body_bytes(sent.saturating_sub(1)),
        }
    }
}

/// Runs until every sender is gone: then the calls already received are still sent and
/// answered, and the task ends.
pub(crate) async fn run<S, ReqB, ResB>(
    client: S,
    config: Arc<Config>,
    mut queue: mpsc::Receiver<Call>,
) where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqB: From<Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Into<BoxError>,
{
    let learned = Arc::new(Learned::new());
    if config.learn_limits {
        tokio::spawn(probe(client.clone(), config.clone(), learned.clone()));
    }
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
    // A call that did not fit the batch before it starts the next one.
    let mut carried: Option<Call> = None;
    loop {
        let first = match carried.take() {
            Some(call) => call,
            None => match queue.recv().await {
                Some(call) => call,
                None => return,
            },
        };
        let max_items = learned.items(&config);
        let max_bytes = learned.body_bytes(&config);
        let deadline = Instant::now() + config.window;
        let mut bytes = first.size();
        let mut calls = vec![first];
        // Calls already queued join without touching the timer, whose resolution is a whole
        // millisecond: a zero window costs nothing.
        while calls.len() < max_items && carried.is_none() {
            let Ok(call) = queue.try_recv() else { break };
            join(&mut calls, &mut bytes, &mut carried, call, max_bytes);
        }
        while calls.len() < max_items && carried.is_none() && !config.window.is_zero() {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(call)) => join(&mut calls, &mut bytes, &mut carried, call, max_bytes),
                Ok(None) | Err(_) => break,
            }
        }
        // A caller that gave up while waiting needs no answer, and its call need not run.
        calls.retain(|c| !c.reply.is_closed());
        if calls.is_empty() {
            continue;
        }
        // Wait for a free slot; the permit travels with the batch and frees the slot when its
        // answers are handed out, its deadline passes, or all its callers give up.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        calls.retain(|c| !c.reply.is_closed());
        let (client, config, learned) = (client.clone(), config.clone(), learned.clone());
        tokio::spawn(async move {
            dispatch(client, config, learned, calls).await;
            drop(permit);
        });
    }
}

/// Adds `call` to the batch, or carries it to the next batch if it would make this one larger
/// than `max_bytes`.
fn join(
    calls: &mut Vec<Call>,
    bytes: &mut u64,
    carried: &mut Option<Call>,
    call: Call,
    max_bytes: u64,
) {
    let size = call.size();
    if *bytes + size > max_bytes {
        *carried = Some(call);
    } else {
        *bytes += size;
        calls.push(call);
    }
}

/// Asks the batch endpoint for its limits (`OPTIONS`), once, within the exchange deadline.
async fn probe<S, ReqB, ResB>(client: S, config: Arc<Config>, learned: Arc<Learned>)
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ReqB: From<Bytes>,
{
    let mut request = Request::new(ReqB::from(Bytes::new()));
    *request.method_mut() = Method::OPTIONS;
    *request.uri_mut() = config.batch_uri.clone();
    *request.headers_mut() = config.headers.clone();
    match tokio::time::timeout(config.timeout, client.oneshot(request)).await {
        Ok(Ok(response)) if response.status().is_success() => {
            learned.learn_from_options(response.headers());
            tracing::debug!(?learned, "learned the batch endpoint's limits");
        }
        _ => tracing::debug!("the batch endpoint told no limits; they are learned from refusals"),
    }
}

type Dispatch = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Sends `calls`: those too large to share a batch alone and directly, the others as batches
/// that fit what is known of the server's limits; a batch refused for its size is split and
/// sent again.
fn dispatch<S, ReqB, ResB>(
    client: S,
    config: Arc<Config>,
    learned: Arc<Learned>,
    calls: Vec<Call>,
) -> Dispatch
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqB: From<Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Into<BoxError>,
{
    Box::pin(async move {
        let (alone, mut shared): (Vec<Call>, Vec<Call>) = calls
            .into_iter()
            .partition(|call| learned.too_large(&config, call));
        let mut jobs: Vec<Dispatch> = Vec::new();
        for call in alone {
            jobs.push(Box::pin(direct(client.clone(), config.clone(), call)));
        }
        // What was learned since the batch was gathered may call for smaller batches.
        let max_items = learned.items(&config);
        let max_bytes = learned.body_bytes(&config);
        while !shared.is_empty() {
            let mut bytes = 0;
            let mut take = 0;
            for call in &shared {
                let size = call.size();
                if take == max_items || (take > 0 && bytes + size > max_bytes) {
                    break;
                }
                bytes += size;
                take += 1;
            }
            let rest = shared.split_off(take);
            let batch = std::mem::replace(&mut shared, rest);
            let (client, config, learned) = (client.clone(), config.clone(), learned.clone());
            jobs.push(Box::pin(exchange(client, config, learned, batch, bytes)));
        }
        future::join_all(jobs).await;
    })
}

/// How one exchange ended.
enum Ended<T> {
    Answered(T),
    TimedOut,
    Abandoned,
}

/// Runs `exchange` until it ends, its deadline passes, or every caller has given up.
async fn bounded<F: Future>(
    exchange: F,
    timeout: Duration,
    replies: &mut [oneshot::Sender<Result<Response<Bytes>, BoxError>>],
) -> Ended<F::Output> {
    let all_gone = future::join_all(replies.iter_mut().map(|reply| reply.closed()));
    let exchange = std::pin::pin!(tokio::time::timeout(timeout, exchange));
    match future::select(exchange, std::pin::pin!(all_gone)).await {
        Either::Left((Ok(answer), _)) => Ended::Answered(answer),
        Either::Left((Err(_), _)) => Ended::TimedOut,
        Either::Right(_) => Ended::Abandoned,
    }
}

/// Sends `calls` as one batch request of about `sent` bytes and hands out the answers.
async fn exchange<S, ReqB, ResB>(
    client: S,
    config: Arc<Config>,
    learned: Arc<Learned>,
    calls: Vec<Call>,
    sent: u64,
) where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqB: From<Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Into<BoxError>,
{
    let mut batch = BatchRequest::new(config.batch_uri.clone()).max_per_batch(calls.len());
    *batch.headers_mut() = config.headers.clone();
    let mut replies = Vec::with_capacity(calls.len());
    // Kept to be sent again if the batch is refused for its size.
    let mut requests = Vec::with_capacity(calls.len());
    for Call { request, reply, .. } in calls {
        // The answers come back in request order through the batch response; the handle is
        // not needed.
        batch.add(copy_request(&request));
        requests.push(request);
        replies.push(reply);
    }
    let answer = match bounded(batch.send(client.clone()), config.timeout, &mut replies).await {
        Ended::Answered(answer) => answer,
        Ended::TimedOut => {
            let error = no_answer(config.timeout);
            for reply in replies {
                let _ = reply.send(Err(Box::new(error.clone())));
            }
            return;
        }
        Ended::Abandoned => {
            tracing::debug!("every caller of a batch gave up; the exchange is dropped");
            return;
        }
    };
    match answer {
        Ok(answers) => {
            for (reply, (_, outcome)) in replies.into_iter().zip(answers) {
                let _ = reply.send(outcome.map_err(|f| Box::new(f) as BoxError));
            }
        }
        Err(ClientError::Status { status, body, .. })
            if status == StatusCode::PAYLOAD_TOO_LARGE && config.split =>
        {
            // Refused for what the calls weigh together: each gets what it would get alone.
            let calls = requests.len();
            learned.learn_from_refusal(&body, calls, sent);
            tracing::debug!(calls, sent, "the batch was refused as too large; split");
            let calls: Vec<Call> = requests
                .into_iter()
                .zip(replies)
                .map(|(request, reply)| Call::new(request, reply))
                .collect();
            if calls.len() == 1 {
                let call = calls.into_iter().next().expect("one call");
                direct(client, config, call).await;
                return;
            }
            let mut first = calls;
            let second = first.split_off(first.len() / 2);
            future::join(
                dispatch(client.clone(), config.clone(), learned.clone(), first),
                dispatch(client, config, learned, second),
            )
            .await;
        }
        Err(ClientError::Status {
            status,
            headers,
            body,
            ..
        }) => {
            // What each caller would have got calling directly.
            for reply in replies {
                let mut res = Response::new(body.clone());
                *res.status_mut() = status;
                *res.headers_mut() = (*headers).clone();
                let _ = reply.send(Ok(res));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(Box::new(error.clone())));
            }
        }
    }
}

/// Sends one call alone, straight to the inner client, under the same deadline.
async fn direct<S, ReqB, ResB>(client: S, config: Arc<Config>, call: Call)
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ReqB: From<Bytes>,
    ResB: Body,
    ResB::Error: Into<BoxError>,
{
    let Call { request, reply, .. } = call;
    let mut replies = [reply];
    let send = async move {
        let response = client
            .oneshot(request.map(ReqB::from))
            .await
            .map_err(Into::into)?;
        let (parts, body) = response.into_parts();
        let body = read_body(body, &parts.headers, DEFAULT_MAX_RESPONSE_BYTES).await?;
        Ok::<_, BoxError>(Response::from_parts(parts, body))
    };
    let outcome = match bounded(send, config.timeout, &mut replies).await {
        Ended::Answered(outcome) => outcome,
        Ended::TimedOut => Err(Box::new(no_answer(config.timeout)) as BoxError),
        Ended::Abandoned => return,
    };
    let [reply] = replies;
    let _ = reply.send(outcome);
}

/// The error of an exchange past its deadline.
fn no_answer(timeout: Duration) -> ClientError {
    ClientError::transport(format!(
        "the server did not answer within the auto-batch timeout of {} ms",
        timeout.as_millis()
    ))
}

/// A copy of a request without its extensions (which do not travel in a batch anyway).
pub(crate) fn copy_request(request: &Request<Bytes>) -> Request<Bytes> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}
