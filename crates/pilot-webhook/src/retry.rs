//! The retry policy: which failures are worth another attempt, how long to wait before it
//! (exponential backoff with jitter), and `Retry-After`.
//!
//! * Retried: connection errors, timeouts, 408, 429 and every 5xx. Not retried: other 4xx, 3xx
//!   (redirects are not followed), blocked addresses and unusable URLs. 410 Gone disables the
//!   webhook (the worker's business).
//! * Backoff before retry `n` (1-based) is `backoff * 2^(n-1)`, spread by jitter over
//!   `[1, 1.5)` times that: never earlier than Pilot's schedule (1 s, 2 s by default), so
//!   receivers and tests can rely on the lower bound. `max_backoff`, when set, caps the result.
//! * A 429 or 503 with `Retry-After` (delta-seconds or an HTTP date) waits that long, clamped to
//!   [`MAX_RETRY_AFTER`] and never less than the backoff it replaces.
//! * Waits end at deadlines (`deadline_after`) that never overflow.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use tokio::time::Instant;

/// The longest wait a `Retry-After` header can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// Whether a response status is worth another attempt: 408, 429 and 5xx.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Whether `Retry-After` is honoured with this status (429 and 503).
pub fn honours_retry_after(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
}

/// Parses a `Retry-After` value seen at `now`: delta-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`; a date in the past means no wait). `None` if malformed.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time"; the clamp handles it.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How retries of one event (or batch) are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry.
    pub base: Duration,
    /// The longest backoff (before jitter), if any.
    pub max: Option<Duration>,
}

impl Backoff {
    /// The nominal wait before retry `retry` (1 = the first retry): `base * 2^(retry-1)`,
    /// saturating, capped by `max`.
    pub fn nominal(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let d = u32::try_from(factor)
            .map(|f| self.base.saturating_mul(f))
            .unwrap_or(Duration::MAX);
        match self.max {
            Some(max) => d.min(max),
            None => d,
        }
    }

    /// The nominal wait spread by `jitter` in `[0, 1)`: `nominal * (1 + jitter / 2)`, never
    /// above `max`.
    pub fn jittered(&self, retry: u32, jitter: f64) -> Duration {
        let nominal = self.nominal(retry);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let extra = Duration::try_from_secs_f64(nominal.as_secs_f64() * jitter / 2.0)
            .unwrap_or(Duration::ZERO);
        let d = nominal.saturating_add(extra);
        match self.max {
            Some(max) => d.min(max),
            None => d,
        }
    }

    /// The wait before retry `retry`, given the failed attempt's `Retry-After` (already parsed,
    /// only for statuses that honour it) and a jitter in `[0, 1)`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let backoff = self.jittered(retry, jitter);
        match retry_after {
            Some(asked) => asked.min(MAX_RETRY_AFTER).max(backoff),
            None => backoff,
        }
    }
}

/// A jitter in `[0, 1)`.
pub fn jitter() -> f64 {
    rand::random::<f64>()
}

/// `now + d`, or a far future when that does not fit an `Instant` (absurd settings never panic).
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(30 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_follow_the_standards() {
        for code in [408u16, 429, 500, 502, 503, 504, 599] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [200u16, 301, 302, 400, 401, 403, 404, 409, 410, 413, 422] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        assert!(honours_retry_after(StatusCode::TOO_MANY_REQUESTS));
        assert!(honours_retry_after(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!honours_retry_after(StatusCode::INTERNAL_SERVER_ERROR));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // The obsolete formats HTTP still allows.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "12 s",
            "Wed, 99 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jitter_stays_in_one_to_one_and_a_half() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: None,
        };
        assert_eq!(b.nominal(1), Duration::from_secs(1));
        assert_eq!(b.nominal(2), Duration::from_secs(2));
        assert_eq!(b.nominal(3), Duration::from_secs(4));
        assert_eq!(b.nominal(0), Duration::from_secs(1));
        assert_eq!(b.nominal(500), Duration::MAX);
        assert_eq!(b.jittered(2, 0.0), Duration::from_secs(2));
        assert_eq!(b.jittered(2, 0.5), Duration::from_millis(2500));
        assert_eq!(b.jittered(2, f64::NAN), Duration::from_secs(2));
        assert_eq!(b.jittered(500, 0.9), Duration::MAX);
        for _ in 0..1000 {
            let d = b.jittered(2, jitter());
            assert!(
                d >= Duration::from_secs(2) && d < Duration::from_secs(3),
                "{d:?}"
            );
        }
        let capped = Backoff {
            max: Some(Duration::from_secs(3)),
            ..b
        };
        assert_eq!(capped.nominal(10), Duration::from_secs(3));
        assert_eq!(
            capped.jittered(10, 0.99),
            Duration::from_secs(3),
            "max is the longest wait"
        );
        assert_eq!(capped.jittered(2, 0.99), Duration::from_millis(2990));
    }

    #[test]
    fn retry_after_is_clamped_and_never_shorter_than_the_backoff() {
        let b = Backoff {
            base: Duration::from_secs(2),
            max: None,
        };
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(10)), 0.0),
            Duration::from_secs(10)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(1)), 0.0),
            Duration::from_secs(2),
            "at least the backoff"
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(86_400)), 0.0),
            MAX_RETRY_AFTER
        );
        assert_eq!(b.delay(2, None, 0.0), Duration::from_secs(4));
    }
}
