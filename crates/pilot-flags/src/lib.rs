//! pilot-flags: the webhook settings flags, defined once with clap and shared by
//! `pilot-daemon` (settings for one run), `pilotctl set-webhook`, `daemon start`,
//! `webhook add` and `webhook update` — one help text, one validator per flag.
//!
//! [`SettingsArgs`] are the flags that set a value; [`ClearArgs`] the explicit `--no-*` flags
//! `webhook update` takes to remove one. [`SettingsArgs::apply`] puts the given flags over a
//! base (`set-webhook` starts from the defaults, `update` and the daemon from what is saved),
//! and [`SettingsArgs::to_args`] writes them back as `pilot-daemon` flags. [`RunArgs`] are the
//! flags of one daemon run (`pilot-daemon` and `pilotctl daemon start`, which passes them on).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use pilot_core::{Severity, WebhookSettings};

/// Parses a duration flag (`500ms`, `5s`, `2m`) with the one parser pilot uses everywhere.
pub fn duration(s: &str) -> Result<Duration, String> {
    pilot_core::duration::parse(s).map_err(|e| e.to_string())
}

/// Parses a duration flag that must not be zero.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err("must be longer than 0".into()),
        d => Ok(d),
    }
}

/// Checks a log level with pilot's one check, keeping it as given.
pub fn log_level(s: &str) -> Result<String, String> {
    pilot_core::log_level::check(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// Parses a rate limit (`10/s`, `600/m`).
pub fn rate_limit(s: &str) -> Result<pilot_core::rate::RateLimit, String> {
    s.parse()
        .map_err(|e: pilot_core::rate::RateLimitError| e.to_string())
}

/// Parses a severity (`debug`, `info`, `notice`, `warning`, `critical`).
pub fn severity(s: &str) -> Result<Severity, String> {
    s.parse()
        .map_err(|e: pilot_core::severity::UnknownSeverity| e.to_string())
}

/// Parses a size flag (`256MiB`) with the one parser pilot uses everywhere; at least 1 byte.
pub fn size(s: &str) -> Result<u64, String> {
    match pilot_core::size::parse(s).map_err(|e| e.to_string())? {
        0 => Err("must be at least 1 byte".into()),
        n => Ok(n),
    }
}

/// Parses a dead-letter or retention size flag (`64MiB`): at least
/// [`pilot_core::webhook_settings::MIN_ARCHIVE_BYTES`] (1KiB).
pub fn archive_size(s: &str) -> Result<u64, String> {
    use pilot_core::webhook_settings::MIN_ARCHIVE_BYTES;
    match pilot_core::size::parse(s).map_err(|e| e.to_string())? {
        n if n < MIN_ARCHIVE_BYTES => {
            Err(format!("must be at least 1KiB ({MIN_ARCHIVE_BYTES} bytes)"))
        }
        n => Ok(n),
    }
}

/// Parses a positive count (`--batch-max`, `--concurrency`).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `--template-var KEY=VALUE`.
pub fn template_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err("must look like KEY=VALUE".into()),
    }
}

/// A `--template` value as saved: a preset's name as given, a file path made absolute (a
/// value with a `/` or a `.` is a path).
pub fn template_spec(given: &str) -> String {
    if given.contains(['/', '.']) {
        absolute(Path::new(given)).display().to_string()
    } else {
        given.to_string()
    }
}

/// Checks a NATS subject template (`--subject`) with pilot's one check, keeping it as given.
pub fn subject(s: &str) -> Result<String, String> {
    s.parse::<pilot_core::subject::SubjectTemplate>()
        .map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// Checks a JetStream stream name (`--create-stream`).
pub fn stream_name(s: &str) -> Result<String, String> {
    pilot_core::subject::check_stream_name(s)?;
    Ok(s.to_string())
}

/// `path` made absolute against the current directory (the daemon does not share it).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The flags of one daemon run: `pilot-daemon`'s, and `pilotctl daemon start`'s, which
/// passes them on ([`RunArgs::to_args`]). Each overrides its config key for that run only.
#[derive(Debug, Args, Default, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Deliver events to this URL (else config `webhook`); not written to config.json.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Node id stamped on every event (else config `node_id`, else 0).
    #[arg(long, value_name = "N")]
    pub node_id: Option<u32>,
    /// Daemon log level: error, warn, info, debug, trace, off, or directives that each name a
    /// level (`pilot_webhook=debug,info`); else RUST_LOG, else config `log_level`, else info.
    #[arg(long, value_name = "LEVEL", value_parser = log_level)]
    pub log_level: Option<String>,
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
    /// Serve Prometheus metrics on http://IP:PORT/metrics (else config `metrics_addr`; "" for
    /// off).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_addr: Option<String>,
    /// The default webhook's settings for this run (each overrides config `webhook_settings`).
    #[command(flatten)]
    pub settings: SettingsArgs,
}

