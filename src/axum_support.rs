//! axum support: a batched `Router` that fits `axum::serve`, and `BatchContext` as an extractor.

use tower_layer::Layer;

use crate::context::BatchContext;
use crate::layer::BatchLayer;

impl BatchLayer {
    /// Wraps a whole axum app and gives back a `Router`, ready for `axum::serve`.
    ///
    /// `axum::serve` wants a service whose response body is axum's own `Body`; a `Batch<Router>`
    /// answers with [`ResponseBody`](crate::ResponseBody). The returned router holds the batch
    /// service as its fallback, so every request reaches it and nothing else changes: batch
    /// paths are served by the layer, every other request by your router, with its routing,
    /// middleware and extractors.
    ///
    /// Add routes and a fallback to `router` before wrapping it, not to the router returned: its
    /// fallback *is* the batch service, and a `.fallback(...)` on it would replace the whole
    /// API. Layers on the returned router are fine; they wrap batches and direct calls alike.
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
    /// let app: Router = BatchLayer::new().wrap_router(api);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// axum::serve(listener, app).await
    /// # }
    /// ```
    pub fn wrap_router(self, router: axum::Router) -> axum::Router {
        axum::Router::new().fallback_service(self.layer(router))
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
