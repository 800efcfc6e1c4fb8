#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod context;
mod error;
mod future;
mod inherit;
mod item;
mod layer;
mod limits;
mod run;
mod schedule;
mod service;

pub mod format;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "axum")]
mod axum_support;
#[cfg(feature = "hyper")]
pub mod hyper;

pub use body::ResponseBody;
pub use context::{BatchContext, BatchStore};
pub use error::{BatchError, ItemError};
pub use future::ResponseFuture;
pub use item::{Item, ItemMeta};
pub use layer::{AuthPolicy, BatchLayer, Execution};
pub use limits::Limits;
pub use service::Batch;

/// The boxed error type used where errors of several kinds meet.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
