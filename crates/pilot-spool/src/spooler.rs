//! The spooler: the task that moves events from the bus into the [`Spool`] in batches (group
//! commit: one transaction, one fsync per batch) and tells the bus how far they are durable,
//! so `emit` can answer only once its event is on disk.
//!
//! One iteration: wait for events (or for a waiter poking the sink, or for `stop`); read the
//! bus's newest id; drain the subscription (up to [`SPOOLER_BATCH`]); append the batch; advance
//! the [`DurableSink`]. Draining *after* reading the newest id is what makes the watermark
//! exact: every matching event up to that id is then either in the batch or was dropped by a
//! full buffer, so ids up to it that are not in the batch were filtered out by the
//! subscription's pattern (nothing to persist) or dropped (reported lost, below).
//!
//! Lost events: a subscription buffer that overflowed drops events (the bus counts them per
//! subscriber), and the spooler reports them [lost](DurableSink::lost), so their `emit`s fail
//! instead of claiming durability. With a `*` subscription (the recommended one: apply
//! filters at delivery) every id missing from a stretch is a dropped one, so the report is
//! exact. With a narrower pattern the spooler only knows *that* the drop counter moved, and
//! reports every id missing from that stretch (and the next), including ones the pattern left
//! out: conservative, never the other way round.
//!
//! Ending: a spooler that returns (stopped, or its subscription detached and drained)
//! [closes](DurableSink::close) its sink. One that panics or is aborted drops it unclosed, and
//! the bus fails the waiting `emit`s closed (see [`pilot_core::bus`]).
//!
//! Accounting: the events the spooler holds (received from the subscription, not settled yet)
//! are measured, not derived: [`SpoolerCounters::holding`] is the length of the batch in hand,
//! set in the same instant (under the accounting lock) as the subscription counts the events
//! `received`, and reset to 0 if the task dies. The plugin's accounting compares the bus's
//! `received` against `holding` plus what was settled, so an event the spooler took and lost
//! shows as an imbalance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use pilot_core::bus::DurableSink;
use pilot_core::{Event, Pattern, Subscription};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Spool, SpoolRecord};

/// The most events appended in one transaction.
pub const SPOOLER_BATCH: usize = 1024;

/// First pause after a failed append; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Gives each record its message id (pilot-webhook: the `webhook-id`, stable across retries
/// and restarts because it is stored with the record).
pub type RecordId = fn(&Event) -> String;

/// A spooler's progress, readable while it runs (the plugin's stats use it).
#[derive(Debug, Default)]
pub struct SpoolerCounters {
    /// Events taken from the subscription and settled: written to the spool, dropped for space
    /// on the way in, refused, or lost at stop. The ones the subscription received but that are
    /// not settled yet are still on their way into the spool.
    pub settled: AtomicU64,
    /// Records dropped to stay within `max_bytes` (stored ones and incoming ones).
    pub dropped_full: AtomicU64,
    /// Events the subscription received that never reached the spool: refused (ids not above
    /// its high-water mark) or still unwritten when the spooler stopped.
    pub refused: AtomicU64,
    /// Records written to the spool (in the plugin's own count of what the spool holds).
    pub appended: AtomicU64,
    /// Stored records dropped to make room (the part of `dropped_full` that was on disk).
    pub evicted: AtomicU64,
    /// The part of `dropped_full` the spool's eviction hook kept (as dead letters); added
    /// after `dropped_full`, so never ahead of it.
    pub kept_full: AtomicU64,
    /// Events in the spooler's hands: received from the subscription and not settled yet (the
    /// batch's length, a measurement; 0 once the task is gone).
    pub holding: AtomicU64,
    /// A fault to inject (tests only; see [`SpoolerFault`]).
    fault: std::sync::atomic::AtomicU8,
    /// The plugin's accounting lock (see `crate::stats`): shared by every change of counters
    /// that moves events between buckets, exclusive for a snapshot.
    ledger: RwLock<()>,
}