impl RunArgs {
    /// The same flags, for `pilot-daemon`'s command line.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        let mut push = |flag: &str, value: String| {
            out.push(flag.into());
            out.push(value.into());
        };
        let dur = |d: Duration| pilot_core::duration::format(d);
        if let Some(v) = &self.webhook {
            push("--webhook", v.clone());
        }
        if let Some(v) = self.node_id {
            push("--node-id", v.to_string());
        }
        if let Some(v) = &self.log_level {
            push("--log-level", v.clone());
        }
        if let Some(v) = self.queue_size {
            push("--queue-size", v.to_string());
        }
        if let Some(v) = self.webhook_timeout {
            push("--webhook-timeout", dur(v));
        }
        if let Some(v) = self.max_attempts {
            push("--max-attempts", v.to_string());
        }
        if let Some(v) = self.backoff {
            push("--backoff", dur(v));
        }
        if let Some(v) = self.circuit_threshold {
            push("--circuit-threshold", v.to_string());
        }
        if let Some(v) = self.circuit_cooldown {
            push("--circuit-cooldown", dur(v));
        }
        if let Some(v) = &self.metrics_addr {
            push("--metrics-addr", v.clone());
        }
        out.extend(self.settings.to_args());
        out
    }
}

/// The per-webhook settings as flags. A flag not given leaves its field as it is.
#[derive(Debug, Args, Default, Clone, PartialEq, Eq)]
pub struct SettingsArgs {
    /// Deliver only events matching these patterns (comma-separated and/or repeated):
    /// `*`, `prefix.*` or an exact name.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub events: Vec<String>,
    /// Never deliver events matching these patterns (comma-separated and/or repeated).
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Deliver only events of this severity or above: debug, info, notice, warning, critical.
    #[arg(long, value_name = "LEVEL", value_parser = severity)]
    pub min_severity: Option<Severity>,
    /// Spool events on disk until a 2xx: at-least-once delivery across outages and restarts.
    #[arg(long)]
    pub durable: bool,
    /// Durable mode: the spool's size limit (default 256MiB); past it the oldest are dropped.
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_spool_bytes: Option<u64>,
    /// Durable mode: drop (and count) events older than this (default 24h).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub discard_after: Option<Duration>,
    /// Durable mode: the longest wait between retries of one event.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub max_backoff: Option<Duration>,
    /// `256MiB`: keep at most this much of the events given up on (dead letters; default
    /// 64MiB, at least 1KiB), dropping the oldest.
    #[arg(long, value_name = "SIZE", value_parser = archive_size)]
    pub dead_letter_max_bytes: Option<u64>,
    /// `720h`: drop dead letters older than this (default 168h, 7 days).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub dead_letter_retention: Option<Duration>,
    /// `24h`: keep delivered events' payloads this long, for replay (off by default).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub retain: Option<Duration>,
    /// `1GiB`: with --retain, keep at most this much (default 64MiB, at least 1KiB).
    #[arg(long, value_name = "SIZE", value_parser = archive_size)]
    pub retain_max_bytes: Option<u64>,
    /// An extra request header `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Send `Authorization: Bearer <token>` with the token in this file.
    #[arg(long, value_name = "PATH", conflicts_with = "basic_auth_file")]
    pub bearer_token_file: Option<PathBuf>,
    /// Send `Authorization: Basic ...` with `user:password` from this file.
    #[arg(long, value_name = "PATH")]
    pub basic_auth_file: Option<PathBuf>,
    /// Accept any TLS certificate (testing only: anyone on the path can read and forge).
    #[arg(long)]
    pub insecure_tls: bool,
    /// Refuse loopback and private addresses for this webhook (SSRF policy).
    #[arg(long)]
    pub deny_private: bool,
    /// Send through this HTTP proxy (http://[user:password@]host:port; HTTPS through CONNECT),
    /// or `none` for no proxy; default: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY.
    #[arg(long, value_name = "URL|none")]
    pub proxy: Option<String>,
    /// With --proxy URL: `user:password` for the proxy from this file (never logged).
    #[arg(long, value_name = "PATH", requires = "proxy")]
    pub proxy_auth_file: Option<PathBuf>,
    /// Present this PEM certificate (chain) to receivers that ask for one (mutual TLS).
    #[arg(long, value_name = "PATH", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of --client-cert (the file must be owner-only, 0600).
    #[arg(long, value_name = "PATH", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Send up to N events per request as {"events":[...]}.
    #[arg(long, value_name = "N", value_parser = positive)]
    pub batch_max: Option<usize>,
    /// How long a batch may wait to fill up (default 100ms).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub batch_wait: Option<Duration>,
    /// Requests in flight at once (above 1, events may arrive out of order).
    #[arg(long, value_name = "N", value_parser = positive)]
    pub concurrency: Option<usize>,
    /// Send at most this often: N/s, N/m or N/h (like 10/s); sends are spaced, bursts wait
    /// in the queue (or the spool).
    #[arg(long, value_name = "N/s|N/m", value_parser = rate_limit)]
    pub rate_limit: Option<pilot_core::rate::RateLimit>,
    /// With --rate-limit: how many sends may go at once before the spacing starts (default 1).
    #[arg(long, value_name = "N", value_parser = positive)]
    pub rate_burst: Option<usize>,
    /// Disable the webhook once every attempt has failed for this long (off by default);
    /// `pilotctl webhook resume NAME` turns it back on.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub disable_after: Option<Duration>,
    /// Render each request's body from a template: a preset (slack, discord, teams,
    /// pagerduty, ntfy) or a template file (one event per request; see docs/templates.md).
    #[arg(long, value_name = "NAME|FILE", conflicts_with = "batch_max")]
    pub template: Option<String>,
    /// A value the template sees as `vars.KEY` (repeatable), e.g. `routing_key=...` for
    /// pagerduty; replaces the saved ones when given.
    #[arg(long = "template-var", value_name = "KEY=VALUE", value_parser = template_var)]
    pub template_vars: Vec<(String, String)>,
    /// NATS: the subject template, with {event}, {node_id}, {category} (default
    /// `pilot.{node_id}.{event}`).
    #[arg(long, value_name = "TEMPLATE", value_parser = subject)]
    pub subject: Option<String>,
    /// NATS: create a JetStream stream of this name for the subject's prefix when no stream
    /// takes it (otherwise pilot never changes the broker's configuration).
    #[arg(long, value_name = "NAME", value_parser = stream_name)]
    pub create_stream: Option<String>,
    /// NATS: authenticate with this `.creds` file (user JWT and NKey seed).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["nats_token_file", "nats_nkey_file", "nats_user_file"])]
    pub nats_creds: Option<PathBuf>,
    /// NATS: authenticate with the token in this file.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["nats_nkey_file", "nats_user_file"])]
    pub nats_token_file: Option<PathBuf>,
    /// NATS: authenticate with the NKey seed in this file.
    #[arg(long, value_name = "PATH", conflicts_with = "nats_user_file")]
    pub nats_nkey_file: Option<PathBuf>,
    /// NATS: authenticate with `user:password` from this file.
    #[arg(long, value_name = "PATH")]
    pub nats_user_file: Option<PathBuf>,
    /// NATS over TLS: trust the CA certificates (PEM) in this file.
    #[arg(long, value_name = "PATH")]
    pub nats_ca_file: Option<PathBuf>,
    /// NATS over TLS: present this client certificate (PEM; with --nats-key-file).
    #[arg(long, value_name = "PATH", requires = "nats_key_file")]
    pub nats_cert_file: Option<PathBuf>,
    /// NATS over TLS: the client certificate's private key (PEM; with --nats-cert-file).
    #[arg(long, value_name = "PATH", requires = "nats_cert_file")]
    pub nats_key_file: Option<PathBuf>,
}

