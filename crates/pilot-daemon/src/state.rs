//! The daemon's shared state and what it answers about itself (`info`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pilot_core::Bus;
use pilot_ipc::protocol::{
    Accounting, ArchiveStatus, BusStatus, EndpointStatus, InfoReply, ReplayStatus, SpoolStatus,
    WebhookOptionsInfo, WebhookStatus,
};
use pilot_webhook::WebhookPlugin;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::endpoints::Endpoints;

/// What every connection handler shares.
pub struct Daemon {
    pub bus: Bus,
    /// Every webhook endpoint, `default` among them.
    pub endpoints: Arc<Endpoints>,
    pub pid: u32,
    pub uid: u32,
    pub socket: PathBuf,
    pub started_at: jiff::Timestamp,
    pub started: Instant,
    /// Cancelled when a shutdown is requested (signal or IPC).
    pub shutdown: CancellationToken,
    shutdown_reason: Mutex<Option<String>>,
    stopping: AtomicBool,
}

impl Daemon {
    pub fn new(bus: Bus, endpoints: Arc<Endpoints>, socket: PathBuf) -> Daemon {
        Daemon {
            bus,
            endpoints,
            pid: std::process::id(),
            uid: rustix::process::geteuid().as_raw(),
            socket,
            started_at: jiff::Timestamp::now(),
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            shutdown_reason: Mutex::new(None),
            stopping: AtomicBool::new(false),
        }
    }

    /// Asks for a shutdown; the first reason given wins.
    pub fn request_shutdown(&self, reason: &str) {
        let mut r = self
            .shutdown_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.to_string());
        }
        self.shutdown.cancel();
    }

    pub fn shutdown_reason(&self) -> String {
        self.shutdown_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "unknown".into())
    }

    /// From here on, new events are refused.
    pub fn mark_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Everything `pilotctl info` shows.
    pub fn info(&self) -> InfoReply {
        let webhooks: Vec<EndpointStatus> = self
            .endpoints
            .all()
            .into_iter()
            .map(|(_, e)| endpoint_status(&e.plugin))
            .collect();
        let totals = Accounting::sum(webhooks.iter().filter_map(|w| w.status.accounting.as_ref()));
        let webhook = webhooks
            .first()
            .map(|w| w.status.clone())
            .unwrap_or_default();
        InfoReply {
            pid: self.pid,
            version: pilot_core::VERSION.to_string(),
            node_id: self.bus.node_id(),
            socket: self.socket.display().to_string(),
            started_at: self.started_at.to_string(),
            uptime_secs: self.uptime_secs(),
            webhook,
            webhooks,
            totals,
            bus: BusStatus {
                published: self.bus.published(),
                last_event_id: self.bus.last_event_id(),
                subscribers: self.bus.subscribers(),
            },
            log_write_errors: crate::logging::write_errors(),
        }
    }
}

/// One endpoint as `info` shows it.
pub fn endpoint_status(plugin: &WebhookPlugin) -> EndpointStatus {
    let s = plugin.stats();
    let state = if s.failure.is_some() {
        "failed"
    } else if s.disabled.is_some() {
        "disabled"
    } else if s.paused {
        "paused"
    } else {
        "active"
    };
    let settings = s.settings.clone().unwrap_or_default();
    EndpointStatus {
        name: s.name.clone(),
        state: state.to_string(),
        durable: settings.durable,
        events: settings.events.clone(),
        exclude: settings.exclude.clone(),
        dropped_paused: s.dropped_paused,
        status: webhook_status(plugin, s),
    }
}

fn webhook_status(plugin: &WebhookPlugin, s: pilot_webhook::Stats) -> WebhookStatus {
    let o = plugin.options();
    WebhookStatus {
        url: s.url,
        circuit: s.circuit.as_str().to_string(),
        queue_depth: s.queue_depth,
        queue_capacity: s.queue_capacity,
        queued: s.queued,
        delivered: s.delivered,
        failed: s.failed,
        retries: s.retries,
        dropped: s.dropped,
        circuit_skips: s.circuit_skips,
        last_error: s.last_error,
        last_error_at: s.last_error_at.map(|t| t.to_string()),
        // Header values are masked; auth comes from files whose content is never shown.
        settings: s.settings.unwrap_or_default(),
        signing: s.signing,
        disabled: s.disabled,
        disabled_at: s.disabled_at.map(|t| t.to_string()),
        filtered: s.filtered,
        in_flight: s.in_flight,
        dropped_queue_full: s.dropped_queue_full,
        rate_wait_ms: u64::try_from(s.rate_wait.as_millis()).unwrap_or(u64::MAX),
        recovered: s.recovered,
        task_failures: s.task_failures,
        failure: s.failure,
        options: WebhookOptionsInfo {
            queue_size: o.queue_size as u64,
            timeout: pilot_core::duration::format(o.timeout),
            max_attempts: o.max_attempts,
            backoff: pilot_core::duration::format(o.backoff),
            circuit_threshold: o.circuit_threshold,
            circuit_cooldown: pilot_core::duration::format(o.circuit_cooldown),
        },
        accounting: Some(s.accounting),
        spool: s.spool.map(|sp| SpoolStatus {
            path: sp.path,
            depth: sp.depth,
            bytes: sp.bytes,
            max_bytes: sp.max_bytes,
            dropped_full: sp.dropped_full,
            expired: sp.expired,
            write_error: sp.write_error,
        }),
        dead_letters: s.dead_letters.map(shelf_status),
        retained: s.retained.map(shelf_status),
        replay: ReplayStatus {
            pending: s.replay.pending,
            delivered: s.replay.delivered,
            failed: s.replay.failed,
            filtered: s.replay.filtered,
        },
        archive_write_errors: s.archive_write_errors,
    }
}

fn shelf_status(s: pilot_webhook::ShelfInfo) -> ArchiveStatus {
    ArchiveStatus {
        count: s.count,
        bytes: s.bytes,
        max_bytes: s.max_bytes,
        retention: pilot_core::duration::format(s.retention),
        evicted_size: s.evicted_size,
        evicted_age: s.evicted_age,
    }
}
