//! The rules that differ between members of the multipart batch family: Google's APIs, OData
//! 2.0 / 3.0 / 4.0 and Azure Storage. Formats parse and write; a [`Dialect`] decides.
//!
//! A dialect is chosen per batch route (see [`BatchRoute`](crate::BatchRoute)), never guessed
//! from the bytes. Every rule is a knob, so a service of another member of the family
//! (SharePoint's `_api/$batch`, say) is served by adjusting a preset.
//!
//! | rule | [`google`](Dialect::google) | [`odata_v4`](Dialect::odata_v4) | [`odata_v2`](Dialect::odata_v2) | [`azure_storage`](Dialect::azure_storage) |
//! |---|---|---|---|---|
//! | batch status | 200 | 200 | 202 | 202 |
//! | answer `Content-ID` | `<response-X>` / `response-X` | as sent | as sent | as sent |
//! | response boundaries | `batch_<hex>` | `batchresponse_<uuid>`, `changesetresponse_<uuid>` | same | `batchresponse_<uuid>` |
//! | version header | – | `OData-Version: 4.0` | `DataServiceVersion: 2.0` | – |
//! | change sets | refused | allowed | allowed | refused |
//! | failed change set answered | – | bare | bare | – |
//! | batch's routing query inherited by items | yes | yes | yes | no (`restype`, `comp`) |
//!
//! More presets: [`odata_v3`](Dialect::odata_v3) and [`azure_tables`](Dialect::azure_tables)
//! (Microsoft's OData 3 server, WCF Data Services, which wraps a failed change set's answer in
//! a change-set response part), and [`sharepoint`](Dialect::sharepoint) (SharePoint's
//! `_api/$batch`, which answers change sets flat). See [`ChangeSetAnswers`] for the sources.
//!
//! # Example
//!
//! ```
//! use http_batch::{BatchLayer, BatchRoute};
//! use http_batch::format::Dialect;
//!
//! let layer = BatchLayer::new()
//!     .route(BatchRoute::path("/batch"))
//!     .route(
//!         BatchRoute::path("/odata/v4/farm/v1/$batch")
//!             .dialect(Dialect::odata_v4())
//!             .service_root("/farm/v1"),
//!     );
//! ```

use http::{HeaderName, HeaderValue, StatusCode};

pub use super::multipart::write::{ChangeSetAnswers, ContentIdEcho};

/// How the boundaries of an answer are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BoundaryStyle {
    /// `batch_` and 32 hex digits (Google).
    Random,
    /// `batchresponse_<uuid>` for the batch and `changesetresponse_<uuid>` for change sets
    /// (OData, Azure Storage), the names their clients' parsers look for.
    Uuid,
}

/// What a route does with change sets (a part that is itself `multipart/mixed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeSets {
    /// A batch that carries one is refused as a whole with `400`.
    Refused,
    /// Change sets run in order, all or nothing, under a transaction of the route's
    /// [`TransactionProvider`](crate::TransactionProvider); a route without a provider refuses
    /// such a batch with `501`.
    Atomic,
    /// Change sets run in order, and are answered as change sets, but nothing is rolled back
    /// when one of their items fails. Only where asked for by name
    /// ([`Dialect::allow_non_atomic_change_sets`]).
    NonAtomic,
}

/// The rules of one kind of batch client: see the [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct Dialect {
    name: &'static str,
    batch_status: StatusCode,
    content_id_echo: ContentIdEcho,
    boundaries: BoundaryStyle,
    version_header: Option<(HeaderName, HeaderValue)>,
    change_sets: ChangeSets,
    stop_on_error: bool,
    change_set_answers: ChangeSetAnswers,
    routing_query: &'static [&'static str],
}

/// The default dialect, for formats decoded outside a route.
pub(crate) static GOOGLE: Dialect = Dialect::google();

impl Default for Dialect {
    fn default() -> Self {
        Dialect::google()
    }
}

impl Dialect {
    /// Google's rules, the default: status 200, `Content-ID: <response-X>`, any boundary, no
    /// version header, no change sets.
    pub const fn google() -> Self {
        Dialect {
            name: "google",
            batch_status: StatusCode::OK,
            content_id_echo: ContentIdEcho::ResponsePrefix,
            boundaries: BoundaryStyle::Random,
            version_header: None,
            change_sets: ChangeSets::Refused,
            stop_on_error: false,
            change_set_answers: ChangeSetAnswers::Nested,
            routing_query: &[],
        }
    }

