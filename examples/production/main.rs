//! Run with: cargo run --example production
//!
//! The farm API as a public service would deploy it: batch support added by following the
//! README, among tower-http's usual layers (tracing, compression, CORS, a body limit, per-call
//! timeouts) and a bearer-token check, ready to sit behind nginx or a cloud load balancer.
//!
//! Environment:
//! - `ADDR`: address to listen on (default `127.0.0.1:3000`; port 0 picks one).
//! - `FARM_TOKEN`: the bearer token every `/farm/...` call needs (default `secret`).
//! - `PUBLIC_ORIGIN`: the origin clients use, such as `https://api.example.com`, so that
//!   absolute item URLs naming it are accepted behind a proxy (optional).
//!
//! Prints one line, `listening on http://ADDR`, once it accepts connections.

mod app;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let token = std::env::var("FARM_TOKEN").unwrap_or_else(|_| "secret".to_owned());
    let public = std::env::var("PUBLIC_ORIGIN")
        .ok()
        .filter(|o| !o.is_empty());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "listening on http://{}",
        listener.local_addr().expect("local_addr")
    );
    axum::serve(listener, app::app(&token, public.as_deref()))
        .await
        .expect("server");
}
