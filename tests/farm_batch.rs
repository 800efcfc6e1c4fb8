//! Round trips through a real socket against the farm example: the wire contract of the core
//! issue (Google's multipart batch format).

#[path = "../examples/farm/app.rs"]
mod farm;
mod support;

use std::time::Duration;

use support::{batch, parts, post, post_batch};

#[tokio::test]
async fn seed_example_batch_get_put_if_none_match() {
    let addr = farm::spawn(None).await;
    // Learn the current etags, as a client would.
    let first = post_batch(
        addr,
        "/batch/farm/v1",
        "b1",
        batch(
            "b1",
            &[
                ("<e1>", "GET /farm/v1/animals/sheep HTTP/1.1"),
                ("<e2>", "GET /farm/v1/animals HTTP/1.1"),
            ],
        ),
    )
    .await;
    let p = parts(&first).await;
    let sheep_etag = p[0].json()["etag"].as_str().unwrap().to_owned();
    let list_etag = p[1].headers["etag"].to_str().unwrap().to_owned();

    let put_body = r#"{"animalName":"sheep","animalAge":6,"peltColor":"green"}"#;
    let put_len = put_body.len();
    let body = format!(
        "--END_OF_PART\r\n\
Content-Type: application/http\r\n\
Content-ID: <item1:12930812@barnyard.example.com>\r\n\
\r\n\
GET /farm/v1/animals/pony\r\n\
\r\n\
--END_OF_PART\r\n\
Content-Type: application/http\r\n\
Content-ID: <item2:12930812@barnyard.example.com>\r\n\
\r\n\
PUT /farm/v1/animals/sheep\r\n\
Content-Type: application/json\r\n\
Content-Length: {put_len}\r\n\
If-Match: {sheep_etag}\r\n\
\r\n\
{put_body}  \r\n\
--END_OF_PART\r\n\
Content-Type: application/http\r\n\
Content-ID: <item3:12930812@barnyard.example.com>\r\n\
\r\n\
GET /farm/v1/animals\r\n\
If-None-Match: {list_etag}\r\n\
\r\n\
--END_OF_PART--\r\n"
    );
    let raw = post_batch(addr, "/batch/farm/v1", "END_OF_PART", body).await;
    let p = parts(&raw).await;
    assert_eq!(p.len(), 3);
    assert_eq!(
        p[0].content_id.as_deref(),
        Some("<response-item1:12930812@barnyard.example.com>")
    );
    assert_eq!(
        p[1].content_id.as_deref(),
        Some("<response-item2:12930812@barnyard.example.com>")
    );
    assert_eq!(
        p[2].content_id.as_deref(),
        Some("<response-item3:12930812@barnyard.example.com>")
    );
    assert_eq!(p[0].status, 200);
    assert_eq!(p[0].json()["animalName"], "pony");
    assert_eq!(p[0].json()["animalAge"], 34);
    assert_eq!(p[1].status, 200, "{}", String::from_utf8_lossy(&p[1].body));
    assert_eq!(p[1].json()["kind"], "farm#animal");
    // The list etag was taken before the PUT; the items run concurrently, so the list either
    // still matches (304) or has changed (200) — both are correct answers.
    assert!(p[2].status == 304 || p[2].status == 200, "{}", p[2].status);
    assert_eq!(
        p[2].reason,
        if p[2].status == 304 {
            "Not Modified"
        } else {
            "OK"
        }
    );
}

#[tokio::test]
async fn if_none_match_gives_304_in_a_sequential_batch() {
    let addr = farm::spawn(None).await;
    let raw = post_batch(
        addr,
        "/batch",
        "b",
        batch("b", &[("", "GET /farm/v1/animals/cow HTTP/1.1")]),
    )
    .await;
    let etag = parts(&raw).await[0].headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let raw = post_batch(
        addr,
        "/batch",
        "b",
        batch(
            "b",
            &[(
                "1",
                &format!("GET /farm/v1/animals/cow HTTP/1.1\r\nIf-None-Match: {etag}\r\n"),
            )],
        ),
    )
    .await;
    let p = parts(&raw).await;
    assert_eq!(p[0].status, 304);
    assert_eq!(p[0].reason, "Not Modified");
    assert_eq!(p[0].content_id.as_deref(), Some("response-1"));
    assert!(p[0].body.is_empty());
}

