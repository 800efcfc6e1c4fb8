//! Run with: cargo run --example client
//!
//! Needs the farm example running (`cargo run --example farm`). Sends one batch through
//! hyper-util's legacy `Client` with `http_batch::client::BatchRequest`: list the animals, get
//! `pony`, insert an animal with a name unique to this run, and get an animal that does not
//! exist. Prints one line per item, `<id> <status>`, and exits 0 when the batch was answered.
//!
//! Environment:
//! - `BATCH_URL`: where to post the batch (default `http://127.0.0.1:3000/batch/farm/v1`).
//! - `FARM_TOKEN`: if set, sent as `Authorization: Bearer <FARM_TOKEN>` on the batch request;
//!   the items inherit it.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Request, Uri};
use http_batch::client::BatchRequest;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The default batch endpoint of the farm example.
pub const DEFAULT_BATCH_URL: &str = "http://127.0.0.1:3000/batch/farm/v1";

/// One printed line: the item's id and either its status or why it has none.
#[derive(Debug)]
pub struct Line {
    /// The item's id.
    pub id: String,
    /// The item's status, or the reason it has no response.
    pub outcome: Result<http::StatusCode, String>,
}

/// Sends the example batch to `batch_url` and returns one line per item, in request order.
///
/// Fails when the batch as a whole was not answered (server down, non-2xx outer status, an
/// answer that is not a batch).
pub async fn run(batch_url: &str, token: Option<&str>) -> Result<Vec<Line>, http_batch::BoxError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: Uri = batch_url.parse()?;
    let mut batch = BatchRequest::new(uri);
    if let Some(token) = token {
        let value = HeaderValue::try_from(format!("Bearer {token}"))?;
        batch = batch.header(AUTHORIZATION, value);
    }

    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let name = format!("goat-{stamp}");
    let insert = serde_json::json!({ "animalName": name, "animalAge": 1, "peltColor": "brown" });

    batch.add_with_id("list", Request::get("/farm/v1/animals").body(Bytes::new())?)?;
    batch.add_with_id(
        "pony",
        Request::get("/farm/v1/animals/pony").body(Bytes::new())?,
    )?;
    batch.add_with_id(
        "insert",
        Request::post("/farm/v1/animals")
            .header(CONTENT_TYPE, "application/json")
            .body(insert.to_string())?,
    )?;
    batch.add_with_id(
        "missing",
        Request::get(format!("/farm/v1/animals/unicorn-{stamp}")).body(Bytes::new())?,
    )?;

    let answers = batch.send(client).await?;
    Ok(answers
        .iter()
        .map(|(id, outcome)| Line {
            id: id.to_owned(),
            outcome: outcome.map(|r| r.status()).map_err(|f| f.to_string()),
        })
        .collect())
}

#[tokio::main]
async fn main() {
    let url = std::env::var("BATCH_URL").unwrap_or_else(|_| DEFAULT_BATCH_URL.to_owned());
    let token = std::env::var("FARM_TOKEN").ok().filter(|t| !t.is_empty());
    match run(&url, token.as_deref()).await {
        Ok(lines) => {
            for line in lines {
                match line.outcome {
                    Ok(status) => println!("{} {}", line.id, status),
                    Err(why) => println!("{} error: {why}", line.id),
                }
            }
        }
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("batch to {url} failed: {message}");
            std::process::exit(1);
        }
    }
}