impl SpoolerCounters {
    /// The shared side of the accounting lock.
    pub fn moving(&self) -> RwLockReadGuard<'_, ()> {
        // The lock guards no data: a poisoned one is as good as a sound one.
        self.ledger.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The exclusive side of the accounting lock (a snapshot).
    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.ledger.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the running spooler misbehave once, at its next batch (tests of the supervision
    /// and of the accounting: nothing else calls it).
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: SpoolerFault) {
        self.fault.store(fault as u8, Ordering::Relaxed);
    }

    fn take_fault(&self) -> Option<SpoolerFault> {
        match self.fault.swap(0, Ordering::Relaxed) {
            1 => Some(SpoolerFault::LoseOne),
            2 => Some(SpoolerFault::Panic),
            _ => None,
        }
    }
}

/// A misbehaviour a test makes the spooler commit (see [`SpoolerCounters::inject_fault`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SpoolerFault {
    /// Forget the last event of the next batch: never written, never counted, yet confirmed
    /// durable (the bug an honest accounting must show).
    LoseOne = 1,
    /// Panic at the next batch, holding it.
    Panic = 2,
}

/// Resets [`SpoolerCounters::holding`] when the spooler ends, however it ends: a batch held by
/// a task that panicked is held by no one.
struct Holding<'a>(&'a SpoolerCounters);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        let _moving = self.0.moving();
        self.0.holding.store(0, Ordering::Relaxed);
    }
}

/// What a spooler did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolerReport {
    /// Successful append transactions.
    pub batches: u64,
    /// Events written to the spool.
    pub spooled: u64,
    /// Records the spool dropped to stay within `max_bytes` during these appends.
    pub dropped_for_space: u64,
    /// Of those, the ones its eviction hook kept.
    pub kept_for_space: u64,
    /// Events reported lost: dropped by a full subscription buffer, refused by the spool
    /// (ids not above its high-water mark), or still unwritten when the spooler stopped.
    pub lost: u64,
    /// Appends that failed (each is retried).
    pub append_failures: u64,
    /// The latest append error.
    pub last_error: Option<String>,
}

/// Takes events from `sub` in batches of up to [`SPOOLER_BATCH`], gives each its id (`id`),
/// appends each batch in one transaction, then advances `sink` to
/// the batch's end and wakes the delivery side through `notify`.
///
/// A failed append calls `sink.fail` (waiting `emit`s get an error) and is retried with
/// backoff; the batch stays in memory meanwhile (bounded by [`SPOOLER_BATCH`]), and new
/// events wait in the subscription's buffer. On `stop` the subscription is detached, what is
/// buffered is appended (one more try if appends are failing), and the spooler returns;
/// events it could not write are reported lost. `sub` and `sink` should come from one
/// [`pilot_core::Bus::subscribe_durable`] call, so they start at the same event.
pub async fn run_spooler(
    sub: Subscription,
    spool: Arc<Spool>,
    sink: DurableSink,
    notify: Arc<Notify>,
    stop: CancellationToken,
    id: RecordId,
) -> SpoolerReport {
    let counters = SpoolerCounters::default();
    run_spooler_counted(sub, spool, sink, notify, stop, &counters, id).await
}

