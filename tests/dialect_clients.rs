//! The batch family's real clients against services of the tests' own, over real sockets, with
//! no rewriting of the URLs the clients make:
//! - `@azure/data-tables` (JS): transactions that commit and that roll back, with absolute item
//!   URLs under the batch's base, `ETag`s read by the client's own case-sensitive pattern, and a
//!   rolled-back transaction reported as failed (`Dialect::azure_tables`);
//! - `@pnp/sp` (JS): SharePoint's `_api/$batch`, a change set that commits and one that rolls
//!   back, each answer matched by position (`Dialect::sharepoint`);
//! - `odata` (o.js, JS) 2.x with its default absolute item URLs and change sets (OData 4);
//! - `gcsfs` (Python): one batch deleting objects whose names hold `/` and spaces, sent as
//!   `%2F` and `%20` inside one segment (`BatchRoute::encoded_slashes`).
//!
//! Each service is a small in-memory store of the test's own (the farm example has no tables,
//! lists or OData entity sets), served under an internal root (`/app/...`) that differs from the
//! URLs the clients see, so the batch's base must be mapped onto it. Change sets run under a
//! snapshot transaction: the store is copied when one begins and put back if it rolls back.
//!
//! The JS clients are installed by `scripts/js-deps.sh` (pinned in
//! `tests/js/package-lock.json`, under `target/js`); a test is skipped, saying why, only when
//! npm cannot reach the registry or Node.js cannot be had. gcsfs is installed in the interop
//! virtualenv by `scripts/python-venv.sh`.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Extension, Path};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use futures_util::future::{BoxFuture, FutureExt};
use http_batch::format::Dialect;
use http_batch::{BatchLayer, BatchRoute, BoxError, Transact, Transaction, TransactionProvider};
use serde_json::{json, Value};
use tokio::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

type Store = Arc<Mutex<BTreeMap<String, Value>>>;

/// Begins snapshot transactions, one at a time.
#[derive(Clone)]
struct Snapshots {
    store: Store,
    turn: Arc<tokio::sync::Mutex<()>>,
}

struct Snapshot {
    store: Store,
    saved: Mutex<Option<BTreeMap<String, Value>>>,
    turn: Mutex<Option<tokio::sync::OwnedMutexGuard<()>>>,
}

impl TransactionProvider for Snapshots {
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
        let store = self.store.clone();
        let turn = self.turn.clone();
        async move {
            let turn = turn.lock_owned().await;
            let saved = store.lock().unwrap().clone();
            Ok(Transaction::new(Snapshot {
                store,
                saved: Mutex::new(Some(saved)),
                turn: Mutex::new(Some(turn)),
            }))
        }
        .boxed()
    }
}

impl Transact for Snapshot {
    fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.saved.lock().unwrap().take();
        self.turn.lock().unwrap().take();
        async { Ok(()) }.boxed()
    }

    fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
        if let Some(saved) = self.saved.lock().unwrap().take() {
            *self.store.lock().unwrap() = saved;
        }
        self.turn.lock().unwrap().take();
        async { Ok(()) }.boxed()
    }
}

fn json_response(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    res
}

