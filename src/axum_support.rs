//! axum support: `BatchRouter`, an app with batch support that fits `axum::serve`, and
//! `BatchContext` as an extractor.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::extract::Request;
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::future::RouteFuture;
use axum::routing::{IntoMakeService, Route};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::BatchContext;
use crate::error::BoxError;
use crate::layer::BatchLayer;

impl BatchLayer {
    /// Wraps a whole axum app and gives back a [`BatchRouter`], ready for `axum::serve`.
    ///
    /// Batch paths are served by the layer, every other request by your router, with its
    /// routing, middleware and extractors. Routes, a fallback and layers can still be added to
    /// what this returns: routes and the fallback join the API (they answer direct calls and batch
    /// items alike), and layers wrap batches and direct calls together.
    ///
    /// Don't add the layer with `Router::layer`: axum applies that to each route and to the
    /// fallback separately, after routing, so the layer would wrap one handler instead of the
    /// router and no item could be routed. Such a batch is answered `500`
    /// (`MOUNTED_INSIDE_ROUTER`), naming this method as the fix.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use http_batch::BatchLayer;
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let api = Router::new().route("/hello", get(|| async { "hello" }));
    /// let app = BatchLayer::new().wrap_router(api);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// axum::serve(listener, app).await
    /// # }
    /// ```
    pub fn wrap_router(self, router: axum::Router) -> BatchRouter {
        BatchRouter {
            api: router,
            batch: self,
            outer: Vec::new(),
            built: None,
        }
    }
}

/// One layer added with [`BatchRouter::layer`], kept until the router is built.
type OuterLayer = Arc<dyn Fn(axum::Router) -> axum::Router + Send + Sync>;

/// An axum app with batch support: what [`BatchLayer::wrap_router`] returns.
///
/// It keeps the app's router and the batch layer apart until it is served, so nothing added
/// afterwards can take the batch service's place:
///
/// - [`route`](Self::route), [`nest`](Self::nest), [`merge`](Self::merge),
///   [`fallback`](Self::fallback) and their `_service` forms add to the app's own router. What
///   they add answers direct calls and batch items alike, and a fallback answers unknown paths
///   in both.
/// - [`layer`](Self::layer) wraps the whole app, batches included, whatever the order of the
///   calls.
///
/// Serve it with `axum::serve(listener, app)`, call it as a tower `Service`, or take the built
/// `Router` with [`into_router`](Self::into_router).
///
/// ```
/// use axum::{http::StatusCode, routing::get, Router};
/// use http_batch::BatchLayer;
/// use tower_http::trace::TraceLayer;
///
/// # async fn run() -> std::io::Result<()> {
/// let api = Router::new().route("/hello", get(|| async { "hello" }));
/// let app = BatchLayer::new()
///     .wrap_router(api)
///     .route("/bye", get(|| async { "bye" })) // served directly and inside batches
///     .fallback(|| async { (StatusCode::NOT_FOUND, "no such call") })
///     .layer(TraceLayer::new_for_http()); // wraps each batch as one request
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a BatchRouter does nothing until it is served"]
pub struct BatchRouter {
    api: axum::Router,
    batch: BatchLayer,
    /// Applied in the order given, each around the ones before it.
    outer: Vec<OuterLayer>,
    /// The router as served, built on first use and dropped by every change.
    built: Option<axum::Router>,
}

impl BatchRouter {
    fn map_api(mut self, f: impl FnOnce(axum::Router) -> axum::Router) -> Self {
        self.api = f(self.api);
        self.built = None;
        self
    }

    /// Adds a route to the app, as [`Router::route`](axum::Router::route) does. It answers
    /// direct calls and batch items alike.
    pub fn route(self, path: &str, method_router: axum::routing::MethodRouter) -> Self {
        self.map_api(|api| api.route(path, method_router))
    }

    /// Adds a service at a path to the app, as
    /// [`Router::route_service`](axum::Router::route_service) does.
    pub fn route_service<T>(self, path: &str, service: T) -> Self
    where
        T: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        T::Response: IntoResponse,
        T::Future: Send + 'static,
    {
        self.map_api(|api| api.route_service(path, service))
    }

    /// Nests a router under a path of the app, as [`Router::nest`](axum::Router::nest) does.
    pub fn nest(self, path: &str, router: axum::Router) -> Self {
        self.map_api(|api| api.nest(path, router))
    }

    /// Nests a service under a path of the app, as
    /// [`Router::nest_service`](axum::Router::nest_service) does.
    pub fn nest_service<T>(self, path: &str, service: T) -> Self
    where
        T: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        T::Response: IntoResponse,
        T::Future: Send + 'static,
    {
        self.map_api(|api| api.nest_service(path, service))
    }

    /// Merges another router's routes into the app, as [`Router::merge`](axum::Router::merge)
    /// does.
    pub fn merge<R: Into<axum::Router>>(self, other: R) -> Self {
        self.map_api(|api| api.merge(other))
    }

