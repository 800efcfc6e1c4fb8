//! [`RedisStore`]: answers kept in Redis, shared by every replica of the app.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{AnswerStore, StoreError, StoreFuture};

/// Answers kept in Redis (7.0 or newer), so that every replica of the app sees every
/// asynchronous batch and every idempotency key: a poll or a retry may reach any of them.
///
/// Each record is one Redis string under the layer's key with the given prefix, set with an
/// expiry (`PX`); a new key is claimed with one `SET .. NX GET`, so two replicas racing for one
/// key cannot both win. Connects on first use and reconnects after a failure. Bound the memory
/// Redis may use with its own `maxmemory` (with `noeviction`, a full Redis refuses writes and
/// the layer answers `503`; an evicting policy could drop a key that stands for a batch that
/// ran, after which a retry would run it again). Records larger than
/// [`max_record_bytes`](Self::max_record_bytes) (default 8 MiB) are refused before they are
/// sent.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use http_batch::store::RedisStore;
/// use http_batch::BatchLayer;
///
/// let layer = BatchLayer::new().store(RedisStore::new("redis://127.0.0.1:6379/")?);
/// # Ok(()) }
/// ```
pub struct RedisStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    max_record_bytes: usize,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.client.get_connection_info().addr())
            .field("prefix", &self.prefix)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store in the Redis server at `url` (`redis://host:port/db`); it connects on first use.
    /// Fails only when the URL cannot be read.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Unavailable {
            reason: format!("the Redis URL was refused: {e}"),
        })?;
        Ok(RedisStore {
            client,
            connection: OnceCell::new(),
            prefix: "http-batch:".to_owned(),
            max_record_bytes: 8 * 1024 * 1024,
        })
    }

    /// Puts `prefix` before every key (default `http-batch:`), so that several apps may share
    /// one Redis.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The largest record it sends to Redis (default 8 MiB).
    #[must_use]
    pub fn max_record_bytes(mut self, n: usize) -> Self {
        self.max_record_bytes = n;
        self
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                // Each attempt is short; the layer's own deadline bounds the whole call, and the
                // manager reconnects in the background after a failure.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(5)))
                    .set_number_of_retries(2);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .map_err(unavailable)?;
        Ok(connection.clone())
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn check_size(&self, value: &Bytes) -> Result<(), StoreError> {
        if value.len() > self.max_record_bytes {
            return Err(StoreError::TooLarge {
                size: value.len(),
                limit: self.max_record_bytes,
            });
        }
        Ok(())
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    if e.code() == Some("OOM") {
        return StoreError::Full {
            what: "Redis reached its maxmemory".to_owned(),
        };
    }
    StoreError::Unavailable {
        reason: e.to_string(),
    }
}

/// A TTL in whole milliseconds, at least one (Redis refuses `PX 0`).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl AnswerStore for RedisStore {
    fn insert_new(&self, key: &str, value: Bytes, ttl: Duration) -> StoreFuture<'_, Option<Bytes>> {
        let key = self.key(key);
        Box::pin(async move {
            self.check_size(&value)?;
            let mut con = self.connection().await?;
            let old: Option<Vec<u8>> = redis::cmd("SET")
                .arg(&key)
                .arg(&value[..])
                .arg("NX")
                .arg("GET")
                .arg("PX")
                .arg(millis(ttl))
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            Ok(old.map(Bytes::from))
        })
    }

    fn put(&self, key: &str, value: Bytes, ttl: Duration) -> StoreFuture<'_, ()> {
        let key = self.key(key);
        Box::pin(async move {
            self.check_size(&value)?;
            let mut con = self.connection().await?;
            redis::cmd("SET")
                .arg(&key)
                .arg(&value[..])
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<()>(&mut con)
                .await
                .map_err(unavailable)
        })
    }

    fn get(&self, key: &str) -> StoreFuture<'_, Option<Bytes>> {
        let key = self.key(key);
        Box::pin(async move {
            let mut con = self.connection().await?;
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            Ok(value.map(Bytes::from))
        })
    }

    fn remove(&self, key: &str) -> StoreFuture<'_, ()> {
        let key = self.key(key);
        Box::pin(async move {
            let mut con = self.connection().await?;
            redis::cmd("DEL")
                .arg(&key)
                .query_async::<()>(&mut con)
                .await
                .map_err(unavailable)
        })
    }
}
