//! Idempotent retries (`Idempotency-Key`) over real sockets: a retry, sent to another instance
//! of the app that shares the store, is answered with the kept answer and runs nothing; a reused
//! key is `422`, a key still running `409`; keys belong to their identity and expire; an answer
//! too large to keep says so on the first answer; a client that goes away still finds its answer
//! kept; a store that is down or stalls never lets a keyed batch run twice. Every case runs on
//! the in-memory store and, with the `redis` feature, on a real `redis-server`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_batch::store::{AnswerStore, MemoryStore};
use http_batch::{Idempotency, RespondAsync};
use support::kept::{body, get_monitor, poll_done, submit, two, unwrap_http, Redis, Stalled};

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
    a_retry_on_the_other_instance_is_replayed,
    a_reused_key_is_422,
    a_key_still_running_is_409,
    keys_belong_to_their_identity,
    an_answer_too_large_says_so_at_once,
    a_client_that_went_away_finds_its_answer,
    keys_expire,
    a_keyed_async_batch_replays_its_monitor,
    a_refused_batch_frees_its_key,
);

const ALICE: (&str, &str) = ("authorization", "Bearer alice");
const BOB: (&str, &str) = ("authorization", "Bearer bob");

fn writes(n: usize) -> String {
    let item = "POST /write HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
    body(&vec![item; n])
}

async fn a_retry_on_the_other_instance_is_replayed(s: Store) {
    let (a, b, ran) = two(s.store.clone(), RespondAsync::new(), Idempotency::new()).await;
    let batch = writes(3);
    let key = (
        "idempotency-key",
        "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
    );
    let first = submit(a, &batch, &[key, ALICE]).await;
    let parts = support::parts(&first).await;
    assert!(parts.iter().all(|p| p.status == 200));
    assert!(!first.headers.contains_key("idempotent-replayed"));
    assert!(!first.headers.contains_key("idempotency-stored"));
    assert_eq!(ran.get(), 3);
    let retry = submit(b, &batch, &[key, ALICE]).await;
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.status, first.status);
    assert_eq!(retry.headers["content-type"], first.headers["content-type"]);
    assert_eq!(retry.body, first.body, "the same answer, byte for byte");
    support::parts(&retry).await;
    assert_eq!(ran.get(), 3, "the retry ran nothing");
    drop(s);
}

async fn a_reused_key_is_422(s: Store) {
    let (a, b, ran) = two(s.store.clone(), RespondAsync::new(), Idempotency::new()).await;
    let key = ("idempotency-key", "k-1");
    support::parts(&submit(a, &writes(1), &[key]).await).await;
    let other = submit(b, &writes(2), &[key]).await;
    assert_eq!(other.status, 422, "{}", other.text());
    assert!(other.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("different batch request"));
    assert_eq!(ran.get(), 1);
    drop(s);
}

