//! Deadlines on a client that stops reading the batch answer, or reads it too slowly.
//!
//! Two bounds, watched by one task. The *stall timeout* bounds how long one frame may wait to be
//! taken. It alone does not bound a reader that takes a few bytes now and then: each frame is
//! taken in time, yet the answer (and the items and held answers behind it) lives on for hours.
//! So the *answer timeout* bounds the whole answer's life, from the moment the batch starts to
//! its last byte; when it passes, the batch is ended the same way as for a stall.
//!
//! The answer's body is polled only when the client takes what it was given (hyper stops polling
//! once its write buffer is full), so the body cannot notice a stall by itself. Once it hands out
//! a frame with more to come, a watchdog task starts; each time the body hands out a frame it
//! notes the time, and each time it is polled again it clears the note. If a frame stays untaken
//! for the stall timeout, the watchdog drops what the body is running (the batch's items, and
//! with them their lanes and held answers) and the body ends when it is next polled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::future::{self, Either};
use tokio::time::Instant;

/// Why the watchdog ended a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// A frame stayed untaken for the stall timeout.
    Stalled,
    /// The answer outlived the answer timeout.
    Expired,
}

/// What the body runs, behind a lock the watchdog can take it from.
#[derive(Debug)]
pub(crate) struct Watched<T> {
    shared: Arc<Shared<T>>,
    timeout: Duration,
    lifetime: Duration,
    /// Dropped with the body, which ends the watchdog at once rather than at its next wake-up.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Shared<T> {
    inner: Mutex<Option<T>>,
    start: Instant,
    /// Milliseconds since `start` at which a frame was handed out and not yet taken; `u64::MAX`
    /// while the body waits for its items instead (not the client's doing).
    handed_at: AtomicU64,
    stalled: AtomicBool,
    expired: AtomicBool,
}

impl<T: Send + 'static> Watched<T> {
    /// Watches `inner` for a frame untaken for `timeout`, and for an answer older than
    /// `lifetime` (counted from now).
    pub(crate) fn new(inner: T, timeout: Duration, lifetime: Duration) -> Self {
        Watched {
            shared: Arc::new(Shared {
                inner: Mutex::new(Some(inner)),
                start: Instant::now(),
                handed_at: AtomicU64::new(u64::MAX),
                stalled: AtomicBool::new(false),
                expired: AtomicBool::new(false),
            }),
            timeout,
            lifetime,
            stop: None,
        }
    }

    /// The body was polled: the client took the last frame. `None` once the batch was ended for
    /// a stall.
    pub(crate) fn polled(&self) -> Option<MutexGuard<'_, Option<T>>> {
        self.shared.handed_at.store(u64::MAX, Ordering::Release);
        let guard = self.shared.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.is_some().then_some(guard)
    }

    /// Why the batch was ended, if it was.
    pub(crate) fn cut(&self) -> Option<Cut> {
        if self.shared.expired.load(Ordering::Acquire) {
            Some(Cut::Expired)
        } else if self.shared.stalled.load(Ordering::Acquire) {
            Some(Cut::Stalled)
        } else {
            None
        }
    }

    /// Whether the answer has outlived its lifetime; checked by the body on each poll too, so
    /// that a reader fast enough never to leave a frame waiting is held to it all the same.
    pub(crate) fn expired(&self) -> bool {
        if self.shared.start.elapsed() < self.lifetime {
            return false;
        }
        let taken = self
            .shared
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.shared.expired.store(true, Ordering::Release);
        drop(taken);
        true
    }

    /// The body hands out a frame and has more to come.
    pub(crate) fn handed(&mut self) {
        let now = self.shared.start.elapsed().as_millis() as u64;
        self.shared.handed_at.store(now, Ordering::Release);
        if self.stop.is_none() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let (stop, stopped) = tokio::sync::oneshot::channel();
            self.stop = Some(stop);
            let weak = Arc::downgrade(&self.shared);
            drop(runtime.spawn(watch(weak, self.timeout, self.lifetime, stopped)));
        }
    }
}

async fn watch<T: Send + 'static>(
    weak: Weak<Shared<T>>,
    timeout: Duration,
    lifetime: Duration,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let limit = timeout.as_millis() as u64;
    let life = lifetime.as_millis() as u64;
    let mut wait = timeout;
    loop {
        let sleep = std::pin::pin!(tokio::time::sleep(wait));
        if let Either::Right(_) = future::select(sleep, &mut stopped).await {
            // The body is gone: the batch ended, one way or another.
            return;
        }
        let Some(shared) = weak.upgrade() else { return };
        let handed_at = shared.handed_at.load(Ordering::Acquire);
        let now = shared.start.elapsed().as_millis() as u64;
        let stalled = handed_at != u64::MAX && now.saturating_sub(handed_at) >= limit;
        let expired = now >= life;
        if stalled || expired {
            let taken = shared
                .inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if expired {
                shared.expired.store(true, Ordering::Release);
                tracing::debug!(
                    answer_timeout_ms = life,
                    "the batch answer outlived its answer timeout; its items are dropped"
                );
            } else {
                shared.stalled.store(true, Ordering::Release);
                tracing::debug!(
                    timeout_ms = limit,
                    "the client stopped reading the batch answer; its items are dropped"
                );
            }
            drop(shared);
            drop(taken);
            return;
        }
        let until_stall = if handed_at == u64::MAX {
            limit
        } else {
            limit - now.saturating_sub(handed_at)
        };
        wait = Duration::from_millis(until_stall.min(life - now)).max(Duration::from_millis(1));
    }
}
