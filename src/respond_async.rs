//! Asynchronous batches: `Prefer: respond-async` answered `202 Accepted` with a status monitor,
//! the batch run to its end in a task of its own, its answer kept in the store for the monitor.
//!
//! The batch goes through the same run as a synchronous one (`run_batch`): read, decode and
//! check, whose errors are answered at once; then its answer's body, which runs the items as it
//! is read, is read to the end here instead of by the client. The answer is kept in bytes, up
//! to [`RespondAsync::max_answer_bytes`]. Every store call has a deadline; when the first fails,
//! nothing has run and the batch is answered `503`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::cancel::Cancel;
use crate::context::BatchContext;
use crate::error::{error_response, BoxError};
use crate::future::BatchFuture;
use crate::id::secret_hex;
use crate::kept::{store_down, Kept, RespondAsync};
use crate::store::record::{Record, State};

/// Runs one batch request through the batch path; given a progress counter when the batch runs
/// asynchronously.
pub(crate) type Run<ReqBody, B> =
    Box<dyn FnOnce(Request<ReqBody>, Option<Arc<Progress>>) -> BatchFuture<B> + Send>;

/// How far a running batch got: items the service answered, of all items.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

pub(crate) fn monitor_key(id: &str) -> String {
    format!("m:{id}")
}

fn cancel_key(id: &str) -> String {
    format!("c:{id}")
}

/// What the first answer to an accepted asynchronous batch is: `202` and where to poll.
fn accepted(kept: &Kept, opts: &RespondAsync, id: &str) -> Response<Bytes> {
    let location = format!("{}{id}", kept.monitor_path);
    let body = serde_json::json!({ "status": "accepted", "monitor": location });
    let mut res = Response::new(Bytes::from(body.to_string()));
    *res.status_mut() = StatusCode::ACCEPTED;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        http::HeaderName::from_static("preference-applied"),
        HeaderValue::from_static("respond-async"),
    );
    h.insert(header::RETRY_AFTER, retry_after(opts));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    res
}

fn retry_after(opts: &RespondAsync) -> HeaderValue {
    HeaderValue::from(opts.retry_after.as_secs().max(1))
}

/// Accepts an asynchronous batch: makes its monitor, runs the batch's checks, and starts it.
/// The answer is `202` with the monitor, the batch's own `4xx` when its envelope is refused, or
/// `503` when the store cannot make the monitor (then nothing ran).
pub(crate) async fn accept<ReqBody, B>(
    kept: Kept,
    opts: RespondAsync,
    owner: String,
    mut req: Request<ReqBody>,
    run: Run<ReqBody, B>,
) -> Response<ResponseBody<B>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let place = match kept.background() {
        Ok(place) => place,
        Err(full) => return full.response().map(ResponseBody::full),
    };
    let Some(id) = secret_hex() else {
        let res = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "no random monitor id could be made, so the asynchronous batch was not run",
        );
        return res.map(ResponseBody::full);
    };
    let key = monitor_key(&id);
    let record = Record::running(&owner, "").encode();
    // The monitor exists before anything runs: a store that is down refuses the batch whole.
    match kept
        .call(kept.store.insert_new(&key, record, opts.retention))
        .await
    {
        Ok(None) => {}
        Ok(Some(_)) => {
            let res = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "a monitor id was drawn twice; the asynchronous batch was not run; send it again",
            );
            return res.map(ResponseBody::full);
        }
        Err(err) => return store_down(&err, "the asynchronous batch").map(ResponseBody::full),
    }
    let cancel = Cancel::default();
    req.extensions_mut().insert(cancel.clone());
    let progress = Arc::new(Progress::default());
    let res = run(req, Some(progress.clone())).await;
    if !res.status().is_success() {
        // Refused whole (its envelope): answered now, as a synchronous batch would be.
        if let Err(err) = kept.call(kept.store.remove(&key)).await {
            tracing::debug!(error = %err, "the refused batch's monitor stays until it expires");
        }
        return res;
    }
    kept.running().insert(id.clone(), cancel.clone());
    let answer = accepted(&kept, &opts, &id);
    tokio::spawn(async move {
        drive(kept, opts, id, owner, res, progress, cancel).await;
        drop(place);
    });
    answer.map(ResponseBody::full)
}