/// Flags that remove a setting (`webhook update`). Each conflicts with the flag that sets it.
#[derive(Debug, Args, Default, Clone, PartialEq, Eq)]
pub struct ClearArgs {
    /// Remove the include filter: every event again.
    #[arg(long, conflicts_with = "events")]
    pub no_events: bool,
    /// Remove the exclude filter.
    #[arg(long, conflicts_with = "exclude")]
    pub no_exclude: bool,
    /// Every severity again.
    #[arg(long, conflicts_with = "min_severity")]
    pub no_min_severity: bool,
    /// Remove every extra header.
    #[arg(long, conflicts_with = "headers")]
    pub no_headers: bool,
    /// Remove the bearer or basic auth file.
    #[arg(long, conflicts_with_all = ["bearer_token_file", "basic_auth_file"])]
    pub no_auth: bool,
    /// Leave durable mode (the spooled events wait on disk until it is on again).
    #[arg(long, conflicts_with = "durable")]
    pub no_durable: bool,
    /// Check TLS certificates again.
    #[arg(long, conflicts_with = "insecure_tls")]
    pub no_insecure_tls: bool,
    /// Use the daemon's environment's proxy settings again.
    #[arg(long, conflicts_with = "proxy")]
    pub no_proxy: bool,
    /// Present no client certificate any more.
    #[arg(long, conflicts_with_all = ["client_cert", "client_key"])]
    pub no_client_cert: bool,
    /// Allow loopback and private addresses again (unless config `deny_private_networks`).
    #[arg(long, conflicts_with = "deny_private")]
    pub no_deny_private: bool,
    /// One event per request again (removes batch max and batch wait).
    #[arg(long, conflicts_with_all = ["batch_max", "batch_wait"])]
    pub no_batch: bool,
    /// One request in flight again.
    #[arg(long, conflicts_with = "concurrency")]
    pub no_concurrency: bool,
    /// No rate limit any more.
    #[arg(long, conflicts_with_all = ["rate_limit", "rate_burst"])]
    pub no_rate_limit: bool,
    /// Never disable the webhook for failing.
    #[arg(long, conflicts_with = "disable_after")]
    pub no_disable_after: bool,
    /// The default spool limits and retry cap again (max spool bytes, discard after, max
    /// backoff).
    #[arg(long, conflicts_with_all = ["max_spool_bytes", "discard_after", "max_backoff"])]
    pub no_spool_limits: bool,
    /// The default dead-letter limits again (64MiB, 168h).
    #[arg(long, conflicts_with_all = ["dead_letter_max_bytes", "dead_letter_retention"])]
    pub no_dead_letter_limits: bool,
    /// Stop keeping delivered events (removes --retain and --retain-max-bytes).
    #[arg(long, conflicts_with_all = ["retain", "retain_max_bytes"])]
    pub no_retain: bool,
    /// Send pilot's own JSON body again (removes the template and its variables).
    #[arg(long, conflicts_with_all = ["template", "template_vars"])]
    pub no_template: bool,
    /// NATS: the default subject template again.
    #[arg(long, conflicts_with = "subject")]
    pub no_subject: bool,
    /// NATS: never create a stream.
    #[arg(long, conflicts_with = "create_stream")]
    pub no_create_stream: bool,
    /// NATS: remove the credential file (creds, token, NKey or user file).
    #[arg(long, conflicts_with_all = ["nats_creds", "nats_token_file", "nats_nkey_file", "nats_user_file"])]
    pub no_nats_auth: bool,
    /// NATS: remove the CA file and the client certificate.
    #[arg(long, conflicts_with_all = ["nats_ca_file", "nats_cert_file", "nats_key_file"])]
    pub no_nats_tls: bool,
}

