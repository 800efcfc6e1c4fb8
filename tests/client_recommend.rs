//! The crate's own client against the recommendation example: multipart and JSON batches, with
//! request ids and distinct recommendations across the batch.

#[path = "../examples/recommend/app.rs"]
mod recommend;

use std::collections::HashSet;

use bytes::Bytes;
use http::Request;
use http_batch::client::{BatchRequest, Encoding};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn distinct_batch(encoding: Encoding) {
    let addr = recommend::spawn().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri = format!("http://{addr}/batch?distinctRecomms=true")
        .parse()
        .unwrap();
    let mut batch = BatchRequest::new(uri).encoding(encoding).header(
        http::header::HeaderName::from_static("x-request-id"),
        http::HeaderValue::from_static("outer-1"),
    );
    let handles: Vec<_> = (0..4)
        .map(|i| {
            batch
                .add_with_id(
                    format!("u{i}"),
                    Request::get("/recomms/users/alice/items?count=5")
                        .body(Bytes::new())
                        .unwrap(),
                )
                .unwrap()
        })
        .collect();
    let answers = batch.send(client).await.expect("batch answered");
    assert_eq!(answers.len(), 4);
    let mut seen = HashSet::new();
    for (i, handle) in handles.into_iter().enumerate() {
        let res = handle.await.expect("item answered");
        assert_eq!(res.status(), 200);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id, format!("outer-1-{i}"), "derived request id");
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(
            body["recommId"],
            id.as_str(),
            "recommId is the item's request id"
        );
        let recomms = body["recomms"].as_array().unwrap();
        assert_eq!(recomms.len(), 5);
        for r in recomms {
            assert!(
                seen.insert(r["id"].as_str().unwrap().to_owned()),
                "repeated {r}"
            );
        }
    }
    assert_eq!(seen.len(), 20);
}

#[tokio::test]
async fn client_multipart_against_recommend() {
    distinct_batch(Encoding::Multipart).await;
}

#[tokio::test]
async fn client_json_against_recommend() {
    distinct_batch(Encoding::Json).await;
}
