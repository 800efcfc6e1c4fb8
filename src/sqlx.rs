//! Change sets as database transactions over an [`sqlx`] pool, and the [`Tx`]
//! extractor that hands a handler its transaction (feature `sqlx`).
//!
//! [`Transactions`] is a [`TransactionProvider`] over a `sqlx::Pool`: give it to the batch
//! routes that take change sets, and to the router as its state. A handler then takes a
//! [`Tx`] and runs its queries on it (`query.execute(&mut *tx)`). The same handler works in
//! every way it is called:
//!
//! - in a change set, `Tx` is the change set's transaction (one item at a time), which the
//!   layer commits when every item answered 2xx and rolls back otherwise;
//! - alone, directly or as a batch item outside any change set, `Tx` is a transaction of its
//!   own, which `tx.commit().await` commits (in a change set that call does nothing: the layer
//!   commits) and which is rolled back if the handler returns without committing.
//!
//! Begins wait for a pool connection at most [`Transactions::acquire_timeout`] (5 seconds by
//! default); past it, the change set or the call is answered `503` with `Retry-After`. On
//! SQLite a transaction begins with `BEGIN IMMEDIATE`, so that it takes the write lock up
//! front: a deferred transaction that reads and then writes can deadlock with another into
//! `SQLITE_BUSY`. On PostgreSQL it begins with `BEGIN`, at the server's default isolation level
//! (read committed unless configured otherwise); [`Transactions::isolation`] chooses another.
//!
//! A `COMMIT` that fails (a deferred constraint, a serialization failure) leaves nothing open:
//! the connection is rolled back, or closed when that fails, before the error is returned, and
//! the change set is answered that nothing of it was kept. [`DbError`] turns `sqlx` errors in
//! handlers into answers: a serialization failure or a deadlock is `409 Conflict`, a busy or
//! locked database or an exhausted pool `503` with `Retry-After`, anything else `500`.
//!
//! # Example
//!
//! ```
//! use axum::{http::StatusCode, routing::post, Router};
//! use http_batch::format::Dialect;
//! use http_batch::sqlx::{DbError, Transactions, Tx};
//! use http_batch::{BatchLayer, BatchRoute};
//! use sqlx::Sqlite;
//!
//! async fn add(mut tx: Tx<Sqlite>, name: String) -> Result<StatusCode, DbError> {
//!     sqlx::query("INSERT INTO animals (name) VALUES (?)")
//!         .bind(name)
//!         .execute(&mut *tx)
//!         .await?;
//!     tx.commit().await?; // does nothing in a change set, where the layer commits
//!     Ok(StatusCode::CREATED)
//! }
//!
//! # async fn make() -> Result<(), sqlx::Error> {
//! let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
//! let db = Transactions::new(pool);
//! let api = Router::new()
//!     .route("/animals", post(add))
//!     .with_state(db.clone());
//! let app = BatchLayer::new()
//!     .route(BatchRoute::path("/$batch").dialect(Dialect::odata_v4()).transactions(db))
//!     .wrap_router(api);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! On PostgreSQL, with serializable change sets and a shorter wait for a connection:
//!
//! ```
//! use std::time::Duration;
//! use http_batch::sqlx::{Isolation, Transactions};
//!
//! # fn make(pool: sqlx::PgPool) {
//! let db = Transactions::new(pool)
//!     .isolation(Isolation::Serializable)
//!     .acquire_timeout(Duration::from_secs(1));
//! # let _ = db;
//! # }
//! ```

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use ::sqlx::pool::PoolConnection;
use ::sqlx::{Database, Executor, Pool};
use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, FutureExt};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};

use crate::error::BoxError;
use crate::transaction::{Conflict, Transact, Transaction, TransactionGuard, TransactionProvider};

/// How long a begin waits for a pool connection by default: long enough to ride out a burst,
/// short enough that a client hears `503` well before its own timeout.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a `ROLLBACK` (after a failed commit, or for an abandoned transaction) may take
/// before the connection is closed instead: closing it ends the transaction too.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client is told to wait before it retries when the database or its pool was busy.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The isolation level of the transactions a [`Transactions`] begins, on databases that take
/// `BEGIN ISOLATION LEVEL ...` (PostgreSQL). SQLite's transactions are serializable already;
/// there it changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// Each statement sees what was committed before it began (PostgreSQL's default).
    ReadCommitted,
    /// Every statement sees what was committed before the transaction's first statement.
    RepeatableRead,
    /// As if the transactions ran one after another; one that cannot be ordered so fails
    /// (answered `409 Conflict`).
    Serializable,
}

impl Isolation {
    fn begin(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED",
            Isolation::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            Isolation::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        }
    }
}

