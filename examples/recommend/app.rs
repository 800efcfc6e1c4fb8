//! A small recommendation service with batch support, as an in-memory axum app.
//!
//! Shared by the `recommend` example (`examples/recommend/main.rs`) and by `tests/recommend.rs`,
//! which includes this file with `#[path = "../examples/recommend/app.rs"] mod recommend;`.
//!
//! Routes:
//!
//! | method | path                                   | answer                                      |
//! |--------|----------------------------------------|---------------------------------------------|
//! | GET    | `/recomms/users/{user}/items?count=N`  | `{"recommId","recomms":[{"id"}]}`           |
//! | POST   | `/callback`                            | reports what was delivered: `{"code":0,...}`|
//! | GET    | `/callback/{predictRequestId}`         | the delivery recorded for that id           |
//! | POST   | `/batch`                               | multipart or JSON batch (the standard ones) |
//! | POST   | `/rec/batch/`                          | the custom format in `rec_format.rs`        |
//!
//! **Request ids.** tower-http's `SetRequestIdLayer` and `PropagateRequestIdLayer` sit *outside*
//! the batch layer. A plain call gets a UUID in `x-request-id` (unless it brought its own), and
//! its response carries it back. A batch gets one too; the batch layer then gives every item
//! `<batch id>-<index>` (unless the item set its own) and puts it on the item's response. The
//! recommendation handler uses that header as its `recommId`, so the id a client sees on the
//! item's response is the id it reports in the delivery callback. Outside the layers (calling
//! `api()` directly) the handler makes up an id itself.
//!
//! Don't read tower-http's `RequestId` *extension* in a batch item: items inherit the outer
//! request's extensions, so it holds the batch's id, not the item's. The header is the item's.
//!
//! **Distinct recommendations.** With `distinctRecomms=true` (a query parameter on the batch
//! request, which items inherit, or the envelope field of the custom format), the
//! recommendation items of one batch never repeat an item id. The set of ids handed out so far
//! lives in the batch's shared [`BatchStore`](http_batch::BatchStore), so it is per batch, and
//! each pick happens inside one `update` call, so concurrent items cannot take the same id.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_batch::{BatchContext, BatchLayer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

#[path = "rec_format.rs"]
mod rec_format;

pub use rec_format::{DistinctRecomms, RecFormat};

/// How many items the catalogue holds: `item-000` to `item-119`.
pub const CATALOGUE_SIZE: usize = 120;
/// Recommendations per call when `count` is not given.
pub const DEFAULT_COUNT: usize = 5;
/// The largest `count` accepted.
pub const MAX_COUNT: usize = 100;
/// How many issued recommendation ids are remembered for callbacks. Older ones are forgotten
/// (a callback for them gets `404`), so memory stays bounded however long the server runs.
pub const MAX_ISSUED: usize = 100_000;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of catalogue item `i`.
pub fn item_id(i: usize) -> String {
    format!("item-{i:03}")
}

/// 64-bit FNV-1a with a final mix: stable across runs and Rust versions, so rankings are too.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") hash differently.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's high bits barely change with the last byte, so ids that differ only at the end
    // would rank side by side; a final mix (MurmurHash3's fmix64) spreads them out.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The whole catalogue, best first for `user`: a fixed pseudo-random order per user.
pub fn ranking(user: &str) -> Vec<String> {
    let mut ids: Vec<String> = (0..CATALOGUE_SIZE).map(item_id).collect();
    ids.sort_by_cached_key(|id| {
        (
            Reverse(fnv1a(&[user.as_bytes(), id.as_bytes()])),
            id.clone(),
        )
    });
    ids
}

/// One delivered item, as the callback reported it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Delivered {
    /// The item id.
    pub id: String,
    /// Where it was shown, if the caller said, kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<Position>,
    /// Anything else the caller attached. The engine's delivery API sends it as a JSON-encoded
    /// string (`"{\"reason\":\"promo\"}"`); such a string is decoded, so the value is the same
    /// whichever way it came. A string that is not JSON is kept as a string.
    #[serde(
        default,
        deserialize_with = "json_or_encoded",
        skip_serializing_if = "Option::is_none"
    )]
    pub extra: Option<Value>,
}

/// Where an item was shown: a number (`1`), or a slot name as the engine's delivery API sends it
/// (`"position1"`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Position {
    /// A position given as a number.
    Index(u64),
    /// A position given as a string.
    Name(String),
}

impl Position {
    /// The position's number: the number itself, or the digits of `"position<N>"` (or of a
    /// string that is all digits).
    pub fn index(&self) -> Option<u64> {
        match self {
            Position::Index(n) => Some(*n),
            Position::Name(name) => name.strip_prefix("position").unwrap_or(name).parse().ok(),
        }
    }
}

/// `extra` as a JSON value, or as a string that holds one.
fn json_or_encoded<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        Some(Value::String(text)) => {
            Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
        }
        other => other,
    })
}

/// The body of `POST /callback`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Callback {
    /// The user the recommendation was for.
    pub uid: String,
    /// Where it was shown (free text).
    #[serde(default)]
    pub scene: String,
    /// The `recommId` (the item's `x-request-id`) being reported.
    pub predict_request_id: String,
    /// Exactly what was delivered: possibly fewer, more or other items than recommended.
    pub items: Vec<Delivered>,
}

struct Issued {
    user: String,
    delivery: Option<Callback>,
}

#[derive(Default)]
struct Memory {
    issued: HashMap<String, Issued>,
    /// Issue order, to forget the oldest ids first.
    order: VecDeque<String>,
    /// Per user: every item a callback reported, never recommended again.
    delivered: HashMap<String, HashSet<String>>,
}

