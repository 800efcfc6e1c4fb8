//! The application's transactions, which make a change set all or nothing.
//!
//! The layer cannot undo an HTTP call, so atomicity comes from the application: a
//! [`TransactionProvider`] begins a [`Transaction`] for each change set; every item of the change
//! set finds it among its request extensions (`Extension<Transaction>` in axum) and does its
//! work inside it, instead of on a connection of its own. The layer commits when every item
//! answered 2xx, and rolls back otherwise.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use futures_util::future::{BoxFuture, FutureExt};
//! use http_batch::{BoxError, Transact, Transaction, TransactionProvider};
//!
//! /// Writes staged in the transaction, applied to the store on commit.
//! struct Staged {
//!     store: Arc<Mutex<Vec<String>>>,
//!     writes: Mutex<Vec<String>>,
//! }
//!
//! impl Transact for Staged {
//!     fn commit(&self) -> BoxFuture<'static, Result<(), BoxError>> {
//!         let writes = std::mem::take(&mut *self.writes.lock().unwrap());
//!         self.store.lock().unwrap().extend(writes);
//!         async { Ok(()) }.boxed()
//!     }
//!     fn rollback(&self) -> BoxFuture<'static, Result<(), BoxError>> {
//!         self.writes.lock().unwrap().clear();
//!         async { Ok(()) }.boxed()
//!     }
//! }
//!
//! struct Store(Arc<Mutex<Vec<String>>>);
//!
//! impl TransactionProvider for Store {
//!     fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
//!         let tx = Staged { store: self.0.clone(), writes: Mutex::default() };
//!         async move { Ok(Transaction::new(tx)) }.boxed()
//!     }
//! }
//!
//! // In a handler: `Extension(tx): Extension<Transaction>`, then
//! // `tx.downcast_ref::<Staged>()` to stage a write.
//! ```

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::error::BoxError;

/// Begins the transactions that change sets run under. Give one to a route with
/// [`BatchRoute::transactions`](crate::BatchRoute::transactions).
pub trait TransactionProvider: Send + Sync + 'static {
    /// Begins a transaction for one change set. An error answers the change set `503` and runs
    /// none of its items.
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>>;
}

/// The application's side of one transaction: how to commit it and how to roll it back.
///
/// Each is called at most once, and only one of them. When the batch's client leaves while a
/// change set runs, `rollback` is called from the dropped change set (its future is spawned on
/// the current tokio runtime, if there is one). A type whose drop undoes what it holds, such as
/// a database transaction, is safe even where `rollback` could not run.
pub trait Transact: Send + Sync + 'static {
    /// Makes the change set's effects permanent. An error answers the change set `500`.
    fn commit(&self) -> BoxFuture<'static, Result<(), BoxError>>;

    /// Undoes every effect of the change set.
    fn rollback(&self) -> BoxFuture<'static, Result<(), BoxError>>;
}

/// One change set's transaction, as items see it among their request extensions. Cloning it is
/// cheap; every clone is the same transaction.
#[derive(Clone)]
pub struct Transaction {
    ops: Arc<dyn Transact>,
    any: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction").finish_non_exhaustive()
    }
}

impl Transaction {
    /// Wraps the application's transaction.
    pub fn new<T: Transact>(tx: T) -> Self {
        let tx = Arc::new(tx);
        Transaction {
            ops: tx.clone(),
            any: tx,
        }
    }

    /// The application's transaction, if it is a `T`.
    pub fn downcast_ref<T: Transact>(&self) -> Option<&T> {
        self.any.downcast_ref::<T>()
    }

    pub(crate) fn commit(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.ops.commit()
    }

    pub(crate) fn rollback(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.ops.rollback()
    }
}

/// A change set that could not go on because of another one: a serialization failure, a
/// deadlock, or a busy database or pool. Return it (boxed) from
/// [`TransactionProvider::begin`] or [`Transact::commit`]: the change set is answered `409`,
/// or, with [`retry_after`](Conflict::retry_after), `503` with `Retry-After`, and nothing of it
/// is kept.
#[derive(Debug)]
pub struct Conflict {
    reason: String,
    retry_after: Option<std::time::Duration>,
}

impl Conflict {
    /// A conflict, with the reason in words.
    pub fn new(reason: impl Into<String>) -> Self {
        Conflict {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// Says the change set may be sent again after `after` (a busy database, a full pool).
    pub fn retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// When the change set may be sent again, if that was said.
    pub fn retry_after_duration(&self) -> Option<std::time::Duration> {
        self.retry_after
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Conflict {}
