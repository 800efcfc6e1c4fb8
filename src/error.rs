//! What can make a whole batch unusable, and how each problem is answered.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};

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

/// Everything the layer says about one problem: its status, its machine-readable reason, its
/// message in words, and the figures the JSON body carries besides (`limit`, `count`, ...).
struct Answer {
    status: StatusCode,
    reason: &'static str,
    message: String,
    fields: Vec<(&'static str, serde_json::Value)>,
}

impl Answer {
    fn new(status: StatusCode, reason: &'static str, message: String) -> Answer {
        Answer {
            status,
            reason,
            message,
            fields: Vec::new(),
        }
    }

    fn bad_request(reason: &'static str, message: String) -> Answer {
        Answer::new(StatusCode::BAD_REQUEST, reason, message)
    }

    fn too_large(reason: &'static str, message: String) -> Answer {
        Answer::new(StatusCode::PAYLOAD_TOO_LARGE, reason, message)
    }

    fn with(mut self, name: &'static str, value: impl Into<serde_json::Value>) -> Answer {
        self.fields.push((name, value.into()));
        self
    }
}

impl BatchError {
    /// The one table of how each problem is answered; `Display`, [`status`](Self::status),
    /// [`kind`](Self::kind) and [`to_json`](Self::to_json) all read it.
    fn answer(&self) -> Answer {
        match self {
            BatchError::MethodNotAllowed { method } => Answer::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                format!("batch requests must use POST, not {method}"),
            ),
            BatchError::PathNotConfigured { path, configured } => Answer::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "BATCH_PATH_NOT_CONFIGURED",
                format!(
                    "a batch request reached the batch service at {path}, but the layer serves \
                     batches only at {}; tell it this path: Batch::layer().path(\"{path}\")\
                     .layer(router) (or BatchLayer::new().path(\"{path}\")), or .any_path() to \
                     serve batches at whatever path the service is mounted",
                    configured.join(", ")
                ),
            ),
            BatchError::UnsupportedEncoding { encoding } => Answer::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_CONTENT_ENCODING",
                format!(
                    "the batch body is encoded as `{encoding}`, which this server does not \
                     decode; send it without a Content-Encoding"
                ),
            ),
            BatchError::UnsupportedMediaType {
                content_type,
                accepted,
            } => {
                let sent = match content_type {
                    Some(ct) => format!("content type `{ct}` is not a batch format"),
                    None => "the batch request has no content type".to_owned(),
                };
                Answer::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    format!("{sent}; send one of: {}", accepted.join(", ")),
                )
                .with("accepted", accepted.clone())
            }
            BatchError::MissingBoundary => Answer::bad_request(
                "MISSING_BOUNDARY",
                "multipart/mixed content type has no boundary parameter".to_owned(),
            ),
            BatchError::InvalidBoundary { reason } => Answer::bad_request(
                "INVALID_BOUNDARY",
                format!("invalid multipart boundary: {reason}"),
            ),
            BatchError::Framing { reason } => Answer::bad_request(
                "BROKEN_FRAMING",
                format!("broken multipart framing: {reason}"),
            ),
            BatchError::Malformed { reason } => {
                Answer::bad_request("MALFORMED_BATCH", format!("malformed batch: {reason}"))
            }
            BatchError::Empty => {
                Answer::bad_request("EMPTY_BATCH", "the batch contains no items".to_owned())
            }
            BatchError::TooManyItems { count, limit } => Answer::too_large(
                "TOO_MANY_ITEMS",
                format!("batch has {count} items; the limit is {limit}"),
            )
            .with("count", *count)
            .with("limit", *limit),
            BatchError::BodyTooLarge { limit } => Answer::too_large(
                "BODY_TOO_LARGE",
                format!("batch body is larger than the limit of {limit} bytes"),
            )
            .with("limit", *limit),
            BatchError::BodyOverOuterLimit => Answer::too_large(
                "BODY_TOO_LARGE",
                "batch body is larger than this server accepts (a body limit outside the batch \
                 endpoint)"
                    .to_owned(),
            ),
            // Counted from 1, in the message and the body alike.
            BatchError::PartTooLarge { index, limit } => Answer::too_large(
                "PART_TOO_LARGE",
                format!(
                    "part {} is larger than the limit of {limit} bytes",
                    index + 1
                ),
            )
            .with("part", *index + 1)
            .with("limit", *limit),
            BatchError::ReadTimeout { timeout } => Answer::new(
                StatusCode::REQUEST_TIMEOUT,
                "READ_TIMEOUT",
                format!(
                    "the batch body was not received within {} ms",
                    timeout.as_millis()
                ),
            ),
            BatchError::BodyRead { reason } => Answer::bad_request(
                "BODY_READ_FAILED",
                format!("failed to read the batch body: {reason}"),
            ),
            BatchError::DuplicateId { .. }
            | BatchError::UnknownDependency { .. }
            | BatchError::DependencyCycle { .. }
            | BatchError::CostExceeded { .. }
            | BatchError::TooDeep { .. }
            | BatchError::MountedInsideRouter
            | BatchError::ChangeSetsRefused { .. }
            | BatchError::NoTransactions => self.answer_about_items(),
        }
    }

    /// The second half of the table: problems with the items as a set (ids, dependencies,
    /// cost, nesting, change sets) and with the server's own set-up.
    fn answer_about_items(&self) -> Answer {
        match self {
            BatchError::DuplicateId { id } => Answer::bad_request(
                "DUPLICATE_ID",
                format!("two items carry the same id `{id}`; ids must be unique"),
            ),
            BatchError::UnknownDependency { id, depends_on } => Answer::bad_request(
                "UNKNOWN_DEPENDENCY",
                format!("item `{id}` depends on `{depends_on}`, which is not in the batch"),
            ),
            BatchError::DependencyCycle { cycle } => Answer::bad_request(
                "DEPENDENCY_CYCLE",
                format!("item dependencies form a cycle: {}", cycle.join(" -> ")),
            )
            .with("cycle", cycle.clone()),
            BatchError::CostExceeded { cost, limit } => Answer::too_large(
                "COST_EXCEEDED",
                format!("batch costs {cost}; the budget is {limit}"),
            )
            .with("cost", *cost)
            .with("limit", *limit),
            BatchError::TooDeep { depth, limit } => Answer::bad_request(
                "NESTED_BATCH",
                format!(
                    "this batch is an item of {depth} enclosing batch(es); this layer allows \
                     {limit} (nested batches are off at 0)"
                ),
            ),
            BatchError::MountedInsideRouter => Answer::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "MOUNTED_INSIDE_ROUTER",
                "the server added BatchLayer with Router::layer, which runs after routing, so \
                 batch items cannot be routed; wrap the router instead: \
                 BatchLayer::new().wrap_router(router), or mount Batch::new(router) with \
                 route_service"
                    .to_owned(),
            ),
            BatchError::ChangeSetsRefused { dialect } => Answer::bad_request(
                "CHANGE_SETS_REFUSED",
                format!(
                    "the batch holds a change set (a multipart/mixed part), and batches here \
                     ({dialect} rules) have none; nothing was run"
                ),
            ),
            BatchError::NoTransactions => Answer::new(
                StatusCode::NOT_IMPLEMENTED,
                "NO_TRANSACTIONS",
                "the batch holds a change set, which must run all or nothing, and this service \
                 has no transactions to run it so; nothing was run"
                    .to_owned(),
            ),
            // `answer` lists every other kind itself (it has no catch-all arm) and sends only
            // these here.
            _ => unreachable!("only problems with the items are answered here"),
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.answer().message)
    }
}

