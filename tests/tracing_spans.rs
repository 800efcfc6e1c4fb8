//! The `batch_item` tracing span: its fields, including the ones recorded once the item answers.
//!
//! This test lives in a binary of its own on purpose. It installs a thread-local subscriber, and
//! tracing caches each callsite's interest globally: when another test in the same binary hits the
//! `batch_item` callsite on another thread while this one is installing its subscriber, the cache
//! can end up saying "never" and the span is not recorded at all. Alone in its binary, nothing
//! else can race it.

mod support;
use support::serve;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::Router;
use http_batch::BatchLayer;

mod spans {
    use std::collections::HashMap;
    use std::fmt;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::Subscriber;
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    /// The fields of one span, by name, as text.
    pub(super) type Fields = HashMap<String, String>;

    /// Collects the fields of every span with a given name, including ones recorded later.
    #[derive(Clone)]
    pub(super) struct Collect {
        name: &'static str,
        pub(super) spans: Arc<Mutex<Vec<Fields>>>,
    }

    /// Where in `spans` a span's fields live; kept in the span's registry extensions, because
    /// span ids may be reused once a span closes.
    struct Slot(usize);

    impl Collect {
        pub(super) fn new(name: &'static str) -> Self {
            Collect {
                name,
                spans: Arc::default(),
            }
        }
    }

    struct Visitor<'a>(&'a mut Fields);

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
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    impl<S> Layer<S> for Collect
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if attrs.metadata().name() != self.name {
                return;
            }
            let mut fields = Fields::new();
            attrs.record(&mut Visitor(&mut fields));
            let mut spans = self.spans.lock().unwrap();
            spans.push(fields);
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(Slot(spans.len() - 1));
            }
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            let Some(span) = ctx.span(id) else { return };
            let ext = span.extensions();
            let Some(Slot(i)) = ext.get::<Slot>() else {
                return;
            };
            values.record(&mut Visitor(&mut self.spans.lock().unwrap()[*i]));
        }
    }
}

fn api() -> Router {
    Router::new()
        .route("/whoami", get(|_: HeaderMap| async { "me" }))
        .route("/note/{text}", put(|| async { StatusCode::NO_CONTENT }))
}

// A current-thread runtime: the server's tasks run on this thread, where the subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn batch_item_spans_record_index_id_request_id_and_status() {
    use tracing_subscriber::layer::SubscriberExt;

    let collect = spans::Collect::new("batch_item");
    let spans = collect.spans.clone();
    let subscriber = tracing_subscriber::registry().with(collect);
    let _guard = tracing::subscriber::set_default(subscriber);

    let addr = serve(BatchLayer::new().wrap_router(api())).await;
    let body = support::batch(
        "b",
        &[
            ("<first>", "GET /whoami?x=1 HTTP/1.1\r\n"),
            (
                "<second>",
                "GET /no-such-route HTTP/1.1\r\nx-request-id: own\r\n",
            ),
            ("", "PUT /note/n HTTP/1.1\r\n"),
        ],
    );
    let raw = support::post(
        addr,
        "/batch",
        "multipart/mixed; boundary=b",
        body,
        &[("x-request-id", "trace")],
    )
    .await;
    let statuses: Vec<u16> = support::parts(&raw)
        .await
        .iter()
        .map(|p| p.status)
        .collect();
    assert_eq!(statuses, [200, 404, 204]);

    let mut recorded: Vec<spans::Fields> = spans.lock().unwrap().clone();
    recorded.sort_by_key(|f| f["index"].parse::<usize>().unwrap());
    let view: Vec<[&str; 6]> = recorded
        .iter()
        .map(|f| {
            [
                f["index"].as_str(),
                f["id"].as_str(),
                f["method"].as_str(),
                f["path"].as_str(),
                f["request_id"].as_str(),
                f.get("status").map_or("", String::as_str),
            ]
        })
        .collect();
    assert_eq!(
        view,
        [
            ["0", "first", "GET", "/whoami", "trace-0", "200"],
            ["1", "second", "GET", "/no-such-route", "own", "404"],
            ["2", "", "PUT", "/note/n", "trace-2", "204"],
        ]
    );
}
