//! Run with: cargo run --example minimal
//!
//! The smallest app with batch support: one route, and batches of calls to it at `/batch`.
//! Listens on `ADDR` (default `127.0.0.1:3000`) and prints `listening on http://ADDR`. Then:
//!
//! ```sh
//! printf -- '--b\r\nContent-Type: application/http\r\n\r\nGET /hello/ada HTTP/1.1\r\n\r\n--b\r\nContent-Type: application/http\r\n\r\nGET /hello/grace HTTP/1.1\r\n\r\n--b--\r\n' \
//!   | curl -s --data-binary @- -H 'Content-Type: multipart/mixed; boundary=b' http://127.0.0.1:3000/batch
//! curl -s http://127.0.0.1:3000/batch -H 'Content-Type: application/json' \
//!   -d '{"requests":[{"id":"1","method":"GET","url":"/hello/ada"},{"id":"2","method":"GET","url":"/hello/grace"}]}'
//! ```

use axum::{extract::Path, routing::get, Router};
use http_batch::BatchLayer;

async fn hello(Path(name): Path<String>) -> String {
    format!("hello, {name}\n")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let api = Router::new().route("/hello/{name}", get(hello));
    // Batches at /batch; every other request reaches `api` untouched.
    let app = BatchLayer::new().wrap_router(api);

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
