//! Helpers shared by the integration tests: the receiver and stats checks.
#![allow(dead_code)]

use std::time::Duration;

use pilot_webhook::{Stats, WebhookOptions, WebhookPlugin};
use tokio::time::Instant;

/// Short options so tests run in milliseconds.
pub fn fast_options() -> WebhookOptions {
    WebhookOptions {
        queue_size: 1024,
        timeout: Duration::from_millis(200),
        max_attempts: 3,
        backoff: Duration::from_millis(10),
        circuit_threshold: 5,
        circuit_cooldown: Duration::from_millis(300),
        drain_timeout: Duration::from_millis(300),
        ..WebhookOptions::default()
    }
}

/// Waits until `check` holds for the plugin's stats (panics after 5 s).
pub async fn wait_stats(
    plugin: &WebhookPlugin,
    what: &str,
    check: impl Fn(&Stats) -> bool,
) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = plugin.stats();
        if check(&stats) {
            return stats;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; stats: {stats:#?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until nothing is queued or in flight, then checks the accounting identity.
pub async fn settled(plugin: &WebhookPlugin) -> Stats {
    let stats = wait_stats(plugin, "the queue to settle", |s| {
        s.queue_depth == 0 && s.in_flight == 0 && s.is_balanced()
    })
    .await;
    assert_balanced(&stats);
    stats
}

/// queued = delivered + failed + circuit_skips + (dropped - queue-full drops) + depth + in flight.
pub fn assert_balanced(s: &Stats) {
    assert_eq!(
        s.queued,
        s.delivered
            + s.failed
            + s.circuit_skips
            + (s.dropped - s.dropped_queue_full)
            + s.queue_depth
            + s.in_flight,
        "accounting does not balance: {s:#?}"
    );
}
