//! Where answers are kept beyond the request that made them: the status monitors of
//! asynchronous batches and the answers of batches sent with an `Idempotency-Key`.
//!
//! An [`AnswerStore`] is a small key-value store of byte records that expire. The layer decides
//! what goes in a record (whose it is, how far its batch got, its answer); a store only keeps
//! bytes, bounded in size, for a time. [`MemoryStore`] is the default: one instance needs
//! nothing else. When the app runs as several replicas behind a load balancer, a poll or a retry
//! may reach any of them, so they must share one store: [`RedisStore`] (feature `redis`) is one.
//!
//! Every call the layer makes to a store has a deadline
//! ([`BatchLayer::store_timeout`](crate::BatchLayer::store_timeout)). A store that fails or
//! stalls makes new asynchronous or keyed batches answer `503`, before anything runs.
//!
//! # Example
//!
//! ```
//! use http_batch::store::MemoryStore;
//! use http_batch::{BatchLayer, BatchRoute, Idempotency, RespondAsync};
//!
//! let layer = BatchLayer::new()
//!     // 64 MiB and 10 000 records at most.
//!     .store(MemoryStore::new(64 * 1024 * 1024, 10_000))
//!     .route(
//!         BatchRoute::path("/batch")
//!             .respond_async(RespondAsync::new())
//!             .idempotency(Idempotency::new()),
//!     );
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

mod memory;
pub(crate) mod record;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::RedisStore;
pub use memory::MemoryStore;

/// The future a store call returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A key-value store of byte records that expire, shared by every instance of the app that
/// should see the same asynchronous batches and idempotency keys.
///
/// Keys are short ASCII strings the layer makes (at most 120 bytes). A record that has expired
/// must no longer be returned. Every method may fail; the layer turns a failure into `503` for
/// the request that needed the store.
pub trait AnswerStore: Send + Sync + 'static {
    /// Puts `value` under `key` for `ttl` unless the key holds a record already; then it gives
    /// that record back and leaves it as it is. The check and the write are one step: of two
    /// callers racing for one key, exactly one gets `None`.
    fn insert_new(&self, key: &str, value: Bytes, ttl: Duration) -> StoreFuture<'_, Option<Bytes>>;

    /// Puts `value` under `key` for `ttl`, replacing what was there.
    fn put(&self, key: &str, value: Bytes, ttl: Duration) -> StoreFuture<'_, ()>;

    /// The record under `key`, if there is one that has not expired.
    fn get(&self, key: &str) -> StoreFuture<'_, Option<Bytes>>;

    /// Removes the record under `key`, if any.
    fn remove(&self, key: &str) -> StoreFuture<'_, ()>;
}

/// One store shared by several layers (or kept by the app to look at).
impl<T: AnswerStore + ?Sized> AnswerStore for std::sync::Arc<T> {
    fn insert_new(&self, key: &str, value: Bytes, ttl: Duration) -> StoreFuture<'_, Option<Bytes>> {
        (**self).insert_new(key, value, ttl)
    }

    fn put(&self, key: &str, value: Bytes, ttl: Duration) -> StoreFuture<'_, ()> {
        (**self).put(key, value, ttl)
    }

    fn get(&self, key: &str) -> StoreFuture<'_, Option<Bytes>> {
        (**self).get(key)
    }

    fn remove(&self, key: &str) -> StoreFuture<'_, ()> {
        (**self).remove(key)
    }
}

/// Why a store could not do what it was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds as many bytes or records as it may.
    Full {
        /// What was full, in words (`"64 MiB of records"`).
        what: String,
    },
    /// One record is larger than the store keeps.
    TooLarge {
        /// The record's size in bytes.
        size: usize,
        /// The largest record the store keeps.
        limit: usize,
    },
    /// The store could not be reached, or failed.
    Unavailable {
        /// What went wrong.
        reason: String,
    },
    /// The store did not answer within the deadline.
    TimedOut {
        /// The deadline.
        timeout: Duration,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Full { what } => write!(f, "the answer store is full ({what})"),
            StoreError::TooLarge { size, limit } => write!(
                f,
                "a record of {size} bytes is larger than the answer store keeps ({limit} bytes)"
            ),
            StoreError::Unavailable { reason } => {
                write!(f, "the answer store is unavailable: {reason}")
            }
            StoreError::TimedOut { timeout } => write!(
                f,
                "the answer store did not answer within {} ms",
                timeout.as_millis()
            ),
        }
    }
}

impl std::error::Error for StoreError {}
