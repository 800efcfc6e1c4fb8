//! Idempotent retries: a batch sent with `Idempotency-Key` keeps its answer under the sender's
//! identity and the key, and a retry is answered from the store without running anything.
//!
//! The key is claimed in the store, in one step, before anything runs: of two requests racing
//! with one key, one runs and the other is answered `409`; when the store fails, nothing runs
//! (`503`). The batch is then run to its end in a task of its own, so that a client that goes
//! away (the usual reason for a retry) still finds the answer kept. The first answer is sent
//! when it is whole and kept, or as soon as it is known to be too large to keep, with
//! `Idempotency-Stored: false`, so that the client hears it on the first request, not the retry.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};

use crate::body::ResponseBody;
use crate::error::{error_response, BatchError, BoxError};
use crate::kept::{store_down, Idempotency, Kept, RespondAsync};
use crate::limits::Limits;
use crate::respond_async::{self, Run};
use crate::store::record::{digest, Record, State};

/// The longest key taken; the IETF draft's keys are UUIDs (36 bytes).
const MAX_KEY_BYTES: usize = 255;

/// Serves a batch sent with `Idempotency-Key` (and, when `respond_async` is given, answered
/// asynchronously: then the `202` and its monitor are the answer kept).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<ReqBody, B>(
    kept: Kept,
    opts: Idempotency,
    respond_async: Option<RespondAsync>,
    limits: Limits,
    route: String,
    owner: String,
    req: Request<ReqBody>,
    run: Run<ReqBody, B>,
) -> Response<ResponseBody<B>>
where
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let full = |res: Response<Bytes>| res.map(ResponseBody::full);
    let Some(name) = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| key_of(v.as_bytes()))
    else {
        return full(error_response(
            StatusCode::BAD_REQUEST,
            &format!(
                "the Idempotency-Key header must be 1 to {MAX_KEY_BYTES} visible ASCII \
                 characters (a UUID, say), optionally in double quotes, and sent once"
            ),
        ));
    };
    // Taken before the key is claimed, so that a batch refused for want of room is not
    // recorded as running.
    let place = match respond_async {
        Some(_) => None,
        None => match kept.background() {
            Ok(place) => Some(place),
            Err(no_room) => return full(no_room.response()),
        },
    };
    let (parts, body) = req.into_parts();
    // The body is read here, under the batch's own limits, to tell a retry from a reuse.
    let bytes = match read(body, &parts, &limits).await {
        Ok(b) => b,
        Err(err) => return full(err.to_response()),
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map_or(&b""[..], |v| v.as_bytes());
    let target = parts.uri.to_string();
    let fingerprint = digest(&[
        parts.method.as_str().as_bytes(),
        target.as_bytes(),
        content_type,
        &bytes,
    ]);
    let key = format!("k:{owner}:{}", digest(&[route.as_bytes(), name.as_bytes()]));
    let claim = Record::running(&owner, &fingerprint).encode();
    match kept
        .call(kept.store.insert_new(&key, claim, opts.expiry))
        .await
    {
        Ok(None) => {}
        Ok(Some(old)) => return full(earlier(Record::decode(&old), &fingerprint)),
        Err(err) => return full(store_down(&err, "the keyed batch")),
    }
    let req = Request::from_parts(parts, ReqBody::from(bytes));
    if let Some(async_opts) = respond_async {
        let res = respond_async::accept(kept.clone(), async_opts, owner.clone(), req, run).await;
        if res.status() != StatusCode::ACCEPTED {
            // Refused whole: nothing ran, so the key is free for a corrected batch.
            forget(&kept, &key).await;
            return res;
        }
        // What is kept is this `202` and its monitor, for a retry to find the same batch.
        let (head, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let record = Record::done(
            &owner,
            &fingerprint,
            head.status,
            &head.headers,
            body.clone(),
        );
        let mut res = Response::from_parts(head, body);
        if let Err(err) = kept
            .call(kept.store.put(&key, record.encode(), opts.expiry))
            .await
        {
            tracing::warn!(error = %err, "an idempotency key's answer could not be kept");
            res.headers_mut()
                .insert("idempotency-stored", HeaderValue::from_static("false"));
        }
        return full(res);
    }
    let res = run(req, None).await;
    if !res.status().is_success() {
        forget(&kept, &key).await;
        return res;
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        keep(kept, opts, key, owner, fingerprint, res, tx).await;
        drop(place);
    });
    match rx.await {
        Ok(res) => res,
        Err(_) => full(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the keyed batch's task ended without an answer",
        )),
    }
}

/// The key as sent: a bare token or a quoted string (the draft's structured-field form).
fn key_of(raw: &[u8]) -> Option<String> {
    let raw = raw.trim_ascii();
    let raw = raw
        .strip_prefix(b"\"")
        .and_then(|r| r.strip_suffix(b"\""))
        .unwrap_or(raw);
    let ok = !raw.is_empty()
        && raw.len() <= MAX_KEY_BYTES
        && raw.iter().all(|b| (0x21..=0x7e).contains(b));
    ok.then(|| String::from_utf8_lossy(raw).into_owned())
}

