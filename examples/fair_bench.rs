//! Run everything, nginx included, with: scripts/fair-bench.sh
//! Without nginx (the direct rows only): cargo run --release --example fair_bench
//!
//! Sends the same N calls (100 by default) to the farm's real handlers (`examples/farm`, on a
//! fresh SQLite farm) in three ways, and compares them:
//!
//! - **batch**: one Google-style multipart batch to `/batch/farm/v1`, on one HTTP/1.1 keep-alive
//!   connection;
//! - **HTTP/1.1 × 6**: the calls one per request over 6 keep-alive connections (a browser's limit
//!   per host), each connection taking the next call when its last one has answered;
//! - **HTTP/2**: the calls as N concurrent streams on one connection (h2c, prior knowledge).
//!
//! Each way talks to the farm directly and, when `--nginx-h1`/`--nginx-h2` name an nginx in front
//! of it (`scripts/fair-bench.sh` starts one), through nginx; both with an added round-trip time
//! (`--rtts 0,10,50`, in milliseconds) from a relay in this program that holds each direction's
//! bytes for half of it, in order. The relay sits between the client and the farm or nginx;
//! nginx talks to the farm without delay, as a proxy in the same data centre would.
//!
//! Connections are opened and warmed up before the timing; every way then runs its groups of N
//! calls in rounds, interleaved (batch, HTTP/1.1, HTTP/2, batch, ...), so that load from outside
//! falls on all of them. Per round and way:
//!
//! - **calls/s**: calls answered ÷ the round's time;
//! - **last answer**: the median time from issuing a group's N calls to its last answer;
//! - **p99 call**: the 99th percentile of one call's time, from the moment its request goes out
//!   (for HTTP/1.1, when a connection takes it) to the end of its answer; for the batch, from
//!   sending the batch to the end of that item's part in the streamed answer.
//!
//! Each figure is printed as a ratio to the batch's in the same round, and the tables show the
//! median over the rounds. Output: a markdown table on stdout, the medians in
//! `target/fair-bench/results.csv` and every round in `target/fair-bench/rounds.csv` (`--out DIR`
//! moves both).
//!
//! Options: `--n 100`, `--rounds 7`, `--round-secs 1` (each way's time per round; at least one
//! group), `--rtts 0,10,50`, `--farm-port 0`, `--nginx-h1 ADDR`, `--nginx-h2 ADDR`,
//! `--proxy-label TEXT` (how the tables name the proxy), `--out DIR`; `--free-ports K` prints K
//! free loopback ports and exits (the script's way of laying out nginx's configuration).

#[path = "farm/app.rs"]
mod farm;

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use bytes::{Bytes, BytesMut};
use http::{header, Request, StatusCode};
use http_batch::format::multipart::write_request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const BOUNDARY: &str = "fair_bench_batch";
/// A browser's connections per host over HTTP/1.1.
const HTTP1_CONNECTIONS: usize = 6;
/// The longest a group of calls, a connection or a handshake may take before the run stops
/// with an error: far above any group at 50 ms of round-trip time (about 2 s for HTTP/1.1).
const DEADLINE: Duration = Duration::from_secs(60);
/// The farm's batch route in Google's dialect.
const BATCH_PATH: &str = "/batch/farm/v1";

/// What to measure; see the module docs for each option.
pub struct Options {
    n: usize,
    rounds: usize,
    round_time: Duration,
    rtts: Vec<u64>,
    calls: Vec<Calls>,
    farm_port: u16,
    nginx_h1: Option<SocketAddr>,
    nginx_h2: Option<SocketAddr>,
    proxy_label: String,
    out: PathBuf,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: fair_bench [--n 100] [--rounds 7] [--round-secs 1] [--rtts 0,10,50] \
         [--calls mixed,static] [--farm-port 0] [--nginx-h1 ADDR --nginx-h2 ADDR] [--proxy-label TEXT] [--out DIR] \
         | --free-ports K"
    );
    std::process::exit(2);
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("{flag} wants a number, not `{value}`")))
}