    /// OData 4.0: status 200, `Content-ID` as sent, `batchresponse_<uuid>` boundaries,
    /// `OData-Version: 4.0`, atomic change sets, and a batch that stops at its first failure
    /// unless the client sends `Prefer: odata.continue-on-error`.
    pub const fn odata_v4() -> Self {
        Dialect {
            name: "odata-v4",
            batch_status: StatusCode::OK,
            content_id_echo: ContentIdEcho::AsSent,
            boundaries: BoundaryStyle::Uuid,
            version_header: Some((
                HeaderName::from_static("odata-version"),
                HeaderValue::from_static("4.0"),
            )),
            change_sets: ChangeSets::Atomic,
            stop_on_error: true,
            change_set_answers: ChangeSetAnswers::Nested,
            routing_query: &[],
        }
    }

    /// OData 2.0: like [`odata_v4`](Self::odata_v4), but answered `202 Accepted` with
    /// `DataServiceVersion: 2.0`. For OData 3.0, add `.version_header("dataserviceversion",
    /// "3.0")`.
    pub const fn odata_v2() -> Self {
        Dialect {
            name: "odata-v2",
            batch_status: StatusCode::ACCEPTED,
            content_id_echo: ContentIdEcho::AsSent,
            boundaries: BoundaryStyle::Uuid,
            version_header: Some((
                HeaderName::from_static("dataserviceversion"),
                HeaderValue::from_static("2.0"),
            )),
            change_sets: ChangeSets::Atomic,
            stop_on_error: true,
            change_set_answers: ChangeSetAnswers::Nested,
            routing_query: &[],
        }
    }

    /// Azure Storage's blob batch: status 202, `Content-ID` as sent, `batchresponse_<uuid>`
    /// boundaries, no change sets.
    pub const fn azure_storage() -> Self {
        Dialect {
            name: "azure-storage",
            batch_status: StatusCode::ACCEPTED,
            content_id_echo: ContentIdEcho::AsSent,
            boundaries: BoundaryStyle::Uuid,
            version_header: None,
            change_sets: ChangeSets::Refused,
            stop_on_error: false,
            change_set_answers: ChangeSetAnswers::Nested,
            // The query that posts a batch to a container selects the batch operation; on an
            // item, `restype=container` would retarget a blob request to its container.
            routing_query: &["restype", "comp"],
        }
    }

    /// OData 3.0 as Microsoft's servers (WCF Data Services) answer it: like
    /// [`odata_v2`](Self::odata_v2) with `DataServiceVersion: 3.0`, and a failed change set's
    /// answer wrapped in a change-set response part ([`ChangeSetAnswers::WrapFailed`]).
    pub const fn odata_v3() -> Self {
        Dialect {
            name: "odata-v3",
            batch_status: StatusCode::ACCEPTED,
            content_id_echo: ContentIdEcho::AsSent,
            boundaries: BoundaryStyle::Uuid,
            version_header: Some((
                HeaderName::from_static("dataserviceversion"),
                HeaderValue::from_static("3.0"),
            )),
            change_sets: ChangeSets::Atomic,
            stop_on_error: true,
            change_set_answers: ChangeSetAnswers::WrapFailed,
            routing_query: &[],
        }
    }

    /// Azure Table storage's entity group transactions: [`odata_v3`](Self::odata_v3)'s rules
    /// under the name `"azure-tables"`; a rolled-back transaction is answered inside a
    /// `changesetresponse_` part, where the Azure Tables SDKs look for it.
    pub const fn azure_tables() -> Self {
        let mut d = Dialect::odata_v3();
        d.name = "azure-tables";
        d
    }

    /// SharePoint's `_api/$batch`: status 200, `Content-ID` as sent, `batchresponse_<uuid>`
    /// boundaries, no version header, and change sets answered flat
    /// ([`ChangeSetAnswers::Flat`]), one top-level part per answer, as PnPjs and
    /// office365-rest-python-client read them. Change sets still run all or nothing under the
    /// route's transactions; SharePoint's own do not.
    pub const fn sharepoint() -> Self {
        Dialect {
            name: "sharepoint",
            batch_status: StatusCode::OK,
            content_id_echo: ContentIdEcho::AsSent,
            boundaries: BoundaryStyle::Uuid,
            version_header: None,
            change_sets: ChangeSets::Atomic,
            stop_on_error: false,
            change_set_answers: ChangeSetAnswers::Flat,
            routing_query: &[],
        }
    }

