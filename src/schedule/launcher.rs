//! The launcher over a concrete service: it checks an item and gives it what it inherits
//! (`inherit.rs`), then starts its future (`run.rs`) on a clone of the service items run through.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::launch::{Indexed, Launch};
use crate::config::Config;
use crate::context::BatchContext;
use crate::error::{refused, BoxError};
use crate::inherit::{prepare, Outer};
use crate::observe::ItemTimer;
use crate::run::RunItem;

/// The launcher over a concrete inner service.
pub(crate) struct Launcher<S, N, ReqBody, NestedBody> {
    pub(crate) service: S,
    /// The service that items which target a batch path run through when nesting is on (the
    /// batch layer over `service`); `None` when nesting is off.
    pub(crate) nested: Option<N>,
    /// What every item's `BatchContext` shares; `index` and `id` are set per item.
    pub(crate) context: BatchContext,
    /// What items inherit from the outer request.
    pub(crate) outer: Arc<Outer>,
    pub(crate) config: Arc<Config>,
    pub(crate) item_timeout: Option<Duration>,
    pub(crate) max_item_response_bytes: usize,
    /// The item latency metric, looked up once per batch.
    pub(crate) item_timer: ItemTimer,
    pub(crate) _body: std::marker::PhantomData<fn(ReqBody) -> NestedBody>,
}

impl<S, N, ReqBody, ResBody, NestedBody> Launch for Launcher<S, N, ReqBody, NestedBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    N: Service<Request<ReqBody>, Response = Response<NestedBody>> + Clone + Send + 'static,
    N::Future: Send + 'static,
    N::Error: Into<BoxError>,
    NestedBody: http_body::Body<Data = Bytes> + Send + 'static,
    NestedBody::Error: Into<BoxError>,
    ReqBody: http_body::Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    fn launch(
        &mut self,
        index: usize,
        request: Request<Bytes>,
        span: tracing::Span,
        id: Option<Arc<str>>,
    ) -> Indexed {
        let mut request = request;
        let ctx = BatchContext {
            index,
            id,
            ..self.context.clone()
        };
        let id_header = self.config.request_id_header.as_ref();
        // The answer carries the item's request id: its own, or the one derived from the batch's.
        let request_id = match prepare(&mut request, &self.outer, &self.config, ctx) {
            Ok(request_id) => request_id,
            Err((err, request_id)) => {
                tracing::debug!(parent: &span, index, error = %err, "batch item refused");
                span.record("status", err.status().as_u16());
                let res = refused(&err, id_header.zip(request_id));
                return Box::pin(std::future::ready((index, res)));
            }
        };
        let request_id = id_header.cloned().zip(request_id);
        if let Some((_, id)) = &request_id {
            span.record("request_id", id.to_str().unwrap_or(""));
        }
        let service = self.service.clone();
        let limit = self.max_item_response_bytes;
        let timeout = self.item_timeout;
        let request = request.map(ReqBody::from);
        match &self.nested {
            Some(nested) if self.config.is_batch_path(request.uri().path()) => Box::pin(
                RunItem::new(
                    index,
                    span,
                    request_id,
                    limit,
                    timeout,
                    nested.clone(),
                    request,
                )
                .timed(self.item_timer.start()),
            ),
            _ => Box::pin(
                RunItem::new(index, span, request_id, limit, timeout, service, request)
                    .timed(self.item_timer.start()),
            ),
        }
    }

    fn fork(&self) -> Box<dyn Launch> {
        Box::new(Launcher::<S, N, ReqBody, NestedBody> {
            service: self.service.clone(),
            nested: self.nested.clone(),
            context: self.context.clone(),
            outer: self.outer.clone(),
            config: self.config.clone(),
            item_timeout: self.item_timeout,
            max_item_response_bytes: self.max_item_response_bytes,
            item_timer: self.item_timer.clone(),
            _body: std::marker::PhantomData,
        })
    }
}
