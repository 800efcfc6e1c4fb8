//! Explicit batches: collect requests, send them as one (or a few) batch requests, read the
//! answers back per item.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use tower::{Service, ServiceExt};

use super::error::{ClientError, ItemFailure};
use super::read::{copy_response, read_answer, status_error, Outcome};
use super::retry::RetryPlan;
use crate::error::BoxError;
use crate::format::multipart::{new_boundary, write_request};

/// How many items go into one batch request by default: the limit of Google's batch endpoints
/// and of this crate's server side.
pub const DEFAULT_MAX_PER_BATCH: usize = 1000;

/// The default largest batch answer the client reads: 64 MiB, the server layer's own default
/// for a whole batch response.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The wire format of the batches a [`BatchRequest`] sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// Google / OData `multipart/mixed` (the default).
    #[default]
    Multipart,
    /// OData 4.01 JSON batch / Microsoft Graph `$batch` (`application/json`), the only format
    /// that carries [`BatchItem::depends_on`].
    #[cfg(feature = "json")]
    Json,
}

type Callback = Box<dyn FnOnce(&str, Result<&Response<Bytes>, &ItemFailure>) + Send>;

/// One request to add to a [`BatchRequest`], with an optional id and callback.
///
/// [`BatchRequest::add`] and [`BatchRequest::add_with_id`] cover the common cases; use this for a
/// callback, as in ports of code written for Google's Python or Java clients.
///
/// ```
/// use bytes::Bytes;
/// use http_batch::client::{BatchItem, BatchRequest};
///
/// let mut batch = BatchRequest::new("http://127.0.0.1:3000/batch".parse().unwrap());
/// let request = http::Request::get("/farm/v1/animals/pony").body(Bytes::new()).unwrap();
/// batch
///     .push(BatchItem::new(request).id("pony").callback(|id, result| match result {
///         Ok(response) => println!("{id}: {}", response.status()),
///         Err(failure) => println!("{id}: {failure}"),
///     }))
///     .unwrap();
/// ```
#[must_use]
pub struct BatchItem {
    request: Request<Bytes>,
    id: Option<String>,
    depends_on: Vec<String>,
    callback: Option<Callback>,
}

impl BatchItem {
    /// An item that sends `request`; its body is anything that turns into [`Bytes`].
    pub fn new<B: Into<Bytes>>(request: Request<B>) -> Self {
        BatchItem {
            request: request.map(Into::into),
            id: None,
            depends_on: Vec::new(),
            callback: None,
        }
    }

    /// Asks the server to run this item only after the items with these ids have succeeded.
    ///
    /// Only the JSON encoding carries dependencies (multipart has no place for them, and they
    /// are not sent). The items named must travel in the same batch request, so keep a batch
    /// with dependencies within [`BatchRequest::max_per_batch`].
    pub fn depends_on<I, T>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.depends_on.extend(ids.into_iter().map(Into::into));
        self
    }

    /// An item from a request with any [`http_body::Body`], read into memory first (a batch
    /// part carries its body whole).
    pub async fn collect<B>(request: Request<B>) -> Result<Self, B::Error>
    where
        B: http_body::Body,
    {
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok(BatchItem::new(Request::from_parts(parts, bytes)))
    }

    /// Sets the item's id, sent as its `Content-ID`. Without one, the batch makes one up.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Calls `callback` with the item's id and outcome as soon as its answer has been read.
    ///
    /// Callbacks run on the task that awaits [`BatchRequest::send`], in request order within
    /// each batch request; keep them short.
    pub fn callback<F>(mut self, callback: F) -> Self
    where
        F: FnOnce(&str, Result<&Response<Bytes>, &ItemFailure>) + Send + 'static,
    {
        self.callback = Some(Box::new(callback));
        self
    }
}

impl fmt::Debug for BatchItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchItem")
            .field("method", self.request.method())
            .field("uri", self.request.uri())
            .field("id", &self.id)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

/// A batch being built: requests with ids, sent together by [`send`](Self::send).
///
/// See the [module docs](super) for an example.
#[must_use = "a batch does nothing until it is sent"]
pub struct BatchRequest {
    uri: Uri,
    headers: HeaderMap,
    encoding: Encoding,
    max_per_batch: usize,
    concurrency: usize,
    max_response_bytes: usize,
    entries: Vec<Entry>,
    ids: HashSet<String>,
    next_auto_id: u64,
}