impl std::error::Error for BatchError {}

impl BatchError {
    /// The HTTP status this problem is answered with.
    pub fn status(&self) -> StatusCode {
        self.answer().status
    }

    /// A short machine-readable name for this problem, used as the `reason` field of the body.
    pub fn kind(&self) -> &'static str {
        self.answer().reason
    }

    /// The JSON body that describes this problem.
    pub fn to_json(&self) -> serde_json::Value {
        let Answer {
            status,
            reason,
            message,
            fields,
        } = self.answer();
        let mut error = serde_json::Map::new();
        error.insert("code".into(), status.as_u16().into());
        error.insert("status".into(), google_status(status).into());
        error.insert("reason".into(), reason.into());
        error.insert("message".into(), message.into());
        for (name, value) in fields {
            error.insert(name.into(), value);
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

/// The answer of an item refused before it ran (by the item policy, a limit, or the origin
/// check), carrying its request id when the layer sets one.
pub(crate) fn refused(
    err: &ItemError,
    request_id: Option<(&HeaderName, HeaderValue)>,
) -> Response<Bytes> {
    let mut res = not_run(err.to_response());
    if let Some((name, id)) = request_id {
        res.headers_mut().insert(name.clone(), id);
    }
    res
}

/// The answer of an item that met the whole batch response's limit of `limit` bytes: one that
/// ran but whose answer did not fit, or one that was not started for want of room.
pub(crate) fn response_full(limit: usize, ran: bool) -> Response<Bytes> {
    if ran {
        error_response(
            StatusCode::INSUFFICIENT_STORAGE,
            &format!(
                "the item ran, but its answer did not fit in the batch response's limit of \
                 {limit} bytes"
            ),
        )
    } else {
        not_run(error_response(
            StatusCode::INSUFFICIENT_STORAGE,
            &format!(
                "the batch response reached its limit of {limit} bytes before this item \
                 started, so it was not run"
            ),
        ))
    }
}

/// Whether an answer came from running the request (it is not marked as not run).
pub(crate) fn ran(res: &Response<Bytes>) -> bool {
    res.extensions().get::<NotRun>().is_none()
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

#[cfg(any(test, feature = "utoipa"))]
impl BatchError {
    /// One example of each kind of batch error, for the OpenAPI document and the tests. The
    /// match has no catch-all arm, so a new kind does not compile until it is listed here, and
    /// so in the README's table and the generated document.
    pub(crate) fn one_of_each() -> Vec<BatchError> {
        let all = vec![
            BatchError::MethodNotAllowed {
                method: "GET".to_owned(),
            },
            BatchError::UnsupportedEncoding {
                encoding: "gzip".to_owned(),
            },
            BatchError::UnsupportedMediaType {
                content_type: Some("text/plain".to_owned()),
                accepted: vec!["multipart/mixed".to_owned()],
            },
            BatchError::MissingBoundary,
            BatchError::InvalidBoundary {
                reason: "longer than 70 characters",
            },
            BatchError::Framing {
                reason: "no closing boundary".to_owned(),
            },
            BatchError::Malformed {
                reason: "not valid JSON".to_owned(),
            },
            BatchError::Empty,
            BatchError::TooManyItems {
                count: 1001,
                limit: 1000,
            },
            BatchError::BodyTooLarge { limit: 16 << 20 },
            BatchError::BodyOverOuterLimit,
            BatchError::PartTooLarge {
                index: 0,
                limit: 2 << 20,
            },
            BatchError::ReadTimeout {
                timeout: Duration::from_secs(30),
            },
            BatchError::BodyRead {
                reason: "connection reset".to_owned(),
            },
            BatchError::DuplicateId { id: "a".to_owned() },
            BatchError::UnknownDependency {
                id: "b".to_owned(),
                depends_on: "c".to_owned(),
            },
            BatchError::DependencyCycle {
                cycle: vec!["a".to_owned(), "b".to_owned(), "a".to_owned()],
            },
            BatchError::CostExceeded {
                cost: 200,
                limit: 100,
            },
            BatchError::TooDeep { depth: 1, limit: 0 },
            BatchError::MountedInsideRouter,
            BatchError::PathNotConfigured {
                path: "/v2/batch".to_owned(),
                configured: vec!["/batch".to_owned()],
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

    #[test]
    fn the_readme_lists_every_reason_with_its_status() {
        let readme = include_str!("../README.md");
        let table = &readme[readme
            .find("| status | `error.reason` | when |")
            .expect("table")..];
        let table = &table[..table.find("\n\n").unwrap_or(table.len())];
        for e in BatchError::one_of_each() {
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
