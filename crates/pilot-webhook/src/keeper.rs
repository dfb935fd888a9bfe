//! The keeper: hands what an endpoint gives up on (dead letters) and, with `retain`, what it
//! delivers to the archive ([`pilot_spool::Archive`]), so nothing an endpoint drops is gone.
//!
//! Handing over never waits: entries go into a bounded inbox, and one writer task per endpoint
//! commits them in groups (one transaction per group), applies the endpoint's bounds (size at
//! every write, age every quarter of the retention) and answers [`Keeper::flush`] once what
//! was handed before it is written. Events the bus could not queue (queue full) come to the
//! same task through the subscription's overflow channel. An inbox that is full (the archive
//! cannot keep up, or its disk fails) loses the entries: the accounting shows it
//! (`dead_lettered` below `failed + dropped + skipped`), and a failed write is logged and
//! counted in [`Keeper::write_errors`].
//!
//! Without an archive (a plugin embedded without one) nothing is kept and nothing is counted
//! as dead-lettered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pilot_core::{Event, WebhookSettings};
use pilot_spool::{Archive, ArchiveLimits, ArchivedEvent, Shelf, SpoolRecord};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::batch::{self, Item};
use crate::stats::{add, Counters};

/// Messages the inbox holds (each carries the events of one give-up or one delivery).
const INBOX: usize = 4096;
/// Events the bus's overflow channel holds (queue-full drops on their way to the archive).
const OVERFLOW: usize = 16 * 1024;
/// The most events written in one transaction.
const GROUP: usize = 1024;
/// How often the age bounds are applied at most / at least.
const EXPIRE_MIN: Duration = Duration::from_millis(50);
const EXPIRE_MAX: Duration = Duration::from_secs(60);

/// Why an endpoint gave up on an event: the dead letter's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every attempt failed, or a failure that is not retried (4xx, blocked address, template).
    Failed,
    /// Skipped while the circuit was open.
    CircuitOpen,
    /// The endpoint's queue was full.
    QueueFull,
    /// Arrived while the endpoint was paused (in memory mode).
    Paused,
    /// Still queued when the endpoint stopped (cleared, removed, shut down, disabled).
    Stopped,
    /// In flight, or in a batch being filled, when delivery was aborted (a clear, a drain
    /// past its bound).
    Aborted,
    /// In the spool when the endpoint was removed with `--force`.
    Removed,
    /// In the spool longer than `discard_after`.
    Expired,
    /// Dropped, oldest first, by a durable spool past `--max-spool-bytes`.
    SpoolFull,
    /// Replayed and failed again.
    ReplayFailed,
}

impl Reason {
    /// Every reason, as the CLI accepts them.
    pub const ALL: [Reason; 10] = [
        Reason::Failed,
        Reason::CircuitOpen,
        Reason::QueueFull,
        Reason::Paused,
        Reason::Stopped,
        Reason::Aborted,
        Reason::Removed,
        Reason::Expired,
        Reason::SpoolFull,
        Reason::ReplayFailed,
    ];

    /// The reason as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Failed => "failed",
            Reason::CircuitOpen => "circuit_open",
            Reason::QueueFull => "queue_full",
            Reason::Paused => "paused",
            Reason::Stopped => "stopped",
            Reason::Aborted => "aborted",
            Reason::Removed => "removed",
            Reason::Expired => "expired",
            Reason::SpoolFull => "spool_full",
            Reason::ReplayFailed => "replay_failed",
        }
    }

    /// The reason named `s`, if any.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The bounds of an endpoint's two shelves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) dead: ArchiveLimits,
    /// `None`: delivered events are not retained.
    pub(crate) retained: Option<ArchiveLimits>,
}

impl Bounds {
    /// The bounds `settings` ask for.
    pub(crate) fn of(settings: &WebhookSettings) -> Bounds {
        Bounds {
            dead: ArchiveLimits {
                max_bytes: settings.dead_letter_max_bytes_or_default(),
                max_age: settings.dead_letter_retention_or_default(),
            },
            retained: settings.retain.map(|max_age| ArchiveLimits {
                max_bytes: settings
                    .retain_max_bytes_or_default()
                    .unwrap_or(ArchiveLimits::DEFAULT_MAX_BYTES),
                max_age,
            }),
        }
    }

    /// How often the age bounds are applied: a quarter of the shortest retention.
    fn expire_every(&self) -> Duration {
        let shortest = self
            .retained
            .map_or(self.dead.max_age, |r| r.max_age.min(self.dead.max_age));
        (shortest / 4).clamp(EXPIRE_MIN, EXPIRE_MAX)
    }

    fn of_shelf(&self, shelf: Shelf) -> Option<ArchiveLimits> {
        match shelf {
            Shelf::Dead => Some(self.dead),
            Shelf::Retained => self.retained,
        }
    }
}