fn etag_of(entity: &Value) -> HeaderValue {
    let n = entity["_v"].as_u64().unwrap_or(1);
    HeaderValue::try_from(format!("W/\"datetime'{n}'\"")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Azure Table storage: `{table}` and `{table}(PartitionKey='p',RowKey='r')`.

const TABLES_JSON: &str = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8";

/// Azure's error shape: `odata.error`, and the code again in `x-ms-error-code`.
fn table_error(status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = json!({ "odata.error": { "code": code, "message": { "lang": "en-US", "value": message } } });
    let mut res = json_response(status, TABLES_JSON, &body);
    res.headers_mut()
        .insert("x-ms-error-code", HeaderValue::from_static(code));
    res
}

/// `animals(PartitionKey='farm',RowKey='pony')` → (`animals`, Some((`farm`, `pony`))).
fn table_target(seg: &str) -> Option<(String, Option<(String, String)>)> {
    let seg = seg.trim_end_matches("()");
    let Some((table, keys)) = seg.split_once('(') else {
        return Some((seg.to_owned(), None));
    };
    let keys = keys.strip_suffix(')')?;
    let mut pk = None;
    let mut rk = None;
    for pair in keys.split(',') {
        let (name, value) = pair.split_once('=')?;
        let value = value.trim_matches('\'').replace("''", "'");
        match name {
            "PartitionKey" => pk = Some(value),
            "RowKey" => rk = Some(value),
            _ => return None,
        }
    }
    Some((table.to_owned(), Some((pk?, rk?))))
}

async fn tables(
    Extension(store): Extension<Store>,
    method: Method,
    Path(seg): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((table, keys)) = table_target(&seg) else {
        return table_error(StatusCode::BAD_REQUEST, "InvalidInput", "bad key predicate");
    };
    let mut store = store.lock().unwrap();
    let entity: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return table_error(StatusCode::BAD_REQUEST, "InvalidInput", "body is not JSON")
            }
        }
    };
    match (method.as_str(), keys) {
        ("POST", None) => {
            let (Some(pk), Some(rk)) = (entity["PartitionKey"].as_str(), entity["RowKey"].as_str())
            else {
                return table_error(
                    StatusCode::BAD_REQUEST,
                    "PropertiesNeedValue",
                    "keys missing",
                );
            };
            let key = format!("{table}/{pk}/{rk}");
            if store.contains_key(&key) {
                return table_error(
                    StatusCode::CONFLICT,
                    "EntityAlreadyExists",
                    "The specified entity already exists.",
                );
            }
            let mut entity = entity.clone();
            entity["_v"] = json!(1);
            let etag = etag_of(&entity);
            store.insert(key, entity.clone());
            let no_content = headers
                .get("prefer")
                .is_some_and(|v| v.as_bytes() == b"return-no-content");
            let mut res = if no_content {
                let mut res = StatusCode::NO_CONTENT.into_response();
                res.headers_mut().insert(
                    "preference-applied",
                    HeaderValue::from_static("return-no-content"),
                );
                res
            } else {
                json_response(StatusCode::CREATED, TABLES_JSON, &entity)
            };
            res.headers_mut().insert("etag", etag);
            res
        }
        ("GET", Some((pk, rk))) => match store.get(&format!("{table}/{pk}/{rk}")) {
            Some(entity) => {
                let mut out = entity.clone();
                let etag = etag_of(entity);
                out.as_object_mut().unwrap().remove("_v");
                out["odata.etag"] = json!(etag.to_str().unwrap());
                let mut res = json_response(StatusCode::OK, TABLES_JSON, &out);
                res.headers_mut().insert("etag", etag);
                res
            }
            None => table_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "The specified resource does not exist.",
            ),
        },
        ("PUT" | "PATCH" | "MERGE", Some((pk, rk))) => {
            let key = format!("{table}/{pk}/{rk}");
            let old = store.get(&key).cloned();
            let mut next = match (method.as_str(), old.clone()) {
                ("PUT", _) | (_, None) => entity.clone(),
                (_, Some(mut old)) => {
                    for (k, v) in entity.as_object().into_iter().flatten() {
                        old[k] = v.clone();
                    }
                    old
                }
            };
            next["_v"] = json!(old.map_or(0, |o| o["_v"].as_u64().unwrap_or(0)) + 1);
            let etag = etag_of(&next);
            store.insert(key, next);
            let mut res = StatusCode::NO_CONTENT.into_response();
            res.headers_mut().insert("etag", etag);
            res
        }
        ("DELETE", Some((pk, rk))) => match store.remove(&format!("{table}/{pk}/{rk}")) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => table_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "The specified resource does not exist.",
            ),
        },
        _ => table_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedHttpVerb",
            "not here",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// A SharePoint list: `web/lists/getByTitle('Animals')/items` and `.../items({id})`.

const SP_JSON: &str = "application/json;odata=nometadata;charset=utf-8";

fn sp_error(status: StatusCode, message: &str) -> Response {
    let body = json!({ "odata.error": {
        "code": "-2130575155, Microsoft.SharePoint.SPException",
        "message": { "lang": "en-US", "value": message },
    }});
    json_response(status, SP_JSON, &body)
}

