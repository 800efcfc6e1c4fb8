//! One batch's run: read the body, decode it, check its items, weigh its cost, and hand the items
//! to the scheduler behind a streaming body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::BodyExt;
use tower_service::Service;

use crate::body::{BatchBody, ResponseBody};
use crate::cancel::Cancel;
use crate::change_set::{self, Rule};
use crate::check::check_limits;
use crate::config::Config;
use crate::context::{BatchContext, BatchStore};
use crate::error::{refused, BatchError, BoxError};
use crate::format::dialect::ChangeSets;
use crate::format::{DecodeContext, Format};
use crate::graph::{self, Ids};
use crate::inherit::{self, Outer};
use crate::item::{Item, ItemMeta};
use crate::observe::{self, MountSuspect, Record};
use crate::path;
use crate::schedule::budget::Budget;
use crate::schedule::launcher::Launcher;
use crate::schedule::{Order, References, Scheduler, Sets, Slot};

fn error_body<B>(err: BatchError) -> Response<ResponseBody<B>> {
    observe::refused(&err);
    err.to_response().map(ResponseBody::full)
}

/// Reads the whole batch body, within the body limit and the read timeout.
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
            // The limit may be this layer's (the error itself) or an outer
            // `RequestBodyLimitLayer`'s, whose error reaches here wrapped (axum's `Body` wraps
            // every body error): look down the chain. Only this layer's limit is known here.
            let limit =
                |e: &(dyn std::error::Error + 'static)| e.is::<http_body_util::LengthLimitError>();
            if limit(&*err) {
                Err(BatchError::BodyTooLarge {
                    limit: limits.max_body_bytes,
                })
            } else if std::iter::successors(err.source(), |e| e.source()).any(limit) {
                Err(BatchError::BodyOverOuterLimit)
            } else {
                Err(BatchError::BodyRead {
                    reason: err.to_string(),
                })
            }
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The service that items which are batches themselves run through, when nesting is on.
pub(crate) type Nested<N> = Option<N>;

/// Runs one batch request: everything from reading its body to the head of its answer, whose
/// body then runs the items as it streams.
pub(crate) async fn run_batch<S, N, ReqBody, ResBody, NestedBody>(
    service: S,
    nested: Nested<N>,
    config: Arc<Config>,
    route: usize,
    format: Arc<dyn Format>,
    content_type: mime::Mime,
    req: Request<ReqBody>,
) -> Response<ResponseBody<ResBody>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    N: Service<Request<ReqBody>, Response = Response<NestedBody>> + Clone + Send + 'static,
    N::Future: Send + 'static,
    N::Error: Into<BoxError>,
    NestedBody: http_body::Body<Data = Bytes> + Send + 'static,
    NestedBody::Error: Into<BoxError>,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let mount = parts.extensions.remove::<MountSuspect>();
    // A batch that is an item of another batch counts as nested whichever layer it reaches: the
    // enclosing batch's context travels with the item.
    let depth = parts
        .extensions
        .get::<BatchContext>()
        .map_or(0, |c| c.depth);
    if depth > config.max_nesting {
        return error_body(BatchError::TooDeep {
            depth,
            limit: config.max_nesting,
        });
    }
    let bytes = match read_body(body, &parts, &config).await {
        Ok(b) => b,
        Err(err) => return error_body(err),
    };
    let store = BatchStore::new();
    let route_index = route;
    let route = &config.routes[route];
    let dialect = &route.dialect;
    let cx =
        DecodeContext::new(&parts, &content_type, &config.limits, &store).with_dialect(dialect);
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
    let plan = match change_set::plan(&items, || match route.dialect.get_change_sets() {
        ChangeSets::Refused => Rule::Refused(route.dialect.name()),
        ChangeSets::NonAtomic => Rule::NonAtomic,
        _ => Rule::Atomic(route.transactions.clone()),
    }) {
        Ok(plan) => plan,
        Err(err) => return error_body(err),
    };
    let sets: &[std::ops::Range<usize>] = plan.as_ref().map_or(&[], |p| &p.sets);
    // One pass: every per-item limit, then the path the inner service will see, which weights
    // and policies look at. A path that starts with a `$` reference is resolved when its item
    // starts, once the item it names has answered.
    let root = route
        .service_root
        .as_deref()
        .or(config.service_root.as_deref());
    let base = path::base_of(parts.uri.path());
    let mut candidates: Vec<usize> = Vec::new();
    for (i, item) in items.iter_mut().enumerate() {
        let Ok(request) = &mut item.request else {
            continue;
        };
        if change_set::reference(request.uri().path(), [base, root]).is_some() {
            match check_limits(request, &config.limits) {
                Ok(()) => candidates.push(i),
                Err(err) => item.request = Err(err),
            }
            continue;
        }
        let checked = check_limits(request, &config.limits)
            .and_then(|()| path::resolve(request.uri(), base, root));
        match checked {
            Ok(Some(uri)) => *request.uri_mut() = uri,
            Ok(None) => {}
            Err(err) => item.request = Err(err),
        }
    }
    let ids = match Ids::new(&items, sets, !candidates.is_empty()) {
        Ok(ids) => ids,
        Err(err) => return error_body(err),
    };
    let found = references(&items, &ids, candidates, [base, root]);
    let go_on = change_set::continue_on_error(&parts.headers);
    let chain = dialect.get_stop_on_error() && !go_on && items.len() > 1;
    let graph = match graph::build(&items, &ids, sets, &found.edges, chain) {
        Ok(g) => g,
        Err(err) => return error_body(err),
    };
    drop(ids);
    // Paths that are not references after all (no earlier item has that id) are resolved now.
    for i in found.plain {
        if let Ok(request) = &mut items[i].request {
            match path::resolve(request.uri(), base, root) {
                Ok(Some(uri)) => *request.uri_mut() = uri,
                Ok(None) => {}
                Err(err) => items[i].request = Err(err),
            }
        }
    }
    let references = found.refs.filter(|r| !r.is_empty()).map(Box::new);
    let sets = plan.map(|p| Box::new(Sets::new(p, || route.dialect.change_set_boundary())));
    let mut outer = Outer::new(&parts, &config);
    outer.for_route(route, base);
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
    let batch_id: Arc<str> = Arc::from(crate::id::batch_id());
    let span = tracing::info_span!(
        "batch",
        batch_id = %batch_id,
        format = format.name(),
        items = n,
        depth = outer.depth + 1,
    );
    // What the encoder needs of each item comes out first, leaving the requests in place...
    let metas: Vec<ItemMeta> = items
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
                let request_id = config.request_id_header.as_ref();
                let request_id = request_id.zip(inherit::derived_id(&outer, index));
                Slot::Done(refused(&err, request_id))
            }
        })
        .collect();
    let launcher = Box::new(Launcher::<S, N, ReqBody, NestedBody> {
        service,
        nested,
        context: BatchContext {
            batch_id: batch_id.clone(),
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
        max_item_response_bytes: config.limits.max_item_response_bytes,
        item_timer: observe::ItemTimer::for_batch(),
        _body: std::marker::PhantomData,
    });
    let mut scheduler = Scheduler::new(
        launcher,
        entries,
        Order {
            graph,
            sets,
            refs: references,
        },
        config.concurrency,
        config.execution,
        config.batch_timeout,
        Arc::new(Budget::new(
            config.limits.max_held_bytes,
            config.limits.max_response_bytes,
        )),
    );
    if let Some(cancel) = parts.extensions.get::<Cancel>() {
        scheduler = scheduler.cancel_on(cancel.clone());
    }
    let content_type = encoder.content_type();
    let record = Record::new(
        batch_id.clone(),
        config.clone(),
        route_index,
        format.name(),
        dialect.name(),
        n,
        mount,
    );
    let body = BatchBody::new(scheduler, encoder, metas, span, record, &config.limits);
    let mut res = Response::new(ResponseBody::batch(body));
    *res.status_mut() = dialect.get_batch_status();
    res.headers_mut().insert(header::CONTENT_TYPE, content_type);
    if let Some((name, value)) = dialect.version_for(&parts.headers) {
        res.headers_mut().insert(name, value);
    }
    if dialect.get_stop_on_error() && go_on {
        res.headers_mut().insert(
            http::HeaderName::from_static("preference-applied"),
            http::HeaderValue::from_static("odata.continue-on-error"),
        );
    }
    res
}

