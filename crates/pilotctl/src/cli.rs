//! The command line: every command, flag and argument of `pilotctl`, as clap definitions.
//!
//! Parsing only; what each command does is in `commands/`. `docs/cli.md` documents the same
//! surface for users.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pilot_core::catalog::Category;
use pilot_core::Severity;
use pilot_flags::duration;
pub use pilot_flags::{ClearArgs, RunArgs, SettingsArgs};

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
    /// Persist a webhook (URL, settings, secret) and apply it to the running daemon.
    SetWebhook(SetWebhookArgs),
    /// Remove the webhook URL and settings from config.json and from the running daemon.
    ClearWebhook,
    /// Signing secrets, the delivery log, test and redeliver.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Show everything the running daemon knows of itself.
    Info,
    /// Publish an event (or a file of events) onto the daemon's bus.
    Emit(EmitArgs),
    /// Stream bus events as JSON lines (or `events catalog`: list the known events).
    Events(EventsArgs),
    /// Run a local webhook receiver that prints each delivery.
    Listen(ListenArgs),
    /// Show config.json, or edit it (--set, --unset) with the checks set-webhook makes.
    Config(ConfigArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the pilotctl(1) man page, or write every page to a directory.
    Man {
        /// Write pilotctl.1 and one page per subcommand here instead of printing pilotctl.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Shells `pilotctl completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Set KEY to VALUE (repeatable). VALUE is JSON when it parses as JSON (5, true,
    /// {"a":1}, "quoted"), else a string.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
    pub set: Vec<(String, String)>,
    /// Remove KEY (repeatable).
    #[arg(long = "unset", value_name = "KEY")]
    pub unset: Vec<String>,
}

/// Parses `KEY=VALUE` (split at the first `=`; the key must not be empty).
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Start pilot-daemon in the background (or attached with --foreground).
    Start(Box<StartArgs>),
    /// Ask the daemon to shut down and wait until it has.
    Stop,
    /// Tell whether the daemon is running.
    Status {
        /// Print nothing; exit 0 when the daemon is running, 1 when not.
        #[arg(long)]
        check: bool,
    },
    /// Write a systemd user unit that runs pilot-daemon (or print it with --print).
    InstallService(InstallServiceArgs),
}

#[derive(Debug, Args)]
pub struct InstallServiceArgs {
    /// Print the unit instead of writing it.
    #[arg(long)]
    pub print: bool,
    /// Replace an existing unit that differs from this one.
    #[arg(long)]
    pub force: bool,
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
    /// The flags pilot-daemon takes, passed on to it.
    #[command(flatten)]
    pub run: RunArgs,
    /// Daemon log line format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Run attached to this terminal instead of in the background.
    #[arg(long)]
    pub foreground: bool,
}

#[derive(Debug, Args)]
pub struct SetWebhookArgs {
    /// http(s) URL that receives the events.
    pub url: String,
    /// The webhook's settings (the persisted ones are replaced as a whole).
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// The signing secret (the secret file is changed only when one of these is given).
    #[command(flatten)]
    pub secret: SecretArgs,
}

/// How `set-webhook` sets the signing secret (at most one).
#[derive(Debug, Args, Default, Clone, PartialEq, Eq)]
#[group(multiple = false)]
pub struct SecretArgs {
    /// Sign requests with this secret (`whsec_<base64>`, or any other text used as is).
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<String>,
    /// Sign requests with the secret in this file (first line).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// Generate a new secret (`whsec_` + 32 random bytes) and print it once.
    #[arg(long)]
    pub generate_secret: bool,
    /// Remove the secret: requests go unsigned.
    #[arg(long)]
    pub no_secret: bool,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add a named webhook (persisted, and applied to the running daemon).
    Add(AddArgs),
    /// List every webhook with its state and counters.
    List,
    /// Show one webhook: its settings, state and counters.
    Show(NameArg),
    /// Change only the given settings of a webhook (`--no-*` flags remove one).
    Update(UpdateArgs),
    /// Remove a webhook (a durable one with undelivered events needs --force).
    Remove(RemoveArgs),
    /// Stop sending to a webhook until it is resumed (durable: events keep spooling).
    Pause(NameArg),
    /// Send to a paused or disabled webhook again.
    Resume(NameArg),
    /// Show or rotate a webhook's signing secret.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// List a webhook's recent delivery attempts, newest last.
    Deliveries(DeliveriesArgs),
    /// Send a signed `webhook.test` event now and print how it went.
    Test(WebhookName),
    /// Print what a template makes of an event (headers and body), without a daemon or a
    /// receiver.
    Render(RenderArgs),
    /// List the events webhooks gave up on (`purge` removes them).
    DeadLetters(DeadLettersArgs),
    /// Send dead letters and retained events again, through the webhook's pipeline.
    Replay(ReplayArgs),
    /// Send a past event again (while its payload is in the delivery log).
    Redeliver {
        /// The event's id (see `pilotctl webhook deliveries`).
        event_id: u64,
        #[command(flatten)]
        webhook: WebhookName,
    },
}

