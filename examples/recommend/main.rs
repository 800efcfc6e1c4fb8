//! Run with: cargo run --example recommend
//!
//! A recommendation service (see `app.rs`) with batch support: the standard multipart and JSON
//! batches at `/batch`, and a format of its own at `/rec/batch/` (see `rec_format.rs`).
//!
//! Environment:
//! - `ADDR`: address to listen on (default `127.0.0.1:3000`; port 0 picks one).
//!
//! Prints one line, `listening on http://ADDR` with the bound address, once it accepts
//! connections. Try:
//!
//! ```text
//! curl -i 'http://127.0.0.1:3000/recomms/users/alice/items?count=3'
//! curl -s 'http://127.0.0.1:3000/rec/batch/' -H 'content-type: application/json' -d '{
//!   "requests": [
//!     {"method": "GET", "path": "/recomms/users/alice/items", "params": {"count": 3}},
//!     {"method": "GET", "path": "/recomms/users/alice/items", "params": {"count": 3}}
//!   ],
//!   "distinctRecomms": true}'
//! ```

mod app;

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let bound = listener.local_addr().expect("local_addr");
    println!("listening on http://{bound}");
    axum::serve(listener, app::app())
        .await
        .expect("recommend server");
}
