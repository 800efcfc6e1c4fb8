//! The batch endpoints in an app's OpenAPI document, through [utoipa](https://docs.rs/utoipa).
//!
//! [`BatchPaths`] describes every batch route of a [`BatchLayer`]: the path, the content types
//! it reads and answers in, its limits, and each reason it may refuse a whole batch with its
//! status. It implements [`utoipa::Modify`], so it adds those paths to the document an app
//! already builds with `#[derive(OpenApi)]`, and Swagger UI shows them beside the app's own
//! routes.
//!
//! # Example
//!
//! ```
//! use http_batch::openapi::BatchPaths;
//! use http_batch::BatchLayer;
//! use utoipa::openapi::{InfoBuilder, OpenApiBuilder};
//! use utoipa::Modify;
//!
//! let layer = BatchLayer::new().paths(["/batch", "/batch/{api}/{version}"]).max_items(100);
//!
//! // The app's own document, from `#[derive(OpenApi)]` or built by hand.
//! let mut doc = OpenApiBuilder::new()
//!     .info(InfoBuilder::new().title("farm").version("1").build())
//!     .build();
//! BatchPaths::new(&layer).modify(&mut doc);
//!
//! let post = doc.paths.get_path_operation("/batch", utoipa::openapi::HttpMethod::Post);
//! assert!(post.is_some());
//! ```
//!
//! Build the layer once and use it for both: `BatchPaths::new(&layer)` for the document and
//! `layer.wrap_router(api)` for the app, so that the document describes what is served.
//!
//! What the document cannot say: a route chosen by a test on the request
//! ([`BatchRoute::and_when`](crate::BatchRoute::and_when), Azure Storage's `?comp=batch`) is
//! described at its path only when the app has no `POST` there of its own, with the test named in
//! words; a layer made with [`BatchLayer::any_path`] has no paths to describe.

use std::fmt::Write as _;
use std::time::Duration;

use http::StatusCode;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{
    Content, HttpMethod, KnownFormat, OpenApi, Required, ResponseBuilder, Schema,
};

use crate::config::{Config, Route};
use crate::error::BatchError;
use crate::layer::BatchLayer;

/// The batch routes of a [`BatchLayer`], as OpenAPI path items.
///
/// See the [module docs](crate::openapi) for an example.
#[derive(Clone)]
#[must_use]
pub struct BatchPaths {
    paths: Vec<BatchPath>,
    tag: String,
}

#[derive(Clone)]
struct BatchPath {
    path: String,
    item: PathItem,
}

// utoipa's types implement `Debug` only with its `debug` feature: show the paths and the tag.
impl std::fmt::Debug for BatchPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchPaths")
            .field("paths", &self.paths().collect::<Vec<_>>())
            .field("tag", &self.tag)
            .finish()
    }
}

impl BatchPaths {
    /// Describes every batch route of `layer`, under the tag `batch`.
    pub fn new(layer: &BatchLayer) -> Self {
        BatchPaths::from_config(&layer.config, "batch")
    }

    /// Files the batch operations under `tag` instead of `batch`.
    pub fn tag(self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        let paths = self
            .paths
            .into_iter()
            .map(|mut p| {
                if let Some(op) = p.item.post.as_mut() {
                    op.tags = Some(vec![tag.clone()]);
                }
                p
            })
            .collect();
        BatchPaths { paths, tag }
    }

    /// The paths described, in the layer's order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(|p| p.path.as_str())
    }

    fn from_config(config: &Config, tag: &str) -> Self {
        let paths = if config.any_path {
            Vec::new()
        } else {
            config
                .routes
                .iter()
                .filter_map(|route| {
                    let path = route.pattern.as_ref()?.raw.clone();
                    let item =
                        PathItem::new(HttpMethod::Post, operation(config, route, &path, tag));
                    Some(BatchPath { path, item })
                })
                .collect()
        };
        BatchPaths {
            paths,
            tag: tag.to_owned(),
        }
    }
}

impl utoipa::Modify for BatchPaths {
    fn modify(&self, openapi: &mut OpenApi) {
        for p in &self.paths {
            match openapi.paths.paths.get_mut(&p.path) {
                None => {
                    openapi.paths.paths.insert(p.path.clone(), p.item.clone());
                }
                // The app's own POST at this path is the one most requests get; a route chosen by
                // a test on the request does not replace it in the document either.
                Some(existing) if existing.post.is_some() => {}
                Some(existing) => existing.post.clone_from(&p.item.post),
            }
        }
        let tags = openapi.tags.get_or_insert_with(Vec::new);
        if !self.paths.is_empty() && !tags.iter().any(|t| t.name == self.tag) {
            let mut tag = utoipa::openapi::tag::Tag::new(self.tag.clone());
            tag.description = Some(
                "Batch requests: many API calls in one HTTP request, each run through this \
                 API's own routes, answered in one response in request order"
                    .to_owned(),
            );
            tags.push(tag);
        }
    }
}