/// Reads the batch's answer to its end (which runs its items), writing progress to the store
/// and listening there for a cancellation, then keeps the answer for the monitor.
async fn drive<B>(
    kept: Kept,
    opts: RespondAsync,
    id: String,
    owner: String,
    res: Response<ResponseBody<B>>,
    progress: Arc<Progress>,
    cancel: Cancel,
) where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let key = monitor_key(&id);
    let (parts, body) = res.into_parts();
    let mut body = Box::pin(body);
    let mut kept_bytes = BytesMut::new();
    let mut size = 0usize;
    let mut failed = None;
    let mut next_tick = tokio::time::Instant::now() + opts.progress_every;
    let mut written = (0, 0);
    let mut written_at = Instant::now();
    loop {
        // A frame, or the time for the next progress write, whichever comes first; waiting
        // for a frame is taken up again after the write.
        match tokio::time::timeout_at(next_tick, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    size += data.len();
                    if size <= opts.max_answer_bytes {
                        kept_bytes.extend_from_slice(&data);
                    } else {
                        // Counted on, not kept: the monitor will say how large it was.
                        kept_bytes = BytesMut::new();
                    }
                }
            }
            Ok(Some(Err(err))) => {
                failed = Some(err.to_string());
                break;
            }
            Err(_) => {
                next_tick = tokio::time::Instant::now() + opts.progress_every;
                let now = progress.get();
                // Written when it moved, and often enough that the record outlives the batch.
                if now != written || written_at.elapsed() > opts.retention / 4 {
                    let mut record = Record::running(&owner, "");
                    record.state = State::Running {
                        done: now.0,
                        total: now.1,
                    };
                    let put = kept.store.put(&key, record.encode(), opts.retention);
                    if kept.call(put).await.is_ok() {
                        written = now;
                        written_at = Instant::now();
                    }
                }
                if !cancel.is_cancelled()
                    && matches!(
                        kept.call(kept.store.get(&cancel_key(&id))).await,
                        Ok(Some(_))
                    )
                {
                    tracing::debug!(monitor = %id, "asynchronous batch cancelled through the store");
                    cancel.cancel();
                }
            }
        }
    }
    kept.running().remove(&id);
    let record = match failed {
        Some(reason) => {
            let res = error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the batch's answer failed after {size} bytes: {reason}"),
            );
            Record::done(&owner, "", res.status(), res.headers(), res.body().clone())
        }
        None if size > opts.max_answer_bytes => {
            let res = error_response(
                StatusCode::INSUFFICIENT_STORAGE,
                &format!(
                    "the batch ran, but its answer of {size} bytes was larger than the {} bytes \
                     an asynchronous answer may keep, so it was not kept",
                    opts.max_answer_bytes
                ),
            );
            Record::done(&owner, "", res.status(), res.headers(), res.body().clone())
        }
        None => Record::done(
            &owner,
            "",
            parts.status,
            &parts.headers,
            kept_bytes.freeze(),
        ),
    };
    let record = record.encode();
    // One more try after a pause: the answer is the one thing the client is waiting for.
    for attempt in 0..2 {
        match kept
            .call(kept.store.put(&key, record.clone(), opts.retention))
            .await
        {
            Ok(()) => break,
            Err(err) if attempt == 0 => {
                tracing::warn!(error = %err, monitor = %id, "keeping an asynchronous answer failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => {
                tracing::error!(error = %err, monitor = %id, "an asynchronous batch's answer could not be kept");
            }
        }
    }
    if cancel.is_cancelled() {
        let _ = kept.call(kept.store.remove(&cancel_key(&id))).await;
    }
}