/// The options in `args` (the program's arguments, without its name); exits with the usage on
/// a bad one, and after printing the ports for `--free-ports`.
pub fn options(args: impl IntoIterator<Item = String>) -> Options {
    let mut o = Options {
        n: 100,
        rounds: 7,
        round_time: Duration::from_secs(1),
        rtts: vec![0, 10, 50],
        calls: vec![Calls::Mixed, Calls::Static],
        farm_port: 0,
        nginx_h1: None,
        nginx_h2: None,
        proxy_label: "nginx".to_owned(),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fair-bench"),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            usage(&format!("{flag} wants a value"));
        };
        let addr = |v: &str| -> SocketAddr {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag} wants host:port, not `{v}`")))
        };
        match flag.as_str() {
            "--n" => o.n = number(&flag, &value),
            "--rounds" => o.rounds = number(&flag, &value),
            "--round-secs" => o.round_time = Duration::from_secs_f64(number(&flag, &value)),
            "--rtts" => o.rtts = value.split(',').map(|v| number(&flag, v)).collect(),
            "--calls" => {
                o.calls = value
                    .split(',')
                    .map(|c| match c {
                        "mixed" => Calls::Mixed,
                        "static" => Calls::Static,
                        _ => usage(&format!("--calls takes mixed, static or both, not `{c}`")),
                    })
                    .collect()
            }
            "--farm-port" => o.farm_port = number(&flag, &value),
            "--nginx-h1" => o.nginx_h1 = Some(addr(&value)),
            "--nginx-h2" => o.nginx_h2 = Some(addr(&value)),
            "--proxy-label" => o.proxy_label = value,
            "--out" => o.out = PathBuf::from(value),
            "--free-ports" => {
                free_ports(number(&flag, &value));
                std::process::exit(0);
            }
            other => usage(&format!("unknown option {other}")),
        }
    }
    // Bounds, so that a typo cannot start a run of hours or a batch the farm refuses.
    if !(1..=1000).contains(&o.n) {
        usage("--n must be from 1 to 1000 (the farm's batches take at most 1000 items)");
    }
    if !(1..=101).contains(&o.rounds) {
        usage("--rounds must be from 1 to 101");
    }
    if o.round_time > Duration::from_secs(60) {
        usage("--round-secs must be at most 60");
    }
    if o.rtts.is_empty() || o.rtts.iter().any(|&r| r > 1000) {
        usage("--rtts must list round-trip times of at most 1000 ms");
    }
    if o.nginx_h1.is_some() != o.nginx_h2.is_some() {
        usage("--nginx-h1 and --nginx-h2 go together");
    }
    o
}

/// Prints `k` loopback ports that were free a moment ago, one per line.
fn free_ports(k: usize) {
    let listeners: Vec<_> = (0..k.min(16))
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    for l in &listeners {
        println!("{}", l.local_addr().expect("local_addr").port());
    }
}

fn main() {
    let o = options(std::env::args().skip(1));
    match bench(&o) {
        Ok(table) => {
            println!("{table}");
            println!(
                "CSV: {} and {}",
                o.out.join("results.csv").display(),
                o.out.join("rounds.csv").display()
            );
        }
        Err(e) => {
            eprintln!("fair_bench: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs the benchmark `o` asks for, printing the machine and its progress as it goes; writes
/// the CSV files and returns the markdown table.
pub fn bench(o: &Options) -> Result<String, String> {
    println!("{}", machine());
    let (farm_addr, stop_farm) = start_farm(o.farm_port)?;
    let relay_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("relay")
        .enable_all()
        .build()
        .expect("the relay's runtime");
    // The clients run on this thread alone: their own work stays off the server's workers as
    // far as two cores allow, and is the same for every way.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client's runtime");
    let results = client_rt.block_on(run(o, farm_addr, relay_rt.handle()));
    relay_rt.shutdown_timeout(Duration::from_secs(5));
    stop_farm();
    report(o, &results?)
}

/// Cores, CPU model and kernel, from `/proc`.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |p| p.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
    format!("machine: {cores} cores, {model}, Linux {kernel}")
}

/// Serves the farm on 127.0.0.1:`port` (0: any free port) on a runtime of its own with two
/// workers, as a server would run. Returns its address and a function that stops it.
fn start_farm(port: u16) -> Result<(SocketAddr, impl FnOnce()), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("farm")
        .enable_all()
        .build()
        .expect("the farm's runtime");
    let db = rt.block_on(async { farm::fresh() });
    let listener = rt
        .block_on(TcpListener::bind(("127.0.0.1", port)))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let addr = listener.local_addr().expect("local_addr");
    // Without TCP_NODELAY, answers written in small pieces wait on the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = {
        let _runtime = rt.enter();
        farm::app_on(None, db.clone())
    };
    rt.spawn(async move { axum::serve(listener, app).await });
    let stop = move || {
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(5), db.pool().close()).await;
        });
        rt.shutdown_timeout(Duration::from_secs(5));
        farm::remove_fresh_files();
    };
    Ok((addr, stop))
}

