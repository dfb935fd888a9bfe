//! The daemon's command line: the same flags as `pilotctl daemon start`, including the webhook
//! settings that override config `webhook_settings` for this run.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

fn duration(s: &str) -> Result<Duration, String> {
    pilot_core::duration::parse(s).map_err(|e| e.to_string())
}

/// Checks a log level with pilot's one check, keeping it as given.
fn log_level(s: &str) -> Result<String, String> {
    pilot_core::log_level::check(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// Parses a size flag (`256MiB`) with the one parser pilot uses everywhere.
fn size(s: &str) -> Result<u64, String> {
    pilot_core::size::parse(s).map_err(|e| e.to_string())
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
}

/// The per-webhook settings as flags (see `pilotctl set-webhook --help`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SettingsArgs {
    /// Deliver only events matching these patterns (comma-separated and/or repeated).
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub events: Vec<String>,
    /// Never deliver events matching these patterns.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Spool events on disk until a 2xx (at-least-once).
    #[arg(long)]
    pub durable: bool,
    /// Durable mode: the spool's size limit (default 256MiB).
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_spool_bytes: Option<u64>,
    /// Durable mode: drop (and count) events older than this (default 24h).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub discard_after: Option<Duration>,
    /// Durable mode: the longest wait between retries.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub max_backoff: Option<Duration>,
    /// An extra request header `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Send `Authorization: Bearer <token>` with the token in this file.
    #[arg(long, value_name = "PATH", conflicts_with = "basic_auth_file")]
    pub bearer_token_file: Option<PathBuf>,
    /// Send `Authorization: Basic ...` with `user:password` from this file.
    #[arg(long, value_name = "PATH")]
    pub basic_auth_file: Option<PathBuf>,
    /// Accept any TLS certificate (testing only).
    #[arg(long)]
    pub insecure_tls: bool,
    /// Refuse loopback and private addresses for this webhook (SSRF policy).
    #[arg(long)]
    pub deny_private: bool,
    /// Send up to N events per request as {"events":[...]}.
    #[arg(long, value_name = "N")]
    pub batch_max: Option<usize>,
    /// How long a batch may wait to fill up.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub batch_wait: Option<Duration>,
    /// Requests in flight at once.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
