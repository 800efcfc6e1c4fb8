//! The farm example in every dialect, over a real socket: a change set that fails in its middle
//! leaves nothing behind and is answered by the failing response, in OData 4 and OData 2; the
//! Azure Storage route is chosen by its query; each answer is read by `multer` and by Python's
//! `email` package.

#[path = "../examples/farm/app.rs"]
mod farm;
mod support;

use std::net::SocketAddr;

use support::{post, Raw};

fn insert(name: &str) -> String {
    let body = format!(r#"{{"animalName":"{name}","animalAge":1}}"#);
    format!(
        "POST animals HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn change_set(items: &[(&str, String)]) -> String {
    let mut cs = String::new();
    for (id, req) in items {
        cs.push_str(&format!(
            "--changeset_77\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\n{req}\r\n"
        ));
    }
    cs.push_str("--changeset_77--\r\n");
    format!(
        "--batch_77\r\nContent-Type: multipart/mixed; boundary=changeset_77\r\n\r\n{cs}--batch_77--\r\n"
    )
}

async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    support::send(req).await.status.as_u16()
}

fn python_check(raw: &Raw) -> serde_json::Value {
    let ct = raw.headers["content-type"].to_str().unwrap();
    let mut capture = format!("{ct}\r\n").into_bytes();
    capture.extend_from_slice(&raw.body);
    let mut child = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/dialect_check.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&capture).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "dialect_check.py: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The parts multer finds: (content type, content id, payload).
async fn multer_parts(raw: &Raw) -> Vec<(String, Option<String>, String)> {
    let ct = raw.headers["content-type"].to_str().unwrap();
    let boundary = ct.split("boundary=").nth(1).unwrap().to_owned();
    assert!(boundary.starts_with("batchresponse_"), "{boundary}");
    let body = raw.body.clone();
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = mp.next_field().await.expect("multer") {
        let ct = field.headers()["content-type"].to_str().unwrap().to_owned();
        let id = field
            .headers()
            .get("content-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = String::from_utf8_lossy(&field.bytes().await.unwrap()).into_owned();
        out.push((ct, id, text));
    }
    out
}

async fn fails_in_the_middle(path: &str, status: u16) {
    let addr = farm::spawn(None).await;
    let body = change_set(&[
        ("1", insert("goat")),
        ("2", insert("duck")),
        // The pony is already on the farm: 409.
        ("3", insert("pony")),
        ("4", insert("llama")),
    ]);
    let raw = post(addr, path, "multipart/mixed; boundary=batch_77", body, &[]).await;
    assert_eq!(raw.status, status, "{}", raw.text());
    let parts = multer_parts(&raw).await;
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(parts[0].0, "application/http");
    assert_eq!(parts[0].1.as_deref(), Some("3"));
    assert!(
        parts[0].2.starts_with("HTTP/1.1 409 Conflict\r\n"),
        "{}",
        parts[0].2
    );
    let py = python_check(&raw);
    assert_eq!(py["statuses"], serde_json::json!([409]));
    for name in ["goat", "duck", "llama"] {
        assert_eq!(
            get_status(addr, &format!("/farm/v1/animals/{name}")).await,
            404,
            "{name} must not remain"
        );
    }
    assert_eq!(get_status(addr, "/farm/v1/animals/pony").await, 200);
}

#[tokio::test]
async fn odata_v4_change_set_failing_in_its_middle_leaves_nothing() {
    fails_in_the_middle("/odata/v4/farm/v1/$batch", 200).await;
}

#[tokio::test]
async fn odata_v2_change_set_failing_in_its_middle_leaves_nothing() {
    fails_in_the_middle("/odata/v2/farm/v1/$batch", 202).await;
}

#[tokio::test]
async fn odata_change_set_that_succeeds_is_kept() {
    let addr = farm::spawn(None).await;
    let body = change_set(&[("1", insert("goat")), ("2", insert("duck"))]);
    let raw = post(
        addr,
        "/odata/v4/farm/v1/$batch",
        "multipart/mixed; boundary=batch_77",
        body,
        &[],
    )
    .await;
    assert_eq!(raw.status, 200);
    let parts = multer_parts(&raw).await;
    assert!(
        parts[0]
            .0
            .starts_with("multipart/mixed; boundary=changesetresponse_"),
        "{parts:?}"
    );
    let py = python_check(&raw);
    assert_eq!(py["parts"][0]["parts"][1]["contentId"], "2", "{py}");
    assert_eq!(get_status(addr, "/farm/v1/animals/goat").await, 200);
    assert_eq!(get_status(addr, "/farm/v1/animals/duck").await, 200);
}

#[tokio::test]
async fn azure_storage_batch_at_the_container() {
    let addr = farm::spawn(None).await;
    let body = support::batch(
        "batch_a",
        &[
            ("0", "GET /farm/v1/animals/pony HTTP/1.1"),
            ("1", "DELETE /farm/v1/animals/sheep HTTP/1.1"),
        ],
    );
    let raw = post(
        addr,
        "/farm/v1?restype=container&comp=batch",
        "multipart/mixed; boundary=batch_a",
        body,
        &[],
    )
    .await;
    assert_eq!(raw.status, 202, "{}", raw.text());
    let parts = multer_parts(&raw).await;
    assert_eq!(parts[0].1.as_deref(), Some("0"));
    assert_eq!(parts[1].1.as_deref(), Some("1"));
    assert!(parts[1].2.starts_with("HTTP/1.1 204"), "{}", parts[1].2);
    python_check(&raw);
    assert_eq!(get_status(addr, "/farm/v1/animals/sheep").await, 404);
}

#[tokio::test]
async fn google_routes_refuse_change_sets() {
    let addr = farm::spawn(None).await;
    let raw = post(
        addr,
        "/batch/farm/v1",
        "multipart/mixed; boundary=batch_77",
        change_set(&[("1", insert("goat"))]),
        &[],
    )
    .await;
    assert_eq!(raw.status, 400);
    assert!(raw.text().contains("change set"), "{}", raw.text());
    assert_eq!(get_status(addr, "/farm/v1/animals/goat").await, 404);
}
