//! What an item receives from the outer request: headers, query, extensions and its request
//! id. [`prepare`] is the one step each item takes before it runs: it keeps the item on this
//! origin ([`crate::origin`]), checks it against the item policy ([`crate::policy`]), and then
//! gives it what it inherits.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::Uri;
use http::{Request, StatusCode};

use crate::config::{AuthPolicy, Config, Route};
use crate::context::BatchContext;
use crate::error::ItemError;
use crate::origin::Origin;
use crate::path;
use crate::pinned::Pinned;
use crate::policy::{self, Claims, Scope};
use crate::transaction::Transaction;

/// Everything about the outer request that items inherit, computed once per batch.
#[derive(Debug)]
pub(crate) struct Outer {
    /// Outer headers that items may inherit (no `Content-*`, no hop-by-hop, no `Host`, no
    /// `Expect`, no `Accept-Encoding`).
    pub(crate) headers: HeaderMap,
    /// The origin the batch arrived for, which every item stays on.
    pub(crate) origin: Origin,
    pub(crate) query: Option<String>,
    pub(crate) extensions: http::Extensions,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) depth: usize,
    /// The enclosing batch's remaining cost budget, when this batch is nested in one.
    pub(crate) budget: Option<Arc<AtomicU64>>,
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
        let request_id = config
            .request_id_header
            .as_ref()
            .and_then(|n| parts.headers.get(n))
            .cloned();
        let (extensions, context) = inheritable_extensions(&parts.extensions);
        Outer {
            headers: inheritable_headers(&parts.headers, config),
            origin: Origin::of(parts, config.trust_forwarded),
            query: parts.uri.query().map(str::to_owned),
            extensions,
            request_id,
            depth: context.as_ref().map_or(0, |c| c.depth),
            budget: context.and_then(|c| c.budget),
            service_root: None,
            base: None,
            encoded_slashes: false,
        }
    }

    /// Takes on what the batch route says about items: its service root, the batch URL's
    /// base, whether encoded slashes pass, and which query parameters chose the route (those
    /// stay with the batch: Azure's `restype=container` would retarget every blob item to its
    /// container).
    pub(crate) fn for_route(&mut self, route: &Route, base: Option<&str>) {
        self.service_root.clone_from(&route.service_root);
        self.base = base.map(str::to_owned);
        self.encoded_slashes = route.encoded_slashes;
        let routing = route.dialect.get_routing_query();
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

/// The outer headers an item may inherit: not those about the batch body or the connection.
fn inheritable_headers(outer: &HeaderMap, config: &Config) -> HeaderMap {
    let listed = connection_listed(outer);
    let mut headers = HeaderMap::with_capacity(outer.len());
    for (name, value) in outer {
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
    headers
}

/// The outer extensions an item may inherit, and the enclosing batch's context (when this
/// batch is an item of another), which the items do not inherit: each gets its own.
fn inheritable_extensions(outer: &http::Extensions) -> (http::Extensions, Option<BatchContext>) {
    let mut extensions = outer.clone();
    let context = extensions.remove::<BatchContext>();
    #[cfg(feature = "axum")]
    {
        // axum's routing data describes the outer request, not the item; the router sets
        // them afresh for each item.
        extensions.remove::<axum::extract::MatchedPath>();
        extensions.remove::<axum::extract::OriginalUri>();
    }
    reserve_extensions(&mut extensions);
    (extensions, context)
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

/// The request id an item without its own gets: the outer id, `-`, and the item's index.
pub(crate) fn derived_id(outer: &Outer, index: usize) -> Option<HeaderValue> {
    let outer_id = outer.request_id.as_ref()?;
    let mut id = Vec::with_capacity(outer_id.len() + 5);
    id.extend_from_slice(outer_id.as_bytes());
    id.push(b'-');
    id.extend_from_slice(index.to_string().as_bytes());
    HeaderValue::from_bytes(&id).ok()
}

/// The headers only the outer request may set.
#[derive(Clone, Copy)]
struct Pins<'a> {
    pinned: &'a Pinned,
    /// Under `AuthPolicy::OuterOnly` more headers are pinned (see `Pinned::covers`).
    outer_only: bool,
}

impl Pins<'_> {
    fn cover(&self, name: &HeaderName) -> bool {
        self.pinned.covers(name, self.outer_only)
    }
}

/// What `prepare` needs to know about an item's own headers, found in one pass over them.
#[derive(Default)]
struct Seen {
    hosts: usize,
    /// What the item policy asks: upgrades, `Authorization`, `Content-Type`.
    claims: Claims,
    /// A hop-by-hop header (including `Connection`, which may list more) is present.
    hop_by_hop: bool,
    content_length: bool,
    request_id: bool,
    accept_encoding: bool,
    /// A header that only the outer request may set (see `Pinned`) is present.
    pinned: bool,
}

impl Seen {
    fn scan(headers: &HeaderMap, request_id: Option<&HeaderName>, pins: Pins<'_>) -> Seen {
        let mut seen = Seen::default();
        // `keys` visits each name once; `Host` is the one whose number of values matters.
        for name in headers.keys() {
            if name == header::HOST {
                seen.hosts = headers.get_all(header::HOST).iter().count();
            } else if name == header::CONTENT_TYPE {
                seen.claims.content_type = true;
            } else if name == header::CONTENT_LENGTH {
                seen.content_length = true;
            } else if name == header::ACCEPT_ENCODING {
                seen.accept_encoding = true;
            } else if name == header::AUTHORIZATION {
                seen.claims.authorization = true;
            } else if request_id == Some(name) {
                seen.request_id = true;
            } else if name == header::UPGRADE {
                seen.claims.upgrade = true;
                seen.hop_by_hop = true;
            } else if name.as_str() == "sec-websocket-key" {
                seen.claims.upgrade = true;
            } else if is_hop_by_hop(name, &HashSet::new()) {
                // `Connection` among them: the names it lists are found when they are removed.
                seen.hop_by_hop = true;
            } else if pins.cover(name) {
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
    outer.origin.localize(req, &config.public_origins)?;
    // One look at the item's own headers answers every question asked of them below. Many items
    // (plain GETs) carry none at all.
    let pins = Pins {
        pinned: &config.pinned,
        outer_only: config.auth == AuthPolicy::OuterOnly,
    };
    let mut seen = Seen::scan(req.headers(), config.request_id_header.as_ref(), pins);
    drop_host_and_encoding(req, &mut seen)?;
    resolve_path(req, outer, config)?;
    let scope = Scope {
        depth: outer.depth,
        encoded_slashes: outer.encoded_slashes,
    };
    policy::check(req, seen.claims, scope, config)?;
    drop_connection_and_pinned(req, &mut seen, pins, config);
    fill_headers(req, outer, &seen)?;
    let request_id = request_id(req, outer, config, &seen, ctx.index)?;
    merge_outer_query(req, outer)?;
    carry_extensions(req, outer, ctx);
    Ok(request_id)
}

/// An item's `Host` and `Accept-Encoding` are not its own to choose.
fn drop_host_and_encoding(req: &mut Request<Bytes>, seen: &mut Seen) -> Result<(), ItemError> {
    // RFC 9112 §3.2: a request with more than one Host field is answered 400.
    if seen.hosts > 1 {
        return Err(ItemError::bad_request(
            "item carries more than one Host header",
        ));
    }
    // An item's `Host` is advisory: clients write the public host into every part, while behind
    // a proxy the batch arrives for the backend. The item runs under the batch's own origin, so
    // its `Host` is replaced by the batch's (in `fill_headers`), never trusted for routing.
    if seen.hosts == 1 {
        req.headers_mut().remove(header::HOST);
        seen.hosts = 0;
    }
    // Parts are never compressed: clients decode the whole batch body as text, so an item may
    // not ask for an encoding, whatever its own headers say.
    if seen.accept_encoding {
        req.headers_mut().remove(header::ACCEPT_ENCODING);
    }
    Ok(())
}

/// The path the inner service will see: under the route's (or the layer's) service root, runs
/// of `/` collapsed.
fn resolve_path(req: &mut Request<Bytes>, outer: &Outer, config: &Config) -> Result<(), ItemError> {
    let root = outer
        .service_root
        .as_deref()
        .or(config.service_root.as_deref());
    if let Some(uri) = path::resolve(req.uri(), outer.base.as_deref(), root)? {
        *req.uri_mut() = uri;
    }
    Ok(())
}

/// The item's own hop-by-hop headers describe a connection it does not have; pinned headers are
/// the outer request's alone (the outer ones fill in later). Both go in one pass, found by the
/// same scan that answered everything else.
fn drop_connection_and_pinned(
    req: &mut Request<Bytes>,
    seen: &mut Seen,
    pins: Pins<'_>,
    config: &Config,
) {
    if !(seen.hop_by_hop || seen.pinned) {
        return;
    }
    let listed = if seen.hop_by_hop {
        connection_listed(req.headers())
    } else {
        HashSet::new()
    };
    let gone: Vec<HeaderName> = req
        .headers()
        .keys()
        .filter(|n| is_hop_by_hop(n, &listed) || pins.cover(n))
        .cloned()
        .collect();
    for name in gone {
        req.headers_mut().remove(name);
    }
    // `Connection` may have listed any header, `Host` or the request id among them.
    *seen = Seen::scan(req.headers(), config.request_id_header.as_ref(), pins);
}

/// Headers: the item's own win; the outer ones fill in (every value of a multi-valued one),
/// then the batch's `Host` and the body's length.
fn fill_headers(req: &mut Request<Bytes>, outer: &Outer, seen: &Seen) -> Result<(), ItemError> {
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
    if let Some(host) = outer.origin.host_value() {
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
    Ok(())
}

/// Request id: the outer id plus the item index, unless the item set its own.
fn request_id(
    req: &mut Request<Bytes>,
    outer: &Outer,
    config: &Config,
    seen: &Seen,
    index: usize,
) -> Result<RequestId, ItemError> {
    let Some(name) = &config.request_id_header else {
        return Ok(None);
    };
    if seen.request_id {
        return Ok(req.headers().get(name).cloned());
    }
    let Some(id) = derived_id(outer, index) else {
        return Ok(None);
    };
    req.headers_mut()
        .try_insert(name.clone(), id.clone())
        .map_err(|_| too_many_headers())?;
    Ok(Some(id))
}

/// Query: outer parameters apply unless the item sets the same name.
fn merge_outer_query(req: &mut Request<Bytes>, outer: &Outer) -> Result<(), ItemError> {
    let Some(outer_query) = &outer.query else {
        return Ok(());
    };
    if let Some(merged) = merge_query(req.uri().query(), outer_query) {
        let pq = format!("{}?{merged}", req.uri().path());
        let uri = Uri::try_from(pq).map_err(|_| {
            ItemError::bad_request("item query could not be merged with the batch query")
        })?;
        *req.uri_mut() = uri;
    }
    Ok(())
}

/// The outer extensions, copied with room to spare (see `reserve_extensions`), and the item's
/// own context.
fn carry_extensions(req: &mut Request<Bytes>, outer: &Outer, ctx: BatchContext) {
    let extensions = req.extensions_mut();
    // A change set's transaction is the one extension an item brings with it.
    let tx = extensions.remove::<Transaction>();
    *extensions = outer.extensions.clone();
    extensions.insert(ctx);
    if let Some(tx) = tx {
        extensions.insert(tx);
    }
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
}
