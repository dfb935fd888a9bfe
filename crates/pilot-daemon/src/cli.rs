//! The daemon's command line: the same flags as `pilotctl daemon start`, including the webhook
//! settings that override config `webhook_settings` for this run.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use pilot_flags::duration;
pub use pilot_flags::SettingsArgs;

/// Checks a log level with pilot's one check, keeping it as given.
fn log_level(s: &str) -> Result<String, String> {
    pilot_core::log_level::check(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// pilot-daemon: hosts the node's event bus and delivers its events to a webhook.
#[derive(Debug, Parser)]
#[command(name = "pilot-daemon", version, about)]
pub struct Args {
    /// Deliver events to this URL (overrides config `webhook`; not persisted).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Control socket path (else $PILOT_SOCKET, else config `socket`, else <home>/pilot.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Node id stamped on every event (else config `node_id`, else 0).
    #[arg(long, value_name = "N")]
    pub node_id: Option<u32>,
    /// Log level: error, warn, info, debug, trace, off, or directives that each name a level
    /// (else RUST_LOG, else config `log_level`, else info).
    #[arg(long, value_name = "LEVEL", value_parser = log_level)]
    pub log_level: Option<String>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Webhook queue capacity in events (default 1024).
    #[arg(long, value_name = "N")]
    pub queue_size: Option<usize>,
    /// Timeout of one webhook request (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub webhook_timeout: Option<Duration>,
    /// Attempts per event (default 3).
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// First retry delay, doubled per retry (default 1s).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub backoff: Option<Duration>,
    /// Consecutive failed events that open the circuit (default 5).
    #[arg(long, value_name = "N")]
    pub circuit_threshold: Option<u32>,
    /// How long the circuit stays open (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub circuit_cooldown: Option<Duration>,
    /// Webhook settings for this run (each given one overrides config `webhook_settings`).
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Serve Prometheus metrics on http://IP:PORT/metrics (else config `metrics_addr`; "" for off).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_addr: Option<String>,
    /// How long a connecting client may take to say hello.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5s", hide = true)]
    pub handshake_timeout: Duration,
    /// Close a control connection that sends nothing for this long after its hello (event
    /// streams are not idle).
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "1h")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
