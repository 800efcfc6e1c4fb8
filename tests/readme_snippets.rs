//! Every Rust snippet in the README, verbatim, inside the context it assumes, so that the
//! compiler checks them; `readme_snippets_are_all_here` fails when the README and this file
//! drift apart. The snippets are compiled, not run (some bind the README's port), and kept
//! as the README writes them, so rustfmt leaves them alone.
#![allow(dead_code, unused_imports)]

use http_batch::BoxError;

/// The handler the README's snippets route to.
async fn get_animal(axum::extract::Path(name): axum::extract::Path<String>) -> String {
    name
}

#[rustfmt::skip]
async fn snippet_1() -> Result<(), BoxError> {
    use axum::{routing::get, Router};
    use http_batch::BatchLayer;
    use tokio::net::TcpListener;

    let listener = TcpListener::bind("127.0.0.1:3000").await?;
    let api = Router::new().route("/farm/v1/animals/{name}", get(get_animal));
    let app = BatchLayer::new().paths(["/batch", "/batch/farm/v1"]).wrap_router(api);
    axum::serve(listener, app).await?;
    Ok(())
}

#[rustfmt::skip]
async fn snippet_2() -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let api = axum::Router::new();
    use axum::Router;
    use http_batch::BatchLayer;
    use tower::ServiceBuilder;
    use tower_http::trace::TraceLayer;

    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(BatchLayer::new())
        .service(api);
    axum::serve(listener, Router::new().fallback_service(svc)).await?;
    Ok(())
}

#[rustfmt::skip]
async fn snippet_3() -> Result<(), BoxError> {
    use axum::{routing::get, Router};
    use http_batch::Batch;

    let api = Router::new().route("/farm/v1/animals/{name}", get(get_animal));
    let app: Router = api.clone().route_service("/batch", Batch::new(api));
    let _ = app;
    Ok(())
}

#[rustfmt::skip]
async fn snippet_4() -> Result<(), BoxError> {
    use http_batch::format::Dialect;
    use http_batch::{BatchLayer, BatchRoute};

    let layer = BatchLayer::new()
        .route(BatchRoute::path("/batch"))
        .route(
            BatchRoute::path("/odata/v4/farm/v1/$batch")
                .dialect(Dialect::odata_v4())
                .service_root("/farm/v1"),
        )
        .route(
            // Azure Storage posts to the container's own path.
            BatchRoute::path("/farm/v1")
                .and_when(|req| req.uri().query().is_some_and(|q| q.contains("comp=batch")))
                .dialect(Dialect::azure_storage()),
        );
    let _ = layer;
    Ok(())
}

#[rustfmt::skip]
async fn snippet_5() -> Result<(), BoxError> {
    use axum::{http::StatusCode, routing::post, Router};
    use http_batch::format::Dialect;
    use http_batch::sqlx::{DbError, Transactions, Tx};
    use http_batch::{BatchLayer, BatchRoute};

    async fn add(mut tx: Tx<sqlx::Sqlite>, name: String) -> Result<StatusCode, DbError> {
        sqlx::query("INSERT INTO animals (name) VALUES (?)").bind(name).execute(&mut *tx).await?;
        tx.commit().await?; // in a change set this does nothing: the layer commits
        Ok(StatusCode::CREATED)
    }

    let db = Transactions::new(sqlx::SqlitePool::connect("sqlite://farm.db").await?);
    let api = Router::new().route("/farm/v1/animals", post(add)).with_state(db.clone());
    let v4 = BatchRoute::path("/odata/v4/farm/v1/$batch").dialect(Dialect::odata_v4());
    let app = BatchLayer::new().route(v4.transactions(db)).wrap_router(api);
    let _ = app;
    Ok(())
}