// ---------------------------------------------------------------------------------------------
// The delaying relay

/// Listens on a loopback port and forwards each connection to `target`, holding the bytes of
/// each direction for `rtt / 2` from the moment they were read, in order. Returns its address,
/// and the handle that stops it accepting.
async fn start_relay(
    rt: &tokio::runtime::Handle,
    target: SocketAddr,
    rtt: Duration,
) -> Result<(SocketAddr, tokio::task::AbortHandle), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("relay: bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let one_way = rtt / 2;
    let accepting = rt.spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let connected = tokio::time::timeout(DEADLINE, TcpStream::connect(target)).await;
                let Ok(Ok(outbound)) = connected else {
                    return; // dropping `inbound` closes it: the client sees the failure
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(delay_pipe(in_read, out_write, one_way));
                tokio::spawn(delay_pipe(out_read, in_write, one_way));
            });
        }
    });
    Ok((addr, accepting.abort_handle()))
}

/// Copies `from` to `to`, each chunk leaving `delay` after it was read; the end of `from`
/// becomes a shutdown of `to`, delayed the same way.
async fn delay_pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    // Bounded: a writer that cannot keep up holds the reader back, as a full link would.
    let (tx, mut rx) = mpsc::channel::<(tokio::time::Instant, Option<Bytes>)>(256);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let read = from.read(&mut buf).await.unwrap_or(0);
            let due = tokio::time::Instant::now() + delay;
            let chunk = (read > 0).then(|| Bytes::copy_from_slice(&buf[..read]));
            let end = chunk.is_none();
            if tx.send((due, chunk)).await.is_err() || end {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            if !delay.is_zero() {
                tokio::time::sleep_until(due).await;
            }
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

// ---------------------------------------------------------------------------------------------
// The calls

/// Which of the farm's handlers the N calls go to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Calls {
    /// The three animals, the animal list and the farmers in turn: four in five calls read the
    /// SQLite database, each in a transaction of its own (the farm's handlers all take one).
    Mixed,
    /// The farmers alone: a handler that answers fixed JSON, without the database, so that
    /// the ways of calling are all that differs.
    Static,
}

impl Calls {
    fn key(self) -> &'static str {
        match self {
            Calls::Mixed => "mixed",
            Calls::Static => "static",
        }
    }

    /// The path of call `i`.
    fn path(self, i: usize) -> &'static str {
        const MIXED: [&str; 5] = [
            "/farm/v1/animals/pony",
            "/farm/v1/animals/sheep",
            "/farm/v1/animals/cow",
            "/farm/v1/animals",
            "/farm/v1/farmers",
        ];
        match self {
            Calls::Mixed => MIXED[i % MIXED.len()],
            Calls::Static => "/farm/v1/farmers",
        }
    }
}

type Body = Full<Bytes>;

async fn connect(addr: SocketAddr) -> Result<TokioIo<TcpStream>, String> {
    let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} took longer than {DEADLINE:?}"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(TokioIo::new(stream))
}

