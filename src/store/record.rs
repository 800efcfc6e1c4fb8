//! What the layer keeps in an [`AnswerStore`](super::AnswerStore): one record per status
//! monitor or idempotency key, saying whose it is, how far its batch got and, once it is done,
//! its answer. Stores see bytes only; this is their shape.
//!
//! A record is `HB1\n`, one line of JSON (who, what, how far, the answer's status and
//! headers), `\n`, then the answer's body as it was sent.

use std::hash::{Hash, Hasher};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

const MAGIC: &[u8] = b"HB1\n";

/// How far a record's batch got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Running: items answered of all items (0 of 0 before the first starts).
    Running { done: u64, total: u64 },
    /// Answered: the record holds the answer.
    Done,
    /// It ran, but its answer of `bytes` bytes was larger than the `limit` kept.
    NotKept { bytes: u64, limit: u64 },
}

#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// A digest of the submitter's identity, never the identity itself.
    pub(crate) owner: String,
    /// A digest of the batch request (idempotency keys only).
    pub(crate) fingerprint: String,
    pub(crate) state: State,
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Record {
    pub(crate) fn running(owner: &str, fingerprint: &str) -> Self {
        Record {
            owner: owner.to_owned(),
            fingerprint: fingerprint.to_owned(),
            state: State::Running { done: 0, total: 0 },
            status: 0,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// The record of a finished batch whose answer is `status`, `headers` and `body`. Only the
    /// headers that describe the answer itself are kept, not those of the connection.
    pub(crate) fn done(
        owner: &str,
        fingerprint: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Self {
        let headers = headers
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "content-length" | "transfer-encoding" | "connection" | "date"
                )
            })
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Record {
            owner: owner.to_owned(),
            fingerprint: fingerprint.to_owned(),
            state: State::Done,
            status: status.as_u16(),
            headers,
            body,
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        let (state, a, b) = match self.state {
            State::Running { done, total } => ("running", done, total),
            State::Done => ("done", 0, 0),
            State::NotKept { bytes, limit } => ("not-kept", bytes, limit),
        };
        let head = serde_json::json!({
            "owner": self.owner,
            "fingerprint": self.fingerprint,
            "state": state,
            "a": a,
            "b": b,
            "status": self.status,
            "headers": self.headers,
        });
        let head = head.to_string();
        let mut out = BytesMut::with_capacity(MAGIC.len() + head.len() + 1 + self.body.len());
        out.put_slice(MAGIC);
        out.put_slice(head.as_bytes());
        out.put_u8(b'\n');
        out.put_slice(&self.body);
        out.freeze()
    }

    /// `None` for bytes that are not a record of this layer's.
    pub(crate) fn decode(bytes: &Bytes) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let end = memchr::memchr(b'\n', rest)?;
        let head: serde_json::Value = serde_json::from_slice(&rest[..end]).ok()?;
        let text = |k: &str| head.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let num = |k: &str| head.get(k).and_then(serde_json::Value::as_u64);
        let state = match head.get("state")?.as_str()? {
            "running" => State::Running {
                done: num("a")?,
                total: num("b")?,
            },
            "done" => State::Done,
            "not-kept" => State::NotKept {
                bytes: num("a")?,
                limit: num("b")?,
            },
            _ => return None,
        };
        let headers = head
            .get("headers")?
            .as_array()?
            .iter()
            .filter_map(|pair| {
                let pair = pair.as_array()?;
                Some((
                    pair.first()?.as_str()?.to_owned(),
                    pair.get(1)?.as_str()?.to_owned(),
                ))
            })
            .collect();
        let start = MAGIC.len() + end + 1;
        Some(Record {
            owner: text("owner")?,
            fingerprint: text("fingerprint")?,
            state,
            status: u16::try_from(num("status")?).ok()?,
            headers,
            body: bytes.slice(start..),
        })
    }

    /// The kept answer as a response.
    pub(crate) fn answer(&self) -> Response<Bytes> {
        let mut res = Response::new(self.body.clone());
        *res.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                res.headers_mut().append(n, v);
            }
        }
        res
    }
}

/// A 128-bit digest of `parts`, as 32 hex digits: two SipHash passes with different
/// domain tags. It names and compares; it is not a secret (see the README's Security section).
pub(crate) fn digest(parts: &[&[u8]]) -> String {
    let mut out = String::with_capacity(32);
    for tag in [b"http-batch/a".as_slice(), b"http-batch/b"] {
        // `DefaultHasher::new` is SipHash with fixed keys: the same digest in every process,
        // which replicas sharing a store need.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tag.hash(&mut h);
        for part in parts {
            part.hash(&mut h);
        }
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("multipart/mixed; boundary=b"),
        );
        headers.insert("content-length", HeaderValue::from_static("3"));
        let r = Record::done(
            "o",
            "f",
            StatusCode::OK,
            &headers,
            Bytes::from_static(b"a\nb"),
        );
        let back = Record::decode(&r.encode()).unwrap();
        assert_eq!(back.state, State::Done);
        assert_eq!(back.owner, "o");
        assert_eq!(back.body, Bytes::from_static(b"a\nb"));
        assert_eq!(back.headers.len(), 1);
        let res = back.answer();
        assert_eq!(res.headers()["content-type"], "multipart/mixed; boundary=b");
        let mut r = Record::running("o", "");
        r.state = State::Running { done: 3, total: 9 };
        assert_eq!(
            Record::decode(&r.encode()).unwrap().state,
            State::Running { done: 3, total: 9 }
        );
        assert!(Record::decode(&Bytes::from_static(b"junk")).is_none());
    }

    #[test]
    fn digests_differ_and_repeat() {
        assert_eq!(digest(&[b"a", b"b"]), digest(&[b"a", b"b"]));
        assert_ne!(digest(&[b"a", b"b"]), digest(&[b"ab"]));
        assert_eq!(digest(&[b"x"]).len(), 32);
    }
}
