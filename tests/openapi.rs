//! The batch routes in an app's OpenAPI document: an axum app derives its document with utoipa,
//! adds `BatchPaths`, and serves it as JSON beside its API; the test reads the document over a
//! real socket with serde_json, and holds what it says against what the same server answers.

use std::net::SocketAddr;
use std::time::Duration;

use axum::{routing::get, Json, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_batch::format::Dialect;
use http_batch::openapi::BatchPaths;
use http_batch::{BatchLayer, BatchRoute};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use utoipa::{Modify, OpenApi};

/// One of the app's own operations, documented the way a utoipa user does.
#[utoipa::path(get, path = "/farm/v1/animals/{name}", params(("name" = String, Path)),
    responses((status = 200, description = "The animal")))]
async fn get_animal() -> &'static str {
    "{}"
}

#[derive(OpenApi)]
#[openapi(paths(get_animal), info(title = "farm", version = "1"))]
struct ApiDoc;

/// The app: its API, its batch routes, and its document at `/openapi.json`.
async fn serve() -> SocketAddr {
    let layer = BatchLayer::new()
        .route(BatchRoute::path("/batch"))
        .route(BatchRoute::path("/batch/{api}/{version}"))
        .route(
            BatchRoute::path("/odata/v4/farm/v1/$batch")
                .dialect(Dialect::odata_v2())
                .service_root("/farm/v1"),
        )
        .max_items(3)
        .batch_timeout(Duration::from_secs(20));
    let mut doc = ApiDoc::openapi();
    BatchPaths::new(&layer).modify(&mut doc);
    let doc = doc.to_json().expect("the document serialises");

    let api = Router::new()
        .route("/farm/v1/animals/{name}", get(get_animal))
        .route(
            "/openapi.json",
            get(move || async move { Json(serde_json::from_str::<Value>(&doc).unwrap()) }),
        );
    let app = layer.wrap_router(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn send(req: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("answered in time")
        .expect("answered");
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

async fn document(addr: SocketAddr) -> Value {
    let req = Request::get(format!("http://{addr}/openapi.json"))
        .body(Full::default())
        .unwrap();
    let (status, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).expect("the document is JSON")
}

/// The `reason` values the document lists for `status` at `path`.
fn reasons(doc: &Value, path: &str, status: &str) -> Vec<String> {
    let schema =
        &doc["paths"][path]["post"]["responses"][status]["content"]["application/json"]["schema"];
    schema["properties"]["error"]["properties"]["reason"]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("no reasons for {status} at {path}: {schema}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn batch_routes_are_in_the_apps_document() {
    let addr = serve().await;
    let doc = document(addr).await;
    let paths = doc["paths"].as_object().expect("paths");

    // The app's own operation is still there, beside every batch route.
    assert!(paths["/farm/v1/animals/{name}"]["get"].is_object());
    for path in [
        "/batch",
        "/batch/{api}/{version}",
        "/odata/v4/farm/v1/$batch",
    ] {
        let post = &paths[path]["post"];
        assert!(post.is_object(), "no POST at {path}: {doc}");
        assert_eq!(post["tags"][0], "batch", "{path}");
        let content = post["requestBody"]["content"].as_object().unwrap();
        let mut types: Vec<&str> = content.keys().map(String::as_str).collect();
        types.sort();
        assert_eq!(types, ["application/json", "multipart/mixed"], "{path}");
        assert_eq!(post["requestBody"]["required"], true);
        // The JSON body is described as a JSON batch: `requests`, each with id, method and url.
        let request = &content["application/json"]["schema"]["properties"]["requests"]["items"];
        let required: Vec<&str> = request["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["id", "method", "url"]);
        // The limits, as numbers and in words.
        assert_eq!(post["x-batch-limits"]["maxItems"], 3);
        assert_eq!(post["x-batch-limits"]["batchTimeoutSeconds"], 20.0);
        assert!(post["description"]
            .as_str()
            .unwrap()
            .contains("at most 3 items"));
    }
    // The pattern's parameters are declared, as OpenAPI requires of a templated path.
    let params: Vec<&str> = paths["/batch/{api}/{version}"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["in"], "path");
            assert_eq!(p["required"], true);
            p["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(params, ["api", "version"]);

    // Each route answers with its dialect's status: Google's 200, OData 2's 202.
    let responses = |path: &str| {
        paths[path]["post"]["responses"]
            .as_object()
            .unwrap()
            .clone()
    };
    assert!(responses("/batch").contains_key("200"));
    assert!(responses("/odata/v4/farm/v1/$batch").contains_key("202"));

    // Every refusal of a whole batch, grouped by status.
    let expect = [
        (
            "400",
            &[
                "MALFORMED_BATCH",
                "BROKEN_FRAMING",
                "EMPTY_BATCH",
                "DEPENDENCY_CYCLE",
            ][..],
        ),
        ("405", &["METHOD_NOT_ALLOWED"][..]),
        ("408", &["READ_TIMEOUT"][..]),
        (
            "413",
            &[
                "TOO_MANY_ITEMS",
                "BODY_TOO_LARGE",
                "PART_TOO_LARGE",
                "COST_EXCEEDED",
            ][..],
        ),
        (
            "415",
            &["UNSUPPORTED_MEDIA_TYPE", "UNSUPPORTED_CONTENT_ENCODING"][..],
        ),
        ("501", &["NO_TRANSACTIONS"][..]),
    ];
    for (status, want) in expect {
        let listed = reasons(&doc, "/batch", status);
        for reason in want {
            assert!(
                listed.iter().any(|r| r == reason),
                "{status} lacks {reason}: {listed:?}"
            );
        }
    }
    // No 4xx reason is listed under two statuses.
    let mut all: Vec<String> = ["400", "405", "408", "413", "415"]
        .iter()
        .flat_map(|s| reasons(&doc, "/batch", s))
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);

    // The batch tag is described once.
    let tags = doc["tags"].as_array().unwrap();
    assert_eq!(tags.iter().filter(|t| t["name"] == "batch").count(), 1);
}

#[tokio::test]
async fn the_document_says_what_the_server_answers() {
    let addr = serve().await;
    let doc = document(addr).await;

    // Four items where the document says at most 3: the server's status and reason are the
    // document's.
    let items: Vec<String> = (0..4)
        .map(|i| format!("{{\"id\":\"{i}\",\"method\":\"GET\",\"url\":\"/farm/v1/animals/a{i}\"}}"))
        .collect();
    let body = format!("{{\"requests\":[{}]}}", items.join(","));
    let req = Request::post(format!("http://{addr}/batch"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, body) = send(req).await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let reason = answer["error"]["reason"].as_str().unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reasons(&doc, "/batch", "413").iter().any(|r| r == reason));

    // A content type the document does not list is refused with a reason it does list.
    let req = Request::post(format!("http://{addr}/batch/farm/v1"))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let (status, body) = send(req).await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let content = doc["paths"]["/batch/{api}/{version}"]["post"]["requestBody"]["content"]
        .as_object()
        .unwrap();
    assert!(!content.contains_key("text/plain"));
    let reason = answer["error"]["reason"].as_str().unwrap();
    assert!(reasons(&doc, "/batch/{api}/{version}", "415")
        .iter()
        .any(|r| r == reason));
}
