//! Per-webhook settings beyond the URL: filters (event patterns, minimum severity), durability,
//! headers, auth, TLS, batching, the body template; for a NATS endpoint (`nats://`,
//! `tls://`) the subject template, `create_stream`, and the paths of its credential and TLS
//! files (only paths are stored: the files are read when the endpoint is configured).
//!
//! `pilotctl set-webhook URL [flags]` writes them to config.json under `webhook_settings`
//! (replacing the whole object; `clear-webhook` removes it) and sends them to the daemon with
//! the URL. `pilotctl daemon start` flags override fields for one run. All fields are optional;
//! the defaults are Pilot's behaviour (every event, in memory, no extra headers).
//!
//! [`WebhookSettings::validate`] and [`validate_target`] (the settings with their URL) are the
//! one check every path runs before anything is written or applied: `pilotctl set-webhook`,
//! `pilotctl config --set`, the daemon's `set_webhook` handler and the daemon's start. An extra
//! header may not replace one pilot sets itself ([`RESERVED_HEADERS`], any `webhook-*`), nor
//! carry control bytes or non-ASCII; `Authorization` may come from one place only (a header, an
//! auth file, or the URL's `user:password`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pattern::{Pattern, PatternError, Suggestion};
use crate::severity::Severity;

/// Settings of one webhook. Unknown keys in the JSON are ignored (newer versions' settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Deliver only events matching one of these patterns (empty: every event).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Never deliver events matching one of these patterns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Deliver only events of at least this severity (none: every severity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Spool events on disk until a 2xx (at-least-once) instead of dropping them.
    #[serde(skip_serializing_if = "is_false")]
    pub durable: bool,
    /// Extra request headers, `Name: value`, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// A file holding a bearer token (sent as `Authorization: Bearer <token>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    /// A file holding `user:password` (sent as `Authorization: Basic ...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth_file: Option<PathBuf>,
    /// Accept any TLS certificate (for testing only).
    #[serde(skip_serializing_if = "is_false")]
    pub insecure_tls: bool,
    /// Refuse loopback and private addresses for this webhook too, when the URL is given and
    /// at every connect (`crate::webhook_url::UrlPolicy::deny_private`).
    #[serde(skip_serializing_if = "is_false")]
    pub deny_private: bool,
    /// Send up to this many events per request as `{"events":[...]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_max: Option<usize>,
    /// How long a batch may wait to fill up.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub batch_wait: Option<Duration>,
    /// Requests in flight at once (unordered when above 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Render each request's body from this template (one event per request): a preset's name
    /// (`slack`, `discord`, `teams`, `pagerduty`, `ntfy`) or the absolute path of a template
    /// file. Rendered by `pilot-template`; see docs/templates.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Values the template sees as `vars.KEY` (`--template-var KEY=VALUE`); shown masked.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub template_vars: BTreeMap<String, String>,
    /// Durable mode: the spool's size limit in bytes (oldest dropped and counted past it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_spool_bytes: Option<u64>,
    /// Durable mode: events older than this are dropped and counted.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub discard_after: Option<Duration>,
    /// Durable mode: the longest wait between retries of one event.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub max_backoff: Option<Duration>,
    /// Dead letters (the events this endpoint gave up on, kept for replay; in memory mode too):
    /// their size limit in bytes, oldest dropped past it (default
    /// [`DEFAULT_DEAD_LETTER_MAX_BYTES`], at least [`MIN_ARCHIVE_BYTES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_max_bytes: Option<u64>,
    /// Dead letters older than this are dropped (default [`DEFAULT_DEAD_LETTER_RETENTION`]).
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub dead_letter_retention: Option<Duration>,
    /// Keep the payloads of delivered events this long, for replay (off when unset; in memory
    /// mode too).
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub retain: Option<Duration>,
    /// With `retain`: the retained payloads' size limit in bytes, oldest dropped past it
    /// (default [`DEFAULT_RETAIN_MAX_BYTES`], at least [`MIN_ARCHIVE_BYTES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_max_bytes: Option<u64>,
    /// The HTTP proxy for this webhook (`http://[user:password@]host:port`), or `none` for no
    /// proxy; unset: the daemon's environment (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// A file holding `user:password` for the proxy (`Proxy-Authorization: Basic`), instead of
    /// credentials in the proxy URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_auth_file: Option<PathBuf>,
    /// A PEM certificate (chain) presented to receivers that ask for one (mutual TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of `client_cert`; the file must be owner-only (0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// At most this many sends per second/minute/hour (`10/s`, `600/m`); sends are spaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::rate::RateLimit>,
    /// How many sends may go at once before the spacing starts (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_burst: Option<u32>,
    /// Disable the endpoint once every attempt has failed for this long (off when unset).
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub disable_after: Option<Duration>,
    /// Paused: nothing is sent (in memory mode what arrives is dropped and counted; in durable
    /// mode it is spooled and drains in order on resume).
    #[serde(skip_serializing_if = "is_false")]
    pub paused: bool,
    /// NATS: the subject template (default [`crate::subject::DEFAULT_SUBJECT`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// NATS: create a stream of this name for the subject's prefix when no stream takes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_stream: Option<String>,
    /// NATS: a `.creds` file (user JWT and NKey seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_creds: Option<PathBuf>,
    /// NATS: a file holding the auth token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_token_file: Option<PathBuf>,
    /// NATS: a file holding an NKey seed (`SU...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_nkey_file: Option<PathBuf>,
    /// NATS: a file holding `user:password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_user_file: Option<PathBuf>,
    /// NATS over TLS: the CA certificates (PEM) to trust instead of the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_ca_file: Option<PathBuf>,
    /// NATS over TLS: the client certificate (PEM), with `nats_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_cert_file: Option<PathBuf>,
    /// NATS over TLS: the client certificate's private key (PEM), with `nats_cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_key_file: Option<PathBuf>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The dead letters' size limit when `dead_letter_max_bytes` is unset: 64 MiB.
