//! Change sets: items that commit or roll back together, through the application's
//! transactions. A stage of the plan: [`plan`] finds each change set's members (a run of
//! adjacent items) and checks that the route takes change sets at all; the scheduler then runs
//! the members as items like any other (the same budgets, concurrency, deadlines and
//! dependencies), one after another, under the change set's [`Transaction`], and keeps their
//! answers until the change set is decided. [`SetRun`] is one change set's state there.
//!
//! A change set commits only when every member answered `2xx`, and only once the scheduler has
//! made sure its answers fit the batch response; otherwise it rolls back, and its answer says
//! why. Its answer says committed if and only if it committed. A begun transaction ends
//! exactly once: by commit, by rollback, or, when the change set is dropped before either (the
//! client left), by a rollback spawned from [`Open`]'s drop.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};

use crate::error::{error_response, not_run, ran, BatchError, BoxError};
use crate::item::Item;
use crate::transaction::{Conflict, Transaction, TransactionProvider};

/// What a route does with change sets.
pub(crate) enum Rule {
    /// The dialect takes none: a batch that has one is refused.
    Refused(&'static str),
    /// All or nothing, under the provider's transactions (none given: refused).
    Atomic(Option<Arc<dyn TransactionProvider>>),
    /// Answered as change sets, but nothing is undone when a member fails.
    NonAtomic,
}

/// A batch's change sets, as the scheduler runs them.
pub(crate) struct Plan {
    /// Each change set's members, in batch order.
    pub(crate) sets: Vec<Range<usize>>,
    /// The transactions they run under (`None`: not atomic).
    pub(crate) provider: Option<Arc<dyn TransactionProvider>>,
}

/// Finds the change sets among `items` and checks them against the route's `rule`. `None` when
/// there are none.
pub(crate) fn plan(
    items: &[Item],
    rule: impl FnOnce() -> Rule,
) -> Result<Option<Plan>, BatchError> {
    if items.iter().all(|i| i.group.is_none()) {
        return Ok(None);
    }
    let provider = match rule() {
        Rule::Refused(dialect) => return Err(BatchError::ChangeSetsRefused { dialect }),
        Rule::Atomic(None) => return Err(BatchError::NoTransactions),
        Rule::Atomic(Some(p)) => Some(p),
        Rule::NonAtomic => None,
    };
    let mut sets: Vec<Range<usize>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut current: Option<(u32, usize)> = None;
    for (i, item) in items.iter().enumerate() {
        if current.is_some_and(|(g, _)| Some(g) != item.group) {
            let (_, start) = current.take().expect("checked");
            sets.push(start..i);
        }
        if let (None, Some(g)) = (current, item.group) {
            if !seen.insert(g) {
                return Err(BatchError::Malformed {
                    reason: "the requests of one change set (atomicity group) must follow each \
                             other"
                        .into(),
                });
            }
            current = Some((g, i));
        }
    }
    if let Some((_, start)) = current {
        sets.push(start..items.len());
    }
    Ok(Some(Plan { sets, provider }))
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

/// A `$<id>` reference at the start of an item's path (OData: the resource an earlier request
/// created or named), with the batch's base or the service root, if the client put one first,
/// taken off: the id and the rest of the path after it (`""` or `/...`).
pub(crate) fn reference<'a>(
    path: &'a str,
    prefixes: [Option<&str>; 2],
) -> Option<(&'a str, &'a str)> {
    let path = prefixes
        .into_iter()
        .flatten()
        .find_map(|p| path.strip_prefix(p).filter(|rest| rest.starts_with("/$")))
        .unwrap_or(path);
    let rest = path.strip_prefix("/$")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (id, tail) = rest.split_at(end);
    (!id.is_empty()).then_some((id, tail))
}

/// The target an item's `$` reference stands for: the referenced item's `Location`, or its own
/// URL when it answered without one, then the rest of the referring path and its query.
pub(crate) fn resolve(base: &str, tail: &str, query: Option<&str>) -> Option<Uri> {
    let mut target = String::with_capacity(base.len() + tail.len() + 16);
    target.push_str(
        base.split(['?', '#'])
            .next()
            .unwrap_or(base)
            .trim_end_matches('/'),
    );
    target.push_str(tail);
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    Uri::try_from(target).ok()
}

/// Where an answer says its resource is, for later `$` references to it.
pub(crate) fn location(res: &Response<Bytes>) -> Option<String> {
    res.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// One change set's transaction while it is open: rolled back when dropped unended (the client
/// left, the batch was dropped), on the current tokio runtime.
pub(crate) struct Open(Option<Transaction>);

impl Open {
    pub(crate) fn new(tx: Transaction) -> Self {
        Open(Some(tx))
    }

    /// Rolls back what is open, in the background.
    pub(crate) fn close(&mut self) {
        drop(Open(self.0.take()));
    }

    pub(crate) fn take(&mut self) -> Option<Transaction> {
        self.0.take()
    }

    pub(crate) fn get(&self) -> Option<&Transaction> {
        self.0.as_ref()
    }
}

impl Drop for Open {
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

/// Where a change set is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No member has started.
    Idle,
    /// Its transaction is beginning.
    Beginning,
    /// Its members run, one after another.
    Running,
    /// Every member answered `2xx`; the commit is under way.
    Committing,
    /// A member failed; the rollback is under way.
    RollingBack,
    /// Committed or rolled back: its members' answers are final.
    Decided,
}

/// One change set in the scheduler.
pub(crate) struct SetRun {
    pub(crate) members: Range<usize>,
    pub(crate) phase: Phase,
    pub(crate) tx: Open,
    /// The member whose turn it is.
    pub(crate) next: usize,
    /// The member whose answer failed the change set.
    pub(crate) failed: Option<usize>,
    pub(crate) committed: bool,
    /// Its members' answers were given whole (the batch deadline passed): kept as they are.
    pub(crate) answered_whole: bool,
    pub(crate) boundary: String,
}

impl SetRun {
    pub(crate) fn new(members: Range<usize>, boundary: String) -> Self {
        SetRun {
            next: members.start,
            members,
            phase: Phase::Idle,
            tx: Open(None),
            failed: None,
            committed: false,
            answered_whole: false,
            boundary,
        }
    }
}

/// A step of a change set's transaction that the scheduler waits for.
pub(crate) enum Step {
    Begun(Result<Transaction, BoxError>),
    Committed(Result<(), BoxError>),
    RolledBack(Result<(), BoxError>),
    /// The step did not finish within the batch's deadline.
    TimedOut(Phase),
}

/// A transaction step under way: the change set's number and how the step ended.
pub(crate) type StepFuture = Pin<Box<dyn Future<Output = (usize, Step)> + Send>>;

/// Runs `step` for change set `set`, bounded by `limit` (what is left of the batch's deadline).
pub(crate) fn step<F>(
    set: usize,
    phase: Phase,
    limit: Option<Duration>,
    f: F,
    wrap: fn(F::Output) -> Step,
) -> StepFuture
where
    F: Future + Send + 'static,
{
    Box::pin(async move {
        match limit {
            None => (set, wrap(f.await)),
            Some(limit) => match tokio::time::timeout(limit, f).await {
                Ok(out) => (set, wrap(out)),
                Err(_) => (set, Step::TimedOut(phase)),
            },
        }
    })
}

/// The answer of a change set whose transaction could not begin or commit: a conflict with
/// another change set or a busy database is `409`, or `503` with `Retry-After`; anything else
/// `fallback`.
pub(crate) fn transaction_failed(
    err: &BoxError,
    fallback: StatusCode,
    words: &str,
) -> Response<Bytes> {
    let conflict = std::iter::successors(Some(&**err as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .find_map(|e| e.downcast_ref::<Conflict>());
    match conflict {
        Some(c) => match c.retry_after_duration() {
            Some(after) => {
                let mut res =
                    error_response(StatusCode::SERVICE_UNAVAILABLE, &format!("{words}: {err}"));
                let secs = after.as_secs().max(1).to_string();
                if let Ok(v) = HeaderValue::try_from(secs) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
                res
            }
            None => error_response(StatusCode::CONFLICT, &format!("{words}: {err}")),
        },
        None => error_response(fallback, &format!("{words}: {err}")),
    }
}

/// The answer of a member that ran, in a change set that was then rolled back.
pub(crate) fn rolled_back(failed_at: Option<usize>, why: &str) -> Response<Bytes> {
    let at = failed_at.map_or_else(String::new, |i| {
        format!(" at request {i} (counting from 0)")
    });
    error_response(
        StatusCode::FAILED_DEPENDENCY,
        &format!("this request ran, but its change set failed{at} and was rolled back: {why}; nothing of it was kept"),
    )
}

/// The answer of a member that never ran, because its change set failed first.
pub(crate) fn not_run_member(failed_at: Option<usize>, why: &str) -> Response<Bytes> {
    let at = failed_at.map_or_else(String::new, |i| {
        format!(" at request {i} (counting from 0)")
    });
    not_run(error_response(
        StatusCode::FAILED_DEPENDENCY,
        &format!("not run: its change set failed{at} before this request's turn: {why}; nothing of it was kept"),
    ))
}

/// Whether a member's answer lets its change set go on.
pub(crate) fn succeeded(res: &Response<Bytes>) -> bool {
    res.status().is_success() && ran(res)
}

/// Puts the change set's transaction among a member's request extensions.
pub(crate) fn lend(req: &mut Request<Bytes>, tx: Option<&Transaction>) {
    if let Some(tx) = tx {
        req.extensions_mut().insert(tx.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_under_a_root() {
        let root = [None, Some("/farm/v1")];
        assert_eq!(reference("/$1/Legs", [None, None]), Some(("1", "/Legs")));
        assert_eq!(reference("/$new", root), Some(("new", "")));
        assert_eq!(reference("/farm/v1/$1/x", root), Some(("1", "/x")));
        assert_eq!(
            reference("/odata/$1", [Some("/odata"), None]),
            Some(("1", ""))
        );
        assert_eq!(reference("/farm/v1/animals", root), None);
        assert_eq!(reference("/$", [None, None]), None);
    }

    #[test]
    fn references_resolve_to_the_location() {
        let uri = resolve("/farm/v1/animals/7", "/legs", Some("a=1")).unwrap();
        assert_eq!(uri, "/farm/v1/animals/7/legs?a=1");
        let uri = resolve("http://h:1/farm/v1/animals/7/", "", None).unwrap();
        assert_eq!(uri, "http://h:1/farm/v1/animals/7");
    }
}
