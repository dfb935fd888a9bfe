//! The per-configuration delivery loop (memory mode): takes events from one bus subscription,
//! skips (and counts) what the filter leaves out, gathers batches when batching is on, asks
//! the circuit breaker, and hands each unit to the [`Sender`] (bounded attempts: retries,
//! backoff with jitter, `Retry-After`), counting every outcome. A 410 Gone disables the
//! webhook: the worker detaches from the bus, drops (and counts) what is queued, publishes
//! `webhook.disabled` and stops.
//!
//! # Concurrency
//! A *unit* is one request's worth of events: one event, or one batch when `batch_max` is set.
//! Up to `settings.concurrency` units (default 1) are in flight at once. With 1, the worker
//! takes the next event only when the previous unit is settled: deliveries are in publish
//! order, exactly as before concurrency existed. Above 1, units run side by side and complete
//! in any order (events can arrive out of order). No task is spawned per unit: the first unit
//! in flight is polled in place in a slot of the worker's own future (so with concurrency 1 a
//! unit costs no allocation), the others in a `FuturesUnordered`, both polled by the worker's
//! own `select!`. The requests share the client's keep-alive pool (up to N connections).
//!
//! Every guarantee holds per unit: its own retries, backoff, `Retry-After` and jitter, its own
//! `max_attempts`, its own `webhook-id` and signatures, its own records in the delivery log,
//! and one outcome counted when it completes. `in_flight` counts the events of the units under
//! way (and of a batch being filled), so it can reach N units' worth. The circuit breaker sees
//! units as they complete; while it is open, dequeued units are skipped and counted; in half
//! open exactly one probe is in flight and the worker dequeues nothing else until the probe
//! has completed (the others wait in the queue; see [`crate::circuit`]).
//!
//! A 410 Gone stops the worker at once: nothing more is dequeued or sent, the other units in
//! flight are cancelled and counted as dropped (their retries would go to an endpoint that is
//! gone), and the queue is dropped and counted. An abort (a clear, a drain past its bound,
//! shutdown past `drain_timeout`) cancels every unit in flight and counts their events as
//! dropped. A drain (swap, shutdown) ends when the queue is empty and every unit has settled.
//!
//! When the webhook switches to durable mode, the durable subscription starts in the same
//! instant the in-memory one is detached, as far as the bus allows: the durable one is made
//! first, then this worker is told the cutoff ([`Handover`]) and detached, so the few events
//! published in between reach both. This worker leaves those to the spool (uncounted here).

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::task::Poll;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use pilot_core::{Event, Subscription};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::batch::{Delivery, Item};
use crate::circuit::{lock, Decision, SharedCircuit};
use crate::config::Config;
use crate::health::{publish_disabled, Disabled};
use crate::keeper::Reason;
use crate::retry::deadline_after;
use crate::sender::{Outcome, Policy, Sender, Sleep};
use crate::shared::Shared;
use crate::stats::{add, bump, sub as sub_counter};
use crate::transport::Endpoint;

/// A wait longer than any test or daemon lives (the batch timer while no batch is filling).
const FAR: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// The most item slots reserved up front for a batch (a huge `batch_max` grows as it fills).
const BATCH_RESERVE: usize = 1024;

/// The most events taken from the subscription in one receive.
const INBOX: usize = 64;

/// Events received from the subscription and not taken yet, oldest first: one receive takes
/// up to [`INBOX`] of those waiting (one wakeup and one release of the queue's permits for
/// all of them). Until taken they still count as queued.
#[derive(Default)]
struct Inbox {
    events: Vec<Arc<Event>>,
    next: usize,
}

impl Inbox {
    /// The next event if one is held or waiting in the subscription.
    fn try_next(&mut self, sub: &mut Subscription) -> Option<Arc<Event>> {
        match self.events.get(self.next) {
            Some(event) => {
                let event = event.clone();
                self.advance();
                Some(event)
            }
            None => sub.try_recv(),
        }
    }

    /// The next event, waiting for one; `None` once the subscription is detached and drained.
    async fn next(&mut self, sub: &mut Subscription) -> Option<Arc<Event>> {
        if let Some(event) = self.try_next(sub) {
            return Some(event);
        }
        if sub.recv_many(&mut self.events, INBOX).await == 0 {
            return None;
        }
        self.try_next(sub)
    }

    fn advance(&mut self) {
        self.next += 1;
        if self.next == self.events.len() {
            self.events.clear();
            self.next = 0;
        }
    }

    /// Takes out what is held.
    fn drain(&mut self) -> impl Iterator<Item = Arc<Event>> + '_ {
        let start = std::mem::take(&mut self.next);
        self.events.drain(..).skip(start)
    }
}

/// The point where an in-memory worker's stream was handed over to a durable subscription:
/// events above it belong to the spool. No cutoff (`u64::MAX`) until a switch.
#[derive(Debug)]
pub(crate) struct Handover(RwLock<u64>);

