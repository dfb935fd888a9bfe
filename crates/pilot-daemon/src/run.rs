//! The daemon's life: claim the home, bind the metrics endpoint (if asked), start the bus and
//! the webhook plugin (with its settings and signing secrets), serve the socket and the
//! metrics, and shut down in order.
//!
//! Shutdown order (signal or IPC request): publish `daemon.shutting_down`, let the webhook
//! plugin drain (bounded; the metrics are still served meanwhile), close client connections
//! and the metrics endpoint, remove the socket and the pid file.

use std::sync::Arc;

use anyhow::Context;
use pilot_core::Bus;
use pilot_metrics::{Metrics, MetricsServer};
use pilot_webhook::Spool;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Args;
use crate::endpoints::Endpoints;
use crate::pidfile::PidFile;
use crate::settings::Settings;
use crate::state::Daemon;

/// Each named endpoint's existing spool, opened before the bus started.
type Spools = Vec<(String, Option<Arc<Spool>>)>;

/// The bus and the endpoints, idle: each endpoint's signing secrets are applied before its
/// webhook is configured, so not even a spooled event recovered from an earlier run goes out
/// unsigned. Every existing durable spool (the default endpoint's and each named one's) is
/// opened before the bus, so the bus starts after the last event id any of them ever held and
/// ids never repeat; a new spool is created on an endpoint's first durable configure. A spool
/// that cannot be opened (corrupt, locked) stops the start.
fn start_endpoints(
    settings: &Settings,
    stop: CancellationToken,
) -> anyhow::Result<(Bus, Arc<Endpoints>, Spools)> {
    let home = &settings.home;
    let default_spool = pilot_webhook::open_existing_spool(&home.spool_file())?;
    let mut named = Vec::new();
    for name in settings.endpoints.keys() {
        let path = home.endpoint_spool_file(name);
        let spool = pilot_webhook::open_existing_spool(&path)
            .with_context(|| format!("webhook {name:?}"))?;
        named.push((name.clone(), spool));
    }
    let last = default_spool
        .iter()
        .chain(named.iter().filter_map(|(_, s)| s.as_ref()))
        .map(|s| s.last_event_id())
        .max();
    let bus = match last {
        Some(last) => Bus::starting_after(settings.node_id, last),
        None => Bus::new(settings.node_id),
    };
    let archive_path = home.archive_file();
    let archive = pilot_webhook::Archive::open(&archive_path)
        .with_context(|| format!("dead-letter archive {}", archive_path.display()))?;
    let mut options = settings.webhook_options.clone();
    options.archive = Some(Arc::new(archive));
    let endpoints = Endpoints::new(
        bus.clone(),
        home.clone(),
        options,
        settings.max_webhooks,
        stop,
        default_spool,
    )?;
    Ok((bus, Arc::new(endpoints), named))
}

/// Configures the default endpoint (flags over config) and every named one from config.json.
fn configure_endpoints(
    settings: &Settings,
    endpoints: &Endpoints,
    spools: Spools,
) -> anyhow::Result<()> {
    let target = settings
        .webhook
        .clone()
        .map(|url| (url, settings.webhook_settings.clone()));
    if let Some((_, settings)) = &target {
        crate::server::log_pattern_warnings(settings);
    }
    endpoints.default_endpoint().plugin.configure(target)?;
    for (name, spool) in spools {
        let Some(entry) = settings.endpoints.get(&name) else {
            continue;
        };
        let url = pilot_webhook::validate_url(&entry.url)
            .with_context(|| format!("config key \"webhooks\": webhook {name:?}"))?;
        crate::server::log_pattern_warnings(&entry.settings);
        endpoints.restore(&name, url, entry.settings.clone(), spool)?;
    }
    Ok(())
}

