//! Both mounting styles from the design, each served for real: wrapping the whole app, and
//! `route_service` on an axum Router; and a plain hyper-util server with no axum at all.

mod support;

use std::convert::Infallible;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_batch::hyper::{BatchService, Body};
use http_batch::{Batch, BatchLayer};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{batch, parts, post_batch};
use tower::Layer;

fn api() -> Router {
    Router::new()
        .route("/hello/{name}", get(|axum::extract::Path(n): axum::extract::Path<String>| async move { format!("hello {n}") }))
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn two_items() -> String {
    batch(
        "b",
        &[
            ("<1>", "GET /hello/ann HTTP/1.1"),
            ("<2>", "GET /hello/bob HTTP/1.1"),
        ],
    )
}

#[tokio::test]
async fn route_service_with_axum_serve() {
    let app = api().route_service("/batch", Batch::new(api()));
    let addr = serve(app).await;
    let p = parts(&post_batch(addr, "/batch", "b", two_items()).await).await;
    assert_eq!(&p[0].body[..], b"hello ann");
    assert_eq!(&p[1].body[..], b"hello bob");
    // The batch route is only a route: the API around it is unchanged.
    let raw = support::send(
        Request::get(format!("http://{addr}/hello/cy"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(raw.text(), "hello cy");
}

#[tokio::test]
async fn route_service_cannot_nest_batches() {
    let app = api().route_service("/batch", Batch::new(api()));
    let addr = serve(app).await;
    let inner = two_items();
    let nested =
        format!("POST /batch HTTP/1.1\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{inner}");
    let p = parts(
        &post_batch(
            addr,
            "/batch",
            "o",
            batch("o", &[("<n>", &nested), ("<ok>", "GET /hello/z")]),
        )
        .await,
    )
    .await;
    assert_eq!(p[0].status, 400, "{}", String::from_utf8_lossy(&p[0].body));
    assert_eq!(p[1].status, 200);
}

#[tokio::test]
async fn route_service_at_any_path() {
    let app = api().route_service("/api/v2/batch", BatchLayer::new().any_path().layer(api()));
    let addr = serve(app).await;
    let p = parts(&post_batch(addr, "/api/v2/batch", "b", two_items()).await).await;
    assert_eq!(&p[1].body[..], b"hello bob");
}

#[tokio::test]
async fn wrap_router_with_axum_serve() {
    let addr = serve(BatchLayer::new().path("/b").wrap_router(api())).await;
    let p = parts(&post_batch(addr, "/b", "b", two_items()).await).await;
    assert_eq!(&p[0].body[..], b"hello ann");
}

async fn plain(req: Request<Body>) -> Result<Response<Full<Bytes>>, Infallible> {
    let who = req.uri().path().trim_start_matches("/hello/").to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Ok(Response::new(Full::from(format!("hi {who} {auth}"))))
}

#[tokio::test]
async fn plain_hyper_util_server() {
    let batched = BatchLayer::new().layer(tower::service_fn(plain));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = BatchService::new(batched.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let raw = support::post(
        addr,
        "/batch",
        "multipart/mixed; boundary=b",
        two_items(),
        &[("authorization", "Bearer t")],
    )
    .await;
    let p = parts(&raw).await;
    assert_eq!(&p[0].body[..], b"hi ann Bearer t");
    assert_eq!(&p[1].body[..], b"hi bob Bearer t");
    let raw = support::send(
        Request::get(format!("http://{addr}/hello/x"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(raw.text(), "hi x ");
}

/// Google's per-API form `/batch/{api}/{version}` as a layer pattern: items keep their own path
/// parameters. (Mounted with `route_service` at such a path instead, axum's private path
/// parameters of the batch route would reach the items, which the layer cannot remove; the
/// README says to use a pattern here.)
#[tokio::test]
async fn pattern_path_with_wrap_router() {
    let app = BatchLayer::new()
        .path("/batch/{api}/{version}")
        .wrap_router(api());
    let addr = serve(app).await;
    let p = parts(&post_batch(addr, "/batch/farm/v1", "b", two_items()).await).await;
    assert_eq!(p[0].status, 200, "{}", String::from_utf8_lossy(&p[0].body));
    assert_eq!(&p[0].body[..], b"hello ann");
    assert_eq!(&p[1].body[..], b"hello bob");
}

/// `Router::layer(BatchLayer::new())` compiles, but axum applies it to each route and the
/// fallback *after* routing: a batch reaches the layer only through the fallback, whose inner
/// service is the fallback handler, not the router, so every item would be answered 404. The
/// layer sees where it was put and says so, loudly, instead of running the items.
#[tokio::test]
async fn router_layer_is_refused_loudly() {
    let app = api().layer(BatchLayer::new());
    let addr = serve(app).await;
    let raw = post_batch(addr, "/batch", "b", two_items()).await;
    assert_eq!(raw.status, 500, "{}", raw.text());
    let text = raw.text();
    assert!(text.contains("wrap_router"), "{text}");
    assert!(text.contains("MOUNTED_INSIDE_ROUTER"), "{text}");
    // The API itself still works.
    let raw = support::send(
        Request::get(format!("http://{addr}/hello/cy"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(raw.text(), "hello cy");
}

/// The ordinary tower composition, `ServiceBuilder` with tower-http layers around the batch
/// layer, served by `axum::serve` (through a `Router` whose fallback is the composed service, as
/// the README shows) and by the hyper-util server (through `BatchService`).
#[tokio::test]
async fn service_builder_composition_with_both_servers() {
    use tower::ServiceBuilder;
    use tower_http::trace::TraceLayer;

    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(BatchLayer::new())
        .service(api());
    let addr = serve(Router::new().fallback_service(svc)).await;
    let p = parts(&post_batch(addr, "/batch", "b", two_items()).await).await;
    assert_eq!(&p[0].body[..], b"hello ann");
    assert_eq!(&p[1].body[..], b"hello bob");

    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(BatchLayer::new())
        .service(tower::service_fn(plain));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = BatchService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let p = parts(&post_batch(addr, "/batch", "b", two_items()).await).await;
    assert_eq!(&p[0].body[..], b"hi ann ");
}
