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
//! Change sets (OData only) run under a [`Snapshots`] transaction: the store is copied when the
//! change set begins and put back when it rolls back. Change sets run one at a time. A write
//! made outside any change set while one runs is undone with it if it rolls back; a store with
//! real transactions (see the `sqlite_farm` example) has no such gap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt};
use http_batch::format::Dialect;
use http_batch::{
    BatchLayer, BatchRoute, BoxError, Idempotency, RespondAsync, Transact, Transaction,
    TransactionProvider,
};

use super::{Animal, Animals};

/// Begins [`Snapshot`] transactions over the farm's store.
#[derive(Clone)]
pub(super) struct Snapshots {
    animals: Animals,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

/// One change set's transaction: the store as it was when the change set began.
struct Snapshot {
    animals: Animals,
    saved: Mutex<Option<BTreeMap<String, Animal>>>,
    turn: Mutex<Option<tokio::sync::OwnedMutexGuard<()>>>,
}

impl TransactionProvider for Snapshots {
    fn begin(&self) -> BoxFuture<'static, Result<Transaction, BoxError>> {
        let animals = self.animals.clone();
        let lock = self.one_at_a_time.clone();
        async move {
            let turn = lock.lock_owned().await;
            let saved = animals.lock().unwrap().clone();
            Ok(Transaction::new(Snapshot {
                animals,
                saved: Mutex::new(Some(saved)),
                turn: Mutex::new(Some(turn)),
            }))
        }
        .boxed()
    }
}

impl Transact for Snapshot {
    fn commit(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.saved.lock().unwrap().take();
        self.turn.lock().unwrap().take();
        async { Ok(()) }.boxed()
    }

    fn rollback(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        if let Some(saved) = self.saved.lock().unwrap().take() {
            *self.animals.lock().unwrap() = saved;
        }
        self.turn.lock().unwrap().take();
        async { Ok(()) }.boxed()
    }
}

/// Whether a request is an Azure Storage blob batch: `?restype=container&comp=batch`.
fn azure_batch(req: &http::Request<()>) -> bool {
    let Some(query) = req.uri().query() else {
        return false;
    };
    let has = |pair: &str| query.split('&').any(|p| p == pair);
    has("restype=container") && has("comp=batch")
}

/// The batch layer with every dialect's route over the farm's store.
pub(super) fn layer(animals: Animals) -> BatchLayer {
    let tx = Snapshots {
        animals,
        one_at_a_time: Arc::default(),
    };
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
