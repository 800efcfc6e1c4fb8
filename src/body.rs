//! [`ResponseBody`]: the inner service's body on pass-through, or the streamed batch answer.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::error::{response_full, BoxError, NotRun};
use crate::format::Encoder;
use crate::item::{ChangeSetAnswer, ItemMeta};
use crate::limits::Limits;
use crate::observe::{End, Record};
use crate::schedule::{Answer, Scheduler};
use crate::stall::{Cut, Watched};

/// Answers are gathered into frames of about this size, so small items do not each cost a write.
const FRAME_BYTES: usize = 64 * 1024;

pin_project! {
    /// The response body of [`Batch`](crate::Batch): see the [crate docs](crate).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Batch { body: Box<BatchBody> },
        Full { data: Option<Bytes> },
        // A kept answer relayed as it comes (an idempotent batch too large to keep).
        Boxed { body: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn batch(body: BatchBody) -> Self {
        ResponseBody {
            kind: Kind::Batch {
                body: Box::new(body),
            },
        }
    }

    pub(crate) fn boxed(body: impl Body<Data = Bytes, Error = BoxError> + Send + 'static) -> Self {
        ResponseBody {
            kind: Kind::Boxed {
                body: Box::pin(body),
            },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Batch { .. } => "Batch",
            Kind::Full { .. } => "Full",
            Kind::Boxed { .. } => "Boxed",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

/// The error a batch answer ends with when its client took nothing for the stall timeout, or
/// when the answer outlived the answer timeout: the answer is cut off, not ended, so the server
/// resets the stream and neither the client nor a proxy in between can take what was sent for a
/// whole answer.
#[derive(Debug)]
pub struct AnswerCutOff {
    timeout: Duration,
    cut: Cut,
}

impl AnswerCutOff {
    /// Whether the answer was cut off because it outlived the answer timeout (rather than
    /// because the client stopped reading).
    pub fn expired(&self) -> bool {
        self.cut == Cut::Expired
    }
}

impl fmt::Display for AnswerCutOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.timeout.as_millis();
        match self.cut {
            Cut::Stalled => write!(
                f,
                "the client took nothing of the batch answer for {ms} ms; the answer was cut off \
                 and the items not yet answered were dropped"
            ),
            Cut::Expired => write!(
                f,
                "the batch answer was not delivered within its answer timeout of {ms} ms; it was \
                 cut off and the items not yet answered were dropped"
            ),
        }
    }
}

impl std::error::Error for AnswerCutOff {}

/// The body's error: the inner service's body error on pass-through, [`AnswerCutOff`] when a
/// batch answer is cut off.
impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Batch { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|d| d.map(Frame::data).map_err(BoxError::from))),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Boxed { body } => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Batch { body } => body.finished,
            Kind::Full { data } => data.is_none(),
            Kind::Boxed { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Batch { .. } => SizeHint::default(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Boxed { body } => body.size_hint(),
        }
    }
}

/// The streamed batch answer: runs the scheduler and encodes answers in request order.
pub(crate) struct BatchBody {
    /// Behind the stall watchdog, which drops it if the client stops reading.
    scheduler: Watched<Scheduler>,
    encoder: Box<dyn Encoder>,
    metas: Vec<ItemMeta>,
    span: tracing::Span,
    /// The batch's record, written when the answer ends or is dropped.
    record: Record,
    /// The most bytes of answers held at once, as last read from the scheduler's budget.
    held_peak: usize,
    buf: BytesMut,
    begun: bool,
    finished: bool,
    written: usize,
    max_response_bytes: usize,
    stall_timeout: Duration,
    answer_timeout: Duration,
}