enum Msg {
    Put(Shelf, Vec<ArchivedEvent>),
    Flush(oneshot::Sender<()>),
    /// The bounds changed: apply them now and time the age bounds from them.
    Bounds,
}

/// Writes entries to one endpoint's shelves now, within its bounds (a blocking call); shared
/// with the spool's eviction hook, which has no keeper to hold.
#[derive(Clone)]
pub(crate) struct Sink {
    name: String,
    archive: Option<Arc<Archive>>,
    bounds: Arc<RwLock<Bounds>>,
    write_errors: Arc<AtomicU64>,
}

impl Sink {
    /// The bounds in force.
    fn bounds(&self) -> Bounds {
        *self.bounds.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts and logs a failed archive call.
    fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        warn!(webhook = %self.name, error = %error, "archive {what} failed");
    }

    /// Drops the entries older than each shelf's retention (counted by the archive).
    fn expire(&self) {
        let Some(archive) = &self.archive else { return };
        let bounds = self.bounds();
        for shelf in [Shelf::Dead, Shelf::Retained] {
            let Some(limits) = bounds.of_shelf(shelf) else {
                continue;
            };
            if let Err(e) = archive.expire(shelf, &self.name, limits.max_age, now_ms()) {
                self.failed("expiry", &e);
            }
        }
    }

    /// Writes `entries` to `shelf`; how many were written. Failures are logged and counted.
    pub(crate) fn put(&self, shelf: Shelf, entries: &[ArchivedEvent]) -> u64 {
        let (Some(archive), Some(limits)) = (&self.archive, self.bounds().of_shelf(shelf)) else {
            return 0;
        };
        if entries.is_empty() {
            return 0;
        }
        match archive.put(shelf, &self.name, entries, limits) {
            Ok(_) => entries.len() as u64,
            Err(e) => {
                self.failed("write", &e);
                0
            }
        }
    }

    /// Keeps spooled `records` as dead letters for `reason` (ids `msg_<node>_<event_id>`).
    pub(crate) fn put_records(&self, records: &[SpoolRecord], node: u32, reason: Reason) -> u64 {
        let items: Vec<Item> = records.iter().cloned().map(Item::of_record).collect();
        let id = |item: &Item| format!("msg_{node}_{}", item.event_id);
        self.put(Shelf::Dead, &entries(&items, &id, reason.as_str(), None, 0))
    }
}

/// One endpoint's keeper (see the module docs).
pub(crate) struct Keeper {
    sink: Sink,
    tx: Option<mpsc::Sender<Msg>>,
    overflow: Option<mpsc::Sender<Arc<Event>>>,
    /// Whether delivered events are retained (read on every delivery: no lock).
    retaining: std::sync::atomic::AtomicBool,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("name", &self.sink.name)
            .field("archive", &self.sink.archive)
            .finish_non_exhaustive()
    }
}

impl Keeper {
    /// The keeper of endpoint `name` (its writer task on `runtime`); with no archive, one that
    /// keeps nothing. `instance` makes the `webhook-id` of a queue-full event (never sent).
    pub(crate) fn start(
        name: &str,
        archive: Option<Arc<Archive>>,
        counters: Arc<Counters>,
        instance: &str,
        runtime: &Handle,
    ) -> Keeper {
        let sink = Sink {
            name: name.to_string(),
            archive,
            bounds: Arc::new(RwLock::new(Bounds::default())),
            write_errors: Arc::new(AtomicU64::new(0)),
        };
        let mut keeper = Keeper {
            sink: sink.clone(),
            tx: None,
            overflow: None,
            retaining: std::sync::atomic::AtomicBool::new(false),
            counters: counters.clone(),
        };
        if sink.archive.is_some() {
            let (tx, rx) = mpsc::channel(INBOX);
            let (otx, orx) = mpsc::channel(OVERFLOW);
            let writer = Writer {
                sink,
                counters,
                instance: instance.to_string(),
            };
            runtime.spawn(writer.run(rx, orx));
            keeper.tx = Some(tx);
            keeper.overflow = Some(otx);
        }
        keeper
    }

    /// The channel the bus sends queue-full events to (none without an archive).
    pub(crate) fn overflow(&self) -> Option<mpsc::Sender<Arc<Event>>> {
        self.overflow.clone()
    }

    /// The archive, if the endpoint has one.
    pub(crate) fn archive(&self) -> Option<&Arc<Archive>> {
        self.sink.archive.as_ref()
    }