async fn http1_sender(addr: SocketAddr) -> Result<http1::SendRequest<Body>, String> {
    let (sender, conn) = http1::handshake(connect(addr).await?)
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {addr}: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn http2_sender(addr: SocketAddr) -> Result<http2::SendRequest<Body>, String> {
    let handshake = http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .handshake(connect(addr).await?);
    let (sender, conn) = tokio::time::timeout(DEADLINE, handshake)
        .await
        .map_err(|_| format!("HTTP/2 handshake with {addr} took longer than {DEADLINE:?}"))?
        .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends `req` and reads its answer to the end; an error unless it is a 200 with a body.
async fn exchange<S>(send: S, what: &str) -> Result<(), String>
where
    S: std::future::Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
{
    let res = send.await.map_err(|e| format!("{what}: {e}"))?;
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{what}: reading the answer: {e}"))?
        .to_bytes();
    if status != StatusCode::OK || body.is_empty() {
        return Err(format!(
            "{what}: answered {status} with {} bytes: {}",
            body.len(),
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(())
}

/// One group: the time from issuing its calls to the last answer, and each call's own time.
struct Group {
    elapsed: Duration,
    calls: Vec<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WayKind {
    Batch,
    Http1,
    Http2,
}

impl WayKind {
    const ALL: [WayKind; 3] = [WayKind::Batch, WayKind::Http1, WayKind::Http2];

    fn name(self) -> &'static str {
        match self {
            WayKind::Batch => "one batch (HTTP/1.1, 1 connection)",
            WayKind::Http1 => "HTTP/1.1, 6 connections",
            WayKind::Http2 => "HTTP/2, 1 connection, a stream per call",
        }
    }

    fn key(self) -> &'static str {
        match self {
            WayKind::Batch => "batch",
            WayKind::Http1 => "http1x6",
            WayKind::Http2 => "http2",
        }
    }
}

/// A way of making the N calls, with its connections open.
enum Way {
    Batch {
        host: String,
        sender: http1::SendRequest<Body>,
        body: Bytes,
    },
    Http1 {
        host: String,
        senders: Vec<http1::SendRequest<Body>>,
    },
    Http2 {
        authority: String,
        sender: http2::SendRequest<Body>,
    },
}

impl Way {
    /// Opens the connections of `kind`: HTTP/1.1 ones to `h1`, the HTTP/2 one to `h2`.
    async fn open(
        kind: WayKind,
        h1: SocketAddr,
        h2: SocketAddr,
        n: usize,
        calls: Calls,
    ) -> Result<Way, String> {
        Ok(match kind {
            WayKind::Batch => Way::Batch {
                host: h1.to_string(),
                sender: http1_sender(h1).await?,
                body: batch_body(n, calls),
            },
            WayKind::Http1 => {
                let mut senders = Vec::new();
                for _ in 0..HTTP1_CONNECTIONS {
                    senders.push(http1_sender(h1).await?);
                }
                Way::Http1 {
                    host: h1.to_string(),
                    senders,
                }
            }
            WayKind::Http2 => Way::Http2 {
                authority: h2.to_string(),
                sender: http2_sender(h2).await?,
            },
        })
    }

    /// Makes the N calls once, within [`DEADLINE`].
    async fn group(&mut self, n: usize, calls: Calls) -> Result<Group, String> {
        let run = async {
            match self {
                Way::Batch { host, sender, body } => {
                    batch_group(sender, host, body.clone(), n).await
                }
                Way::Http1 { host, senders } => http1_group(senders, host, n, calls).await,
                Way::Http2 { authority, sender } => http2_group(sender, authority, n, calls).await,
            }
        };
        tokio::time::timeout(DEADLINE, run)
            .await
            .map_err(|_| format!("a group of {n} calls took longer than {DEADLINE:?}"))?
    }
}

fn get(host: &str, path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, host)
        .body(Body::default())
        .expect("a valid request")
}

async fn http1_group(
    senders: &mut [http1::SendRequest<Body>],
    host: &str,
    n: usize,
    calls: Calls,
) -> Result<Group, String> {
    let start = Instant::now();
    let next = Cell::new(0);
    let times = RefCell::new(Vec::with_capacity(n));
    let connections = senders.iter_mut().map(|sender| async {
        loop {
            let i = next.get();
            if i >= n {
                return Ok::<(), String>(());
            }
            next.set(i + 1);
            sender
                .ready()
                .await
                .map_err(|e| format!("HTTP/1.1 connection: {e}"))?;
            let sent = Instant::now();
            exchange(
                sender.send_request(get(host, calls.path(i))),
                "HTTP/1.1 call",
            )
            .await?;
            times.borrow_mut().push(sent.elapsed());
        }
    });
    for done in futures_util::future::join_all(connections).await {
        done?;
    }
    Ok(Group {
        elapsed: start.elapsed(),
        calls: times.into_inner(),
    })
}

async fn http2_group(
    sender: &mut http2::SendRequest<Body>,
    authority: &str,
    n: usize,
    paths: Calls,
) -> Result<Group, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("HTTP/2 connection: {e}"))?;
    let start = Instant::now();
    let calls = (0..n).map(|i| {
        let mut sender = sender.clone();
        let req = Request::get(format!("http://{authority}{}", paths.path(i)))
            .body(Body::default())
            .expect("a valid request");
        async move {
            let sent = Instant::now();
            exchange(sender.send_request(req), "HTTP/2 call").await?;
            Ok::<_, String>(sent.elapsed())
        }
    });
    let calls = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Group {
        elapsed: start.elapsed(),
        calls,
    })
}

