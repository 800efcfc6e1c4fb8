//! The application's transactions, which make a change set all or nothing.
//!
//! The layer cannot undo an HTTP call, so atomicity comes from the application: a
//! [`TransactionProvider`] begins a [`Transaction`] for each change set; every item of the change
//! set finds it among its request extensions (`Extension<Transaction>` in axum) and does its
//! work inside it, instead of on a connection of its own. The layer commits when every item
//! answered 2xx, and rolls back otherwise. The example is on [`TransactionProvider`]; the
//! `sqlx` feature ships a provider over a database pool (`http_batch::sqlx`).
//!
//! The application's transaction is held by value, as database drivers hand it out
//! (`commit(self)`): items borrow it one at a time through [`Transaction::lock`], and the layer
//! ends it exactly once. Whatever way a change set stops (an answer that is not 2xx, a panic, a
//! timeout, the client leaving), a transaction still open when its last handle goes is rolled
//! back.

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::{Mutex, OwnedMappedMutexGuard};

use crate::error::BoxError;

/// Begins the transactions that change sets run under. Give one to a route with
/// [`BatchRoute::transactions`](crate::BatchRoute::transactions).
///
/// # Example
///
/// A transaction that stages writes and applies them to a shared list when it commits. A
/// database's transaction (see the `sqlx` feature) takes the place of `Staged` in a real app.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use futures_util::future::{BoxFuture, FutureExt};
/// use http_batch::{BatchLayer, BatchRoute, BoxError, Transact, Transaction, TransactionProvider};
/// use http_batch::format::Dialect;
///
/// /// Writes staged in the transaction, applied to the list on commit.
/// struct Staged {
///     list: Arc<Mutex<Vec<String>>>,
///     writes: Vec<String>,
/// }
///
/// impl Transact for Staged {
///     fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
///         self.list.lock().unwrap().extend(self.writes);
///         async { Ok(()) }.boxed()
///     }
///     fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
///         // Dropping the staged writes is all it takes.
///         async { Ok(()) }.boxed()
///     }
/// }
///
/// #[derive(Clone)]
/// struct List(Arc<Mutex<Vec<String>>>);
///
/// impl TransactionProvider for List {
///     fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
///         let tx = Staged { list: self.0.clone(), writes: Vec::new() };
///         async move { Ok(Transaction::new(tx)) }.boxed()
///     }
/// }
///
/// /// What a handler does with the `Transaction` it finds among its request extensions
/// /// (`Extension<Transaction>` in axum).
/// async fn add(tx: &Transaction, name: &str) -> bool {
///     match tx.lock::<Staged>().await {
///         Some(mut staged) => {
///             staged.writes.push(name.to_owned());
///             true
///         }
///         None => false, // it has ended, or it is not ours
///     }
/// }
///
/// let list = List(Arc::default());
/// let layer = BatchLayer::new().route(
///     BatchRoute::path("/$batch")
///         .dialect(Dialect::odata_v4())
///         .transactions(list.clone()),
/// );
/// # let _ = layer;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// # let tx = list.begin().await.unwrap();
/// # assert!(add(&tx, "goat").await);
/// # drop(tx);
/// # });
/// ```
pub trait TransactionProvider: Send + Sync + 'static {
    /// Begins a transaction for one change set. An error (a [`Conflict`] when the database or
    /// its pool is busy) answers the change set and runs none of its items.
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>>;
}

/// The application's side of one transaction, held by value: how to commit it and how to roll
/// it back.
///
/// Exactly one of the two is called, once. An `Err` from `commit` must mean that nothing was
/// kept *and* that the transaction is closed: an implementation whose `COMMIT` fails rolls
/// back, or discards its connection, before it returns the error. Return a boxed [`Conflict`]
/// when the commit lost to a concurrent transaction (a serialization failure, a deadlock) or
/// the database was busy.
///
/// When the last handle of a [`Transaction`] still open goes (a panic, the client gone, a
/// timeout), `rollback` runs in a task spawned on the current tokio runtime; where there is no
/// runtime, the value is dropped, so a type whose drop undoes what it holds (a database
/// transaction does) is safe even there.
pub trait Transact: Send + 'static {
    /// Makes the change set's effects permanent.
    fn commit(self) -> BoxFuture<'static, Result<(), BoxError>>
    where
        Self: Sized;

    /// Undoes every effect of the change set.
    fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>>
    where
        Self: Sized;
}

