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
use crate::observe::{self, MountSuspect, Warned};
use crate::respond_async::{self, Counted, Run};

/// Serves batches in front of an inner service: see the [crate docs](crate) for an example.
///
/// Build it with [`BatchLayer`] or [`Batch::new`].
#[derive(Clone)]
pub struct Batch<S> {
    inner: S,
    config: Arc<Config>,
    /// The layer's record of the mounting mistakes it has warned about.
    warned: Arc<Warned>,
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
    pub fn new(inner: S) -> Self
    where
        S: 'static,
    {
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

/// The layer over `S`. When `S` is one route of an axum router (the layer was given to
/// `Router::layer`), this is where the mistake is first known, and it is logged at `WARN` here,
/// once per layer, as the app is built.
impl<S: 'static> Layer<S> for BatchLayer {
    type Service = Batch<S>;

    fn layer(&self, inner: S) -> Self::Service {
        if mount::is_axum_route::<S>() {
            self.warned.inside_router();
        }
        Batch {
            inner,
            config: self.config.clone(),
            warned: self.warned.clone(),
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
            if mount::at_own_route::<S, _>(&req, &self.config) {
                return self.unknown_path(req);
            }
            return ResponseFuture::inner(self.inner.call(req));
        };
        if mount::is_axum_route::<S>() {
            self.warned.inside_router();
            return reject(BatchError::MountedInsideRouter);
        }
        if mount::suspect::<S, _>(&req) {
            // Behind a ServiceBuilder stack the route's type is hidden: what the items answer
            // will tell (see `observe::MountSuspect`).
            req.extensions_mut()
                .insert(MountSuspect(self.warned.clone()));
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

impl<S> Batch<S> {
    /// A request that looks like a batch, sent here by an outer router at exactly its own path,
    /// which is not a batch path of this layer (`route_service("/v2/batch", Batch::new(api))`
    /// without `.path("/v2/batch")`). It goes to the inner router all the same, in case it serves
    /// that path; if it does not (an empty `404`), the answer says what is wrong and how to fix
    /// it, and the mistake is logged once.
    ///
    /// It is not served as a batch: a route's dialect, formats, service root and transactions
    /// are chosen by its path, and the layer cannot know which the operator meant for this one
    /// (an OData client answered in Google's dialect would misread its answers). Guessing would
    /// hide the mistake; `any_path()` is there for a layer meant to serve any path.
    fn unknown_path<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    {
        let err = BatchError::PathNotConfigured {
            path: req.uri().path().to_owned(),
            configured: self
                .config
                .routes
                .iter()
                .map(|r| r.raw_path().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        };
        let warned = self.warned.clone();
        let answer = self.inner.call(req);
        ResponseFuture::batch(Box::pin(async move {
            let res = match answer.await {
                Ok(res) => res,
                // Only reached with an axum `Router` inside, whose error is `Infallible`.
                Err(e) => {
                    let e: BoxError = e.into();
                    return crate::error::error_response(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        &e.to_string(),
                    )
                    .map(ResponseBody::full);
                }
            };
            let empty = http_body::Body::size_hint(res.body()).exact() == Some(0);
            if res.status() != http::StatusCode::NOT_FOUND || !empty {
                return res.map(ResponseBody::inner);
            }
            warned.unknown_path(&err);
            observe::refused(&err);
            err.to_response().map(ResponseBody::full)
        }))
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
    observe::refused(&err);
    ResponseFuture::reject(err.to_response())
}

/// How the layer is mounted, as far as it can tell: the checks behind its warnings. Each is a
/// type comparison or an extension lookup, made only for requests at a batch path (or, for
/// `at_own_route`, for `POST`s), never for each item.
mod mount {
    use http::Request;

    use crate::config::Config;

    /// Whether `S` is one route of an axum router: what `Router::layer` hands each layer (one
    /// handler, or the fallback), after routing. Items sent there could only ever reach that
    /// one handler.
    pub(super) fn is_axum_route<S: 'static>() -> bool {
        #[cfg(feature = "axum")]
        return std::any::TypeId::of::<S>() == std::any::TypeId::of::<axum::routing::Route>();
        #[cfg(not(feature = "axum"))]
        false
    }

    /// Whether `S` is a whole axum router, as `wrap_router` and `Batch::new(router)` have it.
    #[cfg(feature = "axum")]
    fn is_axum_router<S: 'static>() -> bool {
        std::any::TypeId::of::<S>() == std::any::TypeId::of::<axum::Router>()
    }

    /// Whether a batch may have reached a layer that wraps one route, hidden in a stack of
    /// layers: an axum router saw the request (it set `OriginalUri`), matched no route (no
    /// `MatchedPath`), so it went to the fallback; and the layer's inner service is not known to
    /// be a whole router. `wrap_router` mounts the layer as a router's fallback too, but over a
    /// whole `Router`, which is known.
    pub(super) fn suspect<S: 'static, B>(req: &Request<B>) -> bool {
        #[cfg(feature = "axum")]
        {
            use axum::extract::{MatchedPath, OriginalUri};
            let ext = req.extensions();
            !is_axum_router::<S>()
                && ext.get::<OriginalUri>().is_some()
                && ext.get::<MatchedPath>().is_none()
        }
        #[cfg(not(feature = "axum"))]
        {
            let _ = req;
            false
        }
    }

    /// Whether a request that is not at a batch path looks like a batch sent to this service by
    /// an outer router at exactly its own route: a `POST` in a batch format, to a route without
    /// parameters that matched its whole path, with a whole router inside (the
    /// `route_service("/v2/batch", Batch::new(api))` form).
    pub(super) fn at_own_route<S: 'static, B>(req: &Request<B>, config: &Config) -> bool {
        #[cfg(feature = "axum")]
        {
            if req.method() != http::Method::POST || !is_axum_router::<S>() {
                return false;
            }
            let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() else {
                return false;
            };
            if matched.as_str() != req.uri().path() {
                return false;
            }
            req.headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::format::parse_content_type)
                .is_some_and(|m| crate::format::pick(config.formats_of(None), &m).is_some())
        }
        #[cfg(not(feature = "axum"))]
        {
            let _ = (req, config);
            false
        }
    }
}
