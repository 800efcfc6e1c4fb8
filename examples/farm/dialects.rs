//! The farm's batch routes, one per dialect, and the transactions that make its change sets
//! all or nothing.
//!
//! | dialect       | batches are posted to                          |
//! |---------------|------------------------------------------------|
//! | Google        | `/batch`, `/batch/farm/v1`                     |
//! | OData 4       | `/odata/v4/farm/v1/$batch`                     |
//! | OData 2       | `/odata/v2/farm/v1/$batch`                     |
//! | Azure Storage | `POST /farm/v1?restype=container&comp=batch`   |
//!
//! Item URLs resolve against the farm API's root `/farm/v1/`: `GET animals/pony` and
//! `GET /farm/v1/animals/pony` are the same call.
//!
//! Change sets (OData only) run in one database transaction each (`http_batch::sqlx`): every
//! item's handler finds it through its `Tx` extractor, and the layer commits it when every
//! item answered 2xx, else rolls it back. Concurrent change sets and calls are isolated by the
//! database, not by a lock here.

use http_batch::format::Dialect;
use http_batch::{BatchLayer, BatchRoute, Idempotency, RespondAsync};

use super::Db;

/// Whether a request is an Azure Storage blob batch: `?restype=container&comp=batch`.
fn azure_batch(req: &http::Request<()>) -> bool {
    let Some(query) = req.uri().query() else {
        return false;
    };
    let has = |pair: &str| query.split('&').any(|p| p == pair);
    has("restype=container") && has("comp=batch")
}

/// The batch layer with every dialect's route; change sets run in transactions of `tx`.
pub(super) fn layer(tx: Db) -> BatchLayer {
    BatchLayer::new()
        // Every route: `Prefer: respond-async` gets a status monitor, `Idempotency-Key` a replay.
        .respond_async(RespondAsync::new())
        .idempotency(Idempotency::new())
        .route(BatchRoute::path("/batch"))
        .route(BatchRoute::path("/batch/farm/v1"))
        .route(
            BatchRoute::path("/odata/v4/farm/v1/$batch")
                .dialect(Dialect::odata_v4())
                .service_root("/farm/v1")
                .transactions(tx.clone()),
        )
        .route(
            BatchRoute::path("/odata/v2/farm/v1/$batch")
                .dialect(Dialect::odata_v2())
                .service_root("/farm/v1")
                .transactions(tx),
        )
        .route(
            BatchRoute::path("/farm/v1")
                .and_when(azure_batch)
                .dialect(Dialect::azure_storage())
                .service_root("/farm/v1"),
        )
}
