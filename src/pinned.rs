//! Pinned headers: headers that describe the connection, not the call, so items always get them
//! from the outer request and may not set them themselves.
//!
//! A front proxy sets `X-Forwarded-For`, `X-Real-IP` or `Forwarded` (and strips what the client
//! sent) on the outer request. An item that carried its own could make a rate limit or an audit
//! log inside the layer count someone else, so an item's own value is dropped and the outer
//! request's (if any) takes its place.

use http::HeaderName;

/// The set of pinned header names: exact names, and prefixes written with a trailing `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pinned {
    names: Vec<String>,
    prefixes: Vec<String>,
}

impl Default for Pinned {
    fn default() -> Self {
        Pinned::new(["forwarded", "x-forwarded-*", "x-real-ip"])
    }
}

impl Pinned {
    /// Names are compared without regard to case; `x-forwarded-*` covers every name that starts
    /// with `x-forwarded-`.
    pub(crate) fn new<I, P>(names: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        let mut pinned = Pinned {
            names: Vec::new(),
            prefixes: Vec::new(),
        };
        for name in names {
            let name = name.into().trim().to_ascii_lowercase();
            match name.strip_suffix('*') {
                Some(prefix) => pinned.prefixes.push(prefix.to_owned()),
                None => pinned.names.push(name),
            }
        }
        pinned
    }

    /// Whether an item may not set `name`; `outer_only` adds `Cookie` and `Proxy-Authorization`,
    /// the credentials an item may not bring when only the batch authenticates.
    pub(crate) fn covers(&self, name: &HeaderName, outer_only: bool) -> bool {
        let n = name.as_str();
        (outer_only && (n == "cookie" || n == "proxy-authorization"))
            || self.names.iter().any(|p| p == n)
            || self.prefixes.iter().any(|p| n.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_prefixes() {
        let pinned = Pinned::default();
        let name = |s: &'static str| HeaderName::from_static(s);
        assert!(pinned.covers(&name("x-forwarded-user"), false));
        assert!(pinned.covers(&name("x-real-ip"), false));
        assert!(pinned.covers(&name("forwarded"), false));
        assert!(!pinned.covers(&name("cookie"), false));
        assert!(pinned.covers(&name("cookie"), true));
        assert!(!pinned.covers(&name("x-forward"), false));
        assert!(Pinned::new(["X-Tenant"]).covers(&name("x-tenant"), false));
    }
}
