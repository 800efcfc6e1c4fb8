//! Run with: cargo run --example sqlite_farm
//!
//! Serves a farm API whose animals live in SQLite (see `app.rs`), with OData batches at
//! `/odata/v4/farm/v1/$batch` and `/odata/v2/farm/v1/$batch` whose change sets are SQL
//! transactions.
//!
//! Environment:
//! - `ADDR`: address to listen on (default `127.0.0.1:3001`; port 0 picks one).
//! - `DB`: the database file (default `sqlite_farm.db` in the current directory).
//!
//! Prints one line, `listening on http://ADDR` with the bound address, once it accepts
//! connections.

mod app;

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let db = std::env::var("DB").unwrap_or_else(|_| "sqlite_farm.db".to_owned());
    let conn = match app::open(std::path::Path::new(&db)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot open {db}: {e}");
            std::process::exit(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let bound = listener.local_addr().expect("local_addr");
    println!("listening on http://{bound}");
    axum::serve(listener, app::app(conn))
        .await
        .expect("sqlite farm server");
}
