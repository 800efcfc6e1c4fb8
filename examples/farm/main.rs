//! Run with: cargo run --example farm
//!
//! Serves the farm API (see `app.rs`), whose animals live in a database, with batch support in
//! every dialect (see `dialects.rs`): Google's at `/batch` and `/batch/farm/v1`, OData 4 at
//! `/odata/v4/farm/v1/$batch`, OData 2 at `/odata/v2/farm/v1/$batch` (both with change sets
//! that are database transactions), and Azure Storage's at
//! `POST /farm/v1?restype=container&comp=batch`; CORS for any origin; and a page at `/` that
//! sends 20 calls one by one and as one batch and compares the answers (open
//! `http://127.0.0.1:3000/`; `/?api=http://host:port` calls another farm).
//!
//! Environment:
//! - `ADDR`: address to listen on (default `127.0.0.1:3000`; port 0 picks one).
//! - `FARM_TOKEN`: if set, every `/farm/...` call needs
//!   `Authorization: Bearer <FARM_TOKEN>`.
//! - `DATABASE_URL`: `postgres://user@host/db` runs the farm on PostgreSQL (its `animals`
//!   table is laid out afresh at start); `sqlite://path` on that SQLite file. Unset, the farm
//!   starts fresh in a new SQLite file in the temporary directory, removed when it stops.
//!
//! Prints one line, `listening on http://ADDR` with the bound address, once
//! it accepts connections.

mod app;

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let token = std::env::var("FARM_TOKEN").ok().filter(|t| !t.is_empty());
    let db = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => app::connect(&url).unwrap_or_else(|e| {
            eprintln!("cannot use DATABASE_URL: {e}");
            std::process::exit(1);
        }),
        None => app::fresh(),
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
    axum::serve(listener, app::app_on(token, db.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .expect("farm server");
    db.pool().close().await;
    app::remove_fresh_files();
}