    /// Applies the bounds `settings` ask for from now on.
    pub(crate) fn configure(&self, settings: &WebhookSettings) {
        let bounds = Bounds::of(settings);
        self.retaining
            .store(bounds.retained.is_some(), Ordering::Relaxed);
        let old = std::mem::replace(
            &mut *self.sink.bounds.write().unwrap_or_else(|p| p.into_inner()),
            bounds,
        );
        if old != bounds {
            if let Some(tx) = &self.tx {
                let _ = tx.try_send(Msg::Bounds);
            }
        }
    }

    pub(crate) fn bounds(&self) -> Bounds {
        self.sink.bounds()
    }

    /// Archive writes that failed (their entries are lost).
    pub(crate) fn write_errors(&self) -> u64 {
        self.sink.write_errors.load(Ordering::Relaxed)
    }

    /// Hands `items` over as dead letters, after the caller counted them as failed, dropped
    /// or skipped; counts what was handed as `dead_lettered`. `webhook_id` gives each item's
    /// id. Never waits.
    pub(crate) fn dead(
        &self,
        items: &[Item],
        webhook_id: &dyn Fn(&Item) -> String,
        reason: Reason,
        error: Option<&str>,
        attempts: u32,
    ) {
        if items.is_empty() {
            return;
        }
        let entries = entries(items, webhook_id, reason.as_str(), error, attempts);
        if self.send(Shelf::Dead, entries) {
            add(&self.counters.dead_lettered, items.len() as u64);
        }
    }

    /// Hands delivered `items` over for retention, when the endpoint retains.
    pub(crate) fn delivered(&self, items: &[Item], webhook_id: &dyn Fn(&Item) -> String) {
        if items.is_empty() || !self.retaining.load(Ordering::Relaxed) {
            return;
        }
        let entries = entries(items, webhook_id, "delivered", None, 0);
        self.send(Shelf::Retained, entries);
    }

    /// The entries to retain of delivered `items`: none unless the endpoint retains.
    pub(crate) fn retained_entries(
        &self,
        items: &[Item],
        webhook_id: &dyn Fn(&Item) -> String,
    ) -> Vec<ArchivedEvent> {
        if self.tx.is_none() || !self.retaining.load(Ordering::Relaxed) {
            return Vec::new();
        }
        entries(items, webhook_id, "delivered", None, 0)
    }

    /// Writes `entries` to `shelf` now (a blocking call: durable mode's settler archives
    /// before it removes from the spool); how many were written. Failures are logged and
    /// counted.
    pub(crate) fn put_now(&self, shelf: Shelf, entries: &[ArchivedEvent]) -> u64 {
        self.sink.put(shelf, entries)
    }

    /// What writes to the archive now, for holders that cannot hold the keeper.
    pub(crate) fn sink(&self) -> Sink {
        self.sink.clone()
    }

    fn send(&self, shelf: Shelf, entries: Vec<ArchivedEvent>) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(Msg::Put(shelf, entries)) {
            Ok(()) => true,
            Err(_) => {
                warn!(webhook = %self.sink.name, "dead-letter archive inbox full; events not kept");
                false
            }
        }
    }

    /// Waits until what was handed over before this call is written (or failed).
    pub(crate) async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The archive entries of `items`.
