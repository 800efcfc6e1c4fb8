//! Change sets: items that commit or roll back together, through the application's
//! transactions. A stage between `inherit` and `schedule`: [`fold`] turns the items of each
//! change set into one scheduler slot, and [`run`] is that slot's future.
//!
//! A change set's items run in order, one after another. Each sees the change set's
//! [`Transaction`] among its request extensions. When every item answered 2xx, the transaction
//! commits and the change set is answered with every item's answer. On anything else (an answer
//! that is not 2xx, which a panic, a timeout or an oversized answer also become; an item that
//! could not be decoded; a commit that fails) the transaction rolls back, the items after the
//! failing one do not run, and the change set is answered with the failing response alone, as
//! OData says. When the batch's client leaves, the dropped change set rolls back.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode, Uri};

use crate::error::{error_response, BatchError, ItemError};
use crate::graph::Graph;
use crate::item::{GroupAnswers, Item, ItemMeta};
use crate::schedule::launch::Launch;
use crate::transaction::{Transaction, TransactionProvider};

/// One change set, folded into the request of the slot that runs it (as an extension).
#[derive(Clone)]
pub(crate) struct GroupRun {
    items: Arc<std::sync::Mutex<Vec<Member>>>,
    provider: Option<Arc<dyn TransactionProvider>>,
    boundary: String,
}

/// One item of a change set.
struct Member {
    request: Result<Request<Bytes>, ItemError>,
    meta: ItemMeta,
}

/// Whether any item is in a change set.
pub(crate) fn has_groups(items: &[Item]) -> bool {
    items.iter().any(|i| i.group.is_some())
}

/// What a route does with change sets, as the fold needs it.
pub(crate) enum Rule {
    Refused(&'static str),
    Atomic(Option<Arc<dyn TransactionProvider>>),
    NonAtomic,
}

/// Turns each change set's items into one item that runs them all, after checking that the
/// route takes change sets at all. `boundary` makes each change set's answer boundary.
pub(crate) fn fold(
    items: Vec<Item>,
    rule: Rule,
    boundary: impl Fn() -> String,
) -> Result<Vec<Item>, BatchError> {
    let provider = match rule {
        Rule::Refused(dialect) => return Err(BatchError::ChangeSetsRefused { dialect }),
        Rule::Atomic(None) => return Err(BatchError::NoTransactions),
        Rule::Atomic(Some(p)) => Some(p),
        Rule::NonAtomic => None,
    };
    let mut out: Vec<Item> = Vec::with_capacity(items.len());
    let mut current: Option<(u32, Vec<Member>)> = None;
    let mut done: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let mut index = 0;
    let flush = |current: &mut Option<(u32, Vec<Member>)>, out: &mut Vec<Item>| {
        if let Some((_, members)) = current.take() {
            let run = GroupRun {
                items: Arc::new(std::sync::Mutex::new(members)),
                provider: provider.clone(),
                boundary: boundary(),
            };
            let mut req = Request::new(Bytes::new());
            req.extensions_mut().insert(run);
            out.push(Item::new(req));
        }
    };
    for mut item in items {
        match item.group {
            None => {
                flush(&mut current, &mut out);
                out.push(item);
            }
            Some(g) => {
                if current.as_ref().is_some_and(|(cg, _)| *cg != g) {
                    flush(&mut current, &mut out);
                }
                if current.is_none() && !done.insert(g) {
                    return Err(BatchError::Malformed {
                        reason: "the requests of one change set (atomicity group) must follow \
                                 each other"
                            .into(),
                    });
                }
                let members = &mut current.get_or_insert_with(|| (g, Vec::new())).1;
                let meta = item.take_meta(index);
                index += 1;
                members.push(Member {
                    request: item.request,
                    meta,
                });
            }
        }
    }
    flush(&mut current, &mut out);
    Ok(out)
}

/// An item's weight against the cost budget: a change set weighs what its items weigh.
pub(crate) fn weight(
    req: &Request<Bytes>,
    weigh: &(dyn Fn(&Request<Bytes>) -> u64 + Send + Sync),
) -> u64 {
    match req.extensions().get::<GroupRun>() {
        Some(run) => run
            .items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|m| m.request.as_ref().ok())
            .map(weigh)
            .fold(0u64, u64::saturating_add),
        None => weigh(req),
    }
}

/// Rolls the transaction back when the change set is dropped before it finished (the client
/// left, the batch timed out).
struct Guard(Option<Transaction>);

impl Guard {
    fn take(&mut self) -> Option<Transaction> {
        self.0.take()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let rollback = tx.rollback();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(err) = rollback.await {
                        tracing::warn!(error = %err, "change set rollback failed");
                    }
                });
            }
        }
    }
}

/// Replaces a leading `$<Content-ID>` segment with the `Location` of that earlier item's
/// answer.
fn resolve_reference(req: &mut Request<Bytes>, locations: &HashMap<Arc<str>, String>) {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/$").or_else(|| path.strip_prefix('$')) else {
        return;
    };
    let (id, tail) = rest.split_once('/').map_or((rest, ""), |(a, b)| (a, b));
    let Some(location) = locations.get(id) else {
        return;
    };
    let mut target = location.trim_end_matches('/').to_owned();
    if !tail.is_empty() {
        target.push('/');
        target.push_str(tail);
    }
    if let Some(q) = req.uri().query() {
        target.push('?');
        target.push_str(q);
    }
    if let Ok(uri) = Uri::try_from(target) {
        *req.uri_mut() = uri;
    }
}

