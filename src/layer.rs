//! [`BatchLayer`]: the consuming builder of the batch middleware's configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Method, Request};

use crate::config::{normalise_root, AuthPolicy, Config, Execution, PathPattern, Route};
use crate::format::Format;
use crate::kept::{Idempotency, RespondAsync};
use crate::limits::Limits;
use crate::route::BatchRoute;
use crate::store::AnswerStore;

/// Adds batch support to a service: see the [crate docs](crate) for an example.
///
/// Every option has a default; the builders consume and return the layer. Cloning the layer is
/// cheap (the configuration sits behind an `Arc`).
#[derive(Clone)]
#[must_use]
pub struct BatchLayer {
    pub(crate) config: Arc<Config>,
    paths_set: bool,
    /// Shared by every service this layer (and its clones) makes: each warning about where the
    /// layer is mounted is logged once.
    pub(crate) warned: Arc<crate::observe::Warned>,
}

impl fmt::Debug for BatchLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("BatchLayer")
            .field(
                "paths",
                &c.routes.iter().map(|r| r.raw_path()).collect::<Vec<_>>(),
            )
            .field(
                "formats",
                &c.formats.iter().map(|f| f.name()).collect::<Vec<_>>(),
            )
            .field("limits", &c.limits)
            .field("concurrency", &c.concurrency)
            .field("item_timeout", &c.item_timeout)
            .field("batch_timeout", &c.batch_timeout)
            .field("auth", &c.auth)
            .field("max_nesting", &c.max_nesting)
            .field("execution", &c.execution)
            .field("service_root", &c.service_root)
            .finish_non_exhaustive()
    }
}

impl Default for BatchLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchLayer {
    /// A layer with every default: batches at `/batch`, in multipart and JSON, at most 1000 items,
    /// 16 items at a time.
    pub fn new() -> Self {
        BatchLayer {
            config: Arc::new(Config::default()),
            paths_set: false,
            warned: Arc::default(),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The first path given with [`path`](Self::path) or [`paths`](Self::paths) replaces the
    /// default `/batch`; nothing else does, so the order of the builder calls does not matter.
    fn drop_default_path(&mut self) {
        if !self.paths_set {
            self.paths_set = true;
            // The default route is the first until a path is given: other builders only push.
            self.config().routes.remove(0);
        }
    }

    /// Adds a batch path. The first path given replaces the default `/batch`; routes added
    /// with [`path_with_format`](Self::path_with_format) are kept, whatever the order of calls.
    ///
    /// A segment written `{name}` matches any one non-empty segment, so Google's per-API form
    /// `/batch/{api}/{version}` works as written. Paths match exactly: `/batch` does not match
    /// `/batch/` or `/v1/batch`.
    pub fn path(mut self, path: impl AsRef<str>) -> Self {
        self.drop_default_path();
        self.config()
            .routes
            .push(Route::path(PathPattern::new(path.as_ref()), None));
        self
    }

    /// Adds a batch route: a path or a test on the request, with its own dialect, service root
    /// and transactions (see [`BatchRoute`]). Like [`path`](Self::path), the first route or path
    /// replaces the default `/batch`; the order of the calls does not matter otherwise.
    pub fn route(mut self, route: BatchRoute) -> Self {
        self.drop_default_path();
        let config = self.config();
        config.has_tests |= route.route.when.is_some();
        config.kept.any_async |= route.route.respond_async.is_some();
        config.routes.push(route.route);
        self
    }

    /// Adds batch paths, as [`path`](Self::path) does each (the default `/batch` is replaced).
    pub fn paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        self.drop_default_path();
        for p in paths {
            self = self.path(p);
        }
        self
    }

    /// Treats every request to the wrapped service as a batch request, whatever its path.
    ///
    /// Handy when the service is mounted at one route with `route_service`, at a path the layer
    /// need not know. Items are still refused when they target one of the layer's configured
    /// paths.
    pub fn any_path(mut self) -> Self {
        self.config().any_path = true;
        self
    }

    /// Serves `path` with `format` only (not with the default formats).
    pub fn path_with_format(mut self, path: impl AsRef<str>, format: impl Format) -> Self {
        let pattern = PathPattern::new(path.as_ref());
        let format: Arc<dyn Format> = Arc::new(format);
        let config = self.config();
        if let Some(route) = config
            .routes
            .iter_mut()
            .find(|r| !r.explicit && r.raw_path() == pattern.raw && r.formats.is_some())
        {
            route.formats.as_mut().expect("checked").push(format);
        } else {
            config.routes.push(Route::path(pattern, Some(vec![format])));
        }
        self
    }

    /// Adds a format to the default formats (multipart and JSON), tried in order of
    /// registration after the built-in ones.
    pub fn format(mut self, format: impl Format) -> Self {
        self.config().formats.push(Arc::new(format));
        self
    }

    /// Removes every default format; add the ones you want with [`format`](Self::format).
    pub fn no_default_formats(mut self) -> Self {
        self.config().formats.clear();
        self
    }

    /// Replaces all limits at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config().limits = limits;
        self
    }

