//! The sender: delivers one [`Delivery`] through a [`Transport`], for both workers. Written
//! once here: the attempts, retries with exponential backoff and jitter, `Retry-After`, the
//! circuit breaker, 410 Gone and `disable_after`.
//!
//! What differs between the two modes is the [`Policy`]:
//! - [`Policy::Bounded`] (memory mode): at most `max_attempts` attempts, then the unit is
//!   failed and counts once for the circuit; the worker asked the circuit before (an open
//!   circuit skips the unit there), so the sender only knows whether the unit is the probe.
//! - [`Policy::Unbounded`] (durable mode): retries until a 2xx (or a failure that is not
//!   retried), the backoff capped by `max_backoff` (default [`DEFAULT_MAX_BACKOFF`]); the
//!   attempt count goes on from the one persisted; an open circuit makes the sender wait
//!   (nothing is skipped); every `max_attempts` failed attempts in a row count once for the
//!   circuit (and so does a failed probe or a failure that is not retried); a pause ends the
//!   delivery with its records kept.
//!
//! What the source must do between attempts goes through [`Hooks`]: waiting (the durable
//! worker commits settled records and runs expiry while it waits), persisting an attempt
//! count, and abandoning a request on an abort. [`Sleep`] is the source with nothing to do.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use crate::batch::Delivery;
use crate::circuit::{lock, Decision, SharedCircuit, Transition};
use crate::config::Config;
use crate::error::DeliveryError;
use crate::retry::{deadline_after, jitter, Backoff};
use crate::shared::Shared;
use crate::stats::bump;
use crate::transport::Transport;

/// The longest wait between two attempts of a spooled event when `max_backoff` is not set.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// How many attempts a delivery gets and how the circuit treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Memory mode: up to `max_attempts`; `probe` when the circuit admitted it as its probe.
    Bounded { probe: bool },
    /// Durable mode: until a 2xx; `attempts` were already made (persisted).
    Unbounded { attempts: u32 },
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx.
    Delivered,
    /// Failed for good: every attempt (bounded), or a failure that is not retried.
    Failed(Failure),
    /// 410 Gone or `disable_after`: the endpoint is to be disabled, for this reason.
    Gone(String),
    /// Ended without a verdict, its events kept for later (durable: paused, or expiry removed
    /// records while waiting).
    Held,
    /// Stopped or aborted before a verdict (durable); its events are kept.
    Stopped,
}

/// How a delivery failed for good: what its dead letters keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Attempts made.
    pub(crate) attempts: u32,
    /// The last attempt's error.
    pub(crate) error: String,
}

/// How a wait between attempts ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Elapsed,
    /// Records were removed meanwhile (durable expiry): the head may have changed.
    Expired,
    /// Stop now.
    Stopped,
}

/// What the source of a delivery does between its attempts.
pub(crate) trait Hooks: Send {
    /// Waits until `at` (a backoff, or an open circuit in durable mode).
    fn wait_until(&mut self, at: Instant) -> impl Future<Output = Wait> + Send;
    /// Right before a request; `false` to stop instead.
    fn before_send(&mut self) -> impl Future<Output = bool> + Send;
    /// Resolves when a request in flight is to be abandoned.
    fn abandoned(&self) -> impl Future<Output = ()> + Send + '_;
    /// After attempt `attempt` failed and will be retried (durable: persists the count).
    fn retried(&mut self, delivery: &Delivery, attempt: u32) -> impl Future<Output = ()> + Send;
    /// No attempt before this (kept across deliveries by the durable worker: records read
    /// again after an expiry still wait for their backoff).
    fn retry_at(&mut self) -> &mut Option<Instant>;
}

/// The hooks of a source with nothing to do between attempts: waits are plain sleeps and
/// nothing abandons a request (the memory worker cancels a unit by dropping it).
#[derive(Debug, Default)]
pub(crate) struct Sleep {
    retry_at: Option<Instant>,
}

impl Hooks for Sleep {
    async fn wait_until(&mut self, at: Instant) -> Wait {
        tokio::time::sleep_until(at).await;
        Wait::Elapsed
    }