/// Runs the daemon until it is asked to stop. Errors are start-up failures.
pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    let pid_file = PidFile::acquire(&settings.home.pid_file())?;
    let fd_limit = crate::conns::raise_fd_limit();
    // Bound before anything else starts, so a busy port fails the start before the socket
    // answers (and `pilotctl daemon start` reports the error).
    let metrics_server = match settings.metrics_addr {
        Some(addr) => match MetricsServer::bind(addr).await {
            Ok(server) => Some(server),
            Err(e) => {
                pid_file.remove();
                return Err(e.into());
            }
        },
        None => None,
    };
    let (listener, socket_lock) = match crate::socket::claim(&settings.socket).await {
        Ok(claimed) => claimed,
        Err(e) => {
            pid_file.remove();
            return Err(e.into());
        }
    };
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // Caught and never read: past a file-size limit (RLIMIT_FSIZE) a write then fails with
    // EFBIG, which the spool reports and retries like a full disk, instead of killing us.
    let _sigxfsz = signal(SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw()))
        .context("installing the SIGXFSZ handler")?;

    let keepers_stop = CancellationToken::new();
    let (bus, endpoints, spools) = match start_endpoints(&settings, keepers_stop.clone()) {
        Ok(started) => started,
        Err(e) => {
            let _ = std::fs::remove_file(&settings.socket);
            pid_file.remove();
            return Err(e);
        }
    };
    // Settings that cannot work (an unreadable auth file) or a durable spool that cannot be
    // created stop the start.
    if let Err(e) = configure_endpoints(&settings, &endpoints, spools) {
        endpoints.shutdown().await;
        keepers_stop.cancel();
        let _ = std::fs::remove_file(&settings.socket);
        pid_file.remove();
        return Err(e);
    }
    let daemon = Arc::new(Daemon::new(
        bus.clone(),
        endpoints.clone(),
        settings.socket.clone(),
    ));

    // Published before the socket is served, so it is always the first event: a client that
    // connects the moment the socket exists cannot get in ahead of it.
    bus.publish(
        "daemon.started",
        pilot_core::event::data_from_value(&serde_json::json!({
            "pid": daemon.pid,
            "version": pilot_core::VERSION,
            "socket": settings.socket.display().to_string(),
        }))
        .ok(),
    );

    let stop_connections = CancellationToken::new();
    let tracker = TaskTracker::new();
    let server = tokio::spawn(crate::server::serve(
        listener,
        daemon.clone(),
        crate::server::Timeouts {
            handshake: args.handshake_timeout,
            idle: args.idle_timeout,
        },
        stop_connections.clone(),
        tracker.clone(),
    ));
    let metrics_addr = metrics_server.as_ref().map(MetricsServer::local_addr);
    if let Some(server) = metrics_server {
        let source = daemon.clone();
        let metrics = Metrics::new(move || crate::metrics::snapshot(&source));
        server.spawn(metrics, stop_connections.clone(), &tracker);
    }

    if let Some(go_file) = &settings.go_webhook_url {
        go_file.log();
    }
    tracing::info!(
        pid = daemon.pid,
        socket = %settings.socket.display(),
        node_id = settings.node_id,
        webhook = settings
            .webhook
            .as_ref()
            .map(pilot_webhook::redact_url)
            .unwrap_or_default(),
        durable = settings.webhook_settings.durable,
        webhooks = endpoints.all().len(),
        fd_limit = fd_limit.unwrap_or(0),
        metrics = metrics_addr.map(|a| format!("http://{a}/metrics")).unwrap_or_default(),
        "pilot-daemon {} ready",
        pilot_core::VERSION
    );
    tokio::select! {
        _ = sigterm.recv() => daemon.request_shutdown("SIGTERM"),
        _ = sigint.recv() => daemon.request_shutdown("SIGINT"),
        _ = daemon.shutdown.cancelled() => {}
    }
    let reason = daemon.shutdown_reason();
    tracing::info!(%reason, "shutting down");

    daemon.mark_stopping();
    bus.publish(
        "daemon.shutting_down",
        pilot_core::event::data_from_value(&serde_json::json!({
            "uptime_seconds": daemon.uptime_secs(),
            "reason": reason,
        }))
        .ok(),
    );
    endpoints.shutdown().await;
    keepers_stop.cancel();

    stop_connections.cancel();
    tracker.close();
    let _ = server.await;
    // Handlers finish their last write; a client that stopped reading cannot hold us up.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tracker.wait()).await;
    let info = daemon.info();
    let a = &info.totals;
    let sum = |f: fn(&pilot_ipc::protocol::WebhookStatus) -> u64| {
        info.webhooks.iter().map(|w| f(&w.status)).sum::<u64>()
    };
    // The whole accounting and the raw counters it comes from (every endpoint added up), so a
    // shutdown's books can be checked after the process is gone.
    tracing::info!(
        emitted = a.emitted,
        delivered = a.delivered,
        failed = a.failed,
        dropped = a.dropped,
        skipped = a.skipped,
        filtered = a.filtered,
        pending = a.pending,
        balanced = a.balanced,
        webhooks = info.webhooks.len(),
        queued = sum(|w| w.queued),
        recovered = sum(|w| w.recovered),
        dropped_queue_full = sum(|w| w.dropped_queue_full),
        circuit_skips = sum(|w| w.circuit_skips),
        queue_depth = sum(|w| w.queue_depth),
        in_flight = sum(|w| w.in_flight),
        "pilot-daemon stopped"
    );
    let _ = std::fs::remove_file(&settings.socket);
    drop(socket_lock);
    pid_file.remove();
    Ok(())
}
