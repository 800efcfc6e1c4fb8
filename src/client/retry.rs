//! Which answered items may be sent again, and when: the [`RetryPlan`] of a batch response,
//! and the throttling rule the auto-batching layer follows.
//!
//! An item may be sent again only when the answer says it did not run, or that the server
//! refused it for now:
//! - `424 Failed Dependency`: an item it depended on failed, so it was not run;
//! - `504` and `507` whose message says the item was not run (this crate's server side answers
//!   an item the batch deadline or the answer's size limit kept from starting so, and one that
//!   was stopped or whose answer did not fit otherwise);
//! - `429` and `503` with a `Retry-After`: throttled, to be sent again after that delay.
//!
//! Every other answer, errors included, came from an item that ran (or may have run), and a
//! plan never holds it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{Response, StatusCode};

use super::error::server_message;

/// Why an item may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryReason {
    /// The server did not run the item (`424`, or a `504`/`507` that says it was not run).
    NotRun,
    /// The server refused the item for now (`429` or `503`) and said when to come back.
    Throttled,
}

/// One item of a [`RetryPlan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    id: String,
    reason: RetryReason,
    after: Duration,
}

impl Retry {
    /// The item's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Why it may be sent again.
    pub fn reason(&self) -> RetryReason {
        self.reason
    }

    /// How long to wait before sending it again: the `Retry-After` of a throttled item, zero
    /// for one that was not run.
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// The items of a [`BatchResponse`](super::BatchResponse) that can be sent again, and when.
///
/// Made by [`BatchResponse::retry_plan`](super::BatchResponse::retry_plan). Items that ran
/// are never in it; see the rules in [`RetryReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryPlan {
    items: Vec<Retry>,
}

impl RetryPlan {
    pub(crate) fn push(&mut self, id: &str, response: &Response<Bytes>) {
        if let Some((reason, after)) = classify(response) {
            self.items.push(Retry {
                id: id.to_owned(),
                reason,
                after,
            });
        }
    }

    /// Whether no item may be sent again.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many items may be sent again.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The items, in request order.
    pub fn iter(&self) -> impl Iterator<Item = &Retry> {
        self.items.iter()
    }

    /// The ids of the items, in request order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|r| r.id.as_str())
    }

    /// How long to wait before all of them may be sent again: the longest delay.
    pub fn wait(&self) -> Duration {
        self.items.iter().map(|r| r.after).max().unwrap_or_default()
    }
}

impl IntoIterator for RetryPlan {
    type Item = Retry;
    type IntoIter = std::vec::IntoIter<Retry>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// Whether an item's answer lets it be sent again, why, and after how long.
fn classify(response: &Response<Bytes>) -> Option<(RetryReason, Duration)> {
    match response.status() {
        StatusCode::FAILED_DEPENDENCY => Some((RetryReason::NotRun, Duration::ZERO)),
        StatusCode::GATEWAY_TIMEOUT | StatusCode::INSUFFICIENT_STORAGE => {
            let message = server_message(response.body());
            message
                .contains("not run")
                .then_some((RetryReason::NotRun, Duration::ZERO))
        }
        _ => throttled(response).map(|after| (RetryReason::Throttled, after)),
    }
}

/// The delay a `429` or `503` asks for in its `Retry-After`; `None` for any other answer, or
/// one without a readable `Retry-After`.
pub(crate) fn throttled<B>(response: &Response<B>) -> Option<Duration> {
    if !matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    retry_after(value, SystemTime::now())
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay seconds, or an HTTP date (IMF-fixdate),
/// as a delay from `now`.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = imf_fixdate(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(value: &str) -> Option<u64> {
    let rest = value.get(5..)?;
    let mut words = rest.split(' ');
    let day: u64 = words.next()?.parse().ok()?;
    let month = match words.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = words.next()?.parse().ok()?;
    let mut clock = words.next()?.split(':').map(|n| n.parse::<u64>().ok());
    let (h, m, s) = (clock.next()??, clock.next()??, clock.next()??);
    if words.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (h * 3600 + m * 60 + s) as i64;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<&str>, body: &str) -> Response<Bytes> {
        let mut res = Response::new(Bytes::from(body.to_owned()));
        *res.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(v) = retry_after {
            res.headers_mut().insert(RETRY_AFTER, v.parse().unwrap());
        }
        res
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        // RFC 9110's own example date, 7 s after `now`.
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in [
            "",
            "-1",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994",
        ] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn plan_holds_only_items_that_did_not_run() {
        let not_run_504 = r#"{"error":{"code":504,"message":"the batch deadline of 10 ms passed before this item started, so it was not run"}}"#;
        let ran_504 = r#"{"error":{"code":504,"message":"the batch deadline of 10 ms passed while this item was running; it was stopped, and may have taken effect in part"}}"#;
        let ran_507 =
            r#"{"error":{"code":507,"message":"the item ran, but its answer did not fit"}}"#;
        let mut plan = RetryPlan::default();
        plan.push("ok", &answer(200, None, ""));
        plan.push("dep", &answer(424, None, "{}"));
        plan.push("late", &answer(504, None, not_run_504));
        plan.push("stopped", &answer(504, None, ran_504));
        plan.push("full", &answer(507, None, ran_507));
        plan.push("slow", &answer(429, Some("3"), ""));
        plan.push("busy", &answer(503, Some("1"), ""));
        plan.push("down", &answer(503, None, ""));
        plan.push("boom", &answer(500, Some("1"), ""));
        assert_eq!(
            plan.ids().collect::<Vec<_>>(),
            ["dep", "late", "slow", "busy"]
        );
        assert_eq!(plan.wait(), Duration::from_secs(3));
        let slow = plan.iter().find(|r| r.id() == "slow").unwrap();
        assert_eq!(slow.reason(), RetryReason::Throttled);
        assert_eq!(plan.iter().next().unwrap().reason(), RetryReason::NotRun);
    }
}