fn is_sqlite<DB: Database>() -> bool {
    DB::NAME == "SQLite"
}

/// Begins database transactions over an `sqlx` pool: for change sets (it is a
/// [`TransactionProvider`]) and for the [`Tx`] extractor (give it to the router as its state,
/// or make it reachable from the state with [`FromRef`]). Cloning it is cheap.
///
/// See the [module docs](self) for an example.
pub struct Transactions<DB: Database> {
    pool: Pool<DB>,
    acquire_timeout: Duration,
    begin: Arc<str>,
}

impl<DB: Database> Clone for Transactions<DB> {
    fn clone(&self) -> Self {
        Transactions {
            pool: self.pool.clone(),
            acquire_timeout: self.acquire_timeout,
            begin: self.begin.clone(),
        }
    }
}

impl<DB: Database> fmt::Debug for Transactions<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transactions")
            .field("database", &DB::NAME)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("begin", &self.begin)
            .finish()
    }
}

impl<DB: Database> Transactions<DB> {
    /// Transactions over `pool`: `BEGIN IMMEDIATE` on SQLite, `BEGIN` elsewhere; a wait of at
    /// most 5 seconds for a connection.
    pub fn new(pool: Pool<DB>) -> Self {
        let begin = if is_sqlite::<DB>() {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        Transactions {
            pool,
            acquire_timeout: ACQUIRE_TIMEOUT,
            begin: begin.into(),
        }
    }

    /// How long a begin waits for a free pool connection; past it, the change set (or the
    /// call) is answered `503` with `Retry-After`.
    #[must_use]
    pub fn acquire_timeout(mut self, wait: Duration) -> Self {
        self.acquire_timeout = wait;
        self
    }

    /// The isolation level on PostgreSQL (and other databases that take
    /// `BEGIN ISOLATION LEVEL ...`); ignored on SQLite, whose transactions are serializable.
    #[must_use]
    pub fn isolation(mut self, level: Isolation) -> Self {
        if !is_sqlite::<DB>() {
            self.begin = level.begin().into();
        }
        self
    }

    /// The statement that begins each transaction, for databases or settings the other
    /// options do not cover (`"BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"`).
    #[must_use]
    pub fn begin_statement(mut self, sql: impl Into<String>) -> Self {
        self.begin = sql.into().into();
        self
    }

    /// The pool, for work outside any transaction.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }
}

impl<DB: Database> Transactions<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Takes a connection (waiting at most [`Transactions::acquire_timeout`]) and begins a
    /// transaction on it. A busy pool or database is a [`Conflict`] with a retry-after.
    pub async fn begin_transaction(&self) -> Result<SqlxTransaction<DB>, BoxError> {
        let acquire = tokio::time::timeout(self.acquire_timeout, self.pool.acquire());
        let mut conn = match acquire.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => return Err(classify(err)),
            Err(_) => {
                return Err(Box::new(
                    Conflict::new(format!(
                        "no database connection was free within {} ms",
                        self.acquire_timeout.as_millis()
                    ))
                    .retry_after(RETRY_AFTER),
                ))
            }
        };
        exec::<DB>(&mut conn, &self.begin).await.map_err(classify)?;
        Ok(SqlxTransaction {
            conn: Some(conn),
            abandon: |conn| roll_back(conn).boxed(),
        })
    }
}

impl<DB: Database> TransactionProvider for Transactions<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
        let this = self.clone();
        async move { Ok(Transaction::new(this.begin_transaction().await?)) }.boxed()
    }
}

/// One open database transaction: a pool connection between `BEGIN` and its end. Derefs to the
/// driver's connection, so queries run on it with `.execute(&mut *tx)`.
///
/// Dropped while open, it rolls back (in a task on the current tokio runtime; without one, its
/// connection is closed, which ends the transaction on the server).
pub struct SqlxTransaction<DB: Database> {
    /// `Some` until commit or rollback takes it.
    conn: Option<PoolConnection<DB>>,
    /// How its drop rolls back, made where the driver's bounds are known.
    abandon: fn(PoolConnection<DB>) -> BoxFuture<'static, Result<(), BoxError>>,
}

impl<DB: Database> fmt::Debug for SqlxTransaction<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxTransaction")
            .field("database", &DB::NAME)
            .field("open", &self.conn.is_some())
            .finish()
    }
}

const OPEN: &str = "an SqlxTransaction is open until its commit or rollback takes it";

impl<DB: Database> Deref for SqlxTransaction<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.conn.as_ref().expect(OPEN)
    }
}

impl<DB: Database> DerefMut for SqlxTransaction<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.conn.as_mut().expect(OPEN)
    }
}

