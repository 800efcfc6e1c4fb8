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

fn is_idempotent(method: &Method) -> bool {
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
///   [`ItemFailure`](super::ItemFailure).
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
