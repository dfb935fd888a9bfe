//! Durable delivery (`settings.durable`): at-least-once, in order, through the on-disk spool.
//! This worker is the source (spool read-ahead, filters, batches) and the settler (removal of
//! settled records in group commits); each delivery's attempts, retries, circuit and 410 are
//! the sender's (`crate::sender`, unbounded policy), which calls this worker back between
//! attempts.
//!
//! # The path of one event
//! 1. The webhook's bus subscription is a durable one ([`pilot_core::Bus::subscribe_durable`]):
//!    its buffer (`queue_size`) feeds the spooler ([`pilot_spool::run_spooler`]), which appends
//!    events in group commits and advances the bus's durability watermark, so the daemon's
//!    `emit` (which waits with [`pilot_core::Bus::wait_durable`]) answers only once its event
//!    is on disk. Each record carries its `webhook-id`, `msg_<node_id>_<event_id>`
//!    ([`crate::durable_webhook_id`]): the same on every retry and after a restart.
//! 2. The `DurableWorker` delivers from the spool, oldest first, one request in flight (one
//!    batch `{"events":[...]}` with `batch_max`, signed as one body with the id
//!    `msg_<node_id>_<first>-<last>`). `settings.concurrency` is ignored here: durable
//!    delivery stays ordered, one request at a time (use `batch_max` for throughput). It reads the spool after a cursor, the last record it
//!    settled. The webhook's `events`/`exclude` filters apply here: a record they leave out is
//!    removed and counted `filtered`.
//! 3. A 2xx settles the records as delivered, a non-retryable failure (another 4xx, a 3xx, a
//!    blocked address) as failed. Settled records are removed by the `Settler` in group
//!    commits, with the delivery-log entries of their attempts (the log is on disk in durable
//!    mode, see `SpoolLog`): one commit is written while the next deliveries go on, so one
//!    fsync covers many deliveries. A crash between a 2xx and its commit (a few milliseconds)
//!    sends those events again after the restart, with the same `webhook-id`: the only
//!    duplicates. A retryable failure (timeout, connection error, 408, 429, 5xx) keeps the
//!    records: the attempt count is persisted and the next attempt follows jittered
//!    exponential backoff from `backoff`, capped at `settings.max_backoff` (default
//!    [`crate::DEFAULT_MAX_BACKOFF`]), honouring `Retry-After` (up to
//!    [`crate::retry::MAX_RETRY_AFTER`]), with no limit on attempts: until a 2xx or until the
//!    record expires.
//! 4. A record older than `discard_after` is dropped and counted as expired (checked before
//!    every read of the spool, and every `discard_after / 4`, 50 ms to 1 s, while delivering
//!    from the records read ahead or waiting); past
//!    `max_spool_bytes` the spooler drops the oldest records and counts them. Never silently.
//!    Expiry runs while durable delivery is on: records left on disk while it is off expire
//!    (and are counted) when it is on again.
//!
//! # Circuit breaker
//! `max_attempts` failed attempts in a row count as one failed event for the breaker (as a
//! failed event does in memory mode), and so does every non-retryable failure. While it is
//! open nothing is skipped: events wait in the spool, the worker sleeps until the cooldown
//! ends, then probes with the oldest event; a 2xx closes the circuit and the backlog drains
//! in order, a failure opens it for another cooldown.
//!
//! # 410 Gone
//! Disables the webhook as in memory mode (`webhook.disabled` on the bus, shown in stats until
//! the next configure, no further events taken from the bus), but the spooled events, the one
//! that got the 410 included, stay in the spool and are delivered after the next configure.
//!
//! # Changes while durable
//! - A new URL or new settings (still durable): the spooler keeps running; the delivery worker
//!   is replaced: the old one finishes the request in flight (bounded by the request timeout;
//!   no further retry), then the new one takes over. The backlog follows the URL: every event
//!   still in the spool goes to the URL in force when it is delivered, not to the one in force
//!   when it was published.
//! - Durable to in-memory: new events go to the in-memory queue from the call on (the switch
//!   is one atomic `Bus::replace`); events already spooled stay on disk, undelivered, until
//!   durable delivery is on again.
//! - Clearing the webhook: delivery stops; the spool keeps its events (nothing is dropped).
//! - In-memory to durable: the in-memory queue finishes on its URL in the background (as on
//!   any swap); new events go to the spool.
//!
//! # Shutdown
//! The spooler writes what it holds and stops, the worker delivers for up to `drain_timeout`
//! (a request still in flight then is abandoned) and stops. What is not delivered stays in the
//! spool (not counted as dropped) for the next start. A crash (`kill -9`) loses nothing that was acknowledged: it is on disk, and an event
//! whose request was in flight is sent again with the same `webhook-id`.
//!
//! Every spool call runs in `tokio::task::spawn_blocking`, and none is cancelled half way
//! (cancellation only interrupts requests and waits), so the counters stay exact.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::batch::{batch_body, Delivery, Item};
use crate::config::Config;
use crate::health::{publish_disabled, Disabled};
use crate::keeper::{entries, Reason};
use crate::retry::deadline_after;
use crate::sender::{Hooks, Outcome, Policy, Sender, Wait};
use crate::shared::Shared;
use crate::stats::{add, sub, Counters};
use crate::store::{blocking, SpoolLog, Store};
use crate::transport::Endpoint;
use pilot_spool::{ArchivedEvent, Shelf, SpoolError, SpoolRecord};

