//! The accounting of one webhook (or of several, added up): where every event offered to it
//! went. `emitted = delivered + failed + dropped + skipped + filtered + pending`, and whether
//! the two sides are equal. One type, shared by the webhook plugin's stats, the control
//! protocol's `info` and pilotctl.
//!
//! Beside the equation, `dead_lettered` says how many of the events given up on (`failed +
//! dropped + skipped`) were handed to the dead-letter archive: never more than those, and equal
//! to them whenever every give-up could be kept (an event that met a full archive inbox, or an
//! archive that could not be written, is counted in the first and not in the second).

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
    /// Of `failed + dropped + skipped`, the events handed to the dead-letter archive.
    pub dead_lettered: u64,
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
            dead_lettered: 0,
            balanced: settled == emitted,
        }
    }

    /// With `dead_lettered`, checked against the events given up on: `balanced` stays true
    /// only if it is not more than `failed + dropped + skipped`.
    pub fn with_dead_lettered(mut self, dead_lettered: u64) -> Accounting {
        self.dead_lettered = dead_lettered;
        self.balanced &= dead_lettered <= self.given_up();
        self
    }

    /// The events given up on: `failed + dropped + skipped`.
    pub fn given_up(&self) -> u64 {
        self.failed
            .saturating_add(self.dropped)
            .saturating_add(self.skipped)
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
                dead_lettered: t.dead_lettered + a.dead_lettered,
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
        let kept = Accounting::new(10, 4, 1, 1, 1, 1, 2).with_dead_lettered(3);
        assert!(kept.balanced && kept.given_up() == 3);
        assert!(
            !Accounting::new(10, 4, 1, 1, 1, 1, 2)
                .with_dead_lettered(4)
                .balanced
        );
        assert_eq!(Accounting::sum([&kept, &kept]).dead_lettered, 6);
        let back: Accounting =
            serde_json::from_str(r#"{"emitted":3,"delivered":3,"balanced":true}"#).unwrap();
        assert_eq!(back, Accounting::new(3, 3, 0, 0, 0, 0, 0));
    }
}