#[rustfmt::skip]
async fn snippet_6() -> Result<(), BoxError> {
    use std::collections::HashSet;

    use http_batch::BatchContext;

    // `Option<BatchContext>` is `None` when the handler is called directly, outside a batch. A
    // handler that takes `BatchContext` itself answers such a direct call `400`.
    async fn handler(ctx: Option<BatchContext>) -> String {
        let Some(ctx) = ctx else {
            return "not in a batch".to_owned();
        };
        let first = ctx.store().update(|seen: &mut HashSet<String>| seen.insert("pony".into()));
        format!("item {} of {} in batch {}: first = {first}", ctx.index(), ctx.total(), ctx.batch_id())
    }
    let _ = handler;
    Ok(())
}

#[rustfmt::skip]
async fn snippet_7() -> Result<(), BoxError> {
    use bytes::Bytes;
    use http::Request;
    use http_batch::client::BatchRequest;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut batch = BatchRequest::new("http://127.0.0.1:3000/batch/farm/v1".parse()?);
    let pony = batch.add_with_id("pony", Request::get("/farm/v1/animals/pony").body(Bytes::new())?)?;
    batch.add(Request::get("/farm/v1/farmers").body(Bytes::new())?);
    let answers = batch.send(client).await?;
    for (id, outcome) in answers.iter() {
        println!("{id}: {:?}", outcome.map(|response| response.status()));
    }
    println!("pony: {}", pony.await?.status());
    Ok(())
}

/// The transaction provider the README's dialect snippet assumes.
#[derive(Default)]
struct Snapshots(());

impl http_batch::TransactionProvider for Snapshots {
    fn begin(
        &self,
    ) -> futures_util::future::BoxFuture<'static, Result<http_batch::Transaction, BoxError>> {
        Box::pin(async { Err("not in this snippet".into()) })
    }
}

#[rustfmt::skip]
async fn snippet_8() -> Result<(), BoxError> {
    use http_batch::format::Dialect;
    use http_batch::{BatchLayer, BatchRoute};

    let layer = BatchLayer::new()
        // PnPjs posts to `{site}/_api/$batch`; the app serves the site's API at `/api/sp`.
        .route(
            BatchRoute::path("/sites/farm/_api/$batch")
                .dialect(Dialect::sharepoint())
                .service_root("/api/sp")
                .transactions(Snapshots::default()),
        )
        // The Azure Tables SDKs post to `{account}/$batch`.
        .route(
            BatchRoute::path("/tables/$batch")
                .dialect(Dialect::azure_tables())
                .service_root("/api/tables")
                .transactions(Snapshots::default()),
        )
        // gcsfs names objects with `/` in them as `%2F`.
        .route(BatchRoute::path("/batch/storage/v1").encoded_slashes());
    let _ = layer;
    Ok(())
}

#[rustfmt::skip]
fn snippet_9() {
    use http_batch::{BatchLayer, BatchRoute, Idempotency, RespondAsync};

    let layer = BatchLayer::new()
        .route(BatchRoute::path("/batch"))
        // Every route: `Prefer: respond-async` gets a monitor, `Idempotency-Key` a replay.
        .respond_async(RespondAsync::new())
        .idempotency(Idempotency::new());
    drop(layer);
}

#[cfg(feature = "redis")]
#[rustfmt::skip]
fn snippet_10() -> Result<(), BoxError> {
    use http_batch::{BatchLayer, Idempotency, RespondAsync};

    let layer = BatchLayer::new()
        .store(http_batch::store::RedisStore::new("redis://127.0.0.1:6379/")?)
        .respond_async(RespondAsync::new())
        .idempotency(Idempotency::new());
    drop(layer);
    Ok(())
}

/// The README's ```rust blocks, each one's lines in order and trimmed.
fn readme_blocks() -> Vec<Vec<String>> {
    let readme = include_str!("../README.md");
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), line) => block.push(line.trim().to_owned()),
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn readme_snippets_are_all_here() {
    let here: Vec<String> = include_str!("readme_snippets.rs")
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();
    let blocks = readme_blocks();
    assert!(blocks.len() >= 7, "found only {} rust blocks", blocks.len());
    for block in blocks {
        let found = here.windows(block.len()).any(|w| w == block.as_slice());
        assert!(
            found,
            "this README snippet is not in tests/readme_snippets.rs, so nothing compiles it:\n{}",
            block.join("\n")
        );
    }
}