#[tokio::test]
async fn mixed_success_and_failure_keeps_order() {
    let addr = farm::spawn(None).await;
    let raw = post_batch(
        addr,
        "/batch",
        "x",
        batch(
            "x",
            &[
                ("<a>", "GET /farm/v1/animals/pony HTTP/1.1"),
                ("<b>", "GET /farm/v1/animals/unicorn HTTP/1.1"),
                ("<c>", "POST /farm/v1/animals HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"animalName\":\"pony\"}"),
                ("<d>", "POST /farm/v1/animals HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{not json"),
                ("<e>", "DELETE /farm/v1/animals/cow HTTP/1.1"),
                ("<f>", "GET /farm/v1/farmers HTTP/1.1"),
            ],
        ),
    )
    .await;
    let p = parts(&raw).await;
    let statuses: Vec<u16> = p.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [200, 404, 409, 400, 204, 200]);
    let ids: Vec<&str> = p.iter().map(|p| p.content_id.as_deref().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "<response-a>",
            "<response-b>",
            "<response-c>",
            "<response-d>",
            "<response-e>",
            "<response-f>"
        ]
    );
    assert_eq!(p[1].json()["error"]["code"], 404);
    assert_eq!(p[5].json()["kind"], "farm#farmerList");
}

#[tokio::test]
async fn item_level_400_next_to_good_items() {
    let addr = farm::spawn(None).await;
    let raw = post_batch(
        addr,
        "/batch",
        "x",
        batch(
            "x",
            &[
                ("<1>", "GET /farm/v1/animals/pony HTTP/1.1"),
                ("<2>", "{\"json\": \"is not a request\"}"),
                ("<3>", "GET /farm/v1/animals/cow HTTP/7.0"),
                ("<4>", "GET /farm/v1/animals/cow HTTP/1.1"),
            ],
        ),
    )
    .await;
    let p = parts(&raw).await;
    assert_eq!(
        p.iter().map(|p| p.status).collect::<Vec<_>>(),
        [200, 400, 400, 200]
    );
    let msg = p[1].json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("method"), "{msg}");
    let msg = p[2].json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("version"), "{msg}");
    assert_eq!(p[1].content_id.as_deref(), Some("<response-2>"));
}

/// Every tolerance case from the issue, in one batch each, checked against the farm app.
#[tokio::test]
async fn tolerant_reader_cases() {
    let addr = farm::spawn(None).await;
    let host = addr.to_string();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "bare LF everywhere",
            "b".into(),
            "--b\nContent-Type: application/http\nContent-ID: <1>\n\nGET /farm/v1/animals/pony HTTP/1.1\nAccept: application/json\n\n--b--\n".into(),
        ),
        (
            "CRLF and LF mixed",
            "b".into(),
            "--b\r\nContent-Type: application/http\nContent-ID: <1>\r\n\nGET /farm/v1/animals/pony HTTP/1.1\r\nAccept: application/json\n\r\n--b--".into(),
        ),
        (
            "folded part header",
            "b".into(),
            "--b\r\nContent-Type:\r\n application/http\r\nContent-ID:\r\n <1>\r\n\r\nGET /farm/v1/animals/pony HTTP/1.1\r\n\r\n--b--\r\n".into(),
        ),
        (
            "quoted boundary with = and specials",
            "\"a=b:c?d\"".into(),
            "--a=b:c?d\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /farm/v1/animals/pony HTTP/1.1\r\n\r\n--a=b:c?d--\r\n".into(),
        ),
        (
            "preamble and epilogue",
            "b".into(),
            "This is a preamble.\r\n--b\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /farm/v1/animals/pony HTTP/1.1\r\n\r\n--b--\r\nThis is an epilogue.\r\n".into(),
        ),
        (
            "whitespace after boundary",
            "b".into(),
            "--b \t\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /farm/v1/animals/pony HTTP/1.1\r\n\r\n--b--   \r\n".into(),
        ),
        (
            "missing final CRLF",
            "b".into(),
            "--b\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /farm/v1/animals/pony HTTP/1.1\r\n\r\n--b--".into(),
        ),
        (
            "no HTTP/1.1 and no leading slash",
            "b".into(),
            "--b\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET farm/v1/animals/pony\r\n\r\n--b--".into(),
        ),
        (
            "no Host",
            "b".into(),
            "--b\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /farm/v1/animals/pony HTTP/1.1\r\nAccept: */*\r\n\r\n--b--".into(),
        ),
        (
            "Host that matches",
            "b".into(),
            format!("--b\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /farm/v1/animals/pony HTTP/1.1\r\nHost: {host}\r\n\r\n--b--"),
        ),
        (
            "absolute-form with the same authority",
            "b".into(),
            format!("--b\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET http://{host}/farm/v1/animals/pony HTTP/1.1\r\n\r\n--b--"),
        ),
    ];
    for (name, boundary, body) in cases {
        let raw = post_batch(addr, "/batch", &boundary, body).await;
        assert_eq!(raw.status, 200, "{name}: {}", raw.text());
        let p = parts(&raw).await;
        assert_eq!(p.len(), 1, "{name}");
        assert_eq!(
            p[0].status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&p[0].body)
        );
        assert_eq!(p[0].json()["animalName"], "pony", "{name}");
        assert_eq!(p[0].content_id.as_deref(), Some("<response-1>"), "{name}");
    }
}