/// What [`references`] found.
struct Found {
    /// The dependency each reference adds: (referring item, named item).
    edges: Vec<(usize, usize)>,
    /// The references, with what they name.
    refs: Option<References>,
    /// Candidates that name no earlier item: their paths are ordinary after all.
    plain: Vec<usize>,
}

/// The `$` references among the `candidates` (items whose path starts with `$<id>`): those
/// whose id names an earlier item.
fn references(
    items: &[Item],
    ids: &Ids<'_>,
    candidates: Vec<usize>,
    prefixes: [Option<&str>; 2],
) -> Found {
    let mut found = Found {
        edges: Vec::new(),
        refs: None,
        plain: Vec::new(),
    };
    if candidates.is_empty() {
        return found;
    }
    let mut refs = References::new(prefixes[1].map(str::to_owned));
    for i in candidates {
        let Ok(request) = &items[i].request else {
            continue;
        };
        let named = change_set::reference(request.uri().path(), prefixes)
            .and_then(|(id, tail)| ids.get(id).filter(|&j| j < i).map(|j| (j, tail)));
        let Some((j, tail)) = named else {
            found.plain.push(i);
            continue;
        };
        let url = items[j]
            .request
            .as_ref()
            .map_or_else(|_| String::new(), |r| r.uri().to_string());
        refs.add(i, j, tail.to_owned(), url);
        found.edges.push((i, j));
    }
    found.refs = Some(refs);
    found
}
