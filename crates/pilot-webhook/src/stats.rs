//! Delivery counters ([`Counters`], shared by the current and the draining workers, the
//! spooler and the durable worker) and the [`Stats`] snapshot the daemon shows in `info`.
//!
//! # The accounting
//! Every event *emitted* to the webhook ends in exactly one bucket:
//!
//! ```text
//! emitted = delivered + failed + dropped + skipped + filtered + pending
//! ```
//!
//! - `emitted`: the events offered to the webhook's bus subscription (every event published
//!   while a webhook is set, whatever its filters), those dropped because the queue was full
//!   included, plus the events found in the spool when the plugin opened it (`recovered`,
//!   accepted by an earlier run).
//! - `dropped`: queue full; pending when the URL was cleared, a drain ran out of time or the
//!   plugin shut down (in-memory mode); durable mode: the spool was full, an event expired, or
//!   the spool refused it.
//! - `skipped`: skipped while the circuit was open (`circuit_skips`).
//! - `pending`: in a queue (also queues still draining after a swap), in flight, on its way
//!   into the spool, or in the spool (in flight or waiting). Events left in the spool when
//!   durable delivery stops (clear, switch to in-memory, 410, shutdown) stay pending: the next
//!   durable run delivers them.
//!
//! It holds in *every* snapshot, busy or not: each change that moves events between buckets
//! is made under the shared side of one lock ([`Counters::moving`]), and a snapshot reads
//! under its exclusive side, so it never sees an event half way. The bus's own counters
//! (`queued`, queue-full `dropped`) move outside that lock, but each is read once and enters
//! both sides of the equation. The spool's part of `pending` is the plugin's own count of the
//! records it put in and took out, changed with the counters that say where they went; the
//! spool's own depth (`spool.depth`, moved by each commit a moment earlier) equals it
//! whenever no commit is on its way. Events published while no webhook is set, and `test` and
//! `redeliver`, are outside the accounting (`redeliver` shows in the delivery log only).
//!
//! The sides are independent in durable mode: `emitted` is counted by the bus (offered to the
//! spooler's subscription), and the spooler's part of `pending` is not "what is left" but the
//! events still in the subscription's buffer (offered minus handed over, both counted by the
//! bus) plus the batch the spooler measurably holds ([`SpoolerCounters::holding`], 0 once its
//! task is gone). An event acknowledged to a publisher but held by no bucket (a spooler that
//! lost it, or died holding it) makes `balanced` false.
//!
//! The older, equivalent form of the same balance (`dropped` also counts the queue-full drops,
//! which never entered the queue):
//!
//! ```text
//! queued + recovered = delivered + failed + circuit_skips + filtered
//!                    + (dropped - dropped_queue_full) + queue_depth + in_flight
//! ```
//!
//! In durable mode an event is `queued` when it enters the spooler's buffer; it stays in
//! `queue_depth` while it is on its way into the spool and while it waits in the spool, and is
//! `in_flight` while its delivery is under way (it is still on disk then). Spool losses are
//! part of `dropped`: the oldest records dropped past `max_spool_bytes`
//! ([`SpoolInfo::dropped_full`]), records older than `discard_after` ([`SpoolInfo::expired`]),
//! and events the spool refused or could not write when the spooler stopped.
//!
//! Counters count events: a batch of 10 delivered adds 10 to `delivered` (but `retries` counts
//! requests).
//!
//! [`Stats::latency`] is a histogram of the duration of every HTTP attempt the queue workers
//! make (in-memory and durable), split by outcome: one entry per request (a batch is one),
//! from the request's start to its response's status (or its error). Recording one is two
//! relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLockReadGuard};
use std::time::Duration;

use pilot_core::{SubscriberCounters, WebhookSettings};
use serde::Serialize;

use crate::circuit::CircuitState;
use pilot_spool::{Spool, SpoolerCounters};

