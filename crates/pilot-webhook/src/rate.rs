//! A webhook's rate limit: sends are spaced so the endpoint never gets more than `N` per
//! second/minute/hour, after a burst of `rate_burst` (default 1). The generic cell rate
//! algorithm on tokio's clock (so tests run on a paused clock): each send reserves the next
//! slot and waits for it; memory mode's queue and durable mode's spool hold what waits.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pilot_core::rate::RateLimit;
use tokio::time::Instant;

/// One webhook's limiter, shared by all its sends (and units in flight).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// The time between two sends at the limit.
    interval: Duration,
    /// How far ahead of the schedule a burst may go: `interval * (burst - 1)`.
    tolerance: Duration,
    /// The theoretical arrival time of the next send.
    tat: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit, burst: u32) -> Self {
        let interval = limit.interval();
        Self {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            tat: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Instant>> {
        // A single assignment is the only update: a poisoned lock still holds a valid value.
        self.tat.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the next send: when it may go (now, or later at the limit).
    pub(crate) fn reserve(&self) -> Instant {
        let now = Instant::now();
        let mut tat = self.lock();
        let scheduled = tat.unwrap_or(now).max(now);
        let go = scheduled
            .checked_sub(self.tolerance)
            .map_or(now, |earliest| earliest.max(now));
        *tat = Some(scheduled.max(go) + self.interval);
        go
    }

    /// How long a send reserved now would wait.
    pub(crate) fn current_wait(&self) -> Duration {
        let now = Instant::now();
        match *self.lock() {
            Some(tat) => tat
                .checked_sub(self.tolerance)
                .map_or(Duration::ZERO, |earliest| {
                    earliest.saturating_duration_since(now)
                }),
            None => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_sends_are_spaced() {
        let limit: RateLimit = "10/s".parse().unwrap();
        let r = RateLimiter::new(limit, 3);
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..6).map(|_| r.reserve() - t0).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(slots, [ms(0), ms(0), ms(0), ms(100), ms(200), ms(300)]);
        assert_eq!(r.current_wait(), ms(400));
        // Idle for a while: the burst is available again, no more.
        tokio::time::advance(Duration::from_secs(5)).await;
        let t1 = Instant::now();
        let slots: Vec<Duration> = (0..4).map(|_| r.reserve() - t1).collect();
        assert_eq!(slots, [ms(0), ms(0), ms(0), ms(100)]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_burst_every_send_is_one_interval_apart() {
        let r = RateLimiter::new("2/s".parse().unwrap(), 1);
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..3).map(|_| r.reserve() - t0).collect();
        assert_eq!(
            slots,
            [
                Duration::ZERO,
                Duration::from_millis(500),
                Duration::from_secs(1)
            ]
        );
    }
}
