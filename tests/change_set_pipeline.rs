//! Change sets as part of the batch pipeline, on a real SQLite database through the `sqlx`
//! provider, over real sockets: `$` references resolve under the route's service root;
//! dependencies hold into, out of and onto change sets; every member keeps its own id, index
//! and request id; a change set whose answers cannot be sent is rolled back rather than
//! reported failed after a commit; and a transaction that cannot begin before the batch
//! deadline is answered `504` with nothing kept. Multipart answers are read by multer, JSON
//! answers by serde_json; what was kept is read from the database on a connection of its own.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_batch::format::Dialect;
use http_batch::sqlx::{DbError, Transactions, Tx};
use http_batch::{BatchContext, BatchLayer, BatchRoute};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;

use support::odata::{answers, Answer};
use support::Raw;

type Db = sqlx::Sqlite;

async fn add(mut tx: Tx<Db>, Path(name): Path<String>) -> Result<Response, DbError> {
    sqlx::query("INSERT INTO things (name) VALUES ($1)")
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let location = format!("/api/v1/things/{name}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        "created",
    )
        .into_response())
}

async fn find(mut tx: Tx<Db>, Path(name): Path<String>) -> Result<StatusCode, DbError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT name FROM things WHERE name = $1")
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(match row {
        Some(_) => StatusCode::OK,
        None => StatusCode::NOT_FOUND,
    })
}

async fn set_tag(
    mut tx: Tx<Db>,
    Path(name): Path<String>,
    tag: String,
) -> Result<StatusCode, DbError> {
    let done = sqlx::query("UPDATE things SET tag = $2 WHERE name = $1")
        .bind(&name)
        .bind(&tag)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(match done.rows_affected() {
        0 => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    })
}

/// What the handler was told about itself: its index and id in the batch, its request id.
async fn whoami(ctx: BatchContext, headers: HeaderMap) -> Json<Value> {
    let rid = headers.get("x-request-id").map(|v| v.to_str().unwrap());
    Json(json!({ "index": ctx.index(), "id": ctx.id(), "rid": rid }))
}

async fn big(Path(kib): Path<usize>) -> String {
    "x".repeat(kib * 1024)
}

async fn fail(Path(status): Path<u16>) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The layer's settings a test changes.
#[derive(Clone, Copy, Default)]
struct Limits {
    max_response_bytes: Option<usize>,
    max_held_bytes: Option<usize>,
    batch_timeout: Option<Duration>,
}

fn app(db: Transactions<Db>, limits: Limits) -> Router {
    let api = Router::new()
        .route("/api/v1/things/{name}", post(add).get(find))
        .route("/api/v1/things/{name}/tag", axum::routing::put(set_tag))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/big/{kib}", get(big))
        .route("/api/v1/fail/{status}", get(fail))
        .with_state(db.clone());
    let mut layer = BatchLayer::new().route(
        BatchRoute::path("/odata/$batch")
            .dialect(Dialect::odata_v4())
            .service_root("/api/v1")
            .transactions(db),
    );
    if let Some(n) = limits.max_response_bytes {
        layer = layer.max_response_bytes(n);
    }
    if let Some(n) = limits.max_held_bytes {
        layer = layer.max_held_bytes(n);
    }
    if let Some(d) = limits.batch_timeout {
        layer = layer.batch_timeout(d);
    }
    layer.wrap_router(api).into()
}

fn options(path: &std::path::Path) -> SqliteConnectOptions {
    SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
}

/// A fresh database, the app served over it, and a pool of its own to check what was kept.
async fn start(limits: Limits) -> (SocketAddr, SqlitePool) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "change-set-pipeline-{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let check = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options(&path))
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE things (name TEXT PRIMARY KEY, tag TEXT)")
        .execute(&check)
        .await
        .unwrap();
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options(&path).busy_timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    let addr = support::serve(app(Transactions::new(pool), limits)).await;
    (addr, check)
}

async fn names(check: &SqlitePool) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM things ORDER BY name")
        .fetch_all(check)
        .await
        .unwrap()
}

