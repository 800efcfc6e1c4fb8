//! Change sets over a real socket: all or nothing through the application's transactions,
//! rolled back on every cause (an answer that is not 2xx, a panic, a timeout, the client
//! leaving, a commit that fails), `$<Content-ID>` references, and the refusals where a route
//! cannot run change sets.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post as post_route};
use axum::Router;
use futures_util::future::{BoxFuture, FutureExt};
use http_batch::format::Dialect;
use http_batch::{BatchLayer, BatchRoute, BoxError, Transact, Transaction, TransactionProvider};

use support::odata::{answers, status, Answer};
use support::{post, Raw};

type Store = Arc<Mutex<BTreeMap<String, String>>>;

#[derive(Default)]
struct Counts {
    begun: usize,
    committed: usize,
    rolled_back: usize,
}

/// Writes staged in the transaction; the store sees them only on commit.
struct Staged {
    store: Store,
    writes: Vec<(String, String)>,
    counts: Arc<Mutex<Counts>>,
    fail_commit: bool,
}

impl Transact for Staged {
    fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
        let fail = self.fail_commit;
        if !fail {
            self.store.lock().unwrap().extend(self.writes);
        }
        self.counts.lock().unwrap().committed += 1;
        async move {
            if fail {
                Err("disk full".into())
            } else {
                Ok(())
            }
        }
        .boxed()
    }

    fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.counts.lock().unwrap().rolled_back += 1;
        async { Ok(()) }.boxed()
    }
}

#[derive(Clone)]
struct Provider {
    store: Store,
    counts: Arc<Mutex<Counts>>,
    fail_commit: bool,
}

impl TransactionProvider for Provider {
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
        self.counts.lock().unwrap().begun += 1;
        let tx = Staged {
            store: self.store.clone(),
            writes: Vec::new(),
            counts: self.counts.clone(),
            fail_commit: self.fail_commit,
        };
        async move { Ok(Transaction::new(tx)) }.boxed()
    }
}

/// `PUT /things/{name}` with a body: written straight, or staged in the change set's
/// transaction. `GET /fail/{status}`, `GET /panic`, `GET /slow/{ms}` fail on purpose.
fn api(store: Store) -> Router {
    let put_store = store.clone();
    Router::new()
        .route(
            "/things/{name}",
            post_route(
                move |Path(name): Path<String>,
                      tx: Option<Extension<Transaction>>,
                      body: String| {
                    let store = put_store.clone();
                    async move {
                        let staged = match &tx {
                            Some(Extension(tx)) => tx.lock::<Staged>().await,
                            None => None,
                        };
                        match staged {
                            Some(mut staged) => staged.writes.push((name.clone(), body)),
                            None => {
                                store.lock().unwrap().insert(name.clone(), body);
                            }
                        }
                        (
                            StatusCode::CREATED,
                            [("location", format!("/things/{name}"))],
                            "created",
                        )
                    }
                },
            )
            .get(move |Path(name): Path<String>| {
                let store = store.clone();
                async move {
                    match store.lock().unwrap().get(&name) {
                        Some(v) => v.clone().into_response(),
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        )
        .route(
            "/things/{name}/tag",
            post_route(|Path(name): Path<String>| async move { format!("tagged {name}") }),
        )
        .route(
            "/fail/{status}",
            get(|Path(status): Path<u16>| async move {
                (StatusCode::from_u16(status).unwrap(), "failed on purpose")
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler panicked on purpose");
                }
                "unreachable"
            }),
        )
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "slept"
            }),
        )
}

struct Server {
    addr: SocketAddr,
    store: Store,
    counts: Arc<Mutex<Counts>>,
}