struct Entry {
    request: Request<Bytes>,
    #[cfg_attr(not(feature = "json"), allow(dead_code))]
    depends_on: Vec<String>,
    meta: Meta,
}

/// What stays behind on the client side while an item is on its way.
struct Meta {
    id: String,
    tx: oneshot::Sender<Outcome>,
    callback: Option<Callback>,
}

impl fmt::Debug for BatchRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchRequest")
            .field("uri", &self.uri)
            .field("encoding", &self.encoding)
            .field("max_per_batch", &self.max_per_batch)
            .field("concurrency", &self.concurrency)
            .field("items", &self.entries.len())
            .finish()
    }
}

impl BatchRequest {
    /// An empty batch that will be posted to `batch_uri` (for example
    /// `https://www.googleapis.com/batch/farm/v1`).
    pub fn new(batch_uri: Uri) -> Self {
        BatchRequest {
            uri: batch_uri,
            headers: HeaderMap::new(),
            encoding: Encoding::default(),
            max_per_batch: DEFAULT_MAX_PER_BATCH,
            concurrency: 1,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            entries: Vec::new(),
            ids: HashSet::new(),
            next_auto_id: 0,
        }
    }

    /// Sets a header of the outer batch request, such as `Authorization`. The server's batch
    /// layer decides which outer headers each item inherits.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The headers of the outer batch request.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// Sets the wire format. Default: [`Encoding::Multipart`].
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The most items per batch request (default [`DEFAULT_MAX_PER_BATCH`]). A larger batch is
    /// sent as several batch requests; each item's outcome still reaches its own handle.
    pub fn max_per_batch(mut self, n: usize) -> Self {
        self.max_per_batch = n.max(1);
        self
    }

