//! Run with: cargo run --release --example soak -- --secs 60
//!
//! A soak test of the batch layer: serves the farm app on 127.0.0.1 in this process and, for a
//! bounded time, sends it a mix of traffic from many concurrent clients:
//!
//! - well-formed batches of 1 to 200 items (GETs of existing and missing animals, the farmer
//!   list and the `/farm/v1/slow/{ms}` route), some in the strict form the crate writes and
//!   some in the lenient form real clients send (bare LF, no `HTTP/1.1`, no leading `/`). Each
//!   item has a unique `Content-ID`; every item must come back exactly once, with its
//!   `Content-ID` echoed and the status the farm gives for it;
//! - malformed batches (no boundary, wrong boundary, truncated, too many parts, garbage), each
//!   of which must get a 4xx;
//! - clients that hang up halfway through sending the body, or halfway through reading the
//!   answer;
//! - clients that trickle the body for about a second before finishing it;
//! - hostile shapes: thousands of query parameters on the batch and on every item, JSON items
//!   with dependency edges behind a slow item, JSON items with tens of thousands of headers, and
//!   clients that send a batch of large answers and never read them. Each must be answered (a
//!   `200` batch, or a 4xx) or, for the stalled reader, leave nothing behind.
//!
//! Because the server runs in this process, the process's resident memory (`VmRSS`) is the
//! server's plus a small client share; it is sampled every second. Prints requests, items,
//! errors by kind, lost and duplicated items and memory at start, after warm-up, at the peak and
//! at the end. Exits with status 1 when any item was lost or duplicated.
//!
//! Options: `--secs N` (default 30), `--clients N` concurrent clients (default 32), `--spawned`
//! (the layer runs with `Execution::Spawned`).

#[path = "farm/app.rs"]
mod farm;

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode};
use http_batch::format::multipart::{
    boundary_of, new_boundary, parse_response, split_parts, write_request,
};
use http_batch::Limits;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;
type HttpClient = Client<HttpConnector, ReqBody>;

/// No single exchange may take longer than this; one that does counts as an error (and its
/// items as lost), so the soak always ends.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The farm's animals that exist at start; the soak never changes the farm.
const ANIMALS: [&str; 3] = ["pony", "sheep", "cow"];

#[derive(Clone, Copy)]
struct Options {
    secs: u64,
    clients: usize,
    spawned: bool,
}

fn options() -> Options {
    let mut o = Options {
        secs: 30,
        clients: 32,
        spawned: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--spawned" {
            o.spawned = true;
            continue;
        }
        let value = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), value) {
            ("--secs", Some(n)) => o.secs = n,
            ("--clients", Some(n)) if n > 0 => o.clients = n as usize,
            _ => {
                eprintln!("usage: soak [--secs N] [--clients N] [--spawned]");
                std::process::exit(2);
            }
        }
    }
    o
}

/// A small xorshift generator: the soak needs variety, not statistical quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Everything the clients count.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    batches_ok: AtomicU64,
    items_sent: AtomicU64,
    items_answered: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    malformed_rejected: AtomicU64,
    hangups: AtomicU64,
    trickled: AtomicU64,
    hostile: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn error(&self, kind: impl Into<String>) {
        *self.errors.lock().unwrap().entry(kind.into()).or_default() += 1;
    }
}

/// What one item asks for, and the status the farm must answer it with.
struct Call {
    target: String,
    expect: StatusCode,
}

fn random_call(rng: &mut Rng, batch: u64, i: usize) -> Call {
    match rng.below(10) {
        0..=3 => Call {
            target: format!("/farm/v1/animals/{}", ANIMALS[rng.below(3) as usize]),
            expect: StatusCode::OK,
        },
        4..=5 => Call {
            target: format!("/farm/v1/animals/missing-{batch}-{i}"),
            expect: StatusCode::NOT_FOUND,
        },
        6 => Call {
            target: "/farm/v1/farmers".to_owned(),
            expect: StatusCode::OK,
        },
        7 => Call {
            target: "/farm/v1/animals?pageSize=2".to_owned(),
            expect: StatusCode::OK,
        },
        _ => Call {
            target: format!("/farm/v1/slow/{}", rng.below(30)),
            expect: StatusCode::OK,
        },
    }
}

/// Mostly small batches, sometimes large ones, as real clients send.
fn batch_size(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0..=5 => 1 + rng.below(10) as usize,
        6..=8 => 1 + rng.below(60) as usize,
        _ => 1 + rng.below(200) as usize,
    }
}

