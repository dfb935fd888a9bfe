//! The plugin itself: starts the worker for the webhook in force, hot-swaps it on `configure`
//! (the old queue drains in the background, bounded), clears it, holds the signing secrets and
//! the delivery log, runs the `test` and `redeliver` tools, shuts down gracefully, and reports
//! stats.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use pilot_core::webhook_url::Url;
use pilot_core::{Bus, Event, Pattern, Subscription, WebhookSettings};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::attempt::{self, AttemptOutcome};
use crate::batch::{self, Delivery, Item};
use crate::circuit::Circuit;
use crate::client::HttpClient;
use crate::config::{Clients, Config};
use crate::error::{redact, WebhookError};
use crate::log::{DeliveryLog, DeliveryLogSink, DeliveryRecord, LOG_CAPACITY};
use crate::options::WebhookOptions;
use crate::sign::Secrets;
use crate::stats::{Counters, Stats};
use crate::worker::{self, Disabled, SharedCircuit, Worker};

/// The label of the webhook's subscription on the bus.
pub const BUS_LABEL: &str = "webhook";

/// What the plugin shares with its workers and tools.
pub(crate) struct Shared {
    pub(crate) bus: Bus,
    pub(crate) options: WebhookOptions,
    pub(crate) counters: Arc<Counters>,
    secrets: RwLock<Secrets>,
    pub(crate) log: DeliveryLog,
    /// This plugin's random id, part of every `webhook-id`.
    pub(crate) instance: String,
    tests_sent: AtomicU64,
}

impl Shared {
    /// The secrets in force (read per attempt).
    pub(crate) fn secrets(&self) -> Secrets {
        self.secrets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The worker delivering for the webhook in force.
struct Active {
    config: Arc<Config>,
    sub_id: u64,
    circuit: SharedCircuit,
    disabled: Arc<Disabled>,
    abort: CancellationToken,
    task: JoinHandle<()>,
}

/// A worker on its way out (draining after a swap, or dropping after a clear).
struct Retiring {
    abort: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    current: Option<Active>,
    retiring: Vec<Retiring>,
    shut_down: bool,
}

/// The webhook plugin: delivers bus events to the webhook in force. `Send + Sync`.
pub struct WebhookPlugin {
    shared: Arc<Shared>,
    clients: Clients,
    runtime: Handle,
    state: Mutex<State>,
}

impl std::fmt::Debug for WebhookPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPlugin")
            .field("url", &self.url().as_ref().map(redact))
            .field("options", &self.shared.options)
            .field("instance", &self.shared.instance)
            .finish_non_exhaustive()
    }
}

impl WebhookPlugin {
    /// Starts the plugin with a URL and default settings (see [`WebhookPlugin::start_with`]).
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start(bus: Bus, url: Option<Url>, options: WebhookOptions) -> WebhookPlugin {
        let options = options.normalized();
        let client = HttpClient::new(&options);
        Self::start_with_client(bus, url, options, client)
    }

    /// Starts the plugin; with a webhook it subscribes to every event (`*`) with a buffer of
    /// `queue_size` events, which is the webhook queue. Without one it does not subscribe.
    /// Fails, starting nothing, when the settings cannot work (see [`WebhookError`]).
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start_with(
        bus: Bus,
        target: Option<(Url, WebhookSettings)>,
        options: WebhookOptions,
    ) -> Result<WebhookPlugin, WebhookError> {
        let options = options.normalized();
        let client = HttpClient::new(&options);
        let plugin = Self::idle(bus, options, client);
        plugin.configure(target)?;
        Ok(plugin)
    }

    /// [`WebhookPlugin::start`] with a given client (tests give one with a stand-in resolver
    /// or their own CA).
    pub(crate) fn start_with_client(
        bus: Bus,
        url: Option<Url>,
        options: WebhookOptions,
        client: HttpClient,
    ) -> WebhookPlugin {
        let plugin = Self::idle(bus, options, client);
        plugin.set_url(url);
        plugin
    }

