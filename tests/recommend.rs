//! The recommendation example over real sockets: plain calls, distinct recommendations across
//! multipart, JSON and custom-format batches, and the delivery callback.

#[path = "../examples/recommend/app.rs"]
mod recommend;

use std::collections::HashSet;
use std::net::SocketAddr;

use axum::http::{HeaderMap, Request, StatusCode};
use bytes::Bytes;
use http_batch::format::multipart::{boundary_of, parse_response, split_parts};
use http_batch::Limits;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use recommend::{item_id, ranking, CATALOGUE_SIZE, DEFAULT_COUNT};

// ---------------------------------------------------------------------------------------------
// A small client

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    fn request_id(&self) -> &str {
        self.headers
            .get("x-request-id")
            .expect("an x-request-id header")
            .to_str()
            .unwrap()
    }
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, "GET", path, &[], Bytes::new()).await
}

async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    send(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// The ids of a recommendation answer.
fn ids(recommendation: &Value) -> Vec<String> {
    recommendation["recomms"]
        .as_array()
        .unwrap_or_else(|| panic!("no recomms in {recommendation}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_no_repeats(lists: &[Vec<String>]) {
    let all: Vec<&String> = lists.iter().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "an item id repeats across {lists:?}"
    );
}

const BOUNDARY: &str = "rec_test_boundary";

/// Sends a multipart batch of GET requests; returns the outer reply and the nested responses,
/// in order.
async fn multipart_batch(addr: SocketAddr, path: &str, targets: &[&str]) -> (Reply, Vec<Reply>) {
    let mut body = String::new();
    for (i, target) in targets.iter().enumerate() {
        body.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Type: application/http\r\nContent-ID: <{i}>\r\n\r\n\
             GET {target} HTTP/1.1\r\n\r\n\r\n"
        ));
    }
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    let ct = format!("multipart/mixed; boundary={BOUNDARY}");
    let reply = send(addr, "POST", path, &[("content-type", &ct)], body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let mime: mime::Mime = reply.headers["content-type"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let boundary = boundary_of(&mime).unwrap();
    let limits = Limits::default();
    let answers = split_parts(&reply.body, boundary.as_bytes(), &limits)
        .unwrap()
        .into_iter()
        .map(|raw| {
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let res = parse_response(&raw.slice(split + 4..), &limits).unwrap();
            let (p, body) = res.into_parts();
            Reply {
                status: p.status,
                headers: p.headers,
                body,
            }
        })
        .collect();
    (reply, answers)
}

// ---------------------------------------------------------------------------------------------
// Plain calls

#[tokio::test]
async fn plain_recommendation() {
    let addr = recommend::spawn().await;

    let first = get(addr, "/recomms/users/alice/items?count=7").await;
    assert_eq!(first.status, StatusCode::OK);
    let body = first.json();
    assert_eq!(body["recommId"], json!(first.request_id()));
    assert!(!first.request_id().is_empty());
    let alice = ids(&body);
    assert_eq!(alice.len(), 7);
    assert_eq!(alice, ranking("alice")[..7]);
    let catalogue: HashSet<String> = (0..CATALOGUE_SIZE).map(item_id).collect();
    assert!(alice.iter().all(|id| catalogue.contains(id)));

    // Deterministic: the same list again, under a new id.
    let again = get(addr, "/recomms/users/alice/items?count=7").await;
    assert_eq!(ids(&again.json()), alice);
    assert_ne!(again.request_id(), first.request_id());

    // A client-chosen request id is the recommId.
    let mine = send(
        addr,
        "GET",
        "/recomms/users/alice/items",
        &[("x-request-id", "my-id-1")],
        Bytes::new(),
    )
    .await;
    assert_eq!(mine.request_id(), "my-id-1");
    assert_eq!(mine.json()["recommId"], json!("my-id-1"));
    assert_eq!(ids(&mine.json()), alice[..DEFAULT_COUNT]);

    // Rankings differ between users.
    let bob = ids(&get(addr, "/recomms/users/bob/items?count=7").await.json());
    assert_ne!(bob, alice);

    // `count` is checked.
    for bad in ["0", "101", "many"] {
        let r = get(addr, &format!("/recomms/users/alice/items?count={bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "count={bad}");
        assert_eq!(r.json()["code"], json!(400));
    }
    let all = get(addr, "/recomms/users/alice/items?count=100").await;
    assert_eq!(ids(&all.json()), ranking("alice")[..100]);
}

// ---------------------------------------------------------------------------------------------
// Batches

const ALICE_10: &str = "/recomms/users/alice/items?count=10";

#[tokio::test]
async fn multipart_batch_with_distinct_recomms() {
    let addr = recommend::spawn().await;
    let targets = [
        ALICE_10,
        ALICE_10,
        "/recomms/users/bob/items?count=10",
        ALICE_10,
    ];
    let (outer, answers) = multipart_batch(addr, "/batch?distinctRecomms=true", &targets).await;
    let lists: Vec<Vec<String>> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
            ids(&a.json())
        })
        .collect();
    assert!(lists.iter().all(|l| l.len() == 10));
    assert_no_repeats(&lists);
    // Each item's recommId is its derived request id, which its response part carries.
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.json()["recommId"], json!(answer.request_id()));
        assert_eq!(answer.request_id(), format!("{}-{i}", outer.request_id()));
    }

    // Without the flag, two identical items give identical lists.
    let (_, answers) = multipart_batch(addr, "/batch", &[ALICE_10, ALICE_10]).await;
    let a = ids(&answers[0].json());
    assert_eq!(a, ids(&answers[1].json()));
    assert_eq!(a, ranking("alice")[..10]);
}