    /// The most items per batch. Default 1000.
    pub fn max_items(mut self, n: usize) -> Self {
        self.config().limits.max_items = n;
        self
    }

    /// The largest batch body, in bytes. Default 16 MiB.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.config().limits.max_body_bytes = n;
        self
    }

    /// The largest single part, in bytes. Default 2 MiB.
    pub fn max_part_bytes(mut self, n: usize) -> Self {
        self.config().limits.max_part_bytes = n;
        self
    }

    /// The most header lines per part or nested request. Default 64.
    pub fn max_headers(mut self, n: usize) -> Self {
        self.config().limits.max_headers = n;
        self
    }

    /// The largest head of a part or nested request, in bytes. Default 16 KiB.
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.config().limits.max_header_bytes = n;
        self
    }

    /// The largest body of one item's response. Default 4 MiB; larger ones become a `502`.
    pub fn max_item_response_bytes(mut self, n: usize) -> Self {
        self.config().limits.max_item_response_bytes = n;
        self
    }

    /// The largest whole batch response. Default 64 MiB.
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.config().limits.max_response_bytes = n;
        self
    }

    /// The most bytes of answers held while they wait for an earlier item; see
    /// [`Limits::max_held_bytes`].
    pub fn max_held_bytes(mut self, n: usize) -> Self {
        self.config().limits.max_held_bytes = n;
        self
    }

    /// How long the batch answer may wait for the client to take its next part; see
    /// [`Limits::stall_timeout`].
    pub fn stall_timeout(mut self, d: Duration) -> Self {
        self.config().limits.stall_timeout = d;
        self
    }

    /// The longest a batch answer may live, from the start of the batch to its last byte. See
    /// [`Limits::answer_timeout`].
    pub fn answer_timeout(mut self, d: Duration) -> Self {
        self.config().limits.answer_timeout = d;
        self
    }

    /// How long the client may take to send the batch body. Default 30 s; then `408`.
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.config().limits.read_timeout = d;
        self
    }

    /// How many items of one batch run at the same time. Default 16. `1` runs them one by one,
    /// in order (see [`sequential`](Self::sequential)).
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    pub fn concurrency(mut self, n: usize) -> Self {
        assert!(n > 0, "concurrency must be at least 1");
        self.config().concurrency = n;
        self
    }

    /// Runs items one at a time, in request order; each starts after the one before it answered.
    pub fn sequential(self) -> Self {
        self.concurrency(1)
    }

    /// Gives each item at most `d`; an item that takes longer is answered `504`, and the other
    /// items are kept. Default: none of its own; the batch's deadline bounds every item (see
    /// [`batch_timeout`](Self::batch_timeout)), and a `TimeoutLayer` inside the batch layer
    /// bounds each handler as it bounds a direct call.
    pub fn item_timeout(mut self, d: Duration) -> Self {
        self.config().item_timeout = Some(d);
        self
    }

    /// Gives the whole batch at most `d`, counted from when its body has been read. Items not
    /// finished by then are answered `504`; every finished answer is kept. Default 60 s.
    ///
    /// Timeouts belong here, not in a `TimeoutLayer` outside the batch layer: the batch's
    /// answer head goes out at once and its items run while the body streams, so an outer
    /// timeout bounds nothing. A `TimeoutLayer` *inside* (around the wrapped service) bounds
    /// each item's handler, as it bounds a direct call.
    pub fn batch_timeout(mut self, d: Duration) -> Self {
        self.config().batch_timeout = Some(d);
        self
    }

    /// Who may authenticate items. Default [`AuthPolicy::InheritOrOverride`].
    pub fn auth_policy(mut self, policy: AuthPolicy) -> Self {
        self.config().auth = policy;
        self
    }

    /// Headers that items always get from the outer request and may not set themselves: an
    /// item's own value is dropped, and the outer request's (if it has one) takes its place.
    /// A name ending in `*` is a prefix. Replaces the default set: `Forwarded`, `X-Forwarded-*`
    /// and `X-Real-IP`, the headers a front proxy sets about the client, so that a rate limit or
    /// an audit log keyed on them counts the real client. Under [`AuthPolicy::OuterOnly`],
    /// `Cookie` and `Proxy-Authorization` are pinned as well.
    pub fn pinned_headers<I, P>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.config().pinned = crate::pinned::Pinned::new(names);
        self
    }

    /// The header that carries request ids. Default `x-request-id`.
    ///
    /// When the outer request has one, each item without its own gets `<outer id>-<index>`, and
    /// each item response carries its item's id.
    pub fn request_id_header(mut self, name: HeaderName) -> Self {
        self.config().request_id_header = Some(name);
        self
    }

    /// Turns request id derivation off.
    pub fn no_request_ids(mut self) -> Self {
        self.config().request_id_header = None;
        self
    }

    /// Lets an item itself be a batch, up to `depth` levels below the outer batch. Default 0:
    /// an item that targets a batch path is answered `400`.
    pub fn max_nesting(mut self, depth: usize) -> Self {
        self.config().max_nesting = depth;
        self
    }

    /// Only these methods may be batched; others are answered `403`. Default: every method but
    /// `CONNECT`.
    pub fn allow_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config().policy.allow_methods = Some(methods.into_iter().collect());
        self
    }

    /// These methods may not be batched; they are answered `403`.
    pub fn deny_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config().policy.deny_methods.extend(methods);
        self
    }

    /// Only paths under these prefixes may be batched; others are answered `403`.
    /// Default: every path.
    ///
    /// Prefixes cover whole segments (`/admin` covers `/admin` and `/admin/x`, not
    /// `/administrator`) and are compared with the path the inner service sees: the service root
    /// applied, runs of `/` collapsed, percent-decoded.
    pub fn allow_path_prefixes<I, P>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.config().policy.allow_prefixes = Some(prefixes.into_iter().map(Into::into).collect());
        self
    }

    /// Paths under these prefixes may not be batched; they are answered `403`. Matched as in
    /// [`allow_path_prefixes`](Self::allow_path_prefixes).
    pub fn deny_path_prefixes<I, P>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.config()
            .policy
            .deny_prefixes
            .extend(prefixes.into_iter().map(Into::into));
        self
    }

    /// Lets items carry `multipart/form-data` uploads. Default: refused with `415`, as Google
    /// refuses media uploads in batches.
    pub fn allow_form_data(mut self, allow: bool) -> Self {
        self.config().policy.allow_form_data = allow;
        self
    }

    /// Sets a per-batch cost budget: every item weighs 1, and a batch whose items weigh more
    /// than `limit` in total is refused with `413`. Default: none.
    pub fn cost_budget(self, limit: u64) -> Self {
        self.cost_budget_with(limit, |_| 1)
    }

    /// Sets a per-batch cost budget with a weight per item.
    ///
    /// ```
    /// use http_batch::BatchLayer;
    ///
    /// // Writes cost 10, reads 1; at most 100 per batch.
    /// let layer = BatchLayer::new().cost_budget_with(100, |req| {
    ///     if req.method() == http::Method::GET { 1 } else { 10 }
    /// });
    /// ```
    pub fn cost_budget_with<F>(mut self, limit: u64, weigh: F) -> Self
    where
        F: Fn(&Request<Bytes>) -> u64 + Send + Sync + 'static,
    {
        self.config().budget = Some((limit, Arc::new(weigh)));
        self
    }

    /// How items are executed. Default [`Execution::Polled`].
    pub fn execution(mut self, execution: Execution) -> Self {
        self.config().execution = execution;
        self
    }

    /// Resolves item paths under a service root, as Microsoft Graph and OData clients expect:
    /// with `service_root("/v1.0")`, an item for `/me` (or `me`) runs as `/v1.0/me`, while an
    /// item that already names `/v1.0/...` is left alone. Default: none, item paths are taken
    /// from the server's root, as Google's clients write them.
    ///
    /// ```
    /// use http_batch::BatchLayer;
    ///
    /// // Graph style: POST /v1.0/$batch with items like {"url": "/me/messages"}.
    /// let layer = BatchLayer::new().path("/v1.0/$batch").service_root("/v1.0");
    /// ```
    pub fn service_root(mut self, root: impl AsRef<str>) -> Self {
        self.config().service_root = normalise_root(root.as_ref());
        self
    }

    /// Adds a public origin of this service, such as `https://api.example.com`: absolute item
    /// targets (`GET https://api.example.com/v1/x`) may name it as well as the batch's own
    /// `Host`. Behind a reverse proxy the batch arrives for the backend (`Host: backend:8080`)
    /// while clients write the public origin. A missing port means the scheme's default.
    /// Without a scheme (`api.example.com:8443`) the origin matches either scheme.
    ///
    /// An item's `Host` header never needs this: it is replaced by the batch's own.
    pub fn public_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into().trim_end_matches('/').to_owned();
        self.config().public_origins.push(origin);
        self
    }

    /// Believes `Forwarded` (`host=`, `proto=`) and `X-Forwarded-Host` / `X-Forwarded-Proto` on
    /// the batch request, so that absolute item targets may name the host the client asked the
    /// proxy for. Default: off. Turn it on only behind a proxy that sets these headers itself,
    /// since a client can send them too; the last value of each (the nearest proxy's) is used.
    pub fn trust_forwarded_headers(mut self, trust: bool) -> Self {
        self.config().trust_forwarded = trust;
        self
    }

    /// Answers batches sent with `Prefer: respond-async` asynchronously at every route that does
    /// not say otherwise (see [`RespondAsync`] and [`BatchRoute::respond_async`]). Default: off.
    pub fn respond_async(mut self, settings: RespondAsync) -> Self {
        let config = self.config();
        config.kept.respond_async = Some(settings);
        config.kept.any_async = true;
        self
    }

    /// Keeps the answers of batches sent with an `Idempotency-Key` at every route that does not
    /// say otherwise (see [`Idempotency`] and [`BatchRoute::idempotency`]). Default: off.
    pub fn idempotency(mut self, settings: Idempotency) -> Self {
        self.config().kept.idempotency = Some(settings);
        self
    }

    /// Where asynchronous batches' status monitors and idempotency keys' answers are kept.
    /// Default: a [`MemoryStore`](crate::store::MemoryStore) of this layer's own, enough for one
    /// instance; replicas that share a load balancer need a shared store, such as
    /// [`RedisStore`](crate::store::RedisStore) (feature `redis`).
    pub fn store(mut self, store: impl AnswerStore) -> Self {
        self.config().kept.store = Arc::new(store);
        self
    }

    /// Where status monitors are served: `prefix` then the monitor's id (default
    /// `/batch-monitor/`). Requests there never reach the inner service.
    pub fn monitor_path(mut self, prefix: impl AsRef<str>) -> Self {
        let mut prefix = prefix.as_ref().trim_end_matches('/').to_owned();
        if !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        prefix.push('/');
        self.config().kept.monitor_path = prefix;
        self
    }

    /// The deadline of each call to the answer store (default 2 s). A call that misses it counts
    /// as a failed store: a new asynchronous or keyed batch is answered `503` without running.
    pub fn store_timeout(mut self, d: Duration) -> Self {
        self.config().kept.timeout = d;
        self
    }

    /// How many batches may run in tasks of their own at once (default 64): asynchronous ones,
    /// and keyed ones, which go on when their client leaves so that a retry finds the answer.
    /// Beyond it, a new asynchronous or keyed batch is answered `503` without running.
    pub fn max_background_batches(mut self, n: usize) -> Self {
        self.config().kept.max_background = n;
        self
    }

    /// The limits in force.
    pub fn current_limits(&self) -> &Limits {
        &self.config.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_order_does_not_matter() {
        let a = BatchLayer::new()
            .path_with_format("/json-only", crate::format::Multipart::new())
            .path("/batch");
        let b = BatchLayer::new()
            .path("/batch")
            .path_with_format("/json-only", crate::format::Multipart::new());
        for layer in [a, b] {
            assert!(layer.config.route("/json-only").is_some());
            assert!(layer.config.route("/batch").is_some());
        }
        let c = BatchLayer::new().path("/a").paths(["/b"]).path("/c");
        for p in ["/a", "/b", "/c"] {
            assert!(c.config.route(p).is_some(), "{p}");
        }
        assert!(c.config.route("/batch").is_none());
    }

    #[test]
    fn routes_keep_format_routes_whatever_the_order() {
        use crate::format::Multipart;
        let a = BatchLayer::new()
            .path_with_format("/m", Multipart::new())
            .route(BatchRoute::path("/r"));
        let b = BatchLayer::new()
            .route(BatchRoute::path("/r"))
            .path_with_format("/m", Multipart::new());
        for layer in [a, b] {
            assert!(layer.config.route("/m").is_some());
            assert!(layer.config.route("/r").is_some());
            assert!(layer.config.route("/batch").is_none());
        }
    }

    #[test]
    fn first_path_replaces_default() {
        let layer = BatchLayer::new().path("/a").path("/b");
        assert!(layer.config.route("/a").is_some());
        assert!(layer.config.route_of_path("/a").is_some());
        assert!(layer.config.route("/b").is_some());
        assert!(layer.config.route("/batch").is_none());
    }
}
