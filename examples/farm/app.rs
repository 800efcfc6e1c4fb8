//! The "farm" API from Google's batch documentation, as an axum app whose animals live in a
//! database through `sqlx`: SQLite by default, PostgreSQL when given a `postgres://` URL.
//!
//! Shared by the `farm` example (`examples/farm/main.rs`) and by the tests,
//! which include this file with `#[path = "../examples/farm/app.rs"] mod app;`.
//!
//! Routes (all JSON, errors in Google's shape
//! `{"error":{"code":N,"message":"...","status":"..."}}`):
//!
//! | method | path                          | answer                                         |
//! |--------|-------------------------------|------------------------------------------------|
//! | GET    | `/farm/v1/animals`            | `farm#animalList`, `ETag`, `If-None-Match`→304 |
//! | POST   | `/farm/v1/animals`            | 201 with `Location`; 409 if it exists, 400 on a bad body |
//! | GET    | `/farm/v1/animals/{name}`     | `farm#animal`, `ETag`, `If-None-Match`→304     |
//! | PUT    | `/farm/v1/animals/{name}`     | replaces; `If-Match` mismatch → 412            |
//! | DELETE | `/farm/v1/animals/{name}`     | 204                                            |
//! | GET    | `/farm/v1/farmers`            | `farm#farmerList` (fixed)                      |
//! | GET    | `/farm/v1/slow/{ms}`          | test helper: sleeps, then `{"sleptMs":N}`      |
//! | GET    | `/farm/v1/whoami`             | test helper: echoes auth header, query, id     |
//!
//! [`app`] adds the batch endpoints, a page at `/` that sends 20 calls one by one and as one
//! batch and shows both answers side by side (`page.html`; `/?api=http://host:port` points it at
//! another origin), and CORS, so that page may be served from anywhere.
//!
//! Every handler works inside a database transaction, the [`Tx`] extractor: in an OData change
//! set (or JSON atomicity group) it is the change set's, which the batch layer commits when
//! every item answered 2xx and rolls back otherwise; anywhere else it is the call's own. The
//! database isolates concurrent change sets and calls: a change set that rolls back undoes its
//! own writes and nobody else's.
//!
//! With a token, every `/farm/...` call needs `Authorization: Bearer <token>`,
//! else 401 with `WWW-Authenticate: Bearer`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::{BoxFuture, FutureExt, TryFutureExt};
use http_batch::sqlx::{DbError, Transactions, Tx};
use http_batch::BatchRouter;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, Executor};
use tower_http::cors::{Any as AnyOrigin, CorsLayer};

#[path = "dialects.rs"]
mod dialects;

/// The longest sleep `/farm/v1/slow/{ms}` accepts.
pub const MAX_SLOW_MS: u64 = 60_000;

/// The farm's database: its pool, and the transactions handlers and change sets run in.
pub type Db = Transactions<Any>;

/// One animal as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Animal {
    name: String,
    age: Option<i64>,
    color: Option<String>,
}

/// An animal as sent: field order as in Google's farm example. Absent
/// optional fields are left out, as Google's JSON APIs do.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnimalJson {
    kind: &'static str,
    etag: String,
    self_link: String,
    animal_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    animal_age: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pelt_color: Option<String>,
}

#[derive(Serialize)]
struct AnimalListJson {
    kind: &'static str,
    etag: String,
    items: Vec<AnimalJson>,
}

/// 64-bit FNV-1a: stable across runs and Rust versions, so etags are too.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// An animal as a row: name, age, color.
type Row = (String, Option<i64>, Option<String>);

impl Animal {
    fn from_row((name, age, color): Row) -> Self {
        Animal { name, age, color }
    }

    /// A quoted strong entity tag that changes whenever the animal does.
    fn etag(&self) -> String {
        let canon = json!([self.name, self.age, self.color]).to_string();
        format!("\"{:016x}\"", fnv1a(canon.as_bytes()))
    }

    fn to_json(&self) -> AnimalJson {
        AnimalJson {
            kind: "farm#animal",
            etag: self.etag(),
            self_link: format!("/farm/v1/animals/{}", self.name),
            animal_name: self.name.clone(),
            animal_age: self.age,
            pelt_color: self.color.clone(),
        }
    }
}

