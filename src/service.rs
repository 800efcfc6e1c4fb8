//! [`Batch`]: the middleware service. It recognises batch requests, runs their items through the
//! inner service, and passes every other request through untouched.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower_service::Service;

use crate::body::{BatchBody, ResponseBody};
use crate::context::{BatchContext, BatchStore};
use crate::error::BatchError;
use crate::format::{self, DecodeContext, Format};
use crate::future::ResponseFuture;
use crate::inherit::{self, Outer};
use crate::item::Item;
use crate::layer::{BatchLayer, Config};
use crate::schedule::{Graph, Launcher, Scheduler, Slot};
use crate::BoxError;

/// Serves batches in front of an inner service: see the [crate docs](crate) for an example.
///
/// Build it with [`BatchLayer`] or [`Batch::new`].
#[derive(Clone)]
pub struct Batch<S> {
    inner: S,
    config: Arc<Config>,
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
        BatchLayer::new().layer_service(inner)
    }

    /// A [`BatchLayer`] to configure.
    pub fn layer() -> BatchLayer {
        BatchLayer::new()
    }

    pub(crate) fn from_parts(inner: S, config: Arc<Config>) -> Self {
        Batch { inner, config }
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

impl BatchLayer {
    fn layer_service<S>(&self, inner: S) -> Batch<S> {
        Batch::from_parts(inner, self.config.clone())
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
        let Some(route) = self.config.route(req.uri().path()) else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        let formats = self.config.formats_of(Some(route));
        if req.method() != Method::POST {
            return reject(BatchError::MethodNotAllowed {
                method: req.method().to_string(),
            });
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
        let config = self.config.clone();
        ResponseFuture::batch(Box::pin(run_batch(service, config, format, mime, req)))
    }
}

/// Parses a content type, tolerating what real clients send and `mime` refuses: parameter values
/// with characters that should have been quoted (`type=application/http`, `boundary=a=b`).
pub(crate) fn parse_content_type(ct: &str) -> Option<mime::Mime> {
    if let Ok(m) = ct.parse() {
        return Some(m);
    }
    let mut pieces = ct.split(';');
    let mut fixed = pieces.next()?.trim().to_owned();
    for param in pieces {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (name, value) = param.split_once('=')?;
        let value = value.trim();
        fixed.push_str("; ");
        fixed.push_str(name.trim());
        fixed.push('=');
        if value.starts_with('"') {
            fixed.push_str(value);
        } else if value.contains('"') || value.contains('\\') {
            return None;
        } else {
            fixed.push('"');
            fixed.push_str(value);
            fixed.push('"');
        }
    }
    fixed.parse().ok()
}

fn reject<F, B>(err: BatchError) -> ResponseFuture<F, B> {
    tracing::debug!(error = %err, "batch rejected");
    ResponseFuture::reject(err.to_response())
}

fn error_body<B>(err: BatchError) -> Response<ResponseBody<B>> {
    tracing::debug!(error = %err, "batch rejected");
    err.to_response().map(ResponseBody::full)
}

async fn read_body<B>(
    body: B,
    parts: &http::request::Parts,
    config: &Config,
) -> Result<Bytes, BatchError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let limits = &config.limits;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(BatchError::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let collect = http_body_util::Limited::new(body, limits.max_body_bytes).collect();
    match tokio::time::timeout(limits.read_timeout, collect).await {
        Err(_) => Err(BatchError::ReadTimeout {
            timeout: limits.read_timeout,
        }),
        Ok(Err(err)) => {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(BatchError::BodyTooLarge {
                    limit: limits.max_body_bytes,
                })
            } else {
                Err(BatchError::BodyRead {
                    reason: err.to_string(),
                })
            }
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Checks ids and dependencies; returns the dependency graph when any item has dependencies.
pub(crate) fn check_items(items: &[Item]) -> Result<Option<Graph>, BatchError> {
    if let Some(i) = first_duplicate(items) {
        let id = items[i].id().unwrap_or("");
        return Err(BatchError::DuplicateId { id: id.to_owned() });
    }
    if items.iter().all(|i| i.depends_on().is_empty()) {
        return Ok(None);
    }
    // The ids are unique now, so each names one item.
    let index: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.id().map(|id| (id, i)))
        .collect();
    let n = items.len();
    let mut dependents = vec![Vec::new(); n];
    let mut remaining = vec![0usize; n];
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, item) in items.iter().enumerate() {
        for dep in item.depends_on() {
            let Some(&j) = index.get(dep.as_str()) else {
                return Err(BatchError::UnknownDependency {
                    id: item.id().unwrap_or("").to_owned(),
                    depends_on: dep.clone(),
                });
            };
            if !deps[i].contains(&j) {
                deps[i].push(j);
                dependents[j].push(i);
                remaining[i] += 1;
            }
        }
    }
    if let Some(cycle) = find_cycle(&deps) {
        let name = |i: usize| items[i].id().unwrap_or("?").to_owned();
        return Err(BatchError::DependencyCycle {
            cycle: cycle.into_iter().map(name).collect(),
        });
    }
    Ok(Some(Graph {
        dependents,
        remaining,
    }))
}

/// The index of the first item whose id an earlier item already has, if any.
///
/// Ids are the client's to choose, so they are not hashed with a fixed hash. Ids of up to 15
/// bytes (the usual `item12`, `1`, ...) are packed into one integer each, bytes first and the
/// length last, and sorted: O(n log n) whatever they are, with one integer compare a step.
/// Only when that finds a repeat, or an id is longer, does the general pass below run: a
/// randomly seeded hash map, which also says which item repeats first.
fn first_duplicate(items: &[Item]) -> Option<usize> {
    let mut keys: Vec<u128> = Vec::with_capacity(items.len());
    let mut packed = true;
    for id in items.iter().filter_map(Item::id) {
        let bytes = id.as_bytes();
        if bytes.len() > 15 {
            packed = false;
            break;
        }
        let mut buf = [0u8; 16];
        buf[..bytes.len()].copy_from_slice(bytes);
        buf[15] = bytes.len() as u8;
        keys.push(u128::from_be_bytes(buf));
    }
    if packed {
        keys.sort_unstable();
        if keys.windows(2).all(|w| w[0] != w[1]) {
            return None;
        }
    }
    let mut seen: HashMap<&str, ()> = HashMap::with_capacity(items.len());
    items
        .iter()
        .enumerate()
        .find(|(_, item)| item.id().is_some_and(|id| seen.insert(id, ()).is_some()))
        .map(|(i, _)| i)
}

/// A cycle in the "depends on" graph, as item indexes with the first repeated at the end.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    // Iterative depth-first search with three colours, so deep chains cannot overflow the stack.
    let n = deps.len();
    let mut colour = vec![0u8; n]; // 0 new, 1 on the path, 2 finished
    for root in 0..n {
        if colour[root] != 0 {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        colour[root] = 1;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&dep) = deps[node].get(*next) {
                *next += 1;
                match colour[dep] {
                    0 => {
                        colour[dep] = 1;
                        path.push((dep, 0));
                    }
                    1 => {
                        let start = path
                            .iter()
                            .position(|(n, _)| *n == dep)
                            .expect("on the path");
                        let mut cycle: Vec<usize> = path[start..].iter().map(|(n, _)| *n).collect();
                        cycle.push(dep);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                colour[node] = 2;
                path.pop();
            }
        }
    }
    None
}

async fn run_batch<S, ReqBody, ResBody>(
    service: S,
    config: Arc<Config>,
    format: Arc<dyn Format>,
    content_type: mime::Mime,
    req: Request<ReqBody>,
) -> Response<ResponseBody<ResBody>>
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
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, &parts, &config).await {
        Ok(b) => b,
        Err(err) => return error_body(err),
    };
    let store = BatchStore::new();
    let cx = DecodeContext {
        parts: &parts,
        content_type: &content_type,
        limits: &config.limits,
        store: &store,
    };
    let mut items = match format.decode(&cx, bytes) {
        Ok(items) => items,
        Err(err) => return error_body(err),
    };
    if items.is_empty() {
        return error_body(BatchError::Empty);
    }
    if items.len() > config.limits.max_items {
        return error_body(BatchError::TooManyItems {
            count: items.len(),
            limit: config.limits.max_items,
        });
    }
    let graph = match check_items(&items) {
        Ok(g) => g,
        Err(err) => return error_body(err),
    };
    let outer = Outer::new(&parts, &config);
    let mut budget = None;
    if let Some((limit, weigh)) = &config.budget {
        let cost: u64 = items
            .iter()
            .filter_map(|i| i.request().ok())
            .map(|r| weigh(r))
            .fold(0u64, u64::saturating_add);
        match &outer.budget {
            // A nested batch spends from what the enclosing batch has left.
            Some(remaining) => {
                let spent = remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(cost)
                });
                if let Err(left) = spent {
                    return error_body(BatchError::CostExceeded { cost, limit: left });
                }
                budget = Some(remaining.clone());
            }
            None => {
                if cost > *limit {
                    return error_body(BatchError::CostExceeded {
                        cost,
                        limit: *limit,
                    });
                }
                budget = Some(Arc::new(AtomicU64::new(limit - cost)));
            }
        }
    }
    let encoder = format.encoder(&cx);
    let n = items.len();
    let batch_id: Arc<str> = Arc::from(format!("{:016x}", format::multipart::write::random_u64()));
    let span = tracing::info_span!(
        "batch",
        batch_id = %batch_id,
        format = format.name(),
        items = n,
        depth = outer.depth + 1,
    );
    // What the encoder needs of each item comes out first, leaving the requests in place...
    let metas: Vec<crate::ItemMeta> = items
        .iter_mut()
        .enumerate()
        .map(|(index, item)| item.take_meta(index))
        .collect();
    // ...so that they become the scheduler's slots in the items' own allocation (`collect` reuses
    // it when nothing but `map` and `enumerate` stands between): the decoded batch is never held
    // twice, which would set the batch's peak memory.
    let entries: Vec<Slot> = items
        .into_iter()
        .enumerate()
        .map(|(index, Item { request, id, .. })| match request {
            // Items are checked and given what they inherit, their `BatchContext` included,
            // when they start (see `Launcher`): a waiting item holds only its parsed request.
            Ok(r) => {
                // `request_id` is recorded when the item starts and has its id (see
                // `Launcher`). When no subscriber takes INFO spans (none is installed, or all
                // filter them out), the span could not be enabled. Made anyway, a disabled span
                // still does work for the `log` crate (axum turns on tracing's `log` feature)
                // when it is made, entered, recorded and dropped; `Span::none()` does none.
                let item_span =
                    if tracing::level_filters::LevelFilter::current() >= tracing::Level::INFO {
                        tracing::info_span!(
                            parent: &span,
                            "batch_item",
                            index,
                            id = id.as_deref().unwrap_or(""),
                            method = %r.method(),
                            path = r.uri().path(),
                            request_id = tracing::field::Empty,
                            status = tracing::field::Empty,
                        )
                    } else {
                        tracing::Span::none()
                    };
                Slot::Waiting(r, item_span, id)
            }
            Err(err) => {
                tracing::debug!(parent: &span, index, error = %err, "batch item refused");
                let mut res = err.to_response();
                if let (Some(name), Some(id)) = (
                    &config.request_id_header,
                    inherit::derived_id(&outer, index),
                ) {
                    res.headers_mut().insert(name.clone(), id);
                }
                Slot::Done(res)
            }
        })
        .collect();
    let launcher = Box::new(Launcher::<S, ReqBody> {
        service,
        context: BatchContext {
            batch_id,
            index: 0,
            id: None,
            total: n,
            depth: outer.depth + 1,
            store,
            budget,
        },
        outer: Arc::new(outer),
        config: config.clone(),
        item_timeout: config.item_timeout,
        max_response_bytes: config.limits.max_item_response_bytes,
        nest: (config.max_nesting > 0).then(|| config.clone()),
        _body: std::marker::PhantomData,
    });
    let scheduler = Scheduler::new(
        launcher,
        entries,
        graph,
        config.concurrency,
        config.execution,
        config.batch_timeout,
    );
    let content_type = encoder.content_type();
    let body = BatchBody::new(
        scheduler,
        encoder,
        metas,
        span,
        config.limits.max_response_bytes,
    );
    let mut res = Response::new(ResponseBody::batch(body));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert(header::CONTENT_TYPE, content_type);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, deps: &[&str]) -> Item {
        Item::new(Request::new(Bytes::new()))
            .with_id(id)
            .with_depends_on(deps.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn lenient_content_types() {
        let m =
            parse_content_type("multipart/mixed; boundary=batch_1; type=application/http").unwrap();
        assert_eq!(m.essence_str(), "multipart/mixed");
        assert_eq!(m.get_param("boundary").unwrap(), "batch_1");
        let m = parse_content_type("multipart/mixed; boundary===a=b==").unwrap();
        assert_eq!(m.get_param("boundary").unwrap(), "==a=b==");
        assert!(parse_content_type("multipart/mixed; boundary").is_none());
        assert!(parse_content_type("not a type").is_none());
    }

    #[test]
    fn duplicate_ids() {
        let err = check_items(&[item("a", &[]), item("a", &[])]).unwrap_err();
        assert_eq!(err, BatchError::DuplicateId { id: "a".into() });
    }

    #[test]
    fn first_repeat_is_named_for_short_and_long_ids() {
        let long = "an-id-longer-than-fifteen-bytes";
        for ids in [
            ["b", "a", "c", "a", "b"],
            [long, "x", "x", long, "y"],
            ["a\0", "a", "", "b", "a"],
        ] {
            let items: Vec<Item> = ids.iter().map(|id| item(id, &[])).collect();
            let first = (1..ids.len())
                .find(|&i| !ids[i].is_empty() && ids[..i].contains(&ids[i]))
                .unwrap();
            assert_eq!(first_duplicate(&items), Some(first), "{ids:?}");
        }
        let distinct = ["a", "a\0", "\0a", long, &long[1..], "0123456789abcde"];
        let items: Vec<Item> = distinct.iter().map(|id| item(id, &[])).collect();
        assert_eq!(first_duplicate(&items), None);
        let items: Vec<Item> = (0..1000).map(|i| item(&format!("item{i}"), &[])).collect();
        assert_eq!(first_duplicate(&items), None);
    }

    #[test]
    fn unknown_dependency() {
        let err = check_items(&[item("a", &["zz"])]).unwrap_err();
        assert!(matches!(err, BatchError::UnknownDependency { .. }));
    }

    #[test]
    fn cycle_is_named() {
        let err =
            check_items(&[item("a", &["c"]), item("b", &["a"]), item("c", &["b"])]).unwrap_err();
        let BatchError::DependencyCycle { cycle } = err else {
            panic!("{err:?}")
        };
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let err = check_items(&[item("a", &["a"])]).unwrap_err();
        assert_eq!(
            err,
            BatchError::DependencyCycle {
                cycle: vec!["a".into(), "a".into()]
            }
        );
    }

    #[test]
    fn chain_and_fan_in_are_fine() {
        let g = check_items(&[item("a", &[]), item("b", &["a"]), item("c", &["a", "b"])])
            .unwrap()
            .unwrap();
        assert_eq!(g.remaining, vec![0, 1, 2]);
        assert_eq!(g.dependents[0], vec![1, 2]);
    }
}
