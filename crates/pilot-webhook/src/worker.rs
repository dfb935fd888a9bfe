//! The per-configuration delivery loop: takes events from one bus subscription in publish
//! order, skips (and counts) what the filter leaves out, gathers batches when batching is on,
//! and POSTs one delivery at a time with retries, backoff with jitter, `Retry-After` and the
//! circuit breaker, counting every outcome. A 410 Gone disables the webhook: the worker detaches
//! from the bus, drops (and counts) what is queued, publishes `webhook.disabled` and stops.
//!
//! When the webhook switches to durable mode, the durable subscription starts in the same
//! instant the in-memory one is detached, as far as the bus allows: the durable one is made
//! first, then this worker is told the cutoff ([`Handover`]) and detached, so the few events
//! published in between reach both. This worker leaves those to the spool (uncounted here).

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockWriteGuard};

use pilot_core::{Event, Subscription};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::attempt;
use crate::batch::{Delivery, Item};
use crate::circuit::{Circuit, Decision, Transition};
use crate::config::{Batching, Config};
use crate::plugin::Shared;
use crate::retry::{jitter, Backoff};
use crate::stats::{add, bump, sub};

/// The circuit breaker of one worker, readable by the plugin for stats.
pub(crate) type SharedCircuit = Arc<Mutex<Circuit>>;

/// Locks a circuit; a poisoned lock still holds a valid state machine (its updates are single
/// assignments), so it is used as is.
pub(crate) fn lock(circuit: &SharedCircuit) -> MutexGuard<'_, Circuit> {
    circuit.lock().unwrap_or_else(|p| p.into_inner())
}