/// Records read ahead of the cursor in one spool read (beyond a batch's size): the worker
/// delivers from memory and reads the spool once per this many records, not once per
/// delivery.
const READ_AHEAD: usize = 256;
/// The pause after a spool read or write failed.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How often expiry runs at most / at least while the worker waits.
const EXPIRE_MIN: Duration = Duration::from_millis(50);
const EXPIRE_MAX: Duration = Duration::from_secs(1);

/// One spooled event, ready for a delivery.
#[derive(Debug, Clone)]
pub(crate) struct Spooled {
    pub(crate) item: Item,
    pub(crate) webhook_id: String,
    pub(crate) attempts: u32,
}

impl Spooled {
    pub(crate) fn of(record: SpoolRecord) -> Self {
        let (webhook_id, attempts) = (record.webhook_id.clone(), record.attempts);
        Self {
            item: Item::of_record(record),
            webhook_id,
            attempts,
        }
    }
}

/// The request for spooled events: one event's payload with its stored id, or (batching on,
/// or several events) a batch body with the id `<first's id>-<last event_id>`. `None` for no
/// events.
pub(crate) fn delivery_of(spooled: Vec<Spooled>, batched: bool) -> Option<Delivery> {
    let first = spooled.first()?;
    let last = spooled.last()?;
    if spooled.len() == 1 && !batched {
        let s = spooled.into_iter().next()?;
        return Some(Delivery {
            body: s.item.payload.clone(),
            webhook_id: s.webhook_id.into(),
            items: vec![s.item],
            batched: false,
            rendering: None,
        });
    }
    let webhook_id = format!("{}-{}", first.webhook_id, last.item.event_id).into();
    let payloads: Vec<Bytes> = spooled.iter().map(|s| s.item.payload.clone()).collect();
    Some(Delivery {
        body: batch_body(&payloads),
        webhook_id,
        items: spooled.into_iter().map(|s| s.item).collect(),
        batched: true,
        rendering: None,
    })
}

/// What the worker found to do: the records of the next delivery (and the filtered ones met
/// among them, settled with it).
enum Next {
    Deliver(Vec<Spooled>, Vec<u64>),
    /// Nothing left past the cursor.
    Idle,
    Stop,
}

/// How one delivery ended, for the loop.
enum Done {
    /// Go on with the next records.
    Next,
    Stop,
    /// 410 Gone, with the error text.
    Gone(String),
}

/// Records whose fate is known (delivered, failed, filtered) and whose removal from the spool
/// is not committed yet.
#[derive(Debug, Default)]
struct Settled {
    delivered: Vec<u64>,
    failed: Vec<u64>,
    filtered: Vec<u64>,
    /// How many of them count as in flight until the commit (the delivered and failed ones).
    in_flight: u64,
    /// The dead letters of the failed ones and (with `retain`) the delivered ones to keep,
    /// written to the archive in the same blocking call, before the removal.
    dead: Vec<ArchivedEvent>,
    retained: Vec<ArchivedEvent>,
}