/// Runs one statement that returns no rows.
fn exec<'c, DB>(
    conn: &'c mut DB::Connection,
    sql: &'c str,
) -> BoxFuture<'c, Result<(), ::sqlx::Error>>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
{
    // A plain function with a boxed future: an `async` block over the generic executor trips
    // the compiler's proof that the future is `Send`.
    Executor::execute(conn, ::sqlx::raw_sql(sql))
        .map(|done| done.map(drop))
        .boxed()
}

/// Rolls back on `conn`; when that fails or takes too long, closes the connection instead, so
/// that no transaction stays open either way. The error says which happened.
async fn roll_back<DB: Database>(mut conn: PoolConnection<DB>) -> Result<(), BoxError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let rollback = exec::<DB>(&mut conn, "ROLLBACK");
    let failure = match tokio::time::timeout(ROLLBACK_TIMEOUT, rollback).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no answer within {} ms", ROLLBACK_TIMEOUT.as_millis()),
    };
    // Closing the connection ends its transaction on the server.
    conn.close_on_drop();
    drop(conn);
    Err(format!("ROLLBACK failed ({failure}); the connection was closed instead").into())
}

impl<DB: Database> Transact for SqlxTransaction<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn commit(mut self) -> BoxFuture<'static, Result<(), BoxError>> {
        let conn = self.conn.take();
        async move {
            let Some(mut conn) = conn else {
                return Err("the transaction had already ended".into());
            };
            let err = match exec::<DB>(&mut conn, "COMMIT").await {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            // PostgreSQL ends a transaction whose COMMIT failed; SQLite keeps it open (a
            // deferred foreign key, a busy database). Either way nothing may stay open.
            if let Err(rollback) = roll_back(conn).await {
                tracing::warn!(error = %rollback, "after a failed COMMIT");
            }
            Err(classify(err))
        }
        .boxed()
    }

    fn rollback(mut self) -> BoxFuture<'static, Result<(), BoxError>> {
        let conn = self.conn.take();
        async move {
            match conn {
                Some(conn) => roll_back(conn).await,
                None => Err("the transaction had already ended".into()),
            }
        }
        .boxed()
    }
}

impl<DB: Database> Drop for SqlxTransaction<DB> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // Without a runtime to roll back on, closing the connection ends the transaction.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            conn.close_on_drop();
            return;
        };
        let rollback = (self.abandon)(conn);
        handle.spawn(async move {
            if let Err(err) = rollback.await {
                tracing::warn!(error = %err, "rolling back an abandoned transaction");
            }
        });
    }
}