/// The table, and the animals every fresh farm starts with. Run once per database by the
/// first connection.
macro_rules! layout {
    () => {
        "DROP TABLE IF EXISTS animals;
    CREATE TABLE animals (name TEXT PRIMARY KEY, age BIGINT, color TEXT);
    INSERT INTO animals (name, age, color)
            VALUES ('pony', 34, 'white'), ('sheep', 5, 'green'), ('cow', 7, 'black');"
    };
}

/// Connects to the farm's database at `url` (`sqlite://...` or `postgres://...`) lazily: the
/// first connection lays the table out afresh with the three animals.
///
/// On SQLite, transactions begin with `BEGIN IMMEDIATE` and the file is in WAL mode, so readers
/// never wait for a writer. On PostgreSQL they run at the server's default isolation level
/// (read committed); a farm on PostgreSQL resets the `animals` table of that database when it
/// starts.
pub fn connect(url: &str) -> Result<Db, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    let laid = Arc::new(tokio::sync::Mutex::new(false));
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .after_connect(move |conn, _| {
            let laid = laid.clone();
            Box::pin(async move {
                let mut laid = laid.lock().await;
                if !*laid {
                    lay_out(conn, sqlite).await?;
                    *laid = true;
                }
                Ok(())
            })
        })
        .connect_lazy(url)?;
    let db = Transactions::new(pool);
    // `Any` does not know which database it talks to; SQLite needs its write lock up front.
    Ok(if sqlite {
        db.begin_statement("BEGIN IMMEDIATE")
    } else {
        db
    })
}

fn lay_out(conn: &mut AnyConnection, sqlite: bool) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    // WAL: readers do not wait for a writer, nor a writer for readers.
    let sql = if sqlite {
        concat!("PRAGMA journal_mode = WAL;", layout!())
    } else {
        layout!()
    };
    conn.execute(sqlx::raw_sql(sql)).map_ok(drop).boxed()
}

/// A fresh farm in a new SQLite file in the system's temporary directory. Files of farms whose
/// process has ended are removed first.
pub fn fresh() -> Db {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir();
    sweep(&dir);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("http-batch-farm-{}-{n}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    connect(&format!("sqlite://{}?mode=rwc", path.display())).expect("a valid SQLite URL")
}

/// Removes the database files of farms whose process is gone (Linux: no `/proc/<pid>`).
fn sweep(dir: &std::path::Path) {
    if std::path::Path::new("/proc/self").exists() {
        remove_files(dir, |pid| {
            !std::path::Path::new("/proc").join(pid.to_string()).exists()
        });
    }
}

/// Removes the files of this process's fresh farms; for when their pools are closed.
pub fn remove_fresh_files() {
    let own = std::process::id();
    remove_files(&std::env::temp_dir(), |pid| pid == own);
}

/// Removes the fresh farms' files (`http-batch-farm-<pid>-<n>.db`, with `-wal` and `-shm`)
/// whose process id passes `remove`.
fn remove_files(dir: &std::path::Path, remove: impl Fn(u32) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("http-batch-farm-"))
        else {
            continue;
        };
        let pid = rest
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if pid.is_some_and(&remove) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The list etag: derived from every item's name and etag, in name order.
fn list_etag(animals: &[Animal]) -> String {
    let mut canon = String::new();
    for a in animals {
        canon.push_str(&a.name);
        canon.push('\0');
        canon.push_str(&a.etag());
        canon.push('\0');
    }
    format!("\"{:016x}\"", fnv1a(canon.as_bytes()))
}

/// An error in Google's JSON error shape.
fn error(code: StatusCode, message: impl Into<String>) -> Response {
    let status = match code {
        StatusCode::BAD_REQUEST => "INVALID_ARGUMENT",
        StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
        StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::CONFLICT => "ALREADY_EXISTS",
        StatusCode::PRECONDITION_FAILED => "FAILED_PRECONDITION",
        StatusCode::METHOD_NOT_ALLOWED => "INVALID_ARGUMENT",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "INVALID_ARGUMENT",
        StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    let body = json!({"error": {
        "code": code.as_u16(),
        "message": message.into(),
        "status": status,
    }});
    (code, Json(body)).into_response()
}

fn not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("Animal '{name}' was not found."),
    )
}