#[derive(Clone, Default)]
struct AppState(Arc<Mutex<Memory>>);

impl AppState {
    fn lock(&self) -> MutexGuard<'_, Memory> {
        // Every update below leaves the maps consistent at each step, so a poisoned lock is safe
        // to keep using.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The ids already handed out by the recommendation items of one batch.
#[derive(Default)]
struct Seen(HashSet<String>);

/// The API routes, without batch support or request-id layers.
pub fn api() -> Router {
    Router::new()
        .route("/recomms/users/{user}/items", get(recommend))
        .route("/callback", post(callback))
        .route("/callback/{predict_request_id}", get(delivery))
        .with_state(AppState::default())
}

/// The whole service: request ids, the standard batch formats at `/batch`, and [`RecFormat`]
/// at `/rec/batch/`.
pub fn app() -> Router {
    let batched = BatchLayer::new()
        .path_with_format("/rec/batch/", RecFormat)
        .wrap_router(api());
    // Outside the batch layer, so the batch request itself gets an id for its items to derive
    // theirs from, and so plain calls get one too.
    let ids = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .service(batched);
    Router::new().fallback_service(ids)
}

/// Serves [`app`] on a fresh port of 127.0.0.1 and returns its address.
pub async fn spawn() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    tokio::spawn(async move {
        axum::serve(listener, app())
            .await
            .expect("recommend server");
    });
    addr
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({ "code": status.as_u16(), "message": message.into() });
    (status, Json(body)).into_response()
}

/// A fresh id for a request that came without one (only when `api()` runs without the
/// request-id layers).
fn fresh_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("rec-{:016x}", h.finish())
}

fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| v == "true" || v == "1")
}

async fn recommend(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    ctx: Option<Extension<BatchContext>>,
    headers: HeaderMap,
) -> Response {
    let count = match params.get("count").map(|c| c.parse::<usize>()) {
        None => DEFAULT_COUNT,
        Some(Ok(n)) if (1..=MAX_COUNT).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`count` must be a whole number from 1 to {MAX_COUNT}"),
            )
        }
    };
    let recomm_id = headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map_or_else(fresh_id, str::to_owned);

    let excluded = state
        .lock()
        .delivered
        .get(&user)
        .cloned()
        .unwrap_or_default();
    let candidates = ranking(&user)
        .into_iter()
        .filter(|id| !excluded.contains(id));
    // Outside a batch there is nothing to be distinct from, so the flag is ignored there.
    let distinct_in = ctx.as_ref().map(|Extension(ctx)| ctx).filter(|ctx| {
        is_true(params.get("distinctRecomms")) || ctx.store().contains::<DistinctRecomms>()
    });
    let recomms: Vec<String> = match distinct_in {
        // One `update` for the whole pick: the items of a batch may run at the same time, and
        // checking and claiming ids in separate steps would let two of them claim the same id.
        Some(ctx) => ctx.store().update(|seen: &mut Seen| {
            candidates
                .filter(|id| seen.0.insert(id.clone()))
                .take(count)
                .collect()
        }),
        None => candidates.take(count).collect(),
    };

    {
        let mut memory = state.lock();
        // A reused request id keeps its first record, so a replayed id cannot reset a
        // delivery that was already reported.
        if !memory.issued.contains_key(&recomm_id) {
            memory.issued.insert(
                recomm_id.clone(),
                Issued {
                    user: user.clone(),
                    delivery: None,
                },
            );
            memory.order.push_back(recomm_id.clone());
            while memory.order.len() > MAX_ISSUED {
                if let Some(old) = memory.order.pop_front() {
                    memory.issued.remove(&old);
                }
            }
        }
    }

    let body = json!({
        "recommId": recomm_id,
        "recomms": recomms.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
    });
    let mut res = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&recomm_id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

async fn callback(
    State(state): State<AppState>,
    body: Result<Json<Callback>, JsonRejection>,
) -> Response {
    let report = match body {
        Ok(Json(report)) => report,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"uid\",\"scene\",\"predictRequestId\",\"items\":[{{\"id\",\"pos\",\"extra\"}}]}}: {}",
                    rejection.body_text()
                ),
            )
        }
    };
    let mut memory = state.lock();
    let Memory {
        issued, delivered, ..
    } = &mut *memory;
    let record = match issued.get_mut(&report.predict_request_id) {
        Some(record) if record.user == report.uid => record,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no recommendation with predictRequestId `{}` was issued to user `{}`",
                    report.predict_request_id, report.uid
                ),
            )
        }
    };
    if record.delivery.is_some() {
        return error(
            StatusCode::CONFLICT,
            format!(
                "the delivery of predictRequestId `{}` was already reported; each recommendation is reported once",
                report.predict_request_id
            ),
        );
    }
    delivered
        .entry(report.uid.clone())
        .or_default()
        .extend(report.items.iter().map(|item| item.id.clone()));
    record.delivery = Some(report);
    (StatusCode::OK, Json(json!({ "code": 0, "message": "OK" }))).into_response()
}

async fn delivery(
    State(state): State<AppState>,
    Path(predict_request_id): Path<String>,
) -> Response {
    let memory = state.lock();
    match memory
        .issued
        .get(&predict_request_id)
        .and_then(|r| r.delivery.as_ref())
    {
        Some(report) => Json(report.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no delivery was reported for predictRequestId `{predict_request_id}`"),
        ),
    }
}