pub const DEFAULT_DEAD_LETTER_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// How long dead letters are kept when `dead_letter_retention` is unset: 7 days.
pub const DEFAULT_DEAD_LETTER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The retained payloads' size limit when `retain` is set and `retain_max_bytes` is not: 64 MiB.
pub const DEFAULT_RETAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The smallest `dead_letter_max_bytes` and `retain_max_bytes`: 1 KiB (a smaller bound would
/// hold no event; the way to keep nothing is to leave `retain` off).
pub const MIN_ARCHIVE_BYTES: u64 = 1024;

/// Headers pilot sets itself (framing, body type, signatures), lowercase: an extra header may
/// not replace them. Every `webhook-*` header is pilot's too (Standard Webhooks).
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "content-type",
    "x-pilot-signature-256",
];

/// Whether pilot sets header `name` itself (any case).
pub fn is_reserved_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-")
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("header {0:?} must look like `Name: value` (a token name, no line breaks)")]
    Header(String),
    #[error("header {name:?} is set by pilot itself and cannot be given")]
    ReservedHeader { name: String },
    #[error("header {name:?} has a value a header cannot carry ({reason}); use visible ASCII")]
    HeaderValue { name: String, reason: &'static str },
    #[error("Authorization is given twice ({first} and {second}); keep one of them")]
    AuthTwice {
        first: &'static str,
        second: &'static str,
    },
    #[error("give at most one of a bearer token file and a basic auth file")]
    TwoAuths,
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error("{what} must be longer than 0")]
    ZeroDuration { what: &'static str },
    #[error("{what} must be at least 1KiB (1024 bytes), not {given} bytes")]
    TooFewBytes { what: &'static str, given: u64 },
    #[error(
        "--retain-max-bytes needs --retain DURATION: retention of delivered events is off \
         without it (in config.json, `retain_max_bytes` needs `retain`)"
    )]
    RetainMaxWithoutRetain,
    #[error(
        "give both a client certificate and its key (--client-cert and --client-key), or neither"
    )]
    HalfClientIdentity,
    #[error("proxy {given:?}: {reason} (use `none`, or http://[user:password@]host:port)")]
    Proxy { given: String, reason: String },
    #[error("template {given:?}: {reason}")]
    Template { given: String, reason: &'static str },
    #[error("template variable {key:?}: {reason}")]
    TemplateVar { key: String, reason: &'static str },
    #[error(transparent)]
    Subject(#[from] crate::subject::SubjectError),
    #[error("{0}")]
    Stream(String),
    #[error("give at most one NATS credential ({first} and {second} are both set)")]
    TwoNatsAuths {
        first: &'static str,
        second: &'static str,
    },
    #[error("--nats-cert-file and --nats-key-file go together (give both or neither)")]
    CertWithoutKey,
    #[error("{flag} is for NATS endpoints (nats:// or tls:// URLs), not for {scheme}://")]
    NatsOnly { flag: &'static str, scheme: String },
    #[error("{flag} is for HTTP(S) webhooks, not for a NATS endpoint")]
    HttpOnly { flag: &'static str },
    #[error(
        "--create-stream needs a subject template that starts with a fixed token (the stream \
         would take every subject otherwise): {template:?}"
    )]
    StreamFilter { template: String },
}

impl WebhookSettings {
    /// Checks patterns, headers and numbers.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.filters()?;
        if let Some(proxy) = &self.proxy {
            check_proxy(proxy)?;
        }
        if self.proxy_auth_file.is_some()
            && self
                .proxy
                .as_deref()
                .is_none_or(|p| p.trim().eq_ignore_ascii_case("none"))
        {
            return Err(SettingsError::Proxy {
                given: "none".into(),
                reason: "--proxy-auth-file needs a --proxy URL".into(),
            });
        }
        if self.rate_burst == Some(0) {
            return Err(SettingsError::Zero { what: "rate burst" });
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(SettingsError::HalfClientIdentity);
        }
        for h in &self.headers {
            let (name, value) = parse_header(h)?;
            if is_reserved_header(&name) {
                return Err(SettingsError::ReservedHeader { name });
            }
            let reason = if value.chars().any(|c| c.is_control() && c != '\t') {
                Some("a control character")
            } else if !value.is_ascii() {
                Some("non-ASCII text")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(SettingsError::HeaderValue { name, reason });
            }
        }
        if self.bearer_token_file.is_some() && self.basic_auth_file.is_some() {
            return Err(SettingsError::TwoAuths);
        }
        if self.auth_file().is_some() && self.has_authorization_header() {
            return Err(SettingsError::AuthTwice {
                first: "an Authorization header",
                second: "an auth file",
            });
        }
        if self.batch_max == Some(0) {
            return Err(SettingsError::Zero { what: "batch max" });
        }
        if self.max_spool_bytes == Some(0) {
            return Err(SettingsError::Zero {
                what: "max spool bytes",
            });
        }
        let zero = |d: Option<Duration>| d.is_some_and(|d| d.is_zero());
        if zero(self.discard_after) {
            return Err(SettingsError::Zero {
                what: "discard after",
            });
        }
        if zero(self.max_backoff) {
            return Err(SettingsError::Zero {
                what: "max backoff",
            });
        }
        if zero(self.disable_after) {
            return Err(SettingsError::Zero {
                what: "disable after",
            });
        }
        if self.concurrency == Some(0) {
            return Err(SettingsError::Zero {
                what: "concurrency",
            });
        }
        self.validate_archive()?;
        let template = self.subject_template()?;
        if let Some(name) = &self.create_stream {
            crate::subject::check_stream_name(name).map_err(SettingsError::Stream)?;
            if template.stream_filter().is_none() {
                return Err(SettingsError::StreamFilter {
                    template: template.to_string(),
                });
            }
        }
        let auths = self.nats_auths();
        if let [first, second, ..] = auths[..] {
            return Err(SettingsError::TwoNatsAuths { first, second });
        }
        if self.nats_cert_file.is_some() != self.nats_key_file.is_some() {
            return Err(SettingsError::CertWithoutKey);
        }
        self.validate_template()
    }

    /// Checks the dead-letter and retention settings: sizes of at least [`MIN_ARCHIVE_BYTES`],
    /// durations longer than 0, `retain_max_bytes` only with `retain`. They do not depend on
    /// `durable` (in memory endpoints keep dead letters too).
    fn validate_archive(&self) -> Result<(), SettingsError> {
        let sizes = [
            ("dead_letter_max_bytes", self.dead_letter_max_bytes),
            ("retain_max_bytes", self.retain_max_bytes),
        ];
        for (what, n) in sizes {
            if let Some(given) = n.filter(|&n| n < MIN_ARCHIVE_BYTES) {
                return Err(SettingsError::TooFewBytes { what, given });
            }
        }
        let durations = [
            ("dead_letter_retention", self.dead_letter_retention),
            ("retain", self.retain),
        ];
        for (what, d) in durations {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(SettingsError::ZeroDuration { what });
            }
        }
        if self.retain_max_bytes.is_some() && self.retain.is_none() {
            return Err(SettingsError::RetainMaxWithoutRetain);
        }
        Ok(())
    }

    /// The dead letters' size limit: `dead_letter_max_bytes`, or
    /// [`DEFAULT_DEAD_LETTER_MAX_BYTES`].
    pub fn dead_letter_max_bytes_or_default(&self) -> u64 {
        self.dead_letter_max_bytes
            .unwrap_or(DEFAULT_DEAD_LETTER_MAX_BYTES)
    }

    /// How long dead letters are kept: `dead_letter_retention`, or
    /// [`DEFAULT_DEAD_LETTER_RETENTION`].
    pub fn dead_letter_retention_or_default(&self) -> Duration {
        self.dead_letter_retention
            .unwrap_or(DEFAULT_DEAD_LETTER_RETENTION)
    }

    /// The retained payloads' size limit: `None` while retention is off (`retain` unset), else
    /// `retain_max_bytes` or [`DEFAULT_RETAIN_MAX_BYTES`].
    pub fn retain_max_bytes_or_default(&self) -> Option<u64> {
        self.retain
            .map(|_| self.retain_max_bytes.unwrap_or(DEFAULT_RETAIN_MAX_BYTES))
    }

    /// Checks the template setting's form (that the preset exists, the file reads and the
    /// template renders is `pilot-template`'s check): a preset-like name, or an absolute path
    /// (a value with a `/` or a `.`); variables only with a template, with identifier keys and
    /// values without control characters; no batching (a template renders one event per
    /// request).
    fn validate_template(&self) -> Result<(), SettingsError> {
        let Some(given) = &self.template else {
            return match self.template_vars.keys().next() {
                Some(key) => Err(SettingsError::TemplateVar {
                    key: key.clone(),
                    reason: "is given without --template",
                }),
                None => Ok(()),
            };
        };
        let bad = |reason| {
            Err(SettingsError::Template {
                given: given.chars().take(80).collect(),
                reason,
            })
        };
        if given.trim().is_empty() {
            return bad("is empty: give a preset name or a file path");
        }
        if given.contains(['/', '.']) {
            if !Path::new(given).is_absolute() {
                return bad("a template file's path must be absolute");
            }
        } else if !given
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return bad(
                "is neither a preset name (lowercase letters, digits, - and _) nor a file path",
            );
        }
        if self.batch_max.is_some() {
            return bad("renders one event per request, so it cannot be combined with batching (--batch-max)");
        }
        for (key, value) in &self.template_vars {
            let mut chars = key.chars();
            let ident = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            let reason = if !ident {
                Some("the key must be an identifier (letters, digits and _, not starting with a digit)")
            } else if value.chars().any(char::is_control) {
                Some("the value has a control character")
            } else if value.len() > 4096 {
                Some("the value is longer than 4096 bytes")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(SettingsError::TemplateVar {
                    key: key.chars().take(40).collect(),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// The NATS subject template: `subject`, or the default.
    pub fn subject_template(
        &self,
    ) -> Result<crate::subject::SubjectTemplate, crate::subject::SubjectError> {
        self.subject
            .as_deref()
            .unwrap_or(crate::subject::DEFAULT_SUBJECT)
            .parse()
    }

    /// The NATS credential flags that are set.
    fn nats_auths(&self) -> Vec<&'static str> {
        [
            ("--nats-creds", self.nats_creds.is_some()),
            ("--nats-token-file", self.nats_token_file.is_some()),
            ("--nats-nkey-file", self.nats_nkey_file.is_some()),
            ("--nats-user-file", self.nats_user_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect()
    }

    /// The set flags that only a NATS endpoint uses.
    fn nats_only(&self) -> Option<&'static str> {
        let tls = [
            ("--subject", self.subject.is_some()),
            ("--create-stream", self.create_stream.is_some()),
            ("--nats-ca-file", self.nats_ca_file.is_some()),
            ("--nats-cert-file", self.nats_cert_file.is_some()),
        ];
        self.nats_auths()
            .first()
            .copied()
            .or_else(|| tls.into_iter().find_map(|(flag, set)| set.then_some(flag)))
    }

    /// The set flags that only an HTTP(S) webhook uses.
    fn http_only(&self) -> Option<&'static str> {
        if !self.headers.is_empty() {
            Some("--header")
        } else if let Some(flag) = self.auth_file() {
            Some(flag)
        } else if self.insecure_tls {
            Some("--insecure-tls")
        } else {
            None
        }
    }

    /// Which auth file is set, if one is (its flag's name).
    fn auth_file(&self) -> Option<&'static str> {
        if self.bearer_token_file.is_some() {
            Some("--bearer-token-file")
        } else if self.basic_auth_file.is_some() {
            Some("--basic-auth-file")
        } else {
            None
        }
    }

    /// Whether an extra header is `Authorization`.
    fn has_authorization_header(&self) -> bool {
        self.headers.iter().any(|h| {
            parse_header(h).is_ok_and(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        })
    }

    /// The parsed include and exclude patterns (a pattern that can never match an event name
    /// is refused).
    pub fn filters(&self) -> Result<(Vec<Pattern>, Vec<Pattern>), PatternError> {
        let parse = |v: &[String]| v.iter().map(|p| p.parse()).collect::<Result<Vec<_>, _>>();
        Ok((parse(&self.events)?, parse(&self.exclude)?))
    }

    /// The same settings, not paused (what delivery is configured with; pausing is applied
    /// on its own, without rebuilding the endpoint).
    pub fn unpaused(&self) -> WebhookSettings {
        WebhookSettings {
            paused: false,
            ..self.clone()
        }
    }

    /// The include and exclude patterns that name no catalog event but are one edit away from
    /// one (see [`Pattern::parse_checked`]), for a warning; patterns that do not parse are left
    /// to [`WebhookSettings::validate`].
    pub fn pattern_warnings(&self) -> Vec<Suggestion> {
        self.events
            .iter()
            .chain(&self.exclude)
            .filter_map(|p| Pattern::parse_checked(p).ok()?.1)
            .collect()
    }

    /// Whether an event of severity `s` passes `min_severity` (every one does without it).
    pub fn admits_severity(&self, s: Severity) -> bool {
        self.min_severity.is_none_or(|min| s >= min)
    }

    /// The URL policy of this webhook: `base` (the daemon's, from the config key
    /// `deny_private_networks`), also refusing private networks when `deny_private` is set.
    pub fn url_policy(&self, base: crate::webhook_url::UrlPolicy) -> crate::webhook_url::UrlPolicy {
        base.or_deny_private(self.deny_private)
    }

    /// Whether every field is at its default.
    pub fn is_default(&self) -> bool {
        *self == WebhookSettings::default()
    }

    /// A copy safe to show (header values and file paths are kept, header values masked).
    pub fn redacted(&self) -> WebhookSettings {
        let mut s = self.clone();
        s.headers = s
            .headers
            .iter()
            .map(|h| match parse_header(h) {
                Ok((name, _)) => format!("{name}: ***"),
                Err(_) => "***".into(),
            })
            .collect();
        if let Some(proxy) = &s.proxy {
            if !proxy.trim().eq_ignore_ascii_case("none") {
                s.proxy = Some(crate::webhook_url::redact_str(proxy));
            }
        }
        for value in s.template_vars.values_mut() {
            *value = "***".into();
        }
        s
    }
}

/// serde's error reading the settings object `value`, with the first field that does not read
/// in front (`retain: invalid duration "soon" ...`): serde's message does not name it.
pub fn read_error(value: &serde_json::Value, e: &serde_json::Error) -> String {
    let field = value.as_object().and_then(|map| {
        map.iter().find_map(|(key, v)| {
            let alone = serde_json::Value::Object([(key.clone(), v.clone())].into_iter().collect());
            serde_json::from_value::<WebhookSettings>(alone)
                .is_err()
                .then_some(key)
        })
    });
    match field {
        Some(key) => format!("{key}: {e}"),
        None => e.to_string(),
    }
}

/// Checks `settings` with the URL they go with: [`WebhookSettings::validate`], and that
/// `Authorization` is not given both by the URL's `user:password` and by a header or an auth
/// file.
pub fn validate_target(url: &url::Url, settings: &WebhookSettings) -> Result<(), SettingsError> {
    settings.validate()?;
    if crate::webhook_url::is_broker(url) {
        if let Some(flag) = settings.http_only() {
            return Err(SettingsError::HttpOnly { flag });
        }
    } else if let Some(flag) = settings.nats_only() {
        return Err(SettingsError::NatsOnly {
            flag,
            scheme: url.scheme().into(),
        });
    }
    let userinfo = !url.username().is_empty() || url.password().is_some();
    if userinfo {
        if settings.has_authorization_header() {
            return Err(SettingsError::AuthTwice {
                first: "the URL's user:password",
                second: "an Authorization header",
            });
        }
        if let Some(flag) = settings.auth_file() {
            return Err(SettingsError::AuthTwice {
                first: "the URL's user:password",
                second: flag,
            });
        }
    }
    Ok(())
}

/// Checks a `proxy` setting: `none`, or an http URL with a host and a port, no path.
fn check_proxy(value: &str) -> Result<(), SettingsError> {
    if value.trim().eq_ignore_ascii_case("none") {
        return Ok(());
    }
    let err = |reason: &str| SettingsError::Proxy {
        given: crate::webhook_url::redact_str(value),
        reason: reason.into(),
    };
    let url = url::Url::parse(value.trim()).map_err(|_| err("not a URL"))?;
    if url.scheme() != "http" {
        return Err(err(
            "only http:// proxies are supported (HTTPS goes through them with CONNECT)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("it has no host"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(err("a proxy URL has no path or query"));
    }
    Ok(())
}

/// Splits `Name: value` into its parts, checking the name is an HTTP token.
pub fn parse_header(h: &str) -> Result<(String, String), SettingsError> {
    let err = || SettingsError::Header(h.chars().take(40).collect());
    let (name, value) = h.split_once(':').ok_or_else(err)?;
    let name = name.trim();
    let value = value.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) || value.contains(['\r', '\n']) {
        return Err(err());
    }
    Ok((name.to_string(), value.to_string()))
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&crate::duration::format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| crate::duration::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serialize_to_an_empty_object() {
        assert_eq!(
            serde_json::to_string(&WebhookSettings::default()).unwrap(),
            "{}"
        );
        assert!(WebhookSettings::default().is_default());
    }

    #[test]
    fn round_trips_with_human_durations() {
        let s = WebhookSettings {
            events: vec!["handshake.*".into(), "trust.*".into()],
            exclude: vec!["data.datagram".into()],
            min_severity: Some(Severity::Notice),
            durable: true,
            headers: vec!["X-Team: blue".into()],
            batch_max: Some(256),
            batch_wait: Some(Duration::from_millis(50)),
            discard_after: Some(Duration::from_secs(86400)),
            ..Default::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["batch_wait"], "50ms");
        assert_eq!(json["discard_after"], "24h");
        assert_eq!(json["min_severity"], "notice");
        let back: WebhookSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = |f: fn(&mut WebhookSettings)| {
            let mut s = WebhookSettings::default();
            f(&mut s);
            s.validate().unwrap_err()
        };
        bad(|s| s.events = vec!["a*".into()]);
        let err = bad(|s| s.exclude = vec!["Handshake.*".into()]);
        assert!(
            err.to_string().contains("did you mean `handshake.*`"),
            "{err}"
        );
        bad(|s| s.events = vec!["a.b".into(), "Bad..x".into()]);
        bad(|s| s.headers = vec!["no colon".into()]);
        bad(|s| s.headers = vec!["Bad Name: v".into()]);
        bad(|s| s.headers = vec!["X: a\r\nInjected: b".into()]);
        bad(|s| s.batch_max = Some(0));
        bad(|s| s.max_spool_bytes = Some(0));
        bad(|s| s.discard_after = Some(Duration::ZERO));
        bad(|s| s.max_backoff = Some(Duration::ZERO));
        bad(|s| s.disable_after = Some(Duration::ZERO));
        bad(|s| s.dead_letter_max_bytes = Some(0));
        bad(|s| s.dead_letter_retention = Some(Duration::ZERO));
        bad(|s| s.retain = Some(Duration::ZERO));
        bad(|s| s.retain_max_bytes = Some(1 << 20));
        bad(|s| {
            s.bearer_token_file = Some("/a".into());
            s.basic_auth_file = Some("/b".into());
        });
    }

    #[test]
    fn min_severity_admits_its_level_and_above() {
        let mut s = WebhookSettings::default();
        assert!(Severity::ALL.iter().all(|&l| s.admits_severity(l)));
        s.min_severity = Some(Severity::Warning);
        let admitted: Vec<Severity> = Severity::ALL
            .into_iter()
            .filter(|&l| s.admits_severity(l))
            .collect();
        assert_eq!(admitted, [Severity::Warning, Severity::Critical]);
        assert!(!s.is_default());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn min_severity_is_read_from_json_with_a_clear_error() {
        let s: WebhookSettings = serde_json::from_str(r#"{"min_severity":"critical"}"#).unwrap();
        assert_eq!(s.min_severity, Some(Severity::Critical));
        let s: WebhookSettings = serde_json::from_str(r#"{"min_severity":null}"#).unwrap();
        assert!(s.is_default());
        let err = serde_json::from_str::<WebhookSettings>(r#"{"min_severity":"loud"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#"unknown severity "loud" (one of: debug, info, notice"#),
            "{err}"
        );
        assert!(serde_json::from_str::<WebhookSettings>(r#"{"min_severity":3}"#).is_err());
    }

    #[test]
    fn near_misses_of_catalog_names_are_warnings_not_errors() {
        let s = WebhookSettings {
            events: vec!["handshake.recieved".into(), "trust.*".into()],
            exclude: vec!["secuirty.*".into(), "myapp.*".into()],
            ..Default::default()
        };
        assert!(s.validate().is_ok());
        let warnings: Vec<String> = s.pattern_warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("did you mean `handshake.received`?"));
        assert!(warnings[1].contains("did you mean `security.*`?"));
    }

    #[test]
    fn headers_pilot_sets_control_bytes_and_a_second_authorization_are_refused() {
        let with = |headers: &[&str]| WebhookSettings {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        };
        for name in [
            "Host",
            "host",
            "Content-Type",
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "Upgrade",
            "TE",
            "Trailer",
            "X-Pilot-Signature-256",
            "webhook-id",
            "Webhook-Signature",
            "webhook-timestamp",
            "Webhook-Anything",
        ] {
            let e = with(&[&format!("{name}: x")]).validate().unwrap_err();
            assert_eq!(e, SettingsError::ReservedHeader { name: name.into() });
            assert!(e.to_string().contains("set by pilot"), "{e}");
        }
        for value in [
            "a\u{0}b",
            "a\u{7f}b",
            "a\u{1b}[31m",
            "a\u{85}b",
            "caf\u{e9}",
        ] {
            let e = with(&[&format!("X-Key: {value}")]).validate().unwrap_err();
            assert!(
                matches!(e, SettingsError::HeaderValue { .. }),
                "{value:?}: {e}"
            );
        }
        assert!(with(&["X-Key: a\tb", "Authorization: Bearer t"])
            .validate()
            .is_ok());
        let auth_file = WebhookSettings {
            headers: vec!["authorization: Bearer t".into()],
            bearer_token_file: Some("/t".into()),
            ..Default::default()
        };
        assert!(matches!(
            auth_file.validate(),
            Err(SettingsError::AuthTwice { .. })
        ));

        let url = |s: &str| url::Url::parse(s).unwrap();
        let header = with(&["Authorization: Bearer t"]);
        assert!(validate_target(&url("http://h/"), &header).is_ok());
        let e = validate_target(&url("http://u:p@h/"), &header).unwrap_err();
        assert!(e.to_string().contains("user:password"), "{e}");
        let file = WebhookSettings {
            basic_auth_file: Some("/b".into()),
            ..Default::default()
        };
        let e = validate_target(&url("http://u@h/"), &file).unwrap_err();
        assert!(e.to_string().contains("--basic-auth-file"), "{e}");
        assert!(validate_target(&url("http://u:p@h/"), &with(&["X-A: 1"])).is_ok());
        let host = with(&["Host: x"]);
        assert!(validate_target(&url("http://h/"), &host).is_err());
    }

    #[test]
    fn templates_are_a_preset_name_or_an_absolute_path_without_batching() {
        let with = |t: &str| WebhookSettings {
            template: Some(t.into()),
            ..Default::default()
        };
        assert!(with("slack").validate().is_ok());
        assert!(with("/etc/pilot/alert.j2").validate().is_ok());
        for (bad, want) in [
            ("", "empty"),
            ("./alert.j2", "absolute"),
            ("alert.j2", "absolute"),
            ("Slack", "preset name"),
            ("sl ack", "preset name"),
        ] {
            let e = with(bad).validate().unwrap_err();
            assert!(e.to_string().contains(want), "{bad:?}: {e}");
        }
        let batched = WebhookSettings {
            batch_max: Some(5),
            ..with("slack")
        };
        let e = batched.validate().unwrap_err();
        assert!(e.to_string().contains("--batch-max"), "{e}");
        let var = |k: &str, v: &str, t: Option<&str>| WebhookSettings {
            template: t.map(str::to_string),
            template_vars: [(k.to_string(), v.to_string())].into(),
            ..Default::default()
        };
        assert!(var("routing_key", "R0", Some("pagerduty"))
            .validate()
            .is_ok());
        let e = var("routing_key", "R0", None).validate().unwrap_err();
        assert!(e.to_string().contains("without --template"), "{e}");
        assert!(var("1x", "v", Some("slack")).validate().is_err());
        assert!(var("a-b", "v", Some("slack")).validate().is_err());
        assert!(var("k", "a b", Some("slack")).validate().is_ok());
        assert!(var("k", "a\u{7}b", Some("slack")).validate().is_err());
        let json = serde_json::to_value(var("routing_key", "R0", Some("pagerduty"))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"template": "pagerduty", "template_vars": {"routing_key": "R0"}})
        );
        let shown = var("routing_key", "R0", Some("pagerduty")).redacted();
        assert_eq!(shown.template_vars["routing_key"], "***");
    }

    #[test]
    fn dead_letter_and_retention_settings_default_and_round_trip() {
        let none = WebhookSettings::default();
        assert_eq!(none.dead_letter_max_bytes_or_default(), 64 * 1024 * 1024);
        assert_eq!(
            none.dead_letter_retention_or_default(),
            Duration::from_secs(7 * 24 * 3600)
        );
        assert_eq!(none.retain_max_bytes_or_default(), None, "retention is off");
        let retained = WebhookSettings {
            retain: Some(Duration::from_secs(7200)),
            ..Default::default()
        };
        assert_eq!(
            retained.retain_max_bytes_or_default(),
            Some(DEFAULT_RETAIN_MAX_BYTES)
        );

        // Not durable: they apply to in-memory endpoints too.
        let s = WebhookSettings {
            dead_letter_max_bytes: Some(1 << 20),
            dead_letter_retention: Some(Duration::from_secs(3 * 86400)),
            retain: Some(Duration::from_secs(7200)),
            retain_max_bytes: Some(MIN_ARCHIVE_BYTES),
            ..Default::default()
        };
        assert!(s.validate().is_ok());
        assert_eq!(s.dead_letter_max_bytes_or_default(), 1 << 20);
        assert_eq!(
            s.dead_letter_retention_or_default(),
            Duration::from_secs(3 * 86400)
        );
        assert_eq!(s.retain_max_bytes_or_default(), Some(1024));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "dead_letter_max_bytes": 1048576,
                "dead_letter_retention": "72h",
                "retain": "2h",
                "retain_max_bytes": 1024
            })
        );
        let back: WebhookSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.redacted(), s, "nothing to mask");
        assert_ne!(
            back,
            WebhookSettings {
                retain: None,
                retain_max_bytes: None,
                ..s.clone()
            }
        );
    }

    #[test]
    fn dead_letter_and_retention_settings_refuse_zero_tiny_and_a_size_without_retain() {
        let err = |f: fn(&mut WebhookSettings)| {
            let mut s = WebhookSettings::default();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        let e = err(|s| s.dead_letter_max_bytes = Some(0));
        assert_eq!(
            e,
            "dead_letter_max_bytes must be at least 1KiB (1024 bytes), not 0 bytes"
        );
        let e = err(|s| s.dead_letter_max_bytes = Some(MIN_ARCHIVE_BYTES - 1));
        assert!(e.contains("at least 1KiB"), "{e}");
        let e = err(|s| s.dead_letter_retention = Some(Duration::ZERO));
        assert_eq!(e, "dead_letter_retention must be longer than 0");
        let e = err(|s| s.retain = Some(Duration::ZERO));
        assert_eq!(e, "retain must be longer than 0");
        let e = err(|s| {
            s.retain = Some(Duration::from_secs(60));
            s.retain_max_bytes = Some(512);
        });
        assert!(
            e.starts_with("retain_max_bytes must be at least 1KiB"),
            "{e}"
        );
        let e = err(|s| s.retain_max_bytes = Some(1 << 20));
        assert!(e.contains("--retain-max-bytes needs --retain"), "{e}");
    }

    #[test]
    fn a_settings_object_that_does_not_read_names_the_field() {
        let read = |v: serde_json::Value| {
            let e = serde_json::from_value::<WebhookSettings>(v.clone()).unwrap_err();
            read_error(&v, &e)
        };
        let e = read(serde_json::json!({"events": ["a.*"], "retain": "soon"}));
        assert!(e.starts_with("retain: invalid duration \"soon\""), "{e}");
        let e = read(serde_json::json!({"dead_letter_max_bytes": "1MiB"}));
        assert!(e.starts_with("dead_letter_max_bytes: invalid type"), "{e}");
        let e = read(serde_json::json!({"retain_max_bytes": -1}));
        assert!(e.starts_with("retain_max_bytes: "), "{e}");
    }

    #[test]
    fn redaction_masks_header_values() {
        let s = WebhookSettings {
            headers: vec!["X-Api-Key: hunter2".into()],
            ..Default::default()
        };
        assert_eq!(s.redacted().headers, ["X-Api-Key: ***"]);
    }
}