    /// Sets the status of the batch response (the items keep their own).
    pub fn batch_status(mut self, status: StatusCode) -> Self {
        self.batch_status = status;
        self
    }

    /// Sets how answer parts echo the request parts' `Content-ID`.
    pub fn content_id_echo(mut self, echo: ContentIdEcho) -> Self {
        self.content_id_echo = echo;
        self
    }

    /// Sets how answer boundaries are made.
    pub fn boundaries(mut self, style: BoundaryStyle) -> Self {
        self.boundaries = style;
        self
    }

    /// Sets the version header every batch answer carries, such as `OData-Version: 4.01`.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name or value.
    pub fn version_header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).expect("a valid header name");
        let value = HeaderValue::try_from(value).expect("a valid header value");
        self.version_header = Some((name, value));
        self
    }

    /// Leaves the version header out.
    pub fn no_version_header(mut self) -> Self {
        self.version_header = None;
        self
    }

    /// Sets what is done with change sets.
    pub fn change_sets(mut self, change_sets: ChangeSets) -> Self {
        self.change_sets = change_sets;
        self
    }

    /// Runs change sets without a transaction: in order, answered as change sets, with nothing
    /// rolled back when one of their items fails. The layer cannot undo an HTTP call; use this
    /// only when the handlers need no atomicity.
    pub fn allow_non_atomic_change_sets(self) -> Self {
        self.change_sets(ChangeSets::NonAtomic)
    }

    /// Whether a batch stops at its first failed item or change set unless the client sends
    /// `Prefer: odata.continue-on-error` (OData's rule; on in the OData presets).
    pub fn stop_on_error(mut self, on: bool) -> Self {
        self.stop_on_error = on;
        self
    }

    /// Sets how change sets are laid out in the answer.
    pub fn change_set_answers(mut self, shape: ChangeSetAnswers) -> Self {
        self.change_set_answers = shape;
        self
    }

    /// Sets the query parameters that select this batch route, such as Azure's `restype` and
    /// `comp`: they stay with the batch, and items do not inherit them (other parameters of
    /// the batch URL still apply to every item that does not set its own).
    pub fn routing_query(mut self, names: &'static [&'static str]) -> Self {
        self.routing_query = names;
        self
    }

    /// How change sets are laid out in the answer.
    pub fn get_change_set_answers(&self) -> ChangeSetAnswers {
        self.change_set_answers
    }

    /// The query parameters that select this batch route, which items do not inherit.
    pub fn get_routing_query(&self) -> &'static [&'static str] {
        self.routing_query
    }

    /// A short name for logs, such as `"odata-v4"`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The status of the batch response.
    pub fn get_batch_status(&self) -> StatusCode {
        self.batch_status
    }

    /// How answer parts echo the `Content-ID`.
    pub fn get_content_id_echo(&self) -> ContentIdEcho {
        self.content_id_echo
    }

    /// The version header every batch answer carries, if any.
    pub fn get_version_header(&self) -> Option<(&HeaderName, &HeaderValue)> {
        self.version_header.as_ref().map(|(n, v)| (n, v))
    }

    /// The version header for an answer to a request with `headers`: an OData 4.0 dialect
    /// answers `OData-Version: 4.01` to a client that asks for it (`OData-MaxVersion: 4.01` or
    /// later, or `OData-Version: 4.01`).
    pub fn version_for(&self, headers: &http::HeaderMap) -> Option<(HeaderName, HeaderValue)> {
        let (name, value) = self.version_header.as_ref()?;
        if name == "odata-version" && value == "4.0" {
            let asks = ["odata-maxversion", "odata-version"].iter().any(|h| {
                headers
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .is_some_and(|v| v >= 4.01)
            });
            if asks {
                return Some((name.clone(), HeaderValue::from_static("4.01")));
            }
        }
        Some((name.clone(), value.clone()))
    }

    /// What is done with change sets.
    pub fn get_change_sets(&self) -> ChangeSets {
        self.change_sets
    }

    /// Whether a batch stops at its first failure unless the client asks otherwise.
    pub fn get_stop_on_error(&self) -> bool {
        self.stop_on_error
    }

    /// A fresh boundary for a batch answer.
    pub fn batch_boundary(&self) -> String {
        match self.boundaries {
            BoundaryStyle::Random => super::multipart::new_boundary(),
            BoundaryStyle::Uuid => format!("batchresponse_{}", crate::id::uuid()),
        }
    }

    /// A fresh boundary for a change set's answer.
    pub fn change_set_boundary(&self) -> String {
        match self.boundaries {
            BoundaryStyle::Random => format!("changeset_{}", crate::id::uuid().replace('-', "")),
            BoundaryStyle::Uuid => format!("changesetresponse_{}", crate::id::uuid()),
        }
    }
}

