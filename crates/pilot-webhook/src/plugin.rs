//! The plugin itself: starts the worker for the webhook in force, hot-swaps it on `configure`
//! (the old queue drains in the background, bounded), clears it, holds the signing secrets and
//! the delivery log, runs the `test` and `redeliver` tools, shuts down gracefully, and reports
//! stats.
//!
//! With `settings.durable` the webhook runs in durable mode ([`crate::durable`]): a spooler
//! writes every event to the spool and a durable worker delivers from it. The spool is opened
//! once (given in [`WebhookOptions::spool`], or created at [`WebhookOptions::spool_path`] on
//! the first durable configure) and kept, with its on-disk delivery log, for the plugin's life.
//! One spooler and one durable worker run at a time: a replacement waits for the task it
//! replaces, so they never race on the spool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use pilot_core::webhook_url::Url;
use pilot_core::{Bus, Event, Pattern, Subscription, WebhookSettings};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::attempt::{self, AttemptOutcome};
use crate::batch::{self, Delivery, Item};
use crate::circuit::{self, Circuit, SharedCircuit};
use crate::client::HttpClient;
use crate::config::{Clients, Config};
use crate::durable::{self, DurableWorker, Settler, Spooled};
use crate::error::{redact, WebhookError};
use crate::health::{Disabled, Health};
use crate::keeper::Keeper;
use crate::log::{DeliveryLog, DeliveryLogSink, DeliveryRecord, LOG_CAPACITY};
use crate::options::WebhookOptions;
use crate::replay::{Lane, Target};
use crate::retry::deadline_after;
use crate::sender::Sender;
use crate::shared::Shared;
use crate::sign::Secrets;
use crate::stats::{ShelfInfo, Stats};
use crate::store::{self, Store};
use crate::supervise;
use crate::transport::Endpoint;
use crate::worker::{Handover, Worker};
use pilot_spool::{run_spooler_counted, Spool};

/// The label of the webhook's subscription on the bus.
pub const BUS_LABEL: &str = "webhook";

/// How long shutdown waits for the spooler's last write.
const SPOOLER_STOP_LIMIT: Duration = Duration::from_secs(10);

/// How the webhook in force delivers.
enum Mode {
    /// From its own bus subscription (the in-memory queue).
    Memory {
        sub_id: u64,
        abort: CancellationToken,
        task: JoinHandle<()>,
        handover: Arc<Handover>,
    },
    /// From the spool; the tasks are in [`State::spooler`] and [`State::durable`].
    Durable {
        sub_id: u64,
        spooler_stop: CancellationToken,
        /// Stops the worker after its request in flight.
        worker_stop: CancellationToken,
    },
}

/// The worker delivering for the webhook in force.
struct Active {
    config: Arc<Config>,
    circuit: SharedCircuit,
    disabled: Arc<Disabled>,
    mode: Mode,
}

