//! The metrics the layer records (feature `metrics`), read back with `metrics-util`'s debugging
//! recorder after batches over a real socket: batches by route, format and outcome; items by
//! outcome; item and batch durations; the peak of held bytes; refusals by reason.
//!
//! The recorder is global, so this binary holds one test.
#![cfg(feature = "metrics")]

mod support;
use support::{batch, parts, post, post_batch, serve};

use std::collections::BTreeMap;

use axum::routing::get;
use axum::Router;
use http_batch::BatchLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

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

    let m = snapshot(&snapshotter);
    assert_eq!(
        counter(
            &m,
            "http_batch_batches_total",
            &["format=multipart", "outcome=complete", "route=/batch"]
        ),
        1
    );
    assert_eq!(counter(&m, "http_batch_items_total", &["outcome=ok"]), 1);
    assert_eq!(
        counter(&m, "http_batch_items_total", &["outcome=failed"]),
        1
    );
    assert_eq!(
        counter(&m, "http_batch_items_total", &["outcome=not_run"]),
        1
    );
    assert_eq!(
        counter(
            &m,
            "http_batch_refusals_total",
            &["reason=UNSUPPORTED_MEDIA_TYPE"]
        ),
        1
    );
    // The two items that ran, each timed.
    let items = histogram(&m, "http_batch_item_duration_seconds", &[]);
    assert_eq!(items.len(), 2, "{items:?}");
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
    assert_eq!(held.len(), 1, "{held:?}");
}