/// `--name NAME`: which webhook a per-webhook command acts on.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct WebhookName {
    /// The webhook (see `pilotctl webhook list`).
    #[arg(long = "name", value_name = "NAME", default_value = pilot_core::endpoint::DEFAULT)]
    pub name: String,
}

/// A webhook's name, as the first argument.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct NameArg {
    /// The webhook's name (`default` is the one `set-webhook` sets).
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Its name: 1 to 63 of a-z, 0-9, `_`, `-`, starting with a letter or digit.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// http(s) URL that receives the events.
    #[arg(value_name = "URL")]
    pub url: String,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// The signing secret (its own, in `<home>/webhooks/NAME/secret.json`).
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The webhook's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// A new URL.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub clear: ClearArgs,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The webhook's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Remove it even if it still holds undelivered events (they are discarded).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Print the current secret and any still valid in a rotation's grace period.
    Show(WebhookName),
    /// Generate a new secret; the old ones stay valid for the grace period.
    Rotate {
        /// How long the previous secret keeps signing requests.
        #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "24h")]
        grace: Duration,
        #[command(flatten)]
        webhook: WebhookName,
    },
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    pub webhook: WebhookName,
    /// Only failed attempts.
    #[arg(long)]
    pub failed: bool,
    /// How many (the newest; 0 for every one kept, up to 1000).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

/// Which archived events a command selects.
#[derive(Debug, Args, Clone, Default)]
pub struct SelectArgs {
    /// Events at or after this time: RFC 3339 (`2026-12-05T10:00:00Z`) or a duration ago
    /// (`2h`).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Events before this time (same forms as --since).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Only events whose name matches one of these patterns (`handshake.*`; repeat or
    /// separate with commas).
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub events: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub action: Option<DeadLettersAction>,
    #[command(flatten)]
    pub filter: DeadLetterFilter,
}

