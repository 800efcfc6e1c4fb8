//! Asynchronous batches (`Prefer: respond-async`) over real sockets: accepted with a status
//! monitor, polled on another instance of the app that shares the store, answered as OData 4.01
//! asks (read here with httparse, and the batch inside with multer), cancelled with `DELETE`,
//! private to their submitter, dropped after their retention, and refused whole with `503`
//! when the store is down or stalls. Every case runs on the in-memory store and, with the
//! `redis` feature, on a real `redis-server`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_batch::store::{AnswerStore, MemoryStore};
use http_batch::{Idempotency, RespondAsync};
use support::kept::{
    body, delete_monitor, get_monitor, poll_done, submit, two, unwrap_http, Redis, Stalled,
};

struct Store {
    store: Arc<dyn AnswerStore>,
    redis: Option<Redis>,
}

impl Store {
    fn memory() -> Store {
        Store {
            store: Arc::new(MemoryStore::default()),
            redis: None,
        }
    }

    #[cfg(feature = "redis")]
    fn redis() -> Store {
        let redis = Redis::start();
        let store = http_batch::store::RedisStore::new(&redis.url()).unwrap();
        Store {
            store: Arc::new(store),
            redis: Some(redis),
        }
    }
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::Store::memory()).await
            }

            #[cfg(feature = "redis")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(super::Store::redis()).await
            }
        }
    )*};
}

on_both_stores!(
    submitted_on_one_polled_on_the_other,
    envelope_errors_answer_at_once,
    only_the_submitter_sees_the_monitor,
    delete_cancels_items_not_started,
    answers_expire_after_retention,
    an_answer_too_large_to_keep_says_so,
);

const ALICE: (&str, &str) = ("authorization", "Bearer alice");
const BOB: (&str, &str) = ("authorization", "Bearer bob");
const ASYNC: (&str, &str) = ("prefer", "respond-async");

fn respond() -> RespondAsync {
    RespondAsync::new().progress_every(Duration::from_millis(20))
}

async fn submitted_on_one_polled_on_the_other(s: Store) {
    let (a, b, ran) = two(s.store.clone(), respond(), Idempotency::new()).await;
    let batch = body(&[
        "GET /slow/10 HTTP/1.1\r\n",
        "GET /slow/300 HTTP/1.1\r\n",
        "POST /write HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    ]);
    let started = Instant::now();
    let raw = submit(a, &batch, &[ASYNC, ALICE]).await;
    assert_eq!(raw.status, 202, "{}", raw.text());
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "answered before the items ran"
    );
    assert_eq!(raw.headers["preference-applied"], "respond-async");
    assert!(raw.headers.contains_key("retry-after"));
    let location = raw.headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/batch-monitor/"), "{location}");
    // 128 random bits, in hex.
    assert_eq!(location.len(), "/batch-monitor/".len() + 32);

    // While it runs, the other instance says so, with progress.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let running = get_monitor(b, &location, &[ALICE]).await;
    assert_eq!(running.status, 202, "{}", running.text());
    assert!(running.headers.contains_key("retry-after"));
    let progress = running.json();
    assert_eq!(progress["status"], "running");
    assert_eq!(progress["total"], 3, "{progress}");
    assert!(progress["done"].as_u64().unwrap() >= 1, "{progress}");
    assert!(progress["done"].as_u64().unwrap() < 3, "{progress}");

    let done = poll_done(b, &location, &[ALICE], Duration::from_secs(10)).await;
    let answer = unwrap_http(&done);
    assert_eq!(answer.status, 200);
    let parts = support::parts(&answer).await;
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p.status == 200), "{parts:?}");
    assert_eq!(parts[1].json()["slept"], 300);
    assert_eq!(parts[2].json()["written"], 5);
    assert_eq!(ran.get(), 3);
    // Kept for the retention time: the same answer again, from either instance.
    let again = get_monitor(a, &location, &[ALICE]).await;
    assert_eq!(again.body, done.body);
    drop(s);
}

async fn envelope_errors_answer_at_once(s: Store) {
    let (a, _, ran) = two(s.store.clone(), respond(), Idempotency::new()).await;
    let raw = support::post(
        a,
        "/batch",
        "multipart/mixed; boundary=b",
        "no boundary in here",
        &[ASYNC],
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.text());
    assert!(!raw.headers.contains_key("location"));
    assert!(raw.json()["error"]["message"].as_str().unwrap().len() > 10);
    assert_eq!(ran.get(), 0);
    drop(s);
}

