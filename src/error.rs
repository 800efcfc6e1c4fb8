//! What can make a whole batch unusable, and how each problem is answered.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// The boxed error type used where errors of several kinds meet.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A problem with the batch envelope as a whole.
///
/// A `BatchError` never reaches the caller of the service as an `Err`: the layer answers it with
/// one 4xx (or 5xx) response whose JSON body says in words what was wrong, in Google's error
/// shape:
///
/// ```json
/// {"error":{"code":413,"status":"INVALID_ARGUMENT","reason":"TOO_MANY_ITEMS","message":"batch has 1001 items; the limit is 1000","count":1001,"limit":1000}}
/// ```
///
/// Problems with a single item are not `BatchError`s: they become that item's own response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The request to a batch path used a method other than `POST`.
    MethodNotAllowed {
        /// The method the client used.
        method: String,
    },
    /// The batch body is sent with a content coding (`Content-Encoding: gzip`, say) that the
    /// layer does not decode. Decoding belongs to a layer outside, such as tower-http's
    /// `RequestDecompressionLayer`, which removes the header once it has decoded the body.
    UnsupportedEncoding {
        /// The `Content-Encoding` the client sent.
        encoding: String,
    },
    /// The content type is not one of the batch formats served at this path.
    UnsupportedMediaType {
        /// The content type the client sent, if any.
        content_type: Option<String>,
        /// The content types that are accepted here.
        accepted: Vec<String>,
    },
    /// A `multipart/mixed` content type without a usable `boundary` parameter.
    MissingBoundary,
    /// The boundary parameter is present but not valid per RFC 2046.
    InvalidBoundary {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body's framing is broken (no opening boundary, no closing boundary, ...).
    Framing {
        /// What is wrong with it, in words.
        reason: String,
    },
    /// The envelope could not be parsed (for example invalid JSON).
    Malformed {
        /// What is wrong with it, in words.
        reason: String,
    },
    /// The batch carries no items at all.
    Empty,
    /// The batch carries more items than allowed.
    TooManyItems {
        /// How many items were counted (at least `limit + 1`).
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The batch body is larger than allowed.
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The batch body is larger than a body limit outside the layer allows (tower-http's
    /// `RequestBodyLimitLayer`, say), whose size the layer does not know.
    BodyOverOuterLimit,
    /// One part is larger than allowed.
    PartTooLarge {
        /// The zero-based index of the part (the message and the JSON body count from 1).
        index: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The client did not send the whole body in time.
    ReadTimeout {
        /// The configured timeout.
        timeout: Duration,
    },
    /// Reading the request body failed.
    BodyRead {
        /// The underlying error, in words.
        reason: String,
    },
    /// Two items carry the same id (`Content-ID` or JSON `id`).
    DuplicateId {
        /// The repeated id.
        id: String,
    },
    /// An item depends on an id that no item in the batch carries.
    UnknownDependency {
        /// The item that names the dependency.
        id: String,
        /// The unknown id it names.
        depends_on: String,
    },
    /// The dependencies between items form a cycle.
    DependencyCycle {
        /// The ids on the cycle, in order; the first id is repeated at the end.
        cycle: Vec<String>,
    },
    /// The items together cost more than the per-batch budget.
    CostExceeded {
        /// The total cost of the batch.
        cost: u64,
        /// The configured budget.
        limit: u64,
    },
    /// The batch is an item of an enclosing batch, deeper than this layer allows.
    TooDeep {
        /// How many batches enclose this one.
        depth: usize,
        /// The configured nesting limit.
        limit: usize,
    },
    /// The layer was added with axum's `Router::layer`, which wraps each route and the fallback
    /// after routing: its items could not be routed. A mistake in the server, answered `500`.
    MountedInsideRouter,
    /// A batch request reached the batch service at a path the layer was not told (mounted with
    /// `route_service` at another path than its own), and the service inside does not serve that
    /// path either. A mistake in the server, answered `500`.
    PathNotConfigured {
        /// The path the request reached the service at.
        path: String,
        /// The batch paths the layer serves.
        configured: Vec<String>,
    },
    /// The batch holds a change set, and the route's dialect has none.
    ChangeSetsRefused {
        /// The route's dialect.
        dialect: &'static str,
    },
    /// The batch holds a change set, and the route has no transactions to run it all or
    /// nothing.
    NoTransactions,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::MethodNotAllowed { method } => {
                write!(f, "batch requests must use POST, not {method}")
            }
            BatchError::MountedInsideRouter => write!(
                f,
                "the server added BatchLayer with Router::layer, which runs after routing, so \
                 batch items cannot be routed; wrap the router instead: \
                 BatchLayer::new().wrap_router(router), or mount Batch::new(router) with \
                 route_service"
            ),
            BatchError::PathNotConfigured { path, configured } => write!(
                f,
                "a batch request reached the batch service at {path}, but the layer serves \
                 batches only at {}; tell it this path: Batch::layer().path(\"{path}\")\
                 .layer(router) (or BatchLayer::new().path(\"{path}\")), or .any_path() to serve \
                 batches at whatever path the service is mounted",
                configured.join(", ")
            ),
            BatchError::UnsupportedEncoding { encoding } => write!(
                f,
                "the batch body is encoded as `{encoding}`, which this server does not decode; \
                 send it without a Content-Encoding"
            ),
            BatchError::UnsupportedMediaType {
                content_type,
                accepted,
            } => {
                match content_type {
                    Some(ct) => write!(f, "content type `{ct}` is not a batch format")?,
                    None => write!(f, "the batch request has no content type")?,
                }
                write!(f, "; send one of: {}", accepted.join(", "))
            }
            BatchError::MissingBoundary => {
                write!(f, "multipart/mixed content type has no boundary parameter")
            }
            BatchError::InvalidBoundary { reason } => {
                write!(f, "invalid multipart boundary: {reason}")
            }
            BatchError::Framing { reason } => write!(f, "broken multipart framing: {reason}"),
            BatchError::Malformed { reason } => write!(f, "malformed batch: {reason}"),
            BatchError::Empty => write!(f, "the batch contains no items"),
            BatchError::TooManyItems { count, limit } => {
                write!(f, "batch has {count} items; the limit is {limit}")
            }
            BatchError::BodyTooLarge { limit } => {
                write!(f, "batch body is larger than the limit of {limit} bytes")
            }
            BatchError::BodyOverOuterLimit => write!(
                f,
                "batch body is larger than this server accepts (a body limit outside the batch endpoint)"
            ),
            BatchError::PartTooLarge { index, limit } => {
                write!(
                    f,
                    "part {} is larger than the limit of {limit} bytes",
                    index + 1
                )
            }
            BatchError::ReadTimeout { timeout } => write!(
                f,
                "the batch body was not received within {} ms",
                timeout.as_millis()
            ),
            BatchError::BodyRead { reason } => write!(f, "failed to read the batch body: {reason}"),
            BatchError::DuplicateId { id } => {
                write!(f, "two items carry the same id `{id}`; ids must be unique")
            }
            BatchError::UnknownDependency { id, depends_on } => write!(
                f,
                "item `{id}` depends on `{depends_on}`, which is not in the batch"
            ),
            BatchError::DependencyCycle { cycle } => {
                write!(f, "item dependencies form a cycle: {}", cycle.join(" -> "))
            }
            BatchError::CostExceeded { cost, limit } => {
                write!(f, "batch costs {cost}; the budget is {limit}")
            }
            BatchError::ChangeSetsRefused { dialect } => write!(
                f,
                "the batch holds a change set (a multipart/mixed part), and batches here \
                 ({dialect} rules) have none; nothing was run"
            ),
            BatchError::NoTransactions => write!(
                f,
                "the batch holds a change set, which must run all or nothing, and this service \
                 has no transactions to run it so; nothing was run"
            ),
            BatchError::TooDeep { depth, limit } => write!(
                f,
                "this batch is an item of {depth} enclosing batch(es); this layer allows {limit} (nested batches are off at 0)"
            ),
        }
    }
}

impl std::error::Error for BatchError {}

impl BatchError {
    /// The HTTP status this problem is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            BatchError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            BatchError::UnsupportedMediaType { .. } | BatchError::UnsupportedEncoding { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            BatchError::TooManyItems { .. }
            | BatchError::BodyTooLarge { .. }
            | BatchError::BodyOverOuterLimit
            | BatchError::PartTooLarge { .. }
            | BatchError::CostExceeded { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BatchError::ReadTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            BatchError::MountedInsideRouter | BatchError::PathNotConfigured { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            BatchError::NoTransactions => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A short machine-readable name for this problem, used as the `reason` field of the body.
    pub fn kind(&self) -> &'static str {
        match self {
            BatchError::MethodNotAllowed { .. } => "METHOD_NOT_ALLOWED",
            BatchError::UnsupportedMediaType { .. } => "UNSUPPORTED_MEDIA_TYPE",
            BatchError::UnsupportedEncoding { .. } => "UNSUPPORTED_CONTENT_ENCODING",
            BatchError::MissingBoundary => "MISSING_BOUNDARY",
            BatchError::InvalidBoundary { .. } => "INVALID_BOUNDARY",
            BatchError::Framing { .. } => "BROKEN_FRAMING",
            BatchError::Malformed { .. } => "MALFORMED_BATCH",
            BatchError::Empty => "EMPTY_BATCH",
            BatchError::TooManyItems { .. } => "TOO_MANY_ITEMS",
            BatchError::BodyTooLarge { .. } | BatchError::BodyOverOuterLimit => "BODY_TOO_LARGE",
            BatchError::PartTooLarge { .. } => "PART_TOO_LARGE",
            BatchError::ReadTimeout { .. } => "READ_TIMEOUT",
            BatchError::BodyRead { .. } => "BODY_READ_FAILED",
            BatchError::DuplicateId { .. } => "DUPLICATE_ID",
            BatchError::UnknownDependency { .. } => "UNKNOWN_DEPENDENCY",
            BatchError::DependencyCycle { .. } => "DEPENDENCY_CYCLE",
            BatchError::CostExceeded { .. } => "COST_EXCEEDED",
            BatchError::TooDeep { .. } => "NESTED_BATCH",
            BatchError::MountedInsideRouter => "MOUNTED_INSIDE_ROUTER",
            BatchError::PathNotConfigured { .. } => "BATCH_PATH_NOT_CONFIGURED",
            BatchError::ChangeSetsRefused { .. } => "CHANGE_SETS_REFUSED",
            BatchError::NoTransactions => "NO_TRANSACTIONS",
        }
    }

    /// The JSON body that describes this problem.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({
            "code": self.status().as_u16(),
            "status": google_status(self.status()),
            "reason": self.kind(),
            "message": self.to_string(),
        });
        let obj = error.as_object_mut().expect("object literal");
        match self {
            BatchError::TooManyItems { count, limit } => {
                obj.insert("count".into(), (*count).into());
                obj.insert("limit".into(), (*limit).into());
            }
            BatchError::BodyTooLarge { limit } => {
                obj.insert("limit".into(), (*limit).into());
            }
            BatchError::PartTooLarge { index, limit } => {
                // Counted from 1, as in the message.
                obj.insert("part".into(), (*index + 1).into());
                obj.insert("limit".into(), (*limit).into());
            }
            BatchError::CostExceeded { cost, limit } => {
                obj.insert("cost".into(), (*cost).into());
                obj.insert("limit".into(), (*limit).into());
            }
            BatchError::UnsupportedMediaType { accepted, .. } => {
                obj.insert("accepted".into(), accepted.clone().into());
            }
            BatchError::DependencyCycle { cycle } => {
                obj.insert("cycle".into(), cycle.clone().into());
            }
            _ => {}
        }
        serde_json::json!({ "error": error })
    }

    /// The whole response for this problem: status, JSON body, and `Allow` where it applies.
    pub fn to_response(&self) -> Response<Bytes> {
        let body = Bytes::from(self.to_json().to_string());
        let mut res = Response::new(body);
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        match self {
            BatchError::MethodNotAllowed { .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            }
            // RFC 7694: a 415 for a content coding names the codings that are accepted.
            BatchError::UnsupportedEncoding { .. } => {
                headers.insert(
                    header::ACCEPT_ENCODING,
                    HeaderValue::from_static("identity"),
                );
            }
            _ => {}
        }
        res
    }
}

