//! The batch gateway: one batch whose items go to two upstream services, over real sockets, and
//! what happens when one upstream goes down.

#[path = "../examples/farm/app.rs"]
mod farm;

#[path = "../examples/gateway/router.rs"]
mod gateway;

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Uri};
use http_batch::client::{BatchRequest, BatchResponse};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A farm API (no batch support) on a loopback port, with a way to shut it down.
struct Upstream {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Upstream {
    async fn start(token: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let app = farm::api(token.map(str::to_owned));
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Upstream { addr, stop, task }
    }

    fn base(&self) -> Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// Stops listening and closes its connections (the gateway's pooled ones too).
    async fn kill(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}

async fn serve_gateway(animals: Uri, farmers: Uri) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = gateway::gateway_app(animals, farmers);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn get(path: &str) -> Request<Bytes> {
    Request::get(path).body(Bytes::new()).unwrap()
}

/// Sends one batch whose items go to both services.
async fn mixed_batch(gateway: SocketAddr, token: Option<&str>, animal: &str) -> BatchResponse {
    let uri = format!("http://{gateway}/batch/farm/v1").parse().unwrap();
    let mut batch = BatchRequest::new(uri);
    if let Some(token) = token {
        let value = HeaderValue::try_from(format!("Bearer {token}")).unwrap();
        batch = batch.header(AUTHORIZATION, value);
    }
    batch
        .add_with_id("pony", get("/farm/v1/animals/pony"))
        .unwrap();
    batch
        .add_with_id("farmers", get("/farm/v1/farmers"))
        .unwrap();
    let insert = Request::post("/farm/v1/animals")
        .header(CONTENT_TYPE, "application/json")
        .body(format!(r#"{{"animalName":"{animal}","animalAge":3}}"#))
        .unwrap();
    batch.add_with_id("insert", insert).unwrap();
    batch.add_with_id("list", get("/farm/v1/animals")).unwrap();
    batch
        .add_with_id("nowhere", get("/farm/v1/nowhere"))
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    batch.send(client).await.unwrap()
}

fn answer(answers: &BatchResponse, id: &str) -> (u16, Value) {
    let res = answers.get(id).unwrap().unwrap();
    let body = if res.body().is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(res.body()).unwrap()
    };
    (res.status().as_u16(), body)
}

#[tokio::test]
async fn one_batch_across_two_services_then_one_goes_down() {
    let animals = Upstream::start(None).await;
    let farmers = Upstream::start(None).await;
    let gateway = serve_gateway(animals.base(), farmers.base()).await;

    let answers = mixed_batch(gateway, None, "goat").await;
    let (status, pony) = answer(&answers, "pony");
    assert_eq!((status, pony["animalName"].as_str()), (200, Some("pony")));
    let (status, list) = answer(&answers, "farmers");
    assert_eq!(
        (status, list["kind"].as_str()),
        (200, Some("farm#farmerList"))
    );
    assert_eq!(list["items"][0]["name"], "Old MacDonald");
    let (status, goat) = answer(&answers, "insert");
    assert_eq!((status, goat["animalName"].as_str()), (201, Some("goat")));
    let (status, list) = answer(&answers, "list");
    assert_eq!(status, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["animalName"].as_str().unwrap())
        .collect();
    // The list and the insert run side by side, so the list may or may not hold the goat yet;
    // the next batch's list must.
    assert!(
        names.starts_with(&["cow"]) && names.contains(&"pony"),
        "{names:?}"
    );
    // A path no service owns is the gateway's own 404.
    assert_eq!(answer(&answers, "nowhere").0, 404);

    farmers.kill().await;

    let answers = mixed_batch(gateway, None, "hen").await;
    let (status, error) = answer(&answers, "farmers");
    assert_eq!(status, 502);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("farmers service"), "{message}");
    assert_eq!(answer(&answers, "pony").0, 200);
    assert_eq!(answer(&answers, "insert").0, 201);
    let (status, list) = answer(&answers, "list");
    assert_eq!(status, 200);
    let goat = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["animalName"] == "goat");
    assert!(goat, "the insert went to the animals service: {list}");

    // The other way round: with the animals service down too, only its items fail.
    animals.kill().await;
    let answers = mixed_batch(gateway, None, "duck").await;
    for id in ["pony", "insert", "list", "farmers"] {
        assert_eq!(answer(&answers, id).0, 502, "{id}");
    }
}

#[tokio::test]
async fn authorization_is_forwarded_end_to_end() {
    let animals = Upstream::start(Some("s3cret")).await;
    let farmers = Upstream::start(Some("s3cret")).await;
    let gateway = serve_gateway(animals.base(), farmers.base()).await;

    let answers = mixed_batch(gateway, Some("s3cret"), "goat").await;
    for (id, status) in [
        ("pony", 200),
        ("farmers", 200),
        ("insert", 201),
        ("list", 200),
    ] {
        assert_eq!(answer(&answers, id).0, status, "{id}");
    }
    let answers = mixed_batch(gateway, Some("wrong"), "goat").await;
    for id in ["pony", "farmers", "insert", "list"] {
        let (status, body) = answer(&answers, id);
        assert_eq!(status, 401, "{id}");
        assert_eq!(
            body["error"]["message"],
            "Request had invalid authentication credentials."
        );
    }
}

#[tokio::test]
async fn direct_calls_through_the_gateway_are_forwarded_too() {
    let animals = Upstream::start(None).await;
    let farmers = Upstream::start(None).await;
    let gateway = serve_gateway(animals.base(), farmers.base()).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let res = client
        .get(
            format!("http://{gateway}/farm/v1/animals/sheep?fields=x")
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("etag"));
}