impl Settled {
    fn is_empty(&self) -> bool {
        self.delivered.is_empty() && self.failed.is_empty() && self.filtered.is_empty()
    }

    fn append(&mut self, other: Settled) {
        self.delivered.extend(other.delivered);
        self.failed.extend(other.failed);
        self.filtered.extend(other.filtered);
        self.in_flight += other.in_flight;
        self.dead.extend(other.dead);
        self.retained.extend(other.retained);
    }
}

/// A commit's removals by group, and how many dead letters it archived.
type Commit = JoinHandle<(Result<Vec<u64>, SpoolError>, u64)>;

/// Removes settled records from the spool in group commits, one commit at a time, while the
/// worker goes on delivering: one fsync covers every delivery made during the previous one.
/// A crash between a 2xx and its commit sends those events again (same `webhook-id`).
pub(crate) struct Settler {
    log: Arc<SpoolLog>,
    counters: Arc<Counters>,
    shared: Arc<Shared>,
    queued: Settled,
    running: Option<(Commit, Settled)>,
}

impl Settler {
    pub(crate) fn new(store: &Store, shared: Arc<Shared>) -> Self {
        Self {
            log: store.log.clone(),
            counters: shared.counters.clone(),
            shared,
            queued: Settled::default(),
            running: None,
        }
    }

    fn push(&mut self, settled: Settled) {
        self.queued.append(settled);
    }

    /// Collects a finished commit and starts the next one; never waits for the disk.
    async fn pump(&mut self) {
        if self.running.as_ref().is_some_and(|(h, _)| h.is_finished()) {
            self.collect().await;
        }
        if self.running.is_none() && !self.queued.is_empty() {
            self.spawn();
        }
    }

    fn spawn(&mut self) {
        let mut batch = std::mem::take(&mut self.queued);
        let log = self.log.clone();
        let groups = [
            batch.delivered.clone(),
            batch.failed.clone(),
            batch.filtered.clone(),
        ];
        let dead = std::mem::take(&mut batch.dead);
        let retained = std::mem::take(&mut batch.retained);
        let shared = self.shared.clone();
        let handle = tokio::task::spawn_blocking(move || {
            // Archived first: a crash in between keeps the events in the spool (sent again,
            // archived again under the same key), never loses them.
            let kept = shared.keeper.put_now(Shelf::Dead, &dead);
            shared.keeper.put_now(Shelf::Retained, &retained);
            let [d, f, x] = &groups;
            (log.remove_groups(&[d, f, x]), kept)
        });
        self.running = Some((handle, batch));
    }

    /// Waits for the running commit and counts it; `false` if it failed (its records are
    /// queued again, and are not sent again meanwhile).
    async fn collect(&mut self) -> bool {
        let Some((handle, batch)) = self.running.take() else {
            return true;
        };
        let (result, kept) = match handle.await {
            Ok((r, kept)) => (r.map_err(|e| e.to_string()), kept),
            Err(e) => (Err(format!("webhook spool call crashed: {e}")), 0),
        };
        match result {
            Ok(removed) => {
                let c = &self.counters;
                let n = |i: usize| removed.get(i).copied().unwrap_or(0);
                let _moving = c.moving();
                // Records dropped for space or expired meanwhile are counted there already.
                add(&c.spool_removed, n(0) + n(1) + n(2));
                add(&c.delivered, n(0));
                add(&c.failed, n(1));
                add(&c.filtered, n(2));
                sub(&c.durable_in_flight, batch.in_flight);
                // After `failed`, so never ahead of it.
                add(&c.dead_lettered, kept.min(n(1)));
                true
            }
            Err(e) => {
                error!(error = %e, "webhook spool could not remove settled events; retrying");
                self.counters.set_last_error(e);
                let mut again = batch;
                again.append(std::mem::take(&mut self.queued));
                self.queued = again;
                false
            }
        }
    }

    /// Commits everything settled so far; `false` if a commit failed.
    async fn flush(&mut self) -> bool {
        loop {
            if !self.collect().await {
                return false;
            }
            if self.queued.is_empty() {
                return true;
            }
            self.spawn();
        }
    }

