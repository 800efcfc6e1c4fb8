//! The auto-batching client layer: single calls that arrive close together travel as one batch.

mod body;
mod future;
mod service;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};
use tower_layer::Layer;

pub use body::AutoBatchBody;
pub use future::AutoBatchFuture;
pub use service::AutoBatch;

/// A request extension that marks a call safe to send again, for methods that are not
/// idempotent by themselves (a POST with an idempotency key, say). [`AutoBatchLayer`] retries
/// throttled calls only when they are idempotent or carry this.
///
/// ```
/// use http_batch::client::RetrySafe;
///
/// let mut request = http::Request::post("http://127.0.0.1:3000/orders").body(()).unwrap();
/// request.extensions_mut().insert(RetrySafe);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetrySafe;

type Predicate = Arc<dyn Fn(&http::request::Parts) -> bool + Send + Sync>;

/// Settings shared by a layer and every service it makes.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) batch_uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) window: Duration,
    pub(crate) max_batch: usize,
    pub(crate) max_body_bytes: u64,
    pub(crate) idempotent_only: bool,
    pub(crate) predicate: Option<Predicate>,
    pub(crate) queue: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) max_batch_bytes: u64,
    pub(crate) timeout: Duration,
    pub(crate) split: bool,
    pub(crate) learn_limits: bool,
    pub(crate) retries: u32,
    pub(crate) max_retry_wait: Duration,
}

impl Config {
    /// Whether a call may travel inside a batch. Anything else goes straight to the inner client.
    pub(crate) fn wants(&self, parts: &http::request::Parts, body_upper: Option<u64>) -> bool {
        if body_upper.is_none_or(|n| n > self.max_body_bytes) {
            return false;
        }
        if self.idempotent_only && !is_idempotent(&parts.method) {
            return false;
        }
        // A batch endpoint runs its items on its own server: calls to another host cannot join.
        if let Some(authority) = parts.uri.authority() {
            if Some(authority) != self.batch_uri.authority() {
                return false;
            }
        }
        self.predicate.as_ref().is_none_or(|p| p(parts))
    }
}

pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("batch_uri", &self.batch_uri)
            .field("window", &self.window)
            .field("max_batch", &self.max_batch)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("idempotent_only", &self.idempotent_only)
            .field("predicate", &self.predicate.is_some())
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("timeout", &self.timeout)
            .field("split", &self.split)
            .field("learn_limits", &self.learn_limits)
            .field("retries", &self.retries)
            .field("max_retry_wait", &self.max_retry_wait)
            .finish()
    }
}