/// The durable spool as `info` shows it (present while the plugin has a spool open, whether or
/// not durable delivery is on).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SpoolInfo {
    /// The spool file.
    pub path: String,
    /// Records on disk (waiting or in flight).
    pub depth: u64,
    /// Their stored bytes (JSON bodies + small headers; the file itself is larger).
    pub bytes: u64,
    /// The size limit in force (`max_spool_bytes`).
    pub max_bytes: u64,
    /// Records dropped since the plugin started because the spool was full (oldest first).
    pub dropped_full: u64,
    /// Records dropped since the plugin started because they were older than `discard_after`.
    pub expired: u64,
    /// Why the spool cannot be written now (the latest write failed), if it cannot.
    pub write_error: Option<String>,
}

pub use pilot_core::Accounting;

/// A snapshot of the plugin's state and counters (cumulative for the plugin's life).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// The endpoint's name.
    pub name: String,
    /// Whether the endpoint is paused.
    pub paused: bool,
    /// The URL in force, its password (if any) shown as `***`; `None` when no webhook is set.
    pub url: Option<String>,
    /// The current URL's circuit breaker.
    pub circuit: CircuitState,
    /// Events waiting in the queue (including queues still draining after a swap); in durable
    /// mode, the events waiting in the spool (or on their way into it), in flight excluded.
    pub queue_depth: u64,
    /// Capacity of the live queue (0 when no webhook is set).
    pub queue_capacity: u64,
    /// Events put into the webhook queue (in durable mode: into the spooler's buffer).
    pub queued: u64,
    /// Events found in the spool when the plugin opened it (accepted by an earlier run).
    pub recovered: u64,
    /// Events answered with a 2xx.
    pub delivered: u64,
    /// Events that failed: every attempt failed, or a 3xx/4xx, or a blocked address.
    pub failed: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Events dropped: queue full, or pending when the URL was cleared, a drain ran out of
    /// time, or the plugin shut down (in-memory mode); durable mode: the spool was full, an
    /// event expired, or the spool refused it.
    pub dropped: u64,
    /// The part of `dropped` that never entered the queue because it was full.
    pub dropped_queue_full: u64,
    /// The part of `dropped` that arrived while the endpoint was paused (in memory mode).
    pub dropped_paused: u64,
    /// How long a send would wait now for the rate limit (0 without one).
    pub rate_wait: std::time::Duration,
    /// Events skipped without an attempt while the circuit was open.
    pub circuit_skips: u64,
    /// Events the webhook's `events` / `exclude` filters left out.
    pub filtered: u64,
    /// Events taken from the queue whose delivery is under way (a batch being filled counts).
    pub in_flight: u64,
    /// The latest delivery error.
    pub last_error: Option<String>,
    /// When `last_error` happened.
    pub last_error_at: Option<jiff::Timestamp>,
    /// Why the webhook in force stopped delivering (410 Gone), until the next configure.
    pub disabled: Option<String>,
    /// When it was disabled.
    pub disabled_at: Option<jiff::Timestamp>,
    /// Whether requests are signed (at least one secret is set).
    pub signing: bool,
    /// How many signatures each request carries (more than 1 during a rotation).
    pub signatures: usize,
    /// The settings in force, header values masked; `None` when no webhook is set.
    pub settings: Option<WebhookSettings>,
    /// The durable spool, while the plugin has one open.
    pub spool: Option<SpoolInfo>,
    /// The accounting, from the same consistent reading as the counters above.
    pub accounting: Accounting,
    /// How long the queue workers' HTTP attempts took, by outcome.
    pub latency: AttemptLatency,
    /// Tasks of the endpoint (spooler, durable or in-memory worker) that ended unexpectedly.
    pub task_failures: u64,
    /// Why the endpoint is failed (a task ended unexpectedly), until it is resumed or
    /// configured again; durable emits are refused (`not_durable`) meanwhile.
    pub failure: Option<String>,
    /// The endpoint's dead letters in the archive (none without an archive).
    pub dead_letters: Option<ShelfInfo>,
    /// Its retained deliveries (none unless it retains).
    pub retained: Option<ShelfInfo>,
    /// Its replays.
    pub replay: ReplayInfo,
    /// Archive writes that failed (their events are not kept).
    pub archive_write_errors: u64,
}

