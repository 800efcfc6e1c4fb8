//! [`AutoBatch`]: the service made by [`AutoBatchLayer`](super::AutoBatchLayer).

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};
use tower_service::Service;

use super::future::AutoBatchFuture;
use super::worker::{self, copy_request, Call};
use super::{is_idempotent, Config, RetrySafe};
use crate::client::retry::throttled;
use crate::client::ClientError;
use crate::error::BoxError;

/// A client service that sends the calls it can batch as batches, and the others straight to
/// the inner client.
///
/// See [`AutoBatchLayer`](super::AutoBatchLayer) for what is batched, the response body and the
/// error type. Clones share one batching task, so calls made through any clone can share a batch.
pub struct AutoBatch<S> {
    inner: S,
    shared: Arc<Shared<S>>,
}

/// What the clones of one service share: the settings and the way to the batching task.
struct Shared<S> {
    config: Arc<Config>,
    // The task starts on the first batched call, so that building the service needs no runtime.
    queue: OnceLock<mpsc::Sender<Call>>,
    // The client the task will own, taken when it starts. A mutex keeps `Shared` `Sync` for
    // clients that are only `Send`.
    client: Mutex<Option<S>>,
}

impl<S: Clone> AutoBatch<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        let shared = Arc::new(Shared {
            config,
            queue: OnceLock::new(),
            client: Mutex::new(Some(inner.clone())),
        });
        AutoBatch { inner, shared }
    }
}

impl<S> AutoBatch<S> {
    /// The inner client.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner client, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner client; the batching task keeps its own clone until the last clone of this
    /// service is gone.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for AutoBatch<S> {
    fn clone(&self) -> Self {
        AutoBatch {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for AutoBatch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutoBatch")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S> Shared<S> {
    /// The way to the batching task, started on first use; `None` if the client is gone (a
    /// panic in an earlier start).
    fn queue<ReqB, ResB>(&self) -> Option<mpsc::Sender<Call>>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        ReqB: From<Bytes> + Send + 'static,
        ResB: Body + Send + 'static,
        ResB::Data: Send,
        ResB::Error: Into<BoxError>,
    {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.config.queue);
            let client = self.client.lock().ok().and_then(|mut c| c.take());
            if let Some(client) = client {
                tokio::spawn(worker::run(client, self.config.clone(), rx));
            }
            tx
        });
        (!queue.is_closed()).then(|| queue.clone())
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for AutoBatch<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqB: Body + From<Bytes> + Send + 'static,
    ReqB::Data: Send,
    ReqB::Error: Into<BoxError>,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<super::AutoBatchBody<ResB>>;
    type Error = BoxError;
    type Future = AutoBatchFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let upper = body.size_hint().upper();
        if !self.shared.config.wants(&parts, upper) {
            // The ready clone answers; a fresh clone waits for the next poll_ready.
            let clone = self.inner.clone();
            let mut ready = std::mem::replace(&mut self.inner, clone);
            return AutoBatchFuture::direct(ready.call(Request::from_parts(parts, body)));
        }
        let shared = self.shared.clone();
        let retry_safe =
            is_idempotent(&parts.method) || parts.extensions.get::<RetrySafe>().is_some();
        AutoBatchFuture::batched(Box::pin(async move {
            let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
            let request = Request::from_parts(parts, bytes);
            let queue = shared.queue().ok_or_else(gone)?;
            let config = &shared.config;
            let mut retries = if retry_safe { config.retries } else { 0 };
            loop {
                let (reply, answer) = oneshot::channel();
                let call = Call::new(copy_request(&request), reply);
                queue.send(call).await.map_err(|_| gone())?;
                let response = answer.await.map_err(|_| gone())??;
                let wait = throttled(&response).filter(|wait| *wait <= config.max_retry_wait);
                match wait {
                    Some(wait) if retries > 0 => {
                        retries -= 1;
                        tracing::debug!(?wait, "a batched call was throttled; sent again later");
                        tokio::time::sleep(wait).await;
                    }
                    _ => return Ok(response),
                }
            }
        }))
    }
}

fn gone() -> BoxError {
    Box::new(ClientError::Transport(Arc::from(BoxError::from(
        "the auto-batch task has stopped",
    ))))
}
