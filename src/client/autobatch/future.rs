//! [`AutoBatchFuture`]: the response future of [`AutoBatch`](super::AutoBatch).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use super::body::AutoBatchBody;
use crate::error::BoxError;

pub(crate) type Batched = Pin<Box<dyn Future<Output = Result<Response<Bytes>, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`AutoBatch`](super::AutoBatch).
    pub struct AutoBatchFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Direct { #[pin] future: F },
        Batched { future: Batched },
    }
}

impl<F> AutoBatchFuture<F> {
    pub(crate) fn direct(future: F) -> Self {
        AutoBatchFuture {
            kind: Kind::Direct { future },
        }
    }

    pub(crate) fn batched(future: Batched) -> Self {
        AutoBatchFuture {
            kind: Kind::Batched { future },
        }
    }
}

impl<F> fmt::Debug for AutoBatchFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Direct { .. } => "Direct",
            Kind::Batched { .. } => "Batched",
        };
        f.debug_struct("AutoBatchFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, B, E> Future for AutoBatchFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<AutoBatchBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { future } => {
                let res = ready!(future.poll(cx)).map_err(Into::into)?;
                Poll::Ready(Ok(res.map(AutoBatchBody::inner)))
            }
            KindProj::Batched { future } => {
                let res = ready!(future.as_mut().poll(cx))?;
                Poll::Ready(Ok(res.map(AutoBatchBody::full)))
            }
        }
    }
}
