//! The reusable parts of the gateway example: a router that forwards the farm API, by path
//! prefix, to two upstream services, and that router with batch support.
//!
//! Shared by `examples/gateway/main.rs` and `tests/gateway.rs` (which includes this file with
//! `#[path = "../examples/gateway/router.rs"] mod gateway;`).
#![allow(dead_code)]

use std::convert::Infallible;

use axum::body::Body;
use axum::error_handling::HandleError;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::header::HOST;
use http::uri::{Parts, PathAndQuery};
use http::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tower::{Service, ServiceExt};

/// The HTTP client the gateway forwards with.
pub type HttpClient = Client<HttpConnector, Body>;

/// A new pooled HTTP/1 client for the upstreams.
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The farm API, forwarded: `/farm/v1/animals...` to `animals`, `/farm/v1/farmers...` to
/// `farmers` (each an `http://host:port` base). No batch support; see [`gateway_app`].
pub fn gateway_router(animals: Uri, farmers: Uri) -> Router {
    let client = http_client();
    let to_animals = upstream(client.clone(), "animals", animals);
    let to_farmers = upstream(client, "farmers", farmers);
    Router::new()
        .route_service("/farm/v1/animals", to_animals.clone())
        .route_service("/farm/v1/animals/{*rest}", to_animals)
        .route_service("/farm/v1/farmers", to_farmers.clone())
        .route_service("/farm/v1/farmers/{*rest}", to_farmers)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "The requested URL was not found.") })
}

/// [`gateway_router`] with batch support at `/batch` and `/batch/farm/v1`: one batch may hold
/// items for both upstreams, and each item is forwarded on its own.
pub fn gateway_app(animals: Uri, farmers: Uri) -> http_batch::BatchRouter {
    http_batch::BatchLayer::new()
        .paths(["/batch", "/batch/farm/v1"])
        .wrap_router(gateway_router(animals, farmers))
}

/// A service that sends each request to `base` through `client`, keeping its path and query.
///
/// A request the client cannot deliver (upstream down, connection reset) is answered `502 Bad
/// Gateway` with a JSON message, so one failing upstream costs only its own items.
pub fn upstream(
    client: HttpClient,
    name: &'static str,
    base: Uri,
) -> impl Service<Request<Body>, Response = Response, Error = Infallible, Future = impl Send>
       + Clone
       + Send
       + 'static {
    let target = base.clone();
    let forward = client
        .map_request(move |mut req: Request<Body>| {
            *req.uri_mut() = retarget(&target, req.uri());
            // The client writes the upstream's own Host.
            req.headers_mut().remove(HOST);
            req
        })
        .map_response(|res| res.map(Body::new));
    HandleError::new(forward, move |e: hyper_util::client::legacy::Error| {
        let base = base.clone();
        async move {
            error(
                StatusCode::BAD_GATEWAY,
                format!("The {name} service at {base} is unreachable: {}", chain(&e)),
            )
        }
    })
}

/// `base`'s scheme and authority with `uri`'s path and query.
fn retarget(base: &Uri, uri: &Uri) -> Uri {
    let mut parts = Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).unwrap_or_else(|_| base.clone())
}

/// An error and its causes in one line; hyper's top-level message alone says only "client error".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A JSON error in Google's shape, as the farm API writes them.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = match status {
        StatusCode::NOT_FOUND => "NOT_FOUND",
        _ => "UNAVAILABLE",
    };
    let body =
        json!({"error": {"code": status.as_u16(), "message": message.into(), "status": kind}});
    (status, axum::Json(body)).into_response()
}