/// A problem with one item: it becomes that item's own response, and the other items still run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    status: StatusCode,
    message: String,
}

impl ItemError {
    /// An item problem answered with `status` and a message in words.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ItemError {
            status,
            message: message.into(),
        }
    }

    /// A `400 Bad Request` item problem.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ItemError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status the item is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message, in words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The item response for this problem, in Google's error shape.
    pub fn to_response(&self) -> Response<Bytes> {
        error_response(self.status, &self.message)
    }
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status.as_u16())
    }
}

impl std::error::Error for ItemError {}

/// The canonical error code Google's APIs put in `error.status` for an HTTP status.
pub(crate) fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 411 | 413 | 414 | 415 | 431 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        412 | 424 => "FAILED_PRECONDITION",
        429 | 507 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        s if s >= 500 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// Marks the answer of an item that was not run (refused, failed dependency, no room), so that
/// a later step that replaces the answer still says the item did not run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NotRun;

/// `res`, marked as the answer of an item that was not run.
pub(crate) fn not_run(mut res: Response<Bytes>) -> Response<Bytes> {
    res.extensions_mut().insert(NotRun);
    res
}

/// A JSON error response in Google's shape: `{"error":{"code":..,"message":..,"status":..}}`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<Bytes> {
    let body = serde_json::json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "status": google_status(status),
        }
    });
    let mut res = Response::new(Bytes::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_items_names_count_and_limit() {
        let err = BatchError::TooManyItems {
            count: 1001,
            limit: 1000,
        };
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let json = err.to_json();
        assert_eq!(json["error"]["count"], 1001);
        assert_eq!(json["error"]["limit"], 1000);
        assert_eq!(
            json["error"]["message"],
            "batch has 1001 items; the limit is 1000"
        );
    }

    #[test]
    fn method_not_allowed_sets_allow() {
        let res = BatchError::MethodNotAllowed {
            method: "GET".into(),
        }
        .to_response();
        assert_eq!(res.status(), 405);
        assert_eq!(res.headers()[header::ALLOW], "POST, OPTIONS");
    }

    /// One of each kind of batch error. The match has no catch-all arm, so a new kind does not
    /// compile until it is listed here, and so in the README's table below.
    fn one_of_each() -> Vec<BatchError> {
        let all = vec![
            BatchError::MethodNotAllowed {
                method: "GET".into(),
            },
            BatchError::UnsupportedEncoding {
                encoding: "gzip".into(),
            },
            BatchError::UnsupportedMediaType {
                content_type: None,
                accepted: vec![],
            },
            BatchError::MissingBoundary,
            BatchError::InvalidBoundary { reason: "" },
            BatchError::Framing {
                reason: String::new(),
            },
            BatchError::Malformed {
                reason: String::new(),
            },
            BatchError::Empty,
            BatchError::TooManyItems { count: 2, limit: 1 },
            BatchError::BodyTooLarge { limit: 1 },
            BatchError::BodyOverOuterLimit,
            BatchError::PartTooLarge { index: 0, limit: 1 },
            BatchError::ReadTimeout {
                timeout: Duration::from_secs(1),
            },
            BatchError::BodyRead {
                reason: String::new(),
            },
            BatchError::DuplicateId { id: String::new() },
            BatchError::UnknownDependency {
                id: String::new(),
                depends_on: String::new(),
            },
            BatchError::DependencyCycle { cycle: vec![] },
            BatchError::CostExceeded { cost: 2, limit: 1 },
            BatchError::TooDeep { depth: 1, limit: 0 },
            BatchError::MountedInsideRouter,
            BatchError::PathNotConfigured {
                path: "/v2/batch".into(),
                configured: vec!["/batch".into()],
            },
            BatchError::ChangeSetsRefused { dialect: "google" },
            BatchError::NoTransactions,
        ];
        for e in &all {
            match e {
                BatchError::MethodNotAllowed { .. }
                | BatchError::UnsupportedEncoding { .. }
                | BatchError::UnsupportedMediaType { .. }
                | BatchError::MissingBoundary
                | BatchError::InvalidBoundary { .. }
                | BatchError::Framing { .. }
                | BatchError::Malformed { .. }
                | BatchError::Empty
                | BatchError::TooManyItems { .. }
                | BatchError::BodyTooLarge { .. }
                | BatchError::BodyOverOuterLimit
                | BatchError::PartTooLarge { .. }
                | BatchError::ReadTimeout { .. }
                | BatchError::BodyRead { .. }
                | BatchError::DuplicateId { .. }
                | BatchError::UnknownDependency { .. }
                | BatchError::DependencyCycle { .. }
                | BatchError::CostExceeded { .. }
                | BatchError::TooDeep { .. }
                | BatchError::MountedInsideRouter
                | BatchError::PathNotConfigured { .. }
                | BatchError::ChangeSetsRefused { .. }
                | BatchError::NoTransactions => {}
            }
        }
        all
    }

    #[test]
    fn the_readme_lists_every_reason_with_its_status() {
        let readme = include_str!("../README.md");
        let table = &readme[readme
            .find("| status | `error.reason` | when |")
            .expect("table")..];
        let table = &table[..table.find("\n\n").unwrap_or(table.len())];
        for e in one_of_each() {
            let reason = format!("`{}`", e.kind());
            let row = table
                .lines()
                .find(|line| line.contains(&reason))
                .unwrap_or_else(|| panic!("the README's error table has no {reason}"));
            let status = e.status().as_u16().to_string();
            assert!(
                row.starts_with(&format!("| {status}")),
                "{reason} is {status}: {row}"
            );
        }
    }
}
