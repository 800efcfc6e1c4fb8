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
//!   it means, unless the route opts in ([`BatchRoute::encoded_slashes`](crate::BatchRoute)):
//!   then the inner service receives `%2F` unchanged, while policies read it as `/`, so a deny
//!   list cannot be walked around with it.
//!
//! The batch URL's base is the service root as clients see it: for a batch posted to
//! `{base}/$batch`, an item named `http://host{base}/x` or `{base}/x` names the same resource as
//! `x`, and runs under the route's internal root where one is set. OData clients (o.js, the
//! Azure Tables SDKs, `odata-batch`) and Microsoft Graph's SDKs write item URLs that way; OData
//! allows all three forms (OData 4.01 Part 1, 11.7.2 "Referencing ... in a batch": absolute URI,
//! absolute path, or relative to the batch request URL's base).

use std::borrow::Cow;

use http::uri::{PathAndQuery, Uri};

use crate::error::ItemError;

/// The base of a batch URL as clients see it: the path before a last segment `$batch` (written
/// plainly or as `%24batch`). `None` for any other batch path, and for `/$batch`, whose base is
/// the origin's root and so changes nothing.
pub(crate) fn base_of(batch_path: &str) -> Option<&str> {
    let (base, last) = batch_path.rsplit_once('/')?;
    let batch = last == "$batch" || last.eq_ignore_ascii_case("%24batch");
    let base = base.trim_end_matches('/');
    (batch && !base.is_empty()).then_some(base)
}

fn starts_with_segments(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The item's URI with the service root applied and runs of `/` collapsed; `None` when it is
/// already in that form. Scheme and authority are kept, for the origin check to see.
///
/// `base` is the batch URL's base ([`base_of`]): a path under it that is not already under
/// `root` is mapped onto `root`. Without a root, the base is where the app serves its resources,
/// and such a path is left as it is.
pub(crate) fn resolve(
    uri: &Uri,
    base: Option<&str>,
    root: Option<&str>,
) -> Result<Option<Uri>, ItemError> {
    let mut path = uri.path();
    let under = root.is_none_or(|root| starts_with_segments(path, root));
    if !under {
        if let Some(rest) = base
            .filter(|base| starts_with_segments(path, base))
            .map(|base| &path[base.len()..])
        {
            path = rest;
        }
    }
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
    decode(path, false)
}

/// The path percent-decoded, for policies to compare; an encoded `/` or `\` is refused unless
/// `slashes` is set. Then either is read as `/`, and a run of them as one, so that a policy sees
/// `/admin%2Fx`, `/admin%5Cx` and `/admin%2F%2Fx` as `/admin/x`: stricter than any router that
/// keeps them inside one segment, never looser than one that splits on them.
pub(crate) fn decode(path: &str, slashes: bool) -> Result<Cow<'_, str>, ItemError> {
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
                    if !slashes {
                        return Err(ItemError::bad_request(format!(
                            "item path `{path}` contains an encoded `/` or `\\`; send the path \
                             unencoded (a route that serves names with `/` in them can accept \
                             it with `BatchRoute::encoded_slashes`)"
                        )));
                    }
                    if out.last() != Some(&b'/') {
                        out.push(b'/');
                    }
                    i += 3;
                    continue;
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
        based(uri, None, root)
    }

    fn based(uri: &str, base: Option<&str>, root: Option<&str>) -> String {
        let uri: Uri = uri.parse().unwrap();
        resolve(&uri, base, root)
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
    fn the_batch_base_is_the_service_root_clients_see() {
        assert_eq!(
            base_of("/odata/v4/farm/v1/$batch"),
            Some("/odata/v4/farm/v1")
        );
        assert_eq!(base_of("/v1.0/%24batch"), Some("/v1.0"));
        assert_eq!(base_of("/$batch"), None);
        assert_eq!(base_of("/batch"), None);
        let (base, root) = (Some("/odata/v4/farm/v1"), Some("/farm/v1"));
        for item in [
            "/odata/v4/farm/v1/animals/pony",
            "/animals/pony",
            "/farm/v1/animals/pony",
        ] {
            assert_eq!(based(item, base, root), "/farm/v1/animals/pony", "{item}");
        }
        assert_eq!(
            based("http://h:1/odata/v4/farm/v1/animals?x=1", base, root),
            "http://h:1/farm/v1/animals?x=1"
        );
        assert_eq!(based("/odata/v4/farm/v1", base, root), "/farm/v1");
        // A segment that only starts like the base is outside it.
        assert_eq!(
            based("/odata/v4/farm/v1x/a", base, root),
            "/farm/v1/odata/v4/farm/v1x/a"
        );
        // Without an internal root the base is where the app serves, and nothing moves.
        assert_eq!(
            based("/odata/v4/farm/v1/animals", base, None),
            "/odata/v4/farm/v1/animals"
        );
        // Graph: `/v1.0/me` next to `/v1.0/$batch`, and `/me`, are the same resource.
        assert_eq!(based("/v1.0/me", Some("/v1.0"), Some("/v1.0")), "/v1.0/me");
        assert_eq!(based("/me", Some("/v1.0"), Some("/v1.0")), "/v1.0/me");
    }

    #[test]
    fn encoded_slashes_by_choice() {
        assert_eq!(decode("/o/dir%2Fname", true).unwrap(), "/o/dir/name");
        assert_eq!(decode("/admin%2fx", true).unwrap(), "/admin/x");
        assert_eq!(decode("/admin%5Cx", true).unwrap(), "/admin/x");
        assert_eq!(decode("/admin%2F%2F%5cx", true).unwrap(), "/admin/x");
        assert_eq!(decode("/admin/%2Fx", true).unwrap(), "/admin/x");
        assert!(decode("/o/dir%2Fname", false).is_err());
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