/// The answer to a request whose key was claimed before: the kept answer, or why there is none.
fn earlier(record: Option<Record>, fingerprint: &str) -> Response<Bytes> {
    let Some(record) = record else {
        return error_response(
            StatusCode::CONFLICT,
            "this Idempotency-Key holds something this layer cannot read; it was not run",
        );
    };
    if record.fingerprint != fingerprint {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was used for a different batch request; a key stands for one \
             request: use a new key for a new batch; nothing was run",
        );
    }
    match record.state {
        State::Running { .. } => {
            let mut res = error_response(
                StatusCode::CONFLICT,
                "a batch with this Idempotency-Key is still running (or its instance stopped \
                 before its answer was kept); it was not run again; retry later for its answer",
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
        State::NotKept { bytes, limit } => error_response(
            StatusCode::GONE,
            &format!(
                "the batch with this Idempotency-Key ran, but its answer of {bytes} bytes was \
                 larger than the {limit} bytes kept (its first answer said so with \
                 Idempotency-Stored: false); it was not run again"
            ),
        ),
        State::Done => {
            let mut res = record.answer();
            res.headers_mut().insert(
                http::HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            );
            res
        }
    }
}

async fn forget(kept: &Kept, key: &str) {
    if let Err(err) = kept.call(kept.store.remove(key)).await {
        tracing::warn!(error = %err, "a refused batch's idempotency key stays until it expires");
    }
}

/// Reads the body whole, within the layer's body limit and read timeout.
async fn read<ReqBody>(
    body: ReqBody,
    parts: &http::request::Parts,
    limits: &Limits,
) -> Result<Bytes, BatchError>
where
    ReqBody: http_body::Body,
    ReqBody::Error: Into<BoxError>,
{
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
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            Err(BatchError::BodyTooLarge {
                limit: limits.max_body_bytes,
            })
        }
        Ok(Err(err)) => Err(BatchError::BodyRead {
            reason: err.to_string(),
        }),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Runs the batch's answer to its end, whatever becomes of the client, and keeps it. Hands the
/// client its answer when it is whole and kept, or once it is too large to keep.
async fn keep<B>(
    kept: Kept,
    opts: Idempotency,
    key: String,
    owner: String,
    fingerprint: String,
    res: Response<ResponseBody<B>>,
    tx: oneshot::Sender<Response<ResponseBody<B>>>,
) where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = res.into_parts();
    let mut body = Box::pin(body);
    let mut held: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    let mut failed = None;
    while size <= opts.max_answer_bytes {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    size += data.len();
                    held.push(data);
                }
            }
            Some(Err(err)) => {
                failed = Some(err);
                break;
            }
        }
    }
    if size <= opts.max_answer_bytes && failed.is_none() {
        let answer: Bytes = held.concat().into();
        let record = Record::done(
            &owner,
            &fingerprint,
            parts.status,
            &parts.headers,
            answer.clone(),
        );
        let mut res = Response::from_parts(parts, ResponseBody::full(answer));
        if let Err(err) = kept
            .call(kept.store.put(&key, record.encode(), opts.expiry))
            .await
        {
            tracing::warn!(error = %err, "an idempotency key's answer could not be kept");
            res.headers_mut()
                .insert("idempotency-stored", HeaderValue::from_static("false"));
        }
        let _ = tx.send(res);
        return;
    }
    // Too large to keep (or cut off): the key says the batch ran, the client hears it now, and
    // the rest of the answer streams to it.
    let (frames, rx) = mpsc::channel(4);
    let mut res = Response::from_parts(
        parts,
        ResponseBody::boxed(Relay {
            held: held.into(),
            rx,
        }),
    );
    res.headers_mut()
        .insert("idempotency-stored", HeaderValue::from_static("false"));
    let client = tx.send(res).is_ok();
    match failed {
        Some(err) => {
            if client {
                let _ = frames.send(Err(err)).await;
            }
        }
        None => loop {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        size += data.len();
                        // A client that went away does not stop the batch: its retry will be
                        // told that it ran.
                        let _ = frames.send(Ok(data)).await;
                    }
                }
                Some(Err(err)) => {
                    let _ = frames.send(Err(err)).await;
                    break;
                }
            }
        },
    }
    let mut record = Record::running(&owner, &fingerprint);
    record.state = State::NotKept {
        bytes: size as u64,
        limit: opts.max_answer_bytes as u64,
    };
    if let Err(err) = kept
        .call(kept.store.put(&key, record.encode(), opts.expiry))
        .await
    {
        tracing::warn!(error = %err, "an idempotency key's outcome could not be kept");
    }
}

/// The first answer of a keyed batch too large to keep: what was read before that was known,
/// then the rest as the batch answers it.
struct Relay {
    held: VecDeque<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl http_body::Body for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.held.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|r| r.map(Frame::data)))
    }
}
