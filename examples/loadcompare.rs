//! Run with: cargo run --release --example loadcompare
//!
//! Makes the same N small GET calls in four ways against a trivial axum handler served on
//! loopback (HTTP/1.1 and HTTP/2 prior knowledge, both from `axum::serve`), each repeated for a
//! fixed time, and compares calls per second and the latency of a whole group of N calls:
//!
//! - (a) one after the other over one HTTP/1.1 keep-alive connection;
//! - (b) concurrently over 8 HTTP/1.1 connections;
//! - (c) N concurrent streams on one HTTP/2 connection;
//! - (d) one multipart batch of N items over one HTTP/1.1 connection.
//!
//! Options: `--n 100` (calls per group), `--secs 6` (time per way), `--rounds 3`, `--concurrency
//! 16` (the batch layer's), `--spawned` (`Execution::Spawned`). Server and client share the
//! machine, so the figures are for comparing the ways with each other, not absolute capacity.
//!
//! Each way's time is split into rounds, and the rounds are interleaved (a b c d, a b c d, ...):
//! on a shared machine the load from outside changes within seconds, and interleaving spreads
//! it over every way. Besides the totals, the program prints each round's ratios and their
//! median, which a burst of outside load moves least.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::{Bytes, BytesMut};
use http::{header, Request, StatusCode};
use http_batch::format::multipart::write_request;
use http_batch::{BatchLayer, Execution};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

const BOUNDARY: &str = "batch_loadcompare";
const HTTP1_CONNECTIONS: usize = 8;

struct Options {
    n: usize,
    secs: u64,
    rounds: usize,
    concurrency: usize,
    execution: Execution,
}

fn options() -> Options {
    let mut o = Options {
        n: 100,
        secs: 6,
        rounds: 3,
        concurrency: 16,
        execution: Execution::Polled,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--spawned" {
            o.execution = Execution::Spawned;
            continue;
        }
        let value = args.next().unwrap_or_default();
        let parsed: usize = value
            .parse()
            .unwrap_or_else(|_| panic!("{flag} wants a number, not `{value}`"));
        match flag.as_str() {
            "--n" => o.n = parsed,
            "--secs" => o.secs = parsed as u64,
            "--rounds" => o.rounds = parsed,
            "--concurrency" => o.concurrency = parsed,
            other => panic!(
                "unknown option {other}; use --n, --secs, --rounds, --concurrency or --spawned"
            ),
        }
    }
    assert!(o.n > 0, "--n must be at least 1");
    assert!(o.rounds > 0, "--rounds must be at least 1");
    o
}

async fn serve(concurrency: usize, execution: Execution) -> SocketAddr {
    let api = Router::new().route("/items/{id}", get(|| async { "ok" }));
    let app = BatchLayer::new()
        .concurrency(concurrency)
        .execution(execution)
        .wrap_router(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    // Without TCP_NODELAY, small HTTP/2 frames wait on the peer's delayed ACK (about 40 ms a
    // round), which would measure Nagle's algorithm instead of the ways of calling.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.expect("server") });
    addr
}

async fn connect(addr: SocketAddr) -> TokioIo<TcpStream> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    TokioIo::new(stream)
}

async fn http1_sender<B>(addr: SocketAddr) -> http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = http1::handshake(connect(addr).await)
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    sender
}

fn get_request(addr: SocketAddr, i: usize) -> Request<Empty<Bytes>> {
    Request::get(format!("/items/{i}"))
        .header(header::HOST, addr.to_string())
        .body(Empty::new())
        .expect("valid request")
}

/// One GET on a ready HTTP/1.1 connection, body read to the end.
async fn h1_call(sender: &mut http1::SendRequest<Empty<Bytes>>, addr: SocketAddr, i: usize) {
    sender.ready().await.expect("connection usable");
    let res = sender
        .send_request(get_request(addr, i))
        .await
        .expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"ok");
}

/// A way of making the N calls: one group per call of `round`.
trait Way {
    async fn round(&mut self, n: usize);
}

/// (a) Sequential over one keep-alive connection.
struct Sequential {
    addr: SocketAddr,
    sender: http1::SendRequest<Empty<Bytes>>,
}

impl Way for Sequential {
    async fn round(&mut self, n: usize) {
        for i in 0..n {
            h1_call(&mut self.sender, self.addr, i).await;
        }
    }
}

/// (b) Concurrently over several connections, each taking every k-th call.
struct Pooled {
    addr: SocketAddr,
    senders: Vec<http1::SendRequest<Empty<Bytes>>>,
}

impl Way for Pooled {
    async fn round(&mut self, n: usize) {
        let k = self.senders.len();
        let addr = self.addr;
        let work = self
            .senders
            .iter_mut()
            .enumerate()
            .map(|(c, sender)| async move {
                for i in (c..n).step_by(k) {
                    h1_call(sender, addr, i).await;
                }
            });
        futures_util::future::join_all(work).await;
    }
}

/// (c) All N as concurrent streams on one HTTP/2 connection.
struct Multiplexed {
    addr: SocketAddr,
    sender: http2::SendRequest<Empty<Bytes>>,
}

impl Way for Multiplexed {
    async fn round(&mut self, n: usize) {
        self.sender.ready().await.expect("h2 connection usable");
        let calls = (0..n).map(|i| {
            let mut sender = self.sender.clone();
            let req = get_request(self.addr, i);
            async move {
                let res = sender.send_request(req).await.expect("response");
                assert_eq!(res.status(), StatusCode::OK);
                res.into_body().collect().await.expect("body").to_bytes()
            }
        });
        for body in futures_util::future::join_all(calls).await {
            assert_eq!(&body[..], b"ok");
        }
    }
}

