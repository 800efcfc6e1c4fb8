//! Writing strict multipart batch text: CRLF everywhere, an unquoted `[A-Za-z0-9_-]` boundary,
//! no preamble or epilogue, and nested messages with a reason phrase and a `Content-Length`.
//!
//! Nested header names are written in their conventional capitalisation (`ETag`,
//! `Content-Type`, `OData-EntityId`), as the family's servers write them: names are
//! case-insensitive in HTTP, but clients read nested answers with their own text patterns
//! (`@azure/data-tables` looks for `ETag: ` case-sensitively).

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::format::Encoder;
use crate::item::{ChangeSetAnswer, ItemMeta};

/// A fresh random boundary: `batch_` and 32 hex digits.
pub fn new_boundary() -> String {
    crate::id::boundary()
}

/// How an answer part's `Content-ID` is made from the request part's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentIdEcho {
    /// Google's rule: `<X>` is answered `<response-X>`, a bare `X` as `response-X`.
    ResponsePrefix,
    /// OData's and Azure's rule: the `Content-ID` is echoed as it was sent.
    AsSent,
}

/// How a change set's answer is laid out in a multipart batch answer.
///
/// What the family's servers send, as found in specifications, captures, and the parsers of
/// the clients that read them:
/// - OData 4.0 (Part 1, 11.7.4 "Responding to a Batch Request"): a committed change set is a
///   nested `multipart/mixed` part; a failed one is "a single response, using the
///   application/http media type", at the batch level.
/// - OData 1–3 as Microsoft's servers write it (WCF Data Services, followed by Azure Tables): a
///   failed change set is still a `multipart/mixed` part, a `changesetresponse_` holding the one
///   failed answer ([MS-ODATA] 2.2.7.6.8 shows the nested form; the Web API OData tracker's
///   WCF capture of a change set that failed in its second request shows the wrap). The Azure
///   Tables JS client (`@azure/data-tables` 13.x, `parseTransactionResponse`) splits the body
///   on `--changesetresponse_` and reads nothing else, so a bare failure reads as success.
/// - SharePoint's `_api/$batch` runs change-set members one by one, without a transaction
///   (Microsoft's "Make batch requests with the REST APIs": "aren't transactional"), and
///   answers each at the top level; PnPjs (`@pnp/sp` 4.x, `parseResponse`) and
///   office365-rest-python-client read only `--batchresponse_` parts and match them to their
///   requests by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeSetAnswers {
    /// A committed change set nested, a failed one's answer a bare part of the batch (OData 4,
    /// and OData 2 as SAP's servers answer it).
    Nested,
    /// Nested whether it committed or failed: a failed change set is a change-set part that
    /// holds the failing answer (WCF Data Services, Azure Tables).
    WrapFailed,
    /// Every answer of a change set a part of the batch itself, in order (SharePoint).
    Flat,
}

/// Writes the answers of a multipart batch.
#[derive(Debug)]
pub struct MultipartEncoder {
    boundary: String,
    echo: ContentIdEcho,
    change_sets: ChangeSetAnswers,
}

impl MultipartEncoder {
    /// An encoder that separates parts with `boundary` (which must be a valid boundary token)
    /// and answers `Content-ID`s by Google's rule.
    pub fn new(boundary: String) -> Self {
        MultipartEncoder {
            boundary,
            echo: ContentIdEcho::ResponsePrefix,
            change_sets: ChangeSetAnswers::Nested,
        }
    }

    /// Sets how change sets are laid out (default [`ChangeSetAnswers::Nested`]).
    pub fn change_set_answers(mut self, shape: ChangeSetAnswers) -> Self {
        self.change_sets = shape;
        self
    }

    /// Sets how answer parts echo the request parts' `Content-ID`.
    pub fn content_id_echo(mut self, echo: ContentIdEcho) -> Self {
        self.echo = echo;
        self
    }

    /// The boundary in use.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }
}

