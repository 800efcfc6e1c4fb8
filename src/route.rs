//! [`BatchRoute`]: where batches are posted, and the rules they are read and answered by.

use std::fmt;
use std::sync::Arc;

use http::Request;

use crate::config::{normalise_root, PathPattern, Route};
use crate::format::{Dialect, Format};
use crate::kept::{Idempotency, RespondAsync};
use crate::transaction::TransactionProvider;

/// A place batches are posted to, with its [`Dialect`], its service root and its transactions.
/// Add it with [`BatchLayer::route`](crate::BatchLayer::route).
///
/// ```
/// use http_batch::{BatchLayer, BatchRoute};
/// use http_batch::format::Dialect;
///
/// let layer = BatchLayer::new()
///     // Google's clients, as by default.
///     .route(BatchRoute::path("/batch"))
///     // OData 4: items such as `GET animals/pony` run as `/farm/v1/animals/pony`.
///     .route(
///         BatchRoute::path("/odata/v4/farm/v1/$batch")
///             .dialect(Dialect::odata_v4())
///             .service_root("/farm/v1"),
///     )
///     // Azure Storage posts its batches to `/{container}?restype=container&comp=batch`.
///     .route(
///         BatchRoute::when(|req| {
///             req.uri().query().is_some_and(|q| {
///                 q.split('&').any(|p| p == "comp=batch")
///                     && q.split('&').any(|p| p == "restype=container")
///             })
///         })
///         .dialect(Dialect::azure_storage()),
///     );
/// ```
#[derive(Clone)]
#[must_use]
pub struct BatchRoute {
    pub(crate) route: Route,
}

impl fmt::Debug for BatchRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.route;
        f.debug_struct("BatchRoute")
            .field("path", &r.pattern.as_ref().map(|p| p.raw.as_str()))
            .field("when", &r.when.is_some())
            .field("dialect", &r.dialect.name())
            .field("service_root", &r.service_root)
            .field("transactions", &r.transactions.is_some())
            .field("encoded_slashes", &r.encoded_slashes)
            .field("respond_async", &r.respond_async)
            .field("idempotency", &r.idempotency)
            .finish_non_exhaustive()
    }
}

impl BatchRoute {
    /// Batches posted to `path`, which matches as in [`BatchLayer::path`](crate::BatchLayer::path)
    /// (`{name}` segments match any one segment). Google's rules until
    /// [`dialect`](Self::dialect) says otherwise.
    pub fn path(path: impl AsRef<str>) -> Self {
        let mut route = Route::path(PathPattern::new(path.as_ref()), None);
        route.explicit = true;
        BatchRoute { route }
    }

    /// Batches posted to any path, when `test` says so of the request's head (its method, URI
    /// and headers; the body is not read). Routes with a path are tried first; then these, in
    /// the order they were added.
    pub fn when<F>(test: F) -> Self
    where
        F: Fn(&Request<()>) -> bool + Send + Sync + 'static,
    {
        let mut route = Route::path(PathPattern::new("/"), None);
        route.pattern = None;
        route.when = Some(Arc::new(test));
        route.explicit = true;
        BatchRoute { route }
    }

    /// Also requires `test` of a request to this route's path.
    pub fn and_when<F>(mut self, test: F) -> Self
    where
        F: Fn(&Request<()>) -> bool + Send + Sync + 'static,
    {
        self.route.when = Some(Arc::new(test));
        self
    }

    /// The rules batches here are read and answered by. Default [`Dialect::google`].
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.route.dialect = dialect;
        self
    }

    /// Resolves item URLs under `root`, as OData clients expect: with `service_root("/farm/v1")`,
    /// an item for `animals/pony` (or `/animals/pony`) runs as `/farm/v1/animals/pony`, while
    /// one that already names `/farm/v1/...` is left alone. This is apart from where the batch
    /// is posted. Default: the layer's [`service_root`](crate::BatchLayer::service_root).
    pub fn service_root(mut self, root: impl AsRef<str>) -> Self {
        self.route.service_root = normalise_root(root.as_ref());
        self
    }

    /// Serves only `format` here (call again to add more). Default: the layer's formats.
    pub fn format(mut self, format: impl Format) -> Self {
        self.route
            .formats
            .get_or_insert_with(Vec::new)
            .push(Arc::new(format));
        self
    }

    /// Lets items name an encoded `/` (`%2F`) inside a path segment, as Google Cloud Storage's
    /// clients write object names (`DELETE /storage/v1/b/{bucket}/o/dir%2Fname`). The inner
    /// service receives the path unchanged, so its router sees one segment; every policy of the
    /// layer (allow and deny prefixes, `.` and `..` segments, nesting) reads it decoded, as
    /// `/`, so `%2F` cannot walk around them. Off by default: such an item is refused with
    /// `400`, saying why, since routers disagree on what `%2F` means.
    pub fn encoded_slashes(mut self) -> Self {
        self.route.encoded_slashes = true;
        self
    }

    /// The transactions change sets run under at this route (see
    /// [`TransactionProvider`]).
    pub fn transactions(mut self, provider: impl TransactionProvider) -> Self {
        self.route.transactions = Some(Arc::new(provider));
        self
    }

    /// Answers batches sent here with `Prefer: respond-async` asynchronously, with a status
    /// monitor (see [`RespondAsync`]). Default: the layer's
    /// [`respond_async`](crate::BatchLayer::respond_async), off unless set there.
    pub fn respond_async(mut self, settings: RespondAsync) -> Self {
        self.route.respond_async = Some(settings);
        self
    }

    /// Keeps the answers of batches sent here with an `Idempotency-Key`, for their retries (see
    /// [`Idempotency`]). Default: the layer's
    /// [`idempotency`](crate::BatchLayer::idempotency), off unless set there.
    pub fn idempotency(mut self, settings: Idempotency) -> Self {
        self.route.idempotency = Some(settings);
        self
    }
}
