//! What an item may be: the checks of one request against the layer's item policy.
//!
//! Every check looks at the path the inner service will see (resolved against the service
//! root, percent-decoded), so that a prefix rule cannot be walked around with `..` or `%2F`.
//! The checks are pure: they read the request and refuse it, or let it pass unchanged.

use std::borrow::Cow;

use bytes::Bytes;
use http::header;
use http::{Method, Request, StatusCode};

use crate::config::{AuthPolicy, Config, ItemPolicy};
use crate::error::ItemError;
use crate::path;

/// What the policy asks of an item's own headers, found by the one scan of them that
/// inheritance makes anyway.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Claims {
    /// `Upgrade` or `Sec-WebSocket-Key`: a protocol switch.
    pub(crate) upgrade: bool,
    /// The item carries its own `Authorization`.
    pub(crate) authorization: bool,
    /// The item carries a `Content-Type`.
    pub(crate) content_type: bool,
}

/// Where the item stands: how deep its batch is nested, and the route's path rules.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scope {
    /// How many batches enclose the item's batch.
    pub(crate) depth: usize,
    /// Whether items may name `%2F` inside a segment.
    pub(crate) encoded_slashes: bool,
}

/// Checks one item, its target already resolved to the path the inner service will see.
pub(crate) fn check(
    req: &Request<Bytes>,
    claims: Claims,
    scope: Scope,
    config: &Config,
) -> Result<(), ItemError> {
    let method = req.method();
    if method == Method::CONNECT {
        return Err(ItemError::bad_request("CONNECT requests cannot be batched"));
    }
    if claims.upgrade {
        return Err(ItemError::bad_request(
            "protocol upgrades (WebSocket and others) cannot be batched",
        ));
    }
    let path = decoded_path(req, scope.encoded_slashes)?;
    let path = path.as_ref();
    config.policy.allows(method, path)?;
    if config.is_batch_path(path) && scope.depth >= config.max_nesting {
        return Err(ItemError::bad_request(
            "an item may not itself be a batch request (nested batches are off)",
        ));
    }
    if !config.policy.allow_form_data && claims.content_type && is_form_data(req) {
        return Err(ItemError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "multipart/form-data uploads cannot be batched; upload the file in its own request",
        ));
    }
    if config.auth == AuthPolicy::OuterOnly && claims.authorization {
        return Err(ItemError::bad_request(
            "items may not carry their own Authorization header; authenticate the batch request",
        ));
    }
    Ok(())
}

impl ItemPolicy {
    /// Whether `method` on `path` (decoded) may be batched: the method lists, then the prefix
    /// lists; a deny wins over an allow.
    fn allows(&self, method: &Method, path: &str) -> Result<(), ItemError> {
        if self.deny_methods.contains(method)
            || self
                .allow_methods
                .as_ref()
                .is_some_and(|allow| !allow.contains(method))
        {
            return Err(forbidden(format!(
                "{method} requests may not be batched here"
            )));
        }
        if self.deny_prefixes.iter().any(|p| path::under(path, p))
            || self
                .allow_prefixes
                .as_ref()
                .is_some_and(|allow| !allow.iter().any(|p| path::under(path, p)))
        {
            return Err(forbidden(format!(
                "`{path}` may not be called inside a batch"
            )));
        }
        Ok(())
    }
}

fn forbidden(message: String) -> ItemError {
    ItemError::new(StatusCode::FORBIDDEN, message)
}

/// The decoded path, as the inner service's router reads it; refused when it holds `.` or `..`
/// segments, written plainly or percent-encoded.
fn decoded_path(req: &Request<Bytes>, encoded_slashes: bool) -> Result<Cow<'_, str>, ItemError> {
    let raw = req.uri().path();
    let decoded = path::decode(raw, encoded_slashes)?;
    let encoded = matches!(decoded, Cow::Owned(_));
    if has_dot_segment(&decoded) || (encoded && has_dot_segment(raw)) {
        return Err(ItemError::bad_request(format!(
            "item path `{decoded}` contains `.` or `..` segments; send the resolved path"
        )));
    }
    Ok(decoded)
}

fn is_form_data(req: &Request<Bytes>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..19)
                .is_some_and(|t| t.eq_ignore_ascii_case("multipart/form-data"))
        })
}

/// Whether a path has a `.` or `..` segment, written plainly or percent-encoded. Such paths are
/// refused so that prefix policies cannot be walked around (`/public/../admin`).
fn has_dot_segment(path: &str) -> bool {
    // Most paths have neither `.` nor `%`: one scan and done.
    if !path.bytes().any(|c| c == b'.' || c == b'%') {
        return false;
    }
    path.split('/').any(|seg| {
        let mut rest = seg.as_bytes();
        let mut dots = 0;
        while !rest.is_empty() {
            if rest[0] == b'.' {
                rest = &rest[1..];
            } else if rest.len() >= 3
                && rest[0] == b'%'
                && rest[1] == b'2'
                && (rest[2] | 0x20) == b'e'
            {
                rest = &rest[3..];
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments() {
        assert!(has_dot_segment("/a/../b"));
        assert!(has_dot_segment("/a/%2E%2e/b"));
        assert!(has_dot_segment("/a/."));
        assert!(!has_dot_segment("/a/..b/c.d"));
    }

    #[test]
    fn a_deny_wins_over_an_allow() {
        let policy = ItemPolicy {
            allow_methods: Some(vec![Method::GET, Method::DELETE]),
            deny_methods: vec![Method::DELETE],
            allow_prefixes: Some(vec!["/api".into()]),
            deny_prefixes: vec!["/api/admin".into()],
            allow_form_data: false,
        };
        assert!(policy.allows(&Method::GET, "/api/users").is_ok());
        assert_eq!(
            policy
                .allows(&Method::DELETE, "/api/users")
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            policy
                .allows(&Method::POST, "/api/users")
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            policy
                .allows(&Method::GET, "/api/admin/x")
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            policy.allows(&Method::GET, "/other").unwrap_err().status(),
            403
        );
    }
}