async fn sharepoint(
    Extension(store): Extension<Store>,
    method: Method,
    Path(rest): Path<String>,
    body: Bytes,
) -> Response {
    let Some(tail) = rest.strip_prefix("web/lists/getByTitle('Animals')/items") else {
        return sp_error(StatusCode::NOT_FOUND, &format!("no resource `{rest}`"));
    };
    let id: Option<u64> = match tail {
        "" => None,
        t => match t.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            Some(n) => match n.parse() {
                Ok(n) => Some(n),
                Err(_) => return sp_error(StatusCode::BAD_REQUEST, "bad item id"),
            },
            None => return sp_error(StatusCode::NOT_FOUND, &format!("no resource `{rest}`")),
        },
    };
    let fields: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut store = store.lock().unwrap();
    match (method.as_str(), id) {
        ("GET", None) => {
            let items: Vec<Value> = store
                .iter()
                .filter(|(k, _)| k.starts_with("sp/item/"))
                .map(|(_, v)| v.clone())
                .collect();
            json_response(StatusCode::OK, SP_JSON, &json!({ "value": items }))
        }
        ("GET", Some(id)) => match store.get(&format!("sp/item/{id:08}")) {
            Some(item) => json_response(StatusCode::OK, SP_JSON, item),
            None => sp_error(StatusCode::NOT_FOUND, "Item does not exist."),
        },
        ("POST", None) => {
            let Some(title) = fields["Title"].as_str() else {
                return sp_error(StatusCode::BAD_REQUEST, "Title is required.");
            };
            if title == "bad" {
                return sp_error(StatusCode::BAD_REQUEST, "The list refuses the title `bad`.");
            }
            let next = store.get("sp/next").and_then(Value::as_u64).unwrap_or(1);
            store.insert("sp/next".into(), json!(next + 1));
            let item = json!({ "Id": next, "Title": title });
            store.insert(format!("sp/item/{next:08}"), item.clone());
            json_response(StatusCode::CREATED, SP_JSON, &item)
        }
        ("MERGE" | "PATCH", Some(id)) => match store.get_mut(&format!("sp/item/{id:08}")) {
            Some(item) => {
                for (k, v) in fields.as_object().into_iter().flatten() {
                    item[k] = v.clone();
                }
                StatusCode::NO_CONTENT.into_response()
            }
            None => sp_error(StatusCode::NOT_FOUND, "Item does not exist."),
        },
        ("DELETE", Some(id)) => match store.remove(&format!("sp/item/{id:08}")) {
            Some(_) => StatusCode::OK.into_response(),
            None => sp_error(StatusCode::NOT_FOUND, "Item does not exist."),
        },
        _ => sp_error(StatusCode::METHOD_NOT_ALLOWED, "not here"),
    }
}

// ---------------------------------------------------------------------------------------------
// An OData 4 entity set: `animals` and `animals('{name}')`.

const ODATA_JSON: &str = "application/json;odata.metadata=minimal";

fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message } });
    let mut res = json_response(status, ODATA_JSON, &body);
    res.headers_mut()
        .insert("odata-version", HeaderValue::from_static("4.0"));
    res
}

