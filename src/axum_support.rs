//! Making a batched axum `Router` fit `axum::serve`.

use tower_layer::Layer;

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
    /// Don't add the layer with `Router::layer`: that runs after routing, so a batch path, which
    /// has no route, would never reach it.
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