/// A serialization failure or deadlock (PostgreSQL), or a busy or locked database (SQLite,
/// PostgreSQL's lock timeout), or an exhausted pool, as a [`Conflict`]; `None` for anything
/// else.
pub fn conflict(err: &::sqlx::Error) -> Option<Conflict> {
    match err {
        ::sqlx::Error::PoolTimedOut => {
            Some(Conflict::new("no database connection was free in time").retry_after(RETRY_AFTER))
        }
        ::sqlx::Error::Database(db) => {
            let code = db.code()?;
            let message = db.message();
            match &*code {
                // serialization_failure, deadlock_detected
                "40001" | "40P01" => Some(Conflict::new(format!(
                    "the change conflicted with a concurrent one ({message}); nothing of it was \
                     kept, and sending it again may succeed"
                ))),
                // PostgreSQL's lock_not_available; SQLite's BUSY and LOCKED, with their
                // extended codes
                "55P03" | "5" | "261" | "517" | "773" | "6" | "262" | "518" => Some(
                    Conflict::new(format!("the database is busy ({message})"))
                        .retry_after(RETRY_AFTER),
                ),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A `sqlx` error as a boxed error, a [`Conflict`] when it is one.
fn classify(err: ::sqlx::Error) -> BoxError {
    match conflict(&err) {
        Some(c) => Box::new(c),
        None => Box::new(err),
    }
}

/// A handler's database error as an answer: `409 Conflict` for a serialization failure or a
/// deadlock, `503 Service Unavailable` with `Retry-After` for a busy or locked database or an
/// exhausted pool, `500` for anything else. The body is JSON that says which, in words.
///
/// `?` turns a `sqlx::Error` into one:
///
/// ```
/// # use http_batch::sqlx::{DbError, Tx};
/// async fn count(mut tx: Tx<sqlx::Sqlite>) -> Result<String, DbError> {
///     let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM animals")
///         .fetch_one(&mut *tx)
///         .await?;
///     Ok(n.to_string())
/// }
/// ```
#[derive(Debug)]
pub struct DbError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

impl DbError {
    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn from_box(err: BoxError) -> Self {
        if let Some(c) = Conflict::find(&*err) {
            return DbError::from_conflict(c);
        }
        if let Some(sqlx_err) = err.downcast_ref::<::sqlx::Error>() {
            return DbError::internal(sqlx_err);
        }
        tracing::error!(error = %err, "database error");
        DbError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the database failed: {err}"),
            retry_after: None,
        }
    }

    fn from_conflict(c: &Conflict) -> Self {
        DbError {
            status: if c.retry_after_duration().is_some() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::CONFLICT
            },
            message: c.reason().to_owned(),
            retry_after: c.retry_after_duration(),
        }
    }

    fn internal(err: &::sqlx::Error) -> Self {
        // The details (table names, constraint names) stay in the server's log.
        tracing::error!(error = %err, "database error");
        DbError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "the database failed this request; nothing of it was kept".into(),
            retry_after: None,
        }
    }
}

impl From<::sqlx::Error> for DbError {
    fn from(err: ::sqlx::Error) -> Self {
        match conflict(&err) {
            Some(c) => DbError::from_conflict(&c),
            None => DbError::internal(&err),
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl IntoResponse for DbError {
    fn into_response(self) -> Response {
        let mut res = crate::error::error_response(self.status, &self.message).map(Into::into);
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs().max(1);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// A handler's database transaction: the change set's when the call is an item of one, else
/// one of its own (see the [module docs](self)). Derefs to the driver's connection:
/// `query.execute(&mut *tx)`.
///
/// Extracting it needs [`Transactions<DB>`] from the router's state ([`FromRef`]). When no
/// transaction could begin, the call is answered with a [`DbError`] (`503` with `Retry-After`
/// for an exhausted pool).
pub struct Tx<DB: Database>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    kind: Kind<DB>,
}

enum Kind<DB: Database>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// The change set's transaction, lent to this item until the handler returns.
    ChangeSet(TransactionGuard<SqlxTransaction<DB>>),
    /// The handler's own.
    Own(SqlxTransaction<DB>),
}

impl<DB: Database> fmt::Debug for Tx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::ChangeSet(_) => "change set",
            Kind::Own(_) => "own",
        };
        f.debug_struct("Tx").field("kind", &kind).finish()
    }
}

impl<DB: Database> Tx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Whether this is a change set's transaction, which the layer commits.
    pub fn in_change_set(&self) -> bool {
        matches!(self.kind, Kind::ChangeSet(_))
    }

    /// Commits the handler's own transaction. In a change set it does nothing: the layer
    /// commits the change set when every item answered 2xx.
    pub async fn commit(self) -> Result<(), DbError> {
        match self.kind {
            Kind::ChangeSet(_) => Ok(()),
            Kind::Own(tx) => Transact::commit(tx).await.map_err(DbError::from_box),
        }
    }

    /// Rolls back the handler's own transaction (dropping it does too). In a change set it does
    /// nothing: answer with a status that is not 2xx, and the layer rolls the change set back.
    pub async fn rollback(self) -> Result<(), DbError> {
        match self.kind {
            Kind::ChangeSet(_) => Ok(()),
            Kind::Own(tx) => Transact::rollback(tx).await.map_err(DbError::from_box),
        }
    }
}

impl<DB: Database> Deref for Tx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match &self.kind {
            Kind::ChangeSet(guard) => guard,
            Kind::Own(tx) => tx,
        }
    }
}

impl<DB: Database> DerefMut for Tx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match &mut self.kind {
            Kind::ChangeSet(guard) => &mut *guard,
            Kind::Own(tx) => tx,
        }
    }
}

impl<S, DB> FromRequestParts<S> for Tx<DB>
where
    S: Send + Sync,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    Transactions<DB>: FromRef<S>,
{
    type Rejection = DbError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(shared) = parts.extensions.get::<Transaction>().cloned() {
            return match shared.lock::<SqlxTransaction<DB>>().await {
                Some(guard) => Ok(Tx {
                    kind: Kind::ChangeSet(guard),
                }),
                // Running on a transaction of its own instead would break the change set's
                // all-or-nothing promise.
                None => Err(DbError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: if shared.has_ended() {
                        "the change set's transaction has ended; nothing was run".into()
                    } else {
                        format!(
                            "this change set runs under a transaction that is not a {} \
                             transaction of http_batch::sqlx; nothing was run",
                            DB::NAME
                        )
                    },
                    retry_after: None,
                }),
            };
        }
        let db = Transactions::<DB>::from_ref(state);
        match db.begin_transaction().await {
            Ok(tx) => Ok(Tx {
                kind: Kind::Own(tx),
            }),
            Err(err) => Err(DbError::from_box(err)),
        }
    }
}
