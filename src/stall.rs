//! A deadline on a client that stops reading the batch answer.
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

/// What the body runs, behind a lock the watchdog can take it from.
#[derive(Debug)]
pub(crate) struct Watched<T> {
    shared: Arc<Shared<T>>,
    timeout: Duration,
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
}

impl<T: Send + 'static> Watched<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Watched {
            shared: Arc::new(Shared {
                inner: Mutex::new(Some(inner)),
                start: Instant::now(),
                handed_at: AtomicU64::new(u64::MAX),
                stalled: AtomicBool::new(false),
            }),
            timeout,
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

    /// Whether the batch was ended because the client stopped reading.
    pub(crate) fn stalled(&self) -> bool {
        self.shared.stalled.load(Ordering::Acquire)
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
            drop(runtime.spawn(watch(weak, self.timeout, stopped)));
        }
    }
}

async fn watch<T: Send + 'static>(
    weak: Weak<Shared<T>>,
    timeout: Duration,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let limit = timeout.as_millis() as u64;
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
        if handed_at != u64::MAX && now.saturating_sub(handed_at) >= limit {
            let taken = shared
                .inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            shared.stalled.store(true, Ordering::Release);
            tracing::debug!(
                timeout_ms = limit,
                "the client stopped reading the batch answer; its items are dropped"
            );
            drop(shared);
            drop(taken);
            return;
        }
        wait = if handed_at == u64::MAX {
            timeout
        } else {
            Duration::from_millis(limit - now.saturating_sub(handed_at))
                .max(Duration::from_millis(1))
        };
    }
}
