//! The batch client: against the farm app over real sockets, and against canned answers in the
//! shapes real servers send.

#[path = "../examples/farm/app.rs"]
mod farm;

#[allow(dead_code)]
#[path = "../examples/client.rs"]
mod client_example;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_batch::client::{BatchItem, BatchRequest, ClientError, Encoding, ItemFailure};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn batch_uri(addr: SocketAddr) -> Uri {
    format!("http://{addr}/batch/farm/v1").parse().unwrap()
}

fn get(path: &str) -> Request<Bytes> {
    Request::get(path).body(Bytes::new()).unwrap()
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn round_trip_against_the_farm() {
    let addr = farm::spawn(None).await;
    let mut batch = BatchRequest::new(batch_uri(addr));
    batch.add_with_id("list", get("/farm/v1/animals")).unwrap();
    let pony = batch
        .add_with_id("pony", get("/farm/v1/animals/pony"))
        .unwrap();
    let insert = Request::post("/farm/v1/animals")
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"animalName":"goat","animalAge":2}"#)
        .unwrap();
    batch.add_with_id("insert", insert).unwrap();
    let missing = batch.add(get("/farm/v1/animals/unicorn"));
    assert_eq!(missing.id(), "item-1");

    let answers = batch.send(http_client()).await.unwrap();
    assert_eq!(
        answers.ids().collect::<Vec<_>>(),
        ["list", "pony", "insert", "item-1"]
    );
    let statuses: Vec<u16> = answers
        .iter()
        .map(|(_, o)| o.unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 201, 404]);

    let list = json(answers.get("list").unwrap().unwrap().body());
    assert_eq!(list["kind"], "farm#animalList");
    let inserted = json(answers.get("insert").unwrap().unwrap().body());
    assert_eq!(inserted["animalName"], "goat");
    let not_found = json(answers.get("item-1").unwrap().unwrap().body());
    assert_eq!(
        not_found["error"]["message"],
        "Animal 'unicorn' was not found."
    );

    // The handles carry the same answers.
    let pony = pony.await.unwrap();
    assert_eq!(pony.status(), 200);
    assert!(pony.headers().contains_key("etag"));
    assert_eq!(json(pony.body())["animalName"], "pony");
    assert_eq!(missing.await.unwrap().status(), 404);
}

#[tokio::test]
async fn callbacks_run_once_per_item_in_order() {
    let addr = farm::spawn(None).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut batch = BatchRequest::new(batch_uri(addr));
    for name in ["pony", "sheep", "dragon"] {
        let seen = seen.clone();
        batch
            .push(
                BatchItem::new(get(&format!("/farm/v1/animals/{name}")))
                    .id(name)
                    .callback(move |id, outcome| {
                        let status = outcome.unwrap().status().as_u16();
                        seen.lock().unwrap().push((id.to_owned(), status));
                    }),
            )
            .unwrap();
    }
    batch.send(http_client()).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("pony".to_owned(), 200),
            ("sheep".to_owned(), 200),
            ("dragon".to_owned(), 404)
        ]
    );
}

/// Counts the batch requests that go through a client.
#[derive(Clone)]
struct Counting {
    inner: HttpClient,
    count: Arc<AtomicUsize>,
}

impl tower::Service<Request<Full<Bytes>>> for Counting {
    type Response = <HttpClient as tower::Service<Request<Full<Bytes>>>>::Response;
    type Error = <HttpClient as tower::Service<Request<Full<Bytes>>>>::Error;
    type Future = <HttpClient as tower::Service<Request<Full<Bytes>>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        self.count.fetch_add(1, Ordering::SeqCst);
        tower::Service::call(&mut self.inner, req)
    }
}

async fn split_batch(concurrency: usize) {
    let addr = farm::spawn(None).await;
    let count = Arc::new(AtomicUsize::new(0));
    let client = Counting {
        inner: http_client(),
        count: count.clone(),
    };
    let mut batch = BatchRequest::new(batch_uri(addr))
        .max_per_batch(3)
        .concurrency(concurrency);
    let mut handles = Vec::new();
    for ms in 0..10 {
        // Later items finish sooner, so concurrent sub-batches complete out of order.
        let path = format!("/farm/v1/slow/{}", (10 - ms) * 3);
        handles.push((ms, batch.add(get(&path))));
    }
    let answers = batch.send(client).await.unwrap();
    assert_eq!(
        count.load(Ordering::SeqCst),
        4,
        "10 items, 3 per batch request"
    );
    assert_eq!(answers.len(), 10);
    for ((_, outcome), ms) in answers.iter().zip(0..) {
        assert_eq!(json(outcome.unwrap().body())["sleptMs"], (10 - ms) * 3);
    }
    for (ms, handle) in handles {
        let res = handle.await.unwrap();
        assert_eq!(json(res.body())["sleptMs"], (10 - ms) * 3);
    }
}