async fn odata_v4(
    Extension(store): Extension<Store>,
    method: Method,
    Path(seg): Path<String>,
    body: Bytes,
) -> Response {
    let key = match seg.strip_prefix("animals") {
        Some("") => None,
        Some(rest) => match rest.strip_prefix("('").and_then(|r| r.strip_suffix("')")) {
            Some(name) => Some(name.replace("''", "'")),
            None => return odata_error(StatusCode::BAD_REQUEST, "BadRequest", "bad key predicate"),
        },
        None => return odata_error(StatusCode::NOT_FOUND, "NotFound", "no such entity set"),
    };
    let fields: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut store = store.lock().unwrap();
    match (method.as_str(), key) {
        ("GET", None) => {
            let value: Vec<Value> = store
                .iter()
                .filter(|(k, _)| k.starts_with("v4/"))
                .map(|(_, v)| v.clone())
                .collect();
            json_response(
                StatusCode::OK,
                ODATA_JSON,
                &json!({ "@odata.context": "$metadata#animals", "value": value }),
            )
        }
        ("GET", Some(name)) => match store.get(&format!("v4/{name}")) {
            Some(e) => json_response(StatusCode::OK, ODATA_JSON, e),
            None => odata_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no animal `{name}`"),
            ),
        },
        ("POST", None) => {
            let (Some(name), Some(age)) = (fields["name"].as_str(), fields["age"].as_i64()) else {
                return odata_error(StatusCode::BAD_REQUEST, "BadRequest", "name and age needed");
            };
            if age < 0 {
                return odata_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "age must not be negative",
                );
            }
            let entity = json!({ "name": name, "age": age });
            store.insert(format!("v4/{name}"), entity.clone());
            let mut res = json_response(StatusCode::CREATED, ODATA_JSON, &entity);
            let location = format!("animals('{name}')");
            if let Ok(v) = HeaderValue::try_from(location) {
                res.headers_mut().insert("location", v);
            }
            res
        }
        ("PATCH", Some(name)) => match store.get_mut(&format!("v4/{name}")) {
            Some(e) => {
                for (k, v) in fields.as_object().into_iter().flatten() {
                    e[k] = v.clone();
                }
                StatusCode::NO_CONTENT.into_response()
            }
            None => odata_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no animal `{name}`"),
            ),
        },
        ("DELETE", Some(name)) => match store.remove(&format!("v4/{name}")) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => odata_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no animal `{name}`"),
            ),
        },
        _ => odata_error(StatusCode::METHOD_NOT_ALLOWED, "NotAllowed", "not here"),
    }
}

// ---------------------------------------------------------------------------------------------
// Google Cloud Storage objects: `b/{bucket}/o` and `b/{bucket}/o/{object}`.

fn gcs_error(status: StatusCode, message: &str) -> Response {
    let body = json!({ "error": { "code": status.as_u16(), "message": message } });
    json_response(status, "application/json; charset=UTF-8", &body)
}

fn gcs_object(bucket: &str, name: &str, data: &str) -> Value {
    json!({
        "kind": "storage#object",
        "bucket": bucket,
        "name": name,
        "size": data.len().to_string(),
        "generation": "1",
        "updated": "2026-01-01T00:00:00.000Z",
        "timeCreated": "2026-01-01T00:00:00.000Z",
        "contentType": "application/octet-stream",
    })
}

async fn gcs_one(
    Extension(store): Extension<Store>,
    method: Method,
    Path((bucket, name)): Path<(String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let key = format!("gcs/{bucket}/{name}");
    let mut store = store.lock().unwrap();
    match method.as_str() {
        "GET" => match store.get(&key).and_then(Value::as_str) {
            Some(data) if query.as_deref().is_some_and(|q| q.contains("alt=media")) => {
                data.to_owned().into_response()
            }
            Some(data) => json_response(
                StatusCode::OK,
                "application/json; charset=UTF-8",
                &gcs_object(&bucket, &name, data),
            ),
            None => gcs_error(
                StatusCode::NOT_FOUND,
                &format!("No such object: {bucket}/{name}"),
            ),
        },
        "DELETE" => match store.remove(&key) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => gcs_error(
                StatusCode::NOT_FOUND,
                &format!("No such object: {bucket}/{name}"),
            ),
        },
        _ => gcs_error(StatusCode::METHOD_NOT_ALLOWED, "not here"),
    }
}

async fn gcs_list(
    Extension(store): Extension<Store>,
    Path(bucket): Path<String>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let delimiter = q.get("delimiter").cloned().unwrap_or_default();
    let store = store.lock().unwrap();
    let mut items = Vec::new();
    let mut prefixes = std::collections::BTreeSet::new();
    let under = format!("gcs/{bucket}/");
    for (k, v) in store.range(under.clone()..) {
        let Some(name) = k.strip_prefix(&under) else {
            break;
        };
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        match (delimiter.is_empty(), rest.find(&delimiter)) {
            (false, Some(at)) => {
                prefixes.insert(format!("{prefix}{}", &rest[..at + delimiter.len()]));
            }
            _ => items.push(gcs_object(&bucket, name, v.as_str().unwrap_or(""))),
        }
    }
    json_response(
        StatusCode::OK,
        "application/json; charset=UTF-8",
        &json!({ "kind": "storage#objects", "items": items, "prefixes": prefixes }),
    )
}

