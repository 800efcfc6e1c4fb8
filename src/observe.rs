//! What a batch leaves behind: one `INFO` event when its answer ends (or is dropped), one when it
//! is refused, and, with the `metrics` feature, counters and histograms through the `metrics`
//! facade. The names are listed in the crate docs ("Logs and metrics").
//!
//! The record is counted in the body as each answer is encoded, and written once, at the last
//! byte: a batch's head goes out before its items run, so nothing that times the head (an outer
//! `TraceLayer`, say) can say how long the batch took. When no subscriber takes the event and the
//! `metrics` feature is off, nothing is counted and no clock is read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Response;

use crate::config::Config;
use crate::error::{BatchError, NotRun};

/// The target of the events below, so that a filter can name them (`http_batch=info`).
pub(crate) const TARGET: &str = "http_batch";

/// Whether anything would take a batch's record.
fn recording() -> bool {
    cfg!(feature = "metrics") || tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// How a batch's answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Every item was answered and the last byte went out.
    Complete,
    /// The answer was cut off: the client stopped reading, or it outlived its answer timeout.
    CutOff,
    /// The answer was dropped before its end (the client went away).
    Dropped,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Complete => "complete",
            End::CutOff => "cut_off",
            End::Dropped => "dropped",
        }
    }
}

/// The items' outcomes, counted as their answers are encoded.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Ran and answered `1xx`–`3xx`.
    ok: u64,
    /// Ran (or were refused on their own) and answered `4xx`/`5xx`.
    failed: u64,
    /// Never ran: refused before their turn, a failed dependency, no room in the answer.
    not_run: u64,
    /// Ran and succeeded, then their change set rolled back.
    rolled_back: u64,
    /// Answered `404` with an empty body: what a single axum route answers for every path.
    empty_not_found: u64,
}

/// One batch's record, kept by its body.
pub(crate) struct Record {
    batch_id: Arc<str>,
    config: Arc<Config>,
    route: usize,
    format: &'static str,
    dialect: &'static str,
    items: usize,
    /// `None` when nothing takes the record: then nothing is counted.
    started: Option<Instant>,
    counts: Counts,
    /// Set when this batch may have reached a layer mounted inside a router (see
    /// `service.rs`): the layer's "warned" flag, raised once its warning is logged.
    mount: Option<MountSuspect>,
    ended: bool,
}

impl Record {
    pub(crate) fn new(
        batch_id: Arc<str>,
        config: Arc<Config>,
        route: usize,
        format: &'static str,
        dialect: &'static str,
        items: usize,
        mount: Option<MountSuspect>,
    ) -> Self {
        let on = mount.is_some() || recording();
        Record {
            batch_id,
            config,
            route,
            format,
            dialect,
            items,
            started: on.then(Instant::now),
            counts: Counts::default(),
            mount,
            ended: false,
        }
    }

    /// An item's answer, as encoded.
    #[inline]
    pub(crate) fn item(&mut self, res: &Response<Bytes>) {
        if self.started.is_none() {
            return;
        }
        self.count(res, false);
    }

    /// A change set's answers, as encoded. A member that ran and succeeded in a change set that
    /// rolled back counts as rolled back; the member that failed it, as failed.
    pub(crate) fn change_set<'a>(
        &mut self,
        committed: bool,
        atomic: bool,
        failed: Option<usize>,
        members: impl Iterator<Item = &'a Response<Bytes>>,
    ) {
        if self.started.is_none() {
            return;
        }
        let undone = !committed && atomic;
        for (k, res) in members.enumerate() {
            self.count(res, undone && Some(k) != failed);
        }
    }

    fn count(&mut self, res: &Response<Bytes>, undone: bool) {
        let c = &mut self.counts;
        if res.extensions().get::<NotRun>().is_some() {
            c.not_run += 1;
        } else if undone {
            c.rolled_back += 1;
        } else if res.status().as_u16() < 400 {
            c.ok += 1;
        } else {
            c.failed += 1;
            if res.status() == http::StatusCode::NOT_FOUND && res.body().is_empty() {
                c.empty_not_found += 1;
            }
        }
    }

    /// Writes the record: the answer ended, after `bytes` bytes, with at most `held_peak` bytes
    /// of answers held at once. Called once; later calls do nothing.
    pub(crate) fn end(&mut self, end: End, bytes: usize, held_peak: usize, span: &tracing::Span) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let Some(started) = self.started else {
            return;
        };
        let elapsed = started.elapsed();
        let c = self.counts;
        let route = self.route_label();
        if let Some(mount) = &self.mount {
            if self.items > 0 && c.empty_not_found == self.items as u64 {
                mount.warn_items_unroutable(route);
            }
        }
        tracing::info!(
            target: TARGET,
            parent: span,
            batch_id = &*self.batch_id,
            route,
            format = self.format,
            dialect = self.dialect,
            items = self.items,
            ok = c.ok,
            failed = c.failed,
            not_run = c.not_run,
            rolled_back = c.rolled_back,
            bytes,
            held_peak_bytes = held_peak,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            outcome = end.as_str(),
            "batch answered"
        );
        #[cfg(feature = "metrics")]
        meter::batch_ended(self, route, end, elapsed, held_peak);
    }

    /// The route's path as configured (not the request's: a label must have few values), or
    /// `when` for a route chosen by a test on the request.
    fn route_label(&self) -> &str {
        match self.config.routes.get(self.route).map(|r| r.raw_path()) {
            Some("") | None => "when",
            Some(path) => path,
        }
    }
}