/// The `POST` operation of one route.
fn operation(
    config: &Config,
    route: &Route,
    path: &str,
    tag: &str,
) -> utoipa::openapi::path::Operation {
    let formats = route.formats.as_ref().unwrap_or(&config.formats);
    let content_types: Vec<String> = formats.iter().flat_map(|f| f.content_types()).collect();

    let mut body = RequestBodyBuilder::new()
        .description(Some(
            "The batch: one nested HTTP request per item (`application/http` parts of a \
             `multipart/mixed` body, or the `requests` of a JSON batch)",
        ))
        .required(Some(Required::True));
    for ct in &content_types {
        body = body.content(ct.clone(), Content::new(Some(request_schema(ct))));
    }

    let ok_status = route.dialect.get_batch_status();
    let mut ok = ResponseBuilder::new().description(format!(
        "The batch was read and its items ran: one answer per item, in request order, each \
         with its own status ({} rules). The answer streams as items finish.",
        route.dialect.name()
    ));
    for ct in &content_types {
        ok = ok.content(ct.clone(), Content::new(Some(response_schema(ct))));
    }

    let mut op = OperationBuilder::new()
        .tag(tag)
        .summary(Some(format!(
            "Run a batch of API calls ({})",
            route.dialect.name()
        )))
        .description(Some(description(config, route, &content_types)))
        .operation_id(Some(operation_id(path)))
        .request_body(Some(body.build()))
        .response(ok_status.as_u16().to_string(), ok.build())
        .extensions(Some(
            ExtensionsBuilder::new()
                .add("x-batch-limits", limits_json(config))
                .build(),
        ));
    for name in path_params(path) {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    for (status, reasons) in refusals() {
        op = op.response(
            status.as_u16().to_string(),
            refusal_response(status, &reasons),
        );
    }
    op.build()
}

/// The schema of a request body of content type `ct`.
fn request_schema(ct: &str) -> Schema {
    if ct.ends_with("json") {
        let request = ObjectBuilder::new()
            .property("id", ObjectBuilder::new().schema_type(Type::String))
            .property("method", ObjectBuilder::new().schema_type(Type::String))
            .property("url", ObjectBuilder::new().schema_type(Type::String))
            .property("headers", ObjectBuilder::new().schema_type(Type::Object))
            .property("body", Schema::default())
            .property(
                "dependsOn",
                ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)),
            )
            .property(
                "atomicityGroup",
                ObjectBuilder::new().schema_type(Type::String),
            )
            .required("id")
            .required("method")
            .required("url");
        ObjectBuilder::new()
            .property("requests", ArrayBuilder::new().items(request))
            .required("requests")
            .into()
    } else {
        binary(&format!(
            "`{ct}; boundary=...`, each part `Content-Type: application/http` holding one \
             HTTP/1.1 request; `Content-ID` names an item"
        ))
    }
}

/// The schema of an answer of content type `ct`.
fn response_schema(ct: &str) -> Schema {
    if ct.ends_with("json") {
        let response = ObjectBuilder::new()
            .property("id", ObjectBuilder::new().schema_type(Type::String))
            .property("status", ObjectBuilder::new().schema_type(Type::Integer))
            .property("headers", ObjectBuilder::new().schema_type(Type::Object))
            .property("body", Schema::default())
            .required("id")
            .required("status");
        ObjectBuilder::new()
            .property("responses", ArrayBuilder::new().items(response))
            .required("responses")
            .into()
    } else {
        binary(&format!(
            "`{ct}; boundary=...`, one `application/http` part per item, in request order"
        ))
    }
}

fn binary(description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .description(Some(description))
        .into()
}

/// The answer to a batch refused as a whole with `status`, for any of `reasons`.
fn refusal_response(
    status: StatusCode,
    reasons: &[(&'static str, String)],
) -> utoipa::openapi::Response {
    let mut text = String::from(
        "The batch was refused as a whole, and no item ran. The JSON body's `error.reason` says \
         why, `error.message` in words:",
    );
    for (reason, message) in reasons {
        let _ = write!(text, "\n- `{reason}`: {message}");
    }
    let error = ObjectBuilder::new()
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .enum_values(Some([status.as_u16()])),
        )
        .property("status", ObjectBuilder::new().schema_type(Type::String))
        .property(
            "reason",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(reasons.iter().map(|(r, _)| *r))),
        )
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .property(
            "limit",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("The limit that was hit, where one was")),
        )
        .required("code")
        .required("reason")
        .required("message");
    let schema = ObjectBuilder::new()
        .property("error", error)
        .required("error");
    ResponseBuilder::new()
        .description(text)
        .content("application/json", Content::new(Some(Schema::from(schema))))
        .build()
}

