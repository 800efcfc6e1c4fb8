//! A farm API whose animals live in SQLite (embedded, through `rusqlite`), served with OData
//! batches whose change sets are SQL transactions.
//!
//! Shared by the `sqlite_farm` example (`examples/sqlite_farm/main.rs`) and by the tests, which
//! include this file with `#[path = "../examples/sqlite_farm/app.rs"] mod app;`.
//!
//! | method | path                       | answer                                           |
//! |--------|----------------------------|--------------------------------------------------|
//! | GET    | `/farm/v1/animals`         | `{"value":[{"animalName":..,"animalAge":..}]}`   |
//! | POST   | `/farm/v1/animals`         | `201` with `Location`; `409` if the name is taken |
//! | GET    | `/farm/v1/animals/{name}`  | the animal, or `404`                             |
//! | PATCH  | `/farm/v1/animals/{name}`  | sets `animalAge`; `404` if there is none         |
//! | DELETE | `/farm/v1/animals/{name}`  | `204`, or `404`                                  |
//!
//! Batches: OData 4 at `/odata/v4/farm/v1/$batch`, OData 2 at `/odata/v2/farm/v1/$batch`, item
//! URLs under `/farm/v1/`. The service has one connection. A change set takes it for as long as
//! it runs, inside `BEGIN` … `COMMIT` (or `ROLLBACK`), and every item of the change set works
//! through that transaction (the `Transaction` request extension), so a change set whose third
//! item fails leaves neither of the first two in the database.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Extension, Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::{BoxFuture, FutureExt};
use http_batch::format::Dialect;
use http_batch::{
    BatchLayer, BatchRoute, BatchRouter, BoxError, Transact, Transaction, TransactionProvider,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use tokio::sync::OwnedMutexGuard;

/// The one connection, taken by a change set for as long as it runs.
type Db = Arc<tokio::sync::Mutex<Connection>>;

/// Opens (and creates when new) the database at `path`, with the pony already on the farm.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS animals (name TEXT PRIMARY KEY, age INTEGER);
         INSERT OR IGNORE INTO animals (name, age) VALUES ('pony', 34);",
    )?;
    Ok(conn)
}

/// A change set's SQL transaction: the connection, held between `BEGIN` and its end.
pub struct SqlTransaction {
    conn: Mutex<Option<OwnedMutexGuard<Connection>>>,
}

impl SqlTransaction {
    fn end(&self, sql: &str) -> Result<(), BoxError> {
        let guard = self.conn.lock().unwrap().take();
        match guard {
            Some(conn) => conn.execute_batch(sql).map_err(Into::into),
            None => Ok(()),
        }
    }
}

impl Transact for SqlTransaction {
    fn commit(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let done = self.end("COMMIT");
        async move { done }.boxed()
    }

    fn rollback(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let done = self.end("ROLLBACK");
        async move { done }.boxed()
    }
}

impl Drop for SqlTransaction {
    /// A transaction neither committed nor rolled back (the batch was dropped) rolls back.
    fn drop(&mut self) {
        let _ = self.end("ROLLBACK");
    }
}

/// Begins a [`SqlTransaction`] per change set.
#[derive(Clone)]
pub struct SqlTransactions(Db);

impl TransactionProvider for SqlTransactions {
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
        let db = self.0.clone();
        async move {
            let conn = db.lock_owned().await;
            conn.execute_batch("BEGIN")?;
            Ok(Transaction::new(SqlTransaction {
                conn: Mutex::new(Some(conn)),
            }))
        }
        .boxed()
    }
}

/// Runs `f` on the change set's transaction when the item is in one, else on the connection.
async fn with_db<R>(
    db: &Db,
    tx: Option<Extension<Transaction>>,
    f: impl FnOnce(&Connection) -> R,
) -> R {
    if let Some(Extension(tx)) = &tx {
        if let Some(sql) = tx.downcast_ref::<SqlTransaction>() {
            let guard = sql.conn.lock().unwrap();
            if let Some(conn) = guard.as_deref() {
                return f(conn);
            }
        }
    }
    let conn = db.lock().await;
    f(&conn)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (
        status,
        Json(json!({ "error": { "code": status.as_u16(), "message": message } })),
    )
        .into_response()
}