impl Default for Handover {
    fn default() -> Self {
        Handover(RwLock::new(u64::MAX))
    }
}

impl Handover {
    /// Whether `event_id` belongs to the durable subscription. Blocks (for the instant of a
    /// switch) while the plugin holds [`Handover::begin`].
    fn beyond(&self, event_id: u64) -> bool {
        // A single assignment is the only update: a poisoned lock still holds a valid value.
        event_id > *self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held by the plugin while it subscribes durably, sets the cutoff and detaches this
    /// worker's subscription: a worker that received an event published meanwhile waits for
    /// the cutoff before deciding.
    pub(crate) fn begin(&self) -> RwLockWriteGuard<'_, u64> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A completed unit.
#[derive(Debug)]
struct Done {
    outcome: Outcome,
    /// What the unit carried (always there: taken from its [`Unsettled`]).
    delivery: Option<Delivery>,
    /// Whether it was the circuit's probe.
    probe: bool,
}

/// Why the delivery loop ended.
enum End {
    /// The subscription is detached and everything taken from it has settled.
    Drained,
    /// Aborted: what was in flight is dropped.
    Aborted,
    /// 410 Gone, with the error text.
    Gone(String),
}

/// Delivers the events of one subscription with one configuration.
pub(crate) struct Worker {
    pub(crate) sub: Subscription,
    pub(crate) config: Arc<Config>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) circuit: SharedCircuit,
    pub(crate) disabled: Arc<Disabled>,
    /// Cancelled to stop at once: the deliveries in flight and everything queued are dropped.
    pub(crate) abort: CancellationToken,
    /// Set when the webhook switched to durable mode.
    pub(crate) handover: Arc<Handover>,
}

/// What the units in flight borrow: everything of a worker but its subscription.
struct Ctx {
    config: Arc<Config>,
    shared: Arc<Shared>,
    circuit: SharedCircuit,
    handover: Arc<Handover>,
    sender: Sender<Endpoint>,
}

impl Worker {
    /// Runs until the subscription is detached and drained, aborted, or the webhook is gone.
    pub(crate) async fn run(self) {
        let Worker {
            mut sub,
            config,
            shared,
            circuit,
            disabled,
            abort,
            handover,
        } = self;
        let transport = Endpoint::new(shared.clone(), config.clone());
        let ctx = Ctx {
            sender: Sender::new(transport, shared.clone(), config.clone(), circuit.clone()),
            config,
            shared,
            circuit,
            handover,
        };
        let mut inbox = Inbox::default();
        let end = ctx.deliver_all(&mut sub, &mut inbox, &abort).await;
        let counters = &ctx.shared.counters;
        sub.detach();
        let mut left = Vec::new();
        let held: Vec<Arc<Event>> = inbox.drain().collect();
        for event in held
            .into_iter()
            .chain(std::iter::from_fn(|| sub.try_recv()))
        {
            if ctx.handover.beyond(event.event_id) {
                sub_counter(&counters.bus.queued, 1);
            } else {
                left.push(Item::of(&event));
            }
        }
        if !left.is_empty() {
            counters.discard(left.len() as u64);
            ctx.dead(&left, Reason::Stopped, None, 0);
            warn!(url = %ctx.config.shown, dropped = left.len(), "webhook stopped with events still queued; they are dropped (kept as dead letters)");
        }
        if let End::Gone(reason) = end {
            ctx.disable(&disabled, reason);
        }
    }
}

impl Ctx {
    /// The delivery loop: dequeues while fewer than `concurrency` units are in flight (and no
    /// probe is), fills batches, launches units and settles them as they complete.
    async fn deliver_all(
        &self,
        sub: &mut Subscription,
        inbox: &mut Inbox,
        abort: &CancellationToken,
    ) -> End {
        let counters = &*self.shared.counters;
        let limit = self.config.concurrency.max(1);
        let batching = self.config.batch;
        // Units in flight: the first in `slot`, polled in place (no allocation: with
        // concurrency 1 every unit goes there), the others in `running`.
        let mut slot = pin!(None);
        let mut running = FuturesUnordered::new();
        // Events carried by the units in flight.
        let mut running_events: u64 = 0;
        // The circuit's probe is in flight: dequeue nothing until it completes.
        let mut probing = false;
        // The batch being filled (empty: none).
        let mut batch: Vec<Item> = Vec::new();
        let mut closed = false;
        let timer = tokio::time::sleep_until(deadline_after(FAR));
        tokio::pin!(timer);
        // Made once: a new one per turn would register and unregister a waiter each time.
        let cancelled = abort.cancelled();
        tokio::pin!(cancelled);
        let end = loop {
            let in_flight = usize::from(slot.is_some()) + running.len();
            if closed && in_flight == 0 && batch.is_empty() {
                break End::Drained;
            }
            let filling = !batch.is_empty();
            let can_take = !closed && !probing && (filling || in_flight < limit);
            let mut ready = None;
            tokio::select! {
                biased;
                () = &mut cancelled => break End::Aborted,
                done = poll_slot(slot.as_mut()), if slot.is_some() => {
                    slot.set(None);
                    if let Some(reason) = self.settle(done, &mut running_events, &mut probing) {
                        break End::Gone(reason);
                    }
                }
                Some(done) = running.next(), if !running.is_empty() => {
                    if let Some(reason) = self.settle(done, &mut running_events, &mut probing) {
                        break End::Gone(reason);
                    }
                }
                () = &mut timer, if filling => ready = Some(std::mem::take(&mut batch)),
                event = inbox.next(sub), if can_take => match event {
                    None => {
                        closed = true;
                        if filling {
                            ready = Some(std::mem::take(&mut batch));
                        }
                    }
                    Some(event) => {
                        if self.take(&event) {
                            match batching {
                                None => ready = Some(vec![Item::of(&event)]),
                                Some(b) => {
                                    if batch.is_empty() {
                                        timer.as_mut().reset(deadline_after(b.wait));
                                        batch.reserve(b.max.min(BATCH_RESERVE));
                                    }
                                    batch.push(Item::of(&event));
                                    // Take what is already queued without another turn.
                                    while batch.len() < b.max {
                                        let Some(next) = inbox.try_next(sub) else { break };
                                        if self.take(&next) {
                                            batch.push(Item::of(&next));
                                        }
                                    }
                                    if batch.len() >= b.max {
                                        ready = Some(std::mem::take(&mut batch));
                                    }
                                }
                            }
                        }
                    }
                },
            }
            if let Some(items) = ready {
                if let Some((delivery, decision)) = self.admit(items) {
                    running_events += delivery.len() as u64;
                    probing |= decision == Decision::Probe;
                    let unit = self.unit(delivery, decision);
                    if slot.is_some() {
                        running.push(unit);
                    } else {
                        slot.set(Some(unit));
                    }
                }
            }
        };
        let abandoned = running_events + batch.len() as u64;
        if abandoned > 0 {
            {
                let _moving = counters.moving();
                add(&counters.dropped, abandoned);
                sub_counter(&counters.in_flight, abandoned);
            }
            // The batch being filled is kept; the units in flight went with their futures.
            self.dead(&batch, Reason::Aborted, None, 0);
            debug!(
                url = %self.config.shown,
                units = usize::from(slot.is_some()) + running.len(),
                events = abandoned,
                "webhook deliveries in flight abandoned"
            );
        }
        end
    }

