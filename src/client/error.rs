//! What can go wrong on the client side: for a whole batch ([`ClientError`]) and for one item
//! ([`ItemFailure`]).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::error::BoxError;

/// A problem with a whole batch: building it, sending it, or reading the answer as a whole.
///
/// Problems with a single item are [`ItemFailure`]s instead, and the other items keep their
/// answers. `ClientError` is cheap to clone (the transport error sits behind an `Arc`), because
/// one failed batch is reported to every item handle and callback in it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientError {
    /// Two items were added with the same id.
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// An item id that cannot be written as a `Content-ID`.
    InvalidId {
        /// The id as given.
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The batch URL or an outer header could not be used to build the request.
    InvalidRequest {
        /// What was wrong, in words.
        reason: String,
    },
    /// The client service failed (connection refused, reset, timeout, ...).
    Transport(Arc<dyn std::error::Error + Send + Sync>),
    /// Reading the body of the batch response failed.
    Body(Arc<dyn std::error::Error + Send + Sync>),
    /// The server answered the batch as a whole with a non-2xx status.
    Status {
        /// The outer status.
        status: StatusCode,
        /// The server's message: `error.message` of a JSON error body, else the body as text.
        message: String,
        /// The raw response body.
        body: Bytes,
        /// The outer response headers (boxed, so that the error stays small).
        headers: Box<http::HeaderMap>,
    },
    /// The batch response could not be read as a batch (wrong content type, broken framing).
    Decode {
        /// What was wrong, in words.
        reason: String,
    },
}

impl ClientError {
    pub(crate) fn transport(e: impl Into<BoxError>) -> Self {
        ClientError::Transport(Arc::from(e.into()))
    }

    pub(crate) fn body(e: impl Into<BoxError>) -> Self {
        ClientError::Body(Arc::from(e.into()))
    }

    /// The outer status, when the server answered the batch with a non-2xx status.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::DuplicateId { id } => {
                write!(f, "an item with id `{id}` is already in the batch")
            }
            ClientError::InvalidId { id, reason } => write!(f, "invalid item id `{id}`: {reason}"),
            ClientError::InvalidRequest { reason } => {
                write!(f, "cannot build the batch request: {reason}")
            }
            // The cause is reported by `source()`, not repeated here.
            ClientError::Transport(_) => write!(f, "sending the batch failed"),
            ClientError::Body(_) => write!(f, "reading the batch response failed"),
            ClientError::Status {
                status, message, ..
            } => {
                write!(f, "the server rejected the batch with {status}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            ClientError::Decode { reason } => {
                write!(f, "the batch response is unreadable: {reason}")
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Transport(e) | ClientError::Body(e) => Some(&**e),
            _ => None,
        }
    }
}

/// Why one item of a batch has no response.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ItemFailure {
    /// The batch response holds no part for this item.
    Missing,
    /// The item's part is there but its nested HTTP response cannot be read.
    Malformed {
        /// What was wrong, in words.
        reason: String,
    },
    /// The whole batch (or the sub-batch this item was sent in) failed.
    Batch(ClientError),
    /// The batch was dropped before it was sent, so this item never ran.
    Canceled,
}

impl fmt::Display for ItemFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemFailure::Missing => write!(f, "the batch response holds no part for this item"),
            ItemFailure::Malformed { reason } => {
                write!(f, "the item's response part is malformed: {reason}")
            }
            ItemFailure::Batch(e) => write!(f, "{e}"),
            ItemFailure::Canceled => write!(f, "the batch was dropped before it was sent"),
        }
    }
}

impl std::error::Error for ItemFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ItemFailure::Batch(e) => Some(e),
            _ => None,
        }
    }
}

/// The server's message in an error body: `error.message` of Google's JSON error shape (or a
/// top-level `message`), else the body as text, shortened.
pub(crate) fn server_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let msg = v
            .pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error").filter(|e| e.is_string()));
        if let Some(serde_json::Value::String(s)) = msg {
            return s.clone();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    // A whole HTML error page in a Display string helps no one.
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_from_google_error() {
        let body = br#"{"error":{"code":401,"message":"Request is missing required authentication credential.","status":"UNAUTHENTICATED"}}"#;
        assert_eq!(
            server_message(body),
            "Request is missing required authentication credential."
        );
    }

    #[test]
    fn message_from_plain_text_is_trimmed_and_shortened() {
        assert_eq!(server_message(b"  Bad Gateway\n"), "Bad Gateway");
        let long = "x".repeat(500);
        assert_eq!(server_message(long.as_bytes()).chars().count(), 201);
    }
}
