//! The SQLite farm example over a real socket: a change set is one SQL transaction, so after a
//! change set whose third item fails, the database shows neither of the first two.

#[path = "../examples/sqlite_farm/app.rs"]
mod app;
mod support;

use std::path::PathBuf;

use support::post;

fn db_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn insert(name: &str) -> String {
    let body = format!(r#"{{"animalName":"{name}","animalAge":2}}"#);
    format!(
        "POST animals HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn change_set(items: &[(&str, String)]) -> String {
    let mut cs = String::new();
    for (id, req) in items {
        cs.push_str(&format!(
            "--changeset_s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\n{req}\r\n"
        ));
    }
    cs.push_str("--changeset_s--\r\n");
    format!(
        "--batch_s\r\nContent-Type: multipart/mixed; boundary=changeset_s\r\n\r\n{cs}--batch_s--\r\n"
    )
}

fn names_in(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM animals ORDER BY name")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

#[tokio::test]
async fn change_set_whose_third_item_fails_leaves_neither_of_the_first_two() {
    for (path, status) in [
        ("/odata/v4/farm/v1/$batch", 200),
        ("/odata/v2/farm/v1/$batch", 202),
    ] {
        let db = db_path(if status == 200 { "v4" } else { "v2" });
        let addr = app::spawn(&db).await;
        let body = change_set(&[
            ("1", insert("goat")),
            ("2", insert("duck")),
            ("3", insert("pony")),
        ]);
        let raw = post(addr, path, "multipart/mixed; boundary=batch_s", body, &[]).await;
        assert_eq!(raw.status, status, "{}", raw.text());
        let text = raw.text();
        assert!(text.contains("Content-ID: 3\r\n"), "{text}");
        assert!(text.contains("HTTP/1.1 409 Conflict\r\n"), "{text}");
        assert!(!text.contains("HTTP/1.1 201"), "{text}");
        assert_eq!(
            names_in(&db),
            ["pony"],
            "the database shows neither goat nor duck"
        );

        // The same change set without the failing item commits both.
        let body = change_set(&[("1", insert("goat")), ("2", insert("duck"))]);
        let raw = post(addr, path, "multipart/mixed; boundary=batch_s", body, &[]).await;
        assert_eq!(raw.status, status);
        assert!(raw.text().contains("changesetresponse_"), "{}", raw.text());
        assert_eq!(names_in(&db), ["duck", "goat", "pony"]);
    }
}

#[tokio::test]
async fn json_atomicity_group_is_one_sql_transaction() {
    let db = db_path("json");
    let addr = app::spawn(&db).await;
    let body = serde_json::json!({"requests": [
        {"id": "1", "atomicityGroup": "g", "method": "POST", "url": "animals",
         "headers": {"content-type": "application/json"}, "body": {"animalName": "hen"}},
        {"id": "2", "atomicityGroup": "g", "method": "PATCH", "url": "$1",
         "headers": {"content-type": "application/json"}, "body": {"animalAge": 3}},
        {"id": "3", "atomicityGroup": "g", "method": "DELETE", "url": "animals/unicorn"},
    ]});
    let raw = post(
        addr,
        "/odata/v4/farm/v1/$batch",
        "application/json",
        body.to_string(),
        &[],
    )
    .await;
    assert_eq!(raw.status, 200);
    let v = raw.json();
    assert_eq!(v["responses"][0]["status"], 404, "{v}");
    assert_eq!(names_in(&db), ["pony"]);
}
