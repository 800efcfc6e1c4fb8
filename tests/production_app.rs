//! A new app that follows the README: the farm API among tower-http's Trace, Compression, Cors,
//! Timeout and RequestBodyLimit layers and a bearer-token middleware
//! (`examples/production`). It is tried with curl-style requests, and with Google's own Python
//! client behind a loopback proxy that rewrites `Host` and the port as nginx's default
//! `proxy_pass` does.

#[path = "../examples/production/app.rs"]
mod production;
mod support;

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{batch, send};

const TOKEN: &str = "prod-s3cret";

fn items() -> String {
    batch(
        "b",
        &[
            (
                "<1>",
                "GET /farm/v1/animals/pony HTTP/1.1\r\nHost: api.example.com\r\n",
            ),
            ("<2>", "GET /farm/v1/animals/unicorn HTTP/1.1\r\n"),
            (
                "<3>",
                "GET /farm/v1/farmers HTTP/1.1\r\nAccept-Encoding: gzip\r\n",
            ),
        ],
    )
}

fn batch_request(
    addr: SocketAddr,
    auth: Option<&str>,
    extra: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut req = Request::post(format!("http://{addr}/batch/farm/v1"))
        .header("content-type", "multipart/mixed; boundary=b");
    if let Some(token) = auth {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::from(items()))).unwrap()
}

#[tokio::test]
async fn the_readme_app_serves_batches_among_tower_http_layers() {
    let addr = production::spawn(TOKEN).await;

    // The outer token reaches every item; an item's public `Host` is replaced, not refused.
    let raw = send(batch_request(addr, Some(TOKEN), &[])).await;
    let answers = support::parts(&raw).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![200, 404, 200]);
    for answer in &answers {
        assert!(answer.headers.get("content-encoding").is_none());
        assert!(answer.headers.get("access-control-allow-origin").is_none());
    }

    // Without the token, the auth middleware inside refuses every item, one by one.
    let raw = send(batch_request(addr, None, &[])).await;
    let statuses: Vec<u16> = support::parts(&raw)
        .await
        .iter()
        .map(|a| a.status)
        .collect();
    assert_eq!(statuses, vec![401, 401, 401]);

    // Compression applies to the whole answer, never to the parts inside it.
    let raw = send(batch_request(
        addr,
        Some(TOKEN),
        &[("accept-encoding", "gzip")],
    ))
    .await;
    assert_eq!(raw.headers["content-encoding"], "gzip");
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(&raw.body[..])
        .read_to_end(&mut text)
        .expect("gzip");
    let plain = support::Raw {
        status: raw.status,
        headers: {
            let mut h = raw.headers.clone();
            h.remove("content-encoding");
            h
        },
        body: Bytes::from(text),
    };
    let statuses: Vec<u16> = support::parts(&plain)
        .await
        .iter()
        .map(|a| a.status)
        .collect();
    assert_eq!(statuses, vec![200, 404, 200]);

    // A browser's preflight for the batch path is answered by CORS, outside the batch layer.
    let preflight = Request::options(format!("http://{addr}/batch/farm/v1"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let raw = send(preflight).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.headers["access-control-allow-origin"], "*");

    // A chunked body over the outer limit is answered 413.
    let big = format!("{}{}", items(), " ".repeat(production::BODY_LIMIT + 1));
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = big
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let req = Request::post(format!("http://{addr}/batch/farm/v1"))
        .header("content-type", "multipart/mixed; boundary=b")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = Client::builder(TokioExecutor::new())
        .build_http()
        .request(req)
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

/// A loopback reverse proxy that forwards every request to `backend`, with `Host` rewritten to
/// the backend's address, as nginx's `proxy_pass http://backend;` does by default.
async fn rewriting_proxy(backend: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let client = client.clone();
                    async move {
                        let pq = req
                            .uri()
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .to_owned();
                        *req.uri_mut() = format!("http://{backend}{pq}").parse().unwrap();
                        req.headers_mut()
                            .insert("host", backend.to_string().parse().unwrap());
                        req.headers_mut()
                            .insert("x-forwarded-host", addr.to_string().parse().unwrap());
                        let res: Response<Incoming> = client.request(req).await.unwrap();
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Google's Python client, pointed at the proxy: it writes the proxy's (public) host into every
/// part, while the batch reaches the app as `Host: <backend>`. Every scenario must pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_python_client_behind_a_rewriting_proxy() {
    let backend = production::spawn(TOKEN).await;
    let proxy = rewriting_proxy(backend).await;
    assert_ne!(proxy.port(), backend.port());
    let out = tokio::process::Command::new("bash")
        .arg(root().join("scripts/python-venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run scripts/python-venv.sh");
    assert!(out.status.success(), "python-venv.sh failed");
    let py = String::from_utf8(out.stdout).unwrap();
    let py = py.lines().last().expect("python path").trim().to_owned();
    let out = tokio::process::Command::new(py)
        .arg(root().join("tests/python/google_batch.py"))
        .arg(proxy.to_string())
        .arg("--token")
        .arg(TOKEN)
        .env_remove("FARM_TOKEN")
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run google_batch.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "google_batch.py failed behind the proxy:\n{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let scenarios = report["scenarios"].as_object().expect("scenarios");
    for name in ["basic", "conditional", "inherit", "auth_outer", "auth_part"] {
        assert!(
            scenarios.contains_key(name),
            "scenario {name} missing: {report:#}"
        );
    }
}
