//! The circuit breaker: a small pure state machine over `tokio::time::Instant`.
//!
//! Closed, it counts consecutive failed events; at the threshold it opens for the cooldown.
//! Open, events are skipped without an attempt. Once the cooldown is over the next event is a
//! probe (half open): its success closes the circuit, its failure opens it for another cooldown.
//! A delivered event always resets the count of consecutive failures.
//!
//! # With several deliveries in flight (`--concurrency N`)
//! A "unit" is one request's worth of events (an event, or a batch). The decision is taken when
//! a unit is dequeued ([`Circuit::before_event`]); its failure is counted when it completes
//! ([`Circuit::on_unit_failure`]), in completion order, so units already in flight when the
//! circuit opens still finish (and count as failed or delivered as they end). Then:
//! - a failure of a unit that is not the probe while the circuit is open or half open changes
//!   nothing: it was admitted before the circuit opened, so it neither extends the cooldown nor
//!   decides the probe;
//! - any 2xx closes the circuit (the endpoint answers), whatever the state;
//! - in half open, exactly one probe is in flight: the in-memory worker stops dequeuing until
//!   the probe completes, so the other events *wait* in the queue (they are not skipped); if
//!   the probe fails they are then dequeued into an open circuit and skipped, if it succeeds
//!   they are delivered. (`before_event` itself answers `Probe` again while half open: the
//!   caller is the one that keeps a single probe in flight.)
//!
//! With one unit in flight at a time (the default, and durable mode) none of these cases can
//! arise, and the breaker behaves exactly as described first.
//!
//! A worker and the plugin (for stats) share one breaker as a `SharedCircuit`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// What the breaker is doing, as `info` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Delivering normally.
    #[default]
    Closed,
    /// Skipping events until the cooldown ends.
    Open,
    /// The cooldown is over: the next event (or the one in flight) is a probe.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

impl std::fmt::Display for CircuitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with the event just dequeued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Deliver it normally.
    Deliver,
    /// Deliver it as the probe that decides whether the circuit closes.
    Probe,
    /// Skip it without any attempt (the circuit is open).
    Skip,
}

/// A state change worth logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed state.
    None,
    /// The circuit just opened (from closed or after a failed probe) until `until`.
    Opened { until: Instant },
    /// A probe succeeded and the circuit closed.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker for one URL.
#[derive(Debug, Clone)]
pub struct Circuit {
    threshold: u32,
    cooldown: Duration,
    state: State,
}

impl Circuit {
    /// A closed breaker. A `threshold` of 0 disables it (it never opens).
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            state: State::Closed { failures: 0 },
        }
    }

    /// Decides about the next event, moving from open to half open once the cooldown is over.
    pub fn before_event(&mut self, now: Instant) -> Decision {
        match self.state {
            State::Closed { .. } => Decision::Deliver,
            State::Open { until } if now < until => Decision::Skip,
            State::Open { .. } | State::HalfOpen => {
                self.state = State::HalfOpen;
                Decision::Probe
            }
        }
    }

    /// The event was delivered: the circuit closes (from any state; with several units in
    /// flight a unit admitted before the circuit opened may succeed while it is open).
    pub fn on_success(&mut self) -> Transition {
        let was_closed = matches!(self.state, State::Closed { .. });
        self.state = State::Closed { failures: 0 };
        if was_closed {
            Transition::None
        } else {
            Transition::Closed
        }
    }

    /// A unit failed (every attempt, or a status that is not retried); `probe` when it was
    /// dequeued as the probe ([`Decision::Probe`]). While open or half open only the probe's
    /// failure counts (it reopens the circuit); the failure of a unit admitted earlier changes
    /// nothing. Closed, it counts like [`Circuit::on_failure`].
    pub fn on_unit_failure(&mut self, now: Instant, probe: bool) -> Transition {
        match self.state {
            State::Closed { .. } => self.on_failure(now),
            State::HalfOpen | State::Open { .. } if probe => self.open(now),
            State::HalfOpen | State::Open { .. } => Transition::None,
        }
    }

    /// The event failed (every attempt, or a status that is not retried).
    pub fn on_failure(&mut self, now: Instant) -> Transition {
        match self.state {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if self.threshold > 0 && failures >= self.threshold {
                    self.open(now)
                } else {
                    self.state = State::Closed { failures };
                    Transition::None
                }
            }
            State::HalfOpen | State::Open { .. } => self.open(now),
        }
    }

    fn open(&mut self, now: Instant) -> Transition {
        // An absurd cooldown that does not fit an Instant means "open for good" in practice.
        let until = now
            .checked_add(self.cooldown)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
            .unwrap_or(now);
        self.state = State::Open { until };
        Transition::Opened { until }
    }

    /// The state as seen at `now`: an open circuit whose cooldown is over reads as half open.
    pub fn state(&self, now: Instant) -> CircuitState {
        match self.state {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if now < until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen => CircuitState::HalfOpen,
        }
    }

    /// When an open circuit lets the next probe through (`None` unless open).
    pub fn open_until(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Consecutive failed events counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        match self.state {
            State::Closed { failures } => failures,
            _ => self.threshold,
        }
    }
}

/// The circuit breaker of one worker, readable by the plugin for stats.
pub(crate) type SharedCircuit = Arc<Mutex<Circuit>>;

