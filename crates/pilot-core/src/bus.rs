//! The in-process event bus: the core publishes what happened, subscribers take what they match.
//!
//! `publish` never blocks: each subscriber has a bounded buffer, and an event that does not fit
//! is dropped for that subscriber and counted in its [`SubscriberCounters`] (never silently).
//! Event ids are assigned and fanned out under one short lock, so every subscriber sees events
//! in strictly increasing `event_id` order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::event::Event;
use crate::pattern::Pattern;

/// Counters kept per subscriber. A subscriber may bring its own so its counts survive a
/// re-subscription (the webhook plugin does this across URL swaps).
#[derive(Debug, Default)]
pub struct SubscriberCounters {
    /// Events put into the subscriber's buffer.
    pub queued: AtomicU64,
    /// Events that matched but did not fit in the buffer.
    pub dropped: AtomicU64,
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

    /// Publishes an event now. Never blocks; returns the stamped event.
    pub fn publish(&self, name: impl Into<String>, data: Option<Box<RawValue>>) -> Arc<Event> {
        let name = name.into();
        let mut inner = self.lock();
        inner.last_id += 1;
        let event = Arc::new(Event::new(
            inner.last_id,
            name,
            self.0.node_id,
            jiff::Timestamp::now(),
            data,
        ));
        let mut closed = false;
        for sub in &inner.subs {
            if !sub.pattern.matches(&event.event) {
                continue;
            }
            match sub.tx.try_send(event.clone()) {
                Ok(()) => {
                    sub.counters.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
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
            pattern,
            tx,
            capacity,
            counters: counters.clone(),
        });
        Subscription {
            id,
            rx,
            counters,
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

/// A live subscription. Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Arc<Event>>,
    counters: Arc<SubscriberCounters>,
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

    /// The next event; `None` once detached and drained.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        self.rx.recv().await
    }

    /// The next event if one is buffered.
    pub fn try_recv(&mut self) -> Option<Arc<Event>> {
        self.rx.try_recv().ok()
    }

    /// Receives up to `limit` events into `out`, waiting for at least one; 0 means closed.
    pub async fn recv_many(&mut self, out: &mut Vec<Arc<Event>>, limit: usize) -> usize {
        self.rx.recv_many(out, limit).await
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
