//! Real OData clients against OData services served with the dialects' routes:
//! SAP's `pyodata` (Python, OData 2) sends a batch with a change set, which is answered `202`
//! and whose change set it parses, and a change set that fails, which leaves nothing behind;
//! `@odata/client` (npm, OData 4) sends multipart and JSON batches with relative item URLs and
//! change sets (atomicity groups in JSON).
//!
//! The tests install the clients themselves: `pyodata` in the interop virtualenv
//! (`scripts/python-venv.sh`), `@odata/client` under `target/js` (`scripts/js-deps.sh`, which
//! makes the test a skip, saying why, only when npm cannot reach the registry or Node.js cannot
//! be had); pinned versions, instant when already there.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Extension, Path};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use futures_util::future::{BoxFuture, FutureExt};
use http_batch::format::Dialect;
use http_batch::{BatchLayer, BatchRoute, BoxError, Transact, Transaction, TransactionProvider};
use serde_json::{json, Value};
use tokio::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

type Store = Arc<Mutex<BTreeMap<String, i64>>>;

/// A change set's work: a copy of the store, put in its place on commit. (These tests send one
/// change set at a time; a real store isolates concurrent ones, as the farm's database does.)
struct Copy {
    store: Store,
    work: BTreeMap<String, i64>,
}

impl Transact for Copy {
    fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
        *self.store.lock().unwrap() = self.work;
        async { Ok(()) }.boxed()
    }

    fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
        async { Ok(()) }.boxed()
    }
}

struct Copies(Store);

impl TransactionProvider for Copies {
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
        let work = self.0.lock().unwrap().clone();
        let tx = Copy {
            store: self.0.clone(),
            work,
        };
        async move { Ok(Transaction::new(tx)) }.boxed()
    }
}

fn entity(name: &str, age: i64) -> Value {
    json!({ "d": { "__metadata": { "type": "Farm.Animal" }, "Name": name, "Age": age } })
}

fn odata_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": status.as_str(), "message": { "lang": "en", "value": message } } })),
    )
        .into_response()
}

/// `Animals('name')` and `Animals` of an OData 2 service, in OData 2's JSON (`{"d": ...}`).
async fn animals(
    root: &'static str,
    store: Store,
    method: Method,
    rest: String,
    tx: Option<Extension<Transaction>>,
    body: Bytes,
) -> Response {
    let mut copy = match &tx {
        Some(Extension(tx)) => tx.lock::<Copy>().await,
        None => None,
    };
    let mut direct = store.lock().unwrap();
    let map: &mut BTreeMap<String, i64> = match copy.as_mut() {
        Some(copy) => &mut copy.work,
        None => &mut direct,
    };
    let key = rest
        .strip_prefix("Animals('")
        .and_then(|r| r.strip_suffix("')"));
    match (method, rest.as_str(), key) {
        (Method::GET, _, Some(name)) => match map.get(name) {
            Some(age) => Json(entity(name, *age)).into_response(),
            None => odata_error(StatusCode::NOT_FOUND, "no such animal"),
        },
        (Method::POST, "Animals", None) => {
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return odata_error(StatusCode::BAD_REQUEST, "the body is not JSON");
            };
            let (Some(name), age) = (v["Name"].as_str(), v["Age"].as_i64().unwrap_or(0)) else {
                return odata_error(StatusCode::BAD_REQUEST, "Name is required");
            };
            if map.contains_key(name) {
                return odata_error(StatusCode::CONFLICT, "the animal exists");
            }
            map.insert(name.to_owned(), age);
            (
                StatusCode::CREATED,
                [("location", format!("{root}/Animals('{name}')"))],
                Json(entity(name, age)),
            )
                .into_response()
        }
        _ => odata_error(StatusCode::NOT_FOUND, "no such resource"),
    }
}