    /// Counts a completed unit (and takes it off `running_events`, and `probing` when it was
    /// the probe); the reason when it got a 410 Gone.
    fn settle(&self, done: Done, running_events: &mut u64, probing: &mut bool) -> Option<String> {
        *probing &= !done.probe;
        let Some(delivery) = &done.delivery else {
            return None;
        };
        let events = delivery.len() as u64;
        *running_events = running_events.saturating_sub(events);
        let counters = &self.shared.counters;
        // A bounded delivery always ends with a verdict (`Held` and `Stopped` are durable
        // mode's); a unit is cancelled by dropping it.
        let counter = match &done.outcome {
            Outcome::Delivered => &counters.delivered,
            _ => &counters.failed,
        };
        {
            let _moving = counters.moving();
            add(counter, events);
            sub_counter(&counters.in_flight, events);
        }
        let items = &delivery.items;
        let id = |item: &Item| self.webhook_id(delivery, item);
        match done.outcome {
            Outcome::Delivered => {
                self.shared.keeper.delivered(items, &id);
                None
            }
            Outcome::Failed(f) => {
                self.shared
                    .keeper
                    .dead(items, &id, Reason::Failed, Some(&f.error), f.attempts);
                None
            }
            Outcome::Gone(reason) => {
                self.shared
                    .keeper
                    .dead(items, &id, Reason::Failed, Some(&reason), 1);
                Some(reason)
            }
            Outcome::Held | Outcome::Stopped => None,
        }
    }

    /// Counts an event taken from the queue; `false` (and counted as filtered) when the filter
    /// leaves it out, else it is in flight. An event handed over to the spool is `false` and
    /// uncounted here (the durable subscription counts it).
    fn take(&self, event: &Event) -> bool {
        let counters = &self.shared.counters;
        if self.handover.beyond(event.event_id) {
            sub_counter(&counters.bus.queued, 1);
            return false;
        }
        let allowed = self.config.filter.allows(&event.event, event.severity);
        if allowed && self.shared.health.is_paused() {
            counters.discard(1);
            bump(&counters.dropped_paused);
            self.dead(&[Item::of(event)], Reason::Paused, None, 0);
            return false;
        }
        let _moving = counters.moving();
        bump(&counters.taken);
        bump(if allowed {
            &counters.in_flight
        } else {
            &counters.filtered
        });
        allowed
    }

