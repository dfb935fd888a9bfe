//! The replay lane: delivers the replays queued for an endpoint in the archive
//! ([`pilot_spool::Archive::queue_replay`]), in event-id order, one request at a time, beside
//! the endpoint's live deliveries, through the endpoint's own sender: its filters of today,
//! its rate limit and circuit, its retries (`max_attempts`), its secrets, and each event's
//! original `webhook-id` (receivers deduplicate a replay as they do a retry).
//!
//! The queue is on disk: a replay survives a restart and `kill -9`, and goes on where it
//! stopped. Settled replays leave the queue in groups, in the same blocking call that archives
//! their outcome first: a delivered event's own dead letter is removed (and the event
//! retained when the endpoint retains), an event that fails again is dead-lettered again
//! (`replay_failed`, replacing its entry). A crash before a group's commit sends its events
//! again, with the same ids: the usual at-least-once duplicates, never a loss.
//!
//! The lane waits while the endpoint has no URL, is paused or disabled, and while its circuit
//! is open (replays are never skipped).

use std::sync::Arc;
use std::time::Duration;

use pilot_spool::{ArchivedEvent, Shelf};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::batch::Item;
use crate::circuit::{lock, Decision, SharedCircuit};
use crate::config::Config;
use crate::durable::{delivery_of, Spooled};
use crate::health::Disabled;
use crate::keeper::{entries, Reason};
use crate::sender::{Outcome, Policy, Sender, Sleep};
use crate::shared::Shared;
use crate::stats::bump;
use crate::transport::Endpoint;

/// Replays read from the queue at a time (and settled in one commit at most).
const GROUP: usize = 64;
/// How long the lane waits before looking again when it cannot deliver (paused, disabled, an
/// archive error).
const RECHECK: Duration = Duration::from_millis(200);

/// The endpoint in force, as the lane delivers to it.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) config: Arc<Config>,
    pub(crate) circuit: SharedCircuit,
    pub(crate) disabled: Arc<Disabled>,
}

