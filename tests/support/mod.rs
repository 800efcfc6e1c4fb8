//! Shared helpers for the integration tests: a real HTTP client, batch builders, and a strict
//! reader of batch responses (multer, which only accepts CRLF multipart).
#![allow(dead_code)]

pub mod counting;
pub mod kept;
pub mod odata;
pub mod postgres;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A raw HTTP response: status, headers, whole body.
#[derive(Debug)]
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Raw {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Serves `app` with `axum::serve` on a fresh loopback port, in a task; its address.
pub async fn serve(app: impl Into<axum::Router>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app: axum::Router = app.into();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// Sends one request over a real socket.
pub async fn send(req: Request<Full<Bytes>>) -> Raw {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let res: Response<hyper::body::Incoming> = client.request(req).await.expect("request failed");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Raw {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// POSTs `body` as a multipart batch with `boundary` to `path`.
pub async fn post_batch(
    addr: SocketAddr,
    path: &str,
    boundary: &str,
    body: impl Into<Bytes>,
) -> Raw {
    post(
        addr,
        path,
        &format!("multipart/mixed; boundary={boundary}"),
        body,
        &[],
    )
    .await
}

pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Raw {
    let mut req =
        Request::post(format!("http://{addr}{path}")).header("content-type", content_type);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::new(body.into())).unwrap()).await
}

/// Builds a Google-style batch body: each item is (content id, nested request text). Uses CRLF.
pub fn batch(boundary: &str, items: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (id, req) in items {
        s.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/http\r\n"
        ));
        if !id.is_empty() {
            s.push_str(&format!("Content-ID: {id}\r\n"));
        }
        s.push_str("\r\n");
        s.push_str(req);
        s.push_str("\r\n");
    }
    s.push_str(&format!("--{boundary}--\r\n"));
    s
}

/// One answered item, read strictly.
#[derive(Debug)]
pub struct Part {
    pub content_id: Option<String>,
    pub status: u16,
    pub reason: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Part {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "part body not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads a batch response with multer (strict CRLF framing) and a strict nested-response reader:
/// panics on anything that is not canonical.
pub async fn parts(raw: &Raw) -> Vec<Part> {
    assert_eq!(raw.status, 200, "batch status; body: {}", raw.text());
    let ct = raw.headers["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let boundary = ct
        .strip_prefix("multipart/mixed; boundary=")
        .unwrap()
        .to_owned();
    assert!(boundary
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    assert!(
        raw.body.starts_with(format!("--{boundary}\r\n").as_bytes()),
        "preamble present"
    );
    assert!(
        raw.body.ends_with(format!("--{boundary}--\r\n").as_bytes()),
        "epilogue present"
    );
    let stream = futures_util::stream::once({
        let b = raw.body.clone();
        async move { Ok::<_, std::io::Error>(b) }
    });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = mp.next_field().await.expect("multer: strict multipart") {
        assert_eq!(field.headers()["content-type"], "application/http");
        let content_id = field
            .headers()
            .get("content-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = field.bytes().await.expect("field bytes");
        out.push(strict_nested(content_id, &body));
    }
    out
}

fn strict_nested(content_id: Option<String>, raw: &[u8]) -> Part {
    let text_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("nested response head ends with CRLF CRLF");
    let head = std::str::from_utf8(&raw[..text_end]).expect("ASCII head");
    assert!(
        !head.contains('\n') || head.split("\r\n").all(|l| !l.contains('\n')),
        "bare LF in head"
    );
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut words = status_line.splitn(3, ' ');
    assert_eq!(words.next(), Some("HTTP/1.1"), "{status_line}");
    let status: u16 = words.next().unwrap().parse().unwrap();
    let reason = words.next().expect("reason phrase").to_owned();
    assert!(!reason.is_empty());
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("header line {line:?}"));
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    assert!(!headers.is_empty(), "every nested response has a header");
    let body = Bytes::copy_from_slice(&raw[text_end + 4..]);
    let cl: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(cl, body.len(), "Content-Length matches the nested body");
    Part {
        content_id,
        status,
        reason,
        headers,
        body,
    }
}