fn answer(
    index: usize,
    boundary: String,
    answers: Vec<(ItemMeta, Response<Bytes>)>,
    failed: bool,
) -> (usize, Response<Bytes>) {
    let status = if failed {
        answers
            .first()
            .map_or(StatusCode::INTERNAL_SERVER_ERROR, |(_, r)| r.status())
    } else {
        StatusCode::OK
    };
    let mut res = Response::new(Bytes::new());
    *res.status_mut() = status;
    res.extensions_mut().insert(GroupAnswers {
        boundary,
        answers,
        failed,
    });
    (index, res)
}

/// Runs one change set in slot `index`, and says who its members were, for a dialect that
/// answers each of them (SharePoint's flat shape) even when the change set failed.
pub(crate) async fn run(
    launcher: Box<dyn Launch>,
    index: usize,
    group: GroupRun,
    span: tracing::Span,
) -> (usize, Response<Bytes>) {
    let members: Vec<ItemMeta> = group
        .items
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|m| m.meta.clone())
        .collect();
    let (index, mut res) = run_members(launcher, index, group, span).await;
    res.extensions_mut()
        .insert(crate::item::ChangeSetMembers(members));
    (index, res)
}

/// Runs one change set in slot `index`: begin, each item in order, then commit or roll back.
async fn run_members(
    mut launcher: Box<dyn Launch>,
    index: usize,
    group: GroupRun,
    span: tracing::Span,
) -> (usize, Response<Bytes>) {
    let members = std::mem::take(&mut *group.items.lock().unwrap_or_else(|e| e.into_inner()));
    // An item that could not be decoded fails the change set before anything runs.
    let mut ready = Vec::with_capacity(members.len());
    for member in members {
        match member.request {
            Ok(req) => ready.push((req, member.meta)),
            Err(err) => {
                let answers = vec![(member.meta, err.to_response())];
                return answer(index, group.boundary, answers, true);
            }
        }
    }
    let mut guard = Guard(None);
    if let Some(provider) = &group.provider {
        match provider.begin().await {
            Ok(tx) => guard.0 = Some(tx),
            Err(err) => {
                tracing::warn!(parent: &span, error = %err, "change set transaction did not begin");
                let res = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "the change set's transaction could not begin: {err}; nothing was run"
                    ),
                );
                let meta = ready.into_iter().next().map(|(_, meta)| meta);
                let answers = meta.map(|m| (m, res)).into_iter().collect();
                return answer(index, group.boundary, answers, true);
            }
        }
    }
    let mut locations: HashMap<Arc<str>, String> = HashMap::new();
    let mut answers = Vec::with_capacity(ready.len());
    for (mut req, meta) in ready {
        resolve_reference(&mut req, &locations);
        if let Some(tx) = &guard.0 {
            req.extensions_mut().insert(tx.clone());
        }
        let id = meta.id.clone();
        let (_, res) = launcher.launch(index, req, span.clone(), id.clone()).await;
        if !res.status().is_success() {
            if let Some(tx) = guard.take() {
                if let Err(err) = tx.rollback().await {
                    tracing::warn!(parent: &span, error = %err, "change set rollback failed");
                }
            }
            return answer(index, group.boundary, vec![(meta, res)], true);
        }
        if let (Some(id), Some(location)) = (
            id,
            res.headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok()),
        ) {
            locations.insert(id, location.to_owned());
        }
        answers.push((meta, res));
    }
    if let Some(tx) = guard.take() {
        if let Err(err) = tx.commit().await {
            // A commit that fails leaves nothing committed; the transaction is not used again.
            tracing::warn!(parent: &span, error = %err, "change set commit failed");
            let res = error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!(
                    "the change set's transaction failed to commit: {err}; nothing of it was kept"
                ),
            );
            let meta = answers.pop().map(|(m, _)| m);
            let answers = meta.map(|m| (m, res)).into_iter().collect();
            return answer(index, group.boundary, answers, true);
        }
    }
    answer(index, group.boundary, answers, false)
}

/// Whether the batch asked, with `Prefer`, to run every item whatever fails before it.
pub(crate) fn continue_on_error(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            let p = p.trim();
            let (name, value) = p.split_once('=').map_or((p, "true"), |(n, v)| (n, v));
            let name = name.trim();
            (name.eq_ignore_ascii_case("odata.continue-on-error")
                || name.eq_ignore_ascii_case("continue-on-error"))
                && value.trim().trim_matches('"').eq_ignore_ascii_case("true")
        })
}

/// The answer of an item that did not run because an item before it failed.
pub(crate) const NOT_RUN: &str = "not run: an earlier item of the batch failed, and the batch \
     did not ask to go on (send `Prefer: odata.continue-on-error` to run every item)";

/// Makes each of `n` items wait for the one before it, on top of the dependencies already
/// there: a failure then stops everything after it, as OData asks of a batch that does not
/// continue on error.
pub(crate) fn chain(graph: Option<Graph>, n: usize) -> Graph {
    let mut graph = graph.unwrap_or_else(|| Graph {
        dependents: vec![Vec::new(); n],
        remaining: vec![0; n],
        not_run: NOT_RUN,
    });
    graph.not_run = NOT_RUN;
    for i in 1..n {
        if !graph.dependents[i - 1].contains(&i) {
            graph.dependents[i - 1].push(i);
            graph.remaining[i] += 1;
        }
    }
    graph
}