/// (d) One multipart batch of N items.
struct Batched {
    addr: SocketAddr,
    sender: http1::SendRequest<Full<Bytes>>,
    bodies: std::collections::HashMap<usize, Bytes>,
}

impl Batched {
    fn body(&mut self, n: usize) -> Bytes {
        self.bodies
            .entry(n)
            .or_insert_with(|| {
                let mut out = BytesMut::new();
                for i in 0..n {
                    let req = Request::get(format!("/items/{i}"))
                        .body(Bytes::new())
                        .expect("valid request");
                    write_request(BOUNDARY, Some(&format!("item{i}")), &req, &mut out);
                }
                out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
                out.freeze()
            })
            .clone()
    }
}

impl Way for Batched {
    async fn round(&mut self, n: usize) {
        let body = self.body(n);
        let req = Request::post("/batch")
            .header(header::HOST, self.addr.to_string())
            .header(
                header::CONTENT_TYPE,
                format!("multipart/mixed; boundary={BOUNDARY}"),
            )
            .body(Full::new(body))
            .expect("valid request");
        self.sender.ready().await.expect("connection usable");
        let res = self.sender.send_request(req).await.expect("response");
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.expect("body").to_bytes();
        // Each answered item carries its own nested status line.
        let answered = memchr::memmem::find_iter(&body, b"HTTP/1.1 200 OK").count();
        assert_eq!(answered, n, "every item of the batch answers 200");
    }
}

/// The figures of one way, over all its rounds.
struct Outcome {
    name: &'static str,
    /// Every group's latency.
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// Calls per second in each round.
    per_round: Vec<f64>,
}

impl Outcome {
    fn new(name: &'static str) -> Self {
        Outcome {
            name,
            latencies: Vec::new(),
            elapsed: Duration::ZERO,
            per_round: Vec::new(),
        }
    }

    fn calls_per_sec(&self, n: usize) -> f64 {
        (self.latencies.len() * n) as f64 / self.elapsed.as_secs_f64()
    }

    fn at(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
    }
}

/// One round of a way: groups of `n` calls, one after another, for `time`.
async fn measure<W: Way>(out: &mut Outcome, way: &mut W, n: usize, time: Duration) {
    // A short warm-up, so connection set-up and first allocations are not counted.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(100) {
        way.round(n).await;
    }
    let start = Instant::now();
    let mut groups = 0;
    while start.elapsed() < time {
        let t = Instant::now();
        way.round(n).await;
        out.latencies.push(t.elapsed());
        groups += 1;
    }
    let elapsed = start.elapsed();
    out.elapsed += elapsed;
    out.per_round
        .push((groups * n) as f64 / elapsed.as_secs_f64());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let o = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(o));
}

async fn run(o: Options) {
    let addr = serve(o.concurrency, o.execution).await;
    let n = o.n;
    println!(
        "loadcompare: {n} calls per group, {} s per way in {} interleaved rounds, batch concurrency {}, {:?} execution, {} cores",
        o.secs,
        o.rounds,
        o.concurrency,
        o.execution,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    let mut a = Sequential {
        addr,
        sender: http1_sender(addr).await,
    };
    let mut senders = Vec::new();
    for _ in 0..HTTP1_CONNECTIONS {
        senders.push(http1_sender(addr).await);
    }
    let mut b = Pooled { addr, senders };
    let (h2, conn) = http2::handshake(TokioExecutor::new(), connect(addr).await)
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let mut c = Multiplexed { addr, sender: h2 };
    let mut d = Batched {
        addr,
        sender: http1_sender(addr).await,
        bodies: Default::default(),
    };

    let mut results = [
        Outcome::new("a: sequential, 1 HTTP/1.1 connection"),
        Outcome::new("b: concurrent, 8 HTTP/1.1 connections"),
        Outcome::new("c: concurrent streams, 1 HTTP/2 connection"),
        Outcome::new("d: one multipart batch, 1 HTTP/1.1 connection"),
    ];
    let time = Duration::from_secs_f64(o.secs as f64 / o.rounds as f64);
    for _ in 0..o.rounds {
        measure(&mut results[0], &mut a, n, time).await;
        measure(&mut results[1], &mut b, n, time).await;
        measure(&mut results[2], &mut c, n, time).await;
        measure(&mut results[3], &mut d, n, time).await;
    }
    for r in &results {
        println!(
            "{:<48} {:>10.0} calls/s   group median {:>8.3} ms   p99 {:>8.3} ms   ({} groups)",
            r.name,
            r.calls_per_sec(n),
            ms(r.at(0.5)),
            ms(r.at(0.99)),
            r.latencies.len()
        );
    }
    let batch = &results[3];
    println!();
    for (label, other) in ["a", "b", "c"].iter().zip(&results[..3]) {
        let rounds: Vec<f64> = batch
            .per_round
            .iter()
            .zip(&other.per_round)
            .map(|(d, x)| d / x)
            .collect();
        let shown: Vec<String> = rounds.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "d / {label}: calls/s x{:.2} overall, x{:.2} median of rounds [{}]; p99 {:.3} ms vs {:.3} ms ({})",
            batch.calls_per_sec(n) / other.calls_per_sec(n),
            median(rounds),
            shown.join(", "),
            ms(batch.at(0.99)),
            ms(other.at(0.99)),
            if batch.at(0.99) < other.at(0.99) {
                "batch lower"
            } else {
                "batch not lower"
            }
        );
    }

    println!("\n| way | calls/s | group median (ms) | group p99 (ms) | batch (d) calls/s ratio |");
    println!("|---|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.2} |",
            r.name,
            r.calls_per_sec(n),
            ms(r.at(0.5)),
            ms(r.at(0.99)),
            batch.calls_per_sec(n) / r.calls_per_sec(n)
        );
    }
}
