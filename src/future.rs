//! [`ResponseFuture`]: the future of [`Batch`](crate::Batch).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

pub(crate) type BatchFuture<B> = Pin<Box<dyn Future<Output = Response<ResponseBody<B>>> + Send>>;

pin_project! {
    /// The response future of [`Batch`](crate::Batch).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Reject { response: Option<Response<Bytes>> },
        Batch { future: BatchFuture<B> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn reject(response: Response<Bytes>) -> Self {
        ResponseFuture {
            kind: Kind::Reject {
                response: Some(response),
            },
        }
    }

    pub(crate) fn batch(future: BatchFuture<B>) -> Self {
        ResponseFuture {
            kind: Kind::Batch { future },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Reject { .. } => "Reject",
            Kind::Batch { .. } => "Batch",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let res = ready!(future.poll(cx))?;
                Poll::Ready(Ok(res.map(ResponseBody::inner)))
            }
            KindProj::Reject { response } => {
                let res = response.take().expect("polled after completion");
                Poll::Ready(Ok(res.map(ResponseBody::full)))
            }
            KindProj::Batch { future } => Poll::Ready(Ok(ready!(future.as_mut().poll(cx)))),
        }
    }
}
