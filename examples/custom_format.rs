//! Run with: cargo run --example custom_format
//!
//! Writing a batch wire format of your own and registering it next to the built-in ones.
//!
//! The format here is deliberately tiny: a batch is plain text, one call per line,
//! `METHOD /path?query` (blank lines and lines starting with `#` are skipped). The answer is one
//! line per call, in order: `<status> <body>`, with `\`, CR and LF in the body escaped as `\\`,
//! `\r` and `\n`, so every answer stays on its line.
//!
//! Environment: `ADDR`, the address to listen on (default `127.0.0.1:3000`). Then:
//!
//! ```text
//! $ printf 'GET /hello/ann\nGET /sum?a=2&b=3\n# a comment\nDELETE /hello/bob\n' |
//!     curl -s --data-binary @- -H 'content-type: text/x-batch-lines' http://127.0.0.1:3000/batch
//! 200 hello, ann
//! 200 5
//! 405
//! ```

use axum::extract::{Path, Query};
use axum::routing::get;
use axum::Router;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_batch::format::{DecodeContext, Encoder, Format};
use http_batch::{BatchError, BatchLayer, Item, ItemError, ItemMeta};

/// The content type that selects this format.
const CONTENT_TYPE: &str = "text/x-batch-lines";

/// One call per line in, one answer per line out.
struct Lines;

impl Format for Lines {
    fn name(&self) -> &'static str {
        "lines"
    }

    fn content_types(&self) -> Vec<String> {
        vec![CONTENT_TYPE.to_owned()]
    }

    fn accepts(&self, content_type: &mime::Mime) -> bool {
        content_type.essence_str() == CONTENT_TYPE
    }

    fn decode(&self, cx: &DecodeContext<'_>, body: Bytes) -> Result<Vec<Item>, BatchError> {
        let text = std::str::from_utf8(&body).map_err(|e| BatchError::Malformed {
            reason: format!("the batch is not UTF-8 text: {e}"),
        })?;
        let calls: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        // Check the count before building items; the layer's own check comes only after decoding.
        if calls.len() > cx.limits.get_max_items() {
            return Err(BatchError::TooManyItems {
                count: calls.len(),
                limit: cx.limits.get_max_items(),
            });
        }
        Ok(calls.into_iter().map(parse_line).collect())
    }

    fn encoder(&self, _cx: &DecodeContext<'_>) -> Box<dyn Encoder> {
        Box::new(LinesEncoder)
    }
}

/// A line that cannot be read becomes that call's own `400`; the other calls still run.
fn parse_line(line: &str) -> Item {
    let mut words = line.split_whitespace();
    let (Some(method), Some(target), None) = (words.next(), words.next(), words.next()) else {
        return Item::invalid(ItemError::bad_request(format!(
            "`{line}` is not `METHOD /path`"
        )));
    };
    match Request::builder()
        .method(method)
        .uri(target)
        .body(Bytes::new())
    {
        Ok(req) => Item::new(req),
        Err(e) => Item::invalid(ItemError::bad_request(format!("`{line}`: {e}"))),
    }
}

struct LinesEncoder;

impl Encoder for LinesEncoder {
    fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static("text/x-batch-lines; charset=utf-8")
    }

    fn item(&mut self, _meta: &ItemMeta, response: &Response<Bytes>, out: &mut BytesMut) {
        out.put_slice(response.status().as_str().as_bytes());
        let body = String::from_utf8_lossy(response.body());
        if !body.is_empty() {
            out.put_u8(b' ');
            for c in body.chars() {
                match c {
                    '\\' => out.put_slice(b"\\\\"),
                    '\n' => out.put_slice(b"\\n"),
                    '\r' => out.put_slice(b"\\r"),
                    c => out.put_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
        }
        out.put_u8(b'\n');
    }
}

#[derive(serde::Deserialize)]
struct Sum {
    a: i64,
    b: i64,
}

#[tokio::main]
async fn main() {
    let api = Router::new()
        .route(
            "/hello/{name}",
            get(|Path(name): Path<String>| async move { format!("hello, {name}") }),
        )
        .route(
            "/sum",
            get(|Query(s): Query<Sum>| async move { (s.a + s.b).to_string() }),
        );
    // `format` adds to multipart and JSON at `/batch`; `path_with_format` would give the format
    // a path of its own instead.
    let app = BatchLayer::new().format(Lines).wrap_router(api);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "listening on http://{}",
        listener.local_addr().expect("local_addr")
    );
    axum::serve(listener, app).await.expect("server");
}
