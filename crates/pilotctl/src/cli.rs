//! The command line: every command, flag and argument of `pilotctl`, as clap definitions.
//!
//! Parsing only; what each command does is in `commands/`. `docs/cli.md` documents the same
//! surface for users.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Parses a duration flag (`500ms`, `5s`, `2m`) with the one parser pilot uses everywhere.
fn duration(s: &str) -> Result<Duration, String> {
    pilot_core::duration::parse(s).map_err(|e| e.to_string())
}

/// pilotctl: control the pilot daemon, its webhook and its event bus.
#[derive(Debug, Parser)]
#[command(name = "pilotctl", version, about, propagate_version = true)]
pub struct Cli {
    /// Print results as JSON: {"status":"ok","data":{...}} on stdout, errors as
    /// {"status":"error","code":"...","message":"..."} on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Control socket path (else $PILOT_SOCKET, else config `socket`, else <home>/pilot.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start, stop or inspect the daemon.
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Persist a webhook URL to config.json and apply it to the running daemon.
    SetWebhook {
        /// http(s) URL that receives one POST per event.
        url: String,
    },
    /// Remove the webhook URL from config.json and from the running daemon.
    ClearWebhook,
    /// Show everything the running daemon knows of itself.
    Info,
    /// Publish an event (or a file of events) onto the daemon's bus.
    Emit(EmitArgs),
    /// Stream bus events as JSON lines.
    Events(EventsArgs),
    /// Run a local webhook receiver that prints each delivery.
    Listen(ListenArgs),
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Start pilot-daemon in the background (or attached with --foreground).
    Start(StartArgs),
    /// Ask the daemon to shut down and wait until it has.
    Stop,
    /// Tell whether the daemon is running.
    Status {
        /// Print nothing; exit 0 when the daemon is running, 1 when not.
        #[arg(long)]
        check: bool,
    },
}

/// Log line formats of pilot-daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Debug, Args, Default)]
pub struct StartArgs {
    /// Deliver events to this URL (else config `webhook`); not written to config.json.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Node id stamped on every event (else config `node_id`, else 0).
    #[arg(long, value_name = "N")]
    pub node_id: Option<u32>,
    /// Daemon log level: error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Daemon log line format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Run attached to this terminal instead of in the background.
    #[arg(long)]
    pub foreground: bool,
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
}

#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Event name: lowercase dotted words, like `handshake.received`.
    #[arg(
        value_name = "EVENT",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub event: Option<String>,
    /// Event data: a JSON object, or `-` to read it from stdin.
    #[arg(long, value_name = "JSON", conflicts_with = "file")]
    pub data: Option<String>,
    /// Publish every line of this JSON-lines file (`-` for stdin): {"event":...,"data":{...}}.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Which events: `*` (all), `prefix.*`, or an exact name.
    #[arg(long, value_name = "PATTERN", default_value = "*")]
    pub filter: String,
    /// Exit after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit after this long (like 30s).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// URL path that receives deliveries.
    #[arg(long, value_name = "PATH", default_value = "/events")]
    pub path: String,
    /// Exit after this many deliveries.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pilotctl").chain(args.iter().copied()))
    }

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["daemon", "start", "--socket", "/s", "--json"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.socket.as_deref(), Some(std::path::Path::new("/s")));
        let cli = parse(&["--json", "--socket", "/t", "info"]).unwrap();
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Info));
    }

    #[test]
    fn daemon_start_takes_every_option() {
        let cli = parse(&[
            "daemon",
            "start",
            "--webhook",
            "http://localhost:8080/events",
            "--node-id",
            "5",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "--foreground",
            "--queue-size",
            "16",
            "--webhook-timeout",
            "500ms",
            "--max-attempts",
            "2",
            "--backoff",
            "100ms",
            "--circuit-threshold",
            "3",
            "--circuit-cooldown",
            "2s",
        ])
        .unwrap();
        let Command::Daemon(DaemonCommand::Start(a)) = cli.command else {
            panic!("not start");
        };
        assert_eq!(a.webhook.as_deref(), Some("http://localhost:8080/events"));
        assert_eq!(a.node_id, Some(5));
        assert_eq!(a.log_level.as_deref(), Some("debug"));
        assert_eq!(a.log_format, Some(LogFormat::Json));
        assert!(a.foreground);
        assert_eq!(a.queue_size, Some(16));
        assert_eq!(a.webhook_timeout, Some(Duration::from_millis(500)));
        assert_eq!(a.max_attempts, Some(2));
        assert_eq!(a.backoff, Some(Duration::from_millis(100)));
        assert_eq!(a.circuit_threshold, Some(3));
        assert_eq!(a.circuit_cooldown, Some(Duration::from_secs(2)));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["daemon", "start", "--backoff", "soon"]).is_err());
        assert!(parse(&["daemon", "start", "--node-id", "-1"]).is_err());
        assert!(parse(&["events", "--timeout", "x"]).is_err());
        assert!(parse(&["set-webhook"]).is_err());
        assert!(parse(&["nope"]).is_err());
    }

    #[test]
    fn status_check() {
        let cli = parse(&["daemon", "status", "--check"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Daemon(DaemonCommand::Status { check: true })
        ));
    }

    #[test]
    fn emit_needs_an_event_or_a_file_but_not_both() {
        let cli = parse(&["emit", "a.b", "--data", "{}"]).unwrap();
        let Command::Emit(e) = cli.command else {
            panic!()
        };
        assert_eq!(e.event.as_deref(), Some("a.b"));
        assert_eq!(e.data.as_deref(), Some("{}"));
        let cli = parse(&["emit", "--file", "-"]).unwrap();
        let Command::Emit(e) = cli.command else {
            panic!()
        };
        assert_eq!(e.file.as_deref(), Some(std::path::Path::new("-")));
        assert!(parse(&["emit"]).is_err());
        assert!(parse(&["emit", "a.b", "--file", "x"]).is_err());
        assert!(parse(&["emit", "--file", "x", "--data", "{}"]).is_err());
    }

    #[test]
    fn events_and_listen_defaults() {
        let Command::Events(e) = parse(&["events"]).unwrap().command else {
            panic!()
        };
        assert_eq!(e.filter, "*");
        assert_eq!(e.count, None);
        assert_eq!(e.timeout, None);
        let Command::Events(e) = parse(&[
            "events",
            "--filter",
            "a.*",
            "--count",
            "3",
            "--timeout",
            "2s",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(e.filter, "a.*");
        assert_eq!(e.count, Some(3));
        assert_eq!(e.timeout, Some(Duration::from_secs(2)));
        let Command::Listen(l) = parse(&["listen"]).unwrap().command else {
            panic!()
        };
        assert_eq!(l.addr, "127.0.0.1:8080");
        assert_eq!(l.path, "/events");
        assert_eq!(l.count, None);
    }
}