/// The multipart body of the N calls, each with its own `Content-ID`.
fn batch_body(n: usize, calls: Calls) -> Bytes {
    let mut out = BytesMut::new();
    for i in 0..n {
        let req = Request::get(calls.path(i))
            .body(Bytes::new())
            .expect("a valid request");
        write_request(BOUNDARY, Some(&format!("call{i}")), &req, &mut out);
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out.freeze()
}

/// Sends the batch and reads its answer as it streams: each part is timed when the delimiter
/// after it arrives, and must hold an answer `200 OK`.
async fn batch_group(
    sender: &mut http1::SendRequest<Body>,
    host: &str,
    body: Bytes,
    n: usize,
) -> Result<Group, String> {
    let req = Request::post(BATCH_PATH)
        .header(header::HOST, host)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/mixed; boundary={BOUNDARY}"),
        )
        .body(Full::new(body))
        .expect("a valid request");
    sender
        .ready()
        .await
        .map_err(|e| format!("batch connection: {e}"))?;
    let start = Instant::now();
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("batch: {e}"))?;
    if res.status() != StatusCode::OK {
        let status = res.status();
        let body = res.into_body().collect().await.map(|b| b.to_bytes());
        return Err(format!("batch answered {status}: {body:?}"));
    }
    let boundary = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once("boundary="))
        .map(|(_, b)| b.split(';').next().unwrap_or(b).trim().trim_matches('"'))
        .ok_or("the batch answer names no boundary")?;
    let mut parts = PartTimer::new(boundary, start);
    let mut body = res.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("batch answer: {e}"))?;
        if let Ok(data) = frame.into_data() {
            parts.push(&data)?;
        }
    }
    if parts.calls.len() != n {
        return Err(format!(
            "the batch answer has {} parts for {n} calls",
            parts.calls.len()
        ));
    }
    Ok(Group {
        elapsed: start.elapsed(),
        calls: parts.calls,
    })
}

/// Finds the parts of a multipart answer as its bytes arrive, and times each one's end.
struct PartTimer {
    delimiter: Vec<u8>,
    start: Instant,
    seen: Vec<u8>,
    /// Where the search for the next delimiter starts.
    from: usize,
    /// Where the part being read starts, once its opening delimiter was seen.
    part: Option<usize>,
    calls: Vec<Duration>,
}