/// The entity tags listed in an `If-Match`/`If-None-Match` header, weak
/// prefixes dropped; `None` when the header is absent.
fn listed_tags(headers: &HeaderMap, name: header::HeaderName) -> Option<Vec<String>> {
    let values: Vec<_> = headers.get_all(name).iter().collect();
    if values.is_empty() {
        return None;
    }
    let mut tags = Vec::new();
    for v in values {
        for t in String::from_utf8_lossy(v.as_bytes()).split(',') {
            let t = t.trim();
            let t = t.strip_prefix("W/").unwrap_or(t);
            if !t.is_empty() {
                tags.push(t.to_owned());
            }
        }
    }
    Some(tags)
}

/// True when `If-None-Match` names `etag` (or is `*`): answer 304.
fn none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    listed_tags(headers, header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.iter().any(|t| t == "*" || t == etag))
}

/// True when `If-Match` is absent, `*`, or names `etag`.
fn if_match_ok(headers: &HeaderMap, etag: &str) -> bool {
    match listed_tags(headers, header::IF_MATCH) {
        None => true,
        Some(tags) => tags.iter().any(|t| t == "*" || t == etag),
    }
}

fn with_etag(mut resp: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// The fields of a POST/PUT body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnimalBody {
    animal_name: Option<String>,
    animal_age: Option<i64>,
    pelt_color: Option<String>,
}

/// A body that is not an animal, as a 400 (or 415) in the farm's error shape.
fn bad_body(rejection: JsonRejection) -> Response {
    error(
        rejection.status(),
        format!("Invalid JSON payload: {}", rejection.body_text()),
    )
}

/// A database error as an answer, in the farm's error shape: 409 for a conflict with a
/// concurrent change, 503 with `Retry-After` when the database is busy, else 500.
fn db_failed(err: impl Into<DbError>) -> Response {
    err.into().into_response()
}

/// The animal called `name`, if there is one.
async fn find(tx: &mut Tx<Any>, name: &str) -> Result<Option<Animal>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as("SELECT name, age, color FROM animals WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(Animal::from_row))
}

/// Stores `animal` (new or replacing) and answers with it and its `ETag`.
async fn store(mut tx: Tx<Any>, animal: Animal, created: bool) -> Response {
    let sql = if created {
        "INSERT INTO animals (name, age, color) VALUES ($1, $2, $3)"
    } else {
        "UPDATE animals SET age = $2, color = $3 WHERE name = $1"
    };
    let written = sqlx::query(sql)
        .bind(&animal.name)
        .bind(animal.age)
        .bind(&animal.color)
        .execute(&mut *tx)
        .await;
    match written {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return error(
                StatusCode::CONFLICT,
                format!("Animal '{}' already exists.", animal.name),
            )
        }
        Err(e) => return db_failed(e),
    }
    if let Err(e) = tx.commit().await {
        return db_failed(e);
    }
    let etag = animal.etag();
    let resp = if created {
        let location = format!("/farm/v1/animals/{}", animal.name);
        (
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            Json(animal.to_json()),
        )
            .into_response()
    } else {
        Json(animal.to_json()).into_response()
    };
    with_etag(resp, &etag)
}

async fn list_animals(mut tx: Tx<Any>, headers: HeaderMap) -> Response {
    let rows = sqlx::query_as::<_, Row>("SELECT name, age, color FROM animals")
        .fetch_all(&mut *tx)
        .await;
    let mut animals: Vec<Animal> = match rows {
        Ok(rows) => rows.into_iter().map(Animal::from_row).collect(),
        Err(e) => return db_failed(e),
    };
    // Byte order, whatever the database's collation.
    animals.sort_by(|a, b| a.name.cmp(&b.name));
    let etag = list_etag(&animals);
    if none_match_hits(&headers, &etag) {
        return with_etag(StatusCode::NOT_MODIFIED.into_response(), &etag);
    }
    let list = AnimalListJson {
        kind: "farm#animalList",
        etag: etag.clone(),
        items: animals.iter().map(Animal::to_json).collect(),
    };
    with_etag(Json(list).into_response(), &etag)
}

