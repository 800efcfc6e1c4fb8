//! The layer where production differs from a test set-up: behind a proxy that rewrites `Host`,
//! beside tower-http's compression and body-limit layers, asked `OPTIONS` by a browser, and with
//! handlers that read their `BatchContext` through axum's extractor.

mod support;
use support::serve;

use std::net::SocketAddr;

use axum::extract::Request;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::Method;
use http_batch::{BatchContext, BatchLayer};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{json, Value};
use support::{batch, parts, send};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;

/// An app that answers what it saw: its `Host`, its `Accept-Encoding`, its path.
fn echo_api() -> Router {
    async fn echo(req: Request) -> axum::Json<Value> {
        let h = |n: &str| {
            req.headers()
                .get(n)
                .map(|v| v.to_str().unwrap_or("").to_owned())
        };
        axum::Json(json!({
            "host": h("host"),
            "accept_encoding": h("accept-encoding"),
            "path": req.uri().path(),
            // Long enough that a compression layer would compress it.
            "padding": "x".repeat(2048),
        }))
    }
    async fn context(ctx: Option<BatchContext>) -> String {
        match ctx {
            Some(ctx) => format!("item {} of {}", ctx.index(), ctx.total()),
            None => "not in a batch".to_owned(),
        }
    }
    async fn batch_only(ctx: BatchContext) -> String {
        format!("item {}", ctx.index())
    }
    Router::new()
        .route("/echo", get(echo))
        .route("/context", get(context))
        .route("/batch-only", get(batch_only))
        .route(
            "/upload",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
}

fn get_item(id: &str, target: &str, headers: &str) -> (String, String) {
    (
        format!("<{id}>"),
        format!("GET {target} HTTP/1.1\r\n{headers}\r\n"),
    )
}

async fn run(
    addr: SocketAddr,
    items: &[(String, String)],
    headers: &[(&str, &str)],
) -> Vec<support::Part> {
    let refs: Vec<(&str, &str)> = items
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let body = batch("b", &refs);
    let raw = support::post(addr, "/batch", "multipart/mixed; boundary=b", body, headers).await;
    parts(&raw).await
}

/// Behind a reverse proxy the batch arrives as `Host: backend:port` while clients (Google's
/// Python client among them) write the public host into every part: the item runs under the
/// batch's own origin, its `Host` replaced, not refused.
#[tokio::test]
async fn an_items_host_is_replaced_by_the_batchs() {
    let addr = serve(BatchLayer::new().wrap_router(echo_api())).await;
    let answers = run(
        addr,
        &[
            get_item("public", "/echo", "Host: api.example.com\r\n"),
            get_item("none", "/echo", ""),
        ],
        &[],
    )
    .await;
    for a in &answers {
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.json()["host"], addr.to_string());
    }
}

