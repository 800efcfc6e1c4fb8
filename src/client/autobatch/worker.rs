//! The batching task: gathers calls for one window, sends them as one batch, and hands each
//! caller its answer.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower_service::Service;

use super::Config;
use crate::client::{BatchRequest, ClientError};
use crate::error::BoxError;

/// One call waiting for its batch.
pub(crate) struct Call {
    pub(crate) request: Request<Bytes>,
    pub(crate) reply: oneshot::Sender<Result<Response<Bytes>, BoxError>>,
}

/// Runs until every sender is gone: then the calls already received are still sent and
/// answered, and the task ends.
pub(crate) async fn run<S, ReqB, ResB>(
    client: S,
    config: Arc<Config>,
    mut queue: mpsc::Receiver<Call>,
) where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqB: From<Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Into<BoxError>,
{
    let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight));
    while let Some(first) = queue.recv().await {
        let deadline = Instant::now() + config.window;
        let mut calls = vec![first];
        // Calls already queued join without touching the timer, whose resolution is a whole
        // millisecond: a zero window costs nothing.
        while calls.len() < config.max_batch {
            match queue.try_recv() {
                Ok(call) => calls.push(call),
                Err(_) => break,
            }
        }
        while calls.len() < config.max_batch && !config.window.is_zero() {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(call)) => calls.push(call),
                Ok(None) | Err(_) => break,
            }
        }
        // A caller that gave up while waiting needs no answer, and its call need not run.
        calls.retain(|c| !c.reply.is_closed());
        if calls.is_empty() {
            continue;
        }
        // Wait for a free slot; the permit travels with the batch and frees the slot when its
        // answers are handed out.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (client, config) = (client.clone(), config.clone());
        tokio::spawn(async move {
            send(client, config, calls).await;
            drop(permit);
        });
    }
}

async fn send<S, ReqB, ResB>(client: S, config: Arc<Config>, calls: Vec<Call>)
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqB: From<Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Send,
    ResB::Error: Into<BoxError>,
{
    let mut batch = BatchRequest::new(config.batch_uri.clone()).max_per_batch(calls.len());
    *batch.headers_mut() = config.headers.clone();
    let mut replies = Vec::with_capacity(calls.len());
    for Call { request, reply } in calls {
        // The answers come back in request order through the batch response; the handle is
        // not needed.
        batch.add(request);
        replies.push(reply);
    }
    match batch.send(client).await {
        Ok(answers) => {
            for (reply, (_, outcome)) in replies.into_iter().zip(answers) {
                let _ = reply.send(outcome.map_err(|f| Box::new(f) as BoxError));
            }
        }
        Err(ClientError::Status {
            status,
            headers,
            body,
            ..
        }) => {
            // What each caller would have got calling directly.
            for reply in replies {
                let mut res = Response::new(body.clone());
                *res.status_mut() = status;
                *res.headers_mut() = (*headers).clone();
                let _ = reply.send(Ok(res));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(Box::new(error.clone())));
            }
        }
    }
}
