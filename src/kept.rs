//! The settings of answers kept beyond their request: [`RespondAsync`] (asynchronous batches
//! with a status monitor), [`Idempotency`] (`Idempotency-Key` retries), the store they share, and
//! [`BatchIdentity`], whose answers they are. The two features' steps are in `respond_async.rs`
//! and `idempotency.rs`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::cancel::Cancel;
use crate::error::error_response;
use crate::store::record::digest;
use crate::store::{AnswerStore, MemoryStore, StoreError, StoreFuture};

/// Asynchronous batches at a route: a batch sent with `Prefer: respond-async` is answered
/// `202 Accepted` with a status monitor in `Location`, once it has been read and checked, and
/// runs without a held connection, under the same limits and deadlines as any batch. The
/// monitor answers `202` (with progress) while it runs, then the batch's answer as OData 4.01
/// asks (`200`, `application/http`, `AsyncResult`), for the retention time; `DELETE` on it
/// cancels the items that have not started.
///
/// Add it with [`BatchRoute::respond_async`](crate::BatchRoute::respond_async), or to every
/// route with [`BatchLayer::respond_async`](crate::BatchLayer::respond_async).
#[derive(Clone, Debug)]
#[must_use]
pub struct RespondAsync {
    pub(crate) retention: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) max_answer_bytes: usize,
    pub(crate) progress_every: Duration,
}

impl Default for RespondAsync {
    fn default() -> Self {
        RespondAsync {
            // Long enough for a client that polls every few seconds to miss a few polls, short
            // enough that a forgotten answer does not hold the store for long.
            retention: Duration::from_secs(10 * 60),
            retry_after: Duration::from_secs(1),
            // Most batch answers are far smaller; a larger one is answered in words.
            max_answer_bytes: 8 * 1024 * 1024,
            // A store write and read per running batch this often: progress for the monitor,
            // and a `DELETE` heard by another replica.
            progress_every: Duration::from_millis(500),
        }
    }
}

impl RespondAsync {
    /// The defaults: answers kept 10 minutes, up to 8 MiB each; `Retry-After: 1`.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a finished batch's answer is kept for its monitor (default 10 minutes); then
    /// the monitor answers `404`.
    pub fn retention(mut self, d: Duration) -> Self {
        self.retention = d;
        self
    }

    /// The `Retry-After` the monitor suggests while the batch runs (default 1 s; whole seconds,
    /// at least one).
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d;
        self
    }

    /// The largest answer kept (default 8 MiB). A batch whose answer is larger still runs; its
    /// monitor then says, in `507`, that it ran and how large the answer was.
    pub fn max_answer_bytes(mut self, n: usize) -> Self {
        self.max_answer_bytes = n;
        self
    }

    /// How often a running batch writes its progress to the store and looks there for a
    /// cancellation sent to another replica (default 500 ms).
    pub fn progress_every(mut self, d: Duration) -> Self {
        self.progress_every = d.max(Duration::from_millis(10));
        self
    }
}

/// Idempotent retries at a route: a batch sent with `Idempotency-Key: K` keeps its answer under
/// (identity, K). A retry with the same key and the same request is answered with the kept
/// answer (marked `Idempotent-Replayed: true`) and runs nothing; the same key with another
/// request is answered `422`; the same key while the first still runs, `409`. A batch whose
/// answer is too large to keep says so on its own answer (`Idempotency-Stored: false`), and a
/// retry of it is answered `410` without running.
///
/// Add it with [`BatchRoute::idempotency`](crate::BatchRoute::idempotency), or to every route
/// with [`BatchLayer::idempotency`](crate::BatchLayer::idempotency).
#[derive(Clone, Debug)]
#[must_use]
pub struct Idempotency {
    pub(crate) expiry: Duration,
    pub(crate) max_answer_bytes: usize,
}

impl Default for Idempotency {
    fn default() -> Self {
        Idempotency {
            // The IETF draft's examples keep keys a day: long enough for any client's retries.
            expiry: Duration::from_secs(24 * 3600),
            max_answer_bytes: 1024 * 1024,
        }
    }
}

impl Idempotency {
    /// The defaults: keys kept 24 hours, answers up to 1 MiB.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a key and its answer are kept (default 24 hours); after that the key may be
    /// used again, for a new batch.
    pub fn expiry(mut self, d: Duration) -> Self {
        self.expiry = d;
        self
    }

    /// The largest answer kept (default 1 MiB).
    pub fn max_answer_bytes(mut self, n: usize) -> Self {
        self.max_answer_bytes = n;
        self
    }
}

/// Whose batch this is, for status monitors and idempotency keys, when the app knows better than
/// the `Authorization` header: put it in the batch request's extensions (from an authentication
/// layer outside the batch layer). Without it, the identity is the outer `Authorization` header;
/// without that, every anonymous caller is one identity. Only a digest of it is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchIdentity(String);