/// Every reason a whole batch is refused, grouped by status, each with an example message.
fn refusals() -> Vec<(StatusCode, Vec<(&'static str, String)>)> {
    let mut groups: Vec<(StatusCode, Vec<(&'static str, String)>)> = Vec::new();
    for e in BatchError::one_of_each() {
        let entry = (e.kind(), e.to_string());
        match groups.iter_mut().find(|(s, _)| *s == e.status()) {
            Some((_, reasons)) => {
                if !reasons.iter().any(|(k, _)| *k == entry.0) {
                    reasons.push(entry);
                }
            }
            None => groups.push((e.status(), vec![entry])),
        }
    }
    groups.sort_by_key(|(s, _)| s.as_u16());
    groups
}

/// The operation's description: what it does, its limits in words, and what it cannot say.
fn description(config: &Config, route: &Route, content_types: &[String]) -> String {
    let l = &config.limits;
    let mut text = format!(
        "One request that carries many calls to this API. Each item is an ordinary HTTP request \
         that runs through the API's own routes, auth and limits; the answers come back in one \
         response, in request order. Dialect: {}. Accepted content types: {}.\n\n\
         Limits: at most {} items, a body of at most {} bytes (each part at most {}, each part's \
         head at most {} headers and {} bytes), sent within {} s; each item's answer at most {} \
         bytes and the whole answer at most {} bytes; {} items run at once.",
        route.dialect.name(),
        content_types.join(", "),
        l.max_items,
        l.max_body_bytes,
        l.max_part_bytes,
        l.max_headers,
        l.max_header_bytes,
        l.read_timeout.as_secs(),
        l.max_item_response_bytes,
        l.max_response_bytes,
        config.concurrency,
    );
    if let Some(t) = config.batch_timeout {
        let _ = write!(text, " The whole batch has {} s.", t.as_secs());
    }
    if let Some(t) = config.item_timeout {
        let _ = write!(text, " Each item has {} s.", t.as_secs());
    }
    text.push_str(
        "\n\nA malformed item is answered on its own (its status inside the batch), and the \
         others still run; only a malformed envelope or a limit refuses the whole batch.",
    );
    if route.when.is_some() {
        text.push_str(
            "\n\nThis route takes only the batch requests that pass its own test on the request \
             (a query parameter such as `comp=batch`, say); other requests to this path reach \
             the app's own routes.",
        );
    }
    text
}

/// The limits as numbers, for tools that read the document.
fn limits_json(config: &Config) -> serde_json::Value {
    let l = &config.limits;
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    serde_json::json!({
        "maxItems": l.max_items,
        "maxBodyBytes": l.max_body_bytes,
        "maxPartBytes": l.max_part_bytes,
        "maxHeaders": l.max_headers,
        "maxHeaderBytes": l.max_header_bytes,
        "maxItemResponseBytes": l.max_item_response_bytes,
        "maxResponseBytes": l.max_response_bytes,
        "readTimeoutSeconds": l.read_timeout.as_secs_f64(),
        "concurrency": config.concurrency,
        "batchTimeoutSeconds": secs(config.batch_timeout),
        "itemTimeoutSeconds": secs(config.item_timeout),
    })
}

/// `batch` followed by the path's words: `/batch/{api}/{version}` gives `batch_api_version`.
fn operation_id(path: &str) -> String {
    let mut id = String::from("batch");
    for word in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        let leading_batch = id == "batch" && word == "batch";
        if !word.is_empty() && !leading_batch {
            id.push('_');
            id.push_str(word);
        }
    }
    id
}

/// The names of a path pattern's `{parameters}`.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_the_paths_words() {
        assert_eq!(operation_id("/batch"), "batch");
        assert_eq!(operation_id("/batch/{api}/{version}"), "batch_api_version");
        assert_eq!(operation_id("/odata/v4/$batch"), "batch_odata_v4_batch");
    }

    #[test]
    fn every_refusal_is_a_client_or_server_error() {
        for (status, reasons) in refusals() {
            assert!(status.is_client_error() || status.is_server_error());
            assert!(!reasons.is_empty());
        }
    }
}
