//! A strict reader of OData multipart batch answers: the top-level parts and each change set's
//! inner parts, read by multer (which only accepts CRLF multipart).

use futures_util::future::{BoxFuture, FutureExt};

use super::Raw;

/// The top-level parts of an answer, and each change set's inner parts, read by multer.
#[derive(Debug)]
pub enum Answer {
    Item {
        content_id: Option<String>,
        status: u16,
        text: String,
    },
    ChangeSet(Vec<Answer>),
}

pub fn read_multipart(ct: &str, body: bytes::Bytes) -> BoxFuture<'static, Vec<Answer>> {
    let boundary = ct
        .split("boundary=")
        .nth(1)
        .unwrap_or_else(|| panic!("{ct}"))
        .to_owned();
    async move {
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
        let mut mp = multer::Multipart::new(stream, boundary);
        let mut out = Vec::new();
        while let Some(field) = mp.next_field().await.expect("multer reads the answer") {
            let ct = field.headers()["content-type"].to_str().unwrap().to_owned();
            let content_id = field
                .headers()
                .get("content-id")
                .map(|v| v.to_str().unwrap().to_owned());
            let bytes = field.bytes().await.unwrap();
            if ct.starts_with("multipart/mixed") {
                assert!(ct.contains("boundary=changesetresponse_"), "{ct}");
                out.push(Answer::ChangeSet(read_multipart(&ct, bytes).await));
            } else {
                assert_eq!(ct, "application/http");
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let status = text[9..12].parse().unwrap();
                out.push(Answer::Item {
                    content_id,
                    status,
                    text,
                });
            }
        }
        out
    }
    .boxed()
}

pub async fn answers(raw: &Raw) -> Vec<Answer> {
    let ct = raw.headers["content-type"].to_str().unwrap();
    assert!(ct.contains("boundary=batchresponse_"), "{ct}");
    read_multipart(ct, raw.body.clone()).await
}

pub fn status(a: &Answer) -> u16 {
    match a {
        Answer::Item { status, .. } => *status,
        Answer::ChangeSet(_) => panic!("a change set, not an item: {a:?}"),
    }
}
