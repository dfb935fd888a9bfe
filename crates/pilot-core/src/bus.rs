//! The in-process event bus: the core publishes what happened, subscribers take what they match.
//!
//! `publish` never blocks: each subscriber has a bounded buffer, and an event that does not fit
//! is dropped for that subscriber and counted in its [`SubscriberCounters`] (never silently).
//! Event ids are assigned and fanned out under one short lock, so every subscriber sees events
//! in strictly increasing `event_id` order.
//!
//! Durability watermark: a consumer that persists events (the webhook spool) registers a
//! [`DurableSink`] and advances it as events reach the disk; [`Bus::wait_durable`] lets a
//! publisher wait until every registered sink holds its event. This lives beside the publish
//! path, not on it: `publish` never looks at the sinks, and with no sink registered
//! `wait_durable` returns at once.
//!
//! A sink ends in one of two ways. [`DurableSink::close`] (the consumer stopped on purpose,
//! having reported what it could not persist as lost) unregisters it and releases its waiters.
//! Dropped without `close` (its task panicked or was aborted), the sink fails closed: it stays
//! registered as *dead*, so waiters for events past its watermark get
//! [`DurabilityError::Failed`] instead of a durability nobody provided; the next sink
//! registered under the same label takes its place and reports the events in between lost.
//!
//! Each subscriber's counters are kept by the bus on both ends of its buffer: `queued` and
//! `dropped` as events are offered, `received` as the subscription hands them to its consumer.
//! A consumer's accounting compares what it holds and settled against `received`, counted by
//! the bus, so an event taken and then lost by the consumer shows.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch, Notify};

use crate::event::Event;
use crate::pattern::Pattern;
use crate::severity::Severity;

/// Counters kept per subscriber. A subscriber may bring its own so its counts survive a
/// re-subscription (the webhook plugin does this across URL swaps).
#[derive(Debug, Default)]
pub struct SubscriberCounters {
    /// Events put into the subscriber's buffer.
    pub queued: AtomicU64,
    /// Events that matched but did not fit in the buffer.
    pub dropped: AtomicU64,
    /// Events the subscription handed to its consumer (every receive method counts).
    pub received: AtomicU64,
    /// Where the events that did not fit the buffer go, when the subscriber wants them back
    /// (the webhook plugin keeps them as dead letters): offered without waiting, and still
    /// counted in `dropped` whether or not this had room.
    pub overflow: std::sync::OnceLock<mpsc::Sender<Arc<Event>>>,
}

/// What `pilotctl info` shows of one subscriber.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscriberInfo {
    pub id: u64,
    pub label: String,
    pub pattern: String,
    pub capacity: usize,
    pub buffered: usize,
    pub queued: u64,
    pub dropped: u64,
}

struct Sub {
    id: u64,
    label: String,
    pattern: Pattern,
    tx: mpsc::Sender<Arc<Event>>,
    capacity: usize,
    counters: Arc<SubscriberCounters>,
}

struct Inner {
    last_id: u64,
    next_sub: u64,
    subs: Vec<Sub>,
}

struct Shared {
    node_id: u32,
    published: AtomicU64,
    inner: Mutex<Inner>,
    /// The durable sinks' watermarks; never touched by `publish`.
    durable: watch::Sender<Watermarks>,
}

/// A handle to the bus; clones share it.
#[derive(Clone)]
pub struct Bus(Arc<Shared>);

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("node_id", &self.0.node_id)
            .field("last_event_id", &self.last_event_id())
            .finish()
    }
}

impl Bus {
    /// A bus whose first event gets id 1.
    pub fn new(node_id: u32) -> Self {
        Self::starting_after(node_id, 0)
    }