    /// How many batch requests may be in flight at once when the batch is split. Default 1:
    /// the batch requests go one after another, in item order.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The largest batch answer read, in bytes (default [`DEFAULT_MAX_RESPONSE_BYTES`], 64 MiB,
    /// the server layer's own default). A larger answer fails the batch with
    /// [`ClientError::Body`] instead of filling memory.
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }

    /// Sends the batch requests one after another (the default).
    pub fn sequential(self) -> Self {
        self.concurrency(1)
    }

    /// How many items have been added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no item has been added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a request under a generated id (`item-1`, `item-2`, ..., skipping ids in use) and
    /// returns a handle that resolves to its response.
    pub fn add<B: Into<Bytes>>(&mut self, request: Request<B>) -> ItemHandle {
        let id = self.fresh_id();
        self.insert(id, request.map(Into::into), Vec::new(), None)
    }

    /// Adds a request under `id`. Ids must be unique in the batch, non-empty, printable ASCII
    /// without `<` or `>` and without surrounding spaces, because they travel as `Content-ID`s.
    pub fn add_with_id<B: Into<Bytes>>(
        &mut self,
        id: impl Into<String>,
        request: Request<B>,
    ) -> Result<ItemHandle, ClientError> {
        self.push(BatchItem::new(request).id(id))
    }

    /// Adds an item built with [`BatchItem`] (for an id and a callback together).
    pub fn push(&mut self, item: BatchItem) -> Result<ItemHandle, ClientError> {
        let id = match item.id {
            Some(id) => {
                check_id(&id)?;
                if self.ids.contains(&id) {
                    return Err(ClientError::DuplicateId { id });
                }
                id
            }
            None => self.fresh_id(),
        };
        Ok(self.insert(id, item.request, item.depends_on, item.callback))
    }

    fn fresh_id(&mut self) -> String {
        loop {
            self.next_auto_id += 1;
            let id = format!("item-{}", self.next_auto_id);
            if !self.ids.contains(&id) {
                return id;
            }
        }
    }

    fn insert(
        &mut self,
        id: String,
        request: Request<Bytes>,
        depends_on: Vec<String>,
        callback: Option<Callback>,
    ) -> ItemHandle {
        let (tx, rx) = oneshot::channel();
        self.ids.insert(id.clone());
        self.entries.push(Entry {
            request,
            depends_on,
            meta: Meta {
                id: id.clone(),
                tx,
                callback,
            },
        });
        ItemHandle { id, rx }
    }

    /// Posts the batch through `client` and reads the answers.
    ///
    /// `client` is any tower service from `http::Request<ReqB>` to `http::Response<ResB>`, such
    /// as hyper-util's legacy `Client`; `ReqB` must be buildable from [`Bytes`] (hyper's
    /// `Full<Bytes>`, axum's `Body`).
    ///
    /// Every item's handle and callback receive its outcome as soon as the batch request that
    /// carried it has been answered. The returned [`BatchResponse`] holds all outcomes in
    /// request order. When the batch request fails as a whole (transport error, non-2xx outer
    /// status, unreadable answer) this returns that error; if the batch was split, the items of
    /// the other batch requests still receive their answers through their handles and callbacks,
    /// and the error is the first one met.
    ///
    /// The answer is read into memory whole.
    pub async fn send<S, ReqB, ResB>(self, client: S) -> Result<BatchResponse, ClientError>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
        S::Error: Into<BoxError>,
        ReqB: From<Bytes>,
        ResB: http_body::Body,
        ResB::Error: Into<BoxError>,
    {
        let BatchRequest {
            uri,
            headers,
            encoding,
            max_per_batch,
            concurrency,
            max_response_bytes,
            entries,
            ..
        } = self;
        let mut jobs = Vec::new();
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let chunk: Vec<Entry> = entries.by_ref().take(max_per_batch).collect();
            let request = encode(&uri, &headers, encoding, &chunk);
            let metas: Vec<Meta> = chunk.into_iter().map(|e| e.meta).collect();
            // Each job owns its client clone, so the stream borrows nothing and the future
            // stays `Send` for `Send` (not necessarily `Sync`) clients.
            jobs.push((client.clone(), request, metas));
        }
        drop(client);

        let mut answers = stream::iter(jobs)
            .map(|(client, request, metas)| async move {
                let ids: Vec<&str> = metas.iter().map(|m| m.id.as_str()).collect();
                let outcome = exchange(client, request, &ids, max_response_bytes).await;
                (metas, outcome)
            })
            .buffered(concurrency);

        let mut response = BatchResponse::default();
        let mut first_error = None;
        while let Some((metas, outcome)) = answers.next().await {
            match outcome {
                Ok(outcomes) => {
                    for (meta, outcome) in metas.into_iter().zip(outcomes) {
                        response.push(deliver(meta, outcome));
                    }
                }
                Err(error) => {
                    for meta in metas {
                        response.push(deliver(meta, Err(ItemFailure::Batch(error.clone()))));
                    }
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(response),
        }
    }
}

/// Hands one outcome to the item's callback and handle, and returns it for the batch response.
fn deliver(meta: Meta, outcome: Outcome) -> (String, Outcome) {
    let Meta { id, tx, callback } = meta;
    if let Some(callback) = callback {
        callback(&id, outcome.as_ref());
    }
    if !tx.is_closed() {
        let copy = match &outcome {
            Ok(res) => Ok(copy_response(res)),
            Err(failure) => Err(failure.clone()),
        };
        // The handle may be dropped in between; then no one is waiting for the copy.
        let _ = tx.send(copy);
    }
    (id, outcome)
}

fn check_id(id: &str) -> Result<(), ClientError> {
    let reason = if id.is_empty() {
        "ids must not be empty"
    } else if id.len() > 256 {
        "ids must be at most 256 bytes long"
    } else if id.starts_with(' ') || id.ends_with(' ') {
        "ids must not start or end with a space"
    } else if !id.bytes().all(|c| (b' '..=b'~').contains(&c)) {
        "ids must be printable ASCII"
    } else if id.contains(['<', '>']) {
        "ids must not contain `<` or `>`"
    } else {
        return Ok(());
    };
    Err(ClientError::InvalidId {
        id: id.to_owned(),
        reason,
    })
}