#[tokio::test]
async fn empty_content_id_is_accepted_and_not_echoed() {
    let addr = farm::spawn(None).await;
    let body = "--b\r\nContent-Type: application/http\r\nContent-ID:\r\n\r\nGET /farm/v1/animals/pony\r\n\r\n--b\r\nContent-Type: application/http\r\nContent-ID: \r\n\r\nGET /farm/v1/animals/cow\r\n\r\n--b--";
    let p = parts(&post_batch(addr, "/batch", "b", body).await).await;
    assert_eq!(p.len(), 2, "two empty ids are not duplicates");
    assert_eq!(p[0].content_id, None);
    assert_eq!(p[1].json()["animalName"], "cow");
}

#[tokio::test]
async fn content_id_echo_is_byte_for_byte() {
    let addr = farm::spawn(None).await;
    let ids = [
        "<a b+c>",
        "bare+id with space",
        "<x@y.example.com>",
        "<%2B+%20>",
    ];
    let items: Vec<(&str, &str)> = ids.iter().map(|id| (*id, "GET /farm/v1/farmers")).collect();
    let p = parts(&post_batch(addr, "/batch", "b", batch("b", &items)).await).await;
    let got: Vec<&str> = p.iter().map(|p| p.content_id.as_deref().unwrap()).collect();
    assert_eq!(
        got,
        [
            "<response-a b+c>",
            "response-bare+id with space",
            "<response-x@y.example.com>",
            "<response-%2B+%20>"
        ]
    );
}