impl BatchBody {
    pub(crate) fn new(
        scheduler: Scheduler,
        encoder: Box<dyn Encoder>,
        metas: Vec<ItemMeta>,
        span: tracing::Span,
        record: Record,
        limits: &Limits,
    ) -> Self {
        let (stall_timeout, answer_timeout) = (limits.stall_timeout, limits.answer_timeout);
        let capacity = (metas.len() * 256).clamp(1024, FRAME_BYTES);
        BatchBody {
            scheduler: Watched::new(scheduler, stall_timeout, answer_timeout),
            encoder,
            metas,
            span,
            record,
            held_peak: 0,
            // Sized up front (up to a whole frame, guessing a few hundred bytes per answer): the
            // buffer then rarely grows, instead of doubling its way up from nothing, copying as
            // it goes. `BytesMut` remembers the size for the frames after the first.
            buf: BytesMut::with_capacity(capacity),
            begun: false,
            finished: false,
            written: 0,
            max_response_bytes: limits.max_response_bytes,
            stall_timeout,
            answer_timeout,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, AnswerCutOff>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let frame = self.next_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &frame {
            if !self.finished {
                self.scheduler.handed();
            }
        }
        frame
    }

    fn next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, AnswerCutOff>>> {
        let span = self.span.clone();
        let _enter = span.enter();
        let guard = match self.scheduler.expired() {
            true => None,
            false => self.scheduler.polled(),
        };
        let Some(mut guard) = guard else {
            // The client stopped reading, or the answer outlived its timeout, and the batch was
            // ended: the answer is cut off here, with an error, so that it cannot pass for a
            // whole one.
            self.finished = true;
            let cut = self.scheduler.cut().unwrap_or(Cut::Stalled);
            let timeout = match cut {
                Cut::Stalled => self.stall_timeout,
                Cut::Expired => self.answer_timeout,
            };
            let cut_off = AnswerCutOff { timeout, cut };
            tracing::warn!(bytes = self.written, "{cut_off}");
            self.record
                .end(End::CutOff, self.written, self.held_peak, &self.span);
            return Poll::Ready(Some(Err(cut_off)));
        };
        let scheduler = guard.as_mut().expect("checked by `polled`");
        if !self.begun {
            self.begun = true;
            self.encoder.begin(&mut self.buf);
        }
        loop {
            match scheduler.poll_next(cx) {
                Poll::Ready(Some(Answer::Item(index, mut response))) => {
                    let estimate = response.body().len() + 256;
                    if self.written + self.buf.len() + estimate > self.max_response_bytes {
                        let ran = response.extensions().get::<NotRun>().is_none();
                        response = over_budget(self.max_response_bytes, ran);
                    }
                    self.record.item(&response);
                    let before = self.buf.len();
                    self.encoder
                        .item(&self.metas[index], &response, &mut self.buf);
                    tracing::trace!(index, bytes = self.buf.len() - before, "item encoded");
                    scheduler.budget().written(self.written + self.buf.len());
                    if self.buf.len() >= FRAME_BYTES {
                        return Poll::Ready(Some(Ok(take(&mut self.buf, &mut self.written))));
                    }
                }
                Poll::Ready(Some(Answer::ChangeSet(outcome, answers))) => {
                    // Its answers were made to fit before it committed: once committed, they are
                    // sent whatever the estimate says now.
                    let start = outcome.members.start;
                    let answer = ChangeSetAnswer {
                        committed: outcome.committed,
                        atomic: outcome.atomic,
                        boundary: outcome.boundary,
                        members: self.metas[outcome.members]
                            .iter()
                            .cloned()
                            .zip(answers)
                            .collect(),
                        failed: outcome.failed.map(|f| f - start),
                    };
                    self.record.change_set(
                        answer.committed,
                        answer.atomic,
                        answer.failed,
                        answer.members.iter().map(|(_, res)| res),
                    );
                    self.encoder.change_set(&answer, &mut self.buf);
                    scheduler.budget().written(self.written + self.buf.len());
                    if self.buf.len() >= FRAME_BYTES {
                        return Poll::Ready(Some(Ok(take(&mut self.buf, &mut self.written))));
                    }
                }
                Poll::Ready(None) => {
                    self.held_peak = scheduler.budget().peak();
                    self.encoder.end(&mut self.buf);
                    self.finished = true;
                    let last = take(&mut self.buf, &mut self.written);
                    self.record
                        .end(End::Complete, self.written, self.held_peak, &self.span);
                    return Poll::Ready(Some(Ok(last)));
                }
                Poll::Pending => {
                    self.held_peak = scheduler.budget().peak();
                    if self.buf.is_empty() {
                        return Poll::Pending;
                    }
                    return Poll::Ready(Some(Ok(take(&mut self.buf, &mut self.written))));
                }
            }
        }
    }
}

/// A batch answer dropped before its end (the client went away, or the server shut down)
/// still leaves its record.
impl Drop for BatchBody {
    fn drop(&mut self) {
        // Does nothing when the answer already ended.
        self.record
            .end(End::Dropped, self.written, self.held_peak, &self.span);
    }
}

fn take(buf: &mut BytesMut, written: &mut usize) -> Bytes {
    *written += buf.len();
    buf.split().freeze()
}

/// The answer in place of one that does not fit; it says whether the item ran, so that a client
/// knows whether a retry would repeat it.
fn over_budget(limit: usize, ran: bool) -> Response<Bytes> {
    response_full(limit, ran)
}