/// One shelf of an endpoint's archive, as `info` shows it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ShelfInfo {
    /// Entries held and their stored bytes.
    pub count: u64,
    pub bytes: u64,
    /// The bounds in force.
    pub max_bytes: u64,
    pub retention: Duration,
    /// Entries dropped (oldest first) for size, and for age (lifetime).
    pub evicted_size: u64,
    pub evicted_age: u64,
}

/// An endpoint's replays: queued (on disk), and settled since the plugin started.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ReplayInfo {
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
    pub filtered: u64,
}

/// The upper bounds, in nanoseconds, of the attempt latency histogram's buckets: from a
/// loopback answer (0.5 ms) to a slow endpoint across the internet (30 s); one more bucket
/// holds everything slower (and every timeout longer than 30 s).
const LATENCY_BOUNDS_NANOS: [u64; 15] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// The durations of the queue workers' HTTP attempts: those answered with a 2xx, and the rest
/// (any other status, a timeout, a connection or TLS error, a blocked address).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AttemptLatency {
    pub success: LatencyHistogram,
    pub failure: LatencyHistogram,
}

/// A snapshot of one latency histogram (by default: the buckets in use, all empty).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyHistogram {
    /// The buckets' upper bounds in seconds, ascending.
    pub bounds: Vec<f64>,
    /// Attempts per bucket (not cumulative): `counts[i]` took at most `bounds[i]` and more than
    /// the bound before; the last entry (one past `bounds`) took longer than every bound.
    pub counts: Vec<u64>,
    /// The sum of every attempt's duration, in seconds.
    pub sum_seconds: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            bounds: LATENCY_BOUNDS_NANOS
                .iter()
                .map(|&n| n as f64 / 1e9)
                .collect(),
            counts: vec![0; LATENCY_BOUNDS_NANOS.len() + 1],
            sum_seconds: 0.0,
        }
    }
}

