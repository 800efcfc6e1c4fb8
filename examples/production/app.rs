//! The production-style farm: the layers, in the order they must go, and why.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_batch::{BatchLayer, BatchRouter};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

#[path = "../farm/app.rs"]
mod farm;

/// The largest request body, batch or not. The batch layer has its own limit
/// (`max_body_bytes`); this outer one protects every route, and the batch layer answers its
/// refusal of a chunked body with `413` too.
pub const BODY_LIMIT: usize = 1 << 20;

/// A bearer-token check for every `/farm/...` call, as ordinary axum middleware. It sits
/// inside the batch layer, so it runs once for every item, exactly as for a direct call.
async fn auth(token: std::sync::Arc<str>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/farm/") {
        return next.run(req).await;
    }
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == &*token);
    if ok {
        return next.run(req).await;
    }
    let body = serde_json::json!({"error": {
        "code": 401,
        "message": "Request is missing or has invalid authentication credentials.",
        "status": "UNAUTHENTICATED",
    }});
    let mut res = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// The whole service.
///
/// Inside the batch layer (each item passes through): the auth check and a per-call timeout,
/// which bound and guard every item as they guard a direct call.
///
/// Outside (the batch request as a whole): the body limit, compression of the whole answer
/// (never of the parts inside it: the layer strips `Accept-Encoding` from every item), CORS
/// (a browser's preflight for `/batch` is answered there, and items never see CORS headers),
/// and tracing of the outer request. A `TimeoutLayer` outside would bound nothing, since a
/// batch's answer head goes out at once: the batch layer's own `batch_timeout` does that.
pub fn app(token: &str, public_origin: Option<&str>) -> BatchRouter {
    let token: std::sync::Arc<str> = token.into();
    let api = farm::api(None)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            auth(token.clone(), req, next)
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(10),
        ));
    let mut batch = BatchLayer::new()
        .paths(["/batch", "/batch/farm/v1"])
        .batch_timeout(Duration::from_secs(30));
    if let Some(origin) = public_origin {
        batch = batch.public_origin(origin);
    }
    batch
        .wrap_router(api)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(CompressionLayer::new())
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
        )
        // At INFO, so that the default filter logs each request and its status (tower-http's
        // defaults are DEBUG): one line for a batch, one for each direct call.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
}

/// Serves the app on a free loopback port (for tests).
#[allow(dead_code)]
pub async fn spawn(token: &str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(token, None);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}