impl SettingsArgs {
    /// `base` with every flag given put over its field. An auth file flag replaces both auth
    /// fields (only one may be set); paths are made absolute; patterns are trimmed.
    pub fn apply(&self, mut base: WebhookSettings) -> WebhookSettings {
        let trimmed = |v: &[String]| v.iter().map(|p| p.trim().to_string()).collect();
        if !self.events.is_empty() {
            base.events = trimmed(&self.events);
        }
        if !self.exclude.is_empty() {
            base.exclude = trimmed(&self.exclude);
        }
        base.durable |= self.durable;
        base.insecure_tls |= self.insecure_tls;
        base.deny_private |= self.deny_private;
        if let Some(proxy) = &self.proxy {
            base.proxy = Some(proxy.trim().to_string());
            base.proxy_auth_file = self.proxy_auth_file.as_deref().map(absolute);
        }
        if self.client_cert.is_some() {
            base.client_cert = self.client_cert.as_deref().map(absolute);
            base.client_key = self.client_key.as_deref().map(absolute);
        }
        if !self.headers.is_empty() {
            base.headers = self.headers.clone();
        }
        if self.bearer_token_file.is_some() || self.basic_auth_file.is_some() {
            base.bearer_token_file = self.bearer_token_file.as_deref().map(absolute);
            base.basic_auth_file = self.basic_auth_file.as_deref().map(absolute);
        }
        base.max_spool_bytes = self.max_spool_bytes.or(base.max_spool_bytes);
        base.discard_after = self.discard_after.or(base.discard_after);
        base.max_backoff = self.max_backoff.or(base.max_backoff);
        base.dead_letter_max_bytes = self.dead_letter_max_bytes.or(base.dead_letter_max_bytes);
        base.dead_letter_retention = self.dead_letter_retention.or(base.dead_letter_retention);
        base.retain = self.retain.or(base.retain);
        base.retain_max_bytes = self.retain_max_bytes.or(base.retain_max_bytes);
        base.batch_max = self.batch_max.or(base.batch_max);
        base.batch_wait = self.batch_wait.or(base.batch_wait);
        base.concurrency = self.concurrency.or(base.concurrency);
        base.disable_after = self.disable_after.or(base.disable_after);
        base.rate_limit = self.rate_limit.or(base.rate_limit);
        base.rate_burst = self
            .rate_burst
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .or(base.rate_burst);
        base.min_severity = self.min_severity.or(base.min_severity);
        if let Some(t) = &self.template {
            base.template = Some(template_spec(t));
        }
        if !self.template_vars.is_empty() {
            base.template_vars = self.template_vars.iter().cloned().collect();
        }
        base.subject = self.subject.clone().or(base.subject);
        base.create_stream = self.create_stream.clone().or(base.create_stream);
        let abs = |p: &Option<PathBuf>| p.as_deref().map(absolute);
        if self.nats_creds.is_some()
            || self.nats_token_file.is_some()
            || self.nats_nkey_file.is_some()
            || self.nats_user_file.is_some()
        {
            base.nats_creds = abs(&self.nats_creds);
            base.nats_token_file = abs(&self.nats_token_file);
            base.nats_nkey_file = abs(&self.nats_nkey_file);
            base.nats_user_file = abs(&self.nats_user_file);
        }
        base.nats_ca_file = abs(&self.nats_ca_file).or(base.nats_ca_file);
        if self.nats_cert_file.is_some() || self.nats_key_file.is_some() {
            base.nats_cert_file = abs(&self.nats_cert_file);
            base.nats_key_file = abs(&self.nats_key_file);
        }
        base
    }

