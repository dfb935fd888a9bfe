//! The webhook's accounting, checked from outside through `pilotctl info --json`: every event
//! the webhook took is delivered, failed, skipped, filtered, dropped or still pending.
//!
//! Every fault test ends here, so the rule lives in one place:
//!
//! ```text
//! queued + recovered = delivered + failed + circuit_skips + filtered
//!                    + (dropped - dropped_queue_full) + queue_depth + in_flight
//! ```
//!
//! (`pilot-webhook/src/stats.rs`; exact at a quiet moment, when nothing is moving.)

use std::time::Duration;

use serde_json::Value;

use crate::Env;

/// The counters the rule reads, as they appear in `info`'s `webhook` object.
pub const COUNTERS: [&str; 10] = [
    "queued",
    "recovered",
    "delivered",
    "failed",
    "circuit_skips",
    "filtered",
    "dropped",
    "dropped_queue_full",
    "queue_depth",
    "in_flight",
];

/// Whether the counters in `webhook` (an object holding [`COUNTERS`]) balance; the error says
/// how they do not.
pub fn check(webhook: &Value) -> Result<(), String> {
    let mut n = [0u64; COUNTERS.len()];
    for (slot, key) in n.iter_mut().zip(COUNTERS) {
        *slot = webhook[key]
            .as_u64()
            .ok_or_else(|| format!("counter {key} missing from {webhook}"))?;
    }
    let [queued, recovered, delivered, failed, skips, filtered, dropped, dropped_full, depth, in_flight] =
        n;
    let taken = queued + recovered;
    let settled = delivered
        + failed
        + skips
        + filtered
        + dropped.saturating_sub(dropped_full)
        + depth
        + in_flight;
    if taken == settled {
        Ok(())
    } else {
        Err(format!(
            "the webhook's counters do not balance: queued + recovered = {taken}, \
             delivered + failed + circuit_skips + filtered + (dropped - dropped_queue_full) \
             + queue_depth + in_flight = {settled}: {webhook}"
        ))
    }
}

/// Asserts that `info` (the data of `pilotctl info --json`) balances; returns its `webhook`.
pub fn assert_balanced(info: &Value) -> Value {
    let w = info["webhook"].clone();
    if let Err(e) = check(&w) {
        panic!("{e}");
    }
    w
}

/// Waits until the running daemon's counters balance (they are exact only once nothing is
/// moving), then returns its `webhook` object; panics with the last mismatch after `timeout`.
pub fn wait_balanced(env: &Env, timeout: Duration) -> Value {
    let mut last = Err(String::new());
    let mut w = Value::Null;
    crate::wait_until(timeout, || {
        w = env.info()["webhook"].clone();
        last = check(&w);
        last.is_ok()
    });
    if let Err(e) = last {
        panic!("{e}");
    }
    w
}

/// The counters of the daemon's last `pilot-daemon stopped` log line (written after the
/// webhook drained), as an object [`check`] reads; `None` when the log has no such line.
pub fn from_stop_line(log: &str) -> Option<Value> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("pilot-daemon stopped"))?;
    let mut counters = serde_json::Map::new();
    for (key, value) in line.split_whitespace().filter_map(|t| t.split_once('=')) {
        if let Ok(n) = value.parse::<u64>() {
            counters.insert(key.to_string(), n.into());
        }
    }
    Some(Value::Object(counters))
}
