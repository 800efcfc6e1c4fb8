//! [`BatchContext`]: what every item knows about the batch it is part of, and a store the items of
//! one batch share.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// A request extension that every item of a batch carries.
///
/// It tells a handler which batch the request belongs to, where in the batch it sits, and gives
/// it a [`BatchStore`] shared by all items of the same batch.
///
/// ```
/// use axum::{routing::get, Extension, Router};
/// use http_batch::BatchContext;
///
/// async fn handler(ctx: Option<Extension<BatchContext>>) -> String {
///     match ctx {
///         Some(Extension(ctx)) => format!("item {} of {}", ctx.index(), ctx.total()),
///         None => "not in a batch".to_owned(),
///     }
/// }
/// let app: Router = Router::new().route("/", get(handler));
/// ```
///
/// # Concurrency
///
/// Items of one batch may run concurrently (see [`BatchLayer::concurrency`]). The store is a
/// mutex-guarded map, so every single operation on it is atomic, but there is no ordering between
/// items unless you ask for it: run the batch sequentially, or make one item depend on another.
/// Use [`BatchStore::update`] for read-modify-write steps that must not interleave.
///
/// [`BatchLayer::concurrency`]: crate::BatchLayer::concurrency
#[derive(Clone, Debug)]
pub struct BatchContext {
    pub(crate) batch_id: Arc<str>,
    pub(crate) index: usize,
    pub(crate) id: Option<Arc<str>>,
    pub(crate) total: usize,
    pub(crate) depth: usize,
    pub(crate) store: BatchStore,
    /// What is left of the cost budget, shared with nested batches so that they spend from
    /// the same budget instead of getting a fresh one.
    pub(crate) budget: Option<Arc<AtomicU64>>,
}

impl BatchContext {
    /// The id of the batch, unique per batch in this process.
    pub fn batch_id(&self) -> &str {
        &self.batch_id
    }

    /// The item's zero-based position in the batch.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The item's id (`Content-ID` or JSON `id`), if it had one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// How many items the batch carries.
    pub fn total(&self) -> usize {
        self.total
    }

    /// How deeply this batch is nested: 1 for a top-level batch.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The store shared by every item of this batch.
    pub fn store(&self) -> &BatchStore {
        &self.store
    }
}

/// A typed, concurrency-safe map shared by the items of one batch.
///
/// It holds at most one value per type, like `http::Extensions`. It lives as long as the batch.
#[derive(Clone, Default)]
pub struct BatchStore {
    inner: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
}

impl fmt::Debug for BatchStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.lock().len();
        f.debug_struct("BatchStore").field("values", &len).finish()
    }
}

impl BatchStore {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TypeId, Box<dyn Any + Send + Sync>>> {
        // A handler that panicked while holding the lock cannot leave a half-written value:
        // every operation below replaces or mutates a value in one step.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a value in, returning the one it replaces.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.lock()
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast::<T>().ok().map(|b| *b))
    }

    /// A clone of the value of type `T`, if there is one.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.lock()
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }

    /// Whether a value of type `T` is present.
    pub fn contains<T: Send + Sync + 'static>(&self) -> bool {
        self.lock().contains_key(&TypeId::of::<T>())
    }

    /// Takes the value of type `T` out.
    pub fn remove<T: Send + Sync + 'static>(&self) -> Option<T> {
        self.lock()
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast::<T>().ok().map(|b| *b))
    }

    /// Runs `f` on the value of type `T`, creating it with `T::default()` first if absent, while
    /// holding the store's lock, so no other item sees a half-done update.
    ///
    /// ```
    /// use http_batch::BatchStore;
    /// use std::collections::HashSet;
    ///
    /// let store = BatchStore::new();
    /// let fresh = store.update(|seen: &mut HashSet<String>| seen.insert("a".to_owned()));
    /// assert!(fresh);
    /// let again = store.update(|seen: &mut HashSet<String>| seen.insert("a".to_owned()));
    /// assert!(!again);
    /// ```
    pub fn update<T, R>(&self, f: impl FnOnce(&mut T) -> R) -> R
    where
        T: Default + Send + Sync + 'static,
    {
        let mut map = self.lock();
        let slot = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        let value = slot
            .downcast_mut::<T>()
            .expect("the store keys values by their TypeId");
        f(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_shared_between_clones() {
        let a = BatchStore::new();
        let b = a.clone();
        a.insert(5u32);
        assert_eq!(b.get::<u32>(), Some(5));
        assert_eq!(b.insert(6u32), Some(5));
        assert_eq!(a.remove::<u32>(), Some(6));
        assert!(!b.contains::<u32>());
    }

    #[test]
    fn update_is_atomic_across_threads() {
        let store = BatchStore::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    for _ in 0..1000 {
                        store.update(|n: &mut u64| *n += 1);
                    }
                });
            }
        });
        assert_eq!(store.get::<u64>(), Some(8000));
    }
}