/// [`run_spooler`], counting its progress into `counters` as it goes.
pub async fn run_spooler_counted(
    mut sub: Subscription,
    spool: Arc<Spool>,
    sink: DurableSink,
    notify: Arc<Notify>,
    stop: CancellationToken,
    counters: &SpoolerCounters,
    id: RecordId,
) -> SpoolerReport {
    let mut report = SpoolerReport::default();
    let mut seen = sink.durable();
    let every_event = *sub.pattern() == Pattern::All;
    let mut drops_seen = sub.counters().dropped.load(Ordering::Relaxed);
    // Drops counted before this task started (or carried by shared counters) are checked in
    // the first stretch.
    let mut drops_pending = drops_seen > 0;
    let mut stopping = false;
    let mut batch: Vec<Arc<Event>> = Vec::with_capacity(SPOOLER_BATCH);
    let _holding = Holding(counters);
    let held = |n: usize| counters.holding.store(n as u64, Ordering::Relaxed);
    loop {
        batch.clear();
        if !stopping {
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    stopping = true;
                    sub.detach();
                }
                n = sub.recv_many_with(&mut batch, SPOOLER_BATCH, || counters.moving(), held) => {
                    if n == 0 {
                        break; // detached elsewhere and drained
                    }
                }
                () = sink.wanted() => {}
            }
        }
        // Newest id first, then drain: see the module docs.
        let published = sink.bus().last_event_id();
        let mut drained = false;
        while batch.len() < SPOOLER_BATCH {
            if !sub.try_recv_with(&mut batch, || counters.moving(), held) {
                drained = true;
                break;
            }
        }
        let fault = if batch.is_empty() {
            None
        } else {
            counters.take_fault()
        };
        if fault == Some(SpoolerFault::Panic) {
            panic!(
                "injected fault: the webhook spooler panics holding {} events",
                batch.len()
            );
        }
        let newest = batch.last().map_or(0, |e| e.event_id);
        // Once detached (stopping), later ids are not ours to vouch for.
        let upto = if drained && !stopping {
            published.max(newest)
        } else {
            newest.max(seen)
        };

        let drops_now = sub.counters().dropped.load(Ordering::Relaxed);
        let dropped_here = drops_now != drops_seen;
        drops_seen = drops_now;
        // A drop counted now may belong to the next stretch (an event published after
        // `published` was read), so the next stretch is checked too.
        if every_event || dropped_here || drops_pending {
            report.lost += report_gaps(&sink, seen, upto, &batch);
        }
        drops_pending = dropped_here;

        let high_water = spool.last_event_id();
        let (stale, mut fresh): (Vec<_>, Vec<_>) =
            batch.iter().partition(|e| e.event_id <= high_water);
        if fault == Some(SpoolerFault::LoseOne) {
            fresh.pop();
        }
        for event in &stale {
            sink.lost(
                event.event_id,
                event.event_id,
                &format!("event_id is not above the spool's high-water mark {high_water}"),
            );
        }
        if !stale.is_empty() {
            let _moving = counters.moving();
            counters
                .refused
                .fetch_add(stale.len() as u64, Ordering::Relaxed);
            counters
                .settled
                .fetch_add(stale.len() as u64, Ordering::Relaxed);
            counters
                .holding
                .store((batch.len() - stale.len()) as u64, Ordering::Relaxed);
            error!(
                count = stale.len(),
                high_water,
                "webhook spool refused events whose ids do not increase; the bus must start after the spool's last event"
            );
            report.lost += stale.len() as u64;
        }
        let records: Arc<[SpoolRecord]> = fresh.iter().map(|e| record(e, id)).collect();
        if !records.is_empty() {
            let (dropped_before, spooled_before, kept_before) = (
                report.dropped_for_space,
                report.spooled,
                report.kept_for_space,
            );
            let written = persist(&spool, &records, &sink, &stop, stopping, &mut report).await;
            let n = records.len() as u64;
            {
                let _moving = counters.moving();
                if written {
                    let dropped = report.dropped_for_space - dropped_before;
                    let appended = report.spooled - spooled_before;
                    // Of the dropped ones, those not appended were incoming; the rest were
                    // stored.
                    let evicted = dropped.saturating_sub(n - appended);
                    counters.dropped_full.fetch_add(dropped, Ordering::Relaxed);
                    counters.appended.fetch_add(appended, Ordering::Relaxed);
                    counters.evicted.fetch_add(evicted, Ordering::Relaxed);
                    let kept = report.kept_for_space - kept_before;
                    counters.kept_full.fetch_add(kept, Ordering::Relaxed);
                } else {
                    counters.refused.fetch_add(n, Ordering::Relaxed);
                }
                counters.settled.fetch_add(n, Ordering::Relaxed);
                counters.holding.store(0, Ordering::Relaxed);
            }
            if !written {
                let (first, last) = (records[0].event_id, records[records.len() - 1].event_id);
                sink.lost(
                    first,
                    last,
                    "the spooler stopped before it could write them",
                );
                report.lost += records.len() as u64;
                warn!(
                    first,
                    last, "webhook spooler stopped with events it could not write; they are lost"
                );
                // The subscription is detached by now: what is still buffered is lost too.
                let mut rest = 0u64;
                let _moving = counters.moving();
                while let Some(event) = sub.try_recv() {
                    sink.lost(
                        event.event_id,
                        event.event_id,
                        "the spooler stopped before it could write them",
                    );
                    rest += 1;
                }
                counters.refused.fetch_add(rest, Ordering::Relaxed);
                counters.settled.fetch_add(rest, Ordering::Relaxed);
                report.lost += rest;
                break;
            }
            notify.notify_one();
        }
        {
            // Everything taken is settled by now (a no-op unless nothing was left to write).
            let _moving = counters.moving();
            counters.holding.store(0, Ordering::Relaxed);
        }
        if upto > seen {
            sink.advance(upto);
            seen = upto;
        }
        if stopping && drained {
            break;
        }
    }
    sink.close();
    info!(
        spooled = report.spooled,
        batches = report.batches,
        lost = report.lost,
        "webhook spooler stopped"
    );
    report
}

