//! What the layer logs, read from a real tracing subscriber while batches go over real sockets:
//! the one `INFO` record each batch leaves, with its fields; the `WARN` that says the layer was
//! mounted where it cannot route items (plainly with `Router::layer`, or hidden in a
//! `ServiceBuilder` stack), once per layer; and the answer and `WARN` for a batch sent to the
//! batch service at a path the layer was not told.
//!
//! One test function runs every scenario in turn, on purpose: it installs a thread-local
//! subscriber, and tracing caches each callsite's interest globally, so another test in the same
//! binary hitting the same callsites on another thread could leave them disabled (see
//! `tests/tracing_spans.rs`).

mod support;
use support::{batch, parts, post, post_batch, serve};

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;
use http_batch::{Batch, BatchLayer};
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One captured event: its level and fields (the message under `message`), as text.
#[derive(Clone, Debug)]
struct Captured {
    level: Level,
    fields: HashMap<String, String>,
}

impl Captured {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }
}

/// Captures every event of the crate's `http_batch` target.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Capture {
    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Visitor<'a>(&'a mut HashMap<String, String>);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "http_batch" {
            return;
        }
        let mut fields = HashMap::new();
        event.record(&mut Visitor(&mut fields));
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            fields,
        });
    }
}

fn api() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/bye", get(|| async { "bye" }))
}

fn two_items() -> String {
    batch(
        "b",
        &[
            ("<1>", "GET /hello HTTP/1.1\r\n"),
            ("<2>", "GET /bye HTTP/1.1\r\n"),
        ],
    )
}

fn warnings(events: &[Captured]) -> Vec<&Captured> {
    events.iter().filter(|e| e.level == Level::WARN).collect()
}

// A current-thread runtime: the server's tasks run on this thread, where the subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn batches_leave_records_and_mounting_mistakes_are_loud() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    every_batch_leaves_one_info_record(&capture).await;
    a_refused_batch_leaves_a_record_with_its_reason(&capture).await;
    router_layer_warns_once_as_the_app_is_built(&capture).await;
    a_layer_hidden_in_a_service_builder_stack_warns_after_its_first_batch(&capture).await;
    wrap_router_with_unknown_item_paths_does_not_warn(&capture).await;
    route_service_at_a_path_the_layer_was_not_told_is_answered_in_words(&capture).await;
}

/// One `INFO` event per batch, written at the answer's last byte, with the batch's id, route,
/// format, dialect, item count, outcome counts, bytes and duration.
async fn every_batch_leaves_one_info_record(capture: &Capture) {
    let addr = serve(BatchLayer::new().wrap_router(api())).await;
    capture.take();
    let body = batch(
        "b",
        &[
            ("<1>", "GET /hello HTTP/1.1\r\n"),
            ("<2>", "GET /no-such-route HTTP/1.1\r\n"),
            // An absolute URL on another origin: refused on its own, never run.
            ("<3>", "GET http://elsewhere.example/hello HTTP/1.1\r\n"),
        ],
    );
    let raw = post_batch(addr, "/batch", "b", body).await;
    let statuses: Vec<u16> = parts(&raw).await.iter().map(|p| p.status).collect();
    assert_eq!(statuses[..2], [200, 404]);
    assert!(statuses[2] >= 400, "{statuses:?}");

    let events = capture.take();
    let records: Vec<&Captured> = events
        .iter()
        .filter(|e| e.message() == "batch answered")
        .collect();
    assert_eq!(records.len(), 1, "{events:#?}");
    let r = &records[0].fields;
    assert_eq!(records[0].level, Level::INFO);
    let batch_id = &r["batch_id"];
    assert_eq!(batch_id.len(), 16, "{r:?}");
    assert!(batch_id.chars().all(|c| c.is_ascii_hexdigit()), "{r:?}");
    assert_eq!(r["route"], "/batch");
    assert_eq!(r["format"], "multipart");
    assert_eq!(r["dialect"], "google");
    assert_eq!(r["items"], "3");
    assert_eq!(r["ok"], "1");
    assert_eq!(r["failed"], "1");
    assert_eq!(r["not_run"], "1");
    assert_eq!(r["rolled_back"], "0");
    assert_eq!(r["outcome"], "complete");
    // Every byte the client received, counted by the record.
    assert_eq!(r["bytes"], raw.body.len().to_string());
    let ms: f64 = r["duration_ms"].parse().unwrap();
    assert!(ms > 0.0, "{r:?}");
    assert!(warnings(&events).is_empty(), "{events:#?}");
}

