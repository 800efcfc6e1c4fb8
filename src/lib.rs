#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The modules import one way: none imports from a module that imports it, directly or round a
// circle (tests/module_graph.rs checks). The map, bottom up, is in the README's Architecture
// section.
mod batch;
mod body;
mod cancel;
mod change_set;
mod check;
mod condition;
mod config;
mod context;
mod error;
pub mod format;
mod future;
mod graph;
mod id;
mod idempotency;
mod inherit;
mod item;
mod kept;
mod layer;
mod limits;
mod observe;
mod origin;
mod path;
mod pinned;
mod policy;
mod respond_async;
mod route;
mod run;
mod schedule;
mod service;
mod stall;
pub mod store;
mod transaction;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "axum")]
mod axum_support;
#[cfg(feature = "axum")]
pub use axum_support::{BatchRouter, MissingBatchContext};
#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "sqlx")]
pub mod sqlx;

pub mod guide;
#[cfg(feature = "utoipa")]
#[cfg_attr(docsrs, doc(cfg(feature = "utoipa")))]
pub mod openapi;

pub use body::{AnswerCutOff, ResponseBody};
pub use config::{AuthPolicy, Execution};
pub use context::{BatchContext, BatchStore};
pub use error::{BatchError, BoxError, ItemError};
pub use future::ResponseFuture;
pub use item::{ChangeSetAnswer, Item, ItemMeta};
pub use kept::{BatchIdentity, Idempotency, RespondAsync};
pub use layer::BatchLayer;
pub use limits::Limits;
pub use route::BatchRoute;
pub use service::Batch;
pub use transaction::{Conflict, Transact, Transaction, TransactionGuard, TransactionProvider};