/// The plugin's handle on its lane.
pub(crate) struct Lane {
    target: watch::Sender<Option<Target>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl Lane {
    /// Starts the lane of `shared`'s endpoint (it idles without an archive).
    pub(crate) fn start(shared: Arc<Shared>, runtime: &tokio::runtime::Handle) -> Lane {
        let (target, rx) = watch::channel(None);
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        if shared.keeper.archive().is_some() {
            let run = Run {
                shared,
                target: rx,
                wake: wake.clone(),
                stop: stop.clone(),
            };
            runtime.spawn(run.run());
        }
        Lane { target, wake, stop }
    }

    /// The endpoint in force from now on (`None`: no URL).
    pub(crate) fn follow(&self, target: Option<Target>) {
        self.target.send_replace(target);
    }

    /// Says replays were queued.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the lane (a request in flight is abandoned; its replay stays queued).
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What one group settled, committed in one blocking call.
#[derive(Default)]
struct Settled {
    /// The replays to take off the queue.
    done: Vec<u64>,
    /// Dead letters of the endpoint to remove (their event was delivered).
    revived: Vec<u64>,
    dead: Vec<ArchivedEvent>,
    retained: Vec<ArchivedEvent>,
}

struct Run {
    shared: Arc<Shared>,
    target: watch::Receiver<Option<Target>>,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl Run {
    async fn run(mut self) {
        let name = self.shared.options.name.clone();
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let target = self.target.borrow_and_update().clone();
            let Some(target) = target else {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    _ = self.target.changed() => continue,
                }
            };
            if self.shared.health.is_paused() || target.disabled.is_set() {
                self.pause(RECHECK).await;
                continue;
            }
            let Some(archive) = self.shared.keeper.archive().cloned() else {
                return;
            };
            let n = name.clone();
            let read = tokio::task::spawn_blocking(move || archive.peek_replays(&n, None, GROUP))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let group = match read {
                Ok(group) => group,
                Err(e) => {
                    warn!(webhook = %name, error = %e, "replays could not be read; trying again");
                    self.pause(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if group.is_empty() {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = self.wake.notified() => {}
                    _ = self.target.changed() => {}
                }
                continue;
            }
            debug!(webhook = %name, events = group.len(), "replaying");
            let settled = self.deliver(&target, group).await;
            if !self.commit(settled).await {
                self.pause(Duration::from_secs(1)).await;
                continue;
            }
            if self
                .shared
                .keeper
                .archive()
                .is_some_and(|a| a.replay_depth(&name) == 0)
            {
                info!(webhook = %name, "replay done");
            }
        }
    }

    /// Waits `d`, a change of endpoint, or the stop.
    async fn pause(&mut self, d: Duration) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            _ = self.target.changed() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    /// Delivers `group` in order to `target` until it is done, the endpoint changes, or the
    /// lane stops; what settled.
    async fn deliver(&mut self, target: &Target, group: Vec<ArchivedEvent>) -> Settled {
        let shared = &self.shared;
        let config = &target.config;
        let transport = Endpoint::new(shared.clone(), config.clone());
        let sender = Sender::new(
            transport,
            shared.clone(),
            config.clone(),
            target.circuit.clone(),
        );
        let mut settled = Settled::default();
        for entry in group {
            if self.stop.is_cancelled()
                || self.target.has_changed().unwrap_or(true)
                || shared.health.is_paused()
                || target.disabled.is_set()
            {
                break;
            }
            let item = Item {
                event_id: entry.event_id,
                event: entry.event.as_str().into(),
                payload: entry.payload.clone(),
                severity: None,
                at_ms: entry.event_ms,
            };
            if !config.filter.allows_spooled(&item.event) {
                bump(&shared.counters.replay_filtered);
                settled.done.push(entry.event_id);
                continue;
            }
            // An open circuit makes the replay wait, never skips it.
            let probe = loop {
                let decision = lock(&target.circuit).before_event(tokio::time::Instant::now());
                match decision {
                    Decision::Deliver => break false,
                    Decision::Probe => break true,
                    Decision::Skip => {
                        let until = lock(&target.circuit).open_until();
                        let until = until.unwrap_or_else(|| tokio::time::Instant::now() + RECHECK);
                        tokio::select! {
                            () = self.stop.cancelled() => return settled,
                            () = tokio::time::sleep_until(until) => {}
                        }
                    }
                }
            };
            let spooled = Spooled {
                item: item.clone(),
                webhook_id: entry.webhook_id.clone(),
                attempts: 0,
            };
            let Some(delivery) = delivery_of(vec![spooled], config.batch.is_some()) else {
                continue;
            };
            let delivery = config.render(delivery);
            let mut sleep = Sleep::default();
            let outcome = tokio::select! {
                () = self.stop.cancelled() => return settled,
                outcome = sender.deliver(&delivery, Policy::Bounded { probe }, &mut sleep) => outcome,
            };
            let id = |_: &Item| entry.webhook_id.clone();
            let items = std::slice::from_ref(&item);
            match outcome {
                Outcome::Delivered => {
                    bump(&shared.counters.replay_delivered);
                    settled.revived.push(entry.event_id);
                    settled
                        .retained
                        .extend(shared.keeper.retained_entries(items, &id));
                }
                Outcome::Failed(f) => {
                    bump(&shared.counters.replay_failed);
                    let reason = Reason::ReplayFailed.as_str();
                    settled
                        .dead
                        .extend(entries(items, &id, reason, Some(&f.error), f.attempts));
                }
                Outcome::Gone(reason) => {
                    bump(&shared.counters.replay_failed);
                    let kind = Reason::ReplayFailed.as_str();
                    settled
                        .dead
                        .extend(entries(items, &id, kind, Some(&reason), 1));
                }
                // A bounded delivery always ends with a verdict.
                Outcome::Held | Outcome::Stopped => break,
            }
            settled.done.push(entry.event_id);
        }
        settled
    }

    /// Archives what `settled` keeps, then takes its replays off the queue (one blocking call).
    /// `false` when the commit failed.
    async fn commit(&self, settled: Settled) -> bool {
        if settled.done.is_empty() {
            return true;
        }
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            let keeper = &shared.keeper;
            let name = &shared.options.name;
            let archive = keeper.archive().ok_or("no archive")?;
            keeper.put_now(Shelf::Dead, &settled.dead);
            keeper.put_now(Shelf::Retained, &settled.retained);
            if !settled.revived.is_empty() {
                archive
                    .remove(Shelf::Dead, name, &settled.revived)
                    .map_err(|e| e.to_string())?;
            }
            archive
                .remove_replays(name, &settled.done)
                .map_err(|e| e.to_string())
        })
        .await;
        let error = match result {
            Ok(Ok(_)) => return true,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        warn!(webhook = %self.shared.options.name, error = %error, "settled replays could not be taken off the queue; they are sent again");
        false
    }
}