async fn only_the_submitter_sees_the_monitor(s: Store) {
    let (a, b, _) = two(s.store.clone(), respond(), Idempotency::new()).await;
    let raw = submit(a, &body(&["GET /slow/1 HTTP/1.1\r\n"]), &[ASYNC, ALICE]).await;
    assert_eq!(raw.status, 202);
    let location = raw.headers["location"].to_str().unwrap().to_owned();
    let done = poll_done(b, &location, &[ALICE], Duration::from_secs(10)).await;
    assert_eq!(done.status, 200);
    // Someone else, or no one, finds nothing there; nor can they cancel or drop it.
    for who in [&[BOB][..], &[]] {
        assert_eq!(get_monitor(b, &location, who).await.status, 404);
        assert_eq!(delete_monitor(a, &location, who).await.status, 404);
    }
    // A guessed id is nothing either.
    let guessed = format!("/batch-monitor/{}", "0".repeat(32));
    assert_eq!(get_monitor(a, &guessed, &[ALICE]).await.status, 404);
    // Alice still has it; her DELETE drops it.
    assert_eq!(get_monitor(a, &location, &[ALICE]).await.status, 200);
    assert_eq!(delete_monitor(b, &location, &[ALICE]).await.status, 204);
    assert_eq!(get_monitor(a, &location, &[ALICE]).await.status, 404);
    drop(s);
}

async fn delete_cancels_items_not_started(s: Store) {
    let (a, b, ran) = two(s.store.clone(), respond(), Idempotency::new()).await;
    let items: Vec<String> = (0..6)
        .map(|_| "GET /slow/150 HTTP/1.1\r\n".to_owned())
        .collect();
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    let raw = submit(a, &body(&items), &[ASYNC, ALICE]).await;
    assert_eq!(raw.status, 202);
    let location = raw.headers["location"].to_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Cancelled through the other instance: the running one hears it through the store.
    let cancel = delete_monitor(b, &location, &[ALICE]).await;
    assert_eq!(cancel.status, 202, "{}", cancel.text());
    let done = poll_done(a, &location, &[ALICE], Duration::from_secs(10)).await;
    let answer = unwrap_http(&done);
    let parts = support::parts(&answer).await;
    assert_eq!(parts.len(), 6);
    let ran_items = parts.iter().filter(|p| p.status == 200).count();
    let not_run = parts.iter().filter(|p| p.status == 409).count();
    assert_eq!(ran_items + not_run, 6, "{parts:?}");
    assert!(
        ran_items >= 1 && not_run >= 1,
        "{ran_items} ran, {not_run} not run"
    );
    // The answer says which ran, and the handlers agree.
    assert_eq!(ran.get(), ran_items);
    let last = parts.last().unwrap().json();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{last}"
    );
    // Nothing more runs later.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ran.get(), ran_items);
    drop(s);
}

async fn answers_expire_after_retention(s: Store) {
    let opts = respond().retention(Duration::from_millis(400));
    let (a, _, _) = two(s.store.clone(), opts, Idempotency::new()).await;
    let raw = submit(a, &body(&["GET /slow/1 HTTP/1.1\r\n"]), &[ASYNC]).await;
    let location = raw.headers["location"].to_str().unwrap().to_owned();
    let done = poll_done(a, &location, &[], Duration::from_secs(5)).await;
    assert_eq!(done.status, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let gone = get_monitor(a, &location, &[]).await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    drop(s);
}

async fn an_answer_too_large_to_keep_says_so(s: Store) {
    let opts = respond().max_answer_bytes(100);
    let (a, _, ran) = two(s.store.clone(), opts, Idempotency::new()).await;
    let raw = submit(a, &body(&["GET /slow/1 HTTP/1.1\r\n"; 3]), &[ASYNC]).await;
    let location = raw.headers["location"].to_str().unwrap().to_owned();
    let done = poll_done(a, &location, &[], Duration::from_secs(5)).await;
    let answer = unwrap_http(&done);
    assert_eq!(answer.status, 507);
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("ran") && message.contains("100 bytes"),
        "{message}"
    );
    assert_eq!(ran.get(), 3);
    drop(s);
}