/// The getters' earlier names.
impl Dialect {
    /// How change sets are laid out in the answer.
    #[deprecated(note = "renamed `get_change_set_answers`, after its setter")]
    pub fn change_set_shape(&self) -> ChangeSetAnswers {
        self.get_change_set_answers()
    }

    /// The query parameters that select this batch route, which items do not inherit.
    #[deprecated(note = "renamed `get_routing_query`, after its setter")]
    pub fn routing_params(&self) -> &'static [&'static str] {
        self.get_routing_query()
    }

    /// The status of the batch response.
    #[deprecated(note = "renamed `get_batch_status`, after its setter")]
    pub fn status(&self) -> StatusCode {
        self.get_batch_status()
    }

    /// How answer parts echo the `Content-ID`.
    #[deprecated(note = "renamed `get_content_id_echo`, after its setter")]
    pub fn content_id(&self) -> ContentIdEcho {
        self.get_content_id_echo()
    }

    /// The version header every batch answer carries, if any.
    #[deprecated(note = "renamed `get_version_header`, after its setter")]
    pub fn version(&self) -> Option<(&HeaderName, &HeaderValue)> {
        self.get_version_header()
    }

    /// What is done with change sets.
    #[deprecated(note = "renamed `get_change_sets`, after its setter")]
    pub fn change_set_rule(&self) -> ChangeSets {
        self.get_change_sets()
    }

    /// Whether a batch stops at its first failure unless the client asks otherwise.
    #[deprecated(note = "renamed `get_stop_on_error`, after its setter")]
    pub fn stops_on_error(&self) -> bool {
        self.get_stop_on_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_boundaries() {
        let b = Dialect::odata_v4().batch_boundary();
        let u = b.strip_prefix("batchresponse_").unwrap();
        let groups: Vec<usize> = u.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&u[14..15], "4");
        assert!(Dialect::odata_v2()
            .change_set_boundary()
            .starts_with("changesetresponse_"));
        assert!(Dialect::google().batch_boundary().starts_with("batch_"));
    }

    #[test]
    fn odata_4_01_where_asked() {
        let mut h = http::HeaderMap::new();
        let v4 = Dialect::odata_v4();
        assert_eq!(v4.version_for(&h).unwrap().1, "4.0");
        h.insert("odata-maxversion", HeaderValue::from_static("4.01"));
        assert_eq!(v4.version_for(&h).unwrap().1, "4.01");
        assert_eq!(Dialect::odata_v2().version_for(&h).unwrap().1, "2.0");
        assert!(Dialect::google().version_for(&h).is_none());
    }

    #[test]
    fn presets() {
        assert_eq!(Dialect::odata_v2().get_batch_status(), StatusCode::ACCEPTED);
        assert_eq!(
            Dialect::azure_storage().get_change_sets(),
            ChangeSets::Refused
        );
        let v3 = Dialect::odata_v2().version_header("DataServiceVersion", "3.0");
        assert_eq!(v3.get_version_header().unwrap().1, "3.0");
        assert_eq!(
            Dialect::odata_v3().get_change_set_answers(),
            ChangeSetAnswers::WrapFailed
        );
        assert_eq!(Dialect::azure_tables().name(), "azure-tables");
        assert_eq!(
            Dialect::sharepoint().get_change_set_answers(),
            ChangeSetAnswers::Flat
        );
        assert_eq!(
            Dialect::azure_storage().get_routing_query(),
            ["restype", "comp"]
        );
        assert!(Dialect::odata_v4().get_routing_query().is_empty());
    }
}
