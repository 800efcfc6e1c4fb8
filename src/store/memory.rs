//! [`MemoryStore`]: the default answer store, in this process's memory, bounded in bytes and
//! records.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{AnswerStore, StoreError, StoreFuture};

/// What a record costs besides its key and value: the map's entry and its bookkeeping.
const ENTRY_OVERHEAD: usize = 64;

/// Answers kept in this process's memory: enough for an app that runs as one instance. Bounded
/// in bytes (keys and values, with a small overhead per record) and in records; when full,
/// expired records are swept out, and a new record that still does not fit is refused
/// ([`StoreError::Full`]), never made room for by dropping a live one.
///
/// The default holds 64 MiB in at most 10 000 records. See the [module docs](crate::store).
pub struct MemoryStore {
    inner: Mutex<Inner>,
    max_bytes: usize,
    max_entries: usize,
}

struct Inner {
    map: HashMap<String, (Bytes, Instant)>,
    bytes: usize,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (entries, bytes) = self.usage();
        f.debug_struct("MemoryStore")
            .field("entries", &entries)
            .field("bytes", &bytes)
            .field("max_bytes", &self.max_bytes)
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(64 * 1024 * 1024, 10_000)
    }
}

impl MemoryStore {
    /// A store of at most `max_bytes` in at most `max_entries` records.
    pub fn new(max_bytes: usize, max_entries: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                bytes: 0,
            }),
            max_bytes,
            max_entries,
        }
    }

    /// How many records it holds, and their bytes, expired ones not yet swept out included.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.map.len(), inner.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is consistent between statements, so a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
        only_new: bool,
    ) -> Result<Option<Bytes>, StoreError> {
        let now = Instant::now();
        let cost = key.len() + value.len() + ENTRY_OVERHEAD;
        if cost > self.max_bytes {
            return Err(StoreError::TooLarge {
                size: value.len(),
                limit: self.max_bytes.saturating_sub(key.len() + ENTRY_OVERHEAD),
            });
        }
        let mut inner = self.lock();
        let old = match inner.map.get(key) {
            Some((v, expires)) if *expires > now => Some(v.clone()),
            _ => None,
        };
        if only_new {
            if let Some(old) = old {
                return Ok(Some(old));
            }
        }
        let freed = inner
            .map
            .get(key)
            .map_or(0, |(v, _)| key.len() + v.len() + ENTRY_OVERHEAD);
        let entries = inner.map.len() - usize::from(freed > 0);
        if entries >= self.max_entries || inner.bytes - freed + cost > self.max_bytes {
            inner.sweep(now);
            let freed = inner
                .map
                .get(key)
                .map_or(0, |(v, _)| key.len() + v.len() + ENTRY_OVERHEAD);
            let entries = inner.map.len() - usize::from(freed > 0);
            if entries >= self.max_entries {
                return Err(StoreError::Full {
                    what: format!("{} records", self.max_entries),
                });
            }
            if inner.bytes - freed + cost > self.max_bytes {
                return Err(StoreError::Full {
                    what: format!("{} bytes", self.max_bytes),
                });
            }
        }
        let expires = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(365 * 86_400));
        if let Some((v, _)) = inner.map.insert(key.to_owned(), (value, expires)) {
            inner.bytes -= key.len() + v.len() + ENTRY_OVERHEAD;
        }
        inner.bytes += cost;
        Ok(None)
    }
}

impl Inner {
    /// Drops every expired record: linear in the records, and run only when the store is full,
    /// so a store that is not full never pays for it.
    fn sweep(&mut self, now: Instant) {
        let mut freed = 0;
        self.map.retain(|k, (v, expires)| {
            let keep = *expires > now;
            if !keep {
                freed += k.len() + v.len() + ENTRY_OVERHEAD;
            }
            keep
        });
        self.bytes -= freed;
    }
}

impl AnswerStore for MemoryStore {
    fn insert_new(&self, key: &str, value: Bytes, ttl: Duration) -> StoreFuture<'_, Option<Bytes>> {
        let result = self.write(key, value, ttl, true);
        Box::pin(std::future::ready(result))
    }

    fn put(&self, key: &str, value: Bytes, ttl: Duration) -> StoreFuture<'_, ()> {
        let result = self.write(key, value, ttl, false).map(|_| ());
        Box::pin(std::future::ready(result))
    }

    fn get(&self, key: &str) -> StoreFuture<'_, Option<Bytes>> {
        let now = Instant::now();
        let mut inner = self.lock();
        let found = match inner.map.get(key) {
            Some((v, expires)) if *expires > now => Some(v.clone()),
            Some(_) => {
                if let Some((v, _)) = inner.map.remove(key) {
                    inner.bytes -= key.len() + v.len() + ENTRY_OVERHEAD;
                }
                None
            }
            None => None,
        };
        Box::pin(std::future::ready(Ok(found)))
    }

    fn remove(&self, key: &str) -> StoreFuture<'_, ()> {
        let mut inner = self.lock();
        if let Some((v, _)) = inner.map.remove(key) {
            inner.bytes -= key.len() + v.len() + ENTRY_OVERHEAD;
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now<T>(f: StoreFuture<'_, T>) -> Result<T, StoreError> {
        futures_util::FutureExt::now_or_never(f).expect("the memory store answers at once")
    }

    #[test]
    fn insert_new_keeps_the_first() {
        let s = MemoryStore::default();
        let ttl = Duration::from_secs(60);
        assert!(now(s.insert_new("k", Bytes::from_static(b"a"), ttl))
            .unwrap()
            .is_none());
        let old = now(s.insert_new("k", Bytes::from_static(b"b"), ttl)).unwrap();
        assert_eq!(old.as_deref(), Some(&b"a"[..]));
        assert_eq!(now(s.get("k")).unwrap().as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn expired_records_are_gone_and_swept_when_full() {
        let s = MemoryStore::new(1024, 2);
        now(s.put("a", Bytes::from_static(b"1"), Duration::ZERO)).unwrap();
        now(s.put("b", Bytes::from_static(b"2"), Duration::from_secs(60))).unwrap();
        assert!(now(s.get("a")).unwrap().is_none());
        now(s.put("a", Bytes::from_static(b"1"), Duration::ZERO)).unwrap();
        // Full by count, but "a" has expired and makes room.
        now(s.put("c", Bytes::from_static(b"3"), Duration::from_secs(60))).unwrap();
        assert!(matches!(
            now(s.put("d", Bytes::from_static(b"4"), Duration::from_secs(60))),
            Err(StoreError::Full { .. })
        ));
        // Replacing a record does not need a new place.
        now(s.put("c", Bytes::from_static(b"33"), Duration::from_secs(60))).unwrap();
    }

    #[test]
    fn bounded_in_bytes() {
        let s = MemoryStore::new(300, 100);
        let big = Bytes::from(vec![0u8; 200]);
        now(s.put("a", big.clone(), Duration::from_secs(60))).unwrap();
        assert!(matches!(
            now(s.put("b", big.clone(), Duration::from_secs(60))),
            Err(StoreError::Full { .. })
        ));
        assert!(matches!(
            now(s.put("c", Bytes::from(vec![0u8; 400]), Duration::from_secs(60))),
            Err(StoreError::TooLarge { .. })
        ));
        now(s.remove("a")).unwrap();
        assert_eq!(s.usage(), (0, 0));
        now(s.put("b", big, Duration::from_secs(60))).unwrap();
    }
}
