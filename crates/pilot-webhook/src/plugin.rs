//! The plugin itself: starts the worker for the URL in force, hot-swaps it (the old queue drains
//! in the background, bounded), clears it, shuts down gracefully, and reports stats.

use std::sync::{Arc, Mutex, MutexGuard};

use pilot_core::webhook_url::Url;
use pilot_core::{Bus, Pattern, Subscription};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::circuit::Circuit;
use crate::client::{HttpClient, Target};
use crate::error::redact;
use crate::options::WebhookOptions;
use crate::stats::{Counters, Stats};
use crate::worker::{self, SharedCircuit, Worker};

/// The label of the webhook's subscription on the bus.
pub const BUS_LABEL: &str = "webhook";

/// The worker delivering to the URL in force.
struct Active {
    url: Url,
    sub_id: u64,
    circuit: SharedCircuit,
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

/// The webhook plugin: delivers every bus event to the URL in force. `Send + Sync`.
pub struct WebhookPlugin {
    bus: Bus,
    options: Arc<WebhookOptions>,
    client: HttpClient,
    counters: Arc<Counters>,
    runtime: Handle,
    state: Mutex<State>,
}

impl std::fmt::Debug for WebhookPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPlugin")
            .field("url", &self.url().as_ref().map(redact))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl WebhookPlugin {
    /// Starts the plugin; with a URL it subscribes to every event (`*`) with a buffer of
    /// `queue_size` events, which is the webhook queue. Without one it does not subscribe.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start(bus: Bus, url: Option<Url>, options: WebhookOptions) -> WebhookPlugin {
        let options = options.normalized();
        let client = HttpClient::new(&options);
        Self::start_with_client(bus, url, options, client)
    }

    /// [`WebhookPlugin::start`] with a given client (tests give one with a stand-in resolver
    /// or their own CA).
    pub(crate) fn start_with_client(
        bus: Bus,
        url: Option<Url>,
        options: WebhookOptions,
        client: HttpClient,
    ) -> WebhookPlugin {
        let plugin = WebhookPlugin {
            bus,
            options: Arc::new(options.normalized()),
            client,
            counters: Arc::default(),
            runtime: Handle::current(),
            state: Mutex::default(),
        };
        if let Some(url) = url {
            let sub = plugin.subscribe(None);
            let active = plugin.spawn_worker(url, sub);
            plugin.lock().current = Some(active);
        }
        plugin
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a field assignment or a push, so a poisoned lock
        // still guards a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new subscription, atomically replacing `old` when given.
    fn subscribe(&self, old: Option<u64>) -> Subscription {
        let (cap, counters) = (self.options.queue_size, self.counters.bus.clone());
        match old {
            Some(old) => self
                .bus
                .replace(old, BUS_LABEL, Pattern::All, cap, counters),
            None => self
                .bus
                .subscribe_with(BUS_LABEL, Pattern::All, cap, counters),
        }
    }

    fn spawn_worker(&self, url: Url, sub: Subscription) -> Active {
        let shown = redact(&url);
        info!(url = %shown, queue_size = self.options.queue_size, "webhook delivering");
        let circuit: SharedCircuit = Arc::new(Mutex::new(Circuit::new(
            self.options.circuit_threshold,
            self.options.circuit_cooldown,
        )));
        let abort = CancellationToken::new();
        let sub_id = sub.id();
        let worker = Worker {
            sub,
            target: Target::new(&url),
            shown,
            client: self.client.clone(),
            counters: self.counters.clone(),
            options: self.options.clone(),
            circuit: circuit.clone(),
            abort: abort.clone(),
        };
        let task = self.runtime.spawn(worker.run());
        Active {
            url,
            sub_id,
            circuit,
            abort,
            task,
        }
    }

    /// Lets `old` finish its queue in the background, for at most `drain_timeout`.
    fn drain_in_background(&self, old: Active) -> Retiring {
        let Active {
            url, abort, task, ..
        } = old;
        let limit = self.options.drain_timeout;
        let shown = redact(&url);
        let stop = abort.clone();
        let supervisor = self.runtime.spawn(async move {
            let mut task = task;
            if tokio::time::timeout(limit, &mut task).await.is_err() {
                warn!(
                    url = %shown,
                    limit = %pilot_core::duration::format(limit),
                    "webhook drain after a URL change ran out of time; the rest is dropped"
                );
                stop.cancel();
                let _ = task.await;
            } else {
                debug!(url = %shown, "webhook drain after a URL change finished");
            }
        });
        Retiring {
            abort,
            task: supervisor,
        }
    }

    /// Hot-swaps the URL (`None` clears it) without waiting for anything.
    ///
    /// Events published before this call finish on the old URL in the background (bounded by
    /// `drain_timeout`, the rest counted as dropped); events published after it go to the new
    /// URL. Clearing drops and counts what is still queued or in flight. Setting the URL in force
    /// again changes nothing.
    pub fn set_url(&self, url: Option<Url>) {
        let mut state = self.lock();
        if state.shut_down {
            warn!("webhook plugin is shut down; URL change ignored");
            return;
        }
        state.retiring.retain(|r| !r.task.is_finished());
        let old = state.current.take();
        match (old, url) {
            (Some(old), Some(url)) if old.url == url => {
                debug!(url = %redact(&url), "webhook URL unchanged");
                state.current = Some(old);
            }
            (Some(old), Some(url)) => {
                let sub = self.subscribe(Some(old.sub_id));
                info!(from = %redact(&old.url), to = %redact(&url), "webhook URL changed");
                state.current = Some(self.spawn_worker(url, sub));
                let retiring = self.drain_in_background(old);
                state.retiring.push(retiring);
            }
            (None, Some(url)) => {
                let sub = self.subscribe(None);
                state.current = Some(self.spawn_worker(url, sub));
            }
            (Some(old), None) => {
                info!(url = %redact(&old.url), "webhook cleared; queued events are dropped");
                self.bus.detach(old.sub_id);
                old.abort.cancel();
                state.retiring.push(Retiring {
                    abort: old.abort,
                    task: old.task,
                });
            }
            (None, None) => {}
        }
    }

    /// The URL in force.
    pub fn url(&self) -> Option<Url> {
        self.lock().current.as_ref().map(|a| a.url.clone())
    }

    /// The options in force (out-of-range values already brought into range).
    pub fn options(&self) -> &WebhookOptions {
        &self.options
    }

    /// A snapshot of the state and the counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.counters.snapshot();
        let state = self.lock();
        if let Some(active) = &state.current {
            stats.url = Some(redact(&active.url));
            stats.circuit = worker::lock(&active.circuit).state(Instant::now());
            stats.queue_capacity = self.options.queue_size as u64;
        }
        stats
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
        let deadline = Instant::now() + self.options.drain_timeout;
        if let Some(active) = current {
            self.bus.detach(active.sub_id);
            info!(url = %redact(&active.url), "webhook draining for shutdown");
            finish(active.abort, active.task, deadline).await;
        }
        for r in retiring {
            finish(r.abort, r.task, deadline).await;
        }
        let stats = self.counters.snapshot();
        info!(
            delivered = stats.delivered,
            failed = stats.failed,
            dropped = stats.dropped,
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