fn animal(name: &str, age: Option<i64>) -> Value {
    json!({ "animalName": name, "animalAge": age })
}

async fn list(State(db): State<Db>, tx: Option<Extension<Transaction>>) -> Response {
    let rows = with_db(&db, tx, |c| -> rusqlite::Result<Vec<Value>> {
        let mut stmt = c.prepare("SELECT name, age FROM animals ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok(animal(&r.get::<_, String>(0)?, r.get(1)?)))?;
        rows.collect()
    })
    .await;
    match rows {
        Ok(rows) => Json(json!({ "value": rows })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn insert(
    State(db): State<Db>,
    tx: Option<Extension<Transaction>>,
    Json(body): Json<Value>,
) -> Response {
    let Some(name) = body["animalName"]
        .as_str()
        .filter(|n| !n.is_empty() && !n.contains('/'))
    else {
        return error(StatusCode::BAD_REQUEST, "animalName is required");
    };
    let age = body["animalAge"].as_i64();
    let name = name.to_owned();
    let done = with_db(&db, tx, |c| {
        c.execute(
            "INSERT INTO animals (name, age) VALUES (?1, ?2)",
            params![name, age],
        )
    })
    .await;
    match done {
        Ok(_) => (
            StatusCode::CREATED,
            [(header::LOCATION, format!("/farm/v1/animals/{name}"))],
            Json(animal(&name, age)),
        )
            .into_response(),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            error(
                StatusCode::CONFLICT,
                format!("animal '{name}' already exists"),
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn fetch(
    State(db): State<Db>,
    tx: Option<Extension<Transaction>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let row = with_db(&db, tx, |c| {
        c.query_row(
            "SELECT age FROM animals WHERE name = ?1",
            params![name],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()
    })
    .await;
    match row {
        Ok(Some(age)) => Json(animal(&name, age)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no animal '{name}'")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn patch(
    State(db): State<Db>,
    tx: Option<Extension<Transaction>>,
    UrlPath(name): UrlPath<String>,
    Json(body): Json<Value>,
) -> Response {
    let age = body["animalAge"].as_i64();
    let done = with_db(&db, tx, |c| {
        c.execute(
            "UPDATE animals SET age = ?2 WHERE name = ?1",
            params![name, age],
        )
    })
    .await;
    match done {
        Ok(0) => error(StatusCode::NOT_FOUND, format!("no animal '{name}'")),
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn remove(
    State(db): State<Db>,
    tx: Option<Extension<Transaction>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let done = with_db(&db, tx, |c| {
        c.execute("DELETE FROM animals WHERE name = ?1", params![name])
    })
    .await;
    match done {
        Ok(0) => error(StatusCode::NOT_FOUND, format!("no animal '{name}'")),
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The API over `conn`, with OData 4 and OData 2 batches whose change sets are SQL transactions.
pub fn app(conn: Connection) -> BatchRouter {
    let db: Db = Arc::new(tokio::sync::Mutex::new(conn));
    let api = Router::new()
        .route("/farm/v1/animals", get(list).post(insert))
        .route(
            "/farm/v1/animals/{name}",
            get(fetch).patch(patch).delete(remove),
        )
        .with_state(db.clone());
    let tx = SqlTransactions(db);
    BatchLayer::new()
        .route(
            BatchRoute::path("/odata/v4/farm/v1/$batch")
                .dialect(Dialect::odata_v4())
                .service_root("/farm/v1")
                .transactions(tx.clone()),
        )
        .route(
            BatchRoute::path("/odata/v2/farm/v1/$batch")
                .dialect(Dialect::odata_v2())
                .service_root("/farm/v1")
                .transactions(tx),
        )
        .wrap_router(api)
}

/// Serves [`app`] over the database at `path` on 127.0.0.1 at a free port; returns the address.
pub async fn spawn(path: &Path) -> SocketAddr {
    let conn = open(path).expect("open the database");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let app = app(conn);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("sqlite farm server")
    });
    addr
}