/// Absolute targets keep the same-origin rule. A missing port is the scheme's default port, not
/// any port; a configured public origin is accepted; a forwarded host only when trusted.
#[tokio::test]
async fn absolute_targets_must_name_this_origin() {
    let layer = BatchLayer::new().public_origin("https://api.example.com");
    let addr = serve(layer.wrap_router(echo_api())).await;
    let port = addr.port();
    let answers = run(
        addr,
        &[
            get_item("own", &format!("http://127.0.0.1:{port}/echo"), ""),
            // Port 80, the default of http, is not the batch's port.
            get_item("default-port", "http://127.0.0.1/echo", ""),
            get_item("public", "https://api.example.com/echo", ""),
            get_item("public-443", "https://api.example.com:443/echo", ""),
            get_item("public-other-port", "https://api.example.com:8443/echo", ""),
            get_item("public-wrong-scheme", "http://api.example.com/echo", ""),
            get_item("evil", "https://evil.example/echo", ""),
            get_item("forwarded", "https://front.example/echo", ""),
        ],
        &[
            ("x-forwarded-host", "front.example"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![200, 400, 200, 200, 400, 400, 400, 400]);
    assert!(String::from_utf8_lossy(&answers[6].body).contains("another host"));
    // Where only the port differs, the refusal says so.
    let default_port = String::from_utf8_lossy(&answers[1].body).into_owned();
    assert!(
        default_port.contains(&format!("port 80, while this batch came to port {port}")),
        "{default_port}"
    );

    // Trusted, the proxy's forwarded host is this origin too; a value the client put ahead of
    // the proxy's own is not believed.
    let layer = BatchLayer::new().trust_forwarded_headers(true);
    let addr = serve(layer.wrap_router(echo_api())).await;
    let answers = run(
        addr,
        &[
            get_item("forwarded", "https://front.example/echo", ""),
            get_item("client-said", "https://evil.example/echo", ""),
        ],
        &[
            ("x-forwarded-host", "evil.example, front.example"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![200, 400]);
}

/// The Google Python client sends `accept-encoding: gzip, deflate` inside every part and reads
/// the whole batch as text: with a `CompressionLayer` inside the batch layer, items must still
/// come back uncompressed, whatever they asked for.
#[tokio::test]
async fn parts_are_never_compressed() {
    let api = echo_api().layer(CompressionLayer::new());
    let addr = serve(BatchLayer::new().wrap_router(api)).await;
    let answers = run(
        addr,
        &[get_item("1", "/echo", "Accept-Encoding: gzip, deflate\r\n")],
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(answers[0].status, 200);
    assert!(answers[0].headers.get("content-encoding").is_none());
    let seen = answers[0].json();
    assert_eq!(seen["accept_encoding"], Value::Null, "{seen}");
    assert_eq!(seen["padding"].as_str().map(str::len), Some(2048));
}

/// An outer `RequestBodyLimitLayer` and a chunked body: the limit's error arrives wrapped by
/// axum's `Body`, and is still answered 413, not 400.
#[tokio::test]
async fn an_outer_body_limit_is_answered_413() {
    let app = BatchLayer::new()
        .wrap_router(echo_api())
        .layer(RequestBodyLimitLayer::new(1024));
    let addr = serve(app).await;
    let body = batch("b", &[("<1>", "GET /echo HTTP/1.1\r\n\r\n")]);
    let big = format!("{body}{}", " ".repeat(4096));
    // Chunked: no Content-Length for the limit layer to refuse up front.
    let chunks = futures_util::stream::iter(
        big.into_bytes()
            .chunks(512)
            .map(|c| {
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::copy_from_slice(c)))
            })
            .collect::<Vec<_>>(),
    );
    let req = Request::post(format!("http://{addr}/batch"))
        .header("content-type", "multipart/mixed; boundary=b")
        .body(StreamBody::new(chunks))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let res = client.request(req).await.unwrap();
    let status = res.status();
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&text));
    // The limit that refused it is the outer one, whose size the layer does not know: the
    // answer must not quote the layer's own (16 MiB), which the body was well under.
    let error: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(error["error"]["reason"], "BODY_TOO_LARGE", "{error}");
    assert!(error["error"].get("limit").is_none(), "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("outside the batch endpoint"), "{message}");
}

/// A compressed batch body is refused with a 415 that says why and names the coding accepted
/// (RFC 7694), not with a framing error; with tower-http's `RequestDecompressionLayer` outside
/// the batch layer, the same body is decoded and its items run.
#[tokio::test]
async fn a_compressed_batch_body_is_refused_in_words_or_decoded_outside() {
    use std::io::Write;

    let body = batch(
        "b",
        &[(
            "<1>",
            "POST /upload HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        )],
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let gzipped = gz.finish().unwrap();
    let headers = [("content-encoding", "gzip")];
    let ct = "multipart/mixed; boundary=b";

    let plain = serve(BatchLayer::new().wrap_router(echo_api())).await;
    let raw = support::post(plain, "/batch", ct, gzipped.clone(), &headers).await;
    assert_eq!(raw.status, 415, "{}", raw.text());
    assert_eq!(raw.headers["accept-encoding"], "identity");
    let error = &raw.json()["error"];
    assert_eq!(error["reason"], "UNSUPPORTED_CONTENT_ENCODING", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("`gzip`"),
        "{error}"
    );
    // `identity` is no coding at all.
    let raw = support::post(
        plain,
        "/batch",
        ct,
        body.clone(),
        &[("content-encoding", "identity")],
    )
    .await;
    assert_eq!(parts(&raw).await[0].body.as_ref(), b"5");

    let decoding = serve(
        BatchLayer::new()
            .wrap_router(echo_api())
            .layer(tower_http::decompression::RequestDecompressionLayer::new()),
    )
    .await;
    let raw = support::post(decoding, "/batch", ct, gzipped, &headers).await;
    let answers = parts(&raw).await;
    assert_eq!(
        (answers[0].status, answers[0].body.as_ref()),
        (200, &b"5"[..])
    );
}

/// `OPTIONS` on a batch path says what may be posted there and the limits to keep to.
#[tokio::test]
async fn options_advertises_the_batch_endpoint() {
    let layer = BatchLayer::new().max_items(50).max_body_bytes(1 << 20);
    let addr = serve(layer.wrap_router(echo_api())).await;
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri(format!("http://{addr}/batch"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let raw = send(req).await;
    assert_eq!(raw.status, 204);
    assert_eq!(raw.headers["allow"], "POST, OPTIONS");
    assert_eq!(raw.headers["batch-max-items"], "50");
    assert_eq!(raw.headers["batch-max-body-bytes"], (1 << 20).to_string());
    let accept = raw.headers["accept-post"].to_str().unwrap();
    assert!(accept.contains("multipart/mixed"), "{accept}");
    // Other methods are still refused.
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{addr}/batch"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.status, 405);
}

/// `BatchContext` is an axum extractor; `Option<BatchContext>` is `None` outside a batch, and a
/// handler that needs one answers 400 (not 500) when called directly.
#[tokio::test]
async fn batch_context_extractor() {
    let addr = serve(BatchLayer::new().wrap_router(echo_api())).await;
    let direct = |path: &str| {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(req)
    };
    let raw = direct("/context").await;
    assert_eq!(
        (raw.status.as_u16(), raw.text().as_str()),
        (200, "not in a batch")
    );
    let raw = direct("/batch-only").await;
    assert_eq!(raw.status, 400);
    let answers = run(
        addr,
        &[
            get_item("1", "/context", ""),
            get_item("2", "/batch-only", ""),
        ],
        &[],
    )
    .await;
    assert_eq!(answers[0].body, "item 0 of 2");
    assert_eq!(answers[1].body, "item 1");
}

/// The defaults bound a batch in time: an outer `TimeoutLayer` cannot, since the answer's head
/// goes out at once.
#[test]
fn timeouts_have_finite_defaults() {
    let shown = format!("{:?}", BatchLayer::new());
    assert!(shown.contains("batch_timeout: Some(60s)"), "{shown}");
}

/// A part whose own headers cannot be read (here: longer than the limit) is answered under its
/// `Content-ID` all the same: Google's Python client matches answers by it, and fails the whole
/// batch on an answer without one.
#[tokio::test]
async fn an_unreadable_part_keeps_its_content_id() {
    let addr = serve(
        BatchLayer::new()
            .max_header_bytes(4096)
            .wrap_router(echo_api()),
    )
    .await;
    let long = "x".repeat(8192);
    let body = format!(
        "--b\r\nContent-Type: application/http\r\nContent-ID: <7>\r\nX-Long: {long}\r\n\r\n\
         GET /echo HTTP/1.1\r\n\r\n\r\n\
         --b\r\nContent-Type: application/http\r\nContent-ID: <8>\r\n\r\nGET /echo HTTP/1.1\r\n\r\n\r\n\
         --b--\r\n"
    );
    let raw = support::post(addr, "/batch", "multipart/mixed; boundary=b", body, &[]).await;
    let answers = parts(&raw).await;
    assert_eq!(
        answers[0].status,
        400,
        "{}",
        String::from_utf8_lossy(&answers[0].body)
    );
    assert_eq!(answers[0].content_id.as_deref(), Some("<response-7>"));
    assert_eq!(answers[1].status, 200);
    assert_eq!(answers[1].content_id.as_deref(), Some("<response-8>"));
}

/// Sends `request` as raw bytes and reads the whole answer (the request says
/// `Connection: close`).
async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await
    .expect("answered in time")
    .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Two `Host` headers on the batch: which one the origin checks should believe is ambiguous,
/// so the batch is refused in words (RFC 9112 allows one).
#[tokio::test]
async fn a_batch_with_two_hosts_is_refused() {
    let addr = serve(BatchLayer::new().wrap_router(echo_api())).await;
    let body = batch("b", &[("<1>", "GET /echo HTTP/1.1\r\n\r\n")]);
    let answer = raw_exchange(
        addr,
        &format!(
            "POST /batch HTTP/1.1\r\nHost: {addr}\r\nHost: evil.example\r\nConnection: close\r\n\
             Content-Type: multipart/mixed; boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("MALFORMED_BATCH") && answer.contains("2 Host headers"),
        "{answer}"
    );
}

/// An absolute-form request line names the batch's origin, whatever `Host` says (RFC 9112,
/// 3.2.2): items run under that authority, and absolute item targets are checked against it.
#[tokio::test]
async fn an_absolute_form_batch_line_names_the_origin() {
    let addr = serve(BatchLayer::new().wrap_router(echo_api())).await;
    let body = batch(
        "b",
        &[
            ("<1>", &format!("GET http://{addr}/echo HTTP/1.1\r\n\r\n")),
            ("<2>", "GET http://other.example/echo HTTP/1.1\r\n\r\n"),
        ],
    );
    let answer = raw_exchange(
        addr,
        &format!(
            "POST http://{addr}/batch HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\
             Content-Type: multipart/mixed; boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!("\"host\":\"{addr}\"")), "{answer}");
    assert!(answer.contains("HTTP/1.1 400 Bad Request"), "{answer}");
    assert!(
        answer.contains("`http://other.example/echo` names another host"),
        "{answer}"
    );
}