/// Reports as lost the ids in `(seen, upto]` that are not in `batch`; returns how many.
fn report_gaps(sink: &DurableSink, seen: u64, upto: u64, batch: &[Arc<Event>]) -> u64 {
    let mut lost = 0;
    let mut next = seen + 1;
    let ids = batch
        .iter()
        .map(|e| e.event_id)
        .filter(|id| *id > seen)
        .chain(std::iter::once(upto.saturating_add(1)));
    for id in ids {
        if id > next {
            let last = (id - 1).min(upto);
            if last >= next {
                sink.lost(
                    next,
                    last,
                    "the spool's buffer was full; the event was dropped",
                );
                lost += last - next + 1;
            }
        }
        next = next.max(id.saturating_add(1));
    }
    if lost > 0 {
        warn!(
            lost,
            "webhook spooler buffer overflowed; events were dropped before reaching the spool"
        );
    }
    lost
}

fn record(event: &Event, id: RecordId) -> SpoolRecord {
    SpoolRecord {
        event_id: event.event_id,
        webhook_id: id(event),
        accepted_at_ms: u64::try_from(event.timestamp.as_millisecond()).unwrap_or(0),
        attempts: 0,
        payload: event.payload(),
    }
}

/// Appends `records`, retrying with backoff until it works or `stop` (one more try then).
/// Returns whether they were written.
async fn persist(
    spool: &Arc<Spool>,
    records: &Arc<[SpoolRecord]>,
    sink: &DurableSink,
    stop: &CancellationToken,
    mut stopping: bool,
    report: &mut SpoolerReport,
) -> bool {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let (spool2, records2) = (spool.clone(), records.clone());
        let result = tokio::task::spawn_blocking(move || spool2.append(&records2)).await;
        let message = match result {
            Ok(Ok(outcome)) => {
                report.batches += 1;
                report.spooled += outcome.appended;
                report.dropped_for_space += outcome.dropped_for_space;
                report.kept_for_space += outcome.kept;
                if outcome.dropped_for_space > 0 {
                    warn!(
                        dropped = outcome.dropped_for_space,
                        max_bytes = spool.limits().max_bytes,
                        "webhook spool full; the oldest events were dropped"
                    );
                }
                if report.last_error.is_some() && report.append_failures > 0 {
                    info!("webhook spool writes again");
                }
                debug!(count = records.len(), "webhook spool batch written");
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("webhook spool write crashed: {e}"),
        };
        report.append_failures += 1;
        if report.last_error.as_deref() != Some(message.as_str()) {
            error!(error = %message, "webhook spool write failed; retrying");
        }
        sink.fail(message.clone());
        report.last_error = Some(message);
        if stopping {
            return false;
        }
        tokio::select! {
            () = stop.cancelled() => stopping = true,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