/// The dead letters a list or a purge selects.
#[derive(Debug, Args, Clone, Default)]
pub struct DeadLetterFilter {
    /// Only this webhook's (default: every webhook's, removed ones included).
    #[arg(long = "name", value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Only those given up for this reason: failed, circuit_open, queue_full, paused,
    /// stopped, aborted, removed, expired, spool_full, replay_failed.
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,
    /// At most this many, oldest first (a list shows 100 unless told).
    #[arg(long, value_name = "K")]
    pub limit: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersAction {
    /// Remove the selected dead letters.
    Purge(DeadLetterFilter),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The webhook whose dead letters and retained events are replayed.
    #[arg(long = "name", value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Send them to this webhook instead, signed with its secret.
    #[arg(long, value_name = "NAME")]
    pub to: Option<String>,
    /// Only dead letters (not retained deliveries).
    #[arg(long)]
    pub dead_letters_only: bool,
    /// Say what would be replayed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until every replayed event is settled (a progress bar on a terminal); exit
    /// non-zero if any failed again.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The template: a preset (slack, discord, teams, pagerduty, ntfy) or a template file.
    #[arg(long, value_name = "NAME|FILE")]
    pub template: String,
    /// A value the template sees as `vars.KEY` (repeatable).
    #[arg(long = "template-var", value_name = "KEY=VALUE", value_parser = pilot_flags::template_var)]
    pub template_vars: Vec<(String, String)>,
    /// Event name: lowercase dotted words, like `handshake.received`.
    #[arg(value_name = "EVENT")]
    pub event: String,
    /// Event data: a JSON object, or `-` to read it from stdin.
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// The event's severity (default: the catalog's, info outside it).
    #[arg(long, value_name = "LEVEL", value_parser = severity)]
    pub severity: Option<Severity>,
    /// The event's id (default 1).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub event_id: u64,
    /// The node id stamped on the event (default 0).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub node_id: u32,
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
    /// The event's severity: debug, info, notice, warning or critical (default: the catalog's,
    /// info outside it). With --file, for the lines that give no "severity".
    #[arg(long, value_name = "LEVEL", value_parser = severity)]
    pub severity: Option<Severity>,
}

/// Parses `--severity` with the core's own names.
fn severity(s: &str) -> Result<Severity, String> {
    s.parse()
        .map_err(|e: pilot_core::severity::UnknownSeverity| e.to_string())
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EventsArgs {
    /// `catalog`; without it, stream the bus's events.
    #[command(subcommand)]
    pub command: Option<EventsCommand>,
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

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List the known events: name, category, data fields with their JSON types.
    Catalog(CatalogArgs),
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// Only this category: node, connection, tunnel, trust, data, pubsub, security, policy,
    /// plugin, webhook.
    #[arg(long, value_name = "CATEGORY", value_parser = category)]
    pub category: Option<Category>,
    /// Print the catalog section of docs/events.md (Markdown).
    #[arg(long)]
    pub markdown: bool,
}

/// Parses `--category` with the catalog's own names.
fn category(s: &str) -> Result<Category, String> {
    s.parse()
        .map_err(|e: pilot_core::catalog::UnknownCategory| e.to_string())
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
    /// Verify each delivery's signature with this secret; answer 401 when it does not match.
    #[arg(long, value_name = "SECRET", conflicts_with = "secret_file")]
    pub secret: Option<String>,
    /// Like --secret, with the secret in this file (first line).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
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
        assert_eq!(
            a.run.webhook.as_deref(),
            Some("http://localhost:8080/events")
        );
        assert_eq!(a.run.node_id, Some(5));
        assert_eq!(a.run.log_level.as_deref(), Some("debug"));
        assert_eq!(a.log_format, Some(LogFormat::Json));
        assert!(a.foreground);
        assert_eq!(a.run.queue_size, Some(16));
        assert_eq!(a.run.webhook_timeout, Some(Duration::from_millis(500)));
        assert_eq!(a.run.max_attempts, Some(2));
        assert_eq!(a.run.backoff, Some(Duration::from_millis(100)));
        assert_eq!(a.run.circuit_threshold, Some(3));
        assert_eq!(a.run.circuit_cooldown, Some(Duration::from_secs(2)));
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
        assert_eq!(e.severity, None);
        let cli = parse(&["emit", "a.b", "--severity", "Warning"]).unwrap();
        let Command::Emit(e) = cli.command else {
            panic!()
        };
        assert_eq!(e.severity, Some(Severity::Warning));
        let err = parse(&["emit", "a.b", "--severity", "loud"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("one of: debug, info, notice, warning, critical"),
            "{err}"
        );
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
        assert!(e.command.is_none());
        assert_eq!(e.count, Some(3));
        assert_eq!(e.timeout, Some(Duration::from_secs(2)));
        let Command::Listen(l) = parse(&["listen"]).unwrap().command else {
            panic!()
        };
        assert_eq!(l.addr, "127.0.0.1:8080");
        assert_eq!(l.path, "/events");
        assert_eq!(l.count, None);
    }

    #[test]
    fn events_catalog_is_a_subcommand() {
        let Command::Events(e) = parse(&["events", "catalog", "--category", "trust"])
            .unwrap()
            .command
        else {
            panic!()
        };
        let Some(EventsCommand::Catalog(c)) = e.command else {
            panic!()
        };
        assert_eq!(c.category, Some(Category::Trust));
        assert!(!c.markdown);
        assert!(parse(&["events", "catalog", "--category", "nope"]).is_err());
        assert!(parse(&["events", "--count", "1", "catalog"]).is_err());
        assert!(parse(&["events", "catalog", "--count", "1"]).is_err());
    }

    #[test]
    fn set_webhook_takes_settings_and_one_secret_flag() {
        let Command::SetWebhook(a) = parse(&[
            "set-webhook",
            "http://localhost:8080/events",
            "--events",
            "handshake.*,trust.*",
            "--events",
            "node.*",
            "--exclude",
            "data.datagram",
            "--durable",
            "--max-spool-bytes",
            "64MiB",
            "--discard-after",
            "1h",
            "--max-backoff",
            "5m",
            "--header",
            "X-A: 1",
            "--header",
            "X-B: 2",
            "--bearer-token-file",
            "/t",
            "--insecure-tls",
            "--batch-max",
            "10",
            "--batch-wait",
            "50ms",
            "--concurrency",
            "4",
            "--generate-secret",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        let s = &a.settings;
        assert_eq!(s.events, ["handshake.*", "trust.*", "node.*"]);
        assert_eq!(s.exclude, ["data.datagram"]);
        assert!(s.durable && s.insecure_tls);
        assert_eq!(s.max_spool_bytes, Some(64 << 20));
        assert_eq!(s.discard_after, Some(Duration::from_secs(3600)));
        assert_eq!(s.headers, ["X-A: 1", "X-B: 2"]);
        assert_eq!((s.batch_max, s.concurrency), (Some(10), Some(4)));
        assert!(a.secret.generate_secret);

        let url = "http://x/";
        assert!(parse(&["set-webhook", url, "--secret", "a", "--generate-secret"]).is_err());
        assert!(parse(&["set-webhook", url, "--secret-file", "f", "--no-secret"]).is_err());
        assert!(parse(&[
            "set-webhook",
            url,
            "--bearer-token-file",
            "a",
            "--basic-auth-file",
            "b"
        ])
        .is_err());
        assert!(parse(&["set-webhook", url, "--batch-max", "0"]).is_err());
        assert!(parse(&["set-webhook", url, "--max-spool-bytes", "lots"]).is_err());
    }

    #[test]
    fn daemon_start_takes_the_settings_flags() {
        let Command::Daemon(DaemonCommand::Start(a)) = parse(&[
            "daemon",
            "start",
            "--events",
            "a.*",
            "--durable",
            "--batch-max",
            "5",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(a.run.settings.events, ["a.*"]);
        assert!(a.run.settings.durable);
        assert_eq!(a.run.settings.batch_max, Some(5));
    }

    #[test]
    fn webhook_subcommands() {
        let c = |args: &[&str]| parse(args).unwrap().command;
        assert!(matches!(
            c(&["webhook", "secret", "show"]),
            Command::Webhook(WebhookCommand::Secret(SecretCommand::Show(_)))
        ));
        let Command::Webhook(WebhookCommand::Secret(SecretCommand::Rotate { grace, .. })) =
            c(&["webhook", "secret", "rotate"])
        else {
            panic!()
        };
        assert_eq!(grace, Duration::from_secs(86400));
        let Command::Webhook(WebhookCommand::Secret(SecretCommand::Rotate { grace, .. })) =
            c(&["webhook", "secret", "rotate", "--grace", "1s"])
        else {
            panic!()
        };
        assert_eq!(grace, Duration::from_secs(1));
        let Command::Webhook(WebhookCommand::Deliveries(d)) =
            c(&["webhook", "deliveries", "--failed", "--limit", "5"])
        else {
            panic!()
        };
        assert!(d.failed);
        assert_eq!(d.limit, 5);
        let Command::Webhook(WebhookCommand::Deliveries(d)) = c(&["webhook", "deliveries"]) else {
            panic!()
        };
        assert_eq!((d.failed, d.limit), (false, 20));
        assert!(matches!(
            c(&["webhook", "test"]),
            Command::Webhook(WebhookCommand::Test(_))
        ));
        assert!(matches!(
            c(&["webhook", "redeliver", "42"]),
            Command::Webhook(WebhookCommand::Redeliver { event_id: 42, .. })
        ));
        assert!(parse(&["webhook", "redeliver", "x"]).is_err());
        let Command::Listen(l) = c(&["listen", "--secret", "s"]) else {
            panic!()
        };
        assert_eq!(l.secret.as_deref(), Some("s"));
        assert!(parse(&["listen", "--secret", "s", "--secret-file", "f"]).is_err());
    }

    #[test]
    fn webhook_add_and_update_take_the_dead_letter_and_retention_flags() {
        let Command::Webhook(WebhookCommand::Add(a)) = parse(&[
            "webhook",
            "add",
            "siem",
            "http://x/",
            "--retain",
            "2h",
            "--dead-letter-max-bytes",
            "1MiB",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(a.settings.retain, Some(Duration::from_secs(7200)));
        assert_eq!(a.settings.dead_letter_max_bytes, Some(1 << 20));
        let Command::Webhook(WebhookCommand::Update(u)) = parse(&[
            "webhook",
            "update",
            "siem",
            "--retain-max-bytes",
            "2MiB",
            "--no-dead-letter-limits",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(u.settings.retain_max_bytes, Some(2 << 20));
        assert!(u.clear.no_dead_letter_limits && !u.clear.no_retain);
        assert!(parse(&["webhook", "update", "siem", "--no-retain", "--retain", "1h"]).is_err());
        assert!(parse(&["webhook", "add", "siem", "http://x/", "--retain", "0s"]).is_err());
    }

    #[test]
    fn sizes() {
        use pilot_flags::size;
        assert_eq!(size("1024"), Ok(1024));
        assert_eq!(size("256MiB"), Ok(256 << 20));
        assert_eq!(size("1 GiB"), Ok(1 << 30));
        assert_eq!(size("10MB"), Ok(10_000_000));
        assert!(size("1TiB").is_err());
        assert!(size("-1").is_err());
        assert!(size("99999999999999999999GiB").is_err());
    }
}