/// Locks a circuit; a poisoned lock still holds a valid state machine (its updates are single
/// assignments), so it is used as is.
pub(crate) fn lock(circuit: &SharedCircuit) -> MutexGuard<'_, Circuit> {
    circuit.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn fail_n(c: &mut Circuit, n: u32) -> Transition {
        let mut last = Transition::None;
        for _ in 0..n {
            assert_eq!(c.before_event(Instant::now()), Decision::Deliver);
            last = c.on_failure(Instant::now());
        }
        last
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_consecutive_failures() {
        let mut c = Circuit::new(5, COOLDOWN);
        assert_eq!(fail_n(&mut c, 4), Transition::None);
        assert_eq!(c.state(Instant::now()), CircuitState::Closed);
        assert_eq!(c.consecutive_failures(), 4);
        let t = fail_n(&mut c, 1);
        assert_eq!(
            t,
            Transition::Opened {
                until: Instant::now() + COOLDOWN
            }
        );
        assert_eq!(c.state(Instant::now()), CircuitState::Open);
        assert_eq!(c.open_until(), Some(Instant::now() + COOLDOWN));
        assert_eq!(c.before_event(Instant::now()), Decision::Skip);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count() {
        let mut c = Circuit::new(3, COOLDOWN);
        fail_n(&mut c, 2);
        assert_eq!(c.before_event(Instant::now()), Decision::Deliver);
        assert_eq!(c.on_success(), Transition::None);
        assert_eq!(c.consecutive_failures(), 0);
        assert_eq!(fail_n(&mut c, 2), Transition::None);
        assert_eq!(c.state(Instant::now()), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn skips_during_cooldown_then_probes_and_closes() {
        let mut c = Circuit::new(2, COOLDOWN);
        fail_n(&mut c, 2);
        tokio::time::advance(COOLDOWN - Duration::from_millis(1)).await;
        assert_eq!(c.before_event(Instant::now()), Decision::Skip);
        assert_eq!(c.state(Instant::now()), CircuitState::Open);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(c.state(Instant::now()), CircuitState::HalfOpen);
        assert_eq!(c.before_event(Instant::now()), Decision::Probe);
        assert_eq!(c.state(Instant::now()), CircuitState::HalfOpen);
        assert_eq!(c.on_success(), Transition::Closed);
        assert_eq!(c.state(Instant::now()), CircuitState::Closed);
        assert_eq!(c.before_event(Instant::now()), Decision::Deliver);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_another_cooldown() {
        let mut c = Circuit::new(1, COOLDOWN);
        fail_n(&mut c, 1);
        tokio::time::advance(COOLDOWN).await;
        assert_eq!(c.before_event(Instant::now()), Decision::Probe);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            c.on_failure(Instant::now()),
            Transition::Opened {
                until: Instant::now() + COOLDOWN
            }
        );
        assert_eq!(c.before_event(Instant::now()), Decision::Skip);
        tokio::time::advance(COOLDOWN).await;
        assert_eq!(c.before_event(Instant::now()), Decision::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn with_units_in_flight_only_the_probe_decides_and_any_success_closes() {
        let mut c = Circuit::new(2, COOLDOWN);
        // Three units admitted while closed; two fail and open the circuit.
        for _ in 0..3 {
            assert_eq!(c.before_event(Instant::now()), Decision::Deliver);
        }
        assert_eq!(c.on_unit_failure(Instant::now(), false), Transition::None);
        let opened = c.on_unit_failure(Instant::now(), false);
        assert_eq!(
            opened,
            Transition::Opened {
                until: Instant::now() + COOLDOWN
            }
        );
        // The third fails later: the cooldown is not extended.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(c.on_unit_failure(Instant::now(), false), Transition::None);
        assert_eq!(
            c.open_until(),
            Some(Instant::now() + COOLDOWN - Duration::from_secs(1))
        );
        assert_eq!(c.before_event(Instant::now()), Decision::Skip);

        // Half open: the probe is out; a late failure of an older unit does not decide.
        tokio::time::advance(COOLDOWN).await;
        assert_eq!(c.before_event(Instant::now()), Decision::Probe);
        assert_eq!(c.on_unit_failure(Instant::now(), false), Transition::None);
        assert_eq!(c.state(Instant::now()), CircuitState::HalfOpen);
        // The probe's failure does.
        assert!(matches!(
            c.on_unit_failure(Instant::now(), true),
            Transition::Opened { .. }
        ));
        assert_eq!(c.state(Instant::now()), CircuitState::Open);
        // A late success while open closes it (the endpoint answers 2xx).
        assert_eq!(c.on_success(), Transition::Closed);
        assert_eq!(c.state(Instant::now()), CircuitState::Closed);
        assert_eq!(c.on_success(), Transition::None);
        // Closed, a probe's late failure counts like any other.
        assert_eq!(c.on_unit_failure(Instant::now(), true), Transition::None);
        assert_eq!(c.consecutive_failures(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_zero_never_opens() {
        let mut c = Circuit::new(0, COOLDOWN);
        assert_eq!(fail_n(&mut c, 100), Transition::None);
        assert_eq!(c.state(Instant::now()), CircuitState::Closed);
    }

    #[test]
    fn state_serializes_snake_case() {
        assert_eq!(
            serde_json::to_string(&CircuitState::HalfOpen).unwrap(),
            "\"half_open\""
        );
        assert_eq!(CircuitState::Open.to_string(), "open");
    }
}
