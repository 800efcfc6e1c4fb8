//! The farm example on a real database, over real sockets, on SQLite and on a throwaway
//! PostgreSQL: change sets that roll back never erase what other clients were told was kept;
//! a JSON atomicity group (with a `$1` reference) is one transaction; and, on PostgreSQL,
//! change sets from different clients run side by side (no lock in the app). What was kept is
//! read from the database itself.

#[path = "../examples/farm/app.rs"]
mod farm;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

const TOKEN: &str = "s3cret";

async fn fresh(postgres: bool) -> farm::Db {
    if postgres {
        let url = support::postgres::server().fresh_database().await;
        farm::connect(&url).expect("a valid PostgreSQL URL")
    } else {
        farm::fresh()
    }
}

async fn names(db: &farm::Db) -> Vec<String> {
    let mut names: Vec<String> = sqlx::query_scalar("SELECT name FROM animals")
        .fetch_all(db.pool())
        .await
        .unwrap();
    names.sort();
    names
}

async fn post_animal(addr: SocketAddr, name: &str, token: Option<&str>) -> support::Raw {
    let mut req = http::Request::post(format!("http://{addr}/farm/v1/animals"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = json!({ "animalName": name, "animalAge": 1 }).to_string();
    support::send(req.body(http_body_util::Full::new(body.into())).unwrap()).await
}

/// A multipart OData 4 batch of `n` change sets, each one `POST animals` of its own.
fn one_item_change_sets(n: usize, round: usize) -> String {
    let mut body = String::new();
    for i in 0..n {
        let json = format!(r#"{{"animalName":"intruder-{round}-{i}"}}"#);
        body.push_str(&format!(
            "--batch\r\nContent-Type: multipart/mixed; boundary=cs{i}\r\n\r\n\
             --cs{i}\r\nContent-Type: application/http\r\nContent-ID: {i}\r\n\r\n\
             POST animals HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}\r\n\
             --cs{i}--\r\n",
            json.len()
        ));
    }
    body.push_str("--batch--\r\n");
    body
}

/// One client without credentials sends batches of one-item change sets, each answered 401
/// and so rolled back, while another makes 300 authorised creates: every create that was
/// answered 201 is in the database afterwards. (A farm whose rollback put back a copy of the
/// store taken when the change set began erased the creates made meanwhile.)
async fn rollbacks_never_erase_acknowledged_writes(postgres: bool) {
    let db = fresh(postgres).await;
    let addr = farm::spawn_on(Some(TOKEN.into()), db.clone()).await;

    let done = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let intruder = {
        let done = done.clone();
        let rounds = rounds.clone();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let round = rounds.load(Ordering::Relaxed);
                let raw = support::post(
                    addr,
                    "/odata/v4/farm/v1/$batch",
                    "multipart/mixed; boundary=batch",
                    one_item_change_sets(4, round),
                    &[("prefer", "odata.continue-on-error")],
                )
                .await;
                assert_eq!(raw.status, 200, "{}", raw.text());
                let text = raw.text();
                assert_eq!(
                    text.matches("HTTP/1.1 401 Unauthorized\r\n").count(),
                    4,
                    "{text}"
                );
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The writes start once rolled-back change sets are under way.
    for _ in 0..1000 {
        if rounds.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before = rounds.load(Ordering::Relaxed);
    assert!(
        before > 0,
        "the change sets without credentials did not run"
    );

    let mut writers = Vec::new();
    for w in 0..6 {
        writers.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..50 {
                let name = format!("animal-{w}-{i}");
                let raw = post_animal(addr, &name, Some(TOKEN)).await;
                assert_eq!(raw.status, 201, "{name}: {}", raw.text());
                assert_eq!(
                    raw.headers["location"],
                    format!("/farm/v1/animals/{name}").as_str()
                );
                made.push(name);
            }
            made
        }));
    }
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    intruder.await.unwrap();
    let rounds = rounds.load(Ordering::Relaxed) - before;
    assert!(
        rounds > 0,
        "no rolled-back change set ran alongside the writes"
    );

    let kept = names(&db).await;
    assert_eq!(acknowledged.len(), 300);
    for name in &acknowledged {
        assert!(
            kept.binary_search(name).is_ok(),
            "{name} was acknowledged but is gone"
        );
    }
    assert!(kept.iter().all(|n| !n.starts_with("intruder")), "{kept:?}");
    assert_eq!(
        kept.len(),
        303,
        "the three first animals and the 300 new ones"
    );
    eprintln!("{} rounds of rolled-back change sets ran alongside", rounds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_rollbacks_never_erase_acknowledged_writes() {
    rollbacks_never_erase_acknowledged_writes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rollbacks_never_erase_acknowledged_writes() {
    rollbacks_never_erase_acknowledged_writes(true).await;
}

async fn json_batch(addr: SocketAddr, requests: Value) -> Value {
    let raw = support::post(
        addr,
        "/odata/v4/farm/v1/$batch",
        "application/json",
        json!({ "requests": requests }).to_string(),
        &[],
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    raw.json()
}

/// A JSON atomicity group is one transaction: create, change what was created, then fail on
/// a missing animal leaves nothing; without the failing request both are kept.
async fn json_atomicity_group_is_one_transaction(postgres: bool) {
    let db = fresh(postgres).await;
    let addr = farm::spawn_on(None, db.clone()).await;
    let create = json!({"id": "1", "atomicityGroup": "g", "method": "POST", "url": "animals",
        "headers": {"content-type": "application/json"}, "body": {"animalName": "hen"}});
    let change = json!({"id": "2", "atomicityGroup": "g", "method": "PUT", "url": "animals/hen",
        "headers": {"content-type": "application/json"}, "body": {"animalAge": 3}});
    let missing = json!({"id": "3", "atomicityGroup": "g", "method": "DELETE",
        "url": "animals/unicorn"});

    let v = json_batch(addr, json!([create, change, missing])).await;
    let answers: Vec<(&Value, &Value)> = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (&r["id"], &r["status"]))
        .collect();
    assert_eq!(
        answers,
        [
            (&json!("1"), &json!(424)),
            (&json!("2"), &json!(424)),
            (&json!("3"), &json!(404))
        ],
        "every member is answered under its own id: {v}"
    );
    assert_eq!(names(&db).await, ["cow", "pony", "sheep"]);

    let v = json_batch(addr, json!([create, change])).await;
    let statuses: Vec<&Value> = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [201, 200], "{v}");
    let age: Option<i64> = sqlx::query_scalar("SELECT age FROM animals WHERE name = 'hen'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(age, Some(3));
}

#[tokio::test]
async fn sqlite_json_atomicity_group_is_one_transaction() {
    json_atomicity_group_is_one_transaction(false).await;
}

#[tokio::test]
async fn postgres_json_atomicity_group_is_one_transaction() {
    json_atomicity_group_is_one_transaction(true).await;
}

/// On PostgreSQL, a change set that takes its time does not hold up another client's change
/// set: the second commits while the first still runs, and each keeps its own animal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_change_sets_of_different_clients_run_side_by_side() {
    let db = fresh(true).await;
    let addr = farm::spawn_on(None, db.clone()).await;
    let post = |id: &str, body: Value| {
        json!({"id": id, "atomicityGroup": "g", "method": "POST", "url": "animals",
            "headers": {"content-type": "application/json"}, "body": body})
    };
    let slow = tokio::spawn(async move {
        json_batch(
            addr,
            json!([
                post("1", json!({"animalName": "tortoise"})),
                json!({"id": "2", "atomicityGroup": "g", "method": "GET", "url": "slow/1500"}),
            ]),
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let quick = json_batch(addr, json!([post("1", json!({"animalName": "hare"}))])).await;
    assert_eq!(quick["responses"][0]["status"], 201, "{quick}");
    assert!(
        !slow.is_finished(),
        "the quick change set waited for the slow one"
    );
    // The slow change set's animal is not visible before it commits.
    assert_eq!(names(&db).await, ["cow", "hare", "pony", "sheep"]);
    let slow = slow.await.unwrap();
    assert_eq!(slow["responses"][0]["status"], 201, "{slow}");
    assert_eq!(
        names(&db).await,
        ["cow", "hare", "pony", "sheep", "tortoise"]
    );
}
