//! The plain values one scrape shows ([`Snapshot`]) and where they come from ([`Source`]).

use std::time::Duration;

/// Everything `/metrics` shows, taken at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The daemon's version (`pilot_build_info{version}`).
    pub version: String,
    /// How long the daemon has been running.
    pub uptime: Duration,
    pub bus: BusSnapshot,
    /// Every webhook endpoint, `default` first.
    pub webhooks: Vec<WebhookSnapshot>,
    /// Log lines lost (their write failed, or the log writer was behind).
    pub log_write_errors: u64,
}

/// The event bus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BusSnapshot {
    /// Events published since the daemon started.
    pub published: u64,
    /// Every live subscriber.
    pub subscribers: Vec<SubscriberSnapshot>,
}

/// One bus subscriber. Subscribers with the same label are shown summed, as one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriberSnapshot {
    /// Its label, e.g. `webhook` or `ipc subscriber (pid 4242)`.
    pub label: String,
    /// Events put into its buffer.
    pub queued: u64,
    /// Events that matched but did not fit in its buffer.
    pub dropped: u64,
    /// Events waiting in its buffer now.
    pub buffered: u64,
    /// The size of its buffer.
    pub capacity: u64,
}

/// The webhook plugin: its counters (cumulative since the daemon started, across URL changes)
/// and its state now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookSnapshot {
    /// The endpoint's name (the `webhook` label).
    pub name: String,
    /// A webhook URL is set.
    pub configured: bool,
    /// The endpoint was disabled (410 Gone, `disable_after`).
    pub disabled: bool,
    /// The endpoint is paused.
    pub paused: bool,
    pub circuit: CircuitState,
    pub queued: u64,
    pub recovered: u64,
    pub delivered: u64,
    pub failed: u64,
    pub retries: u64,
    pub dropped: u64,
    pub dropped_queue_full: u64,
    pub circuit_skips: u64,
    /// Tasks of the endpoint that ended unexpectedly (panicked).
    pub task_failures: u64,
    pub filtered: u64,
    pub queue_depth: u64,
    pub queue_capacity: u64,
    pub in_flight: u64,
    /// How long a send would wait now for the rate limit.
    pub rate_wait: Duration,
    /// The durable spool, while one is open.
    pub spool: Option<SpoolSnapshot>,
    /// Events given up on and handed to the dead-letter archive.
    pub dead_lettered: u64,
    /// The endpoint's dead letters and retained deliveries in the archive now.
    pub dead_letters: ShelfSnapshot,
    pub retained: ShelfSnapshot,
    /// Replays queued now, and delivered / failed again since the daemon started.
    pub replay_pending: u64,
    pub replay_delivered: u64,
    pub replay_failed: u64,
    /// Durations of the HTTP attempts answered with a 2xx.
    pub latency_success: Histogram,
    /// Durations of the other HTTP attempts (any other status, timeouts, connection errors).
    pub latency_failure: Histogram,
}

/// The circuit breaker's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CircuitState {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// Every state, in the order they are shown.
    pub const ALL: [CircuitState; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    /// The `state` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// One shelf of an endpoint's archive (dead letters, retained deliveries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShelfSnapshot {
    pub count: u64,
    pub bytes: u64,
    /// Entries dropped, oldest first, for size and for age.
    pub evicted_size: u64,
    pub evicted_age: u64,
}

/// The durable spool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolSnapshot {
    /// Records on disk.
    pub depth: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// The size limit in force.
    pub max_bytes: u64,
    /// Records dropped because the spool was full.
    pub dropped_full: u64,
    /// Records dropped because they were older than `discard_after`.
    pub expired: u64,
}

/// A histogram: upper bounds (seconds, ascending) and the observations per bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// The buckets' upper bounds, ascending; the `+Inf` bucket is implied.
    pub bounds: Vec<f64>,
    /// Observations per bucket, not cumulative: one per bound, then (optionally) the ones above
    /// every bound. Missing entries count as 0.
    pub counts: Vec<u64>,
    /// The sum of every observation.
    pub sum: f64,
}

impl Histogram {
    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Where the metrics come from: called once per scrape, from the server's tasks.
pub trait Source: Send + Sync + 'static {
    fn snapshot(&self) -> Snapshot;
}

impl<F> Source for F
where
    F: Fn() -> Snapshot + Send + Sync + 'static,
{
    fn snapshot(&self) -> Snapshot {
        self()
    }
}
