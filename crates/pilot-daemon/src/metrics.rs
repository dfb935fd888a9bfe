//! What `/metrics` shows, taken from the daemon: every endpoint's [`Stats`] and the bus's
//! counters, copied into the metrics plugin's plain [`Snapshot`] on every scrape.

use pilot_metrics::{
    BusSnapshot, CircuitState, Histogram, ShelfSnapshot, Snapshot, SpoolSnapshot,
    SubscriberSnapshot, WebhookSnapshot,
};
use pilot_webhook::{LatencyHistogram, Stats};

use crate::state::Daemon;

/// A snapshot of `daemon` now.
pub fn snapshot(daemon: &Daemon) -> Snapshot {
    Snapshot {
        version: pilot_core::VERSION.to_string(),
        uptime: daemon.started.elapsed(),
        bus: BusSnapshot {
            published: daemon.bus.published(),
            subscribers: daemon
                .bus
                .subscribers()
                .into_iter()
                .map(|s| SubscriberSnapshot {
                    label: s.label,
                    queued: s.queued,
                    dropped: s.dropped,
                    buffered: s.buffered as u64,
                    capacity: s.capacity as u64,
                })
                .collect(),
        },
        webhooks: daemon
            .endpoints
            .all()
            .into_iter()
            .map(|(_, e)| webhook(e.plugin.stats()))
            .collect(),
        log_write_errors: crate::logging::write_errors(),
    }
}

fn webhook(s: Stats) -> WebhookSnapshot {
    WebhookSnapshot {
        name: s.name,
        configured: s.url.is_some(),
        disabled: s.disabled.is_some(),
        paused: s.paused,
        circuit: match s.circuit {
            pilot_webhook::CircuitState::Closed => CircuitState::Closed,
            pilot_webhook::CircuitState::Open => CircuitState::Open,
            pilot_webhook::CircuitState::HalfOpen => CircuitState::HalfOpen,
        },
        queued: s.queued,
        recovered: s.recovered,
        delivered: s.delivered,
        failed: s.failed,
        retries: s.retries,
        dropped: s.dropped,
        dropped_queue_full: s.dropped_queue_full,
        circuit_skips: s.circuit_skips,
        task_failures: s.task_failures,
        filtered: s.filtered,
        queue_depth: s.queue_depth,
        queue_capacity: s.queue_capacity,
        in_flight: s.in_flight,
        rate_wait: s.rate_wait,
        spool: s.spool.map(|sp| SpoolSnapshot {
            depth: sp.depth,
            bytes: sp.bytes,
            max_bytes: sp.max_bytes,
            dropped_full: sp.dropped_full,
            expired: sp.expired,
        }),
        dead_lettered: s.accounting.dead_lettered,
        dead_letters: shelf(s.dead_letters),
        retained: shelf(s.retained),
        replay_pending: s.replay.pending,
        replay_delivered: s.replay.delivered,
        replay_failed: s.replay.failed,
        latency_success: histogram(s.latency.success),
        latency_failure: histogram(s.latency.failure),
    }
}

fn shelf(s: Option<pilot_webhook::ShelfInfo>) -> ShelfSnapshot {
    s.map(|s| ShelfSnapshot {
        count: s.count,
        bytes: s.bytes,
        evicted_size: s.evicted_size,
        evicted_age: s.evicted_age,
    })
    .unwrap_or_default()
}

fn histogram(h: LatencyHistogram) -> Histogram {
    Histogram {
        bounds: h.bounds,
        counts: h.counts,
        sum: h.sum_seconds,
    }
}