    /// At exit, after a failed flush: what could not be removed waits again (and will be
    /// sent again by the next worker).
    fn release(&mut self) {
        let left = std::mem::take(&mut self.queued);
        sub(&self.counters.durable_in_flight, left.in_flight);
    }
}

/// Delivers from the spool with one configuration. See the module docs.
pub(crate) struct DurableWorker {
    pub(crate) config: Arc<Config>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: Arc<Store>,
    /// Sends each delivery (retries, circuit, 410), calling this worker back between attempts.
    pub(crate) sender: Arc<Sender<Endpoint>>,
    pub(crate) disabled: Arc<Disabled>,
    /// Cancelled to stop now: a request in flight is abandoned, its records stay.
    pub(crate) abort: CancellationToken,
    /// Cancelled to stop after the request in flight (a change of webhook): a child of
    /// `abort`.
    pub(crate) stop: CancellationToken,
    /// Cancelled at shutdown (after the spooler stopped): stop once the spool is empty.
    pub(crate) drain: CancellationToken,
    /// The worker this one replaces: awaited first, so one worker at a time uses the spool.
    pub(crate) previous: Option<JoinHandle<()>>,
    /// The durable subscription and its spooler, stopped on a 410.
    pub(crate) sub_id: u64,
    pub(crate) spooler_stop: CancellationToken,
    /// Removes settled records.
    pub(crate) settler: Settler,
    /// Every record up to this id is settled (its removal committed or queued).
    pub(crate) cursor: Option<u64>,
    /// No attempt before this (the backoff of the last failed attempt).
    pub(crate) retry_at: Option<Instant>,
    /// The records after the cursor, read ahead.
    pub(crate) ahead: ReadAhead,
}

/// Records read from the spool ahead of the cursor, in order, so the worker reads the spool
/// (a blocking call and a read transaction) once per [`READ_AHEAD`] records instead of once
/// per delivery. They stay valid while only the worker removes records: it drops them when
/// the spool dropped or expired any record since they were read (the spool's lifetime
/// counters moved), and when a delivery ends without settling its records (they are read
/// again, with their stored attempt counts).
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    records: VecDeque<Spooled>,
    /// The spool's `dropped_for_space + expired` when they were read.
    removals: u64,
}

impl ReadAhead {
    fn clear(&mut self) {
        self.records.clear();
    }
}