/// An OData service at `root` (`/odata/v2/farm/v1`, say) with its batches at `{root}/$batch`.
async fn spawn(root: &'static str, dialect: Dialect) -> std::net::SocketAddr {
    let store: Store = Arc::new(Mutex::new(BTreeMap::from([("pony".to_owned(), 34)])));
    let handler_store = store.clone();
    let api = Router::new().route(
        &format!("{root}/{{*rest}}"),
        any(
            move |method: Method,
                  Path(rest): Path<String>,
                  tx: Option<Extension<Transaction>>,
                  body: Bytes| {
                animals(root, handler_store.clone(), method, rest, tx, body)
            },
        ),
    );
    let app = BatchLayer::new()
        .route(
            BatchRoute::path(format!("{root}/$batch"))
                .dialect(dialect)
                .service_root(root)
                .transactions(Copies(store)),
        )
        .wrap_router(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn python() -> String {
    let out = Command::new("bash")
        .arg(root().join("scripts/python-venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run scripts/python-venv.sh");
    assert!(out.status.success(), "python-venv.sh failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .expect("python path")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn pyodata_sends_a_change_set_answered_202_and_parses_it() {
    let addr = spawn("/odata/v2/farm/v1", Dialect::odata_v2()).await;
    let out = Command::new(python().await)
        .arg(root().join("tests/python/pyodata_batch.py"))
        .arg(addr.to_string())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run pyodata_batch.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pyodata_batch.py failed:\n{stdout}");
    let report: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}"));
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["pony"], json!({"name": "pony", "age": 34}));
    assert_eq!(report["created"], json!(["goat", "duck"]));
    assert_eq!(report["failed"], 409, "{report:#}");
    assert_eq!(
        report["hen"], 404,
        "the failed change set's first create is not kept"
    );
    assert_eq!(report["goat"], 1);
}

/// Runs `scripts/js-deps.sh`; `None` when the JS client cannot be had here (exit status 75).
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
            eprintln!(
                "SKIPPED @odata/client interop, the client cannot be installed here:\n{stderr}"
            );
            return None;
        }
        _ => panic!("scripts/js-deps.sh failed ({}):\n{stderr}", out.status),
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    Some(PathBuf::from(
        stdout.lines().last().expect("node_modules path").trim(),
    ))
}

#[tokio::test]
async fn odata_js_client_sends_multipart_and_json_batches_with_change_sets() {
    let Some(modules) = node_modules().await else {
        return;
    };
    let addr = spawn("/odata/v4/farm/v1", Dialect::odata_v4()).await;
    let out = Command::new("node")
        .arg(root().join("tests/js/odata_batch.mjs"))
        .arg(addr.to_string())
        .env("NODE_PATH", &modules)
        .current_dir(std::env::temp_dir())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run node tests/js/odata_batch.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "odata_batch.mjs failed:\n{stdout}");
    let r: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}"));
    eprintln!("{r:#}");
    assert_eq!(r["ok"], true, "{r:#}");
    let statuses = |key: &str| -> Vec<u64> {
        r[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {r:#}"))
            .iter()
            .map(|x| x["status"].as_u64().unwrap())
            .collect()
    };
    // Multipart: the read, then the write's change set, read through its nested multipart.
    assert_eq!(statuses("multipart"), [200, 201], "{r:#}");
    assert_eq!(r["multipart"][0]["body"]["d"]["Name"], "pony");
    assert_eq!(r["multipart"][1]["body"]["d"]["Name"], "goat");
    assert_eq!(statuses("multipartFailed"), [409], "{r:#}");
    // JSON: the group's two creates, then the read after them.
    assert_eq!(statuses("json"), [201, 201, 200], "{r:#}");
    // Both members are answered: the create that ran was rolled back (424), the conflict is
    // the reason (409).
    assert_eq!(statuses("jsonFailed"), [424, 409], "{r:#}");
    // The failed group's first create was rolled back; the committed one is there.
    assert_eq!(statuses("after"), [200, 404], "{r:#}");
}