#[tokio::test]
async fn large_batch_splits_sequentially() {
    split_batch(1).await;
}

#[tokio::test]
async fn large_batch_splits_concurrently() {
    split_batch(4).await;
}

#[tokio::test]
async fn outer_rejection_carries_the_server_message() {
    // 1001 items in one batch request: the server's limit is 1000, so it answers 413.
    let addr = farm::spawn(None).await;
    let mut batch = BatchRequest::new(batch_uri(addr)).max_per_batch(2000);
    let mut handles = Vec::new();
    for _ in 0..1001 {
        handles.push(batch.add(get("/farm/v1/farmers")));
    }
    let err = batch.send(http_client()).await.unwrap_err();
    match &err {
        ClientError::Status {
            status, message, ..
        } => {
            assert_eq!(*status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(message, "batch has 1001 items; the limit is 1000");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    assert!(err.to_string().contains("the limit is 1000"), "{err}");
    // Every handle learns about it too.
    match handles.pop().unwrap().await {
        Err(ItemFailure::Batch(ClientError::Status { status, .. })) => {
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn outer_authorization_is_inherited_by_items() {
    let addr = farm::spawn(Some("s3cret".into())).await;
    let mut batch = BatchRequest::new(batch_uri(addr))
        .header(AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
    batch.add_with_id("who", get("/farm/v1/whoami")).unwrap();
    let answers = batch.send(http_client()).await.unwrap();
    let who = json(answers.get("who").unwrap().unwrap().body());
    assert_eq!(who["authorization"], "Bearer s3cret");

    let mut batch = BatchRequest::new(batch_uri(addr));
    batch.add_with_id("who", get("/farm/v1/whoami")).unwrap();
    let answers = batch.send(http_client()).await.unwrap();
    assert_eq!(answers.get("who").unwrap().unwrap().status(), 401);
}

#[tokio::test]
async fn transport_error_reaches_send_and_handles() {
    // A port that was just free: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut batch = BatchRequest::new(batch_uri(addr));
    let handle = batch.add(get("/farm/v1/farmers"));
    let err = batch.send(http_client()).await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
    assert!(matches!(
        handle.await,
        Err(ItemFailure::Batch(ClientError::Transport(_)))
    ));
}

#[test]
fn duplicate_id_is_refused_at_add_time() {
    let mut batch = BatchRequest::new(Uri::from_static("http://127.0.0.1:1/batch"));
    batch
        .add_with_id("pony", get("/farm/v1/animals/pony"))
        .unwrap();
    let err = batch
        .add_with_id("pony", get("/farm/v1/animals/sheep"))
        .unwrap_err();
    assert!(matches!(&err, ClientError::DuplicateId { id } if id == "pony"));
    assert_eq!(
        err.to_string(),
        "an item with id `pony` is already in the batch"
    );
    assert_eq!(batch.len(), 1);
}

#[tokio::test]
async fn example_client_runs_against_the_farm() {
    let addr = farm::spawn(Some("tok".into())).await;
    let url = format!("http://{addr}/batch/farm/v1");
    let lines = client_example::run(&url, Some("tok")).await.unwrap();
    let got: Vec<(&str, u16)> = lines
        .iter()
        .map(|l| (l.id.as_str(), l.outcome.as_ref().unwrap().as_u16()))
        .collect();
    assert_eq!(
        got,
        [
            ("list", 200),
            ("pony", 200),
            ("insert", 201),
            ("missing", 404)
        ]
    );
    // Each run inserts a fresh name, so a second run succeeds the same way.
    let again = client_example::run(&url, Some("tok")).await.unwrap();
    assert_eq!(again[2].outcome.as_ref().unwrap().as_u16(), 201);
    // Without the token every item is refused, but the batch itself is answered.
    let refused = client_example::run(&url, None).await.unwrap();
    assert!(refused
        .iter()
        .all(|l| l.outcome.as_ref().unwrap().as_u16() == 401));
}

#[tokio::test]
async fn example_client_fails_when_no_server_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/batch/farm/v1");
    assert!(client_example::run(&url, None).await.is_err());
}

// ---- canned answers ----------------------------------------------------------------------

/// What a canned client saw: the bodies of the batch requests sent to it.
type Seen = Arc<Mutex<Vec<Bytes>>>;

/// A client that answers every request with the same canned response and keeps the request.
fn canned(
    status: u16,
    content_type: &'static str,
    body: String,
) -> (
    impl tower::Service<
            Request<Full<Bytes>>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
            Future = impl Send,
        > + Clone,
    Seen,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let svc = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let body = body.clone();
        let kept = kept.clone();
        async move {
            let sent = req.into_body().collect().await.unwrap().to_bytes();
            kept.lock().unwrap().push(sent);
            let mut res = Response::new(Full::new(Bytes::from(body)));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            Ok::<_, Infallible>(res)
        }
    });
    (svc, seen)
}

const PONY: &str = r#"{
  "kind": "farm#animal",
  "etag": "etag/pony",
  "selfLink": "/farm/v1/animals/pony",
  "animalName": "pony",
  "animalAge": 34,
  "peltColor": "white"
}"#;

const SHEEP: &str = r#"{
  "kind": "farm#animal",
  "etag": "etag/sheep",
  "selfLink": "/farm/v1/animals/sheep",
  "animalName": "sheep",
  "animalAge": 5,
  "peltColor": "green"
}"#;

/// The batch response from Google's batch documentation, with real lengths, a preamble, and
/// `eol` as line end throughout (the JSON bodies included).
fn google_example(eol: &str) -> String {
    let pony = PONY.replace('\n', eol);
    let sheep = SHEEP.replace('\n', eol);
    let text = format!(
        "This preamble is ignored.\n\
--batch_foobarbaz\n\
Content-Type: application/http\n\
Content-ID: <response-item1:12930812@barnyard.example.com>\n\
\n\
HTTP/1.1 200 OK\n\
Content-Type: application/json\n\
Content-Length: {}\n\
ETag: \"etag/pony\"\n\
\n\
{pony}\n\
\n\
--batch_foobarbaz\n\
Content-Type: application/http\n\
Content-ID: <response-item2:12930812@barnyard.example.com>\n\
\n\
HTTP/1.1 200 OK\n\
Content-Type: application/json\n\
Content-Length: {}\n\
ETag: \"etag/sheep\"\n\
\n\
{sheep}\n\
\n\
--batch_foobarbaz\n\
Content-Type: application/http\n\
Content-ID: <response-item3:12930812@barnyard.example.com>\n\
\n\
HTTP/1.1 304 Not Modified\n\
ETag: \"etag/animals\"\n\
\n\
--batch_foobarbaz--\n",
        pony.len(),
        sheep.len()
    );
    // The bodies already have their line ends; convert the rest without touching them.
    text.split(&pony)
        .map(|t| {
            t.split(&sheep)
                .map(|u| u.replace('\n', eol))
                .collect::<Vec<_>>()
                .join(&sheep)
        })
        .collect::<Vec<_>>()
        .join(&pony)
}

fn google_example_response() -> String {
    google_example("\n")
}

fn google_example_batch(uri: &str) -> (BatchRequest, Vec<http_batch::client::ItemHandle>) {
    let mut batch = BatchRequest::new(uri.parse().unwrap());
    let mut handles = Vec::new();
    for (n, path) in [
        (1, "/farm/v1/animals/pony"),
        (2, "/farm/v1/animals/sheep"),
        (3, "/farm/v1/animals"),
    ] {
        let id = format!("item{n}:12930812@barnyard.example.com");
        handles.push(batch.add_with_id(id, get(path)).unwrap());
    }
    (batch, handles)
}

async fn check_google_example(body: String) {
    let (client, seen) = canned(200, "multipart/mixed; boundary=batch_foobarbaz", body);
    let (batch, handles) = google_example_batch("https://www.googleapis.com/batch/farm/v1");
    let answers = batch.send(client).await.unwrap();

    let sent = String::from_utf8(seen.lock().unwrap()[0].to_vec()).unwrap();
    assert!(sent.contains("Content-ID: <item1:12930812@barnyard.example.com>\r\n"));
    assert!(sent.contains("GET /farm/v1/animals/sheep HTTP/1.1\r\n"));

    let pony = answers
        .get("item1:12930812@barnyard.example.com")
        .unwrap()
        .unwrap();
    assert_eq!(pony.status(), 200);
    assert_eq!(pony.headers()["etag"], "\"etag/pony\"");
    assert_eq!(json(pony.body())["animalAge"], 34);
    let sheep = answers
        .get("item2:12930812@barnyard.example.com")
        .unwrap()
        .unwrap();
    assert_eq!(json(sheep.body())["peltColor"], "green");
    let list = answers
        .get("item3:12930812@barnyard.example.com")
        .unwrap()
        .unwrap();
    assert_eq!(list.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(list.headers()["etag"], "\"etag/animals\"");
    assert!(list.body().is_empty());

    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 304]);
}

#[tokio::test]
async fn reads_googles_documented_example_with_lf() {
    check_google_example(google_example_response()).await;
}

#[tokio::test]
async fn reads_googles_documented_example_with_crlf() {
    let body = google_example("\r\n");
    assert!(!body.replace("\r\n", "").contains('\n'));
    check_google_example(body).await;
}

#[tokio::test]
async fn matches_out_of_order_parts_by_content_id() {
    let body = google_example_response();
    // Move the 304 part to the front.
    let start = body
        .find("--batch_foobarbaz\nContent-Type: application/http\nContent-ID: <response-item3")
        .unwrap();
    let end = body.find("--batch_foobarbaz--").unwrap();
    let first = body.find("--batch_foobarbaz\n").unwrap();
    let reordered = format!(
        "{}{}{}{}",
        &body[..first],
        &body[start..end],
        &body[first..start],
        &body[end..]
    );
    assert_ne!(reordered, body);
    check_google_example(reordered).await;
}

#[tokio::test]
async fn falls_back_to_position_without_content_ids() {
    let body = "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}\r\n\
--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n\r\n--b--\r\n";
    let (client, _) = canned(200, "multipart/mixed; boundary=b", body.into());
    let mut batch = BatchRequest::new(Uri::from_static("http://x/batch"));
    batch.add_with_id("a", get("/a")).unwrap();
    batch.add_with_id("b", get("/b")).unwrap();
    let answers = batch.send(client).await.unwrap();
    assert_eq!(answers.get("a").unwrap().unwrap().status(), 200);
    assert_eq!(answers.get("b").unwrap().unwrap().status(), 404);
}

#[tokio::test]
async fn missing_part_is_an_item_error() {
    let body = google_example_response();
    let cut = body
        .find("--batch_foobarbaz\nContent-Type: application/http\nContent-ID: <response-item2")
        .unwrap();
    let end = body
        .find("--batch_foobarbaz\nContent-Type: application/http\nContent-ID: <response-item3")
        .unwrap();
    let without_sheep = format!("{}{}", &body[..cut], &body[end..]);
    let (client, _) = canned(
        200,
        "multipart/mixed; boundary=batch_foobarbaz",
        without_sheep,
    );
    let (batch, mut handles) = google_example_batch("http://x/batch/farm/v1");
    let answers = batch.send(client).await.unwrap();
    let outcomes: Vec<_> = answers
        .iter()
        .map(|(_, o)| o.map(|r| r.status().as_u16()))
        .collect();
    assert!(
        matches!(outcomes[..], [Ok(200), Err(ItemFailure::Missing), Ok(304)]),
        "{outcomes:?}"
    );
    assert!(matches!(handles.remove(1).await, Err(ItemFailure::Missing)));
}

#[tokio::test]
async fn malformed_part_spoils_only_its_item() {
    // Google's page shows `Content-Type application/json` without its colon; such a head cannot
    // be parsed, and only that item suffers.
    let body = google_example_response().replacen(
        "Content-Type: application/json",
        "Content-Type application/json",
        1,
    );
    let (client, _) = canned(200, "multipart/mixed; boundary=batch_foobarbaz", body);
    let (batch, _) = google_example_batch("http://x/batch/farm/v1");
    let answers = batch.send(client).await.unwrap();
    let mut outcomes = answers.iter().map(|(_, o)| o);
    assert!(matches!(
        outcomes.next(),
        Some(Err(ItemFailure::Malformed { .. }))
    ));
    assert_eq!(outcomes.next().unwrap().unwrap().status(), 200);
    assert_eq!(outcomes.next().unwrap().unwrap().status(), 304);
}

#[tokio::test]
async fn non_2xx_outer_status_with_google_error_body() {
    let body = r#"{"error":{"code":401,"message":"Request is missing required authentication credential.","status":"UNAUTHENTICATED"}}"#;
    let (client, _) = canned(401, "application/json; charset=UTF-8", body.into());
    let (batch, _) = google_example_batch("http://x/batch/farm/v1");
    let err = batch.send(client).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(
        err.to_string(),
        "the server rejected the batch with 401 Unauthorized: Request is missing required authentication credential."
    );
}

#[tokio::test]
async fn non_2xx_outer_status_with_text_body() {
    let (client, _) = canned(502, "text/plain", "Bad Gateway\n".into());
    let (batch, _) = google_example_batch("http://x/batch/farm/v1");
    let err = batch.send(client).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { message, .. } if message == "Bad Gateway"),
        "{err:?}"
    );
}