impl DurableWorker {
    /// Runs until aborted, drained (at shutdown) or the webhook is gone.
    pub(crate) async fn run(mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = previous.await;
        }
        info!(
            url = %self.config.shown,
            depth = self.store.spool.stats().depth,
            "webhook delivering from the durable spool"
        );
        let mut expired_at: Option<Instant> = None;
        let gone = loop {
            if self.stop.is_cancelled() {
                break None;
            }
            if self.shared.health.is_paused() {
                // Paused: the spooler goes on spooling; delivery resumes in order. (A flush
                // that fails is tried again after the resume.)
                self.settler.flush().await;
                info!(webhook = %self.shared.options.name, "webhook paused; events are spooled until it is resumed");
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => break None,
                    () = self.drain.cancelled() => break None,
                    () = self.shared.health.wait_resumed() => {}
                }
                info!(webhook = %self.shared.options.name, "webhook resumed; the spool drains in order");
                continue;
            }
            // Before each read of the spool (in `next`) and at least every `expire_every`.
            if expired_at.is_none_or(|at| at.elapsed() >= self.expire_every()) {
                self.expire().await;
                expired_at = Some(Instant::now());
            }
            self.settler.pump().await;
            match self.next().await {
                Next::Stop => break None,
                Next::Idle => {
                    if !self.settler.flush().await {
                        if self.pause_until(deadline_after(ERROR_PAUSE)).await == Wait::Stopped {
                            break None;
                        }
                        continue;
                    }
                    if self.drain.is_cancelled() {
                        break None;
                    }
                    tokio::select! {
                        biased;
                        () = self.stop.cancelled() => break None,
                        () = self.drain.cancelled() => {}
                        () = self.shared.notify.notified() => {}
                    }
                }
                Next::Deliver(spooled, filtered) => match self.deliver(spooled, filtered).await {
                    Done::Next => {}
                    Done::Stop => break None,
                    Done::Gone(reason) => break Some(reason),
                },
            }
        };
        // Delivered events are removed even when stopping (one more try if the disk failed).
        if !self.settler.flush().await && !self.settler.flush().await {
            self.settler.release();
        }
        if let Some(reason) = gone {
            self.disable(reason).await;
        }
        debug!(url = %self.config.shown, "webhook durable worker stopped");
    }

    /// How often expiry runs while waiting.
    fn expire_every(&self) -> Duration {
        (self.store.spool.limits().discard_after / 4).clamp(EXPIRE_MIN, EXPIRE_MAX)
    }

    /// Drops (and counts) the records older than `discard_after`; how many.
    async fn expire(&self) -> u64 {
        let spool = self.store.spool.clone();
        let now_ms = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        let sink = self.shared.keeper.sink();
        let node = self.shared.bus.node_id();
        let expired = blocking(move || {
            // Kept as dead letters in the same write that removes them from the spool.
            let kept = std::sync::atomic::AtomicU64::new(0);
            let n = spool.expire_keeping(now_ms, &|records| {
                let written = sink.put_records(records, node, Reason::Expired);
                kept.store(written, std::sync::atomic::Ordering::Relaxed);
            })?;
            Ok((n, kept.into_inner()))
        })
        .await;
        match expired {
            Ok((0, _)) => 0,
            Ok((n, kept)) => {
                {
                    let c = &self.shared.counters;
                    let _moving = c.moving();
                    add(&c.expired, n);
                    add(&c.spool_removed, n);
                }
                // After `expired`, so never ahead of it.
                add(&self.shared.counters.dead_lettered, kept.min(n));
                warn!(
                    expired = n,
                    discard_after = %pilot_core::duration::format(self.store.spool.limits().discard_after),
                    "webhook spool: undelivered events older than discard_after were dropped"
                );
                n
            }
            Err(e) => {
                self.spool_error(&e);
                0
            }
        }
    }

    fn spool_error(&self, e: &str) {
        error!(error = %e, "webhook spool error; retrying");
        self.shared.counters.set_last_error(e.to_string());
    }

    /// Waits until `at` (settled records committed first), running expiry meanwhile.
    async fn pause_until(&mut self, at: Instant) -> Wait {
        self.settler.flush().await;
        loop {
            let now = Instant::now();
            if now >= at {
                return Wait::Elapsed;
            }
            let tick = now
                .checked_add(self.expire_every())
                .map_or(at, |t| t.min(at));
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return Wait::Stopped,
                () = tokio::time::sleep_until(tick) => {}
            }
            self.settler.pump().await;
            if tick < at && self.expire().await > 0 {
                return Wait::Expired;
            }
        }
    }

    /// Reads records after the last one held (or the cursor) until at least `want` are held
    /// or the spool has no more, expiring old records first; `false` if the spool could not
    /// be read.
    async fn read_ahead(&mut self, want: usize) -> bool {
        let stats = self.store.spool.stats();
        let removals = stats.dropped_for_space + stats.expired;
        if removals != self.ahead.removals {
            self.ahead.clear();
            self.ahead.removals = removals;
        }
        if self.ahead.records.len() >= want {
            return true;
        }
        if self.expire().await > 0 {
            self.ahead.clear();
        }
        let stats = self.store.spool.stats();
        self.ahead.removals = stats.dropped_for_space + stats.expired;
        let spool = self.store.spool.clone();
        let held = self.ahead.records.len();
        let limit = want.saturating_add(READ_AHEAD) - held;
        let after = self
            .ahead
            .records
            .back()
            .map(|s| s.item.event_id)
            .or(self.cursor);
        match blocking(move || spool.peek(after, limit)).await {
            Ok(records) => {
                self.ahead
                    .records
                    .extend(records.into_iter().map(Spooled::of));
                true
            }
            Err(e) => {
                self.spool_error(&e);
                false
            }
        }
    }

    /// The next records to deliver, after the cursor: the oldest ones the filters allow (the
    /// ones they leave out are settled as filtered), up to `batch_max`, waiting up to
    /// `batch_wait` for a batch to fill. They come from the records read ahead.
    async fn next(&mut self) -> Next {
        let max = self.config.batch.map_or(1, |b| b.max.max(1));
        let mut fill_until: Option<Instant> = None;
        loop {
            if !self.read_ahead(max).await {
                if self.pause_until(deadline_after(ERROR_PAUSE)).await == Wait::Stopped {
                    return Next::Stop;
                }
                continue;
            }
            // Filtered records before the first allowed one are settled now; those among a
            // batch are settled with it.
            let records = &mut self.ahead.records;
            let mut leading = Vec::new();
            while let Some(s) = records.front() {
                if self.config.filter.allows_spooled(&s.item.event) {
                    break;
                }
                leading.push(s.item.event_id);
                records.pop_front();
            }
            if let Some(&last) = leading.last() {
                self.cursor = Some(last);
                self.settler.push(Settled {
                    filtered: leading,
                    ..Settled::default()
                });
                self.settler.pump().await;
                continue;
            }
            if records.is_empty() {
                return Next::Idle;
            }
            // The records of the next delivery: the first `end` held, `allowed` of them.
            let held = records.len();
            let mut allowed = 0;
            let mut end = 0;
            for s in records.iter() {
                if allowed >= max {
                    break;
                }
                end += 1;
                if self.config.filter.allows_spooled(&s.item.event) {
                    allowed += 1;
                }
            }
            if let Some(batching) = self.config.batch {
                if allowed < batching.max && !self.drain.is_cancelled() {
                    // Short of a batch with every record held: read on first.
                    if end == held {
                        if !self.read_ahead(held + 1).await {
                            continue;
                        }
                        if self.ahead.records.len() != held {
                            continue;
                        }
                    }
                    let until = *fill_until.get_or_insert_with(|| deadline_after(batching.wait));
                    if Instant::now() < until {
                        self.settler.pump().await;
                        tokio::select! {
                            biased;
                            () = self.stop.cancelled() => return Next::Stop,
                            () = self.drain.cancelled() => {}
                            () = self.shared.notify.notified() => {}
                            () = tokio::time::sleep_until(until) => {}
                        }
                        continue;
                    }
                }
            }
            let mut spooled = Vec::with_capacity(allowed);
            let mut among = Vec::new();
            for s in self.ahead.records.drain(..end) {
                if self.config.filter.allows_spooled(&s.item.event) {
                    spooled.push(s);
                } else {
                    among.push(s.item.event_id);
                }
            }
            return Next::Deliver(spooled, among);
        }
    }

    /// Delivers `spooled` until a 2xx, a failure that is not retried, a 410, expiry of its
    /// head, or a stop (a request in flight is finished first, unless aborted).
    async fn deliver(&mut self, spooled: Vec<Spooled>, filtered: Vec<u64>) -> Done {
        let ids: Vec<u64> = spooled.iter().map(|s| s.item.event_id).collect();
        let n = ids.len() as u64;
        let attempts = spooled.iter().map(|s| s.attempts).max().unwrap_or(0);
        let Some(delivery) = delivery_of(spooled, self.config.batch.is_some()) else {
            return Done::Next;
        };
        let delivery = self.config.render(delivery);
        add(&self.shared.counters.durable_in_flight, n);
        let sender = self.sender.clone();
        let outcome = match sender
            .deliver(&delivery, Policy::Unbounded { attempts }, self)
            .await
        {
            Outcome::Delivered => Ok(None),
            Outcome::Failed(f) => Ok(Some(f)),
            Outcome::Gone(reason) => Err(Done::Gone(reason)),
            Outcome::Held => Err(Done::Next),
            Outcome::Stopped => Err(Done::Stop),
        };
        let settled = match outcome {
            Ok(failure) => {
                let last = ids.iter().chain(&filtered).copied().max();
                self.cursor = last.or(self.cursor);
                let node = self.shared.bus.node_id();
                let id = |item: &Item| format!("msg_{node}_{}", item.event_id);
                let keeper = &self.shared.keeper;
                match failure {
                    None => Settled {
                        retained: keeper.retained_entries(&delivery.items, &id),
                        delivered: ids,
                        filtered,
                        in_flight: n,
                        ..Settled::default()
                    },
                    Some(f) => Settled {
                        dead: entries(
                            &delivery.items,
                            &id,
                            Reason::Failed.as_str(),
                            Some(&f.error),
                            f.attempts,
                        ),
                        failed: ids,
                        filtered,
                        in_flight: n,
                        ..Settled::default()
                    },
                }
            }
            Err(done) => {
                // Not settled: the records wait again (read again from the cursor).
                self.ahead.clear();
                sub(&self.shared.counters.durable_in_flight, n);
                return done;
            }
        };
        self.settler.push(settled);
        self.settler.pump().await;
        Done::Next
    }

    /// 410 Gone: stop taking events from the bus, keep the spool, say so.
    async fn disable(&self, reason: String) {
        let shown = &self.config.shown;
        let name = &self.shared.options.name;
        warn!(
            webhook = %name,
            url = %shown,
            %reason,
            depth = self.store.spool.stats().depth,
            "webhook disabled; it stays off until `pilotctl webhook resume` or the webhook is \
             set again, and the spooled events wait on disk until then"
        );
        self.shared.bus.detach(self.sub_id);
        self.spooler_stop.cancel();
        self.disabled.set(reason.clone(), jiff::Timestamp::now());
        self.store.log.flush_async().await;
        publish_disabled(&self.shared.bus, name, shown, reason);
    }
}

