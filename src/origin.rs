//! The origin a batch arrived for, and the check that keeps every item on it.
//!
//! An item runs under the batch's own origin. An absolute-form target (`https://host/path`)
//! must name that origin: the batch's own `Host` (or the authority of an absolute request
//! line), a public origin the layer was given, or the host a trusted proxy forwarded
//! (`Forwarded: host=`, `X-Forwarded-Host`). A missing port is the scheme's default port.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::Request;

use crate::error::ItemError;

/// Which origin a batch arrived for, computed once per batch.
#[derive(Debug, Default)]
pub(crate) struct Origin {
    /// The batch's own authority: an absolute-form request line's (or HTTP/2's `:authority`),
    /// else its `Host`.
    host: Option<String>,
    /// `host` as a header value, made once per batch instead of once per item.
    host_value: Option<HeaderValue>,
    /// The scheme the batch arrived with, when known (an absolute request URI, or a trusted
    /// `X-Forwarded-Proto` / `Forwarded: proto=`).
    scheme: Option<String>,
    /// The public host a trusted proxy says the client asked for, when the layer trusts it.
    forwarded_host: Option<String>,
}

impl Origin {
    /// The origin of the outer request; forwarded headers count only when `trust_forwarded`.
    pub(crate) fn of(parts: &Parts, trust_forwarded: bool) -> Origin {
        // An absolute-form request line's authority wins over `Host` (RFC 9112, 3.2.2); over
        // HTTP/2 it is the `:authority`.
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        let host_value = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok());
        let (forwarded_host, forwarded_proto) = if trust_forwarded {
            forwarded(&parts.headers)
        } else {
            (None, None)
        };
        let scheme = parts
            .uri
            .scheme_str()
            .map(str::to_owned)
            .or(forwarded_proto);
        Origin {
            host,
            host_value,
            scheme,
            forwarded_host,
        }
    }

    /// The `Host` every item runs under: the batch's own.
    pub(crate) fn host_value(&self) -> Option<&HeaderValue> {
        self.host_value.as_ref()
    }

    /// Keeps an item on this origin: an absolute target that names it becomes origin-form
    /// (`/path?query`); one that names another origin is refused.
    pub(crate) fn localize(
        &self,
        req: &mut Request<Bytes>,
        public_origins: &[String],
    ) -> Result<(), ItemError> {
        let Some(authority) = req.uri().authority() else {
            return Ok(());
        };
        if !self.names(req.uri().scheme_str(), authority.as_str(), public_origins) {
            return Err(self.other_origin(req.uri()));
        }
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
        Ok(())
    }

    /// Whether an absolute item target (`scheme://authority/...`) names this origin. The
    /// batch's own `Host` without a port takes the default of the batch's scheme when known,
    /// else of the item's.
    fn names(&self, scheme: Option<&str>, authority: &str, public_origins: &[String]) -> bool {
        let (host, port) = host_port(authority, scheme);
        let same = |other: &str, other_scheme: Option<&str>| {
            let (h, p) = host_port(other, other_scheme.or(scheme));
            h.eq_ignore_ascii_case(host) && p == port
        };
        let ours = self.scheme.as_deref();
        self.host.as_deref().is_some_and(|h| same(h, ours))
            || self
                .forwarded_host
                .as_deref()
                .is_some_and(|h| same(h, ours))
            || public_origins.iter().any(|origin| {
                let (s, a) = origin
                    .split_once("://")
                    .map_or((None, origin.as_str()), |(s, a)| (Some(s), a));
                s.is_none_or(|s| scheme.is_none_or(|item| item.eq_ignore_ascii_case(s)))
                    && same(a, s)
            })
    }

    /// The refusal of an absolute target on another origin. Where only the port differs from
    /// the batch's own (a proxy that sets `Host` without the port, say), it says so.
    fn other_origin(&self, uri: &Uri) -> ItemError {
        let scheme = uri.scheme_str();
        let (host, port) = host_port(uri.authority().map_or("", |a| a.as_str()), scheme);
        let ours = self
            .host
            .as_deref()
            .map(|h| host_port(h, self.scheme.as_deref().or(scheme)));
        let port_name = |p: Option<u16>| p.map_or_else(|| "none".to_owned(), |p| p.to_string());
        let detail = match ours {
            Some((h, p)) if h.eq_ignore_ascii_case(host) && p != port => format!(
                " (port {}, while this batch came to port {}; a missing port is the scheme's \
                 default)",
                port_name(port),
                port_name(p)
            ),
            _ => String::new(),
        };
        ItemError::bad_request(format!(
            "item target `{uri}` names another host{detail}; batch items must stay on this origin"
        ))
    }
}

/// Host and port of an authority, the port defaulting to the scheme's (80 for `http`, 443 for
/// `https`); `None` as the port when neither says.
fn host_port<'a>(authority: &'a str, scheme: Option<&str>) -> (&'a str, Option<u16>) {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.rsplit_once(':') {
        // `[::1]:8080` or `host:8080`; a bare IPv6 address has colons but no closing bracket.
        Some((h, p)) if (h.ends_with(']') || !h.contains(':')) && !p.is_empty() => {
            (h, p.parse::<u16>().ok())
        }
        _ => (authority, None),
    };
    let default = match scheme.map(str::to_ascii_lowercase).as_deref() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    };
    (host, port.or(default))
}

/// The host and scheme a proxy forwarded: `Forwarded: host=...;proto=...` (RFC 7239), else
/// `X-Forwarded-Host` and `X-Forwarded-Proto`. Each takes its last element: the one the proxy
/// nearest to this server added, since a client may send values of its own ahead of it.
fn forwarded(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let last = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut host = None;
    let mut proto = None;
    if let Some(element) = last("forwarded") {
        for pair in element.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "host" => host = Some(v),
                "proto" => proto = Some(v),
                _ => {}
            }
        }
    }
    (
        host.or_else(|| last("x-forwarded-host")),
        proto.or_else(|| last("x-forwarded-proto")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_comparison() {
        let http = Some("http");
        let https = Some("https");
        assert_eq!(host_port("Example.com", http), ("Example.com", Some(80)));
        assert_eq!(host_port("example.com", https), ("example.com", Some(443)));
        assert_eq!(
            host_port("example.com:8080", https),
            ("example.com", Some(8080))
        );
        assert_eq!(host_port("[::1]:3000", None), ("[::1]", Some(3000)));
        assert_eq!(host_port("[::1]", http), ("[::1]", Some(80)));
        assert_eq!(host_port("user@host:1", None), ("host", Some(1)));
        // A missing port is the scheme's default, not any port.
        assert_ne!(
            host_port("example.com", http),
            host_port("example.com:81", http)
        );
    }
}
