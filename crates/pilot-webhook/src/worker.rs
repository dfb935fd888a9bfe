//! The per-URL delivery loop: takes events from one bus subscription in publish order and POSTs
//! them one at a time, with retries, backoff and the circuit breaker, counting every outcome.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use pilot_core::{Event, Subscription};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::circuit::{Circuit, Decision, Transition};
use crate::client::{HttpClient, Target};
use crate::error::DeliveryError;
use crate::options::WebhookOptions;
use crate::stats::{bump, Counters};

/// The circuit breaker of one worker, readable by the plugin for stats.
pub(crate) type SharedCircuit = Arc<Mutex<Circuit>>;

/// Locks a circuit; a poisoned lock still holds a valid state machine (its updates are single
/// assignments), so it is used as is.
pub(crate) fn lock(circuit: &SharedCircuit) -> MutexGuard<'_, Circuit> {
    circuit.lock().unwrap_or_else(|p| p.into_inner())
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Failed,
    Skipped,
    Abandoned,
}

/// Delivers the events of one subscription to one URL.
pub(crate) struct Worker {
    pub(crate) sub: Subscription,
    /// The prepared URL, or why it cannot be used (then every event fails at once).
    pub(crate) target: Result<Target, DeliveryError>,
    /// The URL as logs show it.
    pub(crate) shown: String,
    pub(crate) client: HttpClient,
    pub(crate) counters: Arc<Counters>,
    pub(crate) options: Arc<WebhookOptions>,
    pub(crate) circuit: SharedCircuit,
    /// Cancelled to stop at once: the event in flight and everything queued are dropped.
    pub(crate) abort: CancellationToken,
}

impl Worker {
    /// Runs until the subscription is detached and drained, or until aborted.
    pub(crate) async fn run(mut self) {
        loop {
            let event = tokio::select! {
                biased;
                () = self.abort.cancelled() => break,
                event = self.sub.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            bump(&self.counters.in_flight);
            bump(&self.counters.taken);
            let outcome = tokio::select! {
                biased;
                () = self.abort.cancelled() => Outcome::Abandoned,
                outcome = self.deliver(&event) => outcome,
            };
            let counter = match outcome {
                Outcome::Delivered => &self.counters.delivered,
                Outcome::Failed => &self.counters.failed,
                Outcome::Skipped => &self.counters.circuit_skips,
                Outcome::Abandoned => &self.counters.dropped,
            };
            bump(counter);
            self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            if outcome == Outcome::Abandoned {
                debug!(event_id = event.event_id, url = %self.shown, "webhook delivery abandoned");
                break;
            }
        }
        self.sub.detach();
        let left = self.sub.discard_buffered() as u64;
        if left > 0 {
            self.counters.discard(left);
            warn!(url = %self.shown, dropped = left, "webhook stopped with events still queued; they are dropped");
        }
    }

    /// One event: skipped while the circuit is open, else up to `max_attempts` attempts.
    async fn deliver(&self, event: &Event) -> Outcome {
        let decision = lock(&self.circuit).before_event(Instant::now());
        match decision {
            Decision::Skip => {
                debug!(event_id = event.event_id, url = %self.shown, "webhook circuit open; event skipped");
                return Outcome::Skipped;
            }
            Decision::Probe => {
                debug!(event_id = event.event_id, url = %self.shown, "webhook circuit half open; probing");
            }
            Decision::Deliver => {}
        }
        let body = event.payload();
        let max = self.options.max_attempts.max(1);
        let mut attempt = 1;
        let failure = loop {
            debug!(event_id = event.event_id, attempt, max, url = %self.shown, "webhook POST");
            let result = match &self.target {
                Ok(target) => self.client.post(target, body.clone()).await,
                Err(e) => Err(e.clone()),
            };
            match result {
                Ok(status) => {
                    debug!(event_id = event.event_id, attempt, %status, "webhook delivered");
                    if lock(&self.circuit).on_success() == Transition::Closed {
                        warn!(url = %self.shown, "webhook probe delivered; circuit closed");
                    }
                    return Outcome::Delivered;
                }
                Err(e) => {
                    debug!(event_id = event.event_id, attempt, error = %e, "webhook attempt failed");
                    self.counters.set_last_error(e.to_string());
                    if !e.is_retryable() || attempt >= max {
                        break e;
                    }
                    tokio::time::sleep(self.options.backoff_before(attempt + 1)).await;
                    attempt += 1;
                    bump(&self.counters.retries);
                }
            }
        };
        warn!(
            event_id = event.event_id,
            event = %event.event,
            attempts = attempt,
            error = %failure,
            "webhook event failed"
        );
        let probe = decision == Decision::Probe;
        let transition = lock(&self.circuit).on_failure(Instant::now());
        if let Transition::Opened { .. } = transition {
            let cooldown = pilot_core::duration::format(self.options.circuit_cooldown);
            if probe {
                warn!(url = %self.shown, %cooldown, "webhook probe failed; circuit open again");
            } else {
                warn!(
                    url = %self.shown,
                    %cooldown,
                    failed_events = self.options.circuit_threshold,
                    "webhook circuit open: events are skipped until the cooldown ends"
                );
            }
        }
        Outcome::Failed
    }
}