pub(crate) fn entries(
    items: &[Item],
    webhook_id: &dyn Fn(&Item) -> String,
    reason: &str,
    error: Option<&str>,
    attempts: u32,
) -> Vec<ArchivedEvent> {
    let now = now_ms();
    items
        .iter()
        .map(|item| ArchivedEvent {
            event_id: item.event_id,
            event: item.event.to_string(),
            event_ms: item.at_ms,
            kept_ms: now,
            webhook_id: webhook_id(item),
            reason: reason.to_string(),
            error: error.map(str::to_string),
            attempts,
            payload: item.payload.clone(),
        })
        .collect()
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

/// The writer task of one endpoint's keeper.
struct Writer {
    sink: Sink,
    counters: Arc<Counters>,
    instance: String,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Msg>, mut overflow: mpsc::Receiver<Arc<Event>>) {
        let mut expire_at = tokio::time::Instant::now() + self.sink.bounds().expire_every();
        let mut overflow_open = true;
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    let mut dead = Vec::new();
                    let mut retained = Vec::new();
                    let mut flushes = Vec::new();
                    let mut next = Some(msg);
                    let mut rebound = false;
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Put(Shelf::Dead, e) => dead.extend(e),
                            Msg::Put(Shelf::Retained, e) => retained.extend(e),
                            Msg::Flush(done) => flushes.push(done),
                            Msg::Bounds => rebound = true,
                        }
                        if dead.len() + retained.len() < GROUP {
                            next = rx.try_recv().ok();
                        }
                    }
                    // Queue-full events handed before a flush are part of what it waits for.
                    if !flushes.is_empty() {
                        while let Ok(event) = overflow.try_recv() {
                            dead.push(self.queue_full(&event));
                        }
                    }
                    self.write(Shelf::Dead, dead).await;
                    self.write(Shelf::Retained, retained).await;
                    for done in flushes {
                        let _ = done.send(());
                    }
                    if rebound {
                        self.expire().await;
                        expire_at = tokio::time::Instant::now() + self.sink.bounds().expire_every();
                    }
                }
                event = overflow.recv(), if overflow_open => {
                    let Some(event) = event else {
                        overflow_open = false;
                        continue;
                    };
                    let mut dead = vec![self.queue_full(&event)];
                    while dead.len() < GROUP {
                        let Ok(event) = overflow.try_recv() else { break };
                        dead.push(self.queue_full(&event));
                    }
                    self.write(Shelf::Dead, dead).await;
                }
                () = tokio::time::sleep_until(expire_at) => {
                    self.expire().await;
                    expire_at = tokio::time::Instant::now() + self.sink.bounds().expire_every();
                }
            }
        }
    }

    /// The dead letter of an event the queue had no room for (counted as dead-lettered now:
    /// the bus counted it dropped before it sent it here).
    fn queue_full(&self, event: &Event) -> ArchivedEvent {
        add(&self.counters.dead_lettered, 1);
        let item = Item::of(event);
        ArchivedEvent {
            event_id: item.event_id,
            event: item.event.to_string(),
            event_ms: item.at_ms,
            kept_ms: now_ms(),
            webhook_id: batch::single_id(&self.instance, item.event_id),
            reason: Reason::QueueFull.as_str().to_string(),
            error: None,
            attempts: 0,
            payload: item.payload,
        }
    }

    async fn write(&self, shelf: Shelf, entries: Vec<ArchivedEvent>) {
        if entries.is_empty() {
            return;
        }
        let sink = self.sink.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || sink.put(shelf, &entries)).await {
            self.sink.failed("write", &e);
        }
    }

    async fn expire(&self) {
        let sink = self.sink.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || sink.expire()).await {
            self.sink.failed("expiry", &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reasons_round_trip_through_their_names() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("bored"), None);
    }

    #[test]
    fn bounds_follow_the_settings() {
        let b = Bounds::of(&WebhookSettings::default());
        assert_eq!(b.dead, ArchiveLimits::default());
        assert_eq!(b.retained, None, "retention is opt-in");
        let s = WebhookSettings {
            dead_letter_max_bytes: Some(4096),
            dead_letter_retention: Some(Duration::from_secs(60)),
            retain: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        let b = Bounds::of(&s);
        assert_eq!(
            (b.dead.max_bytes, b.dead.max_age),
            (4096, Duration::from_secs(60))
        );
        let r = b.retained.unwrap();
        assert_eq!(r.max_age, Duration::from_secs(3600));
        assert_eq!(
            r.max_bytes,
            pilot_core::webhook_settings::DEFAULT_RETAIN_MAX_BYTES
        );
        assert_eq!(
            b.expire_every(),
            Duration::from_secs(15),
            "a quarter of the shortest"
        );
    }

    fn item(id: u64) -> Item {
        Item {
            event_id: id,
            event: "app.x".into(),
            payload: bytes::Bytes::from_static(b"{}"),
            severity: None,
            at_ms: 7,
        }
    }

    #[tokio::test]
    async fn what_is_handed_over_is_written_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Arc::new(Archive::open(&dir.path().join("a.redb")).unwrap());
        let counters = Arc::new(Counters::default());
        let keeper = Keeper::start(
            "x",
            Some(archive.clone()),
            counters.clone(),
            "00ff",
            &Handle::current(),
        );
        let id = |i: &Item| format!("msg_{}", i.event_id);
        keeper.dead(
            &[item(1), item(2)],
            &id,
            Reason::Failed,
            Some("HTTP 503"),
            3,
        );
        keeper.delivered(&[item(3)], &id); // not retained: retention is off
        keeper.flush().await;
        assert_eq!(counters.dead_lettered.load(Ordering::Relaxed), 2);
        let kept = archive
            .list(Shelf::Dead, "x", &pilot_spool::Query::default())
            .unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(
            (
                kept[0].webhook_id.as_str(),
                kept[0].reason.as_str(),
                kept[0].attempts
            ),
            ("msg_1", "failed", 3)
        );
        assert_eq!(kept[1].error.as_deref(), Some("HTTP 503"));
        assert_eq!(archive.stats(Shelf::Retained, "x").count, 0);

        // Without an archive: nothing kept, nothing counted as kept.
        let none = Keeper::start("y", None, counters.clone(), "00ff", &Handle::current());
        none.dead(&[item(4)], &id, Reason::Failed, None, 1);
        none.flush().await;
        assert_eq!(counters.dead_lettered.load(Ordering::Relaxed), 2);
    }
}