    fn idle(bus: Bus, options: WebhookOptions, client: HttpClient) -> WebhookPlugin {
        let instance = batch::new_instance_id();
        debug!(%instance, "webhook plugin instance");
        WebhookPlugin {
            shared: Arc::new(Shared {
                bus,
                options: options.normalized(),
                counters: Arc::default(),
                secrets: RwLock::default(),
                log: DeliveryLog::new(LOG_CAPACITY),
                instance,
                tests_sent: AtomicU64::new(0),
            }),
            clients: Clients::new(client),
            runtime: Handle::current(),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a field assignment or a push, so a poisoned lock
        // still guards a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new subscription, atomically replacing `old` when given.
    fn subscribe(&self, old: Option<u64>) -> Subscription {
        let (bus, cap) = (&self.shared.bus, self.shared.options.queue_size);
        let counters = self.shared.counters.bus.clone();
        match old {
            Some(old) => bus.replace(old, BUS_LABEL, Pattern::All, cap, counters),
            None => bus.subscribe_with(BUS_LABEL, Pattern::All, cap, counters),
        }
    }

    fn spawn_worker(&self, config: Arc<Config>, sub: Subscription) -> Active {
        let options = &self.shared.options;
        info!(url = %config.shown, queue_size = options.queue_size, "webhook delivering");
        let circuit: SharedCircuit = Arc::new(Mutex::new(Circuit::new(
            options.circuit_threshold,
            options.circuit_cooldown,
        )));
        let abort = CancellationToken::new();
        let disabled = Arc::new(Disabled::default());
        let sub_id = sub.id();
        let worker = Worker {
            sub,
            config: config.clone(),
            shared: self.shared.clone(),
            circuit: circuit.clone(),
            disabled: disabled.clone(),
            abort: abort.clone(),
        };
        let task = self.runtime.spawn(worker.run());
        Active {
            config,
            sub_id,
            circuit,
            disabled,
            abort,
            task,
        }
    }

    /// Lets `old` finish its queue in the background, for at most `drain_timeout`.
    fn drain_in_background(&self, old: Active) -> Retiring {
        let Active {
            config,
            abort,
            task,
            ..
        } = old;
        let limit = self.shared.options.drain_timeout;
        let shown = config.shown.clone();
        let stop = abort.clone();
        let supervisor = self.runtime.spawn(async move {
            let mut task = task;
            if tokio::time::timeout(limit, &mut task).await.is_err() {
                warn!(
                    url = %shown,
                    limit = %pilot_core::duration::format(limit),
                    "webhook drain after a change ran out of time; the rest is dropped"
                );
                stop.cancel();
                let _ = task.await;
            } else {
                debug!(url = %shown, "webhook drain after a change finished");
            }
        });
        Retiring {
            abort,
            task: supervisor,
        }
    }

    /// Sets the webhook (URL and settings; `None` clears it) without waiting for anything.
    ///
    /// Everything is checked first (settings, headers, auth files, which are read now): on an
    /// error nothing changes. Events published before this call finish with the old webhook in
    /// the background (bounded by `drain_timeout`, the rest counted as dropped); events
    /// published after it go to the new one. Clearing drops and counts what is still queued or
    /// in flight. Setting exactly the webhook in force again changes nothing, unless a 410 Gone
    /// disabled it: any configure re-enables it.
    pub fn configure(&self, target: Option<(Url, WebhookSettings)>) -> Result<(), WebhookError> {
        let config = match target {
            Some((url, settings)) => Some(Arc::new(Config::build(url, settings, &self.clients)?)),
            None => None,
        };
        let mut state = self.lock();
        if state.shut_down {
            warn!("webhook plugin is shut down; webhook change ignored");
            return Err(WebhookError::ShutDown);
        }
        state.retiring.retain(|r| !r.task.is_finished());
        let old = state.current.take();
        match (old, config) {
            (Some(old), Some(new)) if old.config.same_as(&new) && !old.disabled.is_set() => {
                debug!(url = %new.shown, "webhook unchanged");
                state.current = Some(old);
            }
            (Some(old), Some(new)) => {
                let sub = self.subscribe(Some(old.sub_id));
                if old.disabled.is_set() {
                    info!(url = %new.shown, "webhook re-enabled");
                } else if old.config.url == new.url {
                    info!(url = %new.shown, "webhook settings changed");
                } else {
                    info!(from = %old.config.shown, to = %new.shown, "webhook URL changed");
                }
                state.current = Some(self.spawn_worker(new, sub));
                let retiring = self.drain_in_background(old);
                state.retiring.push(retiring);
            }
            (None, Some(new)) => {
                let sub = self.subscribe(None);
                state.current = Some(self.spawn_worker(new, sub));
            }
            (Some(old), None) => {
                info!(url = %old.config.shown, "webhook cleared; queued events are dropped");
                self.shared.bus.detach(old.sub_id);
                old.abort.cancel();
                state.retiring.push(Retiring {
                    abort: old.abort,
                    task: old.task,
                });
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Hot-swaps the URL (`None` clears it) with default settings: `configure` without
    /// settings. Ignored after shutdown.
    pub fn set_url(&self, url: Option<Url>) {
        // Default settings have nothing that can fail; only a shut-down plugin refuses, and
        // then the change is ignored as documented (configure already logged it).
        let _ = self.configure(url.map(|u| (u, WebhookSettings::default())));
    }

    /// Sets the signing secrets: the current one first, then those still in a rotation's grace
    /// period. Empty: requests go unsigned. Takes effect with the next attempt. The secrets are
    /// never logged nor shown in stats.
    pub fn set_secrets(&self, secrets: Vec<String>) {
        let secrets = Secrets::new(secrets);
        info!(signatures = secrets.len(), "webhook signing secrets set");
        *self
            .shared
            .secrets
            .write()
            .unwrap_or_else(|p| p.into_inner()) = secrets;
    }

    /// The URL in force.
    pub fn url(&self) -> Option<Url> {
        self.lock().current.as_ref().map(|a| a.config.url.clone())
    }

    /// The settings in force (as given: header values unmasked; show
    /// [`WebhookSettings::redacted`]).
    pub fn settings(&self) -> Option<WebhookSettings> {
        self.lock()
            .current
            .as_ref()
            .map(|a| a.config.settings.clone())
    }

    /// The options in force (out-of-range values already brought into range).
    pub fn options(&self) -> &WebhookOptions {
        &self.shared.options
    }

    /// This plugin's random instance id (16 hex digits), chosen at start.
    pub fn instance_id(&self) -> &str {
        &self.shared.instance
    }

    /// The `webhook-id` of a single-event delivery of `event_id`: `msg_<instance>_<event_id>`.
    pub fn webhook_id_for(&self, event_id: u64) -> String {
        batch::single_id(&self.shared.instance, event_id)
    }

    /// A snapshot of the state and the counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.shared.counters.snapshot();
        let secrets = self.shared.secrets();
        stats.signing = !secrets.is_empty();
        stats.signatures = secrets.len();
        let state = self.lock();
        if let Some(active) = &state.current {
            stats.url = Some(active.config.shown.clone());
            stats.circuit = worker::lock(&active.circuit).state(Instant::now());
            stats.queue_capacity = self.shared.options.queue_size as u64;
            stats.settings = Some(active.config.settings.redacted());
            if let Some((reason, at)) = active.disabled.get() {
                stats.disabled = Some(reason);
                stats.disabled_at = Some(at);
            }
        }
        stats
    }

    /// The newest `limit` delivery attempts (every kept one for 0), only failed ones if asked,
    /// newest last. The log keeps the last 1000 attempts.
    pub fn deliveries(&self, failed_only: bool, limit: usize) -> Vec<DeliveryRecord> {
        self.shared.log.list(failed_only, limit)
    }

    /// Hands every delivery record, as it is logged, to `sink` too (`None` removes it).
    pub fn set_log_sink(&self, sink: Option<Arc<dyn DeliveryLogSink>>) {
        self.shared.log.set_sink(sink);
    }

    /// Puts persisted records (oldest first) back in the delivery log, before anything logged
    /// since; they have no payload, so `redeliver` cannot use them.
    pub fn restore_deliveries(&self, records: Vec<DeliveryRecord>) {
        self.shared.log.restore(records);
    }

    fn current_config(&self) -> Result<Arc<Config>, WebhookError> {
        let state = self.lock();
        if state.shut_down {
            return Err(WebhookError::ShutDown);
        }
        state
            .current
            .as_ref()
            .map(|a| a.config.clone())
            .ok_or(WebhookError::NoWebhook)
    }

    /// Sends a `webhook.test` event (event_id 0, this node's id, data
    /// `{"message":"test delivery from pilot"}`) now to the webhook in force: one attempt,
    /// outside the queue, signed when secrets are set, in the body shape in force (a batch of
    /// one when batching), logged in the delivery log. Works while the webhook is disabled.
    pub async fn test(&self) -> Result<AttemptOutcome, WebhookError> {
        let config = self.current_config()?;
        let data = serde_json::json!({ "message": "test delivery from pilot" });
        let event = Event::new(
            0,
            "webhook.test",
            self.shared.bus.node_id(),
            jiff::Timestamp::now(),
            pilot_core::event::data_from_value(&data).ok(),
        );
        let n = self.shared.tests_sent.fetch_add(1, Ordering::Relaxed) + 1;
        let mut delivery = Delivery::one(
            Item::of(&event),
            config.batch.is_some(),
            &self.shared.instance,
        );
        delivery.webhook_id = format!("msg_{}_test-{n}", self.shared.instance);
        let attempt = attempt::send(&self.shared, &config, &delivery, 1).await;
        info!(url = %config.shown, ok = attempt.result.is_ok(), "webhook test sent");
        Ok(attempt.outcome(&config, &delivery))
    }

    /// Sends a past event again now, to the webhook in force: one attempt, outside the queue,
    /// while its payload is still in the delivery log ([`WebhookError::NotFound`] otherwise).
    /// It keeps the `webhook-id` it was first sent with (when it was sent alone and the body
    /// shape has not changed since), so receivers can tell it is the same event.
    pub async fn redeliver(&self, event_id: u64) -> Result<AttemptOutcome, WebhookError> {
        let config = self.current_config()?;
        let (record, payload) = self
            .shared
            .log
            .find(event_id)
            .ok_or(WebhookError::NotFound { event_id })?;
        let batched = config.batch.is_some();
        let item = Item {
            event_id,
            event: record.event.clone(),
            payload,
        };
        let mut delivery = Delivery::one(item, batched, &self.shared.instance);
        if !batched && record.batch.is_none() {
            delivery.webhook_id = record.webhook_id.clone();
        }
        let attempt_no = record.attempt.saturating_add(1);
        let attempt = attempt::send(&self.shared, &config, &delivery, attempt_no).await;
        info!(url = %config.shown, event_id, ok = attempt.result.is_ok(), "webhook event redelivered");
        Ok(attempt.outcome(&config, &delivery))
    }

    /// Stops gracefully: detaches from the bus (what is already queued is still delivered),
    /// drains within `drain_timeout`, drops and counts the rest, and waits (same bound) for the
    /// drains of earlier swaps. Later calls return at once.
    pub async fn shutdown(&self) {
        let (current, retiring) = {
            let mut state = self.lock();
            state.shut_down = true;
            (state.current.take(), std::mem::take(&mut state.retiring))
        };
        let deadline = worker::deadline_after(self.shared.options.drain_timeout);
        if let Some(active) = current {
            self.shared.bus.detach(active.sub_id);
            info!(url = %active.config.shown, "webhook draining for shutdown");
            finish(active.abort, active.task, deadline).await;
        }
        for r in retiring {
            finish(r.abort, r.task, deadline).await;
        }
        let stats = self.shared.counters.snapshot();
        info!(
            delivered = stats.delivered,
            failed = stats.failed,
            dropped = stats.dropped,
            filtered = stats.filtered,
            "webhook stopped"
        );
    }
}

/// Waits for a worker (or its drain supervisor) until `deadline`, then aborts it and waits for
/// it to count what it drops.
async fn finish(abort: CancellationToken, mut task: JoinHandle<()>, deadline: Instant) {
    if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
        abort.cancel();
        let _ = task.await;
    }
}

impl Drop for WebhookPlugin {
    fn drop(&mut self) {
        let state = self.lock();
        if let Some(active) = &state.current {
            active.abort.cancel();
        }
        for r in &state.retiring {
            r.abort.cancel();
        }
    }
}