/// A well-formed batch: its body and, per item, the Content-ID and expected status.
struct Batch {
    boundary: String,
    body: Bytes,
    expected: Vec<(String, StatusCode)>,
}

fn content_id(batch: u64, i: usize) -> String {
    format!("soak-{batch}-{i}")
}

/// A batch in the strict form the crate's writer produces.
fn strict_batch(rng: &mut Rng, batch: u64, n: usize) -> Batch {
    let boundary = new_boundary();
    let mut out = BytesMut::new();
    let mut expected = Vec::with_capacity(n);
    for i in 0..n {
        let call = random_call(rng, batch, i);
        let id = content_id(batch, i);
        let req = Request::get(call.target.as_str())
            .header("accept", "application/json")
            .body(Bytes::new())
            .expect("valid request");
        write_request(&boundary, Some(&id), &req, &mut out);
        expected.push((id, call.expect));
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Batch {
        boundary,
        body: out.freeze(),
        expected,
    }
}

/// A batch the way lenient clients write it: bare LF, a preamble, request lines without a
/// version and without the leading `/`, and no `Content-Type` on some parts.
fn lenient_batch(rng: &mut Rng, batch: u64, n: usize) -> Batch {
    let boundary = format!("lenient{batch}");
    let mut out = String::from("preamble to ignore\n");
    let mut expected = Vec::with_capacity(n);
    for i in 0..n {
        let call = random_call(rng, batch, i);
        let id = content_id(batch, i);
        out.push_str(&format!("--{boundary}\n"));
        if i % 2 == 0 {
            out.push_str("Content-Type: application/http\n");
        }
        out.push_str(&format!("Content-ID: <{id}>\n\n"));
        let target = call.target.trim_start_matches('/');
        if i % 3 == 0 {
            out.push_str(&format!("GET {target}\n\n"));
        } else {
            out.push_str(&format!(
                "GET /{target} HTTP/1.1\nAccept: application/json\n\n"
            ));
        }
        expected.push((id, call.expect));
    }
    out.push_str(&format!("--{boundary}--\n"));
    Batch {
        boundary,
        body: Bytes::from(out),
        expected,
    }
}

/// A batch of `n` items that each take 40 ms.
fn slow_batch(batch: u64, n: usize) -> Batch {
    let boundary = new_boundary();
    let mut out = BytesMut::new();
    for i in 0..n {
        let req = Request::get("/farm/v1/slow/40")
            .body(Bytes::new())
            .expect("valid request");
        write_request(&boundary, Some(&content_id(batch, i)), &req, &mut out);
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Batch {
        boundary,
        body: out.freeze(),
        expected: Vec::new(),
    }
}

fn full(body: Bytes) -> ReqBody {
    Full::new(body)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A body that arrives in about 20 pieces spread over a second.
fn trickle(body: Bytes) -> ReqBody {
    let pieces = 20usize;
    let step = body.len().div_ceil(pieces).max(1);
    let stream = futures_util::stream::unfold(0usize, move |at| {
        let body = body.clone();
        async move {
            if at >= body.len() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let end = (at + step).min(body.len());
            Some((Ok(Frame::data(body.slice(at..end))), end))
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

fn batch_request(addr: SocketAddr, boundary: &str, body: ReqBody, len: usize) -> Request<ReqBody> {
    Request::post(format!("http://{addr}/batch"))
        .header(
            "content-type",
            format!("multipart/mixed; boundary=\"{boundary}\""),
        )
        .header("content-length", len)
        .body(body)
        .expect("valid request")
}

/// Checks one batch answer against what was sent; counts answered, lost and duplicated items.
fn check_answer(stats: &Stats, batch: &Batch, content_type: Option<&str>, body: &Bytes) {
    let n = batch.expected.len() as u64;
    let parts = content_type
        .and_then(|ct| ct.parse::<mime::Mime>().ok())
        .and_then(|m| boundary_of(&m).ok())
        .and_then(|b| split_parts(body, b.as_bytes(), &Limits::default()).ok());
    let Some(parts) = parts else {
        stats.error("answer not readable as multipart");
        stats.lost.fetch_add(n, Ordering::Relaxed);
        return;
    };
    let mut seen = HashSet::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let Some(at) = memchr::memmem::find(part, b"\r\n\r\n") else {
            stats.error("answer part without headers");
            continue;
        };
        let cid = std::str::from_utf8(&part[..at]).ok().and_then(|head| {
            head.split("\r\n").find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-id")
                    .then(|| value.trim().to_owned())
            })
        });
        let Some(id) = cid
            .as_deref()
            .and_then(|c| c.strip_prefix("<response-"))
            .and_then(|c| c.strip_suffix('>'))
        else {
            stats.error("answer part without a Content-ID echo");
            continue;
        };
        let Some(pos) = batch.expected.iter().position(|(want, _)| want == id) else {
            stats.error("answer part with an unknown Content-ID");
            continue;
        };
        if !seen.insert(pos) {
            stats.duplicated.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if pos != index {
            stats.error("answer out of request order");
        }
        stats.items_answered.fetch_add(1, Ordering::Relaxed);
        match parse_response(&part.slice(at + 4..), &Limits::default()) {
            Ok(res) if res.status() == batch.expected[pos].1 => {}
            Ok(res) => stats.error(format!(
                "item status {} where {} was due",
                res.status().as_u16(),
                batch.expected[pos].1.as_u16()
            )),
            Err(_) => stats.error("answer part not a readable HTTP response"),
        }
    }
    stats
        .lost
        .fetch_add(n - seen.len() as u64, Ordering::Relaxed);
}

/// Sends a well-formed batch (whole or trickled) and checks every item of the answer.
async fn send_batch(
    client: &HttpClient,
    addr: SocketAddr,
    stats: &Stats,
    batch: Batch,
    slow: bool,
) {
    let n = batch.expected.len() as u64;
    stats.items_sent.fetch_add(n, Ordering::Relaxed);
    let body = if slow {
        trickle(batch.body.clone())
    } else {
        full(batch.body.clone())
    };
    let req = batch_request(addr, &batch.boundary, body, batch.body.len());
    let exchange = async {
        let res = client
            .request(req)
            .await
            .map_err(|e| format!("client: {e}"))?;
        let status = res.status();
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, ct, body))
    };
    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
        Ok(Ok((StatusCode::OK, ct, body))) => {
            stats.batches_ok.fetch_add(1, Ordering::Relaxed);
            check_answer(stats, &batch, ct.as_deref(), &body);
        }
        Ok(Ok((status, _, _))) => {
            stats.error(format!("well-formed batch answered {}", status.as_u16()));
            stats.lost.fetch_add(n, Ordering::Relaxed);
        }
        Ok(Err(e)) => {
            stats.error(e);
            stats.lost.fetch_add(n, Ordering::Relaxed);
        }
        Err(_) => {
            stats.error("well-formed batch timed out");
            stats.lost.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Sends a malformed batch, which must be refused with a 4xx.
async fn send_malformed(
    client: &HttpClient,
    addr: SocketAddr,
    stats: &Stats,
    rng: &mut Rng,
    batch_no: u64,
) {
    let valid = strict_batch(rng, batch_no, 3);
    let (kind, content_type, body) = match rng.below(5) {
        0 => ("no boundary", "multipart/mixed".to_owned(), valid.body),
        1 => (
            "wrong boundary",
            "multipart/mixed; boundary=not-the-one".to_owned(),
            valid.body,
        ),
        2 => {
            // Cut before the closing delimiter.
            let cut = valid.body.len() - valid.boundary.len() - 8;
            (
                "truncated",
                format!("multipart/mixed; boundary={}", valid.boundary),
                valid.body.slice(..cut),
            )
        }
        3 => {
            let many = strict_batch(rng, batch_no, 1001);
            (
                "too many parts",
                format!("multipart/mixed; boundary={}", many.boundary),
                many.body,
            )
        }
        _ => {
            let garbage: Vec<u8> = (0..1 + rng.below(4096)).map(|_| rng.next() as u8).collect();
            (
                "garbage",
                format!("multipart/mixed; boundary={}", valid.boundary),
                Bytes::from(garbage),
            )
        }
    };
    let req = Request::post(format!("http://{addr}/batch"))
        .header("content-type", content_type)
        .body(full(body))
        .expect("valid request");
    let exchange = async {
        let res = client
            .request(req)
            .await
            .map_err(|e| format!("client: {e}"))?;
        let status = res.status();
        let _ = res.into_body().collect().await;
        Ok::<_, String>(status)
    };
    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
        Ok(Ok(s)) if s.is_client_error() => {
            stats.malformed_rejected.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Ok(s)) => stats.error(format!("malformed ({kind}) answered {}", s.as_u16())),
        Ok(Err(e)) => stats.error(format!("malformed ({kind}): {e}")),
        Err(_) => stats.error(format!("malformed ({kind}) timed out")),
    }
}

/// A JSON batch body of `items`.
fn json_batch(items: Vec<serde_json::Value>) -> Bytes {
    Bytes::from(serde_json::json!({ "requests": items }).to_string())
}

/// One of the hostile shapes; each must be answered with a `200` batch or a 4xx, or (the reader
/// that stops) leave nothing behind.
async fn send_hostile(client: &HttpClient, addr: SocketAddr, stats: &Stats, rng: &mut Rng) {
    let params = |prefix: &str, n: usize| {
        (0..n)
            .map(|i| format!("{prefix}{i}=1"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let (kind, path, body) = match rng.below(4) {
        0 => {
            let url = format!("/farm/v1/animals/pony?{}", params("i", 2000));
            let items = (0..50)
                .map(|i| serde_json::json!({"id": i.to_string(), "method": "GET", "url": url}))
                .collect();
            (
                "huge queries",
                format!("/batch?{}", params("o", 2000)),
                json_batch(items),
            )
        }
        1 => {
            let mut items =
                vec![serde_json::json!({"id": "0", "method": "GET", "url": "/farm/v1/slow/200"})];
            for i in 1..100 {
                items.push(serde_json::json!({"id": i.to_string(), "method": "GET", "url": "/farm/v1/farmers"}));
            }
            items[99]["dependsOn"] = serde_json::json!(["1"]);
            ("dependency edge", "/batch".to_owned(), json_batch(items))
        }
        2 => {
            let headers: serde_json::Map<_, _> = (0..33_000)
                .map(|i| (format!("x-{i}"), serde_json::json!("1")))
                .collect();
            let items = vec![
                serde_json::json!({"id": "many", "method": "GET", "url": "/farm/v1/farmers", "headers": headers}),
                serde_json::json!({"id": "plain", "method": "GET", "url": "/farm/v1/farmers"}),
            ];
            ("many headers", "/batch".to_owned(), json_batch(items))
        }
        _ => {
            // A reader that stops: the batch asks for many answers and nothing is read.
            let items = (0..200)
                .map(|i| serde_json::json!({"id": i.to_string(), "method": "GET", "url": "/farm/v1/animals"}))
                .collect();
            let body = json_batch(items);
            let run = async {
                let mut sock = TcpStream::connect(addr).await?;
                let head = format!(
                    "POST /batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                sock.write_all(head.as_bytes()).await?;
                sock.write_all(&body).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<_, std::io::Error>(())
            };
            match tokio::time::timeout(EXCHANGE_TIMEOUT, run).await {
                Ok(Ok(())) => {
                    stats.hostile.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => stats.error(format!("stalled reader: {}", e.kind())),
                Err(_) => stats.error("stalled reader timed out"),
            }
            return;
        }
    };
    let req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(full(body))
        .expect("valid request");
    let exchange = async {
        let res = client
            .request(req)
            .await
            .map_err(|e| format!("client: {e}"))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
        Ok(Ok((s, body))) if s == StatusCode::OK => {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) if v["responses"].is_array() => {
                    stats.hostile.fetch_add(1, Ordering::Relaxed);
                }
                _ => stats.error(format!("hostile ({kind}): the answer is not a JSON batch")),
            }
        }
        Ok(Ok((s, _))) if s.is_client_error() => {
            stats.hostile.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Ok((s, _))) => stats.error(format!("hostile ({kind}) answered {}", s.as_u16())),
        Ok(Err(e)) => stats.error(format!("hostile ({kind}): {e}")),
        Err(_) => stats.error(format!("hostile ({kind}) timed out")),
    }
}

/// Over a raw socket: sends the head and half of a batch's body, or all of it and then reads
/// only part of the answer; then drops the connection.
async fn hang_up(addr: SocketAddr, stats: &Stats, batch: Batch, mid_answer: bool) {
    let run = async {
        let mut sock = TcpStream::connect(addr).await?;
        let head = format!(
            "POST /batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/mixed; boundary={}\r\nContent-Length: {}\r\n\r\n",
            batch.boundary,
            batch.body.len()
        );
        sock.write_all(head.as_bytes()).await?;
        if mid_answer {
            sock.write_all(&batch.body).await?;
            let mut buf = vec![0u8; 512];
            let _ = sock.read(&mut buf).await?;
        } else {
            sock.write_all(&batch.body[..batch.body.len() / 2]).await?;
            // Give the server time to start reading before the hang-up.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(EXCHANGE_TIMEOUT, run).await {
        Ok(Ok(())) => {
            stats.hangups.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => stats.error(format!("hang-up client: {}", e.kind())),
        Err(_) => stats.error("hang-up client timed out"),
    }
}

async fn client_loop(
    id: u64,
    addr: SocketAddr,
    client: HttpClient,
    stats: Arc<Stats>,
    deadline: Instant,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut seq = 0u64;
    while Instant::now() < deadline {
        seq += 1;
        // Unique across clients: the client id in the low bits.
        let batch_no = seq * 1024 + id;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        match rng.below(100) {
            0..=69 => {
                let n = batch_size(&mut rng);
                let batch = if rng.below(5) == 0 {
                    lenient_batch(&mut rng, batch_no, n)
                } else {
                    strict_batch(&mut rng, batch_no, n)
                };
                send_batch(&client, addr, &stats, batch, false).await;
            }
            70..=75 => send_malformed(&client, addr, &stats, &mut rng, batch_no).await,
            76..=79 => send_hostile(&client, addr, &stats, &mut rng).await,
            80..=86 => {
                let n = batch_size(&mut rng);
                hang_up(addr, &stats, strict_batch(&mut rng, batch_no, n), false).await;
            }
            87..=93 => {
                // Slow items, so the answer is still streaming when the client leaves.
                hang_up(addr, &stats, slow_batch(batch_no, 20), true).await;
            }
            _ => {
                stats.trickled.fetch_add(1, Ordering::Relaxed);
                let n = batch_size(&mut rng);
                send_batch(
                    &client,
                    addr,
                    &stats,
                    strict_batch(&mut rng, batch_no, n),
                    true,
                )
                .await;
            }
        }
    }
}

/// This process's resident memory in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[tokio::main]
async fn main() {
    let opts = options();
    let addr = if opts.spawned {
        let app = http_batch::BatchLayer::new()
            .paths(["/batch", "/batch/farm/v1"])
            .execution(http_batch::Execution::Spawned)
            .wrap_router(farm::api(None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("farm server") });
        addr
    } else {
        farm::spawn(None).await
    };
    let start_rss = rss_kib();
    println!(
        "soak: farm on http://{addr}, {} clients for {} s{}",
        opts.clients,
        opts.secs,
        if opts.spawned {
            ", Execution::Spawned"
        } else {
            ""
        }
    );

    let samples = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let begun = Instant::now();
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                samples
                    .lock()
                    .unwrap()
                    .push((begun.elapsed().as_secs_f64(), rss_kib()));
            }
        })
    };

    let stats = Arc::new(Stats::default());
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let deadline = begun + Duration::from_secs(opts.secs);
    let clients: Vec<_> = (0..opts.clients as u64)
        .map(|id| {
            tokio::spawn(client_loop(
                id,
                addr,
                client.clone(),
                stats.clone(),
                deadline,
            ))
        })
        .collect();
    for c in clients {
        if c.await.is_err() {
            stats.error("client task panicked");
        }
    }
    let load_secs = begun.elapsed().as_secs_f64();
    // Idle connections and finished batches should be gone after a short rest.
    drop(client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end_rss = rss_kib();
    sampler.abort();

    let samples = samples.lock().unwrap().clone();
    let warm_at = (opts.secs as f64 / 6.0).clamp(1.0, 10.0);
    let warm = samples
        .iter()
        .find(|(t, _)| *t >= warm_at)
        .map_or(start_rss, |s| s.1);
    let peak = samples
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(start_rss)
        .max(end_rss);

    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!("duration:            {load_secs:.1} s");
    println!("requests sent:       {}", get(&stats.requests));
    println!("  batches answered:  {} (200)", get(&stats.batches_ok));
    println!("  malformed -> 4xx:  {}", get(&stats.malformed_rejected));
    println!("  hostile answered:  {}", get(&stats.hostile));
    println!("  hang-ups:          {}", get(&stats.hangups));
    println!("  trickled bodies:   {}", get(&stats.trickled));
    println!("items sent:          {}", get(&stats.items_sent));
    println!("items answered:      {}", get(&stats.items_answered));
    println!("items lost:          {}", get(&stats.lost));
    println!("items duplicated:    {}", get(&stats.duplicated));
    let errors = stats.errors.lock().unwrap();
    if errors.is_empty() {
        println!("errors:              none");
    } else {
        println!("errors by kind:");
        for (kind, n) in errors.iter() {
            println!("  {n:>8}  {kind}");
        }
    }
    println!(
        "memory (VmRSS):      start {}, after warm-up ({warm_at:.0} s) {}, peak {}, end {}",
        mib(start_rss),
        mib(warm),
        mib(peak),
        mib(end_rss)
    );
    if get(&stats.lost) > 0 || get(&stats.duplicated) > 0 {
        eprintln!("FAIL: items were lost or duplicated");
        std::process::exit(1);
    }
}
