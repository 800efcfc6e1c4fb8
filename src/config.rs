//! The layer's settings as plain data: routes, formats, limits, policies and how items run.
//! [`BatchLayer`](crate::BatchLayer) builds a [`Config`]; every stage reads it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Method, Request};

use crate::format::{Dialect, Format, Multipart};
use crate::kept::{Idempotency, Kept, RespondAsync};
use crate::limits::Limits;
use crate::pinned::Pinned;
use crate::transaction::TransactionProvider;

/// Who may authenticate an item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthPolicy {
    /// Items inherit the outer `Authorization` and may override it with their own (Google's
    /// rule). The default.
    #[default]
    InheritOrOverride,
    /// Only the outer request may carry `Authorization` (OData's rule); an item that carries its
    /// own is answered with `400`.
    OuterOnly,
}

/// How a batch's items are executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Execution {
    /// Items are futures polled by the batch response body: no task is spawned, and dropping the
    /// response (a client that disconnects) drops every item still running. The default.
    Polled,
    /// The items of one batch run on every worker thread of a multi-thread tokio runtime. They
    /// are shared out in blocks: the task that polls the response body runs one block (and
    /// still decodes and encodes every item), and one task per other worker thread, a *lane*,
    /// runs the next (up to 64 items each). Each share gets an equal part of the batch's
    /// concurrency, so `concurrency(n)` still bounds the items running at once. A lane starts
    /// no item beyond a window past what the response has sent, which bounds the answers held
    /// to one round of blocks (96 answers with two workers, against 32 for `Polled` at the
    /// default concurrency). Dropping the response aborts the lanes. There are at most as many
    /// shares as worker threads, as the concurrency, and as 4-item shares the batch fills.
    /// Batches with dependencies, a concurrency of 1, fewer than 8 items, or a current-thread
    /// runtime run as `Polled`.
    ///
    /// For trivial handlers on a 2-core machine it measured 10–12 % faster than `Polled`,
    /// about the size of that machine's noise (the hand-overs between threads cost much of what
    /// the second core gains; see docs/performance.md). It pays most when handlers do real CPU
    /// work. Under many concurrent batches, `Polled` already keeps every core busy.
    Spawned,
}

/// A path a batch may be posted to, such as `/batch` or `/batch/{api}/{version}`.
#[derive(Clone, Debug)]
pub(crate) struct PathPattern {
    pub(crate) raw: String,
    /// `None` for a literal path, compared as a whole.
    segments: Option<Vec<Option<String>>>,
}