/// The outer request for one batch request.
fn encode(uri: &Uri, headers: &HeaderMap, encoding: Encoding, chunk: &[Entry]) -> Request<Bytes> {
    let (content_type, body) = match encoding {
        Encoding::Multipart => {
            let boundary = new_boundary();
            let mut out = BytesMut::new();
            for entry in chunk {
                write_request(&boundary, Some(&entry.meta.id), &entry.request, &mut out);
            }
            out.put_slice(b"--");
            out.put_slice(boundary.as_bytes());
            out.put_slice(b"--\r\n");
            (
                format!("multipart/mixed; boundary={boundary}"),
                out.freeze(),
            )
        }
        #[cfg(feature = "json")]
        Encoding::Json => {
            let items: Vec<_> = chunk
                .iter()
                .map(|e| (e.meta.id.clone(), &e.request, e.depends_on.clone()))
                .collect();
            (
                "application/json".to_owned(),
                crate::format::json::encode_requests(&items),
            )
        }
    };
    let mut request = Request::new(Bytes::new());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers.clone();
    let h = request.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::try_from(content_type).expect("boundaries are header-safe tokens"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    *request.body_mut() = body;
    request
}

/// Sends one batch request and reads its answer into one outcome per id.
async fn exchange<S, ReqB, ResB>(
    client: S,
    request: Request<Bytes>,
    ids: &[&str],
    limit: usize,
) -> Result<Vec<Outcome>, ClientError>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ReqB: From<Bytes>,
    ResB: http_body::Body,
    ResB::Error: Into<BoxError>,
{
    let response = client
        .oneshot(request.map(ReqB::from))
        .await
        .map_err(ClientError::transport)?;
    let (parts, body) = response.into_parts();
    let body = read_body(body, &parts.headers, limit).await?;
    if !parts.status.is_success() {
        return Err(status_error(parts.status, parts.headers, body));
    }
    let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    read_answer(&parts.headers, body, &ids)
}

/// Reads a whole answer body into one buffer of at most `limit` bytes.
///
/// One buffer, not a list of chunks copied into one at the end: the answer costs its size once
/// (twice at most while the buffer grows), and it is sized up front when the length is known.
pub(crate) async fn read_body<B>(
    body: B,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ClientError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ClientError::body(AnswerTooLarge { limit }));
    }
    let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ClientError::body)?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.remaining() > limit {
            return Err(ClientError::body(AnswerTooLarge { limit }));
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            buf.extend_from_slice(chunk);
            let n = chunk.len();
            data.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// The error of an answer larger than the client reads.
#[derive(Debug)]
struct AnswerTooLarge {
    limit: usize,
}

impl fmt::Display for AnswerTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the batch answer is larger than the client's limit of {} bytes",
            self.limit
        )
    }
}

impl std::error::Error for AnswerTooLarge {}

/// A handle to one item of a [`BatchRequest`]: a future that resolves to the item's response
/// once its batch request has been answered.
///
/// It resolves to [`ItemFailure::Canceled`] if the batch is dropped without being sent.
#[derive(Debug)]
pub struct ItemHandle {
    id: String,
    rx: oneshot::Receiver<Outcome>,
}

impl ItemHandle {
    /// The item's id (its `Content-ID` without angle brackets).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Future for ItemHandle {
    type Output = Result<Response<Bytes>, ItemFailure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ItemFailure::Canceled)))
    }
}

/// The outcomes of a sent batch, one per item, in request order and by id.
#[derive(Debug, Default)]
pub struct BatchResponse {
    items: Vec<(String, Outcome)>,
    index: HashMap<String, usize>,
}

impl BatchResponse {
    fn push(&mut self, (id, outcome): (String, Outcome)) {
        self.index.insert(id.clone(), self.items.len());
        self.items.push((id, outcome));
    }

    /// How many items the batch had.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch had no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The outcome of the item with this id.
    pub fn get(&self, id: &str) -> Option<Result<&Response<Bytes>, &ItemFailure>> {
        self.index.get(id).map(|&i| self.items[i].1.as_ref())
    }

    /// Takes the outcome of the item with this id out of the batch response.
    pub fn take(&mut self, id: &str) -> Option<Result<Response<Bytes>, ItemFailure>> {
        let &i = self.index.get(id)?;
        Some(std::mem::replace(
            &mut self.items[i].1,
            Err(ItemFailure::Missing),
        ))
    }

