//! The accounting of one webhook (or of several, added up): where every event offered to it
//! went. `emitted = delivered + failed + dropped + skipped + filtered + pending`, and whether
//! the two sides are equal. One type, shared by the webhook plugin's stats, the control
//! protocol's `info` and pilotctl.

use serde::{Deserialize, Serialize};

/// The accounting of one snapshot: `emitted = delivered + failed + dropped + skipped + filtered
/// + pending` (see the module docs for what each term counts).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Accounting {
    /// Events offered to the webhook's subscription (queue-full drops included), plus those
    /// recovered from the spool.
    pub emitted: u64,
    /// Answered with a 2xx.
    pub delivered: u64,
    /// Every attempt failed, or a 3xx/4xx, or a blocked address.
    pub failed: u64,
    /// Dropped, for any reason (queue full included).
    pub dropped: u64,
    /// Skipped while the circuit was open.
    pub skipped: u64,
    /// Left out by the webhook's filters.
    pub filtered: u64,
    /// Still to be settled: queued, in flight, on the way into the spool, or spooled.
    pub pending: u64,
    /// Whether the two sides are equal (always, unless events are lost track of).
    pub balanced: bool,
}

impl Default for Accounting {
    /// Nothing emitted, nothing settled: balanced.
    fn default() -> Self {
        Accounting::new(0, 0, 0, 0, 0, 0, 0)
    }
}

impl Accounting {
    /// The terms, `balanced` computed from them.
    pub fn new(
        emitted: u64,
        delivered: u64,
        failed: u64,
        dropped: u64,
        skipped: u64,
        filtered: u64,
        pending: u64,
    ) -> Accounting {
        let settled = [delivered, failed, dropped, skipped, filtered, pending]
            .iter()
            .fold(0u64, |sum, n| sum.saturating_add(*n));
        Accounting {
            emitted,
            delivered,
            failed,
            dropped,
            skipped,
            filtered,
            pending,
            balanced: settled == emitted,
        }
    }
}

impl Accounting {
    /// Every accounting of `all` added up; balanced when each is.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Accounting>) -> Accounting {
        all.into_iter()
            .fold(Accounting::default(), |t, a| Accounting {
                emitted: t.emitted + a.emitted,
                delivered: t.delivered + a.delivered,
                failed: t.failed + a.failed,
                dropped: t.dropped + a.dropped,
                skipped: t.skipped + a.skipped,
                filtered: t.filtered + a.filtered,
                pending: t.pending + a.pending,
                balanced: t.balanced && a.balanced,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_is_computed_and_sums_keep_it() {
        let a = Accounting::new(10, 4, 1, 1, 1, 1, 2);
        assert!(a.balanced);
        let off = Accounting::new(10, 4, 1, 1, 1, 1, 1);
        assert!(!off.balanced);
        let both = Accounting::sum([&a, &a]);
        assert_eq!((both.emitted, both.pending, both.balanced), (20, 4, true));
        assert!(!Accounting::sum([&a, &off]).balanced);
        assert!(Accounting::sum([]).balanced);
        let back: Accounting =
            serde_json::from_str(r#"{"emitted":3,"delivered":3,"balanced":true}"#).unwrap();
        assert_eq!(back, Accounting::new(3, 3, 0, 0, 0, 0, 0));
    }
}