    /// The same flags, for `pilot-daemon`'s command line (paths made absolute).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        let mut push = |flag: &str, value: OsString| {
            out.push(flag.into());
            out.push(value);
        };
        let dur = |d: Duration| OsString::from(pilot_core::duration::format(d));
        if !self.events.is_empty() {
            push("--events", self.events.join(",").into());
        }
        if !self.exclude.is_empty() {
            push("--exclude", self.exclude.join(",").into());
        }
        if let Some(v) = self.max_spool_bytes {
            push("--max-spool-bytes", v.to_string().into());
        }
        if let Some(v) = self.discard_after {
            push("--discard-after", dur(v));
        }
        if let Some(v) = self.max_backoff {
            push("--max-backoff", dur(v));
        }
        if let Some(v) = self.dead_letter_max_bytes {
            push("--dead-letter-max-bytes", v.to_string().into());
        }
        if let Some(v) = self.dead_letter_retention {
            push("--dead-letter-retention", dur(v));
        }
        if let Some(v) = self.retain {
            push("--retain", dur(v));
        }
        if let Some(v) = self.retain_max_bytes {
            push("--retain-max-bytes", v.to_string().into());
        }
        for h in &self.headers {
            push("--header", h.into());
        }
        if let Some(p) = &self.bearer_token_file {
            push("--bearer-token-file", absolute(p).into());
        }
        if let Some(p) = &self.basic_auth_file {
            push("--basic-auth-file", absolute(p).into());
        }
        if let Some(v) = self.batch_max {
            push("--batch-max", v.to_string().into());
        }
        if let Some(v) = self.batch_wait {
            push("--batch-wait", dur(v));
        }
        if let Some(v) = self.concurrency {
            push("--concurrency", v.to_string().into());
        }
        if let Some(v) = self.disable_after {
            push("--disable-after", dur(v));
        }
        if let Some(v) = self.rate_limit {
            push("--rate-limit", v.to_string().into());
        }
        if let Some(v) = self.rate_burst {
            push("--rate-burst", v.to_string().into());
        }
        if let Some(v) = self.min_severity {
            push("--min-severity", v.as_str().into());
        }
        if let Some(t) = &self.template {
            push("--template", template_spec(t).into());
        }
        for (k, v) in &self.template_vars {
            push("--template-var", format!("{k}={v}").into());
        }
        if let Some(v) = &self.subject {
            push("--subject", v.into());
        }
        if let Some(v) = &self.create_stream {
            push("--create-stream", v.into());
        }
        let files = [
            ("--nats-creds", &self.nats_creds),
            ("--nats-token-file", &self.nats_token_file),
            ("--nats-nkey-file", &self.nats_nkey_file),
            ("--nats-user-file", &self.nats_user_file),
            ("--nats-ca-file", &self.nats_ca_file),
            ("--nats-cert-file", &self.nats_cert_file),
            ("--nats-key-file", &self.nats_key_file),
        ];
        for (flag, path) in files {
            if let Some(p) = path {
                push(flag, absolute(p).into());
            }
        }
        if self.durable {
            out.push("--durable".into());
        }
        if self.insecure_tls {
            out.push("--insecure-tls".into());
        }
        if self.deny_private {
            out.push("--deny-private".into());
        }
        if let Some(proxy) = &self.proxy {
            out.push("--proxy".into());
            out.push(proxy.into());
        }
        if let Some(path) = &self.proxy_auth_file {
            out.push("--proxy-auth-file".into());
            out.push(absolute(path).into());
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            out.push("--client-cert".into());
            out.push(absolute(cert).into());
            out.push("--client-key".into());
            out.push(absolute(key).into());
        }
        out
    }
}