async fn a_key_still_running_is_409(s: Store) {
    let (a, b, ran) = two(s.store.clone(), RespondAsync::new(), Idempotency::new()).await;
    let key = ("idempotency-key", "k-2");
    let batch = body(&["GET /slow/400 HTTP/1.1\r\n"]);
    let first = {
        let batch = batch.clone();
        tokio::spawn(async move { submit(a, &batch, &[key]).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = submit(b, &batch, &[key]).await;
    assert_eq!(second.status, 409, "{}", second.text());
    assert!(second.headers.contains_key("retry-after"));
    let first = first.await.unwrap();
    support::parts(&first).await;
    assert_eq!(ran.get(), 1);
    // Once it is done, the retry gets the answer.
    let third = submit(b, &batch, &[key]).await;
    assert_eq!(third.body, first.body);
    assert_eq!(ran.get(), 1);
    drop(s);
}

async fn keys_belong_to_their_identity(s: Store) {
    let (a, b, ran) = two(s.store.clone(), RespondAsync::new(), Idempotency::new()).await;
    let key = ("idempotency-key", "shared-key");
    support::parts(&submit(a, &writes(1), &[key, ALICE]).await).await;
    // Bob's key of the same name is his own: his batch runs, neither 422 nor Alice's answer.
    let bob = submit(b, &writes(2), &[key, BOB]).await;
    let parts = support::parts(&bob).await;
    assert_eq!(parts.len(), 2);
    assert!(!bob.headers.contains_key("idempotent-replayed"));
    assert_eq!(ran.get(), 3);
    // Bob sending Alice's very batch under that key runs it for Bob, too.
    let bob_again = submit(b, &writes(1), &[("idempotency-key", "other"), BOB]).await;
    support::parts(&bob_again).await;
    assert_eq!(ran.get(), 4);
    drop(s);
}

async fn an_answer_too_large_says_so_at_once(s: Store) {
    let keys = Idempotency::new().max_answer_bytes(200);
    let (a, b, ran) = two(s.store.clone(), RespondAsync::new(), keys).await;
    let key = ("idempotency-key", "big");
    let batch = writes(4);
    let first = submit(a, &batch, &[key]).await;
    assert_eq!(first.headers["idempotency-stored"], "false");
    // The whole answer still reaches the client, well formed.
    let parts = support::parts(&first).await;
    assert_eq!(parts.len(), 4);
    assert!(first.body.len() > 200);
    assert_eq!(ran.get(), 4);
    let retry = submit(b, &batch, &[key]).await;
    assert_eq!(retry.status, 410, "{}", retry.text());
    assert!(retry.text().contains("ran"), "{}", retry.text());
    assert_eq!(ran.get(), 4, "never run twice");
    drop(s);
}

async fn a_client_that_went_away_finds_its_answer(s: Store) {
    let (a, b, ran) = two(s.store.clone(), RespondAsync::new(), Idempotency::new()).await;
    let key = ("idempotency-key", "lost");
    let batch = body(&["GET /slow/300 HTTP/1.1\r\n", "GET /slow/1 HTTP/1.1\r\n"]);
    // The answer is lost: the client gives up before it comes.
    let lost = tokio::time::timeout(Duration::from_millis(100), submit(a, &batch, &[key])).await;
    assert!(lost.is_err());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ran.get(), 2, "the batch ran to its end");
    let retry = submit(b, &batch, &[key]).await;
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let parts = support::parts(&retry).await;
    assert_eq!(parts[0].json()["slept"], 300);
    assert_eq!(ran.get(), 2);
    drop(s);
}

async fn keys_expire(s: Store) {
    let keys = Idempotency::new().expiry(Duration::from_millis(300));
    let (a, _, ran) = two(s.store.clone(), RespondAsync::new(), keys).await;
    let key = ("idempotency-key", "short");
    support::parts(&submit(a, &writes(1), &[key]).await).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = submit(a, &writes(1), &[key]).await;
    assert!(!later.headers.contains_key("idempotent-replayed"));
    support::parts(&later).await;
    assert_eq!(ran.get(), 2, "an expired key is a new batch");
    drop(s);
}

async fn a_keyed_async_batch_replays_its_monitor(s: Store) {
    let respond = RespondAsync::new().progress_every(Duration::from_millis(20));
    let (a, b, ran) = two(s.store.clone(), respond, Idempotency::new()).await;
    let headers = [("idempotency-key", "both"), ("prefer", "respond-async")];
    let batch = writes(2);
    let first = submit(a, &batch, &headers).await;
    assert_eq!(first.status, 202);
    let retry = submit(b, &batch, &headers).await;
    assert_eq!(retry.status, 202);
    assert_eq!(retry.headers["location"], first.headers["location"]);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let location = first.headers["location"].to_str().unwrap();
    let done = poll_done(b, location, &[], Duration::from_secs(5)).await;
    support::parts(&unwrap_http(&done)).await;
    assert_eq!(ran.get(), 2);
    assert_eq!(get_monitor(a, location, &[]).await.status, 200);
    drop(s);
}

async fn a_refused_batch_frees_its_key(s: Store) {
    let (a, _, ran) = two(s.store.clone(), RespondAsync::new(), Idempotency::new()).await;
    let key = ("idempotency-key", "fix-me");
    let bad = support::post(a, "/batch", "multipart/mixed; boundary=b", "junk", &[key]).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    // Nothing ran, so the corrected batch may use the key.
    let good = submit(a, &writes(1), &[key]).await;
    support::parts(&good).await;
    assert_eq!(ran.get(), 1);
    drop(s);
}

#[tokio::test]
async fn a_malformed_key_is_400() {
    let (a, _, ran) = two(
        Arc::new(MemoryStore::default()),
        RespondAsync::new(),
        Idempotency::new(),
    )
    .await;
    let long = "k".repeat(300);
    for key in ["", "has space", long.as_str()] {
        let raw = submit(a, &writes(1), &[("idempotency-key", key)]).await;
        assert_eq!(raw.status, 400, "{key:?}: {}", raw.text());
        assert!(raw.text().contains("Idempotency-Key"));
    }
    assert_eq!(ran.get(), 0);
}

/// A store that is down: keyed batches are refused before anything runs, so none runs twice.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_gives_503_and_never_runs_twice() {
    let mut s = Store::redis();
    let (a, b, ran) = two(s.store.clone(), RespondAsync::new(), Idempotency::new()).await;
    let key = ("idempotency-key", "down");
    support::parts(&submit(a, &writes(1), &[key]).await).await;
    assert_eq!(ran.get(), 1);
    s.redis.as_mut().unwrap().stop();
    // Neither the retry nor a new keyed batch runs while the store cannot say what ran.
    for k in ["down", "new"] {
        let raw = submit(b, &writes(1), &[("idempotency-key", k)]).await;
        assert_eq!(raw.status, 503, "{}", raw.text());
        assert!(raw.text().contains("not run"));
    }
    assert_eq!(ran.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_gives_503_within_its_deadline() {
    let (a, _, ran) = two(Arc::new(Stalled), RespondAsync::new(), Idempotency::new()).await;
    let started = Instant::now();
    let raw = submit(a, &writes(1), &[("idempotency-key", "stall")]).await;
    assert_eq!(raw.status, 503, "{}", raw.text());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(ran.get(), 0);
}