/// A batch refused as a whole, before any item ran.
pub(crate) fn refused(err: &BatchError) {
    tracing::info!(
        target: TARGET,
        reason = err.kind(),
        status = err.status().as_u16(),
        error = %err,
        "batch refused"
    );
    #[cfg(feature = "metrics")]
    meter::refused(err.kind());
}

/// The item latency histogram of one batch, looked up in the recorder once per batch rather than
/// once per item. Without the `metrics` feature it is nothing, and so is every [`ItemClock`].
#[derive(Clone, Default)]
pub(crate) struct ItemTimer {
    #[cfg(feature = "metrics")]
    histogram: Option<::metrics::Histogram>,
}

impl ItemTimer {
    pub(crate) fn for_batch() -> Self {
        ItemTimer {
            #[cfg(feature = "metrics")]
            histogram: Some(::metrics::histogram!(meter::ITEM_DURATION)),
        }
    }

    /// An item starts now.
    #[inline]
    pub(crate) fn start(&self) -> ItemClock {
        ItemClock {
            #[cfg(feature = "metrics")]
            started: self.histogram.as_ref().map(|h| (Instant::now(), h.clone())),
        }
    }
}

/// One item's start, recorded as its duration when it answers.
#[derive(Default)]
pub(crate) struct ItemClock {
    #[cfg(feature = "metrics")]
    started: Option<(Instant, ::metrics::Histogram)>,
}

impl ItemClock {
    /// The item answered: records how long it took (once).
    #[inline]
    pub(crate) fn stop(&mut self) {
        #[cfg(feature = "metrics")]
        if let Some((started, histogram)) = self.started.take() {
            histogram.record(started.elapsed().as_secs_f64());
        }
    }
}

/// The "warned" flag of one layer: each of the layer's warnings about how it is mounted is
/// logged once, however many routes and batches it sees.
#[derive(Debug, Default)]
pub(crate) struct Warned {
    inside_router: AtomicBool,
    unknown_path: AtomicBool,
}

impl Warned {
    /// Logs that the layer was added with axum's `Router::layer`, once per layer.
    pub(crate) fn inside_router(&self) {
        if !self.inside_router.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: TARGET, "{}", BatchError::MountedInsideRouter);
        }
    }

    /// Logs that a batch reached the layer at a path it was not told, once per layer.
    pub(crate) fn unknown_path(&self, err: &BatchError) {
        if !self.unknown_path.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: TARGET, "{err}");
        }
    }
}

/// A batch that reached the layer from an axum router's fallback, through a service that is
/// not known to be a whole router: if every item answers an empty `404`, the layer is most
/// likely wrapping the fallback route alone (added with `Router::layer`), and the warning says
/// so once.
#[derive(Clone, Debug)]
pub(crate) struct MountSuspect(pub(crate) Arc<Warned>);

impl MountSuspect {
    fn warn_items_unroutable(&self, route: &str) {
        if !self.0.inside_router.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: TARGET,
                route,
                "every item of a batch at {route} answered 404 with an empty body, which is what \
                 an axum router's fallback answers for any path: the batch layer was most likely \
                 added with Router::layer (alone or inside a ServiceBuilder), which wraps each \
                 route after routing, so no item can be routed. Wrap the whole router instead: \
                 BatchLayer::new().wrap_router(router), or move the layer outside the router \
                 (Batch::new(router)); if the items really named unknown paths, ignore this"
            );
        }
    }
}

/// The metrics, through the `metrics` facade (feature `metrics`).
#[cfg(feature = "metrics")]
pub(crate) mod meter {
    use std::time::Duration;

    use crate::observe::{End, Record};

    /// Batches answered, by `route`, `format` and `outcome`.
    pub(crate) const BATCHES: &str = "http_batch_batches_total";
    /// Items, by `outcome`.
    pub(crate) const ITEMS: &str = "http_batch_items_total";
    /// Seconds from an item's start to its whole answer.
    pub(crate) const ITEM_DURATION: &str = "http_batch_item_duration_seconds";
    /// Seconds from the start of a batch to the last byte of its answer, by `route`, `format`.
    pub(crate) const BATCH_DURATION: &str = "http_batch_duration_seconds";
    /// The most bytes of answers one batch held at once, waiting for earlier items.
    pub(crate) const HELD_BYTES: &str = "http_batch_held_bytes";
    /// Batches refused as a whole, by `reason`.
    pub(crate) const REFUSALS: &str = "http_batch_refusals_total";

    pub(super) fn batch_ended(
        record: &Record,
        route: &str,
        end: End,
        elapsed: Duration,
        held_peak: usize,
    ) {
        let route = route.to_owned();
        let labels = [
            ("route", route.clone()),
            ("format", record.format.to_owned()),
            ("outcome", end.as_str().to_owned()),
        ];
        ::metrics::counter!(BATCHES, &labels).increment(1);
        ::metrics::histogram!(BATCH_DURATION, "route" => route, "format" => record.format)
            .record(elapsed.as_secs_f64());
        ::metrics::histogram!(HELD_BYTES).record(held_peak as f64);
        let c = &record.counts;
        for (outcome, n) in [
            ("ok", c.ok),
            ("failed", c.failed),
            ("not_run", c.not_run),
            ("rolled_back", c.rolled_back),
        ] {
            if n > 0 {
                ::metrics::counter!(ITEMS, "outcome" => outcome).increment(n);
            }
        }
    }

    pub(super) fn refused(reason: &'static str) {
        ::metrics::counter!(REFUSALS, "reason" => reason).increment(1);
    }
}
