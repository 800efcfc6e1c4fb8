//! Serving a batched service with a plain hyper / hyper-util server.
//!
//! hyper hands services a `Request<Incoming>`, but batch items are built from bytes, so the
//! inner service needs a body type that both can become. [`Body`] is that type, and
//! [`BatchService`] adapts a [`Batch`](crate::Batch) over a `Service<Request<Body>>` to
//! `hyper::service::Service<Request<Incoming>>`.
//!
//! # Example
//!
//! ```no_run
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_batch::{hyper::{BatchService, Body}, BatchLayer};
//! use http_body_util::Full;
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto;
//! use tower::{service_fn, Layer};
//!
//! async fn api(req: Request<Body>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::from(format!("you asked for {}", req.uri().path()))))
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let batched = BatchLayer::new().layer(service_fn(api));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let service = BatchService::new(batched.clone());
//!     tokio::spawn(async move {
//!         let _ = auto::Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(stream), service)
//!             .await;
//!     });
//! }
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::error::BoxError;

/// A request body that a batch item (`From<Bytes>`) and a hyper request (`Body::new`) can both be.
pub struct Body(UnsyncBoxBody<Bytes, BoxError>);

impl Body {
    /// Wraps any body whose data is `Bytes`.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Body(body.map_err(Into::into).boxed_unsync())
    }

    /// An empty body.
    pub fn empty() -> Self {
        Body::new(http_body_util::Empty::new())
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::new(http_body_util::Full::new(b))
    }
}

impl From<hyper::body::Incoming> for Body {
    fn from(b: hyper::body::Incoming) -> Self {
        Body::new(b)
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// Adapts a tower service over `Request<Body>` (such as a [`Batch`](crate::Batch)) to hyper's
/// `Service<Request<Incoming>>`.
#[derive(Clone, Debug)]
pub struct BatchService<S> {
    inner: S,
}

impl<S> BatchService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        BatchService { inner }
    }
}

impl<S, B> hyper::service::Service<Request<B>> for BatchService<S>
where
    S: tower::Service<Request<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        let svc = self.inner.clone();
        Box::pin(svc.oneshot(req.map(Body::new)))
    }
}
