//! The "farm" API from Google's batch documentation, as an in-memory axum app.
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
//! | POST   | `/farm/v1/animals`            | creates; 409 if it exists, 400 on a bad body   |
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
//! With a token, every `/farm/...` call needs `Authorization: Bearer <token>`,
//! else 401 with `WWW-Authenticate: Bearer`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http_batch::BatchRouter;
use serde::Serialize;
use serde_json::{json, Value};
use tower_http::cors::{Any, CorsLayer};

#[path = "dialects.rs"]
mod dialects;

/// The longest sleep `/farm/v1/slow/{ms}` accepts.
pub const MAX_SLOW_MS: u64 = 60_000;

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

impl Animal {
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

type Animals = Arc<Mutex<BTreeMap<String, Animal>>>;

fn initial_animals() -> BTreeMap<String, Animal> {
    [
        ("pony", 34, "white"),
        ("sheep", 5, "green"),
        ("cow", 7, "black"),
    ]
    .into_iter()
    .map(|(name, age, color)| {
        let a = Animal {
            name: name.to_owned(),
            age: Some(age),
            color: Some(color.to_owned()),
        };
        (a.name.clone(), a)
    })
    .collect()
}

/// The list etag: derived from every item's name and etag, in name order.
fn list_etag(animals: &BTreeMap<String, Animal>) -> String {
    let mut canon = String::new();
    for a in animals.values() {
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
struct AnimalBody {
    name: Option<String>,
    age: Option<i64>,
    color: Option<String>,
}

/// Parses a POST/PUT body; the error is the message of a 400.
fn parse_body(body: &[u8]) -> Result<AnimalBody, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload: {e}"))?;
    let obj = value
        .as_object()
        .ok_or("Invalid JSON payload: expected an object.")?;
    let name = match obj.get("animalName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("animalName must be a string.".into()),
    };
    let age = match obj.get("animalAge") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or("animalAge must be an integer.")?),
    };
    let color = match obj.get("peltColor") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("peltColor must be a string.".into()),
    };
    Ok(AnimalBody { name, age, color })
}

async fn list_animals(State(animals): State<Animals>, headers: HeaderMap) -> Response {
    let animals = animals.lock().unwrap();
    let etag = list_etag(&animals);
    if none_match_hits(&headers, &etag) {
        return with_etag(StatusCode::NOT_MODIFIED.into_response(), &etag);
    }
    let list = AnimalListJson {
        kind: "farm#animalList",
        etag: etag.clone(),
        items: animals.values().map(Animal::to_json).collect(),
    };
    with_etag(Json(list).into_response(), &etag)
}

async fn get_animal(
    State(animals): State<Animals>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let animals = animals.lock().unwrap();
    let Some(animal) = animals.get(&name) else {
        return not_found(&name);
    };
    let etag = animal.etag();
    if none_match_hits(&headers, &etag) {
        return with_etag(StatusCode::NOT_MODIFIED.into_response(), &etag);
    }
    with_etag(Json(animal.to_json()).into_response(), &etag)
}

async fn insert_animal(State(animals): State<Animals>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let name = match body.name {
        Some(n) if !n.is_empty() && !n.contains('/') => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "animalName is not a valid name."),
        None => return error(StatusCode::BAD_REQUEST, "animalName is required."),
    };
    let mut animals = animals.lock().unwrap();
    if animals.contains_key(&name) {
        return error(
            StatusCode::CONFLICT,
            format!("Animal '{name}' already exists."),
        );
    }
    let animal = Animal {
        name,
        age: body.age,
        color: body.color,
    };
    store(&mut animals, animal)
}

/// Stores `animal` under its name and answers with it and its `ETag`.
fn store(animals: &mut BTreeMap<String, Animal>, animal: Animal) -> Response {
    let etag = animal.etag();
    let resp = Json(animal.to_json()).into_response();
    animals.insert(animal.name.clone(), animal);
    with_etag(resp, &etag)
}

fn precondition_failed(name: &str) -> Response {
    error(
        StatusCode::PRECONDITION_FAILED,
        format!("Animal '{name}' does not match the If-Match precondition."),
    )
}

async fn update_animal(
    State(animals): State<Animals>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut animals = animals.lock().unwrap();
    let Some(current) = animals.get(&name) else {
        return not_found(&name);
    };
    if !if_match_ok(&headers, &current.etag()) {
        return precondition_failed(&name);
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    // The name in the path wins over any animalName in the body.
    let animal = Animal {
        name,
        age: body.age,
        color: body.color,
    };
    store(&mut animals, animal)
}

async fn delete_animal(
    State(animals): State<Animals>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut animals = animals.lock().unwrap();
    let Some(current) = animals.get(&name) else {
        return not_found(&name);
    };
    if !if_match_ok(&headers, &current.etag()) {
        return precondition_failed(&name);
    }
    animals.remove(&name);
    StatusCode::NO_CONTENT.into_response()
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

/// The plain farm API, without batch support. With `Some(token)`, every
/// `/farm/...` call needs `Authorization: Bearer <token>`. Each call gets its
/// own fresh in-memory farm.
pub fn api(token: Option<String>) -> Router {
    api_on(token, Arc::new(Mutex::new(initial_animals())))
}

fn api_on(token: Option<String>, animals: Animals) -> Router {
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
        .with_state(animals);
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
        .allow_origin(Any)
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
/// Storage's at `POST /farm/v1?restype=container&comp=batch`; the page at `/`; and CORS.
pub fn app(token: Option<String>) -> BatchRouter {
    let animals: Animals = Arc::new(Mutex::new(initial_animals()));
    let batched =
        dialects::layer(animals.clone()).wrap_router(api_on(token, animals).route("/", get(page)));
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    let app = app(token);
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("farm server");
    });
    addr
}