/// Posts a JSON batch that goes on after a failure.
async fn json_batch(addr: SocketAddr, requests: Value) -> Value {
    let raw = support::post(
        addr,
        "/odata/$batch",
        "application/json",
        json!({ "requests": requests }).to_string(),
        &[
            ("prefer", "odata.continue-on-error"),
            ("x-request-id", "outer-1"),
        ],
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    raw.json()
}

/// Each response's id and status, in order.
fn id_status(v: &Value) -> Vec<(String, u64)> {
    v["responses"]
        .as_array()
        .unwrap_or_else(|| panic!("no responses: {v}"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn message<'a>(v: &'a Value, id: &str) -> &'a str {
    v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .and_then(|r| r["body"]["error"]["message"].as_str())
        .unwrap_or_else(|| panic!("no error message for {id}: {v}"))
}

fn member(id: &str, method: &str, url: &str) -> Value {
    json!({ "id": id, "atomicityGroup": "g", "method": method, "url": url })
}

/// One multipart part: a request, with its headers before the blank line.
fn part(headers: &str, request: &str) -> String {
    format!(
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n{headers}\r\n{request}\r\n"
    )
}

/// A multipart batch of `parts`, each either a request part or a change set of them.
fn multipart(parts: &[Part]) -> String {
    let mut body = String::new();
    for (k, p) in parts.iter().enumerate() {
        body.push_str("--batch_1\r\n");
        match p {
            Part::Item(headers, request) => body.push_str(&part(headers, request)),
            Part::ChangeSet(headers, members) => {
                let b = format!("changeset_{k}");
                body.push_str(&format!(
                    "Content-Type: multipart/mixed; boundary={b}\r\n{headers}\r\n"
                ));
                for (headers, request) in members {
                    body.push_str(&format!("--{b}\r\n{}", part(headers, request)));
                }
                body.push_str(&format!("--{b}--\r\n"));
            }
        }
    }
    body.push_str("--batch_1--\r\n");
    body
}

enum Part<'a> {
    Item(&'a str, &'a str),
    ChangeSet(&'a str, Vec<(&'a str, &'a str)>),
}

async fn send_multipart(addr: SocketAddr, parts: &[Part<'_>]) -> Raw {
    let raw = support::post(
        addr,
        "/odata/$batch",
        "multipart/mixed; boundary=batch_1",
        multipart(parts),
        &[
            ("prefer", "odata.continue-on-error"),
            ("x-request-id", "outer-1"),
        ],
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    raw
}

/// The change set's members: Content-ID, status and the whole answer text.
fn members(answer: &Answer) -> Vec<(Option<String>, u16, String)> {
    let Answer::ChangeSet(inner) = answer else {
        panic!("not a change set: {answer:?}")
    };
    inner
        .iter()
        .map(|a| match a {
            Answer::Item {
                content_id,
                status,
                text,
            } => (content_id.clone(), *status, text.clone()),
            Answer::ChangeSet(_) => panic!("a change set inside a change set"),
        })
        .collect()
}

#[tokio::test]
async fn a_reference_resolves_under_the_service_root_in_multipart() {
    let (addr, check) = start(Limits::default()).await;
    let raw = send_multipart(
        addr,
        &[Part::ChangeSet(
            "",
            vec![
                (
                    "Content-ID: 1\r\n",
                    "POST things/hen HTTP/1.1\r\nContent-Length: 0\r\n",
                ),
                (
                    "Content-ID: 2\r\n",
                    "PUT $1/tag HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nbrown",
                ),
            ],
        )],
    )
    .await;
    let parts = answers(&raw).await;
    let got: Vec<(Option<String>, u16)> = members(&parts[0])
        .into_iter()
        .map(|(id, status, _)| (id, status))
        .collect();
    assert_eq!(
        got,
        [(Some("1".into()), 201), (Some("2".into()), 200)],
        "{}",
        raw.text()
    );
    let tag: Option<String> = sqlx::query_scalar("SELECT tag FROM things WHERE name = 'hen'")
        .fetch_one(&check)
        .await
        .unwrap();
    assert_eq!(tag.as_deref(), Some("brown"));
}

#[tokio::test]
async fn a_reference_resolves_under_the_service_root_in_json() {
    let (addr, check) = start(Limits::default()).await;
    let mut tag = member("2", "PUT", "$1/tag");
    tag["headers"] = json!({ "content-type": "text/plain" });
    tag["body"] = json!("speckled");
    let v = json_batch(addr, json!([member("1", "POST", "things/hen"), tag])).await;
    assert_eq!(id_status(&v), [("1".into(), 201), ("2".into(), 200)], "{v}");
    let tag: Option<String> = sqlx::query_scalar("SELECT tag FROM things WHERE name = 'hen'")
        .fetch_one(&check)
        .await
        .unwrap();
    assert_eq!(tag.as_deref(), Some("speckled"));
}

/// A member whose dependency outside its change set failed is not run, and its change set
/// rolls back; when the dependency succeeds, the same batch commits.
#[tokio::test]
async fn a_member_waits_for_its_dependency_outside_the_change_set() {
    let (addr, check) = start(Limits::default()).await;
    let batch = |first: &str| {
        let mut b = member("b", "POST", "things/x");
        b["dependsOn"] = json!(["a"]);
        json!([
            { "id": "a", "method": "GET", "url": first },
            b,
            member("c", "POST", "things/y"),
        ])
    };

    let v = json_batch(addr, batch("fail/500")).await;
    assert_eq!(
        id_status(&v),
        [("a".into(), 500), ("b".into(), 424), ("c".into(), 424)],
        "{v}"
    );
    assert!(message(&v, "b").contains("depend"), "{v}");
    assert!(message(&v, "c").contains("not run"), "{v}");
    assert!(names(&check).await.is_empty(), "nothing was kept");

    let v = json_batch(addr, batch("whoami")).await;
    assert_eq!(
        id_status(&v),
        [("a".into(), 200), ("b".into(), 201), ("c".into(), 201)],
        "{v}"
    );
    assert_eq!(names(&check).await, ["x", "y"]);
}

/// `Depends-On` on a change-set part holds for every member: the change set does not run when
/// the part it depends on failed.
#[tokio::test]
async fn depends_on_a_change_set_part_holds_for_its_members() {
    let (addr, check) = start(Limits::default()).await;
    let raw = send_multipart(
        addr,
        &[
            Part::Item("Content-ID: a\r\n", "GET fail/500 HTTP/1.1\r\n"),
            Part::ChangeSet(
                "Depends-On: a\r\n",
                vec![
                    (
                        "Content-ID: m1\r\n",
                        "POST things/m1 HTTP/1.1\r\nContent-Length: 0\r\n",
                    ),
                    (
                        "Content-ID: m2\r\n",
                        "POST things/m2 HTTP/1.1\r\nContent-Length: 0\r\n",
                    ),
                ],
            ),
        ],
    )
    .await;
    let parts = answers(&raw).await;
    assert!(
        matches!(&parts[0], Answer::Item { status: 500, .. }),
        "{parts:?}"
    );
    // OData 4.0 answers a failed change set with the one answer that failed it.
    match &parts[1] {
        Answer::Item {
            content_id, status, ..
        } => assert_eq!((content_id.as_deref(), *status), (Some("m1"), 424)),
        other => panic!("a failed change set is answered by one part: {other:?}"),
    }
    assert_eq!(parts.len(), 2, "{}", raw.text());
    assert!(names(&check).await.is_empty(), "nothing was kept");
}

/// `dependsOn` may name an atomicity group: the item waits for the group's outcome, runs after
/// a commit (and sees what was committed), and is not run after a rollback.
#[tokio::test]
async fn depends_on_may_name_an_atomicity_group() {
    let (addr, check) = start(Limits::default()).await;
    let mut after = json!({ "id": "after", "method": "GET", "url": "things/p1" });
    after["dependsOn"] = json!(["g"]);
    let v = json_batch(
        addr,
        json!([
            member("p1", "POST", "things/p1"),
            member("p2", "POST", "things/p2"),
            after
        ]),
    )
    .await;
    assert_eq!(
        id_status(&v),
        [
            ("p1".into(), 201),
            ("p2".into(), 201),
            ("after".into(), 200)
        ],
        "{v}"
    );

    let mut after = json!({ "id": "after", "method": "GET", "url": "things/p1" });
    after["dependsOn"] = json!(["g"]);
    let v = json_batch(
        addr,
        json!([
            member("q1", "POST", "things/q1"),
            member("q2", "GET", "fail/422"),
            after
        ]),
    )
    .await;
    assert_eq!(
        id_status(&v),
        [
            ("q1".into(), 424),
            ("q2".into(), 422),
            ("after".into(), 424)
        ],
        "{v}"
    );
    assert!(message(&v, "q1").contains("rolled back"), "{v}");
    assert_eq!(names(&check).await, ["p1", "p2"], "q1 was rolled back");
}

/// Every member is an item of its own to the handler: its own index, its own id and its own
/// request id, in JSON and in multipart.
#[tokio::test]
async fn each_member_keeps_its_own_index_id_and_request_id() {
    let (addr, _check) = start(Limits::default()).await;
    let v = json_batch(
        addr,
        json!([
            { "id": "before", "method": "GET", "url": "whoami" },
            member("m1", "GET", "whoami"),
            member("m2", "GET", "whoami"),
            member("m3", "GET", "whoami"),
        ]),
    )
    .await;
    let bodies: Vec<&Value> = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["body"])
        .collect();
    let seen: Vec<(u64, &str)> = bodies
        .iter()
        .map(|b| (b["index"].as_u64().unwrap(), b["id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [(0, "before"), (1, "m1"), (2, "m2"), (3, "m3")],
        "{v}"
    );
    let mut rids: Vec<&str> = bodies.iter().map(|b| b["rid"].as_str().unwrap()).collect();
    assert!(rids.iter().all(|r| r.starts_with("outer-1")), "{rids:?}");
    rids.sort_unstable();
    rids.dedup();
    assert_eq!(rids.len(), 4, "every item has a request id of its own");

    let raw = send_multipart(
        addr,
        &[Part::ChangeSet(
            "",
            vec![
                ("Content-ID: 7\r\n", "GET whoami HTTP/1.1\r\n"),
                ("Content-ID: 9\r\n", "GET whoami HTTP/1.1\r\n"),
            ],
        )],
    )
    .await;
    let parts = answers(&raw).await;
    let seen: Vec<(Option<String>, Value)> = members(&parts[0])
        .into_iter()
        .map(|(id, _, text)| {
            let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
            let v: Value = serde_json::from_str(body.trim()).unwrap();
            (id, json!([v["index"], v["id"]]))
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("7".into()), json!([0, "7"])),
            (Some("9".into()), json!([1, "9"]))
        ]
    );
}

/// A change set whose answers would not fit in the batch response is rolled back, so no answer
/// says failed about work that was kept.
#[tokio::test]
async fn a_change_set_too_large_to_answer_is_rolled_back() {
    let limits = Limits {
        max_response_bytes: Some(64 * 1024),
        ..Limits::default()
    };
    let (addr, check) = start(limits).await;
    let v = json_batch(
        addr,
        json!([
            member("1", "POST", "things/big"),
            member("2", "GET", "big/40"),
            member("3", "GET", "big/40"),
        ]),
    )
    .await;
    let statuses: Vec<u64> = id_status(&v).into_iter().map(|(_, s)| s).collect();
    assert!(statuses.iter().all(|s| *s >= 400), "{statuses:?}");
    assert!(statuses.contains(&507), "{statuses:?}");
    assert!(message(&v, "1").contains("rolled back"), "{v}");
    assert!(names(&check).await.is_empty(), "the POST was rolled back");
}

/// Members' answers are held under the batch's held-bytes budget: a change set whose held
/// answers would pass it is rolled back, and says so, rather than holding them all.
#[tokio::test]
async fn held_answers_of_a_change_set_are_bounded() {
    let limits = Limits {
        max_held_bytes: Some(256 * 1024),
        ..Limits::default()
    };
    let (addr, check) = start(limits).await;
    let mut requests = vec![member("0", "POST", "things/held")];
    for i in 1..=64 {
        requests.push(member(&i.to_string(), "GET", "big/64"));
    }
    let v = json_batch(addr, Value::Array(requests)).await;
    let answered = id_status(&v);
    assert_eq!(answered.len(), 65, "every member is answered");
    assert!(answered.iter().all(|(_, s)| *s >= 400), "{answered:?}");
    assert!(message(&v, "0").contains("rolled back"), "{v}");
    assert!(names(&check).await.is_empty(), "the POST was rolled back");
    let body_bytes: usize = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].to_string().len())
        .sum();
    assert!(
        body_bytes < 256 * 1024,
        "no held answer was sent: {body_bytes} bytes"
    );
}

/// A change set whose transaction cannot begin before the batch deadline (another connection
/// holds SQLite's write lock) is answered `504`, nothing of it is kept, and no transaction is
/// left open: once the lock is free, the next change set commits.
#[tokio::test]
async fn a_begin_that_outlasts_the_batch_deadline_keeps_nothing() {
    let limits = Limits {
        batch_timeout: Some(Duration::from_millis(400)),
        ..Limits::default()
    };
    let (addr, check) = start(limits).await;
    let mut lock = check.acquire().await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let v = json_batch(
        addr,
        json!([
            member("1", "POST", "things/late"),
            member("2", "POST", "things/later")
        ]),
    )
    .await;
    assert_eq!(id_status(&v), [("1".into(), 504), ("2".into(), 504)], "{v}");
    assert!(message(&v, "1").contains("nothing of it was kept"), "{v}");

    sqlx::raw_sql("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    // The abandoned BEGIN may still be waiting on the database's busy timeout; what it leaves
    // must not keep the next change set from committing.
    let v = json_batch(addr, json!([member("1", "POST", "things/after")])).await;
    assert_eq!(id_status(&v), [("1".into(), 201)], "{v}");
    assert_eq!(names(&check).await, ["after"]);
}

/// OData's `if`: a request runs when its condition on the outcomes it names holds, failed
/// dependencies included (a compensating call), and is answered `424`, not run, when it does
/// not, or when the condition asks what this server does not evaluate.
#[tokio::test]
async fn a_condition_decides_whether_a_dependent_runs() {
    let (addr, check) = start(Limits::default()).await;
    let conditional = |id: &str, url: &str, condition: &str| json!({ "id": id, "method": "POST", "url": url, "if": condition, "dependsOn": ["a"] });
    let batch = |first: &str| {
        json!([
            { "id": "a", "method": "GET", "url": first },
            { "id": "b", "method": "GET", "url": "whoami" },
            conditional("undo", "things/undo", "not $a/$succeeded"),
            conditional("either", "things/either", "$a/$succeeded or $b/$succeeded"),
            conditional("both", "things/both", "($a/$succeeded) and $b/$succeeded"),
            conditional("body", "things/body", "$a/status eq 'ok'"),
            { "id": "never", "method": "POST", "url": "things/never", "if": "false" },
        ])
    };

    let v = json_batch(addr, batch("fail/500")).await;
    assert_eq!(
        id_status(&v),
        [
            ("a".into(), 500),
            ("b".into(), 200),
            ("undo".into(), 201),
            ("either".into(), 201),
            ("both".into(), 424),
            ("body".into(), 424),
            ("never".into(), 424)
        ],
        "{v}"
    );
    assert!(message(&v, "both").contains("does not hold"), "{v}");
    assert!(message(&v, "body").contains("cannot be evaluated"), "{v}");
    assert_eq!(names(&check).await, ["either", "undo"]);

    // The same batch when `a` succeeds: the compensating call is the one not run.
    sqlx::query("DELETE FROM things")
        .execute(&check)
        .await
        .unwrap();
    let v = json_batch(addr, batch("whoami")).await;
    let statuses: Vec<u64> = id_status(&v).into_iter().map(|(_, s)| s).collect();
    assert_eq!(statuses, [200, 200, 424, 201, 201, 424, 424], "{v}");
    assert_eq!(names(&check).await, ["both", "either"]);
}

/// A condition that does not hold fails the atomicity group of the request that carries it, and
/// a condition naming an id the batch does not have refuses the batch in words.
#[tokio::test]
async fn conditions_inside_change_sets_and_unknown_names() {
    let (addr, check) = start(Limits::default()).await;
    let mut guarded = member("2", "POST", "things/guarded");
    guarded["if"] = json!("$a/$succeeded");
    let v = json_batch(
        addr,
        json!([
            { "id": "a", "method": "GET", "url": "fail/404" },
            member("1", "POST", "things/first"),
            guarded,
        ]),
    )
    .await;
    assert_eq!(
        id_status(&v),
        [("a".into(), 404), ("1".into(), 424), ("2".into(), 424)],
        "{v}"
    );
    assert!(message(&v, "2").contains("does not hold"), "{v}");
    assert!(names(&check).await.is_empty(), "the group was rolled back");

    let raw = support::post(
        addr,
        "/odata/$batch",
        "application/json",
        json!({ "requests": [
            { "id": "x", "method": "GET", "url": "whoami", "if": "$nobody/$succeeded" }
        ]})
        .to_string(),
        &[],
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.text());
    assert!(raw.text().contains("nobody"), "{}", raw.text());
}