/// A [`Transact`] with its type erased, so that a [`Transaction`] can hold any.
trait Erased: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn commit_boxed(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>>;
    fn rollback_boxed(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>>;
}

impl<T: Transact> Erased for T {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn commit_boxed(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        Transact::commit(*self)
    }

    fn rollback_boxed(self: Box<Self>) -> BoxFuture<'static, Result<(), BoxError>> {
        Transact::rollback(*self)
    }
}

/// Where the application's transaction lives while it is open. Dropped with the last handle
/// (every [`Transaction`] clone and every [`TransactionGuard`]): a transaction still open then
/// is rolled back.
struct Slot {
    open: Option<Box<dyn Erased>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(tx) = self.open.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(err) = tx.rollback_boxed().await {
                        tracing::warn!(error = %err, "rolling back an abandoned transaction failed");
                    }
                });
            }
            // No runtime to run the rollback on: the value's own drop undoes what it holds.
            Err(_) => drop(tx),
        }
    }
}

/// One change set's transaction, as items see it among their request extensions. Cloning it is
/// cheap; every clone is the same transaction.
///
/// See [`TransactionProvider`] for an example.
#[derive(Clone)]
pub struct Transaction {
    slot: Arc<Mutex<Slot>>,
    /// Set by the first end (commit or rollback), before it waits for its turn, so that a
    /// second end is refused at once.
    ended: Arc<AtomicBool>,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("ended", &self.ended.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

/// The application's transaction, lent to one item at a time by [`Transaction::lock`]. Other
/// items (and the commit) wait until it is dropped.
pub struct TransactionGuard<T> {
    inner: OwnedMappedMutexGuard<Slot, T>,
}

impl<T> Deref for TransactionGuard<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for TransactionGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T> fmt::Debug for TransactionGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionGuard").finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum End {
    Commit,
    Rollback,
}

impl Transaction {
    /// Wraps the application's transaction.
    pub fn new<T: Transact>(tx: T) -> Self {
        Transaction {
            slot: Arc::new(Mutex::new(Slot {
                open: Some(Box::new(tx)),
            })),
            ended: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Waits for its turn (one item at a time) and lends the application's transaction; `None`
    /// when it has ended or is not a `T`.
    pub async fn lock<T: Transact>(&self) -> Option<TransactionGuard<T>> {
        if self.has_ended() {
            return None;
        }
        let guard = self.slot.clone().lock_owned().await;
        let inner = tokio::sync::OwnedMutexGuard::try_map(guard, |slot| {
            slot.open.as_mut()?.as_any_mut().downcast_mut::<T>()
        })
        .ok()?;
        Some(TransactionGuard { inner })
    }

    /// Whether it has been committed or rolled back (or is being).
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Commits it, once item guards are dropped. Ends it exactly once across all clones: an
    /// `Err` from a second end says it had ended.
    pub(crate) fn commit(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.end(End::Commit)
    }

    /// Rolls it back; see [`Transaction::commit`].
    pub(crate) fn rollback(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.end(End::Rollback)
    }

    fn end(&self, how: End) -> BoxFuture<'static, Result<(), BoxError>> {
        if self.ended.swap(true, Ordering::AcqRel) {
            return async { Err("the transaction had already ended".into()) }.boxed();
        }
        let slot = self.slot.clone();
        async move {
            let open = slot.lock().await.open.take();
            match (open, how) {
                (Some(tx), End::Commit) => tx.commit_boxed().await,
                (Some(tx), End::Rollback) => tx.rollback_boxed().await,
                (None, _) => Err("the transaction had already ended".into()),
            }
        }
        .boxed()
    }
}

/// A conflict between concurrent change sets (a serialization failure, a deadlock) or a busy
/// database or pool. Returned, boxed, by [`TransactionProvider::begin`], [`Transact::commit`]
/// or a handler's error mapping; the change set is then answered `409 Conflict`, or
/// `503 Service Unavailable` with `Retry-After` when a retry after a while may succeed.
#[derive(Debug)]
pub struct Conflict {
    reason: String,
    retry_after: Option<Duration>,
}

impl Conflict {
    /// A conflict, said in words (it reaches the client).
    pub fn new(reason: impl Into<String>) -> Self {
        Conflict {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// Says that the same request may succeed after `d` (the database or its pool was busy).
    #[must_use]
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// How long a client should wait before it tries again, if it should.
    pub fn retry_after_duration(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The reason, as given to [`Conflict::new`].
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The first `Conflict` in `err` or the errors it was caused by.
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a Conflict> {
        let mut next = Some(err);
        while let Some(e) = next {
            if let Some(c) = e.downcast_ref::<Conflict>() {
                return Some(c);
            }
            next = e.source();
        }
        None
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl StdError for Conflict {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Counts {
        committed: AtomicUsize,
        rolled_back: AtomicUsize,
    }

    struct Probe {
        counts: Arc<Counts>,
        writes: Vec<u32>,
    }

    impl Transact for Probe {
        fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
            self.counts.committed.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }.boxed()
        }
        fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
            self.counts.rolled_back.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }.boxed()
        }
    }

    fn probe() -> (Transaction, Arc<Counts>) {
        let counts = Arc::new(Counts::default());
        let tx = Transaction::new(Probe {
            counts: counts.clone(),
            writes: Vec::new(),
        });
        (tx, counts)
    }

    #[tokio::test]
    async fn ends_exactly_once_across_clones() {
        let (tx, counts) = probe();
        let other = tx.clone();
        tx.lock::<Probe>().await.unwrap().writes.push(1);
        tx.commit().await.unwrap();
        assert!(other.rollback().await.is_err(), "a second end is refused");
        assert!(other.commit().await.is_err());
        assert!(
            other.lock::<Probe>().await.is_none(),
            "nothing to lend once ended"
        );
        assert_eq!(counts.committed.load(Ordering::SeqCst), 1);
        assert_eq!(counts.rolled_back.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn lends_only_its_own_type() {
        struct Other;
        impl Transact for Other {
            fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
                async { Ok(()) }.boxed()
            }
            fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
                async { Ok(()) }.boxed()
            }
        }
        let (tx, _) = probe();
        assert!(tx.lock::<Other>().await.is_none());
        assert!(tx.lock::<Probe>().await.is_some());
    }

    #[tokio::test]
    async fn the_commit_waits_for_the_item_that_holds_it() {
        let (tx, counts) = probe();
        let guard = tx.lock::<Probe>().await.unwrap();
        let commit = tokio::spawn(tx.commit());
        tokio::task::yield_now().await;
        assert_eq!(counts.committed.load(Ordering::SeqCst), 0);
        drop(guard);
        commit.await.unwrap().unwrap();
        assert_eq!(counts.committed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_last_handle_dropped_while_open_rolls_back() {
        let (tx, counts) = probe();
        let guard = tx.lock::<Probe>().await.unwrap();
        drop(tx);
        assert_eq!(
            counts.rolled_back.load(Ordering::SeqCst),
            0,
            "a guard still holds it"
        );
        drop(guard);
        for _ in 0..100 {
            if counts.rolled_back.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(counts.rolled_back.load(Ordering::SeqCst), 1);
        assert_eq!(counts.committed.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn without_a_runtime_the_value_is_dropped() {
        struct DropFlag(Arc<AtomicBool>);
        impl Drop for DropFlag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        impl Transact for DropFlag {
            fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
                async { Ok(()) }.boxed()
            }
            fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
                async { Ok(()) }.boxed()
            }
        }
        let flag = Arc::new(AtomicBool::new(false));
        drop(Transaction::new(DropFlag(flag.clone())));
        assert!(flag.load(Ordering::SeqCst));
    }

    #[test]
    fn a_conflict_is_found_in_an_error_chain() {
        let err: BoxError = Box::new(Conflict::new("busy").retry_after(Duration::from_secs(2)));
        let found = Conflict::find(&*err).unwrap();
        assert_eq!(found.retry_after_duration(), Some(Duration::from_secs(2)));
        assert_eq!(found.to_string(), "busy");
        let plain: BoxError = "disk full".into();
        assert!(Conflict::find(&*plain).is_none());
    }
}
