//! The webhook's accounting, checked from outside through `pilotctl info --json`: every event
//! offered to the webhook is delivered, failed, dropped, skipped, filtered or still pending.
//!
//! Every fault test ends here, so the rule lives in one place. `info`'s `accounting` block
//! must add up, and agree with the raw counters it is derived from:
//!
//! ```text
//! emitted = delivered + failed + dropped + skipped + filtered + pending
//! emitted = queued + dropped_queue_full + recovered      skipped = circuit_skips
//! pending = queue_depth + in_flight
//! ```
//!
//! (`pilot-webhook/src/stats.rs` and docs/delivery.md; the daemon reads them in one consistent
//! step, so they balance in every reply.)

use std::time::Duration;

use serde_json::Value;

use crate::Env;

/// The raw counters the cross-check reads, as they appear in `info`'s `webhook` object.
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

/// The terms of the `accounting` block.
const TERMS: [&str; 7] = [
    "emitted",
    "delivered",
    "failed",
    "dropped",
    "skipped",
    "filtered",
    "pending",
];

fn numbers<const N: usize>(obj: &Value, keys: [&str; N]) -> Result<[u64; N], String> {
    let mut n = [0u64; N];
    for (slot, key) in n.iter_mut().zip(keys) {
        *slot = obj[key]
            .as_u64()
            .ok_or_else(|| format!("counter {key} missing from {obj}"))?;
    }
    Ok(n)
}

/// Whether the accounting in `webhook` (`info`'s `webhook` object) balances and agrees with the
/// raw counters; the error says how it does not.
pub fn check(webhook: &Value) -> Result<(), String> {
    let a = &webhook["accounting"];
    let [emitted, delivered, failed, dropped, skipped, filtered, pending] = numbers(a, TERMS)?;
    let [queued, recovered, raw_delivered, raw_failed, skips, raw_filtered, raw_dropped, dropped_full, depth, in_flight] =
        numbers(webhook, COUNTERS)?;
    let settled = delivered + failed + dropped + skipped + filtered + pending;
    if emitted != settled {
        return Err(format!(
            "the webhook's accounting does not balance: emitted {emitted} != delivered + failed \
             + dropped + skipped + filtered + pending = {settled}: {webhook}"
        ));
    }
    if a["balanced"] != true {
        return Err(format!("the daemon says its accounting is off: {webhook}"));
    }
    let dead_lettered = a["dead_lettered"].as_u64().unwrap_or(0);
    if dead_lettered > failed + dropped + skipped {
        return Err(format!(
            "more events dead-lettered ({dead_lettered}) than given up on (failed + dropped + \
             skipped = {}): {webhook}",
            failed + dropped + skipped
        ));
    }
    let raw = (
        queued + dropped_full + recovered,
        raw_delivered,
        raw_failed,
        raw_dropped,
        skips,
        raw_filtered,
        depth + in_flight,
    );
    if raw
        != (
            emitted, delivered, failed, dropped, skipped, filtered, pending,
        )
    {
        return Err(format!(
            "the accounting disagrees with the raw counters (emitted = queued + \
             dropped_queue_full + recovered, pending = queue_depth + in_flight): {webhook}"
        ));
    }
    Ok(())
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
    let mut accounting = serde_json::Map::new();
    for (key, value) in line.split_whitespace().filter_map(|t| t.split_once('=')) {
        let value = match value {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            n => match n.parse::<u64>() {
                Ok(n) => n.into(),
                Err(_) => continue,
            },
        };
        if TERMS.contains(&key) || key == "balanced" {
            accounting.insert(key.to_string(), value.clone());
        }
        counters.insert(key.to_string(), value);
    }
    counters.insert("accounting".into(), Value::Object(accounting));
    Some(Value::Object(counters))
}