async fn serve(fail_commit: bool) -> Server {
    let store: Store = Arc::default();
    let counts: Arc<Mutex<Counts>> = Arc::default();
    let provider = Provider {
        store: store.clone(),
        counts: counts.clone(),
        fail_commit,
    };
    let layer = BatchLayer::new()
        .item_timeout(Duration::from_millis(300))
        .route(BatchRoute::path("/batch"))
        .route(
            BatchRoute::path("/odata/$batch")
                .dialect(Dialect::odata_v4())
                .transactions(provider),
        )
        .route(BatchRoute::path("/bare/$batch").dialect(Dialect::odata_v4()))
        .route(
            BatchRoute::path("/loose/$batch")
                .dialect(Dialect::odata_v4().allow_non_atomic_change_sets()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = layer.wrap_router(api(store.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        addr,
        store,
        counts,
    }
}

/// A batch of one change set holding `items` (Content-ID, request text), then `after`.
fn change_set_batch(items: &[(&str, &str)], after: &[(&str, &str)]) -> String {
    let mut cs = String::new();
    for (id, req) in items {
        cs.push_str("--changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
        cs.push_str(&format!("Content-ID: {id}\r\n\r\n{req}\r\n"));
    }
    cs.push_str("--changeset_1--\r\n");
    let mut body =
        format!("--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n{cs}");
    for (id, req) in after {
        body.push_str("--batch_1\r\nContent-Type: application/http\r\n");
        if !id.is_empty() {
            body.push_str(&format!("Content-ID: {id}\r\n"));
        }
        body.push_str(&format!("\r\n{req}\r\n"));
    }
    body.push_str("--batch_1--\r\n");
    body
}

fn put(name: &str, body: &str) -> String {
    format!(
        "POST /things/{name} HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn send(addr: SocketAddr, path: &str, body: String) -> Raw {
    post(addr, path, "multipart/mixed; boundary=batch_1", body, &[]).await
}

#[tokio::test]
async fn committed_change_set_is_answered_as_a_nested_multipart() {
    let s = serve(false).await;
    let raw = send(
        s.addr,
        "/odata/$batch",
        change_set_batch(
            &[
                ("1", &put("a", "one")),
                ("2", &put("b", "two")),
                ("3", "POST $1/tag HTTP/1.1"),
            ],
            &[("", "GET /things/a HTTP/1.1")],
        ),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    let a = answers(&raw).await;
    assert_eq!(a.len(), 2, "{a:?}");
    let Answer::ChangeSet(inner) = &a[0] else {
        panic!("{a:?}")
    };
    let ids: Vec<_> = inner
        .iter()
        .map(|p| match p {
            Answer::Item { content_id, .. } => content_id.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [Some("1".into()), Some("2".into()), Some("3".into())]);
    assert_eq!(status(&inner[0]), 201);
    // `$1` stood for the first item's Location.
    match &inner[2] {
        Answer::Item { status, text, .. } => {
            assert_eq!(*status, 200);
            assert!(text.ends_with("tagged a"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // The item after the change set saw what it committed.
    assert_eq!(status(&a[1]), 200);
    assert_eq!(
        s.store.lock().unwrap().get("b").map(String::as_str),
        Some("two")
    );
    let c = s.counts.lock().unwrap();
    assert_eq!((c.begun, c.committed, c.rolled_back), (1, 1, 0));
    let py = python_check(&raw);
    assert_eq!(py["parts"][0]["parts"].as_array().unwrap().len(), 3, "{py}");
}

/// Python's `email` package reads the answer (tests/python/dialect_check.py).
fn python_check(raw: &Raw) -> serde_json::Value {
    let ct = raw.headers["content-type"].to_str().unwrap();
    let mut capture = format!("{ct}\r\n").into_bytes();
    capture.extend_from_slice(&raw.body);
    let mut child = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/dialect_check.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&capture).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "dialect_check.py: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Runs a change set whose third item fails by `cause`; nothing of it remains, and it is
/// answered by the failing response alone.
async fn rolls_back(cause: &str, expect: u16) {
    let s = serve(false).await;
    let raw = send(
        s.addr,
        "/odata/$batch",
        change_set_batch(
            &[
                ("1", &put("a", "one")),
                ("2", &put("b", "two")),
                ("3", cause),
                ("4", &put("c", "three")),
            ],
            &[],
        ),
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    let a = answers(&raw).await;
    assert_eq!(a.len(), 1, "{a:?}");
    match &a[0] {
        Answer::Item {
            content_id, status, ..
        } => {
            assert_eq!(*status, expect, "{a:?}");
            assert_eq!(content_id.as_deref(), Some("3"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        s.store.lock().unwrap().is_empty(),
        "nothing of the change set remains"
    );
    let c = s.counts.lock().unwrap();
    assert_eq!((c.begun, c.committed, c.rolled_back), (1, 0, 1));
    python_check(&raw);
}

#[tokio::test]
async fn rolls_back_on_a_failed_answer() {
    rolls_back("GET /fail/409 HTTP/1.1", 409).await;
}

#[tokio::test]
async fn rolls_back_on_a_panic() {
    rolls_back("GET /panic HTTP/1.1", 500).await;
}

#[tokio::test]
async fn rolls_back_on_a_timeout() {
    rolls_back("GET /slow/5000 HTTP/1.1", 504).await;
}

#[tokio::test]
async fn rolls_back_on_an_undecodable_item() {
    let s = serve(false).await;
    let raw = send(
        s.addr,
        "/odata/$batch",
        change_set_batch(&[("1", &put("a", "one")), ("2", "NOT A REQUEST")], &[]),
    )
    .await;
    let a = answers(&raw).await;
    assert_eq!(status(&a[0]), 400);
    assert!(s.store.lock().unwrap().is_empty());
}

#[tokio::test]
async fn rolls_back_when_the_commit_fails() {
    let s = serve(true).await;
    let raw = send(
        s.addr,
        "/odata/$batch",
        change_set_batch(&[("1", &put("a", "one"))], &[]),
    )
    .await;
    let a = answers(&raw).await;
    assert_eq!(status(&a[0]), 500);
    match &a[0] {
        Answer::Item { text, .. } => assert!(text.contains("failed to commit"), "{text}"),
        _ => unreachable!(),
    }
    assert!(s.store.lock().unwrap().is_empty());
}

/// Waits up to 5 s for `done`.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting");
}

#[tokio::test]
async fn rolls_back_when_the_client_leaves() {
    use tokio::io::AsyncWriteExt;
    let s = serve(false).await;
    let body = change_set_batch(
        &[("1", &put("a", "one")), ("2", "GET /slow/250 HTTP/1.1")],
        &[],
    );
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /odata/$batch HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/mixed; boundary=batch_1\r\nContent-Length: {}\r\n\r\n",
        s.addr,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    // Leave while the second item sleeps (it sleeps for 250 ms once the change set has begun).
    wait_for(|| s.counts.lock().unwrap().begun == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(conn);
    wait_for(|| s.counts.lock().unwrap().rolled_back == 1).await;
    let c = s.counts.lock().unwrap();
    assert_eq!((c.begun, c.committed, c.rolled_back), (1, 0, 1));
    assert!(s.store.lock().unwrap().is_empty());
}

#[tokio::test]
async fn routes_without_change_sets_or_transactions_refuse_the_batch() {
    let s = serve(false).await;
    let body = || {
        change_set_batch(
            &[("1", &put("a", "one"))],
            &[("", "GET /things/a HTTP/1.1")],
        )
    };
    let google = post(
        s.addr,
        "/batch",
        "multipart/mixed; boundary=batch_1",
        body(),
        &[],
    )
    .await;
    assert_eq!(google.status, 400, "{}", google.text());
    assert_eq!(google.json()["error"]["reason"], "CHANGE_SETS_REFUSED");
    let bare = send(s.addr, "/bare/$batch", body()).await;
    assert_eq!(bare.status, 501, "{}", bare.text());
    assert_eq!(bare.json()["error"]["reason"], "NO_TRANSACTIONS");
    assert!(bare.text().contains("nothing was run"));
    assert!(s.store.lock().unwrap().is_empty());
    // Asked for by name, change sets run without a transaction: what ran stays.
    let loose = send(
        s.addr,
        "/loose/$batch",
        change_set_batch(
            &[("1", &put("a", "one")), ("2", "GET /fail/400 HTTP/1.1")],
            &[],
        ),
    )
    .await;
    assert_eq!(loose.status, 200);
    // Nothing was undone, so each member's own answer is given: the write that stayed says so.
    match &answers(&loose).await[0] {
        Answer::ChangeSet(inner) => {
            assert_eq!(inner.iter().map(status).collect::<Vec<_>>(), [201, 400]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.store.lock().unwrap().get("a").map(String::as_str),
        Some("one")
    );
}

#[tokio::test]
async fn change_set_items_count_against_max_items() {
    let store: Store = Arc::default();
    let provider = Provider {
        store: store.clone(),
        counts: Arc::default(),
        fail_commit: false,
    };
    let layer = BatchLayer::new().max_items(2).route(
        BatchRoute::path("/odata/$batch")
            .dialect(Dialect::odata_v4())
            .transactions(provider),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = layer.wrap_router(api(store.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let raw = send(
        addr,
        "/odata/$batch",
        change_set_batch(
            &[
                ("1", &put("a", "1")),
                ("2", &put("b", "2")),
                ("3", &put("c", "3")),
            ],
            &[],
        ),
    )
    .await;
    assert_eq!(raw.status, 413, "{}", raw.text());
    assert_eq!(raw.json()["error"]["reason"], "TOO_MANY_ITEMS");
    assert!(store.lock().unwrap().is_empty());
}

#[tokio::test]
async fn json_atomicity_groups_use_the_same_transactions() {
    let s = serve(false).await;
    let send_json = |body: serde_json::Value| {
        post(
            s.addr,
            "/odata/$batch",
            "application/json",
            body.to_string(),
            &[],
        )
    };
    let ok = send_json(serde_json::json!({"requests": [
        {"id": "1", "atomicityGroup": "g1", "method": "POST", "url": "/things/a",
         "headers": {"content-type": "text/plain"}, "body": "one"},
        {"id": "2", "atomicityGroup": "g1", "method": "POST", "url": "$1/tag"},
        {"id": "3", "method": "GET", "url": "/things/a"},
    ]}))
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.headers["odata-version"], "4.0");
    let v = ok.json();
    let r = v["responses"].as_array().unwrap();
    assert_eq!(r.len(), 3, "{v}");
    assert_eq!(r[0]["atomicityGroup"], "g1");
    assert_eq!(r[1]["atomicityGroup"], "g1");
    assert_eq!(r[1]["body"], "tagged a");
    assert_eq!(r[2]["status"], 200);
    assert!(r[2].get("atomicityGroup").is_none());

    let failed = send_json(serde_json::json!({"requests": [
        {"id": "1", "atomicityGroup": "g2", "method": "POST", "url": "/things/b",
         "headers": {"content-type": "text/plain"}, "body": "two"},
        {"id": "2", "atomicityGroup": "g2", "method": "GET", "url": "/fail/422"},
    ]}))
    .await;
    let v = failed.json();
    let r = v["responses"].as_array().unwrap();
    // Every member is answered under its own id: the one that ran and was undone says so,
    // and the failing one keeps its own answer.
    assert_eq!(r.len(), 2, "{v}");
    assert_eq!(r[0]["id"], "1");
    assert_eq!(r[0]["status"], 424);
    assert_eq!(r[0]["atomicityGroup"], "g2");
    assert!(
        r[0]["body"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rolled back"),
        "{v}"
    );
    assert_eq!(r[1]["id"], "2");
    assert_eq!(r[1]["status"], 422);
    assert!(!s.store.lock().unwrap().contains_key("b"));
    let c = s.counts.lock().unwrap();
    assert_eq!((c.begun, c.committed, c.rolled_back), (2, 1, 1));
}

#[tokio::test]
async fn atomicity_groups_must_be_adjacent() {
    let s = serve(false).await;
    let raw = post(
        s.addr,
        "/odata/$batch",
        "application/json",
        serde_json::json!({"requests": [
            {"id": "1", "atomicityGroup": "g1", "method": "GET", "url": "/things/a"},
            {"id": "2", "method": "GET", "url": "/things/a"},
            {"id": "3", "atomicityGroup": "g1", "method": "GET", "url": "/things/a"},
        ]})
        .to_string(),
        &[],
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.text());
    assert!(raw.text().contains("must follow each other"));
}

#[tokio::test]
async fn a_change_set_counts_against_the_response_limit() {
    let store: Store = Arc::default();
    let provider = Provider {
        store: store.clone(),
        counts: Arc::default(),
        fail_commit: false,
    };
    let layer = BatchLayer::new().max_response_bytes(1000).route(
        BatchRoute::path("/odata/$batch")
            .dialect(Dialect::odata_v4())
            .transactions(provider),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = layer.wrap_router(api(store.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let items: Vec<(String, String)> = (0..6)
        .map(|i| (i.to_string(), put(&format!("t{i}"), "x")))
        .collect();
    let items: Vec<(&str, &str)> = items
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let raw = send(addr, "/odata/$batch", change_set_batch(&items, &[])).await;
    let a = answers(&raw).await;
    assert_eq!(status(&a[0]), 507, "{a:?}");
}

#[tokio::test]
async fn a_failed_change_set_stops_the_batch_unless_asked_to_go_on() {
    let s = serve(false).await;
    let body = || {
        change_set_batch(
            &[("1", &put("a", "one")), ("2", "GET /fail/400 HTTP/1.1")],
            &[("", &put("b", "two"))],
        )
    };
    let raw = send(s.addr, "/odata/$batch", body()).await;
    let a = answers(&raw).await;
    assert_eq!(status(&a[0]), 400);
    assert_eq!(status(&a[1]), 424, "{a:?}");
    assert!(s.store.lock().unwrap().is_empty());

    let raw = post(
        s.addr,
        "/odata/$batch",
        "multipart/mixed; boundary=batch_1",
        body(),
        &[("prefer", "odata.continue-on-error")],
    )
    .await;
    assert_eq!(raw.headers["preference-applied"], "odata.continue-on-error");
    let a = answers(&raw).await;
    assert_eq!(status(&a[0]), 400);
    assert_eq!(status(&a[1]), 201, "{a:?}");
    let store = s.store.lock().unwrap();
    assert_eq!(store.get("a"), None);
    assert_eq!(store.get("b").map(String::as_str), Some("two"));
}

#[tokio::test]
async fn rolls_back_when_the_batch_times_out() {
    let store: Store = Arc::default();
    let counts: Arc<Mutex<Counts>> = Arc::default();
    let provider = Provider {
        store: store.clone(),
        counts: counts.clone(),
        fail_commit: false,
    };
    let layer = BatchLayer::new()
        .batch_timeout(Duration::from_millis(150))
        .route(
            BatchRoute::path("/odata/$batch")
                .dialect(Dialect::odata_v4())
                .transactions(provider),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = layer.wrap_router(api(store.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let raw = send(
        addr,
        "/odata/$batch",
        change_set_batch(
            &[("1", &put("a", "one")), ("2", "GET /slow/2000 HTTP/1.1")],
            &[],
        ),
    )
    .await;
    let a = answers(&raw).await;
    assert_eq!(status(&a[0]), 504, "{a:?}");
    wait_for(|| counts.lock().unwrap().rolled_back == 1).await;
    assert!(store.lock().unwrap().is_empty());
    let c = counts.lock().unwrap();
    assert_eq!((c.begun, c.committed, c.rolled_back), (1, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_sets_run_in_lanes_too() {
    let store: Store = Arc::default();
    let counts: Arc<Mutex<Counts>> = Arc::default();
    let provider = Provider {
        store: store.clone(),
        counts: counts.clone(),
        fail_commit: false,
    };
    let layer = BatchLayer::new()
        .execution(http_batch::Execution::Spawned)
        .route(
            BatchRoute::path("/odata/$batch")
                .dialect(Dialect::odata_v4())
                .transactions(provider),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = layer.wrap_router(api(store.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // Sixteen plain items around two change sets, so that the batch is shared out.
    let mut body = String::new();
    for i in 0..8 {
        body.push_str(&format!(
            "--batch_1\r\nContent-Type: application/http\r\n\r\nGET /things/none{i} HTTP/1.1\r\n"
        ));
    }
    for (cs, fail) in [("cs1", false), ("cs2", true)] {
        body.push_str(&format!(
            "--batch_1\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n"
        ));
        body.push_str(&format!(
            "--{cs}\r\nContent-Type: application/http\r\nContent-ID: {cs}a\r\n\r\n{}\r\n",
            put(&format!("{cs}-a"), "1")
        ));
        let second = if fail {
            "GET /fail/500 HTTP/1.1".to_owned()
        } else {
            put(&format!("{cs}-b"), "2")
        };
        body.push_str(&format!(
            "--{cs}\r\nContent-Type: application/http\r\nContent-ID: {cs}b\r\n\r\n{second}\r\n--{cs}--\r\n"
        ));
    }
    for i in 0..8 {
        body.push_str(&format!(
            "--batch_1\r\nContent-Type: application/http\r\n\r\nGET /things/none{i} HTTP/1.1\r\n"
        ));
    }
    body.push_str("--batch_1--\r\n");
    let raw = post(
        addr,
        "/odata/$batch",
        "multipart/mixed; boundary=batch_1",
        body,
        &[("prefer", "odata.continue-on-error")],
    )
    .await;
    let a = answers(&raw).await;
    assert_eq!(a.len(), 18, "{a:?}");
    assert!(
        matches!(a[8], Answer::ChangeSet(ref inner) if inner.len() == 2),
        "{:?}",
        a[8]
    );
    assert_eq!(status(&a[9]), 500);
    let store = store.lock().unwrap();
    let keys: Vec<&str> = store.keys().map(String::as_str).collect();
    assert_eq!(keys, ["cs1-a", "cs1-b"]);
    let c = counts.lock().unwrap();
    assert_eq!((c.begun, c.committed, c.rolled_back), (2, 1, 1));
}

#[tokio::test]
async fn change_set_items_count_against_the_cost_budget() {
    let store: Store = Arc::default();
    let provider = Provider {
        store: store.clone(),
        counts: Arc::default(),
        fail_commit: false,
    };
    let layer = BatchLayer::new().cost_budget(2).route(
        BatchRoute::path("/odata/$batch")
            .dialect(Dialect::odata_v4())
            .transactions(provider),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = layer.wrap_router(api(store.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let raw = send(
        addr,
        "/odata/$batch",
        change_set_batch(
            &[
                ("1", &put("a", "1")),
                ("2", &put("b", "2")),
                ("3", &put("c", "3")),
            ],
            &[],
        ),
    )
    .await;
    assert_eq!(raw.status, 413, "{}", raw.text());
    assert_eq!(raw.json()["error"]["reason"], "COST_EXCEEDED");
    assert!(store.lock().unwrap().is_empty());
}