async fn spawn(app: Router) -> SocketAddr {
    support::serve(app).await
}

/// Runs `scripts/js-deps.sh`; `None` when the JS clients cannot be had here (exit status 75).
async fn node_modules() -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(root().join("scripts/js-deps.sh"))
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run scripts/js-deps.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(75) => {
            eprintln!("SKIPPED, the JS clients cannot be installed here:\n{stderr}");
            return None;
        }
        _ => panic!("scripts/js-deps.sh failed ({}):\n{stderr}", out.status),
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    Some(PathBuf::from(stdout.lines().last().expect("path").trim()))
}

/// Runs `tests/js/{script}` with `args` and returns its JSON summary.
async fn node(modules: &std::path::Path, script: &str, args: &[String]) -> Value {
    let run = Command::new("node")
        .arg(root().join("tests/js").join(script))
        .args(args)
        .env("NODE_PATH", modules)
        .current_dir(std::env::temp_dir())
        .stderr(Stdio::piped())
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 60 s"))
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{script}: summary is not JSON ({e}):\n{stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_tables_js_transactions_commit_and_roll_back() {
    let Some(modules) = node_modules().await else {
        return;
    };
    let store = Store::default();
    let snapshots = Snapshots {
        store: store.clone(),
        turn: Arc::default(),
    };
    // The client posts to `{account}/$batch` and names items `http://host{account}/animals...`;
    // the app serves its tables at `/app/tables`.
    let api = Router::new()
        .route("/app/tables/{seg}", any(tables))
        .route("/tables/{seg}", any(tables))
        .layer(Extension(store.clone()));
    let app = BatchLayer::new()
        .route(
            BatchRoute::path("/tables/$batch")
                .dialect(Dialect::azure_tables())
                .service_root("/app/tables")
                .transactions(snapshots),
        )
        .wrap_router(api);
    let addr = spawn(app.into()).await;
    let s = node(
        &modules,
        "azure_tables.mjs",
        &[format!("http://{addr}/tables")],
    )
    .await;
    eprintln!("{s}");
    assert_eq!(s["version"], "13.3.2");

    let commit = &s["commit"];
    assert_eq!(commit["ok"], true, "{s:#}");
    assert_eq!(commit["value"]["status"], 202, "{s:#}");
    let subs = commit["value"]["subResponses"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{s:#}");
    for sub in subs {
        assert_eq!(sub["status"], 204, "{s:#}");
        // Found by the client's own `/ETag: (.*)/` pattern.
        assert!(
            sub["etag"].as_str().is_some_and(|e| e.starts_with("W/")),
            "{s:#}"
        );
    }
    assert_eq!(s["readPony"]["value"]["legs"], 4, "{s:#}");

    // The transaction that failed in its middle is reported as failed, with the service's
    // error, and nothing of it was kept.
    let rollback = &s["rollback"];
    assert_eq!(rollback["ok"], false, "{s:#}");
    assert_eq!(rollback["status"], 409, "{s:#}");
    assert_eq!(rollback["code"], "EntityAlreadyExists", "{s:#}");
    assert_eq!(s["readCow"]["ok"], false, "{s:#}");
    assert_eq!(s["readCow"]["status"], 404, "{s:#}");
    assert_eq!(s["readHen"]["value"], 2, "{s:#}");

    let later = &s["updateAndDelete"];
    assert_eq!(later["ok"], true, "{s:#}");
    assert_eq!(later["value"]["subResponses"][0]["status"], 204, "{s:#}");
    assert!(
        later["value"]["subResponses"][0]["etag"].is_string(),
        "{s:#}"
    );
    assert_eq!(s["readHenAfter"]["value"], 3, "{s:#}");
    assert_eq!(s["readPonyAfter"]["status"], 404, "{s:#}");
    let store = store.lock().unwrap();
    assert!(!store.contains_key("animals/farm/cow"), "{store:?}");
    assert!(!store.contains_key("animals/farm/pony"), "{store:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pnp_sp_change_sets_commit_and_roll_back() {
    let Some(modules) = node_modules().await else {
        return;
    };
    let store = Store::default();
    let snapshots = Snapshots {
        store: store.clone(),
        turn: Arc::default(),
    };
    // PnP posts to `{site}/_api/$batch` and names items `http://host{site}/_api/web/...`; the
    // app serves the site's API at `/app/sp`.
    let api = Router::new()
        .route("/app/sp/{*rest}", any(sharepoint))
        .route("/sites/farm/_api/{*rest}", any(sharepoint))
        .layer(Extension(store.clone()));
    let app = BatchLayer::new()
        .route(
            BatchRoute::path("/sites/farm/_api/$batch")
                .dialect(Dialect::sharepoint())
                .service_root("/app/sp")
                .transactions(snapshots),
        )
        .wrap_router(api);
    let addr = spawn(app.into()).await;
    let s = node(
        &modules,
        "pnp_sp.mjs",
        &[format!("http://{addr}/sites/farm")],
    )
    .await;
    eprintln!("{s}");
    assert_eq!(s["version"], "4.21.0");

    let commit = &s["commit"];
    assert_eq!(commit["execute"]["ok"], true, "{s:#}");
    assert_eq!(commit["results"][0]["ok"], true, "{s:#}");
    assert_eq!(commit["results"][0]["value"], json!([]), "{s:#}");
    assert_eq!(commit["results"][1]["value"]["Title"], "pony", "{s:#}");
    assert_eq!(commit["results"][2]["value"]["Title"], "hen", "{s:#}");
    assert_eq!(commit["results"][2]["value"]["Id"], 2, "{s:#}");

    // Each request of the rolled-back change set is told it failed: the create that ran was
    // undone (424), the one that failed says why (400).
    let rollback = &s["rollback"];
    assert_eq!(rollback["execute"]["ok"], true, "{s:#}");
    assert_eq!(rollback["results"][0]["ok"], false, "{s:#}");
    assert_eq!(rollback["results"][0]["status"], 424, "{s:#}");
    assert_eq!(rollback["results"][1]["ok"], false, "{s:#}");
    assert_eq!(rollback["results"][1]["status"], 400, "{s:#}");

    let later = &s["updateAndDelete"];
    assert_eq!(later["execute"]["ok"], true, "{s:#}");
    assert_eq!(later["results"][0]["ok"], true, "{s:#}");
    assert_eq!(later["results"][1]["ok"], true, "{s:#}");
    assert_eq!(
        s["after"]["value"],
        json!([{ "Id": 1, "Title": "pony2" }]),
        "{s:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ojs_batches_with_absolute_item_urls() {
    let Some(modules) = node_modules().await else {
        return;
    };
    let store = Store::default();
    let snapshots = Snapshots {
        store: store.clone(),
        turn: Arc::default(),
    };
    // o.js names items `http://host/odata/v4/app/animals...`; the app serves them at `/app/v4`.
    let api = Router::new()
        .route("/app/v4/{seg}", any(odata_v4))
        .route("/odata/v4/app/{seg}", any(odata_v4))
        .layer(Extension(store.clone()));
    let app = BatchLayer::new()
        .route(
            BatchRoute::path("/odata/v4/app/$batch")
                .dialect(Dialect::odata_v4())
                .service_root("/app/v4")
                .transactions(snapshots),
        )
        .wrap_router(api);
    let addr = spawn(app.into()).await;
    let s = node(
        &modules,
        "ojs_batch.mjs",
        &[format!("http://{addr}/odata/v4/app/")],
    )
    .await;
    eprintln!("{s}");
    assert_eq!(s["version"], "2.0.1");

    // A committed change set, read by o.js as the change set's answers.
    let commit = &s["commit"]["value"];
    assert_eq!(commit[0]["status"], 201, "{s:#}");
    assert_eq!(commit[0]["contentId"], 1, "{s:#}");
    assert_eq!(commit[0]["body"]["name"], "pony", "{s:#}");
    assert_eq!(commit[1]["status"], 201, "{s:#}");

    let reads = &s["reads"]["value"];
    assert_eq!(reads[0]["body"]["age"], 3, "{s:#}");
    assert_eq!(reads[1]["body"]["name"], "hen", "{s:#}");
    assert_eq!(reads[2]["status"], 404, "{s:#}");
    // OData stops at the first failure unless asked to go on.
    assert_eq!(reads[3]["status"], 424, "{s:#}");

    // The failed change set is the failing answer alone (OData 4), and nothing of it is kept.
    let rollback = s["rollback"]["value"].as_array().unwrap();
    assert_eq!(rollback.len(), 1, "{s:#}");
    assert_eq!(rollback[0]["status"], 400, "{s:#}");
    assert_eq!(
        rollback[0]["body"]["error"]["message"],
        "age must not be negative"
    );

    let later = &s["updateAndDelete"]["value"];
    assert_eq!(later[0]["status"], 204, "{s:#}");
    assert_eq!(later[1]["status"], 204, "{s:#}");
    assert_eq!(
        s["after"]["value"],
        json!([{ "name": "hen", "age": 2 }]),
        "{s:#}"
    );
    assert!(!store.lock().unwrap().contains_key("v4/cow"));
}

/// The interop virtualenv's python (`scripts/python-venv.sh`).
async fn python() -> String {
    let out = Command::new("bash")
        .arg(root().join("scripts/python-venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run scripts/python-venv.sh");
    assert!(out.status.success(), "python-venv.sh failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .last()
        .expect("python path")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcsfs_deletes_names_with_slashes_and_spaces_in_one_batch() {
    let store = Store::default();
    for (name, data) in [
        ("bkt/dir/name", "abc"),
        ("bkt/with space/a b.txt", "de"),
        ("bkt/keep", "f"),
    ] {
        store
            .lock()
            .unwrap()
            .insert(format!("gcs/{name}"), json!(data));
    }
    let batches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = batches.clone();
    // The service is published under `/storage.googleapis.com`; batch items name objects by
    // Google's absolute paths (`/storage/v1/b/...`), which the app serves.
    let api = Router::new()
        .route(
            "/storage.googleapis.com/storage/v1/b/{bucket}/o",
            axum::routing::get(gcs_list),
        )
        .route(
            "/storage.googleapis.com/storage/v1/b/{bucket}/o/{object}",
            any(gcs_one),
        )
        .route(
            "/storage.googleapis.com/download/storage/v1/b/{bucket}/o/{object}",
            any(gcs_one),
        )
        .route("/storage/v1/b/{bucket}/o/{object}", any(gcs_one))
        .layer(Extension(store.clone()));
    let app = BatchLayer::new()
        .route(
            BatchRoute::path("/storage.googleapis.com/batch/storage/v1")
                .encoded_slashes()
                .and_when(move |_| {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    true
                }),
        )
        .wrap_router(api);
    let addr = spawn(app.into()).await;
    let py = python().await;
    let run = Command::new(py)
        .arg(root().join("tests/python/gcsfs_batch.py"))
        .arg(format!("http://{addr}/storage.googleapis.com"))
        .stderr(Stdio::piped())
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("gcsfs_batch.py finished within 60 s")
        .expect("run gcsfs_batch.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "gcsfs_batch.py failed:\n{stdout}\n{stderr}"
    );
    let s: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}):\n{stdout}\n{stderr}"));
    eprintln!("{s}");
    assert_eq!(s["version"], "2026.10.1");
    assert_eq!(s["on_google"], true, "{s:#}");
    assert_eq!(
        s["before"],
        json!({ "bkt/dir/name": true, "bkt/with space/a b.txt": true, "bkt/keep": true })
    );
    assert_eq!(s["cat"], "abc");
    // The client's verdict: both paths deleted, no error.
    assert_eq!(
        s["rm"],
        json!(["bkt/dir/name", "bkt/with space/a b.txt"]),
        "{s:#}"
    );
    assert_eq!(
        s["after"],
        json!({ "bkt/dir/name": false, "bkt/with space/a b.txt": false, "bkt/keep": true }),
        "{s:#}"
    );
    // One batch carried both deletes.
    assert_eq!(batches.load(std::sync::atomic::Ordering::Relaxed), 1);
    let store = store.lock().unwrap();
    assert_eq!(store.keys().collect::<Vec<_>>(), ["gcs/bkt/keep"]);
}