impl LatencyHistogram {
    /// The number of attempts.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Where the workers record attempt latencies: per outcome, one counter per bucket and the sum.
#[derive(Debug, Default)]
pub(crate) struct LatencyRecorder {
    success: Buckets,
    failure: Buckets,
}

#[derive(Debug, Default)]
struct Buckets {
    counts: [AtomicU64; LATENCY_BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyRecorder {
    /// Counts one attempt that took `took` (a 2xx if `ok`).
    pub(crate) fn record(&self, took: Duration, ok: bool) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        let b = if ok { &self.success } else { &self.failure };
        b.counts[bucket].fetch_add(1, Ordering::Relaxed);
        b.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn snapshot(&self) -> AttemptLatency {
        AttemptLatency {
            success: self.success.snapshot(),
            failure: self.failure.snapshot(),
        }
    }
}

impl Buckets {
    fn snapshot(&self) -> LatencyHistogram {
        LatencyHistogram {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            ..LatencyHistogram::default()
        }
    }
}

impl Stats {
    /// Whether every queued (or recovered) event is accounted for, checked on the counters
    /// themselves (the same balance as [`Accounting::balanced`]); see the module docs.
    pub fn is_balanced(&self) -> bool {
        let settled = self.delivered
            + self.failed
            + self.circuit_skips
            + self.filtered
            + self.dropped.saturating_sub(self.dropped_queue_full)
            + self.queue_depth
            + self.in_flight;
        self.queued + self.recovered == settled
    }
}

/// The counters, shared by every worker the plugin ever ran.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Spool records removed after they settled (delivered, failed, filtered) or expired.
    pub(crate) spool_removed: AtomicU64,
    /// Given to the bus for every subscription: `queued` and queue-full `dropped`.
    pub(crate) bus: Arc<SubscriberCounters>,
    /// Events taken out of a queue, by a worker or by discarding.
    pub(crate) taken: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retries: AtomicU64,
    /// Dropped after entering the queue (clear, drain timeout, shutdown, paused).
    pub(crate) dropped: AtomicU64,
    /// The part of `dropped` that arrived while the endpoint was paused (in memory mode).
    pub(crate) dropped_paused: AtomicU64,
    pub(crate) circuit_skips: AtomicU64,
    pub(crate) filtered: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    /// Given to the bus for every durable subscription (the spooler's buffer).
    pub(crate) durable_bus: Arc<SubscriberCounters>,
    /// Every spooler's progress.
    pub(crate) spooler: Arc<SpoolerCounters>,
    /// Spooled records whose delivery is under way.
    pub(crate) durable_in_flight: AtomicU64,
    /// Records in the spool when the plugin opened it.
    pub(crate) recovered: AtomicU64,
    /// Records removed by `discard_after`.
    pub(crate) expired: AtomicU64,
    /// The queue workers' attempt latencies.
    pub(crate) latency: LatencyRecorder,
    /// Tasks of the plugin (spooler, workers) that ended unexpectedly (see `crate::supervise`).
    pub(crate) task_failures: AtomicU64,
    /// Events given up on and handed to the dead-letter archive (see `crate::keeper`). Always
    /// added after the counter that gave them up, so never ahead of it.
    pub(crate) dead_lettered: AtomicU64,
    /// Replays delivered, failed again, and left out by the filters (see `crate::replay`);
    /// outside the accounting, like `test` and `redeliver`.
    pub(crate) replay_delivered: AtomicU64,
    pub(crate) replay_failed: AtomicU64,
    pub(crate) replay_filtered: AtomicU64,
    /// Why the endpoint is failed (a task of it ended unexpectedly), until it is restarted.
    failure: Mutex<Option<String>>,
    last_error: Mutex<Option<(String, jiff::Timestamp)>>,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Takes `n` from a counter.
pub(crate) fn sub(counter: &AtomicU64, n: u64) {
    counter.fetch_sub(n, Ordering::Relaxed);
}

impl Counters {
    /// Held while counters that move events between buckets change together, so a snapshot
    /// never sees an event half way (the spooler's [`SpoolerCounters::moving`], the same lock).
    /// Never held across an `.await` (the guard is not `Send`).
    pub(crate) fn moving(&self) -> RwLockReadGuard<'_, ()> {
        self.spooler.moving()
    }

    /// Records the latest error with the current time.
    pub(crate) fn set_last_error(&self, message: String) {
        let mut slot = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some((message, jiff::Timestamp::now()));
    }

    /// Marks the endpoint failed (a task of it ended unexpectedly).
    pub(crate) fn set_failure(&self, reason: String) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Clears the failure (the endpoint's tasks were started again); whether it was failed.
    pub(crate) fn clear_failure(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
    }

    /// Why the endpoint is failed, if it is.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts `n` events taken from a queue and dropped without an attempt.
    pub(crate) fn discard(&self, n: u64) {
        let _moving = self.moving();
        self.taken.fetch_add(n, Ordering::Relaxed);
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters part of a [`Stats`] (url, circuit and capacity are left default), with
    /// the spool's part when the plugin has one open.
    pub(crate) fn snapshot(&self, spool: Option<&Spool>) -> Stats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (last_error, last_error_at) =
            match &*self.last_error.lock().unwrap_or_else(|p| p.into_inner()) {
                Some((m, t)) => (Some(m.clone()), Some(*t)),
                None => (None, None),
            };
        let spool_stats = spool.map(|s| (s, s.stats()));
        // No event moves between buckets while this is held (the bus's counters may: each is
        // read once and counts on both sides).
        let exclusive = self.spooler.exclusive();
        // Read first: it never runs ahead of the give-ups read after it.
        let dead_lettered = load(&self.dead_lettered) + load(&self.spooler.kept_full);
        let delivered = load(&self.delivered);
        let failed = load(&self.failed);
        let circuit_skips = load(&self.circuit_skips);
        let filtered = load(&self.filtered);
        let expired = load(&self.expired);
        let dropped_full = load(&self.spooler.dropped_full);
        let refused = load(&self.spooler.refused);
        let dropped_after = load(&self.dropped) + expired + dropped_full + refused;
        let retries = load(&self.retries);
        let durable_in_flight = load(&self.durable_in_flight);
        let in_flight = load(&self.in_flight) + durable_in_flight;
        let holding = load(&self.spooler.holding);
        let taken = load(&self.taken);
        let recovered = load(&self.recovered);
        let spool_depth = (recovered + load(&self.spooler.appended))
            .saturating_sub(load(&self.spooler.evicted) + load(&self.spool_removed));
        let memory_queued = load(&self.bus.queued);
        let durable_queued = load(&self.durable_bus.queued);
        let durable_received = load(&self.durable_bus.received);
        let dropped_queue_full = load(&self.bus.dropped) + load(&self.durable_bus.dropped);
        drop(exclusive);
        let queued = memory_queued + durable_queued;
        let memory_depth = memory_queued.saturating_sub(taken);
        // Counted by the bus (offered, handed over) and measured by the spooler (held): not
        // derived from what was settled, so an event the spooler lost shows.
        let on_the_way = durable_queued.saturating_sub(durable_received) + holding;
        let waiting = spool_depth.saturating_sub(durable_in_flight);
        let dropped = dropped_after + dropped_queue_full;
        let queue_depth = memory_depth + on_the_way + waiting;
        Stats {
            queue_depth,
            queued,
            recovered,
            delivered,
            failed,
            retries,
            dropped,
            dropped_queue_full,
            dropped_paused: load(&self.dropped_paused),
            circuit_skips,
            filtered,
            in_flight,
            last_error,
            last_error_at,
            spool: spool_stats.map(|(s, st)| SpoolInfo {
                path: s.path().display().to_string(),
                depth: st.depth,
                bytes: st.bytes,
                max_bytes: s.limits().max_bytes,
                dropped_full,
                expired,
                write_error: s.write_error(),
            }),
            accounting: Accounting::new(
                queued + dropped_queue_full + recovered,
                delivered,
                failed,
                dropped,
                circuit_skips,
                filtered,
                queue_depth + in_flight,
            )
            .with_dead_lettered(dead_lettered),
            latency: self.latency.snapshot(),
            task_failures: load(&self.task_failures),
            failure: self.failure(),
            ..Stats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_counts_every_bucket() {
        let mut s = Stats {
            queued: 20,
            delivered: 5,
            failed: 4,
            circuit_skips: 3,
            filtered: 2,
            dropped: 7,
            dropped_queue_full: 4,
            queue_depth: 2,
            in_flight: 1,
            ..Stats::default()
        };
        assert!(s.is_balanced());
        s.recovered += 3;
        assert!(!s.is_balanced());
        s.queue_depth += 3;
        assert!(s.is_balanced(), "recovered events count like queued ones");
        s.filtered += 1;
        assert!(!s.is_balanced());
        s.filtered -= 1;
        s.queued += 1;
        assert!(!s.is_balanced());
    }

    #[test]
    fn snapshot_counts_filtered_and_queue_depth() {
        let c = Counters::default();
        add(&c.bus.queued, 6);
        add(&c.bus.dropped, 2);
        add(&c.taken, 5);
        add(&c.filtered, 2);
        add(&c.delivered, 2);
        bump(&c.in_flight);
        let s = c.snapshot(None);
        assert_eq!((s.queue_depth, s.filtered, s.dropped), (1, 2, 2));
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(
            s.accounting,
            Accounting::new(8, 2, 0, 2, 0, 2, 2),
            "emitted counts the queue-full drops"
        );
        assert!(s.accounting.balanced);
    }

    #[test]
    fn the_spool_part_follows_what_went_in_and_out() {
        let c = Counters::default();
        // 3 recovered, 10 into the spooler's buffer: 8 written, 1 incoming and 1 stored
        // dropped for space, 1 refused; 2 delivered, 1 expired, 1 in flight.
        add(&c.recovered, 3);
        add(&c.durable_bus.queued, 10);
        add(&c.durable_bus.received, 10);
        add(&c.spooler.settled, 10);
        add(&c.spooler.appended, 8);
        add(&c.spooler.dropped_full, 2);
        add(&c.spooler.evicted, 1);
        add(&c.spooler.refused, 1);
        add(&c.delivered, 2);
        add(&c.expired, 1);
        add(&c.spool_removed, 3);
        add(&c.durable_in_flight, 1);
        let s = c.snapshot(None);
        // On disk: 3 + 8 - 1 - 3 = 7, one of them in flight.
        assert_eq!((s.queue_depth, s.in_flight), (6, 1));
        assert_eq!(s.accounting, Accounting::new(13, 2, 0, 4, 0, 0, 7));
        assert!(s.accounting.balanced && s.is_balanced(), "{s:#?}");
    }

    #[test]
    fn an_event_the_spooler_took_and_lost_unbalances_the_accounting() {
        let c = Counters::default();
        // The bus offered 5 and handed 4 over (1 still buffered); the spooler holds 1 and
        // wrote 2: one of the 4 is in no bucket.
        add(&c.durable_bus.queued, 5);
        add(&c.durable_bus.received, 4);
        add(&c.spooler.holding, 1);
        add(&c.spooler.settled, 2);
        add(&c.spooler.appended, 2);
        let s = c.snapshot(None);
        assert_eq!(s.accounting.emitted, 5);
        assert_eq!(s.accounting.pending, 4, "1 buffered + 1 held + 2 spooled");
        assert!(!s.accounting.balanced, "{:?}", s.accounting);
        add(&c.spooler.holding, 1);
        assert!(c.snapshot(None).accounting.balanced, "found again");
    }

    #[test]
    fn no_snapshot_sees_an_event_half_way() {
        // Publishers and workers move events through every bucket while a reader takes
        // snapshots: each one balances, however the threads interleave.
        let c = Arc::new(Counters::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let movers: Vec<_> = (0..3)
            .map(|i| {
                let (c, stop) = (c.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        bump(&c.bus.queued); // the bus, before the send
                        let moving = c.moving();
                        bump(&c.taken);
                        bump(&c.in_flight);
                        drop(moving);
                        let _moving = c.moving();
                        sub(&c.in_flight, 1);
                        bump(if i == 0 { &c.delivered } else { &c.failed });
                    }
                })
            })
            .collect();
        for _ in 0..20_000 {
            let s = c.snapshot(None);
            assert!(s.accounting.balanced, "{:?}", s.accounting);
        }
        stop.store(true, Ordering::Relaxed);
        for m in movers {
            m.join().unwrap();
        }
    }

    #[test]
    fn latency_lands_in_the_smallest_bucket_that_holds_it() {
        let r = LatencyRecorder::default();
        r.record(Duration::from_micros(500), true); // on a bound: that bucket
        r.record(Duration::from_micros(501), true);
        r.record(Duration::ZERO, true);
        r.record(Duration::from_secs(31), false); // past every bound
        r.record(Duration::from_millis(30_000), false);
        r.record(Duration::MAX, false);
        assert_eq!(
            LatencyRecorder::default().snapshot(),
            AttemptLatency::default(),
            "nothing recorded: the default"
        );
        let l = r.snapshot();
        assert_eq!(l.success.bounds.len(), 15);
        assert_eq!(l.success.bounds[0], 0.0005);
        assert_eq!(l.success.bounds[14], 30.0);
        assert_eq!(l.success.counts.len(), 16);
        assert_eq!(&l.success.counts[..3], &[2, 1, 0]);
        assert_eq!(l.success.count(), 3);
        assert!((l.success.sum_seconds - 0.001001).abs() < 1e-12);
        assert_eq!((l.failure.counts[14], l.failure.counts[15]), (1, 2));
        assert_eq!(l.failure.count(), 3);
    }
}
