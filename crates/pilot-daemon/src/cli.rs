//! The daemon's command line: the same flags as `pilotctl daemon start`, including the webhook
//! settings that override config `webhook_settings` for this run.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use pilot_flags::duration;
pub use pilot_flags::RunArgs;

/// pilot-daemon: hosts the node's event bus and delivers its events to a webhook.
#[derive(Debug, Parser)]
#[command(name = "pilot-daemon", version, about)]
pub struct Args {
    /// The flags `pilotctl daemon start` shares (and passes on).
    #[command(flatten)]
    pub run: RunArgs,
    /// Control socket path (else $PILOT_SOCKET, else config `socket`, else <home>/pilot.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