impl MultipartEncoder {
    fn content_id<'a>(&self, meta: &'a ItemMeta) -> ContentId<'a> {
        match (&meta.echo, &meta.id, self.echo) {
            (Some(raw), _, ContentIdEcho::ResponsePrefix) => ContentId::Raw(raw),
            (Some(raw), _, ContentIdEcho::AsSent) => ContentId::AsSent(raw),
            (None, Some(id), ContentIdEcho::ResponsePrefix) => ContentId::Angled(id),
            (None, Some(id), ContentIdEcho::AsSent) => ContentId::AngledAsSent(id),
            (None, None, _) => ContentId::None,
        }
    }

    /// A change set's answer, laid out as the dialect says (see [`ChangeSetAnswers`]).
    ///
    /// - Nested (OData 4.0 part 1, 11.7.4): a nested `multipart/mixed` of its members' answers;
    ///   a change set that failed under a transaction is answered by the failing answer alone,
    ///   as a part of the batch.
    /// - Wrapped when failed (OData 3, Azure Tables): the failing answer alone, inside a nested
    ///   change-set part.
    /// - Flat (SharePoint): every member's answer a part of the batch itself, as its clients
    ///   match answers to requests by position; after a rollback the others say `424`, rolled
    ///   back or not run.
    fn write_change_set(&self, set: &ChangeSetAnswer, out: &mut BytesMut) {
        if self.change_sets == ChangeSetAnswers::Flat {
            for (meta, res) in &set.members {
                write_part(&self.boundary, self.content_id(meta), res, out);
            }
            return;
        }
        let failing = set.failing().filter(|_| set.atomic);
        if let (ChangeSetAnswers::Nested, Some((meta, res))) = (self.change_sets, failing) {
            write_part(&self.boundary, self.content_id(meta), res, out);
            return;
        }
        out.put_slice(b"--");
        out.put_slice(self.boundary.as_bytes());
        out.put_slice(b"\r\nContent-Type: multipart/mixed; boundary=");
        out.put_slice(set.boundary.as_bytes());
        out.put_slice(b"\r\n\r\n");
        match failing {
            Some((meta, res)) => write_part(&set.boundary, self.content_id(meta), res, out),
            None => {
                for (meta, res) in &set.members {
                    write_part(&set.boundary, self.content_id(meta), res, out);
                }
            }
        }
        out.put_slice(b"--");
        out.put_slice(set.boundary.as_bytes());
        out.put_slice(b"--\r\n");
    }
}

impl Encoder for MultipartEncoder {
    fn content_type(&self) -> HeaderValue {
        HeaderValue::try_from(format!("multipart/mixed; boundary={}", self.boundary))
            .expect("boundaries are made of token characters")
    }

    fn item(&mut self, meta: &ItemMeta, response: &Response<Bytes>, out: &mut BytesMut) {
        // The decoder keeps the raw `Content-ID` only when it is not the plain `<id>`.
        write_part(&self.boundary, self.content_id(meta), response, out);
    }

    fn change_set(&mut self, answer: &ChangeSetAnswer, out: &mut BytesMut) {
        self.write_change_set(answer, out);
    }

    fn end(&mut self, out: &mut BytesMut) {
        out.reserve(self.boundary.len() + 6);
        out.put_slice(b"--");
        out.put_slice(self.boundary.as_bytes());
        out.put_slice(b"--\r\n");
    }
}

/// Headers the part writer sets itself or that make no sense inside a part.
fn skip_header(name: &header::HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name == "keep-alive"
}

