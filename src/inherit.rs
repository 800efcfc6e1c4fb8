//! What an item receives from the outer request, and the checks that keep an item on this
//! origin and inside the layer's policy.

use std::collections::HashSet;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, StatusCode};

use crate::config::{AuthPolicy, Config};
use crate::context::BatchContext;
use crate::error::ItemError;
use crate::path;
use crate::pinned::Pinned;
use crate::transaction::Transaction;

/// Everything about the outer request that items inherit, computed once per batch.
#[derive(Debug)]
pub(crate) struct Outer {
    /// Outer headers that items may inherit (no `Content-*`, no hop-by-hop, no `Host`, no
    /// `Expect`, no `Accept-Encoding`).
    pub(crate) headers: HeaderMap,
    pub(crate) host: Option<String>,
    /// `host` as a header value, made once per batch instead of once per item.
    pub(crate) host_value: Option<HeaderValue>,
    /// The scheme the batch arrived with, when known (an absolute request URI, or a trusted
    /// `X-Forwarded-Proto` / `Forwarded: proto=`).
    pub(crate) scheme: Option<String>,
    /// The public host a trusted proxy says the client asked for (`Forwarded: host=` or
    /// `X-Forwarded-Host`), when the layer trusts it.
    pub(crate) forwarded_host: Option<String>,
    pub(crate) query: Option<String>,
    pub(crate) extensions: http::Extensions,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) depth: usize,
    /// The enclosing batch's remaining cost budget, when this batch is nested in one.
    pub(crate) budget: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// The batch route's own service root, which overrides the layer's.
    pub(crate) service_root: Option<String>,
    /// The batch URL's base (`{base}/$batch`), the service root as clients see it.
    pub(crate) base: Option<String>,
    /// Whether items may name `%2F` inside a segment.
    pub(crate) encoded_slashes: bool,
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// The header names a `Connection` header lists: hop-by-hop too (RFC 9110 §7.6.1). A set, so
/// that asking about each header costs the same however long the list is.
fn connection_listed(headers: &HeaderMap) -> HashSet<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn is_hop_by_hop(name: &HeaderName, listed: &HashSet<String>) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n) || n.starts_with("proxy-") || listed.contains(n)
}

impl Outer {
    pub(crate) fn new(parts: &Parts, config: &Config) -> Self {
        let listed = connection_listed(&parts.headers);
        let mut headers = HeaderMap::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            if name.as_str().starts_with("content-")
                || name == header::HOST
                // `Expect: 100-continue` was about the batch body, which has arrived.
                || name == header::EXPECT
                // Parts are not compressed: clients read the whole batch body as text. Compress
                // the outer response instead, if at all.
                || name == header::ACCEPT_ENCODING
                || is_hop_by_hop(name, &listed)
                || config.request_id_header.as_ref() == Some(name)
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
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
        let request_id = config
            .request_id_header
            .as_ref()
            .and_then(|n| parts.headers.get(n))
            .cloned();
        let mut extensions = parts.extensions.clone();
        let depth = extensions.get::<BatchContext>().map_or(0, |c| c.depth);
        let budget = extensions
            .get::<BatchContext>()
            .and_then(|c| c.budget.clone());
        extensions.remove::<BatchContext>();
        #[cfg(feature = "axum")]
        {
            // axum's routing data describes the outer request, not the item; the router sets
            // them afresh for each item.
            extensions.remove::<axum::extract::MatchedPath>();
            extensions.remove::<axum::extract::OriginalUri>();
        }
        reserve_extensions(&mut extensions);
        let host_value = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok());
        let (forwarded_host, forwarded_proto) = if config.trust_forwarded {
            forwarded(&parts.headers)
        } else {
            (None, None)
        };
        let scheme = parts
            .uri
            .scheme_str()
            .map(str::to_owned)
            .or(forwarded_proto);
        Outer {
            headers,
            host_value,
            host,
            scheme,
            forwarded_host,
            query: parts.uri.query().map(str::to_owned),
            extensions,
            request_id,
            depth,
            budget,
            service_root: None,
            base: None,
            encoded_slashes: false,
        }
    }

    /// Takes on what the batch route says about items: its service root, the batch URL's
    /// base, whether encoded slashes pass, and which query parameters chose the route (those
    /// stay with the batch: Azure's `restype=container` would retarget every blob item to its
    /// container).
    pub(crate) fn for_route(&mut self, route: &crate::config::Route, base: Option<&str>) {
        self.service_root.clone_from(&route.service_root);
        self.base = base.map(str::to_owned);
        self.encoded_slashes = route.encoded_slashes;
        let routing = route.dialect.routing_params();
        if let (Some(query), false) = (&self.query, routing.is_empty()) {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| {
                    let name = p.split('=').next().unwrap_or(p);
                    !p.is_empty() && !routing.iter().any(|r| r.eq_ignore_ascii_case(name))
                })
                .collect();
            self.query = (!kept.is_empty()).then(|| kept.join("&"));
        }
    }
}

