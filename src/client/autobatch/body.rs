//! [`AutoBatchBody`]: the inner client's body for a pass-through call, the part's bytes for a
//! batched one.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of [`AutoBatch`](super::AutoBatch): either the inner client's body
    /// (the call passed straight through) or the bytes of the call's part of a batch answer.
    ///
    /// Collect it with `http_body_util::BodyExt::collect` like any other body.
    pub struct AutoBatchBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> AutoBatchBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        AutoBatchBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        let data = (!data.is_empty()).then_some(data);
        AutoBatchBody {
            kind: Kind::Full { data },
        }
    }

    /// Whether this call travelled inside a batch.
    pub fn was_batched(&self) -> bool {
        matches!(self.kind, Kind::Full { .. })
    }
}

impl<B> std::fmt::Debug for AutoBatchBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Full { .. } => "Full",
        };
        f.debug_struct("AutoBatchBody")
            .field("kind", &kind)
            .finish()
    }
}

impl<B> Body for AutoBatchBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