#[tokio::test]
async fn json_batch_with_distinct_recomms() {
    let addr = recommend::spawn().await;
    let envelope = json!({"requests": [
        {"id": "1", "method": "GET", "url": ALICE_10},
        {"id": "2", "method": "GET", "url": ALICE_10},
        {"id": "3", "method": "GET", "url": "/recomms/users/alice/items?count=10&distinctRecomms=false"},
    ]});
    let reply = post_json(addr, "/batch?distinctRecomms=true", &envelope).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let responses = reply.json()["responses"].as_array().unwrap().clone();
    assert_eq!(responses.len(), 3);
    let mut lists = Vec::new();
    for (r, id) in responses.iter().zip(["1", "2", "3"]) {
        assert_eq!(r["id"], json!(id));
        assert_eq!(r["status"], json!(200), "{r}");
        // recommId is the item's request id, which the item's headers carry.
        assert_eq!(r["body"]["recommId"], r["headers"]["X-Request-Id"]);
        lists.push(ids(&r["body"]));
    }
    // The first two share the batch's flag; the third overrides it with its own parameter
    // (the item's query wins over the inherited one) and gets the plain top ten.
    assert_no_repeats(&lists[..2]);
    assert_eq!(lists[2], ranking("alice")[..10]);
}

#[tokio::test]
async fn custom_format_with_envelope_flag() {
    let addr = recommend::spawn().await;
    let item =
        json!({"method": "GET", "path": "/recomms/users/alice/items", "params": {"count": 10}});
    let distinct = json!({"requests": [item, item, item], "distinctRecomms": true});
    let reply = post_json(addr, "/rec/batch/", &distinct).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json");
    let answers = reply.json();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 3);
    let lists: Vec<Vec<String>> = answers
        .iter()
        .map(|a| {
            assert_eq!(a["code"], json!(200), "{a}");
            ids(&a["json"])
        })
        .collect();
    assert!(lists.iter().all(|l| l.len() == 10));
    assert_no_repeats(&lists);

    // Without the envelope field, identical requests give identical lists.
    let plain = json!({"requests": [item, item]});
    let answers = post_json(addr, "/rec/batch/", &plain).await.json();
    assert_eq!(ids(&answers[0]["json"]), ranking("alice")[..10]);
    assert_eq!(ids(&answers[1]["json"]), ranking("alice")[..10]);

    // Item problems stay in their own entry; a body that is not JSON comes back as null.
    let mixed = json!({"requests": [
        {"path": "no-slash"},
        {"method": "GET", "path": "/nowhere"},
        {"method": "GET", "path": "/recomms/users/alice/items", "params": {"count": "2"}},
    ]});
    let answers = post_json(addr, "/rec/batch/", &mixed).await.json();
    assert_eq!(answers[0]["code"], json!(400));
    assert!(answers[0]["json"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-slash"));
    assert_eq!(answers[1], json!({"code": 404, "json": null}));
    assert_eq!(ids(&answers[2]["json"]), ranking("alice")[..2]);

    // A broken envelope rejects the whole batch, and the standard formats are not served here.
    let broken = send(
        addr,
        "POST",
        "/rec/batch/",
        &[("content-type", "application/json")],
        "[]",
    )
    .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    let multipart = send(
        addr,
        "POST",
        "/rec/batch/",
        &[("content-type", "multipart/mixed; boundary=x")],
        "--x--\r\n",
    )
    .await;
    assert_eq!(multipart.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

// ---------------------------------------------------------------------------------------------
// Delivery callback

fn callback(uid: &str, predict_request_id: &str, items: Value) -> Value {
    json!({"uid": uid, "scene": "home", "predictRequestId": predict_request_id, "items": items})
}

#[tokio::test]
async fn callback_flow() {
    let addr = recommend::spawn().await;
    let first = get(addr, "/recomms/users/carol/items?count=5").await;
    let pid = first.request_id().to_owned();
    let shown = ids(&first.json());
    assert_eq!(shown, ranking("carol")[..5]);

    // The caller dropped shown[1] and inserted an item that was not recommended.
    let inserted = ranking("carol")[50].clone();
    let delivered = json!([
        {"id": shown[0], "pos": 0},
        {"id": inserted, "pos": 1, "extra": {"reason": "promo"}},
        {"id": shown[2], "pos": 2},
    ]);
    let report = callback("carol", &pid, delivered.clone());
    let ok = post_json(addr, "/callback", &report).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json(), json!({"code": 0, "message": "OK"}));

    // Exactly the list given is recorded.
    let recorded = get(addr, &format!("/callback/{pid}")).await;
    assert_eq!(recorded.status, StatusCode::OK);
    assert_eq!(recorded.json()["items"], delivered);
    assert_eq!(recorded.json()["uid"], json!("carol"));

    let again = post_json(addr, "/callback", &report).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.json()["message"]
        .as_str()
        .unwrap()
        .contains("already reported"));

    let unknown = post_json(
        addr,
        "/callback",
        &callback("carol", "no-such-id", json!([])),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.json()["message"]
        .as_str()
        .unwrap()
        .contains("no-such-id"));
    // An id issued to someone else is unknown for this user.
    let dave = get(addr, "/recomms/users/dave/items").await;
    let wrong_user = post_json(
        addr,
        "/callback",
        &callback("carol", dave.request_id(), json!([])),
    )
    .await;
    assert_eq!(wrong_user.status, StatusCode::NOT_FOUND);
    let bad = send(
        addr,
        "POST",
        "/callback",
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Later recommendations leave out every reported item, and only those.
    let later = ids(&get(addr, "/recomms/users/carol/items?count=100")
        .await
        .json());
    for gone in [&shown[0], &inserted, &shown[2]] {
        assert!(
            !later.contains(gone),
            "{gone} was reported but recommended again"
        );
    }
    let expected: Vec<String> = ranking("carol")
        .into_iter()
        .filter(|id| ![&shown[0], &inserted, &shown[2]].contains(&id))
        .take(100)
        .collect();
    assert_eq!(later, expected);
    assert!(later.contains(&shown[1]), "a dropped item stays eligible");
    // Other users are unaffected.
    let erin = ids(&get(addr, "/recomms/users/erin/items?count=100")
        .await
        .json());
    assert_eq!(erin, ranking("erin")[..100]);
}

#[tokio::test]
async fn callback_in_the_engines_own_shape() {
    // The engine's delivery API sends `pos` as a slot name and `extra` as a JSON-encoded string.
    let addr = recommend::spawn().await;
    let first = get(addr, "/recomms/users/grace/items?count=3").await;
    let pid = first.request_id().to_owned();
    let shown = ids(&first.json());
    let items = json!([
        {"id": shown[0], "pos": "position1", "extra": "{\"reason\":\"promo\",\"rank\":2}"},
        {"id": shown[1], "pos": 2, "extra": {"reason": "organic"}},
        {"id": shown[2], "pos": "position3", "extra": "not json"},
    ]);
    let ok = post_json(addr, "/callback", &callback("grace", &pid, items)).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);

    let recorded = get(addr, &format!("/callback/{pid}")).await;
    assert_eq!(recorded.status, StatusCode::OK);
    assert_eq!(
        recorded.json()["items"],
        json!([
            {"id": shown[0], "pos": "position1", "extra": {"reason": "promo", "rank": 2}},
            {"id": shown[1], "pos": 2, "extra": {"reason": "organic"}},
            {"id": shown[2], "pos": "position3", "extra": "not json"},
        ])
    );
    let report: recommend::Callback = serde_json::from_value(recorded.json()).unwrap();
    let positions: Vec<Option<u64>> = report
        .items
        .iter()
        .map(|item| item.pos.as_ref().and_then(recommend::Position::index))
        .collect();
    assert_eq!(positions, [Some(1), Some(2), Some(3)]);

    // Reported items are not recommended again.
    let later = ids(&get(addr, "/recomms/users/grace/items?count=100")
        .await
        .json());
    assert!(shown.iter().all(|id| !later.contains(id)), "{later:?}");

    // Other shapes are still refused.
    let next = get(addr, "/recomms/users/grace/items?count=1").await;
    let bad = post_json(
        addr,
        "/callback",
        &callback(
            "grace",
            next.request_id(),
            json!([{"id": "item-001", "pos": {"slot": 1}}]),
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn callback_with_a_batch_items_request_id() {
    let addr = recommend::spawn().await;
    let (_, answers) = multipart_batch(
        addr,
        "/batch",
        &[
            "/recomms/users/frank/items?count=3",
            "/recomms/users/frank/items?count=3",
        ],
    )
    .await;
    let pid = answers[1].request_id().to_owned();
    let shown = ids(&answers[1].json());
    let items: Vec<Value> = shown.iter().map(|id| json!({"id": id})).collect();
    let ok = post_json(addr, "/callback", &callback("frank", &pid, json!(items))).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let again = post_json(addr, "/callback", &callback("frank", &pid, json!(items))).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    // The other item's id is a different recommendation, still unreported.
    let other = answers[0].request_id();
    assert_ne!(other, pid);
    let ok = post_json(addr, "/callback", &callback("frank", other, json!([]))).await;
    assert_eq!(ok.status, StatusCode::OK);

    let later = ids(&get(addr, "/recomms/users/frank/items?count=3").await.json());
    assert_eq!(later, ranking("frank")[3..6]);
}

#[tokio::test]
async fn without_the_request_id_layers_the_handler_makes_its_own_id() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, recommend::api()).await.unwrap() });

    let a = get(addr, "/recomms/users/alice/items").await;
    let b = get(addr, "/recomms/users/alice/items").await;
    assert!(a.request_id().starts_with("rec-"), "{}", a.request_id());
    assert_eq!(a.json()["recommId"], json!(a.request_id()));
    assert_ne!(a.request_id(), b.request_id());
    // The made-up id is remembered like any other, so it can be reported.
    let items = json!([{"id": ids(&a.json())[0]}]);
    let ok = post_json(addr, "/callback", &callback("alice", a.request_id(), items)).await;
    assert_eq!(ok.status, StatusCode::OK);
}