/// Leaves room in `extensions` for what each item's copy of it gains: its `BatchContext`, and
/// what a router adds (axum adds three: `OriginalUri`, `MatchedPath` and its path parameters).
///
/// `http::Extensions` has no way to reserve, but a clone keeps the capacity of the map it copies.
/// Growing the map once here, per batch, spares every item a rehash (an allocation, a copy and a
/// free) as the router fills it in.
fn reserve_extensions(extensions: &mut http::Extensions) {
    #[derive(Clone)]
    struct Room<const N: usize>;
    extensions.insert(Room::<0>);
    extensions.insert(Room::<1>);
    extensions.insert(Room::<2>);
    extensions.insert(Room::<3>);
    extensions.remove::<Room<0>>();
    extensions.remove::<Room<1>>();
    extensions.remove::<Room<2>>();
    extensions.remove::<Room<3>>();
}

/// `HeaderMap` holds at most 32,768 fields; its fallible methods say so instead of panicking.
fn too_many_headers() -> ItemError {
    ItemError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "the item and what it inherits from the batch carry more headers than a request can hold",
    )
}

fn forbidden(message: String) -> ItemError {
    ItemError::new(StatusCode::FORBIDDEN, message)
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

/// The refusal of an absolute target on another origin. Where only the port differs from the
/// batch's own (a proxy that sets `Host` without the port, say), it says so.
fn other_origin(uri: &http::Uri, outer: &Outer) -> ItemError {
    let scheme = uri.scheme_str();
    let (host, port) = host_port(uri.authority().map_or("", |a| a.as_str()), scheme);
    let ours = outer
        .host
        .as_deref()
        .map(|h| host_port(h, outer.scheme.as_deref().or(scheme)));
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

/// Whether an absolute item target (`scheme://authority/...`) names this origin: the batch's
/// own `Host`, a configured public origin, or the host a trusted proxy forwarded. A missing port
/// means the scheme's default port; the batch's own `Host` without a port takes the default of
/// the batch's scheme when known, else of the item's.
fn on_this_origin(scheme: Option<&str>, authority: &str, outer: &Outer, config: &Config) -> bool {
    let (host, port) = host_port(authority, scheme);
    let same = |other: &str, other_scheme: Option<&str>| {
        let (h, p) = host_port(other, other_scheme.or(scheme));
        h.eq_ignore_ascii_case(host) && p == port
    };
    outer
        .host
        .as_deref()
        .is_some_and(|h| same(h, outer.scheme.as_deref()))
        || outer
            .forwarded_host
            .as_deref()
            .is_some_and(|h| same(h, outer.scheme.as_deref()))
        || config.public_origins.iter().any(|origin| {
            let (s, a) = origin
                .split_once("://")
                .map_or((None, origin.as_str()), |(s, a)| (Some(s), a));
            s.is_none_or(|s| scheme.is_none_or(|item| item.eq_ignore_ascii_case(s))) && same(a, s)
        })
}

/// The host and scheme a proxy forwarded: `Forwarded: host=...;proto=...` (RFC 7239), else
/// `X-Forwarded-Host` and `X-Forwarded-Proto`. Each takes its last element: the one the proxy
/// nearest to this server added, since a client may send values of its own ahead of it.
fn forwarded(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut host = None;
    let mut proto = None;
    if let Some(element) = first("forwarded") {
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
        host.or_else(|| first("x-forwarded-host")),
        proto.or_else(|| first("x-forwarded-proto")),
    )
}

/// The request id an item without its own gets: the outer id, `-`, and the item's index.
pub(crate) fn derived_id(outer: &Outer, index: usize) -> Option<HeaderValue> {
    let outer_id = outer.request_id.as_ref()?;
    let mut id = Vec::with_capacity(outer_id.len() + 5);
    id.extend_from_slice(outer_id.as_bytes());
    id.push(b'-');
    id.extend_from_slice(index.to_string().as_bytes());
    HeaderValue::from_bytes(&id).ok()
}

/// The pinned headers in force, and whether the policy is `OuterOnly` (which pins more).
type Pins<'a> = (&'a Pinned, bool);

/// What `prepare` needs to know about an item's own headers, found in one pass over them.
#[derive(Default)]
struct Seen {
    hosts: usize,
    /// `Upgrade` or `Sec-WebSocket-Key`: a protocol switch.
    upgrade: bool,
    content_type: bool,
    authorization: bool,
    /// A hop-by-hop header (including `Connection`, which may list more) is present.
    hop_by_hop: bool,
    content_length: bool,
    request_id: bool,
    accept_encoding: bool,
    /// A header that only the outer request may set (see `Pinned`) is present.
    pinned: bool,
}

impl Seen {
    fn scan(headers: &HeaderMap, request_id: Option<&HeaderName>, pinned: Pins<'_>) -> Seen {
        let mut seen = Seen::default();
        // `keys` visits each name once; `Host` is the one whose number of values matters.
        for name in headers.keys() {
            if name == header::HOST {
                seen.hosts = headers.get_all(header::HOST).iter().count();
            } else if name == header::CONTENT_TYPE {
                seen.content_type = true;
            } else if name == header::CONTENT_LENGTH {
                seen.content_length = true;
            } else if name == header::ACCEPT_ENCODING {
                seen.accept_encoding = true;
            } else if name == header::AUTHORIZATION {
                seen.authorization = true;
            } else if request_id == Some(name) {
                seen.request_id = true;
            } else if name == header::UPGRADE {
                seen.upgrade = true;
                seen.hop_by_hop = true;
            } else if name.as_str() == "sec-websocket-key" {
                seen.upgrade = true;
            } else if is_hop_by_hop(name, &HashSet::new()) {
                // `Connection` among them: the names it lists are found when they are removed.
                seen.hop_by_hop = true;
            } else if pinned.0.covers(name, pinned.1) {
                seen.pinned = true;
            }
        }
        seen
    }
}

/// An item's request id: its own, or the one derived from the batch's (if any).
pub(crate) type RequestId = Option<HeaderValue>;

/// Checks one decoded item and gives it what it inherits; the result goes to the inner service.
///
/// Either way it also gives back the item's request id, for its answer to carry.
///
/// The request is changed in place: it is a few hundred bytes, and moving it in and out costs
/// more than the checks of a plain item.
pub(crate) fn prepare(
    req: &mut Request<Bytes>,
    outer: &Outer,
    config: &Config,
    ctx: BatchContext,
) -> Result<RequestId, (ItemError, RequestId)> {
    let index = ctx.index;
    match check_and_inherit(req, outer, config, ctx) {
        Ok(id) => Ok(id),
        Err(err) => {
            let own = config
                .request_id_header
                .as_ref()
                .and_then(|name| req.headers().get(name).cloned());
            Err((err, own.or_else(|| derived_id(outer, index))))
        }
    }
}

fn check_and_inherit(
    req: &mut Request<Bytes>,
    outer: &Outer,
    config: &Config,
    ctx: BatchContext,
) -> Result<RequestId, ItemError> {
    // Stay on this origin: an absolute target must name the batch's own authority, a public
    // origin the layer was given, or the host a trusted proxy forwarded.
    if let Some(authority) = req.uri().authority() {
        if !on_this_origin(req.uri().scheme_str(), authority.as_str(), outer, config) {
            return Err(other_origin(req.uri(), outer));
        }
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
    }
    // One look at the item's own headers answers every question asked of them below. Many items
    // (plain GETs) carry none at all.
    let pins: Pins<'_> = (&config.pinned, config.auth == AuthPolicy::OuterOnly);
    let mut seen = Seen::scan(req.headers(), config.request_id_header.as_ref(), pins);
    // RFC 9112 §3.2: a request with more than one Host field is answered 400.
    if seen.hosts > 1 {
        return Err(ItemError::bad_request(
            "item carries more than one Host header",
        ));
    }
    // An item's `Host` is advisory: clients write the public host into every part, while behind
    // a proxy the batch arrives for the backend. The item runs under the batch's own origin, so
    // its `Host` is replaced by the batch's (below), never trusted for routing.
    if seen.hosts == 1 {
        req.headers_mut().remove(header::HOST);
        seen.hosts = 0;
    }
    // Parts are never compressed: clients decode the whole batch body as text, so an item may
    // not ask for an encoding, whatever its own headers say.
    if seen.accept_encoding {
        req.headers_mut().remove(header::ACCEPT_ENCODING);
    }

    // The path the inner service will see: under the route's (or the layer's) service root,
    // runs of `/` collapsed.
    let root = outer
        .service_root
        .as_deref()
        .or(config.service_root.as_deref());
    if let Some(uri) = path::resolve(req.uri(), outer.base.as_deref(), root)? {
        *req.uri_mut() = uri;
    }

    let method = req.method().clone();
    if method == Method::CONNECT {
        return Err(ItemError::bad_request("CONNECT requests cannot be batched"));
    }
    if seen.upgrade {
        return Err(ItemError::bad_request(
            "protocol upgrades (WebSocket and others) cannot be batched",
        ));
    }
    // Policies compare the decoded path, as the inner service's router reads it.
    let decoded = path::decode(req.uri().path(), outer.encoded_slashes)?;
    let encoded = matches!(decoded, std::borrow::Cow::Owned(_));
    let path = decoded.as_ref();
    if has_dot_segment(path) || (encoded && has_dot_segment(req.uri().path())) {
        return Err(ItemError::bad_request(format!(
            "item path `{path}` contains `.` or `..` segments; send the resolved path"
        )));
    }
    let policy = &config.policy;
    if policy.deny_methods.contains(&method)
        || policy
            .allow_methods
            .as_ref()
            .is_some_and(|allow| !allow.contains(&method))
    {
        return Err(forbidden(format!(
            "{method} requests may not be batched here"
        )));
    }
    if policy.deny_prefixes.iter().any(|p| path::under(path, p))
        || policy
            .allow_prefixes
            .as_ref()
            .is_some_and(|allow| !allow.iter().any(|p| path::under(path, p)))
    {
        return Err(forbidden(format!(
            "`{path}` may not be called inside a batch"
        )));
    }
    if config.is_batch_path(path) && outer.depth >= config.max_nesting {
        return Err(ItemError::bad_request(
            "an item may not itself be a batch request (nested batches are off)",
        ));
    }
    if !policy.allow_form_data {
        let is_form = seen.content_type
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.trim_start()
                        .get(..19)
                        .is_some_and(|t| t.eq_ignore_ascii_case("multipart/form-data"))
                });
        if is_form {
            return Err(ItemError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "multipart/form-data uploads cannot be batched; upload the file in its own request",
            ));
        }
    }
    if config.auth == AuthPolicy::OuterOnly && seen.authorization {
        return Err(ItemError::bad_request(
            "items may not carry their own Authorization header; authenticate the batch request",
        ));
    }
    // The item's own hop-by-hop headers describe a connection it does not have; pinned headers
    // are the outer request's alone (the outer ones fill in below). Both go in one pass, found
    // by the same scan that answered everything else.
    if seen.hop_by_hop || seen.pinned {
        let listed = if seen.hop_by_hop {
            connection_listed(req.headers())
        } else {
            HashSet::new()
        };
        let gone: Vec<HeaderName> = req
            .headers()
            .keys()
            .filter(|n| is_hop_by_hop(n, &listed) || pins.0.covers(n, pins.1))
            .cloned()
            .collect();
        for name in gone {
            req.headers_mut().remove(name);
        }
        // `Connection` may have listed any header, `Host` or the request id among them.
        seen = Seen::scan(req.headers(), config.request_id_header.as_ref(), pins);
    }

    // Headers: the item's own win; the outer ones fill in (every value of a multi-valued one).
    let len = req.body().len();
    let headers = req.headers_mut();
    if headers.is_empty() {
        // Nothing to override: take the inherited headers whole (one copy of the map).
        if !outer.headers.is_empty() {
            *headers = outer.headers.clone();
        }
    } else {
        for name in outer.headers.keys() {
            if headers.contains_key(name) {
                continue;
            }
            for value in outer.headers.get_all(name) {
                headers
                    .try_append(name.clone(), value.clone())
                    .map_err(|_| too_many_headers())?;
            }
        }
    }
    if let Some(host) = &outer.host_value {
        if seen.hosts == 0 {
            headers
                .try_insert(header::HOST, host.clone())
                .map_err(|_| too_many_headers())?;
        }
    }
    if len > 0 || seen.content_length {
        headers
            .try_insert(header::CONTENT_LENGTH, HeaderValue::from(len))
            .map_err(|_| too_many_headers())?;
    }

    // Request id: the outer id plus the item index, unless the item set its own.
    let mut request_id = None;
    if let Some(name) = &config.request_id_header {
        if seen.request_id {
            request_id = headers.get(name).cloned();
        } else if let Some(id) = derived_id(outer, ctx.index) {
            headers
                .try_insert(name.clone(), id.clone())
                .map_err(|_| too_many_headers())?;
            request_id = Some(id);
        }
    }

    // Query: outer parameters apply unless the item sets the same name.
    if let Some(outer_query) = &outer.query {
        let merged = merge_query(req.uri().query(), outer_query);
        if let Some(merged) = merged {
            let path = req.uri().path();
            let pq = format!("{path}?{merged}");
            let uri = Uri::try_from(pq).map_err(|_| {
                ItemError::bad_request("item query could not be merged with the batch query")
            })?;
            *req.uri_mut() = uri;
        }
    }

    // The outer extensions, copied with room to spare (see `reserve_extensions`).
    let extensions = req.extensions_mut();
    // A change set's transaction is the one extension an item brings with it.
    let tx = extensions.remove::<Transaction>();
    *extensions = outer.extensions.clone();
    extensions.insert(ctx);
    if let Some(tx) = tx {
        extensions.insert(tx);
    }
    Ok(request_id)
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