    /// Sets the app's fallback, as [`Router::fallback`](axum::Router::fallback) does. It answers
    /// direct calls to unknown paths, and batch items that name one; batch paths stay the
    /// layer's.
    pub fn fallback<H, T>(self, handler: H) -> Self
    where
        H: Handler<T, ()>,
        T: 'static,
    {
        self.map_api(|api| api.fallback(handler))
    }

    /// Sets the app's fallback service, as
    /// [`Router::fallback_service`](axum::Router::fallback_service) does; see
    /// [`fallback`](Self::fallback).
    pub fn fallback_service<T>(self, service: T) -> Self
    where
        T: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        T::Response: IntoResponse,
        T::Future: Send + 'static,
    {
        self.map_api(|api| api.fallback_service(service))
    }

    /// Wraps the whole app, batch paths included, in a layer: a batch passes through it once,
    /// as one request, and so does each direct call. Items inside a batch don't pass through
    /// it; layers meant for each item go on the router given to
    /// [`wrap_router`](BatchLayer::wrap_router).
    ///
    /// Layers wrap everything, routes added later included; each one wraps the layers added
    /// before it, as with [`Router::layer`](axum::Router::layer).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.outer.push(Arc::new(move |router: axum::Router| {
            router.layer(layer.clone())
        }));
        self.built = None;
        self
    }

    /// The app as one `Router`, for what takes nothing else (`Router::merge` into a larger
    /// app, say).
    ///
    /// The batch service is that router's fallback. Add routes and a fallback to the
    /// `BatchRouter` before calling this: a `.fallback(...)` on the `Router` it returns would
    /// replace the batch service, and with it the whole API.
    pub fn into_router(mut self) -> axum::Router {
        self.built.take().unwrap_or_else(|| self.build())
    }

    /// A make-service for `axum::serve`, as [`Router::into_make_service`] gives.
    ///
    /// [`Router::into_make_service`]: axum::Router::into_make_service
    pub fn into_make_service(self) -> IntoMakeService<axum::Router> {
        self.into_router().into_make_service()
    }

    /// A make-service that gives handlers the connection's [`ConnectInfo`], as
    /// [`Router::into_make_service_with_connect_info`] does. Items inside a batch see the
    /// batch's connection.
    ///
    /// [`ConnectInfo`]: axum::extract::ConnectInfo
    /// [`Router::into_make_service_with_connect_info`]: axum::Router::into_make_service_with_connect_info
    pub fn into_make_service_with_connect_info<C>(
        self,
    ) -> IntoMakeServiceWithConnectInfo<axum::Router, C> {
        self.into_router()
            .into_make_service_with_connect_info::<C>()
    }

    fn build(&self) -> axum::Router {
        let batched = self.batch.layer(self.api.clone());
        let router = axum::Router::new().fallback_service(batched);
        self.outer.iter().fold(router, |router, wrap| wrap(router))
    }

    fn built(&mut self) -> &mut axum::Router {
        if self.built.is_none() {
            self.built = Some(self.build());
        }
        self.built.as_mut().expect("built just above")
    }
}

impl From<BatchRouter> for axum::Router {
    fn from(app: BatchRouter) -> Self {
        app.into_router()
    }
}

impl std::fmt::Debug for BatchRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRouter")
            .field("api", &self.api)
            .field("batch", &self.batch)
            .field("outer_layers", &self.outer.len())
            .finish_non_exhaustive()
    }
}

/// `BatchRouter` as a tower service: the app, batch paths included.
impl<B> Service<http::Request<B>> for BatchRouter
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<B>>::poll_ready(self.built(), cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.built().call(req)
    }
}

/// `axum::serve(listener, app)` takes a `BatchRouter` as it takes a `Router`.
impl<L: axum::serve::Listener> Service<axum::serve::IncomingStream<'_, L>> for BatchRouter {
    type Response = axum::Router;
    type Error = Infallible;
    type Future = std::future::Ready<Result<axum::Router, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _connection: axum::serve::IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(self.built().clone()))
    }
}

/// The rejection of a handler that takes [`BatchContext`] when it is called outside a batch.
///
/// Take `Option<BatchContext>` in a handler that is also called directly: it is `None` there.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct MissingBatchContext;

impl axum::response::IntoResponse for MissingBatchContext {
    fn into_response(self) -> axum::response::Response {
        (
            http::StatusCode::BAD_REQUEST,
            "this call is only served inside a batch request",
        )
            .into_response()
    }
}

impl std::fmt::Display for MissingBatchContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request is not part of a batch")
    }
}

impl std::error::Error for MissingBatchContext {}

/// `BatchContext` as an axum extractor: `async fn handler(ctx: BatchContext)` inside batches
/// only, or `Option<BatchContext>` for a handler also called directly.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for BatchContext {
    type Rejection = MissingBatchContext;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<BatchContext>()
            .cloned()
            .ok_or(MissingBatchContext)
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for BatchContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<BatchContext>().cloned())
    }
}