/// Each envelope error, with its status and a message in words.
#[tokio::test]
async fn envelope_errors() {
    let addr = farm::spawn(None).await;
    let check = |raw: support::Raw, status: u16, kind: &str, words: &str| {
        assert_eq!(raw.status, status, "{}", raw.text());
        assert!(raw.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let j = raw.json();
        assert_eq!(j["error"]["code"], status);
        assert_eq!(j["error"]["reason"], kind);
        assert!(j["error"]["status"]
            .as_str()
            .is_some_and(|s| s.chars().all(|c| c.is_ascii_uppercase() || c == '_')));
        let msg = j["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "{msg:?} should say {words:?}");
        j
    };
    // Not multipart.
    let raw = post(addr, "/batch", "text/plain", "hello", &[]).await;
    check(raw, 415, "UNSUPPORTED_MEDIA_TYPE", "not a batch format");
    // No boundary.
    let raw = post(addr, "/batch", "multipart/mixed", "--b--", &[]).await;
    check(raw, 400, "MISSING_BOUNDARY", "no boundary");
    // Broken framing: no opening boundary, and no closing boundary.
    let raw = post_batch(addr, "/batch", "b", "GET /farm/v1/animals\r\n").await;
    check(raw, 400, "BROKEN_FRAMING", "no opening boundary");
    let raw = post_batch(
        addr,
        "/batch",
        "b",
        "--b\r\nContent-Type: application/http\r\n\r\nGET /x\r\n",
    )
    .await;
    check(raw, 400, "BROKEN_FRAMING", "closing boundary");
    // Empty batch.
    let raw = post_batch(addr, "/batch", "b", "--b--\r\n").await;
    check(raw, 400, "EMPTY_BATCH", "no items");
    // Too many parts: count and limit.
    let items: Vec<(&str, &str)> = (0..1001).map(|_| ("", "GET /farm/v1/farmers")).collect();
    let raw = post_batch(addr, "/batch", "b", batch("b", &items)).await;
    let j = check(raw, 413, "TOO_MANY_ITEMS", "1001 items; the limit is 1000");
    assert_eq!(j["error"]["count"], 1001);
    assert_eq!(j["error"]["limit"], 1000);
    // Body over the size limit (16 MiB by default).
    let big = "x".repeat(17 * 1024 * 1024);
    let raw = post_batch(addr, "/batch", "b", big).await;
    check(raw, 413, "BODY_TOO_LARGE", "limit");
    // Duplicate Content-IDs.
    let raw = post_batch(
        addr,
        "/batch",
        "b",
        batch(
            "b",
            &[
                ("<a>", "GET /farm/v1/farmers"),
                ("<a>", "GET /farm/v1/farmers"),
            ],
        ),
    )
    .await;
    check(raw, 400, "DUPLICATE_ID", "`a`");
    // Wrong method.
    let raw = support::send(
        http::Request::get(format!("http://{addr}/batch"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(raw.headers["allow"], "POST, OPTIONS");
    check(raw, 405, "METHOD_NOT_ALLOWED", "POST");
}

#[tokio::test]
async fn non_batch_requests_pass_through_untouched() {
    let addr = farm::spawn(None).await;
    let raw = support::send(
        http::Request::get(format!("http://{addr}/farm/v1/animals/pony"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.json()["animalName"], "pony");
    // A path that only ends in /batch is not a batch path.
    let raw = post(
        addr,
        "/farm/v1/batch",
        "multipart/mixed; boundary=b",
        "--b--",
        &[],
    )
    .await;
    assert_eq!(raw.status, 404);
}

#[tokio::test]
async fn auth_inheritance_rules() {
    let addr = farm::spawn(Some("s3cret".into())).await;
    let items = [
        ("<inherit>", "GET /farm/v1/whoami?x=item HTTP/1.1"),
        (
            "<own>",
            "GET /farm/v1/whoami HTTP/1.1\r\nAuthorization: Bearer s3cret",
        ),
        (
            "<wrong>",
            "GET /farm/v1/whoami HTTP/1.1\r\nAuthorization: Bearer nope",
        ),
    ];
    // Outer token: every item is authenticated, except the one that overrides with a bad token.
    let raw = post(
        addr,
        "/batch",
        "multipart/mixed; boundary=b",
        batch("b", &items),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    let p = parts(&raw).await;
    assert_eq!(
        p.iter().map(|p| p.status).collect::<Vec<_>>(),
        [200, 200, 401]
    );
    assert_eq!(p[0].json()["authorization"], "Bearer s3cret");
    assert_eq!(p[2].headers["www-authenticate"], "Bearer");
    // No outer token: only the item that brings its own succeeds.
    let raw = post_batch(addr, "/batch", "b", batch("b", &items)).await;
    let p = parts(&raw).await;
    assert_eq!(
        p.iter().map(|p| p.status).collect::<Vec<_>>(),
        [401, 200, 401]
    );
    assert_eq!(p[1].json()["authorization"], "Bearer s3cret");
}

#[tokio::test]
async fn outer_query_applies_and_item_query_wins() {
    let addr = farm::spawn(None).await;
    let raw = post_batch(
        addr,
        "/batch?fields=a&alt=json",
        "b",
        batch(
            "b",
            &[
                ("<1>", "GET /farm/v1/whoami"),
                ("<2>", "GET /farm/v1/whoami?fields=mine"),
            ],
        ),
    )
    .await;
    let p = parts(&raw).await;
    assert_eq!(p[0].json()["query"], "fields=a&alt=json");
    assert_eq!(p[1].json()["query"], "fields=mine&alt=json");
}

#[tokio::test]
async fn response_order_is_request_order_under_concurrency() {
    let addr = farm::spawn(None).await;
    let delays = [300u64, 10, 200, 0, 120, 50, 250, 5];
    let reqs: Vec<String> = delays
        .iter()
        .map(|d| format!("GET /farm/v1/slow/{d}"))
        .collect();
    let ids: Vec<String> = (0..delays.len()).map(|i| format!("<{i}>")).collect();
    let items: Vec<(&str, &str)> = ids
        .iter()
        .zip(&reqs)
        .map(|(i, r)| (i.as_str(), r.as_str()))
        .collect();
    let start = std::time::Instant::now();
    let p = parts(&post_batch(addr, "/batch", "b", batch("b", &items)).await).await;
    let took = start.elapsed();
    for (i, part) in p.iter().enumerate() {
        assert_eq!(
            part.content_id.as_deref(),
            Some(format!("<response-{i}>").as_str())
        );
        assert_eq!(part.json()["sleptMs"], delays[i]);
    }
    // Not a timing assertion on speed: a sequential run would take the sum of the delays.
    let sum: u64 = delays.iter().sum();
    assert!(
        took < Duration::from_millis(sum),
        "items ran concurrently ({took:?} < {sum} ms)"
    );
}

#[tokio::test]
async fn one_byte_per_chunk_body_gives_the_same_answer() {
    use http_body_util::StreamBody;
    let addr = farm::spawn(None).await;
    let body = batch(
        "b",
        &[
            ("<1>", "GET /farm/v1/animals/pony"),
            ("<2>", "GET farm/v1/animals/cow"),
        ],
    );
    let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, std::io::Error>> = body
        .bytes()
        .map(|b| Ok(http_body::Frame::data(bytes::Bytes::copy_from_slice(&[b]))))
        .collect();
    let stream = StreamBody::new(futures_util::stream::iter(chunks));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(format!("http://{addr}/batch"))
        .header("content-type", "multipart/mixed; boundary=b")
        .body(stream)
        .unwrap();
    let res = client.request(req).await.unwrap();
    let (parts_, body) = res.into_parts();
    use http_body_util::BodyExt;
    let raw = support::Raw {
        status: parts_.status,
        headers: parts_.headers,
        body: body.collect().await.unwrap().to_bytes(),
    };
    let p = parts(&raw).await;
    assert_eq!(p[0].json()["animalName"], "pony");
    assert_eq!(p[1].json()["animalName"], "cow");
}

#[tokio::test]
async fn sequential_mode_runs_items_one_by_one_in_order() {
    use axum::routing::post as post_route;
    use std::sync::{Arc, Mutex};
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let l2 = log.clone();
    let api = axum::Router::new().route(
        "/step/{n}",
        post_route(move |axum::extract::Path(n): axum::extract::Path<String>| {
            let log = l2.clone();
            async move {
                log.lock().unwrap().push(format!("start {n}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
                log.lock().unwrap().push(format!("end {n}"));
                n
            }
        }),
    );
    let app = http_batch::BatchLayer::new().sequential().wrap_router(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let items: Vec<(&str, &str)> = vec![
        ("", "POST /step/a"),
        ("", "POST /step/b"),
        ("", "POST /step/c"),
    ];
    let p = parts(&post_batch(addr, "/batch", "b", batch("b", &items)).await).await;
    assert_eq!(
        p.iter().map(|p| p.body.as_ref()).collect::<Vec<_>>(),
        [b"a", b"b", b"c"]
    );
    assert_eq!(
        *log.lock().unwrap(),
        ["start a", "end a", "start b", "end b", "start c", "end c"]
    );
}

#[tokio::test]
async fn multipart_depends_on_orders_items_and_propagates_failure() {
    let addr = farm::spawn(None).await;
    let body = "--b\r\nContent-Type: application/http\r\nContent-ID: <read>\r\nDepends-On: <create>\r\n\r\n\
GET /farm/v1/animals/llama\r\n\
--b\r\nContent-Type: application/http\r\nContent-ID: <create>\r\n\r\n\
POST /farm/v1/animals\r\nContent-Type: application/json\r\n\r\n{\"animalName\":\"llama\"}\r\n\
--b\r\nContent-Type: application/http\r\nContent-ID: <bad>\r\n\r\n\
GET /farm/v1/animals/unicorn\r\n\
--b\r\nContent-Type: application/http\r\nContent-ID: <after-bad>\r\nDepends-On: <bad>, <create>\r\n\r\n\
DELETE /farm/v1/animals/llama\r\n\
--b--\r\n";
    let p = parts(&post_batch(addr, "/batch", "b", body).await).await;
    // The read waited for the create, although it comes first; the delete never ran.
    assert_eq!(
        p.iter().map(|p| p.status).collect::<Vec<_>>(),
        [200, 201, 404, 424]
    );
    assert_eq!(p[0].json()["animalName"], "llama");
    let raw = post_batch(
        addr,
        "/batch",
        "b",
        "--b\r\nContent-Type: application/http\r\nContent-ID: <x>\r\nDepends-On: <y>\r\n\r\nGET /farm/v1/farmers\r\n--b\r\nContent-Type: application/http\r\nContent-ID: <y>\r\nDepends-On: <x>\r\n\r\nGET /farm/v1/farmers\r\n--b--",
    )
    .await;
    assert_eq!(raw.status, 400);
    assert_eq!(raw.json()["error"]["reason"], "DEPENDENCY_CYCLE");
}

/// Content types that `mime` alone would refuse: an unquoted `type=application/http` parameter
/// and an unquoted boundary with `=` in it.
#[tokio::test]
async fn lenient_outer_content_types() {
    let addr = farm::spawn(None).await;
    for (ct, boundary) in [
        ("multipart/mixed; boundary=b; type=application/http", "b"),
        ("Multipart/Mixed; Boundary===x=y==", "==x=y=="),
    ] {
        let body = batch(boundary, &[("<1>", "GET /farm/v1/animals/pony")]);
        let raw = post(addr, "/batch", ct, body, &[]).await;
        let p = parts(&raw).await;
        assert_eq!(p[0].json()["animalName"], "pony", "{ct}");
    }
}

/// A change set (a nested multipart part) at a Google route refuses the whole batch with `400`,
/// saying why: nothing of it runs, and nothing around it either.
#[tokio::test]
async fn change_sets_refuse_the_batch_at_google_routes() {
    let addr = farm::spawn(None).await;
    let body = "--b\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /farm/v1/animals/pony\r\n\
--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n\
--cs\r\nContent-Type: application/http\r\nContent-ID: <2>\r\n\r\nDELETE /farm/v1/animals/cow\r\n--cs--\r\n\
--b\r\nContent-Type: application/http\r\nContent-ID: <3>\r\n\r\nGET /farm/v1/animals/cow\r\n\
--b--\r\n";
    let raw = post_batch(addr, "/batch", "b", body).await;
    assert_eq!(raw.status, 400, "{}", raw.text());
    assert_eq!(raw.json()["error"]["reason"], "CHANGE_SETS_REFUSED");
    assert!(raw.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("change set"));
    // The change set's DELETE never ran.
    let after = post_batch(
        addr,
        "/batch",
        "b",
        batch("b", &[("<1>", "GET /farm/v1/animals/cow")]),
    )
    .await;
    assert_eq!(parts(&after).await[0].json()["animalName"], "cow");
}

#[tokio::test]
async fn boundary_declared_with_the_delimiter_dashes_is_recovered() {
    // Manufacturer Center's documented example declares `boundary=--batch_item` and writes its
    // delimiter lines as `--batch_item`.
    let addr = farm::spawn(None).await;
    let body = "--batch_item\r\nContent-Type: application/http\r\nContent-ID: <1>\r\n\r\nGET /farm/v1/animals/pony HTTP/1.1\r\n\r\n--batch_item\r\nContent-Type: application/http\r\nContent-ID: <2>\r\n\r\nGET /farm/v1/animals/unicorn HTTP/1.1\r\n\r\n--batch_item--\r\n";
    let raw = post_batch(addr, "/batch/farm/v1", "--batch_item", body).await;
    let p = parts(&raw).await;
    assert_eq!(p.len(), 2, "{}", raw.text());
    assert_eq!(p[0].status, 200);
    assert_eq!(p[0].json()["animalName"], "pony");
    assert_eq!(p[0].content_id.as_deref(), Some("<response-1>"));
    assert_eq!(p[1].status, 404);
    assert_eq!(p[1].content_id.as_deref(), Some("<response-2>"));

    // Lines of neither form are still no batch.
    let raw = post_batch(
        addr,
        "/batch/farm/v1",
        "--batch_item",
        body.replace("--batch_item", "-batch_item"),
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.text());
    assert_eq!(raw.json()["error"]["reason"], "BROKEN_FRAMING");
}
