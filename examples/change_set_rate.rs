//! Run with: cargo run --release --example change_set_rate
//!
//! Measures how many change sets per second the farm (`examples/farm`) commits, with one client
//! and with eight: each change set is a JSON batch of one atomicity group that creates an
//! animal and then replaces it (two items, one database transaction). The farm runs on a fresh
//! SQLite file, or on PostgreSQL with `DATABASE_URL=postgres://...` (its `animals` table is
//! laid out afresh). Clients and server share the machine, so the figures compare databases
//! and client counts with each other; they are not the farm's capacity.
//!
//! Options: `--secs 5` (time per client count), `--clients 1,8`.

#[path = "farm/app.rs"]
mod farm;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

#[tokio::main]
async fn main() {
    let mut secs = 5u64;
    let mut clients = vec![1usize, 8];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--secs", Some(v)) => secs = v.parse().expect("--secs takes whole seconds"),
            ("--clients", Some(v)) => {
                clients = v
                    .split(',')
                    .map(|n| n.parse().expect("--clients takes a list like 1,8"))
                    .collect()
            }
            _ => {
                eprintln!("usage: change_set_rate [--secs 5] [--clients 1,8]");
                std::process::exit(2);
            }
        }
    }
    let url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
    let (db, name) = match &url {
        Some(url) => (farm::connect(url).expect("DATABASE_URL"), "PostgreSQL"),
        None => (farm::fresh(), "SQLite"),
    };
    let addr = serve(farm::app_on(None, db.clone())).await;
    println!("database: {name}; {secs} s per client count");
    for n in clients {
        let (committed, refused) = run(addr, n, Duration::from_secs(secs)).await;
        println!(
            "{n} client(s): {:.0} change sets/s committed ({committed} in {secs} s; {refused} refused)",
            committed as f64 / secs as f64
        );
    }
    db.pool().close().await;
    if url.is_none() {
        farm::remove_fresh_files();
    }
}

/// Serves `app` on a free loopback port. Without TCP_NODELAY, the batch answer's small writes
/// wait on the client's delayed ACK (about 40 ms each), which would measure Nagle's algorithm
/// instead of the database.
async fn serve(app: http_batch::BatchRouter) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.expect("farm server") });
    addr
}

/// `clients` clients send change sets back to back for `time`; how many committed, and how
/// many were refused (a conflict, a busy database).
async fn run(addr: SocketAddr, clients: usize, time: Duration) -> (usize, usize) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let committed = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + time;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let committed = committed.clone();
        let refused = refused.clone();
        tasks.push(tokio::spawn(async move {
            let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
            connector.set_nodelay(true);
            let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
            while Instant::now() < end {
                let name = format!("animal-{}", NEXT.fetch_add(1, Ordering::Relaxed));
                let body = json!({"requests": [
                    {"id": "1", "atomicityGroup": "g", "method": "POST", "url": "animals",
                     "headers": {"content-type": "application/json"},
                     "body": {"animalName": name, "animalAge": 1}},
                    {"id": "2", "atomicityGroup": "g", "method": "PUT",
                     "url": format!("animals/{name}"),
                     "headers": {"content-type": "application/json"},
                     "body": {"animalAge": 2}},
                ]});
                let req = Request::post(format!("http://{addr}/odata/v4/farm/v1/$batch"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .expect("a valid request");
                let res = client.request(req).await.expect("the farm answers");
                let bytes = res.into_body().collect().await.expect("a whole answer");
                let answer: serde_json::Value =
                    serde_json::from_slice(&bytes.to_bytes()).expect("a JSON answer");
                let kept = answer["responses"].as_array().is_some_and(|r| {
                    r.len() == 2
                        && r.iter()
                            .all(|r| r["status"].as_u64().is_some_and(|s| s < 300))
                });
                if kept {
                    committed.fetch_add(1, Ordering::Relaxed);
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a client task");
    }
    (
        committed.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}
