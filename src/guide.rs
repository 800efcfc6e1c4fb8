//! Guides: where the layer goes, how to configure it, and what it promises.
//!
//! Each page is a module with documentation only; nothing here is code to call.
//!
//! - [`mounting`]: wrapping an axum app, `ServiceBuilder`, a route, plain hyper; what items
//!   inherit from the batch request; `BatchContext` and request ids.
//! - [`layers`]: where each of tower-http's usual layers goes, with a picture of the data's way.
//! - [`proxies`]: behind nginx and cloud load balancers.
//! - [`dialects`]: Google, OData 2/3/4, Azure Storage and Tables, SharePoint, JSON `$batch`, with
//!   a quick start for each.
//! - [`change_sets`]: all-or-nothing groups over the application's transactions.
//! - [`kept`]: asynchronous batches and idempotent retries.
//! - [`client`]: the Rust client and automatic batching.
//! - [`security`]: each threat and its defence.
//! - [`limits`]: every setting, every limit with its default, and every error.
//! - [`examples`]: the recommendation service and the batch gateway.
//! - [`architecture`], [`performance`].

pub mod mounting {
    #![doc = include_str!("../docs/guide/mounting.md")]
}

pub mod layers {
    //! # Where each tower-http layer goes
    //!
    //! A batch passes the proxy and the layers outside the batch layer once, as one request;
    //! inside, each item passes the app's own layers as a direct call would. The picture (made
    //! by `scripts/diagram.py`):
    //!
    #![doc = include_str!("../docs/guide/data-flow.svg")]
    #![doc = include_str!("../docs/guide/layers.md")]
}

pub mod proxies {
    #![doc = include_str!("../docs/guide/proxies.md")]
}

pub mod dialects {
    #![doc = include_str!("../docs/guide/dialects.md")]
}

#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub mod change_sets {
    #![doc = include_str!("../docs/guide/change_sets.md")]
}

pub mod kept {
    #![doc = include_str!("../docs/guide/kept.md")]
}

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client {
    #![doc = include_str!("../docs/guide/client.md")]
}

pub mod security {
    #![doc = include_str!("../docs/guide/security.md")]
}

pub mod limits {
    #![doc = include_str!("../docs/guide/limits.md")]
}

pub mod examples {
    #![doc = include_str!("../docs/guide/examples.md")]
}

pub mod architecture {
    #![doc = include_str!("../docs/guide/architecture.md")]
}

pub mod performance {
    #![doc = include_str!("../docs/guide/performance.md")]
}