impl PartTimer {
    fn new(boundary: &str, start: Instant) -> Self {
        PartTimer {
            delimiter: format!("--{boundary}").into_bytes(),
            start,
            seen: Vec::new(),
            from: 0,
            part: None,
            calls: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        self.seen.extend_from_slice(data);
        let finder = memchr::memmem::Finder::new(&self.delimiter);
        while let Some(at) = finder.find(&self.seen[self.from..]) {
            let at = self.from + at;
            if let Some(part) = self.part {
                let content = &self.seen[part..at];
                if memchr::memmem::find(content, b"HTTP/1.1 200 OK").is_none() {
                    return Err(format!(
                        "batch item {} did not answer 200: {}",
                        self.calls.len(),
                        String::from_utf8_lossy(&content[..content.len().min(300)])
                    ));
                }
                self.calls.push(self.start.elapsed());
            }
            self.from = at + self.delimiter.len();
            self.part = Some(self.from);
        }
        // A delimiter may be cut between two frames: look again at its possible start.
        self.from = self
            .from
            .max(self.seen.len().saturating_sub(self.delimiter.len() - 1));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Rounds and figures

/// One way's figures in one round.
#[derive(Clone, Copy)]
struct RoundFigures {
    calls_per_sec: f64,
    last_answer_ms: f64,
    p99_call_ms: f64,
}

/// The figures of one way over one configuration's rounds.
struct Series {
    calls: Calls,
    path: String,
    rtt_ms: u64,
    way: WayKind,
    rounds: Vec<RoundFigures>,
}

async fn measure_round(
    way: &mut Way,
    n: usize,
    calls: Calls,
    time: Duration,
) -> Result<RoundFigures, String> {
    let start = Instant::now();
    let mut groups = Vec::new();
    while groups.is_empty() || start.elapsed() < time {
        groups.push(way.group(n, calls).await?);
    }
    let elapsed = start.elapsed();
    let mut last: Vec<f64> = groups.iter().map(|g| ms(g.elapsed)).collect();
    let mut calls: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.calls.iter().map(|&c| ms(c)))
        .collect();
    Ok(RoundFigures {
        calls_per_sec: (groups.len() * n) as f64 / elapsed.as_secs_f64(),
        last_answer_ms: quantile(&mut last, 0.5),
        p99_call_ms: quantile(&mut calls, 0.99),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q` quantile by the nearest rank; the median of an even count is the mean of the middle two.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    if q == 0.5 && v.len() % 2 == 0 {
        let mid = v.len() / 2;
        return (v[mid - 1] + v[mid]) / 2.0;
    }
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    quantile(&mut v, 0.5)
}

async fn run(
    o: &Options,
    farm: SocketAddr,
    relay_rt: &tokio::runtime::Handle,
) -> Result<Vec<Series>, String> {
    let mut paths = vec![("direct".to_owned(), farm, farm)];
    if let (Some(h1), Some(h2)) = (o.nginx_h1, o.nginx_h2) {
        paths.push((format!("behind {}", o.proxy_label), h1, h2));
    }
    println!(
        "fair_bench: {} calls per group, {} interleaved rounds of {:.1} s per way, added RTT {:?} ms, farm at {farm}",
        o.n,
        o.rounds,
        o.round_time.as_secs_f64(),
        o.rtts
    );
    let mut results = Vec::new();
    for &calls in &o.calls {
        for (path, h1, h2) in &paths {
            for &rtt in &o.rtts {
                results.extend(measure_config(o, relay_rt, calls, path, (*h1, *h2), rtt).await?);
            }
        }
    }
    Ok(results)
}

/// The interleaved rounds of the three ways for one kind of calls, path and round-trip time.
async fn measure_config(
    o: &Options,
    relay_rt: &tokio::runtime::Handle,
    calls: Calls,
    path: &str,
    (h1, h2): (SocketAddr, SocketAddr),
    rtt: u64,
) -> Result<Vec<Series>, String> {
    let delay = Duration::from_millis(rtt);
    let (h1, relay1) = start_relay(relay_rt, h1, delay).await?;
    let (h2, relay2) = start_relay(relay_rt, h2, delay).await?;
    let mut ways = Vec::new();
    for kind in WayKind::ALL {
        let mut way = Way::open(kind, h1, h2, o.n, calls).await?;
        // Warm-up: connections (nginx's to the farm too) and first allocations.
        way.group(o.n, calls).await?;
        ways.push((kind, way));
    }
    let mut series: Vec<Series> = WayKind::ALL
        .iter()
        .map(|&way| Series {
            calls,
            path: path.to_owned(),
            rtt_ms: rtt,
            way,
            rounds: Vec::new(),
        })
        .collect();
    for _ in 0..o.rounds {
        for (i, (_, way)) in ways.iter_mut().enumerate() {
            series[i]
                .rounds
                .push(measure_round(way, o.n, calls, o.round_time).await?);
        }
    }
    // The ways' connections close as they drop; their relays' pipes end with them.
    drop(ways);
    relay1.abort();
    relay2.abort();
    eprintln!("done: {} calls, {path}, RTT {rtt} ms", calls.key());
    Ok(series)
}

/// The medians over the rounds of one way's figures and of their ratios to the batch's.
struct Summary {
    calls_per_sec: f64,
    last_answer_ms: f64,
    p99_call_ms: f64,
    calls_ratio: f64,
    last_ratio: f64,
    p99_ratio: f64,
}

fn summarise(series: &Series, batch: &Series) -> Summary {
    let figure = |f: fn(&RoundFigures) -> f64| median(series.rounds.iter().map(f).collect());
    let ratio = |f: fn(&RoundFigures) -> f64| {
        median(
            series
                .rounds
                .iter()
                .zip(&batch.rounds)
                .map(|(s, b)| f(s) / f(b))
                .collect(),
        )
    };
    Summary {
        calls_per_sec: figure(|r| r.calls_per_sec),
        last_answer_ms: figure(|r| r.last_answer_ms),
        p99_call_ms: figure(|r| r.p99_call_ms),
        calls_ratio: ratio(|r| r.calls_per_sec),
        last_ratio: ratio(|r| r.last_answer_ms),
        p99_ratio: ratio(|r| r.p99_call_ms),
    }
}

/// Writes the CSV files and returns the markdown table.
fn report(o: &Options, results: &[Series]) -> Result<String, String> {
    let mut table = String::new();
    let mut csv = String::from(
        "calls,path,rtt_ms,way,calls_per_sec,last_answer_ms,p99_call_ms,calls_per_sec_vs_batch,last_answer_vs_batch,p99_call_vs_batch,rounds\n",
    );
    let mut rounds_csv =
        String::from("calls,path,rtt_ms,way,round,calls_per_sec,last_answer_ms,p99_call_ms\n");
    table.push_str(
        "\n| calls | path | added RTT | way | calls/s | × batch | last answer (ms) | × batch | p99 call (ms) | × batch |\n\
         |---|---|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for config in results.chunks(WayKind::ALL.len()) {
        let batch = &config[0];
        for series in config {
            let s = summarise(series, batch);
            let _ = writeln!(
                table,
                "| {} | {} | {} ms | {} | {:.0} | {:.2} | {:.1} | {:.2} | {:.1} | {:.2} |",
                series.calls.key(),
                series.path,
                series.rtt_ms,
                series.way.name(),
                s.calls_per_sec,
                s.calls_ratio,
                s.last_answer_ms,
                s.last_ratio,
                s.p99_call_ms,
                s.p99_ratio,
            );
            let _ = writeln!(
                csv,
                "{},{},{},{},{:.1},{:.3},{:.3},{:.4},{:.4},{:.4},{}",
                series.calls.key(),
                series.path,
                series.rtt_ms,
                series.way.key(),
                s.calls_per_sec,
                s.last_answer_ms,
                s.p99_call_ms,
                s.calls_ratio,
                s.last_ratio,
                s.p99_ratio,
                series.rounds.len()
            );
            for (i, r) in series.rounds.iter().enumerate() {
                let _ = writeln!(
                    rounds_csv,
                    "{},{},{},{},{i},{:.1},{:.3},{:.3}",
                    series.calls.key(),
                    series.path,
                    series.rtt_ms,
                    series.way.key(),
                    r.calls_per_sec,
                    r.last_answer_ms,
                    r.p99_call_ms
                );
            }
        }
    }
    let _ = write!(
        table,
        "\nRatios are the median over {} rounds of each round's figure ÷ the batch's in the same \
         round; above 1 is more calls/s, or a longer time, than the batch.",
        o.rounds
    );
    std::fs::create_dir_all(&o.out)
        .and_then(|()| std::fs::write(o.out.join("results.csv"), csv))
        .and_then(|()| std::fs::write(o.out.join("rounds.csv"), rounds_csv))
        .map_err(|e| format!("cannot write the CSV under {}: {e}", o.out.display()))?;
    Ok(table)
}