impl ClearArgs {
    /// `base` with every setting a `--no-*` flag names removed.
    pub fn apply(&self, mut base: WebhookSettings) -> WebhookSettings {
        if self.no_events {
            base.events.clear();
        }
        if self.no_exclude {
            base.exclude.clear();
        }
        if self.no_min_severity {
            base.min_severity = None;
        }
        if self.no_headers {
            base.headers.clear();
        }
        if self.no_auth {
            base.bearer_token_file = None;
            base.basic_auth_file = None;
        }
        if self.no_durable {
            base.durable = false;
        }
        if self.no_insecure_tls {
            base.insecure_tls = false;
        }
        if self.no_deny_private {
            base.deny_private = false;
        }
        if self.no_proxy {
            base.proxy = None;
            base.proxy_auth_file = None;
        }
        if self.no_client_cert {
            base.client_cert = None;
            base.client_key = None;
        }
        if self.no_batch {
            base.batch_max = None;
            base.batch_wait = None;
        }
        if self.no_concurrency {
            base.concurrency = None;
        }
        if self.no_rate_limit {
            base.rate_limit = None;
            base.rate_burst = None;
        }
        if self.no_disable_after {
            base.disable_after = None;
        }
        if self.no_spool_limits {
            base.max_spool_bytes = None;
            base.discard_after = None;
            base.max_backoff = None;
        }
        if self.no_dead_letter_limits {
            base.dead_letter_max_bytes = None;
            base.dead_letter_retention = None;
        }
        if self.no_retain {
            base.retain = None;
            base.retain_max_bytes = None;
        }
        if self.no_template {
            base.template = None;
            base.template_vars.clear();
        }
        if self.no_subject {
            base.subject = None;
        }
        if self.no_create_stream {
            base.create_stream = None;
        }
        if self.no_nats_auth {
            base.nats_creds = None;
            base.nats_token_file = None;
            base.nats_nkey_file = None;
            base.nats_user_file = None;
        }
        if self.no_nats_tls {
            base.nats_ca_file = None;
            base.nats_cert_file = None;
            base.nats_key_file = None;
        }
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        set: SettingsArgs,
        #[command(flatten)]
        clear: ClearArgs,
    }

    fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        Cmd::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
    }

    #[test]
    fn flags_override_field_by_field() {
        let base = WebhookSettings {
            events: vec!["a.*".into()],
            exclude: vec!["a.b".into()],
            basic_auth_file: Some("/basic".into()),
            batch_max: Some(5),
            batch_wait: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        let cmd = parse(&[
            "--events",
            " b.* ",
            "--bearer-token-file",
            "/bearer",
            "--batch-max",
            "9",
            "--durable",
            "--disable-after",
            "10m",
        ])
        .unwrap();
        let got = cmd.set.apply(base.clone());
        assert_eq!(got.events, ["b.*"]);
        assert_eq!(got.exclude, ["a.b"]);
        assert_eq!(got.bearer_token_file.as_deref(), Some(Path::new("/bearer")));
        assert_eq!(got.basic_auth_file, None);
        assert_eq!(got.batch_max, Some(9));
        assert_eq!(got.batch_wait, Some(Duration::from_millis(10)));
        assert_eq!(got.disable_after, Some(Duration::from_secs(600)));
        assert!(got.durable);
        assert_eq!(SettingsArgs::default().apply(base.clone()), base);
    }

    #[test]
    fn no_flags_remove_and_conflict_with_their_setter() {
        let base = WebhookSettings {
            events: vec!["a.*".into()],
            headers: vec!["X-A: 1".into()],
            batch_max: Some(5),
            batch_wait: Some(Duration::from_millis(10)),
            durable: true,
            ..Default::default()
        };
        let cmd = parse(&["--no-events", "--no-batch", "--no-durable"]).unwrap();
        let got = cmd.clear.apply(base);
        assert!(got.events.is_empty() && !got.durable);
        assert_eq!((got.batch_max, got.batch_wait), (None, None));
        assert_eq!(got.headers, ["X-A: 1"]);
        assert!(parse(&["--no-events", "--events", "a.*"]).is_err());
        assert!(parse(&["--no-batch", "--batch-max", "3"]).is_err());
    }

    #[test]
    fn numbers_and_durations_must_be_positive() {
        for bad in [
            &["--batch-max", "0"][..],
            &["--concurrency", "0"],
            &["--max-spool-bytes", "0"],
            &["--discard-after", "0s"],
            &["--disable-after", "0s"],
            &["--max-backoff", "soon"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dead_letter_and_retention_flags_merge_clear_and_round_trip() {
        let cmd = parse(&[
            "--dead-letter-max-bytes",
            "1MiB",
            "--dead-letter-retention",
            "72h",
            "--retain",
            "2h",
            "--retain-max-bytes",
            "512KiB",
        ])
        .unwrap();
        let got = cmd.set.apply(WebhookSettings::default());
        assert_eq!(got.dead_letter_max_bytes, Some(1 << 20));
        assert_eq!(
            got.dead_letter_retention,
            Some(Duration::from_secs(3 * 86400))
        );
        assert_eq!(got.retain, Some(Duration::from_secs(7200)));
        assert_eq!(got.retain_max_bytes, Some(512 << 10));
        assert!(!got.durable, "not durable-only");
        assert!(got.validate().is_ok());
        let again =
            Cmd::try_parse_from(std::iter::once(OsString::from("x")).chain(cmd.set.to_args()))
                .unwrap();
        assert_eq!(again.set, cmd.set);

        // `update` changes only what is given.
        let updated = parse(&["--retain-max-bytes", "2MiB"])
            .unwrap()
            .set
            .apply(got.clone());
        assert_eq!(updated.retain_max_bytes, Some(2 << 20));
        assert_eq!(updated.retain, got.retain);
        assert_eq!(updated.dead_letter_max_bytes, got.dead_letter_max_bytes);

        let cleared = parse(&["--no-retain"]).unwrap().clear.apply(got.clone());
        assert_eq!((cleared.retain, cleared.retain_max_bytes), (None, None));
        assert_eq!(cleared.dead_letter_max_bytes, Some(1 << 20), "kept");
        assert!(cleared.validate().is_ok());
        let cleared = parse(&["--no-dead-letter-limits"])
            .unwrap()
            .clear
            .apply(got.clone());
        assert_eq!(
            (cleared.dead_letter_max_bytes, cleared.dead_letter_retention),
            (None, None)
        );
        assert_eq!(cleared.dead_letter_max_bytes_or_default(), 64 << 20);
        assert_eq!(cleared.retain, got.retain, "kept");

        assert!(parse(&["--no-retain", "--retain", "1h"]).is_err());
        assert!(parse(&["--no-retain", "--retain-max-bytes", "1MiB"]).is_err());
        assert!(parse(&["--no-dead-letter-limits", "--dead-letter-retention", "1h"]).is_err());

        // A size without retention, after the merge, is refused by the settings' check.
        let alone = parse(&["--retain-max-bytes", "1MiB"])
            .unwrap()
            .set
            .apply(WebhookSettings::default());
        let e = alone.validate().unwrap_err().to_string();
        assert!(e.contains("--retain-max-bytes needs --retain"), "{e}");
    }

    #[test]
    fn dead_letter_and_retention_flags_refuse_zero_and_tiny_values() {
        for bad in [
            &["--retain", "0s"][..],
            &["--dead-letter-retention", "0s"],
            &["--dead-letter-max-bytes", "0"],
            &["--dead-letter-max-bytes", "1023"],
            &["--retain-max-bytes", "1000B"],
            &["--retain", "soon"],
            &["--dead-letter-max-bytes", "lots"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let e = parse(&["--dead-letter-max-bytes", "512"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be at least 1KiB (1024 bytes)"), "{e}");
        let e = parse(&["--retain", "0s"]).unwrap_err().to_string();
        assert!(e.contains("must be longer than 0"), "{e}");
        assert!(parse(&["--dead-letter-max-bytes", "1KiB"]).is_ok());
    }

    #[test]
    fn template_flags_set_and_clear_the_template() {
        let cmd = parse(&[
            "--template",
            "pagerduty",
            "--template-var",
            "routing_key=a=b",
            "--template-var",
            "source=db1",
        ])
        .unwrap();
        let got = cmd.set.apply(WebhookSettings::default());
        assert_eq!(got.template.as_deref(), Some("pagerduty"));
        assert_eq!(got.template_vars["routing_key"], "a=b");
        assert_eq!(got.template_vars["source"], "db1");
        let file = parse(&["--template", "alert.j2"])
            .unwrap()
            .set
            .apply(got.clone());
        let path = file.template.unwrap();
        assert!(
            Path::new(&path).is_absolute() && path.ends_with("alert.j2"),
            "{path}"
        );
        assert_eq!(file.template_vars, got.template_vars, "kept when not given");
        let cleared = parse(&["--no-template"]).unwrap().clear.apply(got);
        assert!(cleared.template.is_none() && cleared.template_vars.is_empty());
        assert!(parse(&["--template-var", "novalue"]).is_err());
        assert!(parse(&["--no-template", "--template", "slack"]).is_err());
        assert!(parse(&["--template", "slack", "--batch-max", "2"]).is_err());
        let again =
            Cmd::try_parse_from(std::iter::once(OsString::from("x")).chain(cmd.set.to_args()))
                .unwrap();
        assert_eq!(again.set, cmd.set);
    }

    #[test]
    fn to_args_round_trips() {
        let cmd = parse(&[
            "--events",
            "a.*,b.c",
            "--header",
            "X-A: 1",
            "--batch-max",
            "3",
            "--disable-after",
            "1h",
            "--min-severity",
            "warning",
            "--durable",
        ])
        .unwrap();
        let args = cmd.set.to_args();
        let again = Cmd::try_parse_from(std::iter::once(OsString::from("x")).chain(args)).unwrap();
        assert_eq!(again.set, cmd.set);
    }
}
