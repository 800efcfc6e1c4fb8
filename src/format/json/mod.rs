//! JSON batches: OData 4.01 JSON batch, as Microsoft Graph's `$batch` speaks it.
//!
//! A JSON batch is a `POST` with `Content-Type: application/json` (parameters such as
//! `charset=utf-8` are fine) whose body lists the requests; the answer lists one response per
//! request, in the same order.
//!
//! # Example
//!
//! The client helpers [`encode_requests`] and [`decode_responses`] write and read the same wire
//! shape the server side uses:
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use http_batch::format::json::{decode_responses, encode_requests};
//!
//! let get = Request::get("/farm/v1/animals/pony").body(Bytes::new()).unwrap();
//! let body = encode_requests(&[("1".to_owned(), &get, vec![])]);
//! assert_eq!(
//!     body,
//!     r#"{"requests":[{"id":"1","method":"GET","url":"/farm/v1/animals/pony"}]}"#
//! );
//!
//! let answer = br#"{"responses":[{"id":"1","status":200,
//!     "headers":{"content-type":"application/json"},"body":{"animalName":"pony"}}]}"#;
//! let responses = decode_responses(answer).unwrap();
//! assert_eq!(responses[0].0, "1");
//! assert_eq!(responses[0].1.status(), 200);
//! assert_eq!(responses[0].1.body(), &br#"{"animalName":"pony"}"#[..]);
//! ```
//!
//! # Request
//!
//! ```json
//! {"requests": [
//!   {"id": "1", "method": "GET", "url": "/farm/v1/animals/pony"},
//!   {"id": "2", "method": "POST", "url": "farm/v1/animals",
//!    "headers": {"content-type": "application/json"},
//!    "body": {"animalName": "goat"}},
//!   {"id": "3", "method": "GET", "url": "/farm/v1/animals/goat", "dependsOn": ["2"]}
//! ]}
//! ```
//!
//! - `id` (required): a string, unique in the batch. A number is accepted and read as its
//!   decimal text. A request without an `id` rejects the whole batch with `400`, naming the
//!   request's position; so do two requests with the same id.
//! - `method` (required): an HTTP method; lower case is read as upper case.
//! - `url` (required): relative to the service root (`/farm/v1/animals`, or `farm/v1/animals`
//!   and `me`, which are read with a leading `/`), or an absolute `http`/`https` URL naming this
//!   server's own authority.
//! - `headers`: an object of name → value. A value may be a string, a number, a boolean, or an
//!   array of those (one header line each). The batch request's own headers (such as
//!   `Authorization`) fill in whatever an item does not set.
//! - `body`: see [Bodies](#bodies).
//! - `dependsOn`: the ids this request waits for (the snake-case `depends_on` that the
//!   Microsoft Graph Python SDK writes is read as well).
//! - `if` (OData 4.01): the condition under which the request runs, in place of "every request
//!   it depends on succeeded": `$<id>/$succeeded` with `not`, `and`, `or`, `true`, `false` and
//!   parentheses (`"if": "not $1/$succeeded"` runs a compensating call when request 1 failed).
//!   The requests it names are waited for. When it does not hold, or asks about a response body
//!   (which this crate does not evaluate), the request is answered `424` in words and not run.
//! - `atomicityGroup` (OData 4.01): the requests that name one group are a change set. They
//!   must follow each other; they run in order, all or nothing, under the route's transactions
//!   (see [`Dialect`](crate::format::Dialect) and
//!   [`TransactionProvider`](crate::TransactionProvider)), and their answers name the group. A
//!   route whose dialect has no change sets, or that has no transactions, refuses such a batch
//!   as a whole, so a change set never half-applies.
//!
//! A problem confined to one request (a bad method, URL, header or body) becomes that request's
//! own `400` answer, carrying its id, and the other requests still run. A problem with the
//! envelope (invalid JSON, no `requests` array, a request that is not an object, a missing or
//! repeated id, a `dependsOn` or `if` naming an unknown id, a dependency cycle, more requests than
//! [`Limits::items`](crate::Limits::items)) rejects the whole batch with one `4xx` answer whose
//! JSON body says what was wrong.
//!
//! # Response
//!
//! ```json
//! {"responses": [
//!   {"id": "1", "status": 200, "headers": {"Content-Type": "application/json"},
//!    "body": {"animalName": "pony"}},
//!   {"id": "2", "status": 201, "headers": {"Content-Type": "application/json"},
//!    "body": {"animalName": "goat"}},
//!   {"id": "3", "status": 200, "headers": {"Content-Type": "application/json"},
//!    "body": {"animalName": "goat"}}
//! ]}
//! ```
//!
//! The response is `Content-Type: application/json`. It lists the answers **in request
//! order**, whatever order the requests finished in, and streams: each answer is written as soon
//! as it and every answer before it are done. `headers` maps each header name, written in
//! canonical case as Graph writes it (`Content-Type`; names are case-insensitive, but Graph's
//! JavaScript SDK needs this spelling), to one string; repeated headers are joined with `", "`. `body` is left out when the answer has none.
//!
//! # Bodies
//!
//! One rule, the same in both directions, follows OData 4.01 and keeps every body byte for
//! byte. It looks at the message's `Content-Type`:
//!
//! | content type | `body` on the wire |
//! |---|---|
//! | `application/json` or `*/*+json` | the JSON value itself |
//! | `text/*`, or none | a string: the body's text |
//! | anything else (`image/png`, `application/octet-stream`, ...) | a string: the body in base64 |
//!
//! When writing (answers, and [`encode_requests`]): a JSON body that does not parse as JSON,
//! a text body that is not UTF-8, and every binary body are written in standard padded base64,
//! and the `headers` object then carries the marker `"content-transfer-encoding": "base64"`.
//! So a reader never has to guess: a string `body` is base64 exactly when that marker is there
//! (readers that go by the content type alone, as OData clients do, read it right as well).
//! HTTP itself has no use for `Content-Transfer-Encoding`, so one that a handler sets is left
//! out of `headers`; the marker is the only way that name appears.
//! A JSON body is copied verbatim, so large numbers keep all their digits.
//!
//! When reading (requests, and [`decode_responses`]):
//! - a `body` that is absent or `null` is an empty body;
//! - a string `body` with a `Content-Transfer-Encoding: base64` header is base64 (standard or
//!   URL-safe alphabet, padding optional, whitespace ignored); the marker header is removed;
//! - otherwise a string is read by the content type: a JSON type takes it as a JSON string
//!   value (`"hi"` becomes the body `"hi"`, quotes included); `text/*` takes its text as is; no
//!   content type also takes its text as is, and a request then gets
//!   `Content-Type: text/plain; charset=utf-8`; any other type takes it as base64. A request
//!   whose binary body is not valid base64 gets its own `400`;
//! - any other JSON value (object, array, number, boolean) is sent as its JSON text, exactly as
//!   the client wrote it (numbers of any size keep every digit), and a message without a content
//!   type gets `Content-Type: application/json`; `null` is no body.
//!
//! Client quirk: the Microsoft Graph Python SDK (`msgraph-core`) writes a body that is JSON but
//! not an object (an array, say) as base64 without the marker header while keeping
//! `Content-Type: application/json`; such a body arrives as a JSON string, as OData says it
//! should.
//!
//! # Dependencies
//!
//! A request with `dependsOn` runs only after every request it names has answered with a `2xx`
//! status. If one of them answers otherwise, the request is not run and is answered with
//! `424 Failed Dependency`, and so, in turn, is everything that depends on it. Requests without
//! dependencies run concurrently, up to the layer's [concurrency](crate::BatchLayer::concurrency).