    /// A bus whose first event gets id `last_id + 1` (for ids that must not repeat).
    pub fn starting_after(node_id: u32, last_id: u64) -> Self {
        Bus(Arc::new(Shared {
            node_id,
            published: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                last_id,
                next_sub: 1,
                subs: Vec::new(),
            }),
            durable: watch::Sender::new(Watermarks::default()),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` inconsistent (every update is a
        // single push, retain or increment), so a poisoned lock is safe to keep using.
        self.0.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node id stamped on every event.
    pub fn node_id(&self) -> u32 {
        self.0.node_id
    }

    /// The id of the newest event (0 before the first).
    pub fn last_event_id(&self) -> u64 {
        self.lock().last_id
    }

    /// How many events this bus has published.
    pub fn published(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }

    /// Publishes an event now, with the catalog's severity for its name (`info` outside the
    /// catalog). Never blocks; returns the stamped event.
    pub fn publish(&self, name: impl Into<String>, data: Option<Box<RawValue>>) -> Arc<Event> {
        self.publish_with(name, data, None)
    }

    /// Like [`Bus::publish`], with `severity` instead of the catalog's when it is given.
    pub fn publish_with(
        &self,
        name: impl Into<String>,
        data: Option<Box<RawValue>>,
        severity: Option<Severity>,
    ) -> Arc<Event> {
        // Allocated (and the severity looked up) before the lock is taken: under it, only the
        // id, the clock read and the fan-out.
        let mut event = Arc::new(Event::with_severity(
            0,
            name,
            self.0.node_id,
            jiff::Timestamp::UNIX_EPOCH,
            data,
            severity,
        ));
        let mut inner = self.lock();
        inner.last_id += 1;
        if let Some(e) = Arc::get_mut(&mut event) {
            // Always taken: nothing else holds the event yet.
            e.event_id = inner.last_id;
            e.timestamp = now();
        }
        let mut closed = false;
        for sub in &inner.subs {
            if !sub.pattern.matches(&event.event) {
                continue;
            }
            // Counted before it is sent, so `queued` is never behind what the subscriber has
            // taken (a consumer's accounting can rely on it); taken back if it was not sent.
            sub.counters.queued.fetch_add(1, Ordering::Relaxed);
            match sub.tx.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    sub.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    sub.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    if let Some(overflow) = sub.counters.overflow.get() {
                        let _ = overflow.try_send(event);
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    sub.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    closed = true;
                }
            }
        }
        if closed {
            inner.subs.retain(|s| !s.tx.is_closed());
        }
        drop(inner);
        self.0.published.fetch_add(1, Ordering::Relaxed);
        event
    }

    /// Subscribes to the events `pattern` matches, with a buffer of `capacity` events.
    pub fn subscribe(
        &self,
        label: impl Into<String>,
        pattern: Pattern,
        capacity: usize,
    ) -> Subscription {
        self.subscribe_with(label, pattern, capacity, Arc::default())
    }

    /// Like [`Bus::subscribe`], counting into `counters`.
    pub fn subscribe_with(
        &self,
        label: impl Into<String>,
        pattern: Pattern,
        capacity: usize,
        counters: Arc<SubscriberCounters>,
    ) -> Subscription {
        let mut inner = self.lock();
        self.add(&mut inner, label.into(), pattern, capacity, counters)
    }

    /// Atomically detaches subscriber `old` and subscribes anew: every event published before
    /// this call is in the old subscription's buffer (or counted as dropped there), every event
    /// after it goes to the new one. The old buffer stays readable until drained.
    pub fn replace(
        &self,
        old: u64,
        label: impl Into<String>,
        pattern: Pattern,
        capacity: usize,
        counters: Arc<SubscriberCounters>,
    ) -> Subscription {
        let mut inner = self.lock();
        inner.subs.retain(|s| s.id != old);
        self.add(&mut inner, label.into(), pattern, capacity, counters)
    }

    /// Stops sending to subscriber `id`; what is already buffered can still be read.
    pub fn detach(&self, id: u64) {
        self.lock().subs.retain(|s| s.id != id);
    }

    fn add(
        &self,
        inner: &mut Inner,
        label: String,
        pattern: Pattern,
        capacity: usize,
        counters: Arc<SubscriberCounters>,
    ) -> Subscription {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let id = inner.next_sub;
        inner.next_sub += 1;
        inner.subs.push(Sub {
            id,
            label,
            pattern: pattern.clone(),
            tx,
            capacity,
            counters: counters.clone(),
        });
        Subscription {
            id,
            rx,
            counters,
            pattern,
            bus: self.clone(),
        }
    }

    /// A snapshot of every live subscriber.
    pub fn subscribers(&self) -> Vec<SubscriberInfo> {
        let inner = self.lock();
        inner
            .subs
            .iter()
            .filter(|s| !s.tx.is_closed())
            .map(|s| SubscriberInfo {
                id: s.id,
                label: s.label.clone(),
                pattern: s.pattern.to_string(),
                capacity: s.capacity,
                buffered: s.capacity - s.tx.capacity(),
                queued: s.counters.queued.load(Ordering::Relaxed),
                dropped: s.counters.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// The wall clock as a timestamp, read with one `clock_gettime` (`jiff::Timestamp::now` goes
/// through `SystemTime` and `duration_since`: about four times the instructions).
fn now() -> jiff::Timestamp {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_REALTIME always exists.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        return jiff::Timestamp::now();
    }
    // tv_nsec is always in 0..1e9, so the cast is lossless.
    jiff::Timestamp::new(ts.tv_sec, ts.tv_nsec as i32).unwrap_or_else(|_| jiff::Timestamp::now())
}

/// Why [`Bus::wait_durable`] could not confirm that an event is durable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DurabilityError {
    /// The sink cannot persist events right now (disk full, read-only, ...). The event may
    /// still be persisted later (the sink keeps it in memory and retries), but it is not yet.
    #[error("event not persisted: {sink} cannot write: {reason}")]
    Failed { sink: String, reason: String },
    /// The event never reached the sink (for example its buffer overflowed) and never will.
    #[error("event {event_id} was not persisted by {sink}: {reason}")]
    Lost {
        sink: String,
        event_id: u64,
        reason: String,
    },
}

/// What `pilotctl info` can show of one durable sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DurableSinkInfo {
    pub label: String,
    /// Every event up to this id is durable for this sink.
    pub durable_event_id: u64,
    /// Why the sink cannot persist right now, if it cannot.
    pub failed: Option<String>,
    /// The sink's consumer ended without closing it (panicked, aborted): it persists nothing
    /// more, and `failed` says so.
    #[serde(default)]
    pub dead: bool,
}

/// The failure a sink dropped without [`DurableSink::close`] reports.
pub const SINK_ENDED: &str = "the durable sink's task ended unexpectedly";

/// How many lost ranges the bus remembers. Waiters ask about events that were just published,
/// so only the newest ranges matter; older ones are forgotten (their waiters are long gone).
const LOST_RANGES_KEPT: usize = 256;

/// Events `first..=last` that a sink reported lost. Kept on the bus, not on the sink, so the
/// verdict outlives the sink (a waiter woken after the sink is dropped still sees it).
#[derive(Debug)]
struct LostRange {
    first: u64,
    last: u64,
    sink: String,
    reason: Arc<str>,
}

/// One sink's watermark.
#[derive(Debug)]
struct SinkMark {
    label: String,
    durable: u64,
    failed: Option<String>,
    /// Dropped without `close`: kept (failed) until a sink with the same label replaces it.
    dead: bool,
    /// Poked by a waiter that waits for an id past `durable`, so an idle sink can catch up.
    wanted: Arc<Notify>,
}

/// Every registered sink's watermark (the value of the bus's watch channel).
#[derive(Debug, Default)]
struct Watermarks {
    next_sink: u64,
    sinks: BTreeMap<u64, SinkMark>,
    /// Newest last.
    lost: VecDeque<LostRange>,
}

impl Watermarks {
    /// `Some(result)` once `event_id` is settled for every sink, `None` while one is behind.
    fn check(&self, event_id: u64) -> Option<Result<(), DurabilityError>> {
        if let Some(lost) = self
            .lost
            .iter()
            .rev()
            .find(|r| (r.first..=r.last).contains(&event_id))
        {
            return Some(Err(DurabilityError::Lost {
                sink: lost.sink.clone(),
                event_id,
                reason: lost.reason.to_string(),
            }));
        }
        let mut pending = false;
        for mark in self.sinks.values() {
            if mark.durable >= event_id {
                continue;
            }
            if let Some(reason) = &mark.failed {
                return Some(Err(DurabilityError::Failed {
                    sink: mark.label.clone(),
                    reason: reason.clone(),
                }));
            }
            pending = true;
        }
        (!pending).then_some(Ok(()))
    }

    /// Pokes every sink that is behind `event_id`.
    fn poke_behind(&self, event_id: u64) {
        for mark in self.sinks.values().filter(|m| m.durable < event_id) {
            mark.wanted.notify_one();
        }
    }
}

impl Bus {
    /// Registers a durable sink. It starts at [`Bus::last_event_id`]: events published before
    /// this call are not waited for; every later one is, until the sink advances past it (or
    /// is dropped). Prefer [`Bus::subscribe_durable`], which also subscribes at the same point.
    pub fn durable_sink(&self, label: impl Into<String>) -> DurableSink {
        let inner = self.lock();
        self.register_sink(label.into(), inner.last_id)
    }

    /// Subscribes and registers a durable sink at the same point of the stream, atomically:
    /// the subscription receives exactly the matching events the sink will be waited for.
    pub fn subscribe_durable(
        &self,
        label: impl Into<String>,
        pattern: Pattern,
        capacity: usize,
        counters: Arc<SubscriberCounters>,
    ) -> (Subscription, DurableSink) {
        let label = label.into();
        let mut inner = self.lock();
        let sink = self.register_sink(label.clone(), inner.last_id);
        let sub = self.add(&mut inner, label, pattern, capacity, counters);
        (sub, sink)
    }

    fn register_sink(&self, label: String, start: u64) -> DurableSink {
        let wanted = Arc::new(Notify::new());
        let mut id = 0;
        self.0.durable.send_modify(|w| {
            // A dead sink with this label is replaced: what it never persisted up to here is
            // lost (its waiters fail), what comes after is this sink's.
            let dead: Vec<u64> = w
                .sinks
                .iter()
                .filter(|(_, m)| m.dead && m.label == label)
                .map(|(id, _)| *id)
                .collect();
            for old in dead {
                if let Some(mark) = w.sinks.remove(&old) {
                    if mark.durable < start {
                        if w.lost.len() >= LOST_RANGES_KEPT {
                            w.lost.pop_front();
                        }
                        w.lost.push_back(LostRange {
                            first: mark.durable + 1,
                            last: start,
                            sink: label.clone(),
                            reason: Arc::from(SINK_ENDED),
                        });
                    }
                }
            }
            id = w.next_sink;
            w.next_sink += 1;
            w.sinks.insert(
                id,
                SinkMark {
                    label: label.clone(),
                    durable: start,
                    failed: None,
                    dead: false,
                    wanted: wanted.clone(),
                },
            );
        });
        DurableSink {
            id,
            label,
            wanted,
            bus: self.clone(),
            closed: false,
        }
    }

    /// Waits until `event_id` is durable for every registered sink.
    ///
    /// Resolves at once when no sink is registered or every sink is at `>= event_id`. A sink
    /// dropped while this waits no longer counts. Errs when a sink reported the event lost
    /// ([`DurabilityError::Lost`]) or a sink behind `event_id` has failed
    /// ([`DurabilityError::Failed`]). Cancel-safe.
    pub async fn wait_durable(&self, event_id: u64) -> Result<(), DurabilityError> {
        {
            let marks = self.0.durable.borrow();
            if let Some(result) = marks.check(event_id) {
                return result;
            }
            marks.poke_behind(event_id);
        }
        let mut rx = self.0.durable.subscribe();
        let mut outcome = None;
        // `wait_for` fails only when the sender is dropped; it lives in `Shared`, which `self`
        // keeps alive, so the fallback below is never taken.
        let _ = rx
            .wait_for(|marks| {
                outcome = marks.check(event_id);
                outcome.is_some()
            })
            .await;
        outcome.unwrap_or(Ok(()))
    }

    /// A snapshot of every registered durable sink.
    pub fn durable_sinks(&self) -> Vec<DurableSinkInfo> {
        self.0
            .durable
            .borrow()
            .sinks
            .values()
            .map(|m| DurableSinkInfo {
                label: m.label.clone(),
                durable_event_id: m.durable,
                failed: m.failed.clone(),
                dead: m.dead,
            })
            .collect()
    }
}

/// A durable consumer's watermark on the bus (the webhook spooler registers one).
///
/// While any sink is registered, [`Bus::wait_durable`] waits until every registered sink has
/// advanced to the event. [Closing](DurableSink::close) the sink unregisters it and releases
/// its waiters: the sink no longer vouches for anything, so they resolve `Ok` (the in-memory
/// guarantee) unless the sink reported their events [lost](DurableSink::lost) first. Dropping
/// it without `close` (a panic, an aborted task) fails closed: see the module docs.
pub struct DurableSink {
    id: u64,
    label: String,
    wanted: Arc<Notify>,
    bus: Bus,
    /// Set by [`DurableSink::close`]: the drop then unregisters instead of failing.
    closed: bool,
}

impl std::fmt::Debug for DurableSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableSink")
            .field("label", &self.label)
            .field("durable", &self.durable())
            .finish()
    }
}

impl DurableSink {
    fn modify(&self, f: impl FnOnce(&mut SinkMark) -> bool) {
        self.bus
            .0
            .durable
            .send_if_modified(|w| w.sinks.get_mut(&self.id).is_some_and(f));
    }

    /// Every event up to `event_id` is durable for this sink; clears a failure. The watermark
    /// never moves back.
    pub fn advance(&self, event_id: u64) {
        self.modify(|m| {
            let moved = event_id > m.durable;
            if moved {
                m.durable = event_id;
            }
            // `|`, not `||`: the failure is cleared either way.
            moved | m.failed.take().is_some()
        });
    }

    /// This sink cannot persist: waiters for events past its watermark get
    /// [`DurabilityError::Failed`] until it advances again.
    pub fn fail(&self, reason: String) {
        self.modify(|m| {
            let changed = m.failed.as_deref() != Some(reason.as_str());
            m.failed = Some(reason);
            changed
        });
    }

    /// Events `first..=last` will never become durable through this sink (they did not reach
    /// it, or it gave up on them): their waiters get [`DurabilityError::Lost`], also after the
    /// sink is dropped. Only the newest ranges are remembered.
    pub fn lost(&self, first: u64, last: u64, reason: &str) {
        if first > last {
            return;
        }
        let range = LostRange {
            first,
            last,
            sink: self.label.clone(),
            reason: Arc::from(reason),
        };
        self.bus.0.durable.send_modify(|w| {
            if w.lost.len() >= LOST_RANGES_KEPT {
                w.lost.pop_front();
            }
            w.lost.push_back(range);
        });
    }

    /// Every event up to this id is durable for this sink.
    pub fn durable(&self) -> u64 {
        self.bus
            .0
            .durable
            .borrow()
            .sinks
            .get(&self.id)
            .map_or(0, |m| m.durable)
    }

    /// Completes when a waiter waits for an event past this sink's watermark (one stored
    /// wake-up at most), so a sink with nothing to read can still confirm events it will never
    /// see (ones its subscription's pattern leaves out).
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// The label given at registration.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The bus this sink is registered on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }
}

impl DurableSink {
    /// Ends the sink on purpose: unregisters it and releases its waiters (events it reported
    /// lost stay lost). Call it when the consumer stops normally, after reporting what it could
    /// not persist.
    pub fn close(mut self) {
        self.closed = true;
    }
}

impl Drop for DurableSink {
    fn drop(&mut self) {
        if self.closed {
            self.bus
                .0
                .durable
                .send_if_modified(|w| w.sinks.remove(&self.id).is_some());
        } else {
            // Fail closed: the consumer is gone without saying what it persisted.
            self.bus.0.durable.send_if_modified(|w| {
                w.sinks.get_mut(&self.id).is_some_and(|m| {
                    m.dead = true;
                    m.failed = Some(SINK_ENDED.to_string());
                    true
                })
            });
        }
    }
}

/// A live subscription. Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Arc<Event>>,
    counters: Arc<SubscriberCounters>,
    pattern: Pattern,
    bus: Bus,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Subscription {
    /// This subscriber's id on the bus.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn count_received(&self, n: usize) {
        self.counters
            .received
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The next event; `None` once detached and drained.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        let event = self.rx.recv().await;
        self.count_received(usize::from(event.is_some()));
        event
    }

    /// The next event if one is buffered.
    pub fn try_recv(&mut self) -> Option<Arc<Event>> {
        let event = self.rx.try_recv().ok();
        self.count_received(usize::from(event.is_some()));
        event
    }

    /// Receives up to `limit` events into `out`, waiting for at least one; 0 means closed.
    pub async fn recv_many(&mut self, out: &mut Vec<Arc<Event>>, limit: usize) -> usize {
        let n = self.rx.recv_many(out, limit).await;
        self.count_received(n);
        n
    }

    /// [`Subscription::recv_many`] for a consumer that keeps an accounting: in the instant the
    /// events leave the buffer (`received` counted), and with the guard `lock` returns held,
    /// `took` is called with `out`'s new length, so a snapshot taken under the other side of
    /// that lock sees each event either buffered or held, never neither.
    pub async fn recv_many_with<G>(
        &mut self,
        out: &mut Vec<Arc<Event>>,
        limit: usize,
        mut lock: impl FnMut() -> G,
        mut took: impl FnMut(usize),
    ) -> usize {
        std::future::poll_fn(|cx| {
            let _guard = lock();
            match self.rx.poll_recv_many(cx, out, limit) {
                std::task::Poll::Ready(n) => {
                    self.counters
                        .received
                        .fetch_add(n as u64, Ordering::Relaxed);
                    took(out.len());
                    std::task::Poll::Ready(n)
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
        .await
    }

    /// [`Subscription::try_recv`] into `out`, counted like [`Subscription::recv_many_with`];
    /// whether an event was taken.
    pub fn try_recv_with<G>(
        &mut self,
        out: &mut Vec<Arc<Event>>,
        lock: impl FnOnce() -> G,
        took: impl FnOnce(usize),
    ) -> bool {
        let _guard = lock();
        match self.rx.try_recv() {
            Ok(event) => {
                self.count_received(1);
                out.push(event);
                took(out.len());
                true
            }
            Err(_) => false,
        }
    }

    /// Events waiting in the buffer.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The buffer's capacity.
    pub fn capacity(&self) -> usize {
        self.rx.max_capacity()
    }

    /// This subscriber's counters.
    pub fn counters(&self) -> &Arc<SubscriberCounters> {
        &self.counters
    }

    /// The pattern this subscription was made with.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The bus this subscription is on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Stops new events from arriving; what is buffered can still be read.
    pub fn detach(&mut self) {
        self.bus.detach(self.id);
    }

    /// Drops every buffered event and returns how many there were.
    pub fn discard_buffered(&mut self) -> usize {
        let mut n = 0;
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        self.count_received(n);
        n
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.bus.detach(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Pattern {
        Pattern::All
    }

    #[tokio::test]
    async fn ids_start_at_one_and_increase() {
        let bus = Bus::new(5);
        let mut sub = bus.subscribe("t", all(), 16);
        for _ in 0..3 {
            bus.publish("a.b", None);
        }
        let ids: Vec<u64> = (0..3).map(|_| sub.try_recv().unwrap().event_id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(bus.last_event_id(), 3);
        assert_eq!(bus.published(), 3);
    }

    #[tokio::test]
    async fn patterns_select_events() {
        let bus = Bus::new(0);
        let mut hs = bus.subscribe("hs", "handshake.*".parse().unwrap(), 16);
        let mut exact = bus.subscribe("ex", "trust.changed".parse().unwrap(), 16);
        bus.publish("handshake.received", None);
        bus.publish("trust.changed", None);
        bus.publish("trust.revoked", None);
        assert_eq!(hs.try_recv().unwrap().event, "handshake.received");
        assert!(hs.try_recv().is_none());
        assert_eq!(exact.try_recv().unwrap().event, "trust.changed");
        assert!(exact.try_recv().is_none());
    }

    #[tokio::test]
    async fn events_carry_the_catalogs_severity_or_the_publishers() {
        let bus = Bus::new(0);
        let mut sub = bus.subscribe("t", all(), 16);
        let a = bus.publish("webhook.disabled", None);
        let b = bus.publish("a.b", None);
        let c = bus.publish_with("a.b", None, Some(Severity::Critical));
        let d = bus.publish_with("webhook.disabled", None, None);
        let got: Vec<Severity> = (0..4).map(|_| sub.try_recv().unwrap().severity).collect();
        use Severity::*;
        assert_eq!(got, [Warning, Info, Critical, Warning]);
        assert_eq!(
            [a.severity, b.severity, c.severity, d.severity],
            [Warning, Info, Critical, Warning]
        );
        assert_eq!(c.event_id, 3, "publish_with takes the next id like publish");
    }

    #[tokio::test]
    async fn a_full_subscriber_drops_and_counts_without_blocking() {
        let bus = Bus::new(0);
        let slow = bus.subscribe("slow", all(), 2);
        let mut fast = bus.subscribe("fast", all(), 100);
        for _ in 0..10 {
            bus.publish("a.b", None);
        }
        assert_eq!(slow.counters().dropped.load(Ordering::Relaxed), 8);
        assert_eq!(slow.counters().queued.load(Ordering::Relaxed), 2);
        assert_eq!(fast.counters().dropped.load(Ordering::Relaxed), 0);
        assert_eq!(fast.len(), 10);
        let infos = bus.subscribers();
        let s = infos.iter().find(|i| i.label == "slow").unwrap();
        assert_eq!((s.dropped, s.buffered, s.capacity), (8, 2, 2));
        assert!(fast.try_recv().is_some());
    }

    #[tokio::test]
    async fn what_does_not_fit_goes_to_the_overflow_while_it_has_room() {
        let bus = Bus::new(0);
        let counters = Arc::new(SubscriberCounters::default());
        let (tx, mut rx) = mpsc::channel(3);
        counters.overflow.set(tx).unwrap();
        let _sub = bus.subscribe_with("slow", all(), 2, counters.clone());
        for _ in 0..10 {
            bus.publish("a.b", None);
        }
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 8);
        let mut ids = Vec::new();
        while let Ok(e) = rx.try_recv() {
            ids.push(e.event_id);
        }
        assert_eq!(
            ids,
            [3, 4, 5],
            "the first drops, as many as the overflow holds"
        );
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes() {
        let bus = Bus::new(0);
        let sub = bus.subscribe("t", all(), 4);
        assert_eq!(bus.subscribers().len(), 1);
        drop(sub);
        assert!(bus.subscribers().is_empty());
        bus.publish("a.b", None);
    }

    #[tokio::test]
    async fn replace_splits_the_stream_at_the_call() {
        let bus = Bus::new(0);
        let counters = Arc::new(SubscriberCounters::default());
        let mut old = bus.subscribe_with("w", all(), 16, counters.clone());
        bus.publish("a.one", None);
        bus.publish("a.two", None);
        let mut new = bus.replace(old.id(), "w", all(), 16, counters.clone());
        bus.publish("a.three", None);
        assert_eq!(old.recv().await.unwrap().event_id, 1);
        assert_eq!(old.recv().await.unwrap().event_id, 2);
        assert!(
            old.recv().await.is_none(),
            "old stream ends after its events"
        );
        assert_eq!(new.recv().await.unwrap().event_id, 3);
        assert_eq!(counters.queued.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn detached_subscription_keeps_its_buffer() {
        let bus = Bus::new(0);
        let mut sub = bus.subscribe("t", all(), 4);
        bus.publish("a.b", None);
        sub.detach();
        bus.publish("a.c", None);
        assert_eq!(sub.recv().await.unwrap().event, "a.b");
        assert!(sub.recv().await.is_none());
    }

    /// Polls a future once: `Some(output)` if it is ready now.
    fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }

    /// A task waiting until event `id` is durable.
    fn spawn_waiter(bus: &Bus, id: u64) -> tokio::task::JoinHandle<Result<(), DurabilityError>> {
        let bus = bus.clone();
        tokio::spawn(async move { bus.wait_durable(id).await })
    }

    async fn settles<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(5), f)
            .await
            .expect("the wait never settled")
    }

    #[tokio::test]
    async fn without_a_sink_wait_durable_resolves_at_once() {
        let bus = Bus::new(0);
        let ev = bus.publish("a.b", None);
        assert_eq!(ready_now(bus.wait_durable(ev.event_id)), Some(Ok(())));
        assert_eq!(ready_now(bus.wait_durable(1_000)), Some(Ok(())));
        assert!(bus.durable_sinks().is_empty());
    }

    #[tokio::test]
    async fn a_sink_starts_at_the_last_event_and_advance_releases_waiters() {
        let bus = Bus::new(0);
        let before = bus.publish("a.b", None);
        let sink = bus.durable_sink("spool");
        assert_eq!(sink.durable(), before.event_id);
        assert_eq!(ready_now(bus.wait_durable(before.event_id)), Some(Ok(())));

        let ev = bus.publish("a.c", None);
        let waiter = spawn_waiter(&bus, ev.event_id);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "the sink is behind: the waiter waits"
        );
        sink.advance(ev.event_id - 1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "still behind");
        sink.advance(ev.event_id);
        assert_eq!(settles(waiter).await.unwrap(), Ok(()));
        sink.advance(1);
        assert_eq!(
            sink.durable(),
            ev.event_id,
            "the watermark never moves back"
        );
        let info = bus.durable_sinks();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].label, "spool");
        assert_eq!(info[0].durable_event_id, ev.event_id);
    }

    #[tokio::test]
    async fn closing_the_sink_releases_its_waiters() {
        let bus = Bus::new(0);
        let sink = bus.durable_sink("spool");
        let ev = bus.publish("a.b", None);
        let waiter = spawn_waiter(&bus, ev.event_id);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        sink.close();
        assert_eq!(settles(waiter).await.unwrap(), Ok(()));
        assert!(bus.durable_sinks().is_empty());
    }

    #[tokio::test]
    async fn a_sink_dropped_without_close_fails_its_waiters_until_replaced() {
        let bus = Bus::new(0);
        let sink = bus.durable_sink("spool");
        let durable = bus.publish("a.a", None);
        sink.advance(durable.event_id);
        let ev = bus.publish("a.b", None);
        let waiter = spawn_waiter(&bus, ev.event_id);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // A panicking task drops its sink without closing it.
        let task = tokio::spawn(async move {
            let _sink = sink;
            panic!("the spooler died");
        });
        assert!(task.await.unwrap_err().is_panic());
        let ended = DurabilityError::Failed {
            sink: "spool".into(),
            reason: SINK_ENDED.into(),
        };
        assert_eq!(settles(waiter).await.unwrap(), Err(ended.clone()));
        let later = bus.publish("a.c", None);
        assert_eq!(
            ready_now(bus.wait_durable(later.event_id)),
            Some(Err(ended))
        );
        assert_eq!(ready_now(bus.wait_durable(durable.event_id)), Some(Ok(())));
        let info = bus.durable_sinks();
        assert!(info[0].dead && info[0].failed.as_deref() == Some(SINK_ENDED));

        // A new sink with the same label takes its place: what the dead one never persisted
        // is lost, what comes next is the new sink's.
        let other = bus.durable_sink("other");
        let replacement = bus.durable_sink("spool");
        assert_eq!(bus.durable_sinks().len(), 2);
        for id in [ev.event_id, later.event_id] {
            assert!(matches!(
                ready_now(bus.wait_durable(id)),
                Some(Err(DurabilityError::Lost { event_id, .. })) if event_id == id
            ));
        }
        let next = bus.publish("a.d", None);
        assert_eq!(ready_now(bus.wait_durable(next.event_id)), None);
        replacement.advance(next.event_id);
        other.advance(next.event_id);
        assert_eq!(ready_now(bus.wait_durable(next.event_id)), Some(Ok(())));
    }

    #[tokio::test]
    async fn receiving_is_counted_by_the_subscription() {
        let bus = Bus::new(0);
        let mut sub = bus.subscribe("t", all(), 16);
        for _ in 0..6 {
            bus.publish("a.b", None);
        }
        let lock = std::sync::RwLock::new(());
        let received = || sub_received(&bus);
        assert!(sub.try_recv().is_some());
        assert!(sub.recv().await.is_some());
        let mut out = Vec::new();
        let mut held = 0;
        assert!(sub.try_recv_with(&mut out, || lock.read(), |n| held = n));
        assert_eq!((held, received()), (1, 3));
        let n = sub
            .recv_many_with(&mut out, 2, || lock.read(), |n| held = n)
            .await;
        assert_eq!((n, held, received()), (2, 3, 5));
        assert_eq!(sub.discard_buffered(), 1);
        assert_eq!(received(), 6);
        assert_eq!(sub.counters().queued.load(Ordering::Relaxed), 6);
    }

    fn sub_received(bus: &Bus) -> u64 {
        bus.lock().subs[0].counters.received.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_failed_sink_fails_waiters_until_it_advances() {
        let bus = Bus::new(0);
        let sink = bus.durable_sink("spool");
        let ev = bus.publish("a.b", None);
        let waiter = spawn_waiter(&bus, ev.event_id);
        tokio::task::yield_now().await;
        sink.fail("disk full".into());
        let failed = DurabilityError::Failed {
            sink: "spool".into(),
            reason: "disk full".into(),
        };
        assert_eq!(settles(waiter).await.unwrap(), Err(failed.clone()));
        assert_eq!(ready_now(bus.wait_durable(ev.event_id)), Some(Err(failed)));
        assert_eq!(bus.durable_sinks()[0].failed.as_deref(), Some("disk full"));
        // Events already durable stay fine while the sink fails.
        assert_eq!(ready_now(bus.wait_durable(0)), Some(Ok(())));
        sink.advance(ev.event_id);
        assert_eq!(ready_now(bus.wait_durable(ev.event_id)), Some(Ok(())));
        assert_eq!(bus.durable_sinks()[0].failed, None);
        let next = bus.publish("a.c", None);
        assert_eq!(
            ready_now(bus.wait_durable(next.event_id)),
            None,
            "pending again, not failed"
        );
    }

    #[tokio::test]
    async fn lost_events_fail_their_waiters_only() {
        let bus = Bus::new(0);
        let sink = bus.durable_sink("spool");
        for _ in 0..5 {
            bus.publish("a.b", None);
        }
        sink.lost(2, 3, "buffer overflow");
        sink.advance(5);
        assert_eq!(ready_now(bus.wait_durable(1)), Some(Ok(())));
        assert_eq!(
            ready_now(bus.wait_durable(3)),
            Some(Err(DurabilityError::Lost {
                sink: "spool".into(),
                event_id: 3,
                reason: "buffer overflow".into()
            }))
        );
        assert_eq!(ready_now(bus.wait_durable(4)), Some(Ok(())));
        drop(sink);
        assert!(
            matches!(
                ready_now(bus.wait_durable(2)),
                Some(Err(DurabilityError::Lost { .. }))
            ),
            "the verdict outlives the sink"
        );
        assert_eq!(ready_now(bus.wait_durable(5)), Some(Ok(())));
    }

    #[tokio::test]
    async fn several_sinks_wait_for_the_slowest() {
        let bus = Bus::new(0);
        let a = bus.durable_sink("a");
        let b = bus.durable_sink("b");
        for _ in 0..10 {
            bus.publish("a.b", None);
        }
        a.advance(10);
        b.advance(4);
        assert_eq!(ready_now(bus.wait_durable(4)), Some(Ok(())));
        let waiter = tokio::spawn({
            let bus = bus.clone();
            async move { bus.wait_durable(7).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        b.advance(7);
        assert_eq!(settles(waiter).await.unwrap(), Ok(()));
        // The slow sink failing fails the waiters it is behind on, whatever the others say.
        b.fail("read-only".into());
        assert!(matches!(
            ready_now(bus.wait_durable(9)),
            Some(Err(DurabilityError::Failed { sink, .. })) if sink == "b"
        ));
        b.close();
        assert_eq!(ready_now(bus.wait_durable(9)), Some(Ok(())));
        assert_eq!(ready_now(bus.wait_durable(11)), None, "a is behind 11");
    }

    #[tokio::test]
    async fn a_waiter_pokes_a_sink_that_is_behind() {
        let bus = Bus::new(0);
        let sink = bus.durable_sink("spool");
        let ev = bus.publish("a.b", None);
        assert_eq!(ready_now(bus.wait_durable(ev.event_id)), None);
        settles(sink.wanted()).await;
        assert_eq!(sink.bus().last_event_id(), ev.event_id);
    }

    #[tokio::test]
    async fn subscribe_durable_starts_both_at_the_same_event() {
        let bus = Bus::new(0);
        bus.publish("a.before", None);
        let (mut sub, sink) = bus.subscribe_durable("spool", all(), 8, Arc::default());
        assert_eq!(sink.durable(), 1);
        let ev = bus.publish("a.after", None);
        assert_eq!(sub.try_recv().unwrap().event_id, ev.event_id);
        assert!(sub.try_recv().is_none());
        assert_eq!(bus.subscribers()[0].label, "spool");
    }

    #[tokio::test]
    async fn concurrent_publishers_keep_order_per_subscriber() {
        let bus = Bus::new(0);
        let mut sub = bus.subscribe("t", all(), 100_000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let bus = bus.clone();
                std::thread::spawn(move || {
                    for _ in 0..5000 {
                        bus.publish("a.b", None);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut last = 0;
        while let Some(ev) = sub.try_recv() {
            assert!(ev.event_id > last);
            last = ev.event_id;
        }
        assert_eq!(last, 20_000);
    }
}
