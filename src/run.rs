//! One item's future: it calls the inner service, collects the answer under the size limit, and
//! turns service errors, body errors, panics and a passed item deadline into the item's own
//! response.
//!
//! This is a hand-written state machine rather than nested `async` blocks wrapped in
//! `Instrumented`, `CatchUnwind` and `Either`. Each of those wrappers is polled on every wake-up
//! and each is moved whole before the item is boxed; for a trivial handler they cost more than the
//! handler. Here the item is one value, boxed once, and every state change happens in place.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use crate::error::error_response;
use crate::error::BoxError;
use crate::observe::ItemClock;

pin_project! {
    /// The future of one running item; its output is the item's index and its whole answer.
    pub(crate) struct RunItem<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        index: usize,
        // `Span::none()` when tracing is off, so that entering it costs nothing.
        span: tracing::Span,
        // The id the answer carries unless the handler set one.
        request_id: Option<(HeaderName, HeaderValue)>,
        limit: usize,
        deadline: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
        // When the item started, for the item latency metric (nothing without `metrics`).
        clock: ItemClock,
        #[pin]
        state: State<S, ReqBody, ResBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        // Waiting for the service to be ready: like `oneshot`, every item drives its own clone
        // to `poll_ready`, so a rate or concurrency limit inside counts every item.
        Ready { service: S, request: Option<Request<ReqBody>> },
        Calling { #[pin] future: S::Future },
        // Reading the answer's body. Most handlers answer with one frame, which is kept as is;
        // only a body of several frames is copied into one buffer.
        Collecting {
            parts: Option<http::response::Parts>,
            #[pin]
            body: ResBody,
            first: Option<Bytes>,
            joined: Option<BytesMut>,
            len: usize,
        },
        Done,
    }
}

impl<S, ReqBody, ResBody> RunItem<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    pub(crate) fn new(
        index: usize,
        span: tracing::Span,
        request_id: Option<(HeaderName, HeaderValue)>,
        limit: usize,
        timeout: Option<Duration>,
        service: S,
        request: Request<ReqBody>,
    ) -> Self {
        RunItem {
            index,
            span,
            request_id,
            limit,
            deadline: timeout.map(|d| (Box::pin(tokio::time::sleep(d)), d)),
            clock: ItemClock::default(),
            state: State::Ready {
                service,
                request: Some(request),
            },
        }
    }
}

impl<S, ReqBody, ResBody> RunItem<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    /// Times the item from `clock`'s start to its answer.
    pub(crate) fn timed(mut self, clock: ItemClock) -> Self {
        self.clock = clock;
        self
    }
}

impl<S, ReqBody, ResBody> Future for RunItem<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Output = (usize, Response<Bytes>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = (!this.span.is_none()).then(|| this.span.enter());
        if matches!(this.state.as_mut().project(), StateProj::Done) {
            panic!("a batch item was polled after it answered");
        }
        let limit = *this.limit;
        let mut res = match catch_unwind(AssertUnwindSafe(|| drive(this.state.as_mut(), limit, cx)))
        {
            Ok(Poll::Ready(res)) => res,
            Ok(Poll::Pending) => {
                let Some((sleep, d)) = this.deadline else {
                    return Poll::Pending;
                };
                ready!(sleep.as_mut().poll(cx));
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("the item did not answer within {} ms", d.as_millis()),
                )
            }
            Err(_) => {
                tracing::error!("a batch item's handler panicked");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the item's handler panicked",
                )
            }
        };
        // Drops the service's future or body now, not when the batch ends.
        this.state.set(State::Done);
        if let Some((name, id)) = this.request_id.take() {
            if !res.headers().contains_key(&name) {
                res.headers_mut().insert(name, id);
            }
        }
        this.span.record("status", res.status().as_u16());
        this.clock.stop();
        Poll::Ready((*this.index, res))
    }
}

