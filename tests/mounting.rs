//! Both mounting styles from the design, each served for real: wrapping the whole app, and
//! `route_service` on an axum Router; and a plain hyper-util server with no axum at all.

mod support;
use support::serve;

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

/// What `wrap_router` returns goes to `axum::serve` as it is, with no conversion.
#[tokio::test]
async fn batch_router_goes_to_axum_serve_as_it_is() {
    let app = BatchLayer::new().wrap_router(api());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let p = parts(&post_batch(addr, "/batch", "b", two_items()).await).await;
    assert_eq!(&p[0].body[..], b"hello ann");
    assert_eq!(&p[1].body[..], b"hello bob");
}

async fn get_text(addr: std::net::SocketAddr, path: &str) -> support::Raw {
    support::send(
        Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
}

/// A fallback added after wrapping answers unknown paths, both called directly and named by a
/// batch item, and the batch path stays the layer's.
#[tokio::test]
async fn fallback_after_wrapping_keeps_the_batch_service() {
    let app = BatchLayer::new()
        .wrap_router(api())
        .fallback(|| async { (http::StatusCode::IM_A_TEAPOT, "no such call") });
    let addr = serve(app).await;
    let body = batch(
        "b",
        &[
            ("<1>", "GET /hello/ann HTTP/1.1"),
            ("<2>", "GET /nowhere HTTP/1.1"),
        ],
    );
    let p = parts(&post_batch(addr, "/batch", "b", body).await).await;
    assert_eq!((p[0].status, &p[0].body[..]), (200, &b"hello ann"[..]));
    assert_eq!((p[1].status, &p[1].body[..]), (418, &b"no such call"[..]));

    let direct = get_text(addr, "/nowhere").await;
    assert_eq!(
        (direct.status.as_u16(), direct.text().as_str()),
        (418, "no such call")
    );
    assert_eq!(get_text(addr, "/hello/cy").await.text(), "hello cy");
    // The batch path called without a batch is still the layer's answer, not the fallback's.
    let not_batch = support::post(addr, "/batch", "text/plain", "x", &[]).await;
    assert_eq!(not_batch.status, 415, "{}", not_batch.text());
}

/// Routes, nested routers and merged routers added after wrapping join the API: each answers a
/// direct call and a batch item.
#[tokio::test]
async fn routes_after_wrapping_join_the_api() {
    let app = BatchLayer::new()
        .wrap_router(api())
        .route("/extra", get(|| async { "extra" }))
        .nest("/v2", api())
        .merge(Router::new().route("/merged", get(|| async { "merged" })))
        .route_service(
            "/service",
            tower::service_fn(|_req: axum::extract::Request| async {
                Ok::<_, Infallible>(axum::response::Response::new(axum::body::Body::from(
                    "service",
                )))
            }),
        );
    let addr = serve(app).await;
    let body = batch(
        "b",
        &[
            ("<1>", "GET /extra HTTP/1.1"),
            ("<2>", "GET /v2/hello/ann HTTP/1.1"),
            ("<3>", "GET /merged HTTP/1.1"),
            ("<4>", "GET /service HTTP/1.1"),
            ("<5>", "GET /hello/bob HTTP/1.1"),
        ],
    );
    let p = parts(&post_batch(addr, "/batch", "b", body).await).await;
    let bodies: Vec<&[u8]> = p.iter().map(|p| &p.body[..]).collect();
    assert_eq!(
        bodies,
        [
            &b"extra"[..],
            b"hello ann",
            b"merged",
            b"service",
            b"hello bob"
        ]
    );
    for (path, text) in [
        ("/extra", "extra"),
        ("/v2/hello/x", "hello x"),
        ("/merged", "merged"),
        ("/service", "service"),
    ] {
        assert_eq!(get_text(addr, path).await.text(), text, "{path}");
    }
}

/// Layers on a `BatchRouter` wrap the whole app, routes added after them included, each around
/// the ones before it; a batch passes through them once, and its items do not.
#[tokio::test]
async fn layers_on_a_batch_router_wrap_everything_in_call_order() {
    use axum::middleware::map_response;
    use axum::response::Response as AxumResponse;

    async fn mark_a(mut res: AxumResponse) -> AxumResponse {
        res.headers_mut().append("x-order", "a".parse().unwrap());
        res
    }
    async fn mark_b(mut res: AxumResponse) -> AxumResponse {
        res.headers_mut().append("x-order", "b".parse().unwrap());
        res
    }
    let app = BatchLayer::new()
        .wrap_router(api())
        .layer(map_response(mark_a))
        .route("/late", get(|| async { "late" }))
        .layer(map_response(mark_b));
    let addr = serve(app).await;
    let order = |headers: &http::HeaderMap| -> Vec<String> {
        headers
            .get_all("x-order")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };

    let direct = get_text(addr, "/late").await;
    assert_eq!(direct.text(), "late");
    assert_eq!(order(&direct.headers), ["a", "b"]);

    let raw = post_batch(addr, "/batch", "b", two_items()).await;
    assert_eq!(order(&raw.headers), ["a", "b"]);
    let p = parts(&raw).await;
    assert_eq!(&p[0].body[..], b"hello ann");
    assert!(order(&p[0].headers).is_empty(), "{:?}", p[0].headers);
}

/// A `BatchRouter` is a tower service too (for tests and in-process calls), and `into_router`
/// gives the same app as a plain `Router`.
#[tokio::test]
async fn batch_router_as_a_service_and_as_a_router() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let request = || {
        Request::post("/batch")
            .header("content-type", "multipart/mixed; boundary=b")
            .body(axum::body::Body::from(two_items()))
            .unwrap()
    };
    let app = BatchLayer::new()
        .wrap_router(api())
        .fallback(|| async { "fell back" });
    for res in [
        app.clone().oneshot(request()).await.unwrap(),
        app.clone().into_router().oneshot(request()).await.unwrap(),
    ] {
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("hello ann") && text.contains("hello bob"),
            "{text}"
        );
    }
    let res = app
        .oneshot(
            Request::get("/other")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"fell back");
}

/// `into_make_service_with_connect_info`: handlers read `ConnectInfo`, and items inside a
/// batch see the batch's own connection.
#[tokio::test]
async fn connect_info_reaches_items() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;

    let api = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    );
    let app = BatchLayer::new()
        .wrap_router(api)
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let body = batch("b", &[("<1>", "GET /peer HTTP/1.1")]);
    let p = parts(&post_batch(addr, "/batch", "b", body).await).await;
    assert_eq!((p[0].status, &p[0].body[..]), (200, &b"127.0.0.1"[..]));
    assert_eq!(get_text(addr, "/peer").await.text(), "127.0.0.1");
}
