//! An endpoint's health: whether it is paused (and waking the durable worker on resume), since
//! when every attempt has failed (for `disable_after`), and whether and why it was disabled
//! (410 Gone, `disable_after`), announced on the bus as `webhook.disabled`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

/// Paused or not, and the start of the current run of failed attempts.
#[derive(Debug, Default)]
pub(crate) struct Health {
    paused: AtomicBool,
    resumed: Notify,
    /// When the first failed attempt after the last success happened.
    failing_since: Mutex<Option<Instant>>,
}

impl Health {
    /// Pauses or resumes; a resume wakes a worker waiting in [`Health::wait_resumed`].
    pub(crate) fn set_paused(&self, on: bool) {
        self.paused.store(on, Ordering::SeqCst);
        if !on {
            self.resumed.notify_waiters();
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Returns once the endpoint is not paused.
    pub(crate) async fn wait_resumed(&self) {
        loop {
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if !self.is_paused() {
                return;
            }
            resumed.await;
        }
    }

    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A single assignment is the only update: a poisoned lock still holds a valid value.
        self.failing_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An attempt succeeded: the run of failures is over.
    pub(crate) fn succeeded(&self) {
        *self.since() = None;
    }

    /// Forgets the run of failures (a new configuration, a resume).
    pub(crate) fn reset(&self) {
        *self.since() = None;
    }

    /// An attempt failed at `now`. With `limit`, the reason to disable the endpoint once every
    /// attempt has failed for at least that long.
    pub(crate) fn failed(&self, now: Instant, limit: Option<Duration>) -> Option<String> {
        let mut since = self.since();
        let first = *since.get_or_insert(now);
        let limit = limit?;
        let failing = now.saturating_duration_since(first);
        (failing >= limit).then(|| {
            format!(
                "every attempt failed for {} (disable_after {})",
                pilot_core::duration::format(failing),
                pilot_core::duration::format(limit)
            )
        })
    }
}

/// Why and when a worker's webhook was disabled (410 Gone, `disable_after`), readable by the
/// plugin.
#[derive(Debug, Default)]
pub(crate) struct Disabled(Mutex<Option<(String, jiff::Timestamp)>>);

impl Disabled {
    fn slot(&self) -> MutexGuard<'_, Option<(String, jiff::Timestamp)>> {
        // A single assignment is the only update: a poisoned lock still holds a valid value.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, reason: String, at: jiff::Timestamp) {
        *self.slot() = Some((reason, at));
    }

    /// The reason and time, if disabled.
    pub(crate) fn get(&self) -> Option<(String, jiff::Timestamp)> {
        self.slot().clone()
    }

    pub(crate) fn is_set(&self) -> bool {
        self.slot().is_some()
    }
}

/// Publishes `webhook.disabled` {name, url, reason} (the caller has detached from the bus
/// first, so the announcement never goes to the endpoint that is disabled; the others get it).
pub(crate) fn publish_disabled(bus: &pilot_core::Bus, name: &str, shown: &str, reason: String) {
    let data = serde_json::json!({ "name": name, "url": shown, "reason": reason });
    match pilot_core::event::data_from_value(&data) {
        Ok(data) => {
            bus.publish("webhook.disabled", Some(data));
        }
        Err(e) => warn!(error = %e, "could not publish webhook.disabled"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn disables_only_after_failing_for_the_whole_limit() {
        let h = Health::default();
        let limit = Some(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(h.failed(t0, limit), None);
        assert_eq!(h.failed(t0 + Duration::from_secs(59), limit), None);
        h.succeeded();
        assert_eq!(
            h.failed(t0 + Duration::from_secs(61), limit),
            None,
            "a success restarts the run"
        );
        let reason = h.failed(t0 + Duration::from_secs(121), limit).unwrap();
        assert!(reason.contains("disable_after 1m"), "{reason}");
        assert_eq!(
            h.failed(t0 + Duration::from_secs(500), None),
            None,
            "off without a limit"
        );
    }

    #[tokio::test]
    async fn a_resume_wakes_the_waiter() {
        let h = std::sync::Arc::new(Health::default());
        h.set_paused(true);
        let waiter = tokio::spawn({
            let h = h.clone();
            async move { h.wait_resumed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        h.set_paused(false);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