/// The item's query with every outer parameter whose name the item does not use appended;
/// `None` when nothing is added.
fn merge_query(item: Option<&str>, outer: &str) -> Option<String> {
    let item = item.unwrap_or("");
    // A set: a scan of the item's names for each outer name is quadratic in the query length.
    let names: HashSet<&str> = item
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap_or(p))
        .collect();
    let mut merged = item.to_owned();
    let mut added = false;
    for pair in outer.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split('=').next().unwrap_or(pair);
        if names.contains(name) {
            continue;
        }
        if !merged.is_empty() {
            merged.push('&');
        }
        merged.push_str(pair);
        added = true;
    }
    added.then_some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `prepare`, taking the item and giving it back.
    fn prepared(
        mut req: Request<Bytes>,
        outer: &Outer,
        config: &Config,
        ctx: BatchContext,
    ) -> Result<(Request<Bytes>, RequestId), (ItemError, RequestId)> {
        prepare(&mut req, outer, config, ctx).map(|id| (req, id))
    }

    #[test]
    fn query_merge_item_wins() {
        assert_eq!(
            merge_query(Some("a=1"), "a=2&b=3").as_deref(),
            Some("a=1&b=3")
        );
        assert_eq!(merge_query(None, "b=3").as_deref(), Some("b=3"));
        assert_eq!(merge_query(Some("b=1"), "b=3"), None);
    }

    fn ctx() -> BatchContext {
        BatchContext {
            batch_id: "b".into(),
            index: 0,
            id: None,
            total: 1,
            depth: 1,
            store: crate::context::BatchStore::new(),
            budget: None,
        }
    }

    #[test]
    fn item_hop_by_hop_headers_are_dropped() {
        let config = Config::default();
        let (outer, _) = Request::post("/batch")
            .header("host", "api.example.com")
            .body(())
            .unwrap()
            .into_parts();
        let outer = Outer::new(&outer, &config);
        let item = Request::get("/x")
            .header("connection", "x-private, keep-alive")
            .header("x-private", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-authorization", "Basic abc")
            .header("x-kept", "yes")
            .body(Bytes::new())
            .unwrap();
        let req = prepared(item, &outer, &config, ctx()).unwrap().0;
        for gone in [
            "connection",
            "x-private",
            "keep-alive",
            "te",
            "proxy-authorization",
        ] {
            assert!(!req.headers().contains_key(gone), "{gone} reached the item");
        }
        assert_eq!(req.headers()["x-kept"], "yes");
        assert_eq!(req.headers()["host"], "api.example.com");
    }

    #[test]
    fn headers_a_connection_header_lists_are_filled_in_again_from_the_batch() {
        let config = crate::layer::BatchLayer::new()
            .request_id_header(HeaderName::from_static("x-request-id"))
            .config
            .as_ref()
            .clone();
        let (outer, _) = Request::post("/batch")
            .header("host", "api.example.com")
            .header("x-request-id", "outer")
            .header("x-tenant", "t1")
            .body(())
            .unwrap()
            .into_parts();
        let outer = Outer::new(&outer, &config);
        // The item's request id and tenant are listed as hop-by-hop, so they go, and the
        // inherited ones take their place.
        let item = Request::get("/x")
            .header("connection", "x-request-id, x-tenant")
            .header("x-request-id", "own")
            .header("x-tenant", "t2")
            .body(Bytes::new())
            .unwrap();
        let req = prepared(item, &outer, &config, ctx()).unwrap().0;
        assert_eq!(req.headers()["x-request-id"], "outer-0");
        assert_eq!(req.headers()["x-tenant"], "t1");
        // Without the `Connection` header the item's own values win.
        let item = Request::get("/x")
            .header("x-request-id", "own")
            .header("x-tenant", "t2")
            .body(Bytes::new())
            .unwrap();
        let req = prepared(item, &outer, &config, ctx()).unwrap().0;
        assert_eq!(req.headers()["x-request-id"], "own");
        assert_eq!(req.headers()["x-tenant"], "t2");
        assert_eq!(req.headers()["host"], "api.example.com");
        // An item with no headers of its own gets every inherited one.
        let item = Request::get("/x").body(Bytes::new()).unwrap();
        let req = prepared(item, &outer, &config, ctx()).unwrap().0;
        assert_eq!(req.headers()["x-tenant"], "t1");
        assert_eq!(req.headers()["x-request-id"], "outer-0");
        assert!(!req.headers().contains_key("content-length"));
    }

    #[test]
    fn dot_segment_items_are_refused() {
        let config = Config::default();
        let (outer, _) = Request::post("/batch").body(()).unwrap().into_parts();
        let outer = Outer::new(&outer, &config);
        let item = Request::get("/public/../admin").body(Bytes::new()).unwrap();
        assert_eq!(
            prepared(item, &outer, &config, ctx())
                .unwrap_err()
                .0
                .status(),
            400
        );
    }

    #[test]
    fn service_root_resolves_relative_items() {
        let config = crate::layer::BatchLayer::new()
            .service_root("v1.0/")
            .config
            .as_ref()
            .clone();
        let (outer, _) = Request::post("/v1.0/$batch").body(()).unwrap().into_parts();
        let outer = Outer::new(&outer, &config);
        let run = |target: &str| {
            let item = Request::get(target).body(Bytes::new()).unwrap();
            prepared(item, &outer, &config, ctx())
                .unwrap()
                .0
                .uri()
                .to_string()
        };
        assert_eq!(run("/me/messages?top=2"), "/v1.0/me/messages?top=2");
        assert_eq!(run("/v1.0/me"), "/v1.0/me");
        assert_eq!(run("/v1.0"), "/v1.0");
        assert_eq!(run("/v1.00/x"), "/v1.0/v1.00/x");
    }

    #[test]
    fn dot_segments() {
        assert!(has_dot_segment("/a/../b"));
        assert!(has_dot_segment("/a/%2E%2e/b"));
        assert!(has_dot_segment("/a/."));
        assert!(!has_dot_segment("/a/..b/c.d"));
    }

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