/// A store that is down: new asynchronous batches are refused whole, and nothing runs.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_gives_503_and_runs_nothing() {
    let mut s = Store::redis();
    let (a, _, ran) = two(s.store.clone(), respond(), Idempotency::new()).await;
    s.redis.as_mut().unwrap().stop();
    let raw = submit(a, &body(&["GET /slow/1 HTTP/1.1\r\n"]), &[ASYNC]).await;
    assert_eq!(raw.status, 503, "{}", raw.text());
    assert!(raw.headers.contains_key("retry-after"));
    let message = raw.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("not run"), "{message}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ran.get(), 0);
}

/// A store that stalls: every call has a deadline, so the batch is refused in time, unrun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_gives_503_within_its_deadline() {
    let (a, _, ran) = two(Arc::new(Stalled), respond(), Idempotency::new()).await;
    let started = Instant::now();
    let raw = submit(a, &body(&["GET /slow/1 HTTP/1.1\r\n"]), &[ASYNC]).await;
    assert_eq!(raw.status, 503, "{}", raw.text());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        raw.text().contains("did not answer within 500 ms"),
        "{}",
        raw.text()
    );
    let location = format!("/batch-monitor/{}", "a".repeat(32));
    assert_eq!(get_monitor(a, &location, &[]).await.status, 503);
    assert_eq!(ran.get(), 0);
}

/// A plain batch on the same route is untouched: no store, no monitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_batches_do_not_touch_the_store() {
    let (a, _, ran) = two(Arc::new(Stalled), respond(), Idempotency::new()).await;
    let raw = submit(a, &body(&["GET /slow/1 HTTP/1.1\r\n"]), &[]).await;
    let parts = support::parts(&raw).await;
    assert_eq!(parts[0].status, 200);
    assert_eq!(ran.get(), 1);
}

/// A flood of asynchronous batches: beyond `max_background_batches`, `503` before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_batches_are_bounded() {
    let ran = support::kept::Ran::default();
    let layer = support::kept::layer(
        Arc::new(MemoryStore::default()),
        respond(),
        Idempotency::new(),
    )
    .max_background_batches(1);
    let a = support::serve(support::kept::app(ran.clone(), layer)).await;
    let first = submit(a, &body(&["GET /slow/300 HTTP/1.1\r\n"]), &[ASYNC]).await;
    assert_eq!(first.status, 202);
    for headers in [&[ASYNC][..], &[("idempotency-key", "k")][..]] {
        let refused = submit(a, &body(&["GET /slow/1 HTTP/1.1\r\n"]), headers).await;
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert!(refused.text().contains("not run"));
    }
    let location = first.headers["location"].to_str().unwrap().to_owned();
    poll_done(a, &location, &[], Duration::from_secs(5)).await;
    assert_eq!(ran.get(), 1);
    // Its place is free again; the key refused for want of room was not claimed.
    let keyed = submit(
        a,
        &body(&["GET /slow/1 HTTP/1.1\r\n"]),
        &[("idempotency-key", "k")],
    )
    .await;
    support::parts(&keyed).await;
    assert_eq!(ran.get(), 2);
}

/// The app's own identity (`BatchIdentity`, set by a layer outside the batch layer) decides whose
/// a monitor is, whatever `Authorization` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_identity_decides_whose_a_monitor_is() {
    use http_batch::BatchIdentity;
    let ran = support::kept::Ran::default();
    let layer = support::kept::layer(
        Arc::new(MemoryStore::default()),
        respond(),
        Idempotency::new(),
    );
    let app = support::kept::app(ran, layer).layer(axum::middleware::map_request(
        |mut req: axum::extract::Request| async move {
            let user = req
                .headers()
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nobody")
                .to_owned();
            req.extensions_mut().insert(BatchIdentity::new(user));
            req
        },
    ));
    let a = support::serve(app).await;
    let shared = ("authorization", "Bearer shared-service-token");
    let raw = submit(
        a,
        &body(&["GET /slow/1 HTTP/1.1\r\n"]),
        &[ASYNC, shared, ("x-user", "alice")],
    )
    .await;
    assert_eq!(raw.status, 202, "{}", raw.text());
    let location = raw.headers["location"].to_str().unwrap().to_owned();
    let done = poll_done(
        a,
        &location,
        &[shared, ("x-user", "alice")],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(done.status, 200);
    let other = get_monitor(a, &location, &[shared, ("x-user", "bob")]).await;
    assert_eq!(other.status, 404, "the same token, another user");
}