    /// The ids and outcomes, in request order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Result<&Response<Bytes>, &ItemFailure>)> {
        self.items.iter().map(|(id, o)| (id.as_str(), o.as_ref()))
    }

    /// The ids, in request order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(id, _)| id.as_str())
    }

    /// The items that can be sent again, and when: those the server did not run (`424`, and a
    /// `504` or `507` that says the item was not run) and those it throttled (`429` or `503`
    /// with a `Retry-After`). Items that ran are never in it.
    ///
    /// ```
    /// # fn plan(answers: &http_batch::client::BatchResponse) {
    /// let plan = answers.retry_plan();
    /// for retry in plan.iter() {
    ///     println!("{} again in {:?} ({:?})", retry.id(), retry.after(), retry.reason());
    /// }
    /// # }
    /// ```
    pub fn retry_plan(&self) -> RetryPlan {
        let mut plan = RetryPlan::default();
        for (id, outcome) in &self.items {
            if let Ok(response) = outcome {
                plan.push(id, response);
            }
        }
        plan
    }
}

impl IntoIterator for BatchResponse {
    type Item = (String, Result<Response<Bytes>, ItemFailure>);
    type IntoIter = std::vec::IntoIter<Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<Bytes> {
        Request::get(path).body(Bytes::new()).unwrap()
    }

    #[test]
    fn generated_ids_skip_taken_ones() {
        let mut batch = BatchRequest::new(Uri::from_static("http://x/batch"));
        batch.add_with_id("item-1", get("/a")).unwrap();
        let h = batch.add(get("/b"));
        assert_eq!(h.id(), "item-2");
    }

    #[test]
    fn duplicate_and_invalid_ids() {
        let mut batch = BatchRequest::new(Uri::from_static("http://x/batch"));
        batch.add_with_id("a", get("/a")).unwrap();
        let err = batch.add_with_id("a", get("/b")).unwrap_err();
        assert!(
            matches!(err, ClientError::DuplicateId { ref id } if id == "a"),
            "{err}"
        );
        for bad in ["", " a", "a\r\nX: y", "<a>", "é"] {
            assert!(
                matches!(
                    batch.add_with_id(bad, get("/c")),
                    Err(ClientError::InvalidId { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn encoded_batch_is_strict_multipart() {
        let mut batch = BatchRequest::new(Uri::from_static("http://x/batch"));
        batch.add_with_id("a", get("/farm/v1/animals")).unwrap();
        let entries = std::mem::take(&mut batch.entries);
        let req = encode(&batch.uri, &batch.headers, Encoding::Multipart, &entries);
        assert_eq!(req.method(), Method::POST);
        let ct = req.headers()[CONTENT_TYPE].to_str().unwrap();
        let boundary = ct.strip_prefix("multipart/mixed; boundary=").unwrap();
        let body = std::str::from_utf8(req.body()).unwrap();
        assert!(body.starts_with(&format!("--{boundary}\r\n")), "{body}");
        assert!(body.contains("Content-ID: <a>\r\n"), "{body}");
        assert!(body.contains("GET /farm/v1/animals HTTP/1.1\r\n"), "{body}");
        assert!(body.ends_with(&format!("--{boundary}--\r\n")), "{body}");
        assert_eq!(
            req.headers()[CONTENT_LENGTH],
            body.len().to_string().as_str()
        );
    }

    #[tokio::test]
    async fn streamed_bodies_are_collected() {
        use http_body_util::StreamBody;
        let chunks = futures_util::stream::iter(["{\"a\":", "1}"].map(|c| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(
                c.as_bytes(),
            )))
        }));
        let request = Request::post("/x").body(StreamBody::new(chunks)).unwrap();
        let item = BatchItem::collect(request).await.unwrap();
        assert_eq!(item.request.body(), "{\"a\":1}");
        assert_eq!(item.request.method(), Method::POST);
    }

    #[tokio::test]
    async fn dropped_batch_cancels_handles() {
        let mut batch = BatchRequest::new(Uri::from_static("http://x/batch"));
        let h = batch.add(get("/a"));
        drop(batch);
        assert!(matches!(h.await, Err(ItemFailure::Canceled)));
    }
}
