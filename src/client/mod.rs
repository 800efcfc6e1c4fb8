//! Building batches, sending them through any tower client, and reading the answers.
//!
//! Two ways to batch from Rust:
//!
//! - **Explicit batches**, as with Google's Python client (`new_batch_http_request()`,
//!   `batch.add(request, callback=..., request_id=...)`, `batch.execute()`): collect requests in
//!   a [`BatchRequest`], [`send`](BatchRequest::send) it through any
//!   `tower::Service<http::Request<B>>` (hyper-util's legacy `Client`, a tower stack, an axum
//!   `Router` in tests), and read one outcome per item from the [`BatchResponse`], from the
//!   item's [`ItemHandle`], or in a callback ([`BatchItem::callback`]).
//! - **Automatic batching** with [`AutoBatchLayer`]: wrap the client once, make ordinary single
//!   calls concurrently, and the calls that arrive within a short window travel as one batch.
//!
//! Answers are matched to items by `Content-ID` (`<response-X>` answers `<X>`), and by position
//! when the server echoes none, so out-of-order answers are fine. An item without an answer is an
//! [`ItemFailure`], never a panic; a batch the server rejects as a whole (a non-2xx outer status)
//! is a [`ClientError::Status`] carrying the server's message.
//!
//! # Example
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_batch::client::BatchRequest;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let mut batch = BatchRequest::new("http://127.0.0.1:3000/batch/farm/v1".parse()?);
//! let pony = batch.add_with_id("pony", http::Request::get("/farm/v1/animals/pony").body(Bytes::new())?)?;
//! batch.add(http::Request::get("/farm/v1/farmers").body(Bytes::new())?);
//! let answers = batch.send(client).await?;
//! for (id, outcome) in answers.iter() {
//!     println!("{id}: {:?}", outcome.map(|response| response.status()));
//! }
//! println!("pony: {}", pony.await?.status());
//! # Ok(())
//! # }
//! ```
//!
//! # Splitting large batches
//!
//! A batch with more items than [`BatchRequest::max_per_batch`] (default 1000) goes out as
//! several batch requests, one after another or [`concurrently`](BatchRequest::concurrency);
//! every handle and callback still receives its own item's outcome.
//!
//! # Reading in bounded memory
//!
//! The client reads at most [`BatchRequest::max_response_bytes`] of an answer into one buffer,
//! and takes one part per item it asked for: an answer with more parts is refused
//! ([`ClientError::Decode`]) after counting them, without reading or keeping the extra ones.
//! Matching parts to items costs time linear in the answer.
//!
//! # Sending again
//!
//! [`BatchResponse::retry_plan`] says which items can be sent again and when: those the server
//! did not run, and those it throttled with a `Retry-After`.

mod autobatch;
mod batch;
mod error;
mod read;
mod retry;

pub use autobatch::{AutoBatch, AutoBatchBody, AutoBatchFuture, AutoBatchLayer, RetrySafe};
pub use batch::{
    BatchItem, BatchRequest, BatchResponse, Encoding, ItemHandle, DEFAULT_MAX_PER_BATCH,
    DEFAULT_MAX_RESPONSE_BYTES,
};
pub use error::{ClientError, ItemFailure};
pub use retry::{Retry, RetryPlan, RetryReason};