/// `now + d`, or a far future when that does not fit an `Instant` (absurd settings never panic).
pub(crate) fn deadline_after(d: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(30 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Why and when a worker's webhook was disabled (410 Gone), readable by the plugin.
#[derive(Debug, Default)]
pub(crate) struct Disabled(Mutex<Option<(String, jiff::Timestamp)>>);

impl Disabled {
    fn slot(&self) -> MutexGuard<'_, Option<(String, jiff::Timestamp)>> {
        // A single assignment is the only update: a poisoned lock still holds a valid value.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, reason: String, at: jiff::Timestamp) {
        *self.slot() = Some((reason, at));
    }

    /// The reason and time, if disabled.
    pub(crate) fn get(&self) -> Option<(String, jiff::Timestamp)> {
        self.slot().clone()
    }

    pub(crate) fn is_set(&self) -> bool {
        self.slot().is_some()
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

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Failed,
    Skipped,
    Abandoned,
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
    /// Cancelled to stop at once: the delivery in flight and everything queued are dropped.
    pub(crate) abort: CancellationToken,
    /// Set when the webhook switched to durable mode.
    pub(crate) handover: Arc<Handover>,
}

impl Worker {
    /// Runs until the subscription is detached and drained, aborted, or the webhook is gone.
    pub(crate) async fn run(mut self) {
        let counters = self.shared.counters.clone();
        let mut gone = None;
        loop {
            let first = tokio::select! {
                biased;
                () = self.abort.cancelled() => break,
                event = self.sub.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            if !self.take(&first) {
                continue;
            }
            let mut items = vec![Item::of(&first)];
            let mut aborted = false;
            if let Some(batching) = self.config.batch {
                aborted = self.fill(&mut items, batching).await;
            }
            let n = items.len() as u64;
            let delivery =
                match Delivery::new(items, self.config.batch.is_some(), &self.shared.instance) {
                    Some(d) if !aborted => d,
                    _ => {
                        add(&counters.dropped, n);
                        sub(&counters.in_flight, n);
                        break;
                    }
                };
            let outcome = tokio::select! {
                biased;
                () = self.abort.cancelled() => Outcome::Abandoned,
                outcome = self.deliver(&delivery) => outcome,
            };
            let counter = match &outcome {
                Outcome::Delivered => &counters.delivered,
                Outcome::Failed | Outcome::Gone(_) => &counters.failed,
                Outcome::Skipped => &counters.circuit_skips,
                Outcome::Abandoned => &counters.dropped,
            };
            add(counter, n);
            sub(&counters.in_flight, n);
            match outcome {
                Outcome::Abandoned => {
                    debug!(webhook_id = %delivery.webhook_id, url = %self.config.shown, "webhook delivery abandoned");
                    break;
                }
                Outcome::Gone(reason) => {
                    gone = Some(reason);
                    break;
                }
                _ => {}
            }
        }
        self.sub.detach();
        let mut left = 0;
        while let Some(event) = self.sub.try_recv() {
            if self.handover.beyond(event.event_id) {
                sub(&counters.bus.queued, 1);
            } else {
                left += 1;
            }
        }
        if left > 0 {
            counters.discard(left);
            warn!(url = %self.config.shown, dropped = left, "webhook stopped with events still queued; they are dropped");
        }
        if let Some(reason) = gone {
            self.disable(reason);
        }
    }

    /// Counts an event taken from the queue; `false` (and counted as filtered) when the filter
    /// leaves it out, else it is in flight. An event handed over to the spool is `false` and
    /// uncounted here (the durable subscription counts it).
    fn take(&self, event: &Event) -> bool {
        let counters = &self.shared.counters;
        if self.handover.beyond(event.event_id) {
            sub(&counters.bus.queued, 1);
            return false;
        }
        bump(&counters.in_flight);
        bump(&counters.taken);
        if self.config.filter.allows(&event.event) {
            return true;
        }
        bump(&counters.filtered);
        sub(&counters.in_flight, 1);
        false
    }

    /// Adds events to a batch until it is full, `wait` has passed since the first, or the queue
    /// is closed. `true` if aborted meanwhile.
    async fn fill(&mut self, items: &mut Vec<Item>, batching: Batching) -> bool {
        let deadline = deadline_after(batching.wait);
        while items.len() < batching.max {
            let next = match self.sub.try_recv() {
                Some(event) => event,
                None => tokio::select! {
                    biased;
                    () = self.abort.cancelled() => return true,
                    next = tokio::time::timeout_at(deadline, self.sub.recv()) => match next {
                        Ok(Some(event)) => event,
                        Ok(None) | Err(_) => break,
                    },
                },
            };
            if self.take(&next) {
                items.push(Item::of(&next));
            }
        }
        false
    }

    /// One delivery: skipped while the circuit is open, else up to `max_attempts` attempts.
    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let shown = &self.config.shown;
        let id = &delivery.webhook_id;
        let decision = lock(&self.circuit).before_event(Instant::now());
        match decision {
            Decision::Skip => {
                debug!(webhook_id = %id, events = delivery.len(), url = %shown, "webhook circuit open; skipped");
                return Outcome::Skipped;
            }
            Decision::Probe => {
                debug!(webhook_id = %id, url = %shown, "webhook circuit half open; probing");
            }
            Decision::Deliver => {}
        }
        let options = &self.shared.options;
        let backoff = Backoff {
            base: options.backoff,
            max: self.config.settings.max_backoff,
        };
        let max = options.max_attempts.max(1);
        let mut attempt = 1;
        let failure = loop {
            debug!(webhook_id = %id, events = delivery.len(), attempt, max, url = %shown, "webhook POST");
            let result = attempt::send(&self.shared, &self.config, delivery, attempt)
                .await
                .result;
            match result {
                Ok(status) => {
                    debug!(webhook_id = %id, attempt, %status, "webhook delivered");
                    if lock(&self.circuit).on_success() == Transition::Closed {
                        warn!(url = %shown, "webhook probe delivered; circuit closed");
                    }
                    return Outcome::Delivered;
                }
                Err(e) => {
                    debug!(webhook_id = %id, attempt, error = %e, "webhook attempt failed");
                    self.shared.counters.set_last_error(e.to_string());
                    if e.is_gone() {
                        return Outcome::Gone(e.to_string());
                    }
                    if !e.is_retryable() || attempt >= max {
                        break e;
                    }
                    let delay = backoff.delay(attempt, e.retry_after(), jitter());
                    if let Some(asked) = e.retry_after() {
                        debug!(webhook_id = %id, asked = ?asked, waiting = ?delay, "webhook honours Retry-After");
                    }
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    bump(&self.shared.counters.retries);
                }
            }
        };
        let first = delivery.items.first().map_or(0, |i| i.event_id);
        warn!(
            event_id = first,
            events = delivery.len(),
            webhook_id = %id,
            attempts = attempt,
            error = %failure,
            "webhook delivery failed"
        );
        let probe = decision == Decision::Probe;
        let transition = lock(&self.circuit).on_failure(Instant::now());
        if let Transition::Opened { .. } = transition {
            let cooldown = pilot_core::duration::format(options.circuit_cooldown);
            if probe {
                warn!(url = %shown, %cooldown, "webhook probe failed; circuit open again");
            } else {
                warn!(
                    url = %shown,
                    %cooldown,
                    failed_events = options.circuit_threshold,
                    "webhook circuit open: events are skipped until the cooldown ends"
                );
            }
        }
        Outcome::Failed
    }

    /// Marks the webhook disabled and says so on the bus (this worker is already detached, so
    /// the announcement never goes to the URL that is gone).
    fn disable(&self, reason: String) {
        let shown = &self.config.shown;
        warn!(url = %shown, %reason, "webhook disabled: the endpoint answered 410 Gone; it stays off until the webhook is set again");
        self.disabled.set(reason.clone(), jiff::Timestamp::now());
        publish_disabled(&self.shared.bus, shown, reason);
    }
}

/// Publishes `webhook.disabled` {url, reason} (the caller has detached from the bus first, so
/// the announcement never goes to the URL that is gone).
pub(crate) fn publish_disabled(bus: &pilot_core::Bus, shown: &str, reason: String) {
    let data = serde_json::json!({ "url": shown, "reason": reason });
    match pilot_core::event::data_from_value(&data) {
        Ok(data) => {
            bus.publish("webhook.disabled", Some(data));
        }
        Err(e) => warn!(error = %e, "could not publish webhook.disabled"),
    }
}
