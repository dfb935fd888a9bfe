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
use pilot_webhook::WebhookPlugin;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Args;
use crate::pidfile::PidFile;
use crate::secrets::SecretKeeper;
use crate::settings::Settings;
use crate::state::Daemon;

/// The bus and the webhook plugin, idle: the caller hands it the signing secrets, then its
/// webhook (`configure`), so not even a spooled event recovered from an earlier run goes out
/// unsigned. An existing durable spool is opened before the bus, so the bus starts after the
/// last event id it ever spooled and ids never repeat; a new spool is created on the first
/// durable configure. A spool that cannot be opened (corrupt, locked) stops the start.
fn start_webhook(settings: &Settings) -> anyhow::Result<(Bus, WebhookPlugin)> {
    let spool_path = settings.home.spool_file();
    let spool = pilot_webhook::open_existing_spool(&spool_path)?;
    let bus = match &spool {
        Some(s) => Bus::starting_after(settings.node_id, s.last_event_id()),
        None => Bus::new(settings.node_id),
    };
    let mut options = settings.webhook_options.clone();
    options.spool_path = Some(spool_path);
    options.spool = spool;
    let webhook = WebhookPlugin::start_with(bus.clone(), None, options)?;
    Ok((bus, webhook))
}

/// Runs the daemon until it is asked to stop. Errors are start-up failures.
pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    let pid_file = PidFile::acquire(&settings.home.pid_file())?;
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

    let (bus, webhook) = match start_webhook(&settings) {
        Ok((bus, webhook)) => (bus, Arc::new(webhook)),
        Err(e) => {
            let _ = std::fs::remove_file(&settings.socket);
            pid_file.remove();
            return Err(e);
        }
    };
    let target = settings
        .webhook
        .clone()
        .map(|url| (url, settings.webhook_settings.clone()));
    if target.is_some() {
        crate::server::log_pattern_warnings(&settings.webhook_settings);
    }
    let secrets = SecretKeeper::new(settings.secrets, webhook.clone());
    // Settings that cannot work (an unreadable auth file) or a durable spool that cannot be
    // created stop the start.
    if let Err(e) = webhook.configure(target) {
        webhook.shutdown().await;
        let _ = std::fs::remove_file(&settings.socket);
        pid_file.remove();
        return Err(e.into());
    }
    let daemon = Arc::new(Daemon::new(
        bus.clone(),
        webhook.clone(),
        secrets.clone(),
        settings.socket.clone(),
    ));
    tokio::spawn(secrets.run(daemon.shutdown.clone()));

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
        args.handshake_timeout,
        stop_connections.clone(),
        tracker.clone(),
    ));
    let metrics_addr = metrics_server.as_ref().map(MetricsServer::local_addr);
    if let Some(server) = metrics_server {
        let source = daemon.clone();
        let metrics = Metrics::new(move || crate::metrics::snapshot(&source));
        server.spawn(metrics, stop_connections.clone(), &tracker);
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
    webhook.shutdown().await;

    stop_connections.cancel();
    tracker.close();
    let _ = server.await;
    // Handlers finish their last write; a client that stopped reading cannot hold us up.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tracker.wait()).await;
    let stats = webhook.stats();
    let a = &stats.accounting;
    // The whole accounting and the raw counters it comes from, so a shutdown's books can be
    // checked after the process is gone.
    tracing::info!(
        emitted = a.emitted,
        delivered = a.delivered,
        failed = a.failed,
        dropped = a.dropped,
        skipped = a.skipped,
        filtered = a.filtered,
        pending = a.pending,
        balanced = a.balanced,
        queued = stats.queued,
        recovered = stats.recovered,
        dropped_queue_full = stats.dropped_queue_full,
        circuit_skips = stats.circuit_skips,
        queue_depth = stats.queue_depth,
        in_flight = stats.in_flight,
        "pilot-daemon stopped"
    );
    let _ = std::fs::remove_file(&settings.socket);
    drop(socket_lock);
    pid_file.remove();
    Ok(())
}
