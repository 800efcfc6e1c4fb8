//! The path an item's policies look at: resolved against the service root, with runs of `/`
//! collapsed, and percent-decoded.
//!
//! Routers and middleware inside the layer (tower-http's `NormalizePath`, axum's own
//! percent-decoding) see `//admin` as `/admin` and `/users/%72oot` as `/users/root`. A policy
//! that compared the raw text could be walked around, so:
//! - the item's URI is rewritten once, before anything weighs or checks it: the service root is
//!   applied, and every run of `/` becomes one (`//admin` reaches the inner service as `/admin`);
//! - allow and deny prefixes, and the nesting check, compare the percent-decoded path, and a
//!   prefix covers a whole segment: `/admin` covers `/admin` and `/admin/x`, not `/administrator`;
//! - a path with an encoded `/` or `\` (`%2F`, `%5C`) is refused, since routers disagree on what
//!   it means.

use std::borrow::Cow;

use http::uri::{PathAndQuery, Uri};

use crate::error::ItemError;

/// The item's URI with the service root applied and runs of `/` collapsed; `None` when it is
/// already in that form. Scheme and authority are kept, for the origin check to see.
pub(crate) fn resolve(uri: &Uri, root: Option<&str>) -> Result<Option<Uri>, ItemError> {
    let path = uri.path();
    let under = root.is_none_or(|root| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    // A plain scan: a searcher built per item would cost more than the paths are long.
    let doubled = path.as_bytes().windows(2).any(|w| w == b"//");
    if under && !doubled {
        return Ok(None);
    }
    let mut resolved = String::with_capacity(path.len() + root.map_or(0, str::len) + 1);
    if !under {
        resolved.push_str(root.unwrap_or(""));
    }
    for c in path.chars() {
        if c == '/' && resolved.ends_with('/') {
            continue;
        }
        resolved.push(c);
    }
    if resolved.is_empty() {
        resolved.push('/');
    }
    if let Some(q) = uri.query() {
        resolved.push('?');
        resolved.push_str(q);
    }
    let unresolvable = || ItemError::bad_request("item path could not be resolved");
    let pq = PathAndQuery::try_from(resolved).map_err(|_| unresolvable())?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).map(Some).map_err(|_| unresolvable())
}

/// The path percent-decoded, for policies to compare. An encoded `/` or `\` is refused.
pub(crate) fn decoded(path: &str) -> Result<Cow<'_, str>, ItemError> {
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let b = h << 4 | l;
                if b == b'/' || b == b'\\' {
                    return Err(ItemError::bad_request(format!(
                        "item path `{path}` contains an encoded `/` or `\\`; send the path unencoded"
                    )));
                }
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    Ok(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` (decoded) is under `prefix`, segment by segment: `/admin` covers `/admin` and
/// `/admin/x`, not `/administrator`. The prefix is read as a path too (decoded, runs of `/`
/// collapsed, a trailing `/` ignored), so `/admin/` and `/admin` mean the same.
pub(crate) fn under(path: &str, prefix: &str) -> bool {
    let prefix = decoded(prefix).unwrap_or(Cow::Borrowed(prefix));
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(uri: &str, root: Option<&str>) -> String {
        let uri: Uri = uri.parse().unwrap();
        resolve(&uri, root)
            .unwrap()
            .map_or_else(|| uri.to_string(), |u| u.to_string())
    }

    #[test]
    fn resolves_and_collapses() {
        assert_eq!(resolved("//admin", None), "/admin");
        assert_eq!(resolved("/a//b///c/?x=//", None), "/a/b/c/?x=//");
        assert_eq!(resolved("/me", Some("/v1.0")), "/v1.0/me");
        assert_eq!(resolved("/v1.0//me", Some("/v1.0")), "/v1.0/me");
        assert_eq!(resolved("/v1.0", Some("/v1.0")), "/v1.0");
        assert_eq!(resolved("http://h:1//x?q", Some("/r")), "http://h:1/r/x?q");
    }

    #[test]
    fn decodes_for_policies() {
        assert_eq!(decoded("/users/%72oot").unwrap(), "/users/root");
        assert_eq!(decoded("/a%20b").unwrap(), "/a b");
        assert_eq!(decoded("/bad%zz%4").unwrap(), "/bad%zz%4");
        assert!(decoded("/users%2Froot").is_err());
        assert!(decoded("/users%5croot").is_err());
    }

    #[test]
    fn prefixes_cover_whole_segments() {
        assert!(under("/admin", "/admin"));
        assert!(under("/admin/x", "/admin"));
        assert!(under("/admin/x", "/admin/"));
        assert!(!under("/administrator", "/admin"));
        assert!(under("/anything", "/"));
        assert!(under("/users/root", "/users/%72oot"));
    }
}