    async fn before_send(&mut self) -> bool {
        true
    }

    fn abandoned(&self) -> impl Future<Output = ()> + Send + '_ {
        std::future::pending()
    }

    async fn retried(&mut self, _delivery: &Delivery, _attempt: u32) {}

    fn retry_at(&mut self) -> &mut Option<Instant> {
        &mut self.retry_at
    }
}

/// Delivers through one transport with one configuration and one circuit breaker.
pub(crate) struct Sender<T> {
    transport: T,
    shared: Arc<Shared>,
    config: Arc<Config>,
    circuit: SharedCircuit,
}

impl<T: Transport> Sender<T> {
    pub(crate) fn new(
        transport: T,
        shared: Arc<Shared>,
        config: Arc<Config>,
        circuit: SharedCircuit,
    ) -> Self {
        Self {
            transport,
            shared,
            config,
            circuit,
        }
    }

    /// Delivers `delivery` under `policy`, calling `hooks` between attempts.
    pub(crate) async fn deliver<H: Hooks>(
        &self,
        delivery: &Delivery,
        policy: Policy,
        hooks: &mut H,
    ) -> Outcome {
        let shown = &self.config.shown;
        let id = &delivery.webhook_id;
        let options = &self.shared.options;
        let durable = matches!(policy, Policy::Unbounded { .. });
        if delivery.render_error().is_some() {
            // The template failed for this event: failed at once and logged, never sent. Not
            // the endpoint's doing, so its circuit and health hear nothing of it.
            let sent = crate::attempt::send(&self.shared, &self.config, delivery, 1).await;
            let error = match &sent.result {
                Err(e) => {
                    self.shared.counters.set_last_error(e.to_string());
                    self.gave_up(delivery, 1, e, durable);
                    e.to_string()
                }
                Ok(_) => String::from("the template could not render the event"),
            };
            return Outcome::Failed(Failure { attempts: 1, error });
        }
        let max_backoff = self.config.settings.max_backoff;
        let backoff = Backoff {
            base: options.backoff,
            max: if durable {
                Some(max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF))
            } else {
                max_backoff
            },
        };
        // Bounded: the attempt limit; unbounded: failed attempts in a row that count once for
        // the circuit.
        let round = options.max_attempts.max(1);
        let mut attempt = match policy {
            Policy::Bounded { .. } => 1,
            Policy::Unbounded { attempts } => attempts.saturating_add(1),
        };
        loop {
            // The backoff of the last attempt and (durable) an open circuit: wait, skip nothing.
            let open_until = if durable {
                lock(&self.circuit).open_until()
            } else {
                None
            };
            let wait = match (*hooks.retry_at(), open_until) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(at) = wait {
                match hooks.wait_until(at).await {
                    Wait::Elapsed => {}
                    Wait::Expired => return Outcome::Held,
                    Wait::Stopped => return Outcome::Stopped,
                }
            }
            *hooks.retry_at() = None;
            let probe = match policy {
                Policy::Bounded { probe } => probe,
                Policy::Unbounded { .. } => {
                    if self.shared.health.is_paused() {
                        // The records stay; the worker waits for the resume.
                        return Outcome::Held;
                    }
                    match lock(&self.circuit).before_event(Instant::now()) {
                        Decision::Skip => continue,
                        Decision::Probe => {
                            debug!(webhook_id = %id, url = %shown, "webhook circuit half open; probing with the oldest spooled event");
                            true
                        }
                        Decision::Deliver => false,
                    }
                }
            };
            if attempt > 1 {
                bump(&self.shared.counters.retries);
            }
            if let Some(rate) = &self.config.rate {
                // The rate limit's slot: the queue (or the spool) holds what waits meanwhile.
                let at = rate.reserve();
                if at > Instant::now() {
                    match hooks.wait_until(at).await {
                        Wait::Elapsed => {}
                        Wait::Expired => return Outcome::Held,
                        Wait::Stopped => return Outcome::Stopped,
                    }
                }
            }
            debug!(webhook_id = %id, events = delivery.len(), attempt, durable, url = %shown, "webhook POST");
            if !hooks.before_send().await {
                return Outcome::Stopped;
            }
            let result = tokio::select! {
                biased;
                () = hooks.abandoned() => return Outcome::Stopped,
                result = self.transport.send(delivery, attempt) => result,
            };
            let e = match result {
                Ok(status) => {
                    debug!(webhook_id = %id, attempt, %status, "webhook delivered");
                    self.shared.health.succeeded();
                    if lock(&self.circuit).on_success() == Transition::Closed {
                        if durable {
                            warn!(url = %shown, "webhook probe delivered; circuit closed, the spooled backlog drains in order");
                        } else {
                            warn!(url = %shown, "webhook delivered; circuit closed");
                        }
                    }
                    return Outcome::Delivered;
                }
                Err(e) => e,
            };
            debug!(webhook_id = %id, attempt, error = %e, "webhook attempt failed");
            self.shared.counters.set_last_error(e.to_string());
            if e.is_gone() {
                return Outcome::Gone(e.to_string());
            }
            let limit = self.config.settings.disable_after;
            if let Some(reason) = self.shared.health.failed(Instant::now(), limit) {
                return Outcome::Gone(reason);
            }
            if !e.is_retryable() || (!durable && attempt >= round) {
                self.gave_up(delivery, attempt, &e, durable);
                self.circuit_failure(probe, durable);
                return Outcome::Failed(Failure {
                    attempts: attempt,
                    error: e.to_string(),
                });
            }
            hooks.retried(delivery, attempt).await;
            if durable {
                let end_of_round = attempt.is_multiple_of(round);
                if end_of_round {
                    warn!(
                        event_id = first_event(delivery),
                        webhook_id = %id,
                        attempts = attempt,
                        error = %e,
                        "webhook delivery still failing; the event stays in the spool and is retried"
                    );
                }
                if probe || end_of_round {
                    self.circuit_failure(probe, durable);
                }
            }
            let delay = backoff.delay(attempt, e.retry_after(), jitter());
            if let Some(asked) = e.retry_after() {
                debug!(webhook_id = %id, asked = ?asked, waiting = ?delay, "webhook honours Retry-After");
            }
            debug!(webhook_id = %id, waiting = ?delay, "webhook retries later");
            *hooks.retry_at() = Some(deadline_after(delay));
            attempt += 1;
        }
    }

    /// Says that `delivery` failed for good after `attempt` attempts.
    fn gave_up(&self, delivery: &Delivery, attempt: u32, e: &DeliveryError, durable: bool) {
        let id = &delivery.webhook_id;
        let (event_id, events) = (first_event(delivery), delivery.len());
        if durable {
            warn!(event_id, events, webhook_id = %id, attempt, error = %e, "webhook delivery failed and is not retried; removed from the spool");
        } else {
            warn!(event_id, events, webhook_id = %id, attempts = attempt, error = %e, "webhook delivery failed");
        }
    }

    /// Counts a failed unit for the circuit, and says so when it opens.
    fn circuit_failure(&self, probe: bool, durable: bool) {
        let transition = lock(&self.circuit).on_unit_failure(Instant::now(), probe);
        if let Transition::Opened { .. } = transition {
            let shown = &self.config.shown;
            let options = &self.shared.options;
            let cooldown = pilot_core::duration::format(options.circuit_cooldown);
            if probe {
                warn!(url = %shown, %cooldown, "webhook probe failed; circuit open again");
            } else if durable {
                warn!(url = %shown, %cooldown, "webhook circuit open: events wait in the spool until the cooldown ends");
            } else {
                warn!(
                    url = %shown,
                    %cooldown,
                    failed_events = options.circuit_threshold,
                    "webhook circuit open: events are skipped until the cooldown ends"
                );
            }
        }
    }
}

/// The id of the first event of `delivery` (0 for none).
fn first_event(delivery: &Delivery) -> u64 {
    delivery.items.first().map_or(0, |i| i.event_id)
}