async fn get_animal(mut tx: Tx<Any>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let animal = match find(&mut tx, &name).await {
        Ok(Some(a)) => a,
        Ok(None) => return not_found(&name),
        Err(e) => return db_failed(e),
    };
    let etag = animal.etag();
    if none_match_hits(&headers, &etag) {
        return with_etag(StatusCode::NOT_MODIFIED.into_response(), &etag);
    }
    with_etag(Json(animal.to_json()).into_response(), &etag)
}

async fn insert_animal(tx: Tx<Any>, body: Result<Json<AnimalBody>, JsonRejection>) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(rejection) => return bad_body(rejection),
    };
    let name = match body.animal_name {
        Some(n) if !n.is_empty() && !n.contains('/') => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "animalName is not a valid name."),
        None => return error(StatusCode::BAD_REQUEST, "animalName is required."),
    };
    let animal = Animal {
        name,
        age: body.animal_age,
        color: body.pelt_color,
    };
    store(tx, animal, true).await
}

fn precondition_failed(name: &str) -> Response {
    error(
        StatusCode::PRECONDITION_FAILED,
        format!("Animal '{name}' does not match the If-Match precondition."),
    )
}

async fn update_animal(
    mut tx: Tx<Any>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<AnimalBody>, JsonRejection>,
) -> Response {
    let current = match find(&mut tx, &name).await {
        Ok(Some(a)) => a,
        Ok(None) => return not_found(&name),
        Err(e) => return db_failed(e),
    };
    if !if_match_ok(&headers, &current.etag()) {
        return precondition_failed(&name);
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(rejection) => return bad_body(rejection),
    };
    // The name in the path wins over any animalName in the body.
    let animal = Animal {
        name,
        age: body.animal_age,
        color: body.pelt_color,
    };
    store(tx, animal, false).await
}

async fn delete_animal(mut tx: Tx<Any>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let current = match find(&mut tx, &name).await {
        Ok(Some(a)) => a,
        Ok(None) => return not_found(&name),
        Err(e) => return db_failed(e),
    };
    if !if_match_ok(&headers, &current.etag()) {
        return precondition_failed(&name);
    }
    let deleted = sqlx::query("DELETE FROM animals WHERE name = $1")
        .bind(&name)
        .execute(&mut *tx)
        .await;
    if let Err(e) = deleted {
        return db_failed(e);
    }
    match tx.commit().await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => db_failed(e),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FarmerJson {
    kind: &'static str,
    name: &'static str,
    farm_name: &'static str,
    animal_count: u32,
}

#[derive(Serialize)]
struct FarmerListJson {
    kind: &'static str,
    items: [FarmerJson; 2],
}

async fn list_farmers() -> Json<FarmerListJson> {
    let farmer = |name, farm_name, animal_count| FarmerJson {
        kind: "farm#farmer",
        name,
        farm_name,
        animal_count,
    };
    Json(FarmerListJson {
        kind: "farm#farmerList",
        items: [
            farmer("Old MacDonald", "MacDonald Farm", 3),
            farmer("Farmer Giles", "Ham", 1),
        ],
    })
}

/// Test helper: sleeps `{ms}` milliseconds (at most [`MAX_SLOW_MS`]), then
/// answers `{"sleptMs":N}`. Used to check that batch responses keep request
/// order when the parts finish out of order.
async fn slow(Path(ms): Path<String>) -> Response {
    match ms.parse::<u64>() {
        Ok(ms) if ms <= MAX_SLOW_MS => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Json(json!({ "sleptMs": ms })).into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            format!("ms must be an integer from 0 to {MAX_SLOW_MS}."),
        ),
    }
}