fn put_headers(headers: &HeaderMap, out: &mut BytesMut) {
    for (name, value) in headers {
        if skip_header(name) {
            continue;
        }
        put_name(name.as_str(), out);
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// Writes a header name (lower case, as `http` keeps it) in its conventional capitalisation:
/// the common names and those that are not plain title case as their specifications spell them
/// (`ETag`, `OData-Version`, `Content-ID`), the `x-ms-` family in lower case as Azure writes it,
/// and every other name in title case (`x-custom` → `X-Custom`).
pub(crate) fn put_name(name: &str, out: &mut BytesMut) {
    // One `match`: the answers' usual names cost a compare and a copy, as the lower-case name
    // did.
    let spelled = match name {
        "content-type" => "Content-Type",
        "etag" => "ETag",
        "location" => "Location",
        "cache-control" => "Cache-Control",
        "date" => "Date",
        "vary" => "Vary",
        "odata-version" => "OData-Version",
        "odata-entityid" => "OData-EntityId",
        "odata-maxversion" => "OData-MaxVersion",
        "dataserviceversion" => "DataServiceVersion",
        "maxdataserviceversion" => "MaxDataServiceVersion",
        "dataserviceid" => "DataServiceId",
        "content-id" => "Content-ID",
        "content-md5" => "Content-MD5",
        "www-authenticate" => "WWW-Authenticate",
        "te" => "TE",
        _ if name.starts_with("x-ms-") => name,
        _ => {
            let mut upper = true;
            for &c in name.as_bytes() {
                out.put_u8(if upper { c.to_ascii_uppercase() } else { c });
                upper = c == b'-';
            }
            return;
        }
    };
    out.put_slice(spelled.as_bytes());
}

fn head_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

fn put_content_length(len: usize, out: &mut BytesMut) {
    out.put_slice(b"Content-Length: ");
    put_decimal(len, out);
    out.put_slice(b"\r\n");
}

/// Writes a number in decimal without going through a `String`.
fn put_decimal(mut n: usize, out: &mut BytesMut) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

/// Writes the `Content-ID` header that answers a request part's `Content-ID`: `<X>` →
/// `<response-X>`, a bare `X` → `response-X`, copied byte for byte. Writes nothing for a value
/// that cannot be a header value (empty, or with control characters).
fn put_response_content_id(request_id: &str, out: &mut BytesMut) {
    let t = request_id.trim_matches(|c| c == ' ' || c == '\t');
    if t.is_empty() || t.bytes().any(|c| c.is_ascii_control() && c != b'\t') {
        return;
    }
    out.put_slice(b"Content-ID: ");
    match t.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
        Some(inner) => {
            out.put_slice(b"<response-");
            out.put_slice(inner.as_bytes());
            out.put_u8(b'>');
        }
        None => {
            out.put_slice(b"response-");
            out.put_slice(t.as_bytes());
        }
    }
    out.put_slice(b"\r\n");
}

/// Writes one response part: delimiter, part headers, and the nested HTTP/1.1 response.
///
/// `request_content_id` is the `Content-ID` of the request part, echoed per Google's rule.
pub fn write_response_part(
    boundary: &str,
    request_content_id: Option<&str>,
    response: &Response<Bytes>,
    out: &mut BytesMut,
) {
    let content_id = request_content_id.map_or(ContentId::None, ContentId::Raw);
    write_part(boundary, content_id, response, out);
}

/// The request part's `Content-ID`, as the answer's is made from it.
enum ContentId<'a> {
    /// As it came on the wire.
    Raw(&'a str),
    /// The id inside a plain `<id>`.
    Angled(&'a str),
    /// As it came on the wire, echoed unchanged.
    AsSent(&'a str),
    /// The id inside a plain `<id>`, echoed unchanged.
    AngledAsSent(&'a str),
    None,
}

/// Writes `Content-ID: X` for a value echoed as sent, if it can be a header value.
fn put_content_id_as_sent(raw: &str, out: &mut BytesMut) {
    let t = raw.trim_matches(|c| c == ' ' || c == '\t');
    if t.is_empty() || t.bytes().any(|c| c.is_ascii_control() && c != b'\t') {
        return;
    }
    out.put_slice(b"Content-ID: ");
    out.put_slice(t.as_bytes());
    out.put_slice(b"\r\n");
}

fn write_part(
    boundary: &str,
    content_id: ContentId<'_>,
    response: &Response<Bytes>,
    out: &mut BytesMut,
) {
    let body = response.body();
    out.reserve(boundary.len() + 128 + head_size(response.headers()) + body.len());
    out.put_slice(b"--");
    out.put_slice(boundary.as_bytes());
    out.put_slice(b"\r\nContent-Type: application/http\r\n");
    match content_id {
        ContentId::Raw(cid) => put_response_content_id(cid, out),
        ContentId::Angled(id) => {
            out.put_slice(b"Content-ID: <response-");
            out.put_slice(id.as_bytes());
            out.put_slice(b">\r\n");
        }
        ContentId::AsSent(raw) => put_content_id_as_sent(raw, out),
        ContentId::AngledAsSent(id) => {
            out.put_slice(b"Content-ID: <");
            out.put_slice(id.as_bytes());
            out.put_slice(b">\r\n");
        }
        ContentId::None => {}
    }
    out.put_slice(b"\r\n");
    put_status_line(response.status(), out);
    put_headers(response.headers(), out);
    put_content_length(body.len(), out);
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn put_status_line(status: StatusCode, out: &mut BytesMut) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    // Clients split the status line into three words, so a reason phrase must be present.
    out.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes one request part (the client side): delimiter, part headers with `Content-ID: <id>`, and
/// the nested HTTP/1.1 request in origin form.
pub fn write_request(
    boundary: &str,
    content_id: Option<&str>,
    request: &Request<Bytes>,
    out: &mut BytesMut,
) {
    let body = request.body();
    out.reserve(boundary.len() + 128 + head_size(request.headers()) + body.len());
    out.put_slice(b"--");
    out.put_slice(boundary.as_bytes());
    out.put_slice(b"\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(id) = content_id {
        out.put_slice(b"Content-ID: <");
        out.put_slice(id.as_bytes());
        out.put_slice(b">\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(request.method().as_str().as_bytes());
    out.put_u8(b' ');
    // Origin form: `uri.path()` is `/` when the URI has no path, so `http://h?x` becomes `/?x`.
    out.put_slice(request.uri().path().as_bytes());
    if let Some(query) = request.uri().query() {
        out.put_u8(b'?');
        out.put_slice(query.as_bytes());
    }
    out.put_slice(b" HTTP/1.1\r\n");
    if let Some(host) = request.uri().authority() {
        if !request.headers().contains_key(header::HOST) {
            out.put_slice(b"Host: ");
            out.put_slice(host.as_str().as_bytes());
            out.put_slice(b"\r\n");
        }
    }
    put_headers(request.headers(), out);
    if !body.is_empty() {
        put_content_length(body.len(), out);
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_a_plain_token() {
        let b = new_boundary();
        assert!(b
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
        assert_ne!(b, new_boundary());
    }

    #[test]
    fn request_target_is_origin_form() {
        let req = Request::get("http://localhost?x=http://y")
            .body(Bytes::new())
            .unwrap();
        let mut out = BytesMut::new();
        write_request("b", None, &req, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.contains("\r\nGET /?x=http://y HTTP/1.1\r\nHost: localhost\r\n"),
            "{text}"
        );
    }

    fn echo(id: &str) -> String {
        let mut out = BytesMut::new();
        put_response_content_id(id, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn content_id_echo() {
        assert_eq!(echo("<a+b c>"), "Content-ID: <response-a+b c>\r\n");
        assert_eq!(echo("item1"), "Content-ID: response-item1\r\n");
        assert_eq!(echo(""), "");
        assert_eq!(echo("a\rb"), "");
    }

    fn name(n: &str) -> String {
        let mut out = BytesMut::new();
        put_name(n, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn conventional_header_names() {
        assert_eq!(name("etag"), "ETag");
        assert_eq!(name("content-type"), "Content-Type");
        assert_eq!(name("location"), "Location");
        assert_eq!(name("odata-entityid"), "OData-EntityId");
        assert_eq!(name("x-ms-error-code"), "x-ms-error-code");
        assert_eq!(name("x-custom-thing"), "X-Custom-Thing");
        assert_eq!(name("a--b-"), "A--B-");
    }

    #[test]
    fn decimals() {
        for n in [0usize, 7, 10, 1234567, usize::MAX] {
            let mut out = BytesMut::new();
            put_decimal(n, &mut out);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }

    #[test]
    fn part_is_strict() {
        let mut res = Response::new(Bytes::from_static(b"{}"));
        *res.status_mut() = StatusCode::from_u16(299).unwrap();
        res.headers_mut()
            .insert("content-length", HeaderValue::from_static("99"));
        let mut out = BytesMut::new();
        write_response_part("b", Some("<x>"), &res, &mut out);
        assert_eq!(
            &out[..],
            b"--b\r\nContent-Type: application/http\r\nContent-ID: <response-x>\r\n\r\nHTTP/1.1 299 Unknown\r\nContent-Length: 2\r\n\r\n{}\r\n"
        );
    }
}
