//! [`Batch`]: the middleware service. It recognises batch requests, refuses malformed ones, passes
//! every other request through untouched, and hands each batch to its run (`batch.rs`).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::batch::{run_batch, Nested};
use crate::body::ResponseBody;
use crate::config::Config;
use crate::error::{BatchError, BoxError};
use crate::format::{self, parse_content_type};
use crate::future::{BatchFuture, ResponseFuture};
use crate::idempotency;
use crate::kept::{owner, prefers_async};
use crate::layer::BatchLayer;
use crate::respond_async::{self, Counted, Run};

/// Serves batches in front of an inner service: see the [crate docs](crate) for an example.
///
/// Build it with [`BatchLayer`] or [`Batch::new`].
#[derive(Clone)]
pub struct Batch<S> {
    inner: S,
    config: Arc<Config>,
    /// Whether `inner` is one route of an axum router (`Router::layer`), not a whole service.
    per_route: bool,
}

impl<S: fmt::Debug> fmt::Debug for Batch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Batch<S> {
    /// Wraps `inner` with the default configuration (batches at `/batch`).
    pub fn new(inner: S) -> Self {
        BatchLayer::new().layer(inner)
    }

    /// A [`BatchLayer`] to configure.
    pub fn layer() -> BatchLayer {
        BatchLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes the inner service out.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Layer<S> for BatchLayer {
    type Service = Batch<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Batch {
            inner,
            config: self.config.clone(),
            per_route: is_axum_route::<S>(),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Batch<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let mut req = req;
        if let Some(id) = self.config.kept.monitor_id(req.uri().path()) {
            return monitor(&self.config, id.to_owned(), &req);
        }
        let mut route = self.config.route_of_path(req.uri().path());
        if route.is_none() && self.config.has_tests {
            // A route's test sees the head alone; the body is set aside, not copied.
            let (parts, body) = req.into_parts();
            let head = Request::from_parts(parts, ());
            route = self.config.route_of_head(&head);
            let (parts, ()) = head.into_parts();
            req = Request::from_parts(parts, body);
        }
        let Some(route_index) = route else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        if self.per_route {
            return reject(BatchError::MountedInsideRouter);
        }
        let route = &self.config.routes[route_index];
        let formats = self.config.formats_of(Some(route));
        if req.method() == Method::OPTIONS {
            return ResponseFuture::reject(options(&self.config, formats));
        }
        if req.method() != Method::POST {
            return reject(BatchError::MethodNotAllowed {
                method: req.method().to_string(),
            });
        }
        let hosts = req.headers().get_all(header::HOST).iter().count();
        if hosts > 1 {
            // Which one the origin checks should believe is not for the layer to guess.
            return reject(BatchError::Malformed {
                reason: format!(
                    "the batch request has {hosts} Host headers; a request may have only one \
                     (RFC 9112)"
                ),
            });
        }
        if let Some(encoding) = content_coding(req.headers()) {
            return reject(BatchError::UnsupportedEncoding { encoding });
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let parsed = content_type.as_deref().and_then(parse_content_type);
        let format = parsed
            .as_ref()
            .and_then(|m| format::pick(formats, m))
            .cloned();
        let (Some(format), Some(mime)) = (format, parsed) else {
            return reject(BatchError::UnsupportedMediaType {
                content_type,
                accepted: formats.iter().flat_map(|f| f.content_types()).collect(),
            });
        };
        // This request will not reach the inner service itself, so give back the readiness
        // `poll_ready` reserved (a concurrency-limit permit, say); each item reserves its own.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        drop(ready);
        let service = self.inner.clone();
        // Items that are batches themselves run through this layer again: the run is handed
        // the service to nest into, and never names `Batch` itself.
        let nested: Nested<Self> = (self.config.max_nesting > 0).then(|| self.clone());
        let config = self.config.clone();
        // Plain batches pay two lookups in the route's settings here, and a header lookup for
        // each feature the route has.
        let respond_async = config
            .respond_async_of(route_index)
            .filter(|_| prefers_async(req.headers()))
            .cloned();
        let keyed = config
            .idempotency_of(route_index)
            .filter(|_| req.headers().contains_key("idempotency-key"))
            .cloned();
        if respond_async.is_none() && keyed.is_none() {
            return ResponseFuture::batch(Box::pin(run_batch(
                service,
                nested,
                config,
                route_index,
                format,
                mime,
                req,
            )));
        }
        let owner = owner(req.extensions(), req.headers());
        let kept = config.kept.clone();
        let limits = config.limits.clone();
        let route_name = format!("{route_index}:{}", config.routes[route_index].raw_path());
        let run: Run<ReqBody, ResBody> = Box::new(move |req, progress| match progress {
            None => Box::pin(run_batch(
                service,
                nested,
                config,
                route_index,
                format,
                mime,
                req,
            )),
            Some(progress) => Box::pin(run_batch(
                Counted::new(service, progress),
                nested,
                config,
                route_index,
                format,
                mime,
                req,
            )),
        });
        let future: BatchFuture<ResBody> = match (keyed, respond_async) {
            (Some(opts), respond_async) => Box::pin(idempotency::serve(
                kept,
                opts,
                respond_async,
                limits,
                route_name,
                owner,
                req,
                run,
            )),
            (None, Some(opts)) => Box::pin(respond_async::accept(kept, opts, owner, req, run)),
            (None, None) => unreachable!("checked above"),
        };
        ResponseFuture::batch(future)
    }
}

/// A request to a status monitor, answered by the layer.
fn monitor<F, B>(config: &Config, id: String, req: &Request<impl Sized>) -> ResponseFuture<F, B>
where
    B: 'static,
{
    let kept = config.kept.clone();
    let opts = kept
        .respond_async
        .clone()
        .or_else(|| config.routes.iter().find_map(|r| r.respond_async.clone()))
        .unwrap_or_default();
    let owner = owner(req.extensions(), req.headers());
    let answer = respond_async::monitor(kept, opts, id, req.method().clone(), owner);
    ResponseFuture::batch(Box::pin(
        async move { answer.await.map(ResponseBody::full) },
    ))
}

/// The request body's content coding, when it is anything but `identity`: the formats read the
/// body as sent, so a compressed body would otherwise be refused for its framing, in words that
/// do not say why.
fn content_coding(headers: &http::HeaderMap) -> Option<String> {
    let values = headers.get_all(header::CONTENT_ENCODING);
    let coded = values
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|c| c.trim_ascii())
        .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"));
    if !coded {
        return None;
    }
    // Named in the answer's message, so kept short whatever the client sent.
    let named: Vec<_> = values.iter().map(|v| v.as_bytes()).collect();
    let named = named.join(&b", "[..]);
    let mut named = String::from_utf8_lossy(&named[..named.len().min(64)]).into_owned();
    if named.len() >= 64 {
        named.push('…');
    }
    Some(named)
}

/// Whether the layer is being applied to a single route of an axum router, as
/// `Router::layer` does: axum hands each layer its `Route` type (one handler, or the fallback),
/// after routing. Items sent there could only ever reach that one handler, so such a batch is
/// refused with words that name the fix. Found by the type's name, as axum's `Route` is not a
/// type this crate can name without depending on axum.
fn is_axum_route<S>() -> bool {
    std::any::type_name::<S>().starts_with("axum::routing::route::Route")
}

/// The answer to `OPTIONS` on a batch path: what may be sent there, and the limits a client
/// must keep to, so it can split its calls into batches that fit.
fn options(config: &Config, formats: &[Arc<dyn format::Format>]) -> Response<Bytes> {
    let limits = &config.limits;
    let accepted: Vec<String> = formats.iter().flat_map(|f| f.content_types()).collect();
    let mut res = Response::new(Bytes::new());
    *res.status_mut() = http::StatusCode::NO_CONTENT;
    let headers = res.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    if let Ok(v) = HeaderValue::from_str(&accepted.join(", ")) {
        headers.insert(HeaderName::from_static("accept-post"), v);
    }
    for (name, value) in [
        ("batch-max-items", limits.max_items),
        ("batch-max-body-bytes", limits.max_body_bytes),
        ("batch-max-part-bytes", limits.max_part_bytes),
        ("batch-max-response-bytes", limits.max_response_bytes),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
    res
}

fn reject<F, B>(err: BatchError) -> ResponseFuture<F, B> {
    tracing::debug!(error = %err, "batch rejected");
    ResponseFuture::reject(err.to_response())
}
