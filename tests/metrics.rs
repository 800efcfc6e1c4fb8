//! The metrics the layer records (feature `metrics`), read back with `metrics-util`'s debugging
//! recorder after batches over a real socket: batches by route, format and outcome; items by
//! outcome; item and batch durations; the peak of held bytes; refusals by reason.
//!
//! The recorder is global, so this binary holds one test.
#![cfg(feature = "metrics")]

mod support;
use support::{batch, parts, post, post_batch, serve};

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::Router;
use futures_util::future::{BoxFuture, FutureExt};
use http_batch::format::Dialect;
use http_batch::{BatchLayer, BatchRoute, BoxError, Transact, Transaction, TransactionProvider};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

/// A transaction that keeps nothing: enough for a change set to commit or roll back.
struct Nothing;

impl Transact for Nothing {
    fn commit(self) -> BoxFuture<'static, Result<(), BoxError>> {
        async { Ok(()) }.boxed()
    }
    fn rollback(self) -> BoxFuture<'static, Result<(), BoxError>> {
        async { Ok(()) }.boxed()
    }
}

struct Provider;

impl TransactionProvider for Provider {
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
        async { Ok(Transaction::new(Nothing)) }.boxed()
    }
}

/// A metric's name and its labels as `key=value`, sorted.
type Name = (String, Vec<String>);

fn snapshot(
    snapshotter: &metrics_util::debugging::Snapshotter,
) -> BTreeMap<Name, (MetricKind, DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, _description, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), (kind, value))
        })
        .collect()
}

fn counter(map: &BTreeMap<Name, (MetricKind, DebugValue)>, name: &str, labels: &[&str]) -> u64 {
    let key = (
        name.to_owned(),
        labels.iter().map(|l| l.to_string()).collect(),
    );
    match map.get(&key) {
        Some((MetricKind::Counter, DebugValue::Counter(n))) => *n,
        other => panic!("{name} {labels:?}: {other:?}\nall: {:#?}", map.keys()),
    }
}

fn histogram(
    map: &BTreeMap<Name, (MetricKind, DebugValue)>,
    name: &str,
    labels: &[&str],
) -> Vec<f64> {
    let key = (
        name.to_owned(),
        labels.iter().map(|l| l.to_string()).collect(),
    );
    match map.get(&key) {
        Some((MetricKind::Histogram, DebugValue::Histogram(values))) => {
            values.iter().map(|v| v.into_inner()).collect()
        }
        other => panic!("{name} {labels:?}: {other:?}\nall: {:#?}", map.keys()),
    }
}

#[tokio::test]
async fn batches_items_durations_held_bytes_and_refusals_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this binary");

    let api = Router::new().route("/hello", get(|| async { "hello" }));
    let addr = serve(BatchLayer::new().wrap_router(api)).await;
    let body = batch(
        "b",
        &[
            ("<1>", "GET /hello HTTP/1.1\r\n"),
            ("<2>", "GET /no-such-route HTTP/1.1\r\n"),
            // Another origin: refused on its own, never run.
            ("<3>", "GET http://elsewhere.example/hello HTTP/1.1\r\n"),
        ],
    );
    let statuses: Vec<u16> = parts(&post_batch(addr, "/batch", "b", body).await)
        .await
        .iter()
        .map(|p| p.status)
        .collect();
    assert_eq!(statuses[..2], [200, 404]);
    let refused = post(addr, "/batch", "text/plain", "hello", &[]).await;
    assert_eq!(refused.status, 415);

    // A change set of three under a transaction: the first member succeeds, the second fails,
    // so the first is rolled back, and the third, which depends on the second, never runs.
    let things = Router::new().route(
        "/things/{name}",
        put(|Path(name): Path<String>| async move {
            if name == "bad" {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::NO_CONTENT
            }
        }),
    );
    let layer = BatchLayer::new().route(
        BatchRoute::path("/v4/$batch")
            .dialect(Dialect::odata_v4())
            .transactions(Provider),
    );
    let odata = serve(layer.wrap_router(things)).await;
    let group = serde_json::json!({"requests": [
        {"id": "1", "atomicityGroup": "g", "method": "PUT", "url": "/things/good"},
        {"id": "2", "atomicityGroup": "g", "method": "PUT", "url": "/things/bad", "dependsOn": ["1"]},
        {"id": "3", "atomicityGroup": "g", "method": "PUT", "url": "/things/late", "dependsOn": ["2"]},
    ]});
    let raw = post(
        odata,
        "/v4/$batch",
        "application/json",
        group.to_string(),
        &[],
    )
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    let answered: Vec<u64> = raw.json()["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(answered.len(), 3, "{}", raw.text());
    assert!(answered.iter().all(|s| *s >= 400), "{}", raw.text());

    let m = snapshot(&snapshotter);
    assert_eq!(
        counter(
            &m,
            "http_batch_batches_total",
            &["format=json", "outcome=complete", "route=/v4/$batch"]
        ),
        1
    );
    assert_eq!(
        counter(&m, "http_batch_items_total", &["outcome=rolled_back"]),
        1
    );
    assert_eq!(
        counter(
            &m,
            "http_batch_batches_total",
            &["format=multipart", "outcome=complete", "route=/batch"]
        ),
        1
    );
    assert_eq!(counter(&m, "http_batch_items_total", &["outcome=ok"]), 1);
    // One from each batch: the route that was not found, and the change set's failing member.
    assert_eq!(
        counter(&m, "http_batch_items_total", &["outcome=failed"]),
        2
    );
    // The item on another origin, and the change set's member after the failure.
    assert_eq!(
        counter(&m, "http_batch_items_total", &["outcome=not_run"]),
        2
    );
    assert_eq!(
        counter(
            &m,
            "http_batch_refusals_total",
            &["reason=UNSUPPORTED_MEDIA_TYPE"]
        ),
        1
    );
    // The four items that ran, each timed.
    let items = histogram(&m, "http_batch_item_duration_seconds", &[]);
    assert_eq!(items.len(), 4, "{items:?}");
    assert!(items.iter().all(|s| *s > 0.0 && *s < 60.0), "{items:?}");
    let batches = histogram(
        &m,
        "http_batch_duration_seconds",
        &["format=multipart", "route=/batch"],
    );
    assert_eq!(batches.len(), 1, "{batches:?}");
    // The batch took at least as long as its slowest item.
    assert!(
        batches[0] >= items.iter().cloned().fold(0.0, f64::max),
        "{batches:?} {items:?}"
    );
    let held = histogram(&m, "http_batch_held_bytes", &[]);
    assert_eq!(held.len(), 2, "{held:?}");
}