impl BatchIdentity {
    /// The identity `id` (a user or tenant id, say).
    pub fn new(id: impl Into<String>) -> Self {
        BatchIdentity(id.into())
    }

    /// The identity as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The layer-wide settings of kept answers: the store, where monitors live, the deadline of a
/// store call, and the defaults routes take.
#[derive(Clone)]
pub(crate) struct Kept {
    pub(crate) store: Arc<dyn AnswerStore>,
    /// Ends with `/`; a monitor is this and its id.
    pub(crate) monitor_path: String,
    pub(crate) timeout: Duration,
    pub(crate) respond_async: Option<RespondAsync>,
    pub(crate) idempotency: Option<Idempotency>,
    /// Whether some route answers asynchronously, so monitors must be served.
    pub(crate) any_async: bool,
    /// The asynchronous batches running in this process, so a `DELETE` that reaches it stops
    /// its own at once (others hear it through the store).
    pub(crate) running: Arc<Mutex<HashMap<String, Cancel>>>,
    /// Batches running in tasks of their own (asynchronous ones, and keyed ones, which go on
    /// when their client leaves), and how many may.
    pub(crate) background: Arc<AtomicUsize>,
    pub(crate) max_background: usize,
}

impl Default for Kept {
    fn default() -> Self {
        Kept {
            store: Arc::new(MemoryStore::default()),
            monitor_path: "/batch-monitor/".to_owned(),
            // Far above a healthy store's milliseconds, far below a client's patience.
            timeout: Duration::from_secs(2),
            respond_async: None,
            idempotency: None,
            any_async: false,
            running: Arc::default(),
            background: Arc::default(),
            // Each runs up to `concurrency` items: 64 × 16 calls at the default, about what a
            // few hundred synchronous clients would cause. Beyond it, `503` and `Retry-After`.
            max_background: 64,
        }
    }
}

impl Kept {
    /// The monitor id in `path`, if it names a monitor.
    #[inline]
    pub(crate) fn monitor_id<'a>(&self, path: &'a str) -> Option<&'a str> {
        if !self.any_async {
            return None;
        }
        path.strip_prefix(self.monitor_path.as_str())
    }

    /// Runs a store call under the deadline.
    pub(crate) async fn call<T>(&self, f: StoreFuture<'_, T>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::TimedOut {
                timeout: self.timeout,
            }),
        }
    }

    /// A place for one more batch in the background, held until the guard drops; when all are
    /// taken, the `503` to answer instead.
    pub(crate) fn background(&self) -> Result<Background, NoRoom> {
        self.background
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_background).then_some(n + 1)
            })
            .map(|_| Background(self.background.clone()))
            .map_err(NoRoom)
    }

    pub(crate) fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cancel>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kept")
            .field("monitor_path", &self.monitor_path)
            .field("timeout", &self.timeout)
            .field("respond_async", &self.respond_async)
            .field("idempotency", &self.idempotency)
            .finish_non_exhaustive()
    }
}

/// One batch's place among those running in the background.
#[derive(Debug)]
pub(crate) struct Background(Arc<AtomicUsize>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every place in the background is taken: this many batches run there.
#[derive(Debug)]
pub(crate) struct NoRoom(usize);

impl NoRoom {
    pub(crate) fn response(&self) -> Response<Bytes> {
        let mut res = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "{} asynchronous or keyed batches are running on this server, as many as it runs \
                 at once, so this one was not run; send it again later",
                self.0
            ),
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        res
    }
}

/// A digest of whose request this is: the app's [`BatchIdentity`], else the `Authorization`
/// header, else anonymous.
pub(crate) fn owner(extensions: &http::Extensions, headers: &HeaderMap) -> String {
    if let Some(id) = extensions.get::<BatchIdentity>() {
        return digest(&[b"app", id.0.as_bytes()]);
    }
    match headers.get(header::AUTHORIZATION) {
        Some(v) => digest(&[b"authorization", v.as_bytes()]),
        None => digest(&[b"anonymous"]),
    }
}

/// Whether `Prefer` asks for `respond-async` (RFC 7240: a list of preferences, any case).
pub(crate) fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|p| {
            p.split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii()
        })
        .any(|p| p.eq_ignore_ascii_case(b"respond-async"))
}

/// The answer when the store fails: nothing was run, and the client may send it again later.
pub(crate) fn store_down(err: &StoreError, what: &str) -> Response<Bytes> {
    tracing::warn!(error = %err, "answer store failed");
    let status = match err {
        StoreError::TooLarge { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut res = error_response(
        status,
        &format!("{err}, so {what} was not run; nothing in it ran; send it again later"),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    res
}