/// A batch refused as a whole leaves an `INFO` event with the reason the answer's body gives.
async fn a_refused_batch_leaves_a_record_with_its_reason(capture: &Capture) {
    let addr = serve(BatchLayer::new().wrap_router(api())).await;
    capture.take();
    let raw = post(addr, "/batch", "text/plain", "hello", &[]).await;
    assert_eq!(raw.status, 415);
    assert_eq!(raw.json()["error"]["reason"], "UNSUPPORTED_MEDIA_TYPE");
    let events = capture.take();
    let refused: Vec<&Captured> = events
        .iter()
        .filter(|e| e.message() == "batch refused")
        .collect();
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert_eq!(refused[0].level, Level::INFO);
    assert_eq!(refused[0].fields["reason"], "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(refused[0].fields["status"], "415");
}

/// `Router::layer(BatchLayer::new())`: axum hands the layer each route, and the layer says so at
/// `WARN` while the app is built, before any request, once however many routes it wraps. The
/// batch is then refused in words.
async fn router_layer_warns_once_as_the_app_is_built(capture: &Capture) {
    capture.take();
    let app = api().layer(BatchLayer::new());
    let events = capture.take();
    let warned = warnings(&events);
    assert_eq!(warned.len(), 1, "{events:#?}");
    assert!(warned[0].message().contains("wrap_router"), "{warned:?}");
    assert!(warned[0].message().contains("Router::layer"), "{warned:?}");

    let addr = serve(app).await;
    let raw = post_batch(addr, "/batch", "b", two_items()).await;
    assert_eq!(raw.status, 500, "{}", raw.text());
    assert_eq!(raw.json()["error"]["reason"], "MOUNTED_INSIDE_ROUTER");
    let events = capture.take();
    assert!(warnings(&events).is_empty(), "warned twice: {events:#?}");
}

/// The layer inside a `ServiceBuilder` stack given to `Router::layer` wraps `Trace<Route>`, whose
/// type says nothing. The batch reaches it through the router's fallback, and every item is
/// answered the fallback's empty 404: at that batch's end the layer warns, naming the fix, once.
async fn a_layer_hidden_in_a_service_builder_stack_warns_after_its_first_batch(capture: &Capture) {
    let stack = ServiceBuilder::new()
        .layer(BatchLayer::new())
        .layer(TraceLayer::new_for_http());
    let app = api().layer(stack);
    let events = capture.take();
    assert!(warnings(&events).is_empty(), "{events:#?}");
    let addr = serve(app).await;

    for round in 0..2 {
        let raw = post_batch(addr, "/batch", "b", two_items()).await;
        let statuses: Vec<u16> = parts(&raw).await.iter().map(|p| p.status).collect();
        // What users met: the items could not be routed.
        assert_eq!(statuses, [404, 404]);
        let events = capture.take();
        let warned = warnings(&events);
        if round == 0 {
            assert_eq!(warned.len(), 1, "{events:#?}");
            let message = warned[0].message();
            assert!(message.contains("Router::layer"), "{message}");
            assert!(message.contains("ServiceBuilder"), "{message}");
            assert!(message.contains("wrap_router"), "{message}");
        } else {
            assert!(warned.is_empty(), "warned twice: {events:#?}");
        }
    }
}

/// Correctly mounted, a batch whose items all name unknown paths is answered as asked, with no
/// warning: the layer knows it wraps a whole router.
async fn wrap_router_with_unknown_item_paths_does_not_warn(capture: &Capture) {
    let addr = serve(BatchLayer::new().wrap_router(api())).await;
    let body = batch(
        "b",
        &[
            ("<1>", "GET /nothing HTTP/1.1\r\n"),
            ("<2>", "GET /nothing-either HTTP/1.1\r\n"),
        ],
    );
    let statuses: Vec<u16> = parts(&post_batch(addr, "/batch", "b", body).await)
        .await
        .iter()
        .map(|p| p.status)
        .collect();
    assert_eq!(statuses, [404, 404]);
    let events = capture.take();
    assert!(warnings(&events).is_empty(), "{events:#?}");
}

/// `route_service("/v2/batch", Batch::new(api))` without `.path("/v2/batch")`: the batch is
/// answered `500` in words that name the path and the fix, and the layer warns once. Told its
/// path, the same mount serves the batch.
async fn route_service_at_a_path_the_layer_was_not_told_is_answered_in_words(capture: &Capture) {
    let app = api().route_service("/v2/batch", Batch::new(api()));
    let addr = serve(app).await;
    capture.take();
    for round in 0..2 {
        let raw = post_batch(addr, "/v2/batch", "b", two_items()).await;
        assert_eq!(raw.status, 500, "{}", raw.text());
        let error = &raw.json()["error"];
        assert_eq!(error["reason"], "BATCH_PATH_NOT_CONFIGURED");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("/v2/batch"), "{message}");
        assert!(message.contains(".path(\"/v2/batch\")"), "{message}");
        let events = capture.take();
        let warned = warnings(&events);
        if round == 0 {
            assert_eq!(warned.len(), 1, "{events:#?}");
            assert!(warned[0].message().contains("/v2/batch"), "{warned:?}");
        } else {
            assert!(warned.is_empty(), "warned twice: {events:#?}");
        }
    }
    // The API's own routes are untouched.
    let raw = support::send(
        http::Request::get(format!("http://{addr}/hello"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(raw.text(), "hello");

    let told = tower::Layer::layer(&BatchLayer::new().path("/v2/batch"), api());
    let app = api().route_service("/v2/batch", told);
    let addr = serve(app).await;
    let p = parts(&post_batch(addr, "/v2/batch", "b", two_items()).await).await;
    assert_eq!(&p[0].body[..], b"hello");
    assert!(warnings(&capture.take()).is_empty());
}