mod body;
mod client;
mod decode;
mod encode;

use bytes::Bytes;

use super::{DecodeContext, Encoder, Format};
use crate::error::BatchError;
use crate::item::Item;
use decode::{decode_item, read_envelope};
use encode::JsonEncoder;

pub use client::{decode_responses, encode_requests};

/// The JSON batch format (OData 4.01 JSON batch / Microsoft Graph `$batch`): see the
/// [module docs](self) for the wire shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json {
    _priv: (),
}

impl Json {
    /// The JSON format.
    pub fn new() -> Self {
        Json { _priv: () }
    }
}

impl Format for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn content_types(&self) -> Vec<String> {
        vec!["application/json".to_owned()]
    }

    fn accepts(&self, content_type: &mime::Mime) -> bool {
        content_type.essence_str() == "application/json"
    }

    fn decode(&self, cx: &DecodeContext<'_>, body: Bytes) -> Result<Vec<Item>, BatchError> {
        let requests = read_envelope(&body, cx.limits.get_max_items())?.ok_or_else(|| {
            BatchError::Malformed {
                reason: "the JSON batch has no `requests` array; send {\"requests\":[...]}".into(),
            }
        })?;
        // OData 4.01 atomicity groups: each group's name gets a number, and the name rides in
        // the item's echo so that the answers can carry it back.
        let mut groups: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        requests
            .into_iter()
            .enumerate()
            .map(|(index, mut wire)| {
                let group = match wire.atomicity_group.take() {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(name)) if !name.is_empty() => Some(name),
                    Some(other) => {
                        return Err(BatchError::Malformed {
                            reason: format!(
                                "request {index} (counting from 0): `atomicityGroup` must be a non-empty string, not {other}"
                            ),
                        })
                    }
                };
                let mut item = decode_item(index, wire)?;
                if let Some(name) = group {
                    let next = groups.len() as u32 + 1;
                    item.group = Some(*groups.entry(name.clone()).or_insert(next));
                    item.group_id = Some(std::sync::Arc::from(name.as_str()));
                    item.echo = Some(name);
                }
                Ok(item)
            })
            .collect()
    }

    fn encoder(&self, _cx: &DecodeContext<'_>) -> Box<dyn Encoder> {
        Box::new(JsonEncoder { first: true })
    }
}