impl PathPattern {
    pub(crate) fn new(raw: &str) -> Self {
        let raw = if raw.starts_with('/') {
            raw.to_owned()
        } else {
            format!("/{raw}")
        };
        let has_params = raw.split('/').any(is_param);
        let segments = has_params.then(|| {
            raw.split('/')
                .map(|s| (!is_param(s)).then(|| s.to_owned()))
                .collect()
        });
        PathPattern { raw, segments }
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        match &self.segments {
            None => self.raw == path,
            Some(segments) => {
                let mut parts = path.split('/');
                for seg in segments {
                    match (seg, parts.next()) {
                        (_, None) => return false,
                        (Some(lit), Some(p)) if lit != p => return false,
                        (None, Some("")) => return false,
                        _ => {}
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

fn is_param(s: &str) -> bool {
    s.len() > 2 && s.starts_with('{') && s.ends_with('}')
}

/// A test on a request's head that makes it a batch request of a route.
pub(crate) type When = Arc<dyn Fn(&Request<()>) -> bool + Send + Sync>;

/// A batch path and the formats served there (`None`: the layer's default formats).
#[derive(Clone)]
pub(crate) struct Route {
    /// `None` for a route chosen by `when` alone.
    pub(crate) pattern: Option<PathPattern>,
    pub(crate) formats: Option<Vec<Arc<dyn Format>>>,
    /// A test on the request, besides the path (Azure Storage posts to `?comp=batch`).
    pub(crate) when: Option<When>,
    pub(crate) dialect: Dialect,
    /// Where item URLs are resolved (`None`: the layer's `service_root`).
    pub(crate) service_root: Option<String>,
    pub(crate) transactions: Option<Arc<dyn TransactionProvider>>,
    /// Whether items may name `%2F` inside a segment (`BatchRoute::encoded_slashes`).
    pub(crate) encoded_slashes: bool,
    /// Made with `BatchLayer::route`, so kept by `BatchLayer::paths`.
    pub(crate) explicit: bool,
    /// Asynchronous batches here (`None`: the layer's setting).
    pub(crate) respond_async: Option<RespondAsync>,
    /// Idempotency keys here (`None`: the layer's setting).
    pub(crate) idempotency: Option<Idempotency>,
}

impl Route {
    pub(crate) fn path(pattern: PathPattern, formats: Option<Vec<Arc<dyn Format>>>) -> Self {
        Route {
            pattern: Some(pattern),
            formats,
            when: None,
            dialect: Dialect::google(),
            service_root: None,
            transactions: None,
            encoded_slashes: false,
            explicit: false,
            respond_async: None,
            idempotency: None,
        }
    }

    pub(crate) fn raw_path(&self) -> &str {
        self.pattern.as_ref().map_or("", |p| p.raw.as_str())
    }

    fn matches_path(&self, path: &str) -> bool {
        self.pattern.as_ref().is_some_and(|p| p.matches(path))
    }

    fn matches_head(&self, head: &Request<()>) -> bool {
        (self.pattern.is_none() || self.matches_path(head.uri().path()))
            && self.when.as_ref().is_some_and(|when| when(head))
    }
}

/// Normalises a service root: a leading `/`, no trailing one; `/` alone is none.
pub(crate) fn normalise_root(root: &str) -> Option<String> {
    let root = root.trim_end_matches('/');
    let root = if root.starts_with('/') {
        root.to_owned()
    } else {
        format!("/{root}")
    };
    (root != "/" && !root.is_empty()).then_some(root)
}

/// A function that gives an item its weight against the cost budget.
pub(crate) type Weigh = Arc<dyn Fn(&Request<Bytes>) -> u64 + Send + Sync>;

/// What an item may be: methods and path prefixes allowed or refused.
#[derive(Clone, Debug, Default)]
pub(crate) struct ItemPolicy {
    pub(crate) allow_methods: Option<Vec<Method>>,
    pub(crate) deny_methods: Vec<Method>,
    pub(crate) allow_prefixes: Option<Vec<String>>,
    pub(crate) deny_prefixes: Vec<String>,
    pub(crate) allow_form_data: bool,
}

/// Everything the layer was configured with, shared by every batch behind an `Arc`.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) routes: Vec<Route>,
    pub(crate) any_path: bool,
    pub(crate) formats: Vec<Arc<dyn Format>>,
    pub(crate) limits: Limits,
    pub(crate) concurrency: usize,
    pub(crate) item_timeout: Option<Duration>,
    pub(crate) batch_timeout: Option<Duration>,
    pub(crate) auth: AuthPolicy,
    pub(crate) request_id_header: Option<HeaderName>,
    pub(crate) max_nesting: usize,
    pub(crate) policy: ItemPolicy,
    pub(crate) budget: Option<(u64, Weigh)>,
    pub(crate) execution: Execution,
    pub(crate) service_root: Option<String>,
    /// Origins (`https://api.example.com`, or a bare authority) that absolute item targets may
    /// name besides the batch's own `Host`: the public names of this service behind a proxy.
    pub(crate) public_origins: Vec<String>,
    /// Whether `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` on the batch request are
    /// believed (only behind a proxy that sets them).
    pub(crate) trust_forwarded: bool,
    /// Whether some route has a test on the request.
    pub(crate) has_tests: bool,
    pub(crate) pinned: Pinned,
    /// Asynchronous batches and idempotency keys: the store and its settings.
    pub(crate) kept: Kept,
}

impl Default for Config {
    fn default() -> Self {
        let formats: Vec<Arc<dyn Format>> = vec![
            Arc::new(Multipart::new()),
            #[cfg(feature = "json")]
            Arc::new(crate::format::Json::new()),
        ];
        Config {
            routes: vec![Route::path(PathPattern::new("/batch"), None)],
            any_path: false,
            formats,
            limits: Limits::default(),
            // Enough to overlap I/O-bound handlers; low enough that one batch cannot take over a
            // database pool.
            concurrency: 16,
            // A `TimeoutLayer` outside the batch layer cannot bound a batch: the answer's head
            // goes out at once and the items run while its body streams. So the layer bounds
            // the whole batch itself, within what load balancers allow an idle stream (60 s on
            // AWS ALB). Each item is bounded by that too; a per-item timer is opt-in, since it
            // costs a timer per item, and a `TimeoutLayer` inside bounds handlers as well.
            item_timeout: None,
            batch_timeout: Some(Duration::from_secs(60)),
            auth: AuthPolicy::default(),
            request_id_header: Some(HeaderName::from_static("x-request-id")),
            max_nesting: 0,
            policy: ItemPolicy::default(),
            budget: None,
            execution: Execution::Polled,
            service_root: None,
            public_origins: Vec::new(),
            trust_forwarded: false,
            has_tests: false,
            pinned: Pinned::default(),
            kept: Kept::default(),
        }
    }
}

impl Config {
    /// The route a request path is a batch path of, if any.
    #[cfg(test)]
    pub(crate) fn route(&self, path: &str) -> Option<&Route> {
        if self.any_path {
            return self.routes.first();
        }
        self.routes
            .iter()
            .find(|r| r.when.is_none() && r.matches_path(path))
    }

    /// The index of the plain-path route a request path is a batch path of, if any.
    #[inline]
    pub(crate) fn route_of_path(&self, path: &str) -> Option<usize> {
        if self.any_path {
            return (!self.routes.is_empty()).then_some(0);
        }
        self.routes
            .iter()
            .position(|r| r.when.is_none() && r.matches_path(path))
    }

    /// The index of the route with a test on the request that `head` passes. These routes are
    /// tried after the plain paths, in the order they were added.
    pub(crate) fn route_of_head(&self, head: &Request<()>) -> Option<usize> {
        self.routes.iter().position(|r| r.matches_head(head))
    }

    pub(crate) fn formats_of<'a>(&'a self, route: Option<&'a Route>) -> &'a [Arc<dyn Format>] {
        route
            .and_then(|r| r.formats.as_deref())
            .unwrap_or(&self.formats)
    }

    /// Route `route`'s asynchronous batches, if it has them.
    pub(crate) fn respond_async_of(&self, route: usize) -> Option<&RespondAsync> {
        self.routes[route]
            .respond_async
            .as_ref()
            .or(self.kept.respond_async.as_ref())
    }

    /// Route `route`'s idempotency keys, if it has them.
    pub(crate) fn idempotency_of(&self, route: usize) -> Option<&Idempotency> {
        self.routes[route]
            .idempotency
            .as_ref()
            .or(self.kept.idempotency.as_ref())
    }

    pub(crate) fn is_batch_path(&self, path: &str) -> bool {
        // A route with a test on the request cannot be told from an item's path alone; its
        // batches are posted to ordinary paths (Azure Storage's `/{container}`).
        self.routes
            .iter()
            .any(|r| r.when.is_none() && r.matches_path(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_param_paths() {
        let p = PathPattern::new("/batch");
        assert!(p.matches("/batch"));
        assert!(!p.matches("/batch/"));
        assert!(!p.matches("/v1/batch"));
        let p = PathPattern::new("/batch/{api}/{version}");
        assert!(p.matches("/batch/farm/v1"));
        assert!(!p.matches("/batch/farm"));
        assert!(!p.matches("/batch/farm/v1/x"));
        assert!(!p.matches("/batch//v1"));
    }
}