/// The durable worker between the attempts of a delivery: it commits settled records and runs
/// expiry while it waits, persists attempt counts, and abandons a request on an abort.
impl Hooks for DurableWorker {
    async fn wait_until(&mut self, at: Instant) -> Wait {
        self.pause_until(at).await
    }

    async fn before_send(&mut self) -> bool {
        self.settler.pump().await;
        !self.stop.is_cancelled()
    }

    fn abandoned(&self) -> impl Future<Output = ()> + Send + '_ {
        self.abort.cancelled()
    }

    async fn retried(&mut self, delivery: &Delivery, attempt: u32) {
        let log = self.store.log.clone();
        let ids: Vec<u64> = delivery.items.iter().map(|i| i.event_id).collect();
        if let Err(e) = blocking(move || log.set_attempts(&ids, attempt)).await {
            warn!(error = %e, "webhook spool could not store the attempt count");
        }
    }

    fn retry_at(&mut self) -> &mut Option<Instant> {
        &mut self.retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spooled(id: u64, name: &str) -> Spooled {
        let payload = Bytes::from(format!(
            r#"{{"event_id":{id},"event":"{name}","node_id":7,"timestamp":"2026-01-15T12:34:56Z"}}"#
        ));
        Spooled::of(SpoolRecord {
            event_id: id,
            webhook_id: format!("msg_7_{id}"),
            accepted_at_ms: 0,
            attempts: 2,
            payload,
        })
    }

    #[test]
    fn a_spooled_record_knows_its_name_and_keeps_its_id() {
        let s = spooled(5, "trust.changed");
        assert_eq!(&*s.item.event, "trust.changed");
        assert_eq!((s.webhook_id.as_str(), s.attempts), ("msg_7_5", 2));
        let odd = Spooled::of(SpoolRecord {
            event_id: 1,
            webhook_id: "msg_0_1".into(),
            accepted_at_ms: 0,
            attempts: 0,
            payload: Bytes::from_static(b"not json"),
        });
        assert_eq!(&*odd.item.event, "", "unreadable payloads still deliver");
    }

    #[test]
    fn single_and_batch_deliveries_use_the_stored_ids() {
        let one = delivery_of(vec![spooled(5, "a.b")], false).unwrap();
        assert_eq!(&*one.webhook_id, "msg_7_5");
        assert!(!one.batched);
        assert_eq!(one.body, spooled(5, "a.b").item.payload);
        let batch = delivery_of(vec![spooled(5, "a.b"), spooled(9, "a.c")], false).unwrap();
        assert_eq!(&*batch.webhook_id, "msg_7_5-9");
        assert!(batch.batched);
        let v: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(v["events"][1]["event_id"], 9);
        let of_one = delivery_of(vec![spooled(5, "a.b")], true).unwrap();
        assert_eq!(&*of_one.webhook_id, "msg_7_5-5");
        assert!(of_one.body.starts_with(b"{\"events\":["));
        assert!(delivery_of(vec![], true).is_none());
    }
}
