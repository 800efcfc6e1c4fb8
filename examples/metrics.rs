//! Batch metrics for Prometheus: `cargo run --example metrics --features metrics`.
//!
//! Serves a small API with batches at `/batch`, and the metrics the layer records at `/metrics`
//! in Prometheus' text format. Send a batch, then look:
//!
//! ```text
//! curl -s localhost:3000/batch -H 'content-type: application/json' \
//!   -d '{"requests":[{"id":"1","method":"GET","url":"/hello"},{"id":"2","method":"GET","url":"/nope"}]}'
//! curl -s localhost:3000/metrics
//! ```
//!
//! The layer records through the `metrics` facade, so any recorder works; this one is
//! `metrics-exporter-prometheus`, rendered by an ordinary axum handler. Batch logs go through
//! `tracing`: `RUST_LOG=http_batch=info` shows one line per batch.

use axum::routing::get;
use axum::Router;
use http_batch::BatchLayer;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "http_batch=info".into()),
        )
        .init();
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    let api = Router::new().route("/hello", get(|| async { "hello" }));
    let app = BatchLayer::new()
        .wrap_router(api)
        // Outside the API would be as good; here it is one more route.
        .route("/metrics", get(move || render(prometheus.clone())));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("batches at http://{addr}/batch, metrics at http://{addr}/metrics");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn render(prometheus: PrometheusHandle) -> String {
    prometheus.render()
}
