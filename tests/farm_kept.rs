//! The farm example with asynchronous batches and idempotency keys at every batch route: a
//! Google batch and an OData 4 JSON batch answered through a status monitor, and a retried
//! insert replayed instead of run again.

#[path = "../examples/farm/app.rs"]
mod farm;
mod support;

use std::time::Duration;

use support::kept::{poll_done, unwrap_http};
use support::{batch, parts, post};

#[tokio::test]
async fn google_batch_through_a_status_monitor() {
    let addr = farm::spawn(None).await;
    let body = batch(
        "b",
        &[
            ("<a>", "GET /farm/v1/slow/200 HTTP/1.1"),
            ("<b>", "GET /farm/v1/animals/pony HTTP/1.1"),
        ],
    );
    let accepted = post(
        addr,
        "/batch",
        "multipart/mixed; boundary=b",
        body,
        &[("prefer", "respond-async")],
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let location = accepted.headers["location"].to_str().unwrap().to_owned();
    let done = poll_done(addr, &location, &[], Duration::from_secs(10)).await;
    let answer = unwrap_http(&done);
    let items = parts(&answer).await;
    assert_eq!(items[0].json()["sleptMs"], 200);
    assert_eq!(items[1].status, 200);
    assert_eq!(items[1].content_id.as_deref(), Some("<response-b>"));
}

#[tokio::test]
async fn odata_json_batch_through_a_status_monitor() {
    let addr = farm::spawn(None).await;
    let body = r#"{"requests":[{"id":"1","method":"get","url":"animals/pony"}]}"#;
    let accepted = post(
        addr,
        "/odata/v4/farm/v1/$batch",
        "application/json",
        body,
        &[("prefer", "respond-async")],
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let location = accepted.headers["location"].to_str().unwrap().to_owned();
    let done = poll_done(addr, &location, &[], Duration::from_secs(10)).await;
    let answer = unwrap_http(&done);
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["responses"][0]["id"], "1");
    assert_eq!(json["responses"][0]["status"], 200);
}

#[tokio::test]
async fn a_retried_insert_is_replayed_not_run_again() {
    let addr = farm::spawn(None).await;
    let insert = r#"{"animalName":"goat","animalAge":2,"peltColor":"white"}"#;
    let item = format!(
        "POST /farm/v1/animals HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{insert}",
        insert.len()
    );
    let body = batch("b", &[("<i>", &item)]);
    let send = |headers: &'static [(&'static str, &'static str)]| {
        post(
            addr,
            "/batch",
            "multipart/mixed; boundary=b",
            body.clone(),
            headers,
        )
    };
    let first = send(&[("idempotency-key", "goat-1")]).await;
    let made = parts(&first).await[0].status;
    assert!((200..300).contains(&made), "{made}");
    let retry = send(&[("idempotency-key", "goat-1")]).await;
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(
        parts(&retry).await[0].status,
        made,
        "the first answer, not a conflict"
    );
    assert_eq!(retry.body, first.body);
    // Without the key, the insert runs again and meets the goat it made.
    let again = send(&[]).await;
    assert_eq!(parts(&again).await[0].status, 409);
}