/// A [`Layer`] that gathers single calls made through a client service into batch requests.
///
/// Callers use the wrapped service as they would use the client itself, concurrently and one
/// request at a time. The first call starts a window ([`window`](Self::window), default 5 ms);
/// every call that arrives before it closes, up to [`max_batch`](Self::max_batch) calls (default
/// 100), goes out as one batch to the batch URL, and each caller gets back its own response. A
/// lone call therefore takes about one window longer than a direct call.
///
/// Calls that pass straight through to the inner client, unbatched:
/// - bodies whose size is unknown or above [`max_body_bytes`](Self::max_body_bytes) (64 KiB);
/// - calls to another host than the batch URL's;
/// - non-idempotent methods (POST, PATCH), if [`idempotent_only`](Self::idempotent_only) is set;
/// - calls for which the [`batch_if`](Self::batch_if) predicate says no.
///
/// # What it does on its own
///
/// Each call gets what it would have got alone, and no call waits without end:
/// - **Fits its batches** to [`max_batch`](Self::max_batch) calls and
///   [`max_batch_bytes`](Self::max_batch_bytes) (512 KiB, under the usual body limits), and to
///   the server's limits once learned: it asks the batch URL with `OPTIONS` when the first call
///   is batched, and reads the limit a `413` names. Turn off with
///   [`learn_limits(false)`](Self::learn_limits).
/// - **Splits** a batch the server refuses as a whole with `413` (too large, too many items,
///   over a proxy's body limit) in two and sends each half again, down to a single call, which
///   is sent alone, directly, and gets its own answer. Turn off with
///   [`split(false)`](Self::split).
/// - **Retries** a call answered `429` or `503` with a `Retry-After` of at most
///   [`max_retry_wait`](Self::max_retry_wait) (10 s), after that delay, up to
///   [`retries`](Self::retries) times (2), if the call is safe to repeat: an idempotent method,
///   or a request marked with [`RetrySafe`]. Turn off with `retries(0)`.
/// - **Bounds every exchange** by [`timeout`](Self::timeout) (30 s): past it, the calls fail
///   and the slot is freed. A batch whose callers have all given up (dropped their futures) is
///   dropped at once, freeing its slot, so a server that leaves answers open cannot block calls
///   that a healthy one would answer.
///
/// # Responses and errors
///
/// The service answers `http::Response<`[`AutoBatchBody`]`<ResB>>`, where `ResB` is the inner
/// client's body: a pass-through call streams the inner body, a batched call carries its part's
/// bytes. The error type is [`BoxError`](crate::BoxError):
/// - a pass-through call fails with the inner client's error, boxed, as a direct call would;
/// - when a batch request fails in transport, each of its calls fails with a
///   [`ClientError::Transport`](super::ClientError::Transport) whose `source()` is the client's
///   error;
/// - when the server answers the batch as a whole with a non-2xx status (say `401`), each call
///   receives that response (status, headers and body) as its own `Ok` response, which is what
///   it would have got calling directly;
/// - when the answer holds no readable part for a call, that call fails with an
///   [`ItemFailure`](super::ItemFailure);
/// - when the exchange passes its [`timeout`](Self::timeout), each of its calls fails with a
///   [`ClientError::Transport`](super::ClientError::Transport) that says so.
///
/// The batches are gathered by a task spawned on the tokio runtime of the first batched call,
/// so calls must be made on a tokio runtime; the task ends when the last clone of the service
/// is dropped.
///
/// A batched call loses its request extensions and its HTTP version on the way; headers, method,
/// path, query and body travel.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_batch::client::AutoBatchLayer;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), http_batch::BoxError> {
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let client = AutoBatchLayer::new("http://127.0.0.1:3000/batch".parse()?)
///     .window(Duration::from_millis(2))
///     .max_batch(100)
///     .layer(client);
/// let request = http::Request::get("http://127.0.0.1:3000/farm/v1/animals/pony")
///     .body(Full::new(Bytes::new()))?;
/// let response = client.oneshot(request).await?;
/// println!("{}", response.status());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct AutoBatchLayer {
    config: Config,
}

impl AutoBatchLayer {
    /// A layer that sends its batches to `batch_uri`.
    pub fn new(batch_uri: Uri) -> Self {
        AutoBatchLayer {
            config: Config {
                batch_uri,
                headers: HeaderMap::new(),
                // Long enough to catch calls issued in one burst, short enough not to be felt
                // next to a network round trip.
                window: Duration::from_millis(5),
                max_batch: 100,
                // Larger bodies gain little from sharing a request and delay the others.
                max_body_bytes: 64 * 1024,
                idempotent_only: false,
                predicate: None,
                queue: 1024,
                // Enough to keep a server busy; few enough that a burst of calls cannot open
                // an unbounded number of connections.
                max_in_flight: 16,
                // Under the usual request body limits (nginx's and many proxies' 1 MiB, axum's
                // 2 MB), so that a full batch is not refused by a proxy in front of the server.
                max_batch_bytes: 512 * 1024,
                // A batch answer takes a round trip and the slowest of its calls; a server that
                // has not answered in this long is stuck, and the slot must come back.
                timeout: Duration::from_secs(30),
                split: true,
                learn_limits: true,
                // Two more tries cover a short throttling spell without hiding a long one.
                retries: 2,
                // Waiting longer than this for a retry is the caller's decision, not ours.
                max_retry_wait: Duration::from_secs(10),
            },
        }
    }

