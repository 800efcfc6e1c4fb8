//! Run with: cargo run --example gateway
//!
//! A batch gateway across services: the batch layer wraps an axum `Router` whose routes forward,
//! by path prefix, to separate upstream HTTP services, so one batch can hold calls for several
//! services and each call is forwarded on its own.
//!
//! - `/farm/v1/animals...` goes to `UPSTREAM_ANIMALS`, `/farm/v1/farmers...` to
//!   `UPSTREAM_FARMERS` (base URLs such as `http://127.0.0.1:4001`). When one is unset, the
//!   example starts a farm app for it on a free loopback port.
//! - Batches are served at `/batch` and `/batch/farm/v1`.
//! - `ADDR`: where to listen (default `127.0.0.1:3000`). Prints `listening on http://ADDR` once
//!   ready.
//! - `FARM_TOKEN`: the token the farm apps started here require (`Authorization: Bearer`). The
//!   gateway forwards `Authorization`, and batch items inherit it from the batch request, so it
//!   works end to end.
//!
//! An upstream that is down answers its items with `502` and a JSON message, while the other
//! service's items succeed.

#[path = "../farm/app.rs"]
mod farm;
mod router;

use http::Uri;

/// The base URL in `var`, or a farm app started here on a free loopback port.
async fn upstream_base(var: &str, token: Option<String>) -> Uri {
    if let Ok(url) = std::env::var(var) {
        match url.parse::<Uri>() {
            Ok(uri) if uri.authority().is_some() => return uri,
            _ => {
                eprintln!("{var} must be a base URL such as http://127.0.0.1:4001, not `{url}`");
                std::process::exit(2);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local_addr");
    tokio::spawn(async move {
        axum::serve(listener, farm::api(token))
            .await
            .expect("upstream farm server")
    });
    eprintln!("{var} not set: serving a farm app at http://{addr}");
    format!("http://{addr}").parse().expect("a loopback URL")
}

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let token = std::env::var("FARM_TOKEN").ok().filter(|t| !t.is_empty());
    let animals = upstream_base("UPSTREAM_ANIMALS", token.clone()).await;
    let farmers = upstream_base("UPSTREAM_FARMERS", token).await;
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let bound = listener.local_addr().expect("local_addr");
    println!("listening on http://{bound}");
    axum::serve(listener, router::gateway_app(animals, farmers))
        .await
        .expect("gateway server");
}