/// A request to a status monitor: `GET` for its state or answer, `DELETE` to cancel its batch
/// (or drop its answer). Only the submitter may see it; to anyone else it does not exist.
pub(crate) async fn monitor(
    kept: Kept,
    opts: RespondAsync,
    id: String,
    method: Method,
    owner: String,
) -> Response<Bytes> {
    if method != Method::GET && method != Method::DELETE && method != Method::HEAD {
        let mut res = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "a batch monitor answers GET (its state, then the batch's answer) and DELETE (cancel)",
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, DELETE"));
        return res;
    }
    let not_found = || {
        error_response(
            StatusCode::NOT_FOUND,
            "no batch monitor here: it never existed, it is not yours, or its answer was \
             dropped after the retention time",
        )
    };
    let valid = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return not_found();
    }
    let key = monitor_key(&id);
    let record = match kept.call(kept.store.get(&key)).await {
        Ok(Some(bytes)) => Record::decode(&bytes),
        Ok(None) => None,
        Err(err) => return store_down(&err, "the monitor request"),
    };
    let Some(record) = record.filter(|r| r.owner == owner) else {
        return not_found();
    };
    let location = format!("{}{id}", kept.monitor_path);
    match (method == Method::DELETE, &record.state) {
        (false, State::Running { done, total }) => {
            let body = serde_json::json!({ "status": "running", "done": done, "total": total });
            let mut res = Response::new(Bytes::from(body.to_string()));
            *res.status_mut() = StatusCode::ACCEPTED;
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::RETRY_AFTER, retry_after(&opts));
            if let Ok(v) = HeaderValue::from_str(&location) {
                h.insert(header::LOCATION, v);
            }
            res
        }
        (false, _) => final_answer(&record),
        (true, State::Running { .. }) => {
            if let Some(cancel) = kept.running().get(&id) {
                cancel.cancel();
            }
            // Another replica may run it: it hears this at its next progress write.
            let flag = kept
                .call(
                    kept.store
                        .put(&cancel_key(&id), Bytes::from_static(b"1"), opts.retention),
                )
                .await;
            if let Err(err) = flag {
                return store_down(&err, "the cancellation");
            }
            let body = serde_json::json!({
                "status": "cancelling",
                "message": "items not yet started will not run; poll the monitor for the answer, which says which ran",
            });
            let mut res = Response::new(Bytes::from(body.to_string()));
            *res.status_mut() = StatusCode::ACCEPTED;
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                h.insert(header::LOCATION, v);
            }
            res
        }
        (true, _) => match kept.call(kept.store.remove(&key)).await {
            Ok(()) => {
                let mut res = Response::new(Bytes::new());
                *res.status_mut() = StatusCode::NO_CONTENT;
                res
            }
            Err(err) => store_down(&err, "the removal"),
        },
    }
}

/// A finished batch's answer as OData 4.01 gives it from a status monitor: `200 OK`, the final
/// answer whole as an `application/http` message, and its status in `AsyncResult`.
fn final_answer(record: &Record) -> Response<Bytes> {
    let answer = record.answer();
    let status = answer.status();
    let mut msg = BytesMut::with_capacity(answer.body().len() + 256);
    msg.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Unknown")
        )
        .as_bytes(),
    );
    for (name, value) in answer.headers() {
        msg.extend_from_slice(name.as_str().as_bytes());
        msg.extend_from_slice(b": ");
        msg.extend_from_slice(value.as_bytes());
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice(format!("Content-Length: {}\r\n\r\n", answer.body().len()).as_bytes());
    msg.extend_from_slice(answer.body());
    let mut res = Response::new(msg.freeze());
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/http"),
    );
    h.insert(
        http::HeaderName::from_static("asyncresult"),
        HeaderValue::from(status.as_u16()),
    );
    res
}

/// The inner service, counting the items it answers for the monitor's progress.
#[derive(Clone, Debug)]
pub(crate) struct Counted<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, progress: Arc<Progress>) -> Self {
        Counted { inner, progress }
    }
}

impl<S, ReqBody> Service<Request<ReqBody>> for Counted<S>
where
    S: Service<Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if let Some(cx) = req.extensions().get::<BatchContext>() {
            self.progress
                .total
                .store(cx.total as u64, Ordering::Relaxed);
        }
        CountedFuture {
            inner: self.inner.call(req),
            progress: self.progress.clone(),
        }
    }
}

pin_project! {
    /// An item's future that counts itself done.
    pub(crate) struct CountedFuture<F> {
        #[pin]
        inner: F,
        progress: Arc<Progress>,
    }
}

impl<F: std::future::Future> std::future::Future for CountedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        this.progress.done.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(out)
    }
}