    /// How long the first call of a batch waits for others to join. Default 5 ms.
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// The most calls in one batch; a full batch leaves without waiting for its window to close.
    /// Default 100. Keep it at or below the server's limit (1000 for Google and for this
    /// crate's server side).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.config.max_batch = n.max(1);
        self
    }

    /// Request bodies larger than this (or of unknown size) pass straight through. Default
    /// 64 KiB.
    pub fn max_body_bytes(mut self, n: u64) -> Self {
        self.config.max_body_bytes = n;
        self
    }

    /// Batch only idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS, TRACE); POST and PATCH
    /// pass straight through.
    pub fn idempotent_only(mut self) -> Self {
        self.config.idempotent_only = true;
        self
    }

    /// Batch only the calls for which `predicate` returns true; the others pass straight
    /// through. It sees the request head; the other rules apply too.
    pub fn batch_if<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&http::request::Parts) -> bool + Send + Sync + 'static,
    {
        self.config.predicate = Some(Arc::new(predicate));
        self
    }

    /// Sets a header on every outer batch request (for example `Authorization`, when the
    /// server's batch endpoint needs its own credentials).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.config.headers.insert(name, value);
        self
    }

    /// How many calls may wait for the batching task before callers wait to hand theirs over.
    /// Default 1024.
    pub fn queue(mut self, n: usize) -> Self {
        self.config.queue = n.max(1);
        self
    }

    /// The largest batch body, in bytes (estimated from the calls' sizes). A call that would
    /// make the batch larger starts the next one. Default 512 KiB, under the usual request
    /// body limits of proxies and servers (1 MiB and up); the server's own limit, once learned,
    /// lowers it.
    pub fn max_batch_bytes(mut self, n: u64) -> Self {
        self.config.max_batch_bytes = n;
        self
    }

    /// How long one exchange with the server (a batch, or a call sent alone) may take before
    /// its calls fail and its slot is freed. Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Whether a batch the server refuses as a whole for its size or item count (`413`) is
    /// split and sent again, down to single calls sent alone, directly. Default on. Off, every
    /// call of a refused batch receives the refusal.
    pub fn split(mut self, on: bool) -> Self {
        self.config.split = on;
        self
    }

    /// Whether the layer asks the batch endpoint for its limits (`OPTIONS`, once, when the
    /// first call is batched) and fits its batches to them and to the limits named in a `413`.
    /// Default on.
    pub fn learn_limits(mut self, on: bool) -> Self {
        self.config.learn_limits = on;
        self
    }

    /// How many times a call answered `429` or `503` with a `Retry-After` is sent again after
    /// that delay, before its answer is handed back. Default 2; 0 turns retries off.
    ///
    /// Only calls that are safe to repeat are retried: idempotent methods (GET, HEAD, PUT,
    /// DELETE, OPTIONS, TRACE) and requests carrying the [`RetrySafe`] extension.
    pub fn retries(mut self, n: u32) -> Self {
        self.config.retries = n;
        self
    }

    /// The longest `Retry-After` the layer waits out by itself. Default 10 s; a call asked to
    /// wait longer gets its `429` or `503` back at once.
    pub fn max_retry_wait(mut self, d: Duration) -> Self {
        self.config.max_retry_wait = d;
        self
    }

    /// How many batch requests may be on their way at once. Default 16. When that many are
    /// out, the next batch waits for one to come back, and calls queue up behind it (and then
    /// wait to be queued, see [`queue`](Self::queue)): load is pushed back to the callers
    /// instead of piling up as open requests.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n.max(1);
        self
    }
}

impl<S: Clone> Layer<S> for AutoBatchLayer {
    type Service = AutoBatch<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AutoBatch::new(inner, Arc::new(self.config.clone()))
    }
}
