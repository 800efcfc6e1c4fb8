//! Run with: cargo run --example farm
//!
//! Serves the in-memory farm API (see `app.rs`) with batch support at
//! `/batch` and `/batch/farm/v1`, CORS for any origin, and a page at `/`
//! that sends 20 calls one by one and as one batch and compares the answers
//! (open `http://127.0.0.1:3000/`; `/?api=http://host:port` calls another farm).
//!
//! Environment:
//! - `ADDR`: address to listen on (default `127.0.0.1:3000`; port 0 picks one).
//! - `FARM_TOKEN`: if set, every `/farm/...` call needs
//!   `Authorization: Bearer <FARM_TOKEN>`.
//!
//! Prints one line, `listening on http://ADDR` with the bound address, once
//! it accepts connections.

mod app;

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let token = std::env::var("FARM_TOKEN").ok().filter(|t| !t.is_empty());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let bound = listener.local_addr().expect("local_addr");
    println!("listening on http://{bound}");
    axum::serve(listener, app::app(token))
        .await
        .expect("farm server");
}