/// Moves the item on as far as it can go without waiting.
fn drive<S, ReqBody, ResBody>(
    mut state: Pin<&mut State<S, ReqBody, ResBody>>,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<Response<Bytes>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    loop {
        match state.as_mut().project() {
            StateProj::Ready { service, request } => {
                if let Err(err) = ready!(service.poll_ready(cx)) {
                    return Poll::Ready(service_failed(err));
                }
                let request = request.take().expect("an item is called once");
                let future = service.call(request);
                state.set(State::Calling { future });
            }
            StateProj::Calling { future } => match ready!(future.poll(cx)) {
                Err(err) => return Poll::Ready(service_failed(err)),
                Ok(res) => {
                    let (parts, body) = res.into_parts();
                    state.set(State::Collecting {
                        parts: Some(parts),
                        body,
                        first: None,
                        joined: None,
                        len: 0,
                    });
                }
            },
            StateProj::Collecting {
                parts,
                mut body,
                first,
                joined,
                len,
            } => loop {
                let Some(frame) = ready!(body.as_mut().poll_frame(cx)) else {
                    let bytes = match joined.take() {
                        Some(buf) => buf.freeze(),
                        None => first.take().unwrap_or_default(),
                    };
                    let parts = parts.take().expect("an answer is finished once");
                    return Poll::Ready(Response::from_parts(parts, bytes));
                };
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(err) => {
                        let err: BoxError = err.into();
                        return Poll::Ready(error_response(
                            StatusCode::BAD_GATEWAY,
                            &format!("the item's response body failed: {err}"),
                        ));
                    }
                };
                // Trailers have no place in a nested HTTP/1.1 answer with a Content-Length.
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                *len += data.len();
                if *len > limit {
                    return Poll::Ready(error_response(
                        StatusCode::BAD_GATEWAY,
                        &format!("the item's response is larger than the limit of {limit} bytes"),
                    ));
                }
                match (joined.as_mut(), first.take()) {
                    (Some(buf), _) => buf.extend_from_slice(&data),
                    (None, None) => *first = Some(data),
                    (None, Some(earlier)) => {
                        let mut buf = BytesMut::with_capacity((*len).max(earlier.len() * 2));
                        buf.extend_from_slice(&earlier);
                        buf.extend_from_slice(&data);
                        *joined = Some(buf);
                    }
                }
            },
            StateProj::Done => unreachable!("checked by the caller"),
        }
    }
}

fn service_failed(err: impl Into<BoxError>) -> Response<Bytes> {
    let err: BoxError = err.into();
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("the service failed: {err}"),
    )
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use futures_util::stream;
    use http::{HeaderMap, Request, Response};
    use http_body::Frame;
    use http_body_util::{Full, StreamBody};

    use super::*;

    type Frames = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>>;

    /// Runs one item against a service that answers with `frames`, or fails when `None`.
    async fn answer(
        frames: Option<Vec<Result<Frame<Bytes>, BoxError>>>,
        limit: usize,
    ) -> Response<Bytes> {
        let frames = std::sync::Mutex::new(frames);
        let service = tower::service_fn(move |_req: Request<Full<Bytes>>| {
            let frames = frames.lock().unwrap().take();
            async move {
                match frames {
                    Some(f) => Ok(Response::new(Frames::new(stream::iter(f)))),
                    None => Err::<Response<Frames>, BoxError>("no backend".into()),
                }
            }
        });
        let request = Request::new(Full::new(Bytes::new()));
        let id = (
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_static("r-7"),
        );
        let (index, res) = RunItem::new(
            7,
            tracing::Span::none(),
            Some(id),
            limit,
            None,
            service,
            request,
        )
        .await;
        assert_eq!(index, 7);
        assert_eq!(res.headers()["x-request-id"], "r-7");
        res
    }

    fn data(s: &'static str) -> Result<Frame<Bytes>, BoxError> {
        Ok(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    #[tokio::test]
    async fn frames_are_joined_and_trailers_dropped() {
        let trailers = Ok(Frame::trailers(HeaderMap::new()));
        let res = answer(Some(vec![data("ab"), data("cd"), trailers, data("ef")]), 6).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.body(), "abcdef");
        let res = answer(Some(vec![data("only")]), 4).await;
        assert_eq!(res.body(), "only");
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_502() {
        let res = answer(Some(vec![data("ab"), data("cd"), data("ef")]), 5).await;
        assert_eq!(res.status(), 502);
        assert!(String::from_utf8_lossy(res.body()).contains("limit of 5 bytes"));
    }

    #[tokio::test]
    async fn body_and_service_errors_become_the_items_answer() {
        let res = answer(Some(vec![data("ab"), Err("reset by peer".into())]), 100).await;
        assert_eq!(res.status(), 502);
        assert!(String::from_utf8_lossy(res.body()).contains("reset by peer"));
        let res = answer(None, 100).await;
        assert_eq!(res.status(), 500);
        assert!(String::from_utf8_lossy(res.body()).contains("no backend"));
    }

    #[tokio::test]
    async fn a_handler_that_sets_its_own_request_id_keeps_it() {
        let service = tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("x-request-id", "mine")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        });
        let id = (
            HeaderName::from_static("x-request-id"),
            HeaderValue::from_static("derived"),
        );
        let request = Request::new(Full::new(Bytes::new()));
        let (_, res) = RunItem::new(
            0,
            tracing::Span::none(),
            Some(id),
            10,
            None,
            service,
            request,
        )
        .await;
        assert_eq!(res.headers()["x-request-id"], "mine");
    }
}
