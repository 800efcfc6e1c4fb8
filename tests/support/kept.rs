//! Helpers for the tests of asynchronous batches and idempotency keys: a small app whose handlers
//! count what they ran, served as two instances sharing one answer store, and a throwaway
//! `redis-server` on a loopback port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::HeaderMap;
use http_batch::store::AnswerStore;
use http_batch::{BatchLayer, BatchRoute, Idempotency, RespondAsync};

use super::Raw;

/// How many times the app's handlers ran.
#[derive(Clone, Default)]
pub struct Ran(pub Arc<AtomicUsize>);

impl Ran {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

async fn slow(State(ran): State<Ran>, Path(ms): Path<u64>) -> String {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let n = ran.0.fetch_add(1, Ordering::SeqCst) + 1;
    format!("{{\"slept\":{ms},\"ran\":{n}}}")
}

async fn write(State(ran): State<Ran>, body: Bytes) -> String {
    let n = ran.0.fetch_add(1, Ordering::SeqCst) + 1;
    format!("{{\"written\":{},\"ran\":{n}}}", body.len())
}

/// The app: `GET /slow/{ms}` and `POST /write`, each counted in `ran`.
pub fn app(ran: Ran, layer: BatchLayer) -> Router {
    let router = Router::new()
        .route("/slow/{ms}", get(slow))
        .route("/write", post(write))
        .with_state(ran);
    layer.wrap_router(router).into()
}

/// A layer with both features at `/batch`, one item at a time, over `store`.
pub fn layer(store: Arc<dyn AnswerStore>, respond: RespondAsync, keys: Idempotency) -> BatchLayer {
    BatchLayer::new()
        .route(
            BatchRoute::path("/batch")
                .respond_async(respond)
                .idempotency(keys),
        )
        .concurrency(1)
        .store(store)
        .store_timeout(Duration::from_millis(500))
}

/// Two instances of the app on two ports over one store; the handler count they share.
pub async fn two(
    store: Arc<dyn AnswerStore>,
    respond: RespondAsync,
    keys: Idempotency,
) -> (SocketAddr, SocketAddr, Ran) {
    let ran = Ran::default();
    let a = super::serve(app(
        ran.clone(),
        layer(store.clone(), respond.clone(), keys.clone()),
    ))
    .await;
    let b = super::serve(app(ran.clone(), layer(store, respond, keys))).await;
    (a, b, ran)
}

/// A multipart batch of GET/POST items.
pub fn body(items: &[&str]) -> String {
    let items: Vec<(String, String)> = items
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("<i{i}>"), r.to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = items
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    super::batch("b", &refs)
}

pub async fn submit(addr: SocketAddr, body: &str, headers: &[(&str, &str)]) -> Raw {
    super::post(
        addr,
        "/batch",
        "multipart/mixed; boundary=b",
        body.to_owned(),
        headers,
    )
    .await
}

pub async fn get_monitor(addr: SocketAddr, location: &str, headers: &[(&str, &str)]) -> Raw {
    let mut req = http::Request::get(format!("http://{addr}{location}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    super::send(req.body(http_body_util::Full::new(Bytes::new())).unwrap()).await
}

pub async fn delete_monitor(addr: SocketAddr, location: &str, headers: &[(&str, &str)]) -> Raw {
    let mut req = http::Request::delete(format!("http://{addr}{location}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    super::send(req.body(http_body_util::Full::new(Bytes::new())).unwrap()).await
}

/// Polls until the monitor stops answering `202`, within `within`.
pub async fn poll_done(
    addr: SocketAddr,
    location: &str,
    headers: &[(&str, &str)],
    within: Duration,
) -> Raw {
    let start = Instant::now();
    loop {
        let raw = get_monitor(addr, location, headers).await;
        if raw.status != 202 {
            return raw;
        }
        assert!(
            start.elapsed() < within,
            "the batch did not finish in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The final answer inside a monitor's `application/http` body, read with httparse.
pub fn unwrap_http(raw: &Raw) -> Raw {
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!(raw.headers["content-type"], "application/http");
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(at) = res.parse(&raw.body).expect("an HTTP/1.1 message") else {
        panic!("incomplete message: {}", raw.text())
    };
    let status = res.code.expect("status");
    assert_eq!(
        raw.headers["asyncresult"].to_str().unwrap(),
        status.to_string(),
        "AsyncResult names the final status"
    );
    let mut map = HeaderMap::new();
    for h in res.headers.iter() {
        map.append(
            http::HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(h.value).unwrap(),
        );
    }
    let body = raw.body.slice(at..);
    let len: usize = map["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(len, body.len(), "Content-Length of the final answer");
    Raw {
        status: http::StatusCode::from_u16(status).unwrap(),
        headers: map,
        body,
    }
}

/// A throwaway `redis-server` on a loopback port, its files under `target/`, stopped by its
/// process id when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            let root = env!("CARGO_MANIFEST_DIR");
            let status = Command::new("bash")
                .arg(format!("{root}/scripts/system-deps.sh"))
                .arg("redis")
                .status()
                .expect("run scripts/system-deps.sh");
            assert!(
                status.success(),
                "redis-server is missing and could not be installed"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child: Some(child),
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (by its process id), as a store that goes down.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A store that never answers: every call waits forever.
pub struct Stalled;

impl AnswerStore for Stalled {
    fn insert_new(
        &self,
        _: &str,
        _: Bytes,
        _: Duration,
    ) -> http_batch::store::StoreFuture<'_, Option<Bytes>> {
        Box::pin(std::future::pending())
    }

    fn put(&self, _: &str, _: Bytes, _: Duration) -> http_batch::store::StoreFuture<'_, ()> {
        Box::pin(std::future::pending())
    }

    fn get(&self, _: &str) -> http_batch::store::StoreFuture<'_, Option<Bytes>> {
        Box::pin(std::future::pending())
    }

    fn remove(&self, _: &str) -> http_batch::store::StoreFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}