/// Test helper: echoes what the handler saw of the request, to check which
/// outer-request headers and query a batch part inherits.
/// `{"authorization": <Authorization or null>, "query": <raw query or null>,
/// "requestId": <x-request-id or null>}`.
async fn whoami(req: Request) -> Json<Value> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    Json(json!({
        "authorization": header("authorization"),
        "query": req.uri().query(),
        "requestId": header("x-request-id"),
    }))
}

async fn fallback() -> Response {
    error(StatusCode::NOT_FOUND, "The requested URL was not found.")
}

/// The bearer-token check for `/farm/...`, as an axum middleware.
async fn require_token(token: Arc<str>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/farm/") && req.uri().path() != "/farm" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let message = match given {
        Some(t) if t == &*token => return next.run(req).await,
        Some(_) => "Request had invalid authentication credentials.",
        None => "Request is missing required authentication credential.",
    };
    let mut resp = error(StatusCode::UNAUTHORIZED, message);
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// The plain farm API, without batch support, on a fresh SQLite farm of its own (see
/// [`fresh`]). With `Some(token)`, every `/farm/...` call needs `Authorization: Bearer <token>`.
pub fn api(token: Option<String>) -> Router {
    api_on(token, fresh())
}

/// The plain farm API over `db`.
pub fn api_on(token: Option<String>, db: Db) -> Router {
    let router = Router::new()
        .route("/farm/v1/animals", get(list_animals).post(insert_animal))
        .route(
            "/farm/v1/animals/{name}",
            get(get_animal).put(update_animal).delete(delete_animal),
        )
        .route("/farm/v1/farmers", get(list_farmers))
        .route("/farm/v1/slow/{ms}", get(slow))
        .route("/farm/v1/whoami", get(whoami))
        .fallback(fallback)
        .with_state(db);
    match token {
        Some(token) => {
            let token: Arc<str> = token.into();
            router.layer(middleware::from_fn(move |req: Request, next: Next| {
                require_token(token.clone(), req, next)
            }))
        }
        None => router,
    }
}

/// The page served at `/`: the same calls sent one by one and as one batch, side by side.
pub const PAGE: &str = include_str!("page.html");

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// CORS for the farm: any origin may call it, with the methods and headers `page.html` sends.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AnyOrigin)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
        ])
        // A browser then asks once per URL every ten minutes, not before every call.
        .max_age(Duration::from_secs(600))
}

/// The farm API with batch support in every dialect (see `dialects.rs`):
/// Google's at `/batch` and `/batch/farm/v1`, OData 4 and 2 at
/// `/odata/v4/farm/v1/$batch` and `/odata/v2/farm/v1/$batch`, Azure
/// Storage's at `POST /farm/v1?restype=container&comp=batch`; the page at `/`; and CORS. On a
/// fresh SQLite farm of its own (see [`fresh`]).
pub fn app(token: Option<String>) -> BatchRouter {
    app_on(token, fresh())
}

/// [`app`] over `db`.
pub fn app_on(token: Option<String>, db: Db) -> BatchRouter {
    let batched = dialects::layer(db.clone()).wrap_router(api_on(token, db).route("/", get(page)));
    // CORS wraps the batch layer, never the other way round. A browser sends one request for
    // the whole batch, so the preflight (`OPTIONS /batch/...`) and the
    // `Access-Control-Allow-Origin` it reads belong to that outer request: inside, the
    // preflight would reach the batch layer instead of CORS, and the CORS headers would land in
    // each item's nested answer, where no browser looks. The items are calls the server makes
    // to itself, not cross-origin requests, so they need no CORS. tower-http's CorsLayer
    // answers every OPTIONS itself, preflight or not, so neither the batch layer nor the
    // routes see one.
    batched.layer(cors())
}

/// Serves [`app`] on 127.0.0.1 at a free port in a tokio task; returns the
/// address once the listener is bound.
pub async fn spawn(token: Option<String>) -> SocketAddr {
    spawn_on(token, fresh()).await
}

/// Serves [`app_on`] `db` on 127.0.0.1 at a free port in a tokio task; returns the address.
pub async fn spawn_on(token: Option<String>, db: Db) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    let app = app_on(token, db);
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("farm server");
    });
    addr
}