#[tokio::test]
async fn answer_that_is_not_multipart_is_a_decode_error() {
    let (client, _) = canned(200, "application/json", "{}".into());
    let (batch, _) = google_example_batch("http://x/batch/farm/v1");
    let err = batch.send(client).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn empty_batch_sends_nothing() {
    let (client, seen) = canned(500, "text/plain", String::new());
    let batch = BatchRequest::new(Uri::from_static("http://x/batch"));
    let answers = batch.send(client).await.unwrap();
    assert!(answers.is_empty());
    assert!(seen.lock().unwrap().is_empty());
}

// ---- JSON batches ------------------------------------------------------------------------

#[tokio::test]
async fn json_round_trip_with_dependencies() {
    let addr = farm::spawn(None).await;
    let mut batch = BatchRequest::new(batch_uri(addr)).encoding(Encoding::Json);
    let insert = Request::post("/farm/v1/animals")
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"animalName":"llama","animalAge":4}"#)
        .unwrap();
    batch.add_with_id("insert", insert).unwrap();
    let llama = batch
        .push(
            BatchItem::new(get("/farm/v1/animals/llama"))
                .id("llama")
                .depends_on(["insert"]),
        )
        .unwrap();
    batch
        .add_with_id("dragon", get("/farm/v1/animals/dragon"))
        .unwrap();
    let answers = batch.send(http_client()).await.unwrap();
    let statuses: Vec<u16> = answers
        .iter()
        .map(|(_, o)| o.unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses, [201, 200, 404]);
    let llama = llama.await.unwrap();
    assert_eq!(json(llama.body())["animalAge"], 4);
    assert_eq!(llama.headers()[CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn json_answer_matched_by_id_in_any_order() {
    let body = r#"{"responses":[
        {"id":"b","status":404,"body":{"error":{"message":"nope"}}},
        {"id":"a","status":200,"headers":{"content-type":"application/json"},"body":{"ok":true}}
    ]}"#;
    let (client, seen) = canned(200, "application/json; charset=utf-8", body.into());
    let mut batch = BatchRequest::new(Uri::from_static("http://x/batch")).encoding(Encoding::Json);
    batch.add_with_id("a", get("/a")).unwrap();
    batch.add_with_id("b", get("/b")).unwrap();
    batch.add_with_id("c", get("/c")).unwrap();
    let answers = batch.send(client).await.unwrap();
    let sent = json(&seen.lock().unwrap()[0]);
    assert_eq!(sent["requests"][2]["url"], "/c");
    assert_eq!(json(answers.get("a").unwrap().unwrap().body())["ok"], true);
    assert_eq!(answers.get("b").unwrap().unwrap().status(), 404);
    assert!(matches!(
        answers.get("c").unwrap(),
        Err(ItemFailure::Missing)
    ));
}

/// The client reads at most `max_response_bytes` of an answer, instead of filling memory.
#[tokio::test]
async fn answer_over_the_client_limit_fails_the_batch() {
    let addr = farm::spawn(None).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let uri: http::Uri = format!("http://{addr}/batch").parse().unwrap();
    let mut batch = http_batch::client::BatchRequest::new(uri.clone()).max_response_bytes(100);
    let handle = batch.add(
        http::Request::get("/farm/v1/animals")
            .body(bytes::Bytes::new())
            .unwrap(),
    );
    let err = batch.send(client.clone()).await.unwrap_err();
    assert!(
        matches!(err, http_batch::client::ClientError::Body(_)),
        "{err:?}"
    );
    assert!(handle.await.is_err());
    // The same batch with room to spare works.
    let mut batch = http_batch::client::BatchRequest::new(uri).max_response_bytes(1 << 20);
    let handle = batch.add(
        http::Request::get("/farm/v1/animals")
            .body(bytes::Bytes::new())
            .unwrap(),
    );
    batch.send(client).await.unwrap();
    assert_eq!(handle.await.unwrap().status(), 200);
}