#[cfg(test)]
mod tests {
    use super::body::{decode_base64, TRANSFER_ENCODING_MARKER};
    use super::decode::{parse_url, scheme_of};
    use super::encode::put_headers_and_body;
    use super::*;
    use crate::context::BatchStore;
    use crate::item::ItemMeta;
    use crate::limits::Limits;
    use bytes::BytesMut;
    use http::{header, HeaderValue, Method, Request, Response, StatusCode};
    use serde_json::Value;

    fn decode(body: &str) -> Result<Vec<Item>, BatchError> {
        decode_with(body, Limits::default())
    }

    fn decode_with(body: &str, limits: Limits) -> Result<Vec<Item>, BatchError> {
        let parts = Request::post("/batch").body(()).unwrap().into_parts().0;
        let content_type: mime::Mime = "application/json".parse().unwrap();
        let store = BatchStore::new();
        let cx = DecodeContext::new(&parts, &content_type, &limits, &store);
        Json::new().decode(&cx, Bytes::copy_from_slice(body.as_bytes()))
    }

    fn malformed(err: BatchError) -> String {
        match err {
            BatchError::Malformed { reason } => reason,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_plain_batch() {
        let items = decode(
            r#"{"requests":[
                {"id":"1","method":"get","url":"me"},
                {"id":2,"method":"POST","url":"/farm/v1/animals?x=1",
                 "headers":{"Content-Type":"application/json","X-Many":["a","b"],"X-N":5},
                 "body":{"animalName":"goat"},"dependsOn":["1"]}
            ]}"#,
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        let first = items[0].request().unwrap();
        assert_eq!(first.method(), Method::GET);
        assert_eq!(first.uri(), "/me");
        assert_eq!(items[0].id(), Some("1"));
        let second = items[1].request().unwrap();
        assert_eq!(items[1].id(), Some("2"));
        assert_eq!(items[1].depends_on(), ["1".to_owned()]);
        assert_eq!(second.uri(), "/farm/v1/animals?x=1");
        assert_eq!(second.body(), &br#"{"animalName":"goat"}"#[..]);
        let many: Vec<_> = second.headers().get_all("x-many").iter().collect();
        assert_eq!(many, ["a", "b"]);
        assert_eq!(second.headers()["x-n"], "5");
    }

    #[test]
    fn envelope_problems_reject_the_batch() {
        assert!(malformed(decode("{").unwrap_err()).starts_with("invalid JSON"));
        assert!(malformed(decode("[1]").unwrap_err()).contains("`requests` array"));
        assert!(malformed(decode(r#"{"other":1}"#).unwrap_err()).contains("no `requests`"));
        assert!(malformed(decode(r#"{"requests":[5]}"#).unwrap_err()).contains("array of objects"));
        let missing = malformed(
            decode(
                r#"{"requests":[{"id":"a","method":"GET","url":"/"},{"method":"GET","url":"/"}]}"#,
            )
            .unwrap_err(),
        );
        assert!(missing.contains("request 1"), "{missing}");
        assert!(malformed(
            decode(r#"{"requests":[{"id":"","method":"GET","url":"/"}]}"#).unwrap_err()
        )
        .contains("no `id`"));
        let not_text = malformed(
            decode(r#"{"requests":[{"id":true,"method":"GET","url":"/"}]}"#).unwrap_err(),
        );
        assert!(not_text.contains("not a string: true"), "{not_text}");
        assert!(malformed(
            decode(r#"{"requests":[{"id":"a","method":"GET","url":"/","dependsOn":{}}]}"#)
                .unwrap_err()
        )
        .contains("dependsOn"));
    }

    #[test]
    fn too_many_requests() {
        let err = decode_with(
            r#"{"requests":[{"id":"a","method":"GET","url":"/"},{"id":"b","method":"GET","url":"/"},{"id":"c"}]}"#,
            Limits::default().max_items(1),
        )
        .unwrap_err();
        // The ones past the limit are counted, so the answer says how many there were.
        assert_eq!(err, BatchError::TooManyItems { count: 3, limit: 1 });
    }

    #[test]
    fn item_problems_stay_with_the_item() {
        let items = decode(
            r#"{"requests":[
                {"id":"m","method":"GE T","url":"/"},
                {"id":"u","method":"GET","url":"/a b"},
                {"id":"h","method":"GET","url":"/","headers":{"x":"a\nb"}},
                {"id":"s","method":"GET","url":"ftp://example.com/"},
                {"id":"b","method":"PUT","url":"/","headers":{"content-type":"image/png"},"body":"not base64!"},
                {"id":"g","method":"GET","url":"/","atomicityGroup":"g1"},
                {"id":"ok","method":"GET","url":"/"}
            ]}"#,
        )
        .unwrap();
        for item in &items[..5] {
            assert_eq!(
                item.request().unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{:?}",
                item.id()
            );
        }
        assert!(items[5].request().is_ok());
        assert_eq!(items[5].change_set(), Some(1));
        assert!(items[6].request().is_ok());
        let ids: Vec<_> = items.iter().map(|i| i.id().unwrap()).collect();
        assert_eq!(ids, ["m", "u", "h", "s", "b", "g", "ok"]);
    }

    #[test]
    fn request_bodies_follow_the_content_type() {
        let items = decode(
            r#"{"requests":[
                {"id":"1","method":"POST","url":"/","headers":{"content-type":"application/json"},"body":"hi"},
                {"id":"2","method":"POST","url":"/","headers":{"content-type":"text/plain"},"body":"hi"},
                {"id":"3","method":"POST","url":"/","body":"hi"},
                {"id":"4","method":"POST","url":"/","headers":{"content-type":"application/octet-stream"},"body":"AP-_"},
                {"id":"5","method":"POST","url":"/","headers":{"content-type":"text/plain","content-transfer-encoding":"base64"},"body":"aGk="},
                {"id":"6","method":"POST","url":"/","body":[1,2]},
                {"id":"7","method":"POST","url":"/","body":null}
            ]}"#,
        )
        .unwrap();
        let req = |i: usize| items[i].request().unwrap();
        assert_eq!(req(0).body(), "\"hi\"");
        assert_eq!(req(1).body(), "hi");
        assert_eq!(req(2).body(), "hi");
        assert_eq!(
            req(2).headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(req(3).body(), &[0x00, 0xff, 0xbf][..]);
        assert_eq!(req(4).body(), "hi");
        assert!(!req(4).headers().contains_key(TRANSFER_ENCODING_MARKER));
        assert_eq!(req(5).body(), "[1,2]");
        assert_eq!(req(5).headers()[header::CONTENT_TYPE], "application/json");
        assert!(req(6).body().is_empty());
    }

    fn encode_one(res: Response<Bytes>) -> Value {
        let mut enc = JsonEncoder { first: true };
        let mut out = BytesMut::new();
        enc.begin(&mut out);
        let meta = ItemMeta {
            index: 0,
            id: Some("a\"b".into()),
            echo: None,
        };
        enc.item(&meta, &res, &mut out);
        enc.end(&mut out);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        v["responses"][0].clone()
    }

    #[test]
    fn response_bodies_follow_the_content_type() {
        let json = Response::builder()
            .header("content-type", "application/json; charset=utf-8")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(Bytes::from_static(
                br#" {"n": 123456789012345678901234567890} "#,
            ))
            .unwrap();
        let mut out = BytesMut::new();
        put_headers_and_body(&mut out, json.headers(), json.body());
        // Verbatim: the big number keeps its digits.
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .ends_with(r#""body":{"n": 123456789012345678901234567890}"#));
        let v = encode_one(json);
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["status"], 200);
        assert_eq!(v["headers"]["Set-Cookie"], "a=1, b=2");

        // Header values are JSON-escaped; bytes that are not UTF-8 become U+FFFD.
        let odd = Response::builder()
            .header("x-quote", "say \"hi\" \\ there")
            .header("x-latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .header("content-transfer-encoding", "base64")
            .header("content-transfer-encoding", "again")
            .body(Bytes::new())
            .unwrap();
        let v = encode_one(odd);
        assert_eq!(
            v["headers"],
            serde_json::json!({"X-Quote": "say \"hi\" \\ there", "X-Latin1": "caf\u{fffd}"})
        );

        let text = Response::builder()
            .header("content-type", "text/plain")
            .header("content-transfer-encoding", "base64")
            .body(Bytes::from("héllo"))
            .unwrap();
        let v = encode_one(text);
        assert_eq!(v["body"], "héllo");
        assert!(v["headers"].get(TRANSFER_ENCODING_MARKER).is_none());

        let latin1 = Response::builder()
            .status(404)
            .header("content-type", "text/plain")
            .body(Bytes::from_static(b"caf\xe9"))
            .unwrap();
        let v = encode_one(latin1);
        assert_eq!(v["status"], 404);
        assert_eq!(v["body"], "Y2Fm6Q==");
        assert_eq!(v["headers"][TRANSFER_ENCODING_MARKER], "base64");

        let bad_json = Response::builder()
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{oops"))
            .unwrap();
        let v = encode_one(bad_json);
        assert_eq!(v["headers"][TRANSFER_ENCODING_MARKER], "base64");

        let empty = Response::builder().status(204).body(Bytes::new()).unwrap();
        let v = encode_one(empty);
        assert!(v.get("body").is_none());
        assert!(v.get("headers").is_none());
    }

    #[test]
    fn client_helpers_round_trip() {
        let binary = Request::put("http://example.com/blob?v=2")
            .header("content-type", "image/png")
            .body(Bytes::from_static(&[0, 1, 2, 250, 255]))
            .unwrap();
        let text = Request::post("/note")
            .header("content-type", "text/plain")
            .body(Bytes::from("line\n"))
            .unwrap();
        let encoded = encode_requests(&[
            ("b".to_owned(), &binary, vec![]),
            ("t".to_owned(), &text, vec!["b".to_owned()]),
        ]);
        let items = decode(std::str::from_utf8(&encoded).unwrap()).unwrap();
        let b = items[0].request().unwrap();
        assert_eq!(b.uri(), "/blob?v=2");
        assert_eq!(b.body(), &[0, 1, 2, 250, 255][..]);
        assert_eq!(b.headers()[header::CONTENT_TYPE], "image/png");
        let t = items[1].request().unwrap();
        assert_eq!(t.body(), "line\n");
        assert_eq!(items[1].depends_on(), ["b".to_owned()]);
    }

    #[test]
    fn decode_responses_is_tolerant() {
        let parsed = decode_responses(
            br#"{"responses":[
                {"id":1,"status":200},
                {"id":"2","status":"201","headers":{"Content-Type":"application/json","bad name":"x"},"body":{"a":1}},
                {"id":"3","status":200,"headers":{"content-type":"image/jpeg"},"body":"AAEC"},
                {"id":"4","status":204,"body":null},
                {"id":"5","status":200,"headers":{"content-type":"application/json"},"body":"s"}
            ],"nextLink":null}"#,
        )
        .unwrap();
        let ids: Vec<_> = parsed.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5"]);
        assert_eq!(parsed[0].1.status(), 200);
        assert!(parsed[0].1.body().is_empty());
        assert_eq!(parsed[1].1.status(), 201);
        assert_eq!(parsed[1].1.body(), r#"{"a":1}"#);
        assert_eq!(parsed[1].1.headers().len(), 1);
        assert_eq!(parsed[2].1.body(), &[0, 1, 2][..]);
        assert!(parsed[3].1.body().is_empty());
        assert_eq!(parsed[4].1.body(), "\"s\"");

        assert!(decode_responses(b"{\"responses\":[{\"status\":200}]}").is_err());
        assert!(decode_responses(b"{\"responses\":[{\"id\":\"a\",\"status\":99}]}").is_err());
        assert!(decode_responses(b"not json").is_err());
    }

    #[test]
    fn base64_accepts_both_alphabets_and_line_breaks() {
        assert_eq!(decode_base64("AP+/").unwrap(), [0x00, 0xff, 0xbf]);
        assert_eq!(decode_base64("AP-_").unwrap(), [0x00, 0xff, 0xbf]);
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("aG\r\nk=").unwrap(), b"hi");
        // One alphabet per body: mixing them is not base64.
        assert!(decode_base64("a+b-").is_none());
        assert!(decode_base64("!!").is_none());
    }

    #[test]
    fn urls() {
        assert_eq!(parse_url("me").unwrap(), "/me");
        assert_eq!(parse_url("/a?b=c").unwrap(), "/a?b=c");
        assert_eq!(
            parse_url("HTTP://h:1/x").unwrap().authority().unwrap(),
            "h:1"
        );
        assert!(parse_url("").is_err());
        assert!(parse_url("mailto://x").is_err());
        assert_eq!(scheme_of("/path?next=http://x"), None);
    }
}