    /// Makes a unit of `items` and asks the circuit: `None` (skipped and counted) while it is
    /// open, else the delivery and whether it is the probe.
    fn admit(&self, items: Vec<Item>) -> Option<(Delivery, Decision)> {
        let counters = &self.shared.counters;
        let n = items.len() as u64;
        let Some(delivery) =
            Delivery::new(items, self.config.batch.is_some(), &self.shared.instance)
        else {
            // No items: nothing to count.
            return None;
        };
        let delivery = self.config.render(delivery);
        if delivery.render_error().is_some() {
            // Never sent, so never the circuit's business (nor its probe).
            return Some((delivery, Decision::Deliver));
        }
        let decision = lock(&self.circuit).before_event(Instant::now());
        let id = &delivery.webhook_id;
        let shown = &self.config.shown;
        match decision {
            Decision::Skip => {
                debug!(webhook_id = %id, events = n, url = %shown, "webhook circuit open; skipped");
                {
                    let _moving = counters.moving();
                    add(&counters.circuit_skips, n);
                    sub_counter(&counters.in_flight, n);
                }
                let id = |item: &Item| self.webhook_id(&delivery, item);
                self.shared
                    .keeper
                    .dead(&delivery.items, &id, Reason::CircuitOpen, None, 0);
                return None;
            }
            Decision::Probe => {
                debug!(webhook_id = %id, url = %shown, "webhook circuit half open; probing");
            }
            Decision::Deliver => {}
        }
        Some((delivery, decision))
    }

    /// One unit: up to `max_attempts` attempts, then its outcome for the circuit. A unit
    /// dropped before it settles (an abort) keeps its events as dead letters (`aborted`); the
    /// worker counted them dropped before it drops the units.
    async fn unit(&self, delivery: Delivery, decision: Decision) -> Done {
        let probe = decision == Decision::Probe;
        let policy = Policy::Bounded { probe };
        let mut unsettled = Unsettled {
            ctx: self,
            delivery: Some(delivery),
        };
        let outcome = match &unsettled.delivery {
            Some(delivery) => {
                self.sender
                    .deliver(delivery, policy, &mut Sleep::default())
                    .await
            }
            None => Outcome::Stopped,
        };
        Done {
            outcome,
            delivery: unsettled.delivery.take(),
            probe,
        }
    }

    /// The `webhook-id` an item of `delivery` is kept with: the delivery's own for a single
    /// event, else the one the event would have alone (a batch's id covers several).
    fn webhook_id(&self, delivery: &Delivery, item: &Item) -> String {
        if delivery.items.len() == 1 && !delivery.batched {
            delivery.webhook_id.to_string()
        } else {
            crate::batch::single_id(&self.shared.instance, item.event_id)
        }
    }

    /// Keeps `items` (never sent, or not as one delivery) as dead letters with their own ids,
    /// after the caller counted them given up.
    fn dead(&self, items: &[Item], reason: Reason, error: Option<&str>, attempts: u32) {
        let id = |item: &Item| crate::batch::single_id(&self.shared.instance, item.event_id);
        self.shared.keeper.dead(items, &id, reason, error, attempts);
    }

    /// Marks the webhook disabled and says so on the bus (this worker is already detached, so
    /// the announcement never goes to the URL that is gone).
    fn disable(&self, disabled: &Disabled, reason: String) {
        let shown = &self.config.shown;
        let name = &self.shared.options.name;
        warn!(webhook = %name, url = %shown, %reason, "webhook disabled; it stays off until `pilotctl webhook resume` or the webhook is set again");
        disabled.set(reason.clone(), jiff::Timestamp::now());
        publish_disabled(&self.shared.bus, name, shown, reason);
    }
}

/// A unit's delivery until it settles: dropped before that (an abort cancels the unit), it
/// keeps the events as dead letters.
struct Unsettled<'a> {
    ctx: &'a Ctx,
    delivery: Option<Delivery>,
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if let Some(delivery) = self.delivery.take() {
            let id = |item: &Item| self.ctx.webhook_id(&delivery, item);
            self.ctx
                .shared
                .keeper
                .dead(&delivery.items, &id, Reason::Aborted, None, 0);
        }
    }
}

/// Polls the unit in `slot` (the caller only asks while there is one).
async fn poll_slot<F: Future>(mut slot: Pin<&mut Option<F>>) -> F::Output {
    std::future::poll_fn(|cx| match slot.as_mut().as_pin_mut() {
        Some(unit) => unit.poll(cx),
        None => Poll::Pending,
    })
    .await
}