/// A task and the token that stops it.
struct Task {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// The latest durable worker.
struct DurableTask {
    handle: JoinHandle<()>,
    /// Stop now (a request in flight is abandoned).
    abort: CancellationToken,
    /// Stop after the request in flight.
    stop: CancellationToken,
    /// Stop once the spool is empty (shutdown).
    drain: CancellationToken,
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
    /// The latest spooler (running, or stopping after a change).
    spooler: Option<Task>,
    /// The latest durable worker.
    durable: Option<DurableTask>,
    shut_down: bool,
}

/// The webhook plugin: delivers bus events to the webhook in force. `Send + Sync`.
pub struct WebhookPlugin {
    shared: Arc<Shared>,
    /// Delivers the replays queued for this endpoint.
    lane: Lane,
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
    /// `queue_size` events, which is the webhook queue (in durable mode: the spooler's
    /// buffer). Without one it does not subscribe. Fails, starting nothing, when the settings
    /// cannot work or (durable) the spool cannot be opened (see [`WebhookError`]).
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
        let given_spool = options.spool.clone();
        let counters: Arc<crate::stats::Counters> = Arc::default();
        let keeper = Keeper::start(
            &options.name,
            options.archive.clone(),
            counters.clone(),
            &instance,
            &Handle::current(),
        );
        if let Some(overflow) = keeper.overflow() {
            let _ = counters.bus.overflow.set(overflow);
        }
        let shared = Shared {
            bus,
            options: options.normalized(),
            counters,
            secrets: RwLock::default(),
            log: DeliveryLog::new(LOG_CAPACITY),
            instance,
            tests_sent: AtomicU64::new(0),
            store: OnceLock::new(),
            opening: Mutex::new(()),
            notify: Arc::new(Notify::new()),
            health: Health::default(),
            keeper,
        };
        if let Some(spool) = given_spool {
            shared.install(spool);
        }
        let shared = Arc::new(shared);
        WebhookPlugin {
            lane: Lane::start(shared.clone(), &Handle::current()),
            shared,
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

    /// The spool, opened (created when missing) at `spool_path` the first time.
    fn open_store(&self, shown: &str) -> Result<Arc<Store>, WebhookError> {
        if let Some(store) = self.shared.store() {
            return Ok(store.clone());
        }
        let _opening = self
            .shared
            .opening
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(store) = self.shared.store() {
            return Ok(store.clone());
        }
        let path = self
            .shared
            .options
            .spool_path
            .as_deref()
            .ok_or_else(|| WebhookError::NoSpool { url: shown.into() })?;
        // Normally a new, empty file (the daemon opens an existing one before the bus starts):
        // quick enough to do here.
        let spool = store::open_spool(path)?;
        Ok(self.shared.install(spool))
    }

    /// A new in-memory subscription, atomically replacing `old` when given.
    fn subscribe(&self, old: Option<u64>) -> Subscription {
        let (bus, cap) = (&self.shared.bus, self.shared.options.queue_size);
        let counters = self.shared.counters.bus.clone();
        let label = self.shared.options.bus_label();
        match old {
            Some(old) => bus.replace(old, label, Pattern::All, cap, counters),
            None => bus.subscribe_with(label, Pattern::All, cap, counters),
        }
    }

    fn new_circuit(&self) -> SharedCircuit {
        let options = &self.shared.options;
        Arc::new(Mutex::new(Circuit::new(
            options.circuit_threshold,
            options.circuit_cooldown,
        )))
    }

    fn spawn_worker(&self, config: Arc<Config>, sub: Subscription) -> Active {
        let options = &self.shared.options;
        info!(url = %config.shown, queue_size = options.queue_size, "webhook delivering");
        let circuit = self.new_circuit();
        let abort = CancellationToken::new();
        let disabled = Arc::new(Disabled::default());
        let handover = Arc::new(Handover::default());
        let sub_id = sub.id();
        let worker = Worker {
            sub,
            config: config.clone(),
            shared: self.shared.clone(),
            circuit: circuit.clone(),
            disabled: disabled.clone(),
            abort: abort.clone(),
            handover: handover.clone(),
        };
        let task = supervise::spawn(
            &self.runtime,
            self.shared.clone(),
            "in-memory worker",
            worker.run(),
            || {},
        );
        Active {
            config,
            circuit,
            disabled,
            mode: Mode::Memory {
                sub_id,
                abort,
                task,
                handover,
            },
        }
    }

    /// Subscribes durably (handing the stream over from `memory`, an in-memory subscription
    /// still attached, if given) and starts a spooler after the previous one has stopped.
    /// Returns the subscription's id and the spooler's stop token.
    fn start_spooler(
        &self,
        state: &mut State,
        store: &Arc<Store>,
        memory: Option<(u64, &Handover)>,
    ) -> (u64, CancellationToken) {
        let (bus, cap) = (&self.shared.bus, self.shared.options.queue_size);
        let counters = self.shared.counters.durable_bus.clone();
        let label = self.shared.options.bus_label();
        let (sub, sink) = match memory {
            Some((old_id, handover)) => {
                let mut cutoff = handover.begin();
                let (sub, sink) = bus.subscribe_durable(label, Pattern::All, cap, counters);
                *cutoff = sink.durable();
                bus.detach(old_id);
                (sub, sink)
            }
            None => bus.subscribe_durable(label, Pattern::All, cap, counters),
        };
        let sub_id = sub.id();
        let stop = CancellationToken::new();
        let previous = state.spooler.take();
        let spool = store.spool.clone();
        let notify = self.shared.notify.clone();
        let progress = self.shared.counters.spooler.clone();
        let token = stop.clone();
        let failed = stop.clone();
        let spooler = async move {
            if let Some(previous) = previous {
                previous.stop.cancel();
                let _ = previous.handle.await;
            }
            let id = batch::durable_webhook_id;
            let report = run_spooler_counted(sub, spool, sink, notify, token, &progress, id).await;
            debug!(?report, "webhook spooler finished");
        };
        // A dead spooler's stop token is cancelled, so the next configure starts a new one.
        let handle = supervise::spawn(
            &self.runtime,
            self.shared.clone(),
            "spooler",
            spooler,
            move || failed.cancel(),
        );
        state.spooler = Some(Task {
            stop: stop.clone(),
            handle,
        });
        (sub_id, stop)
    }

    /// Starts a durable worker for `config`, after the previous one (stopped now) has ended.
    fn spawn_durable(
        &self,
        state: &mut State,
        config: Arc<Config>,
        store: Arc<Store>,
        sub_id: u64,
        spooler_stop: CancellationToken,
    ) -> Active {
        let circuit = self.new_circuit();
        let disabled = Arc::new(Disabled::default());
        let abort = CancellationToken::new();
        let stop = abort.child_token();
        let drain = CancellationToken::new();
        let previous = state.durable.take().map(|task| {
            task.stop.cancel();
            task.handle
        });
        let settler = Settler::new(&store, self.shared.clone());
        let transport = Endpoint::new(self.shared.clone(), config.clone());
        let sender = Sender::new(
            transport,
            self.shared.clone(),
            config.clone(),
            circuit.clone(),
        );
        let worker = DurableWorker {
            config: config.clone(),
            shared: self.shared.clone(),
            store,
            sender: Arc::new(sender),
            disabled: disabled.clone(),
            abort: abort.clone(),
            stop: stop.clone(),
            drain: drain.clone(),
            previous,
            sub_id,
            spooler_stop: spooler_stop.clone(),
            settler,
            cursor: None,
            retry_at: None,
            ahead: durable::ReadAhead::default(),
        };
        let handle = supervise::spawn(
            &self.runtime,
            self.shared.clone(),
            "durable worker",
            worker.run(),
            || {},
        );
        state.durable = Some(DurableTask {
            handle,
            abort,
            stop: stop.clone(),
            drain,
        });
        Active {
            config,
            circuit,
            disabled,
            mode: Mode::Durable {
                sub_id,
                spooler_stop,
                worker_stop: stop,
            },
        }
    }

    /// Lets an in-memory worker finish its queue in the background, for at most
    /// `drain_timeout`.
    fn drain_in_background(
        &self,
        config: &Config,
        abort: CancellationToken,
        task: JoinHandle<()>,
    ) -> Retiring {
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
    /// Everything is checked first (settings, headers, auth files, which are read now, and in
    /// durable mode the spool, opened now if it is not yet): on an error nothing changes.
    /// Events published before this call finish with the old webhook in the background
    /// (bounded by `drain_timeout`, the rest counted as dropped); events published after it go
    /// to the new one. Clearing drops and counts what is still queued or in flight. Setting
    /// exactly the webhook in force again changes nothing, unless a 410 Gone disabled it: any
    /// configure re-enables it.
    ///
    /// Durable mode (`settings.durable`) differs, see [`crate::durable`]: spooled events are
    /// never dropped by a change. They go to whatever URL is in force when they are delivered
    /// (the backlog follows the URL), and they wait on disk while the webhook is cleared or
    /// in-memory, until durable delivery is on again.
    pub fn configure(&self, target: Option<(Url, WebhookSettings)>) -> Result<(), WebhookError> {
        // Pausing is applied on its own, without rebuilding the worker.
        let paused = target.as_ref().is_some_and(|(_, s)| s.paused);
        let target = target.map(|(url, settings)| (url, settings.unpaused()));
        if let Some((_, settings)) = &target {
            self.shared.keeper.configure(settings);
        }
        let config = match target {
            Some((url, settings)) => Some(Arc::new(Config::build(url, settings, &self.clients)?)),
            None => None,
        };
        let store = match &config {
            Some(c) if c.settings.durable => Some(self.open_store(&c.shown)?),
            _ => None,
        };
        let mut state = self.lock();
        if state.shut_down {
            warn!("webhook plugin is shut down; webhook change ignored");
            return Err(WebhookError::ShutDown);
        }
        state.retiring.retain(|r| !r.task.is_finished());
        let old = state.current.take();
        let failed = self.shared.counters.failure().is_some();
        let unchanged = matches!(
            (&old, &config),
            (Some(o), Some(n)) if o.config.same_as(n) && !o.disabled.is_set() && !failed
        );
        self.set_paused(paused);
        if unchanged {
            debug!("webhook unchanged");
            state.current = old;
            return Ok(());
        }
        self.shared.health.reset();
        if self.shared.counters.clear_failure() {
            info!(webhook = %self.shared.options.name, "webhook restarted after a task failure");
        }
        if let (Some(old), Some(new)) = (&old, &config) {
            if old.disabled.is_set() {
                info!(url = %new.shown, "webhook re-enabled");
            } else if old.config.url == new.url {
                info!(url = %new.shown, "webhook settings changed");
            } else {
                info!(from = %old.config.shown, to = %new.shown, "webhook URL changed");
            }
        }
        if let Some(spool_store) = self.shared.store() {
            spool_store.log.set_enabled(store.is_some());
        }
        let Some(new) = config else {
            if let Some(old) = old {
                self.clear(&mut state, old);
            }
            self.lane.follow(None);
            return Ok(());
        };
        match store {
            None => self.to_memory(&mut state, old, new),
            Some(store) => self.to_durable(&mut state, old, new, store),
        }
        self.lane.follow(state.current.as_ref().map(|a| Target {
            config: a.config.clone(),
            circuit: a.circuit.clone(),
            disabled: a.disabled.clone(),
        }));
        Ok(())
    }

    /// Keeps every event still in the spool as a dead letter (`removed`): called when the
    /// endpoint is removed with its backlog. How many were kept.
    pub async fn archive_backlog(&self) -> u64 {
        let Some(store) = self.shared.store().cloned() else {
            return 0;
        };
        let sink = self.shared.keeper.sink();
        let node = self.shared.bus.node_id();
        let result = store::blocking(move || {
            let mut kept = 0;
            let mut after = None;
            loop {
                let records = store.spool.peek(after, 1024)?;
                let Some(last) = records.last() else {
                    return Ok(kept);
                };
                after = Some(last.event_id);
                kept += sink.put_records(&records, node, crate::keeper::Reason::Removed);
            }
        })
        .await;
        match result {
            Ok(kept) => kept,
            Err(e) => {
                warn!(webhook = %self.shared.options.name, error = %e, "the spool's backlog could not be kept as dead letters");
                0
            }
        }
    }

    /// Says replays were queued for this endpoint in the archive: its replay lane delivers
    /// them (see [`crate::replay`]).
    pub fn wake_replays(&self) {
        self.lane.wake();
    }

    /// The archive this endpoint keeps its dead letters in, if any.
    pub fn archive(&self) -> Option<Arc<pilot_spool::Archive>> {
        self.shared.keeper.archive().cloned()
    }

    /// Clears the webhook in force.
    fn clear(&self, state: &mut State, old: Active) {
        match old.mode {
            Mode::Memory {
                sub_id,
                abort,
                task,
                ..
            } => {
                info!(url = %old.config.shown, "webhook cleared; queued events are dropped");
                self.shared.bus.detach(sub_id);
                abort.cancel();
                state.retiring.push(Retiring { abort, task });
            }
            Mode::Durable {
                sub_id,
                spooler_stop,
                worker_stop,
            } => {
                info!(
                    url = %old.config.shown,
                    "webhook cleared; spooled events stay on disk until durable delivery is on again"
                );
                self.shared.bus.detach(sub_id);
                spooler_stop.cancel();
                worker_stop.cancel();
            }
        }
    }

    /// Makes `new` the webhook in force, in memory mode.
    fn to_memory(&self, state: &mut State, old: Option<Active>, new: Arc<Config>) {
        let Some(old) = old else {
            let sub = self.subscribe(None);
            state.current = Some(self.spawn_worker(new, sub));
            return;
        };
        match old.mode {
            Mode::Memory {
                sub_id,
                abort,
                task,
                ..
            } => {
                let sub = self.subscribe(Some(sub_id));
                state.current = Some(self.spawn_worker(new, sub));
                let retiring = self.drain_in_background(&old.config, abort, task);
                state.retiring.push(retiring);
            }
            Mode::Durable {
                sub_id,
                spooler_stop,
                worker_stop,
            } => {
                // One atomic step: events before it are the spooler's, after it the queue's.
                let sub = self.subscribe(Some(sub_id));
                spooler_stop.cancel();
                worker_stop.cancel();
                let depth = self.shared.store().map_or(0, |s| s.spool.stats().depth);
                info!(
                    url = %new.shown,
                    spooled = depth,
                    "webhook leaves durable mode; spooled events stay on disk until durable delivery is on again"
                );
                state.current = Some(self.spawn_worker(new, sub));
            }
        }
    }

    /// Makes `new` the webhook in force, in durable mode.
    fn to_durable(
        &self,
        state: &mut State,
        old: Option<Active>,
        new: Arc<Config>,
        store: Arc<Store>,
    ) {
        store.spool.set_limits(store::spool_limits(&new.settings));
        let (sub_id, spooler_stop) = match old {
            None => self.start_spooler(state, &store, None),
            Some(old) => match old.mode {
                Mode::Memory {
                    sub_id,
                    abort,
                    task,
                    handover,
                } => {
                    let started = self.start_spooler(state, &store, Some((sub_id, &handover)));
                    let retiring = self.drain_in_background(&old.config, abort, task);
                    state.retiring.push(retiring);
                    started
                }
                Mode::Durable {
                    sub_id,
                    spooler_stop,
                    worker_stop,
                } => {
                    worker_stop.cancel();
                    if spooler_stop.is_cancelled() {
                        // Stopped by a 410: subscribe again.
                        self.shared.bus.detach(sub_id);
                        self.start_spooler(state, &store, None)
                    } else {
                        (sub_id, spooler_stop)
                    }
                }
            },
        };
        let limits = store.spool.limits();
        info!(
            url = %new.shown,
            spool = %store.spool.path().display(),
            max_spool_bytes = limits.max_bytes,
            discard_after = %pilot_core::duration::format(limits.discard_after),
            "webhook durable: events are spooled on disk until delivered"
        );
        state.current = Some(self.spawn_durable(state, new, store, sub_id, spooler_stop));
    }

    /// Pauses (or resumes) delivery without changing anything else. Paused in memory mode,
    /// events that arrive are dropped and counted (`dropped_paused`); in durable mode they are
    /// spooled and delivered in order on resume. A resume also forgets the run of failures
    /// `disable_after` measures.
    pub fn set_paused(&self, on: bool) {
        let was = self.shared.health.is_paused();
        if was != on {
            info!(webhook = %self.shared.options.name, paused = on, "webhook {}", if on { "paused" } else { "resumed" });
            self.shared.health.reset();
        }
        self.shared.health.set_paused(on);
    }

    /// Whether the endpoint is paused.
    pub fn is_paused(&self) -> bool {
        self.shared.health.is_paused()
    }

    /// Resumes delivery: un-pauses, and re-enables an endpoint that was disabled (410 Gone,
    /// `disable_after`) or failed (a task ended unexpectedly) with the configuration it had.
    pub fn resume(&self) -> Result<(), WebhookError> {
        self.set_paused(false);
        let target = {
            let state = self.lock();
            state
                .current
                .as_ref()
                .filter(|a| a.disabled.is_set() || self.shared.counters.failure().is_some())
                .map(|a| (a.config.url.clone(), a.config.settings.clone()))
        };
        match target {
            Some(target) => self.configure(Some(target)),
            None => Ok(()),
        }
    }

    /// Why the endpoint is failed (one of its tasks ended unexpectedly), until it is resumed or
    /// configured again.
    pub fn failure(&self) -> Option<String> {
        self.shared.counters.failure()
    }

    /// Makes the running spooler misbehave once (tests of the supervision and the accounting).
    #[doc(hidden)]
    pub fn inject_spooler_fault(&self, fault: pilot_spool::SpoolerFault) {
        self.shared.counters.spooler.inject_fault(fault);
    }

    /// Whether the endpoint in force was disabled (410 Gone, `disable_after`).
    pub fn is_disabled(&self) -> bool {
        self.lock()
            .current
            .as_ref()
            .is_some_and(|a| a.disabled.is_set())
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

    /// The spool, once open (given in the options, or created by a durable configure).
    pub fn spool(&self) -> Option<Arc<Spool>> {
        self.shared.store().map(|s| s.spool.clone())
    }

    /// This plugin's random instance id (16 hex digits), chosen at start.
    pub fn instance_id(&self) -> &str {
        &self.shared.instance
    }

    /// The `webhook-id` of a single-event in-memory delivery of `event_id`:
    /// `msg_<instance>_<event_id>` (durable mode uses [`crate::durable_webhook_id`]).
    pub fn webhook_id_for(&self, event_id: u64) -> String {
        batch::single_id(&self.shared.instance, event_id)
    }

    /// A snapshot of the state and the counters.
    pub fn stats(&self) -> Stats {
        let store = self.shared.store();
        let mut stats = self.shared.counters.snapshot(store.map(|s| &*s.spool));
        let secrets = self.shared.secrets();
        stats.name = self.shared.options.name.clone();
        stats.paused = self.shared.health.is_paused();
        stats.signing = !secrets.is_empty();
        stats.signatures = secrets.len();
        self.archive_stats(&mut stats);
        let state = self.lock();
        if let Some(active) = &state.current {
            stats.url = Some(active.config.shown.to_string());
            stats.circuit = circuit::lock(&active.circuit).state(Instant::now());
            stats.queue_capacity = self.shared.options.queue_size as u64;
            stats.settings = Some(active.config.settings.redacted());
            stats.rate_wait = active
                .config
                .rate
                .as_ref()
                .map_or(std::time::Duration::ZERO, |r| r.current_wait());
            if let Some((reason, at)) = active.disabled.get() {
                stats.disabled = Some(reason);
                stats.disabled_at = Some(at);
            }
        }
        stats
    }

    /// The archive's part of `stats`.
    fn archive_stats(&self, stats: &mut Stats) {
        let keeper = &self.shared.keeper;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = &self.shared.counters;
        stats.replay.delivered = load(&counters.replay_delivered);
        stats.replay.failed = load(&counters.replay_failed);
        stats.replay.filtered = load(&counters.replay_filtered);
        stats.archive_write_errors = keeper.write_errors();
        let Some(archive) = keeper.archive() else {
            return;
        };
        let name = &self.shared.options.name;
        stats.replay.pending = archive.replay_depth(name);
        let bounds = keeper.bounds();
        let shelf = |shelf, limits: pilot_spool::ArchiveLimits| {
            let s = archive.stats(shelf, name);
            ShelfInfo {
                count: s.count,
                bytes: s.bytes,
                max_bytes: limits.max_bytes,
                retention: limits.max_age,
                evicted_size: s.evicted_size,
                evicted_age: s.evicted_age,
            }
        };
        stats.dead_letters = Some(shelf(pilot_spool::Shelf::Dead, bounds.dead));
        stats.retained = bounds
            .retained
            .map(|limits| shelf(pilot_spool::Shelf::Retained, limits));
    }

    /// The newest `limit` delivery attempts (every kept one for 0), only failed ones if asked,
    /// newest last. The log keeps the last 1000 attempts (in durable mode on disk too, and
    /// restored when the spool is opened).
    pub fn deliveries(&self, failed_only: bool, limit: usize) -> Vec<DeliveryRecord> {
        self.shared.log.list(failed_only, limit)
    }

    /// Hands every delivery record, as it is logged, to `sink` too (`None` removes it).
    /// Independent of durable mode's own on-disk log.
    pub fn set_log_sink(&self, sink: Option<Arc<dyn DeliveryLogSink>>) {
        self.shared.log.set_sink(sink);
    }

    /// Puts persisted records (oldest first) back in the delivery log, before anything logged
    /// since; they have no payload, so `redeliver` cannot use them. (The spool's log is
    /// restored by the plugin itself.)
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
        delivery.webhook_id = format!("msg_{}_test-{n}", self.shared.instance).into();
        let delivery = config.render(delivery);
        let attempt = attempt::send(&self.shared, &config, &delivery, 1).await;
        self.shared.flush_log().await;
        info!(url = %config.shown, ok = attempt.result.is_ok(), "webhook test sent");
        Ok(attempt.outcome(&config, &delivery))
    }

    /// Sends a past event again now, to the webhook in force: one attempt, outside the queue.
    /// The event comes from the spool while it is still spooled (durable mode: with the
    /// `webhook-id` stored with it), else from the delivery log while its payload is still
    /// there ([`WebhookError::NotFound`] otherwise); from the log it keeps the `webhook-id` it
    /// was first sent with (when it was sent alone and the body shape has not changed since),
    /// so receivers can tell it is the same event. A redelivered spooled event stays spooled
    /// (its queued delivery still happens).
    pub async fn redeliver(&self, event_id: u64) -> Result<AttemptOutcome, WebhookError> {
        let config = self.current_config()?;
        let batched = config.batch.is_some();
        if let Some(store) = self.shared.store() {
            let spool = store.spool.clone();
            match store::blocking(move || spool.get(event_id)).await {
                Ok(Some(record)) => {
                    let spooled = Spooled::of(record);
                    let attempt_no = spooled.attempts.saturating_add(1);
                    if let Some(delivery) = durable::delivery_of(vec![spooled], batched) {
                        let delivery = config.render(delivery);
                        let attempt =
                            attempt::send(&self.shared, &config, &delivery, attempt_no).await;
                        self.shared.flush_log().await;
                        info!(url = %config.shown, event_id, ok = attempt.result.is_ok(), "webhook spooled event redelivered");
                        return Ok(attempt.outcome(&config, &delivery));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(event_id, error = %e, "webhook spool could not be read for redeliver; trying the delivery log")
                }
            }
        }
        let (record, payload) = self
            .shared
            .log
            .find(event_id)
            .ok_or(WebhookError::NotFound { event_id })?;
        let item = Item {
            event_id,
            event: record.event.as_str().into(),
            payload,
            severity: None,
            at_ms: 0,
        };
        let mut delivery = Delivery::one(item, batched, &self.shared.instance);
        if !batched && record.batch.is_none() {
            delivery.webhook_id = record.webhook_id.as_str().into();
        }
        let delivery = config.render(delivery);
        let attempt_no = record.attempt.saturating_add(1);
        let attempt = attempt::send(&self.shared, &config, &delivery, attempt_no).await;
        self.shared.flush_log().await;
        info!(url = %config.shown, event_id, ok = attempt.result.is_ok(), "webhook event redelivered");
        Ok(attempt.outcome(&config, &delivery))
    }

    /// Stops gracefully: detaches from the bus (what is already queued is still delivered),
    /// drains within `drain_timeout`, drops and counts the rest, and waits (same bound) for the
    /// drains of earlier swaps. Later calls return at once.
    ///
    /// Durable mode: the spooler writes what it holds and stops, the worker delivers from the
    /// spool within `drain_timeout`; what is left stays in the spool for the next start (not
    /// dropped). The delivery log's last entries are written.
    pub async fn shutdown(&self) {
        self.lane.stop();
        let (current, retiring, spooler, durable) = {
            let mut state = self.lock();
            state.shut_down = true;
            (
                state.current.take(),
                std::mem::take(&mut state.retiring),
                state.spooler.take(),
                state.durable.take(),
            )
        };
        let deadline = deadline_after(self.shared.options.drain_timeout);
        if let Some(active) = current {
            match active.mode {
                Mode::Memory {
                    sub_id,
                    abort,
                    task,
                    ..
                } => {
                    self.shared.bus.detach(sub_id);
                    info!(url = %active.config.shown, "webhook draining for shutdown");
                    finish(abort, task, deadline).await;
                }
                Mode::Durable { sub_id, .. } => {
                    self.shared.bus.detach(sub_id);
                    info!(url = %active.config.shown, "webhook draining the spool for shutdown");
                }
            }
        }
        if let Some(spooler) = spooler {
            spooler.stop.cancel();
            let mut handle = spooler.handle;
            if tokio::time::timeout(SPOOLER_STOP_LIMIT, &mut handle)
                .await
                .is_err()
            {
                error!("webhook spooler did not stop in time; events it held may not be on disk");
                handle.abort();
            }
        }
        if let Some(worker) = durable {
            worker.drain.cancel();
            finish(worker.abort, worker.handle, deadline).await;
        }
        for r in retiring {
            finish(r.abort, r.task, deadline).await;
        }
        self.shared.flush_log().await;
        self.shared.keeper.flush().await;
        let store = self.shared.store();
        let stats = self.shared.counters.snapshot(store.map(|s| &*s.spool));
        info!(
            delivered = stats.delivered,
            failed = stats.failed,
            dropped = stats.dropped,
            filtered = stats.filtered,
            spooled = stats.spool.as_ref().map_or(0, |s| s.depth),
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
            match &active.mode {
                Mode::Memory { abort, .. } => abort.cancel(),
                Mode::Durable {
                    spooler_stop,
                    worker_stop,
                    ..
                } => {
                    spooler_stop.cancel();
                    worker_stop.cancel();
                }
            }
        }
        for r in &state.retiring {
            r.abort.cancel();
        }
        if let Some(spooler) = &state.spooler {
            spooler.stop.cancel();
        }
        if let Some(worker) = &state.durable {
            worker.abort.cancel();
        }
    }
}
