//! Resolves what the daemon runs with: flags first, then config.json, then defaults. The
//! webhook settings are config `webhook_settings` with each settings flag given overriding its
//! field; the signing secrets come from the secret file. A malformed settings object or secret
//! file stops the start with an error that names the file.
//!
//! The default webhook is `--webhook`, else config `webhook`, else the URL the Go daemon left
//! in `<home>/webhook_url` when the URL policy accepts it ([`pilot_core::go_files`]); what was
//! done with that file is kept in [`Settings::go_webhook_url`] for the log (a refused URL there
//! is reported, not used, and does not stop the start).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::collections::BTreeMap;

use pilot_core::endpoint::EndpointConfig;
use pilot_core::go_files::WebhookUrlFile;
use pilot_core::webhook_settings::SettingsError as InvalidSettings;
use pilot_core::webhook_url::UrlPolicy;
use pilot_core::{ConfigError, ConfigFile, PilotHome, WebhookSettings};
use pilot_webhook::{Url, WebhookOptions};

use crate::cli::Args;

/// The config key of the metrics endpoint's address.
pub const METRICS_KEY: &str = "metrics_addr";

/// Everything the daemon needs to start.
#[derive(Debug)]
pub struct Settings {
    pub home: PilotHome,
    pub socket: PathBuf,
    pub node_id: u32,
    pub webhook: Option<Url>,
    /// The settings of that webhook (config, then flag overrides), validated.
    pub webhook_settings: WebhookSettings,
    pub webhook_options: WebhookOptions,
    /// The named endpoints of config `webhooks` (checked; the flags apply to `default` only).
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// Config `max_webhooks`.
    pub max_webhooks: usize,
    /// Config `log_level`, used when neither --log-level nor RUST_LOG is given.
    pub log_level: Option<String>,
    /// Where to serve `/metrics` (--metrics-addr, else config `metrics_addr`); `None`: off.
    pub metrics_addr: Option<SocketAddr>,
    /// What became of the Go daemon's `webhook_url` file, when there is one (for the log).
    pub go_webhook_url: Option<GoWebhookUrl>,
}

/// What the daemon did with the Go daemon's `<home>/webhook_url` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoWebhookUrl {
    /// Its URL is the default webhook (no `--webhook`, no config `webhook`).
    Used { path: PathBuf },
    /// Its URL is not used: the policy (or the webhook's settings) refuse it, or the file
    /// cannot be read.
    Refused { path: PathBuf, reason: String },
    /// Not read: `--webhook` or config `webhook` (`by`) gives the webhook.
    Ignored { path: PathBuf, by: &'static str },
}

impl GoWebhookUrl {
    /// Logs what was done with the file: `info` when used or ignored, `warn` when refused.
    pub fn log(&self) {
        match self {
            GoWebhookUrl::Used { path } => tracing::info!(
                file = %path.display(),
                "using the webhook URL in {} (left by the Go daemon): config.json has no \
                 webhook; `pilotctl set-webhook` moves it into config.json",
                path.display()
            ),
            GoWebhookUrl::Refused { path, reason } => tracing::warn!(
                file = %path.display(),
                "not using the webhook URL in {} (left by the Go daemon): {reason}",
                path.display()
            ),
            GoWebhookUrl::Ignored { path, by } => tracing::info!(
                file = %path.display(),
                "{} (left by the Go daemon) is ignored: {by} gives the webhook",
                path.display()
            ),
        }
    }
}

/// Why the daemon cannot start with what it was given.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Home(#[from] pilot_core::paths::HomeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--webhook: {0}")]
    FlagUrl(pilot_webhook::UrlError),
    #[error("config file {path}: key \"webhook\": {source}")]
    ConfigUrl {
        path: PathBuf,
        source: pilot_webhook::UrlError,
    },
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error("webhook settings flags: {0}")]
    FlagSettings(InvalidSettings),
    #[error(
        "the webhook and its settings (config file {path}, keys \"webhook\" and \"webhook_settings\", with any flags given): {source}"
    )]
    Target {
        path: PathBuf,
        source: InvalidSettings,
    },
    #[error("--metrics-addr {value:?}: expected IP:PORT, like 127.0.0.1:9464")]
    FlagMetricsAddr { value: String },
    #[error(
        "config file {path}: key \"metrics_addr\": expected \"IP:PORT\", like \"127.0.0.1:9464\""
    )]
    ConfigMetricsAddr { path: PathBuf },
}

impl Settings {
    pub fn resolve(args: &Args) -> Result<Settings, SettingsError> {
        let home = PilotHome::resolve()?;
        home.ensure()?;
        let config = ConfigFile::load(home.config_file())?;
        let socket = home.socket_path(args.socket.as_deref(), &config);
        let node_id = match args.run.node_id {
            Some(n) => n,
            None => config.node_id()?.unwrap_or(0),
        };
        let webhook_options = webhook_options(args, &config)?;
        let base = pilot_core::endpoint::default_settings(&config)?;
        let webhook_settings = args.run.settings.apply(base);
        webhook_settings
            .validate()
            .map_err(SettingsError::FlagSettings)?;
        let endpoints = pilot_core::endpoint::named(&config)?;
        let max_webhooks = pilot_core::endpoint::max_endpoints(&config)?;
        if endpoints.len() + 1 > max_webhooks {
            return Err(SettingsError::Config(ConfigError::InvalidValue {
                path: config.path().to_path_buf(),
                key: pilot_core::endpoint::WEBHOOKS_KEY.into(),
                message: format!(
                    "{} webhooks and `default` are more than max_webhooks ({max_webhooks})",
                    endpoints.len()
                ),
            }));
        }
        // The URL is judged by the policy it will be delivered under (deny_private_networks,
        // and the webhook's own deny_private).
        let policy = webhook_settings.url_policy(UrlPolicy {
            deny_private: webhook_options.deny_private_networks,
        });
        let go_file = home.webhook_url_file();
        let mut go_webhook_url = None;
        let webhook = match (&args.run.webhook, config.webhook()) {
            (Some(flag), _) => {
                if go_file.exists() {
                    go_webhook_url = Some(GoWebhookUrl::Ignored {
                        path: go_file,
                        by: "--webhook",
                    });
                }
                if flag.is_empty() {
                    None
                } else {
                    Some(policy.validate(flag).map_err(SettingsError::FlagUrl)?)
                }
            }
            (None, Some(cfg)) => {
                if go_file.exists() {
                    go_webhook_url = Some(GoWebhookUrl::Ignored {
                        path: go_file,
                        by: "config.json key \"webhook\"",
                    });
                }
                Some(
                    policy
                        .validate(cfg)
                        .map_err(|source| SettingsError::ConfigUrl {
                            path: config.path().to_path_buf(),
                            source,
                        })?,
                )
            }
            (None, None) => match WebhookUrlFile::read(&home, &policy) {
                WebhookUrlFile::Absent => None,
                WebhookUrlFile::Refused { path, reason } => {
                    go_webhook_url = Some(GoWebhookUrl::Refused { path, reason });
                    None
                }
                WebhookUrlFile::Accepted { path, url } => {
                    // Judged with the settings like a configured URL, but a refusal only
                    // leaves it unused.
                    match pilot_core::webhook_settings::validate_target(&url, &webhook_settings) {
                        Ok(()) => {
                            go_webhook_url = Some(GoWebhookUrl::Used { path });
                            Some(url)
                        }
                        Err(e) => {
                            go_webhook_url = Some(GoWebhookUrl::Refused {
                                path,
                                reason: format!(
                                    "with config \"webhook_settings\" and the flags given: {e}"
                                ),
                            });
                            None
                        }
                    }
                }
            },
        };
        if let Some(url) = &webhook {
            pilot_core::webhook_settings::validate_target(url, &webhook_settings).map_err(
                |source| SettingsError::Target {
                    path: config.path().to_path_buf(),
                    source,
                },
            )?;
        }
        let metrics_addr = metrics_addr(args, &config)?;
        Ok(Settings {
            home,
            socket,
            node_id,
            webhook,
            webhook_settings,
            webhook_options,
            endpoints,
            max_webhooks,
            log_level: config_log_level(&config)?,
            metrics_addr,
            go_webhook_url,
        })
    }
}

/// Config `log_level`, checked like `--log-level`: a word that is not a level stops the start
/// instead of logging nothing.
fn config_log_level(config: &ConfigFile) -> Result<Option<String>, SettingsError> {
    let invalid = |message: String| {
        SettingsError::Config(ConfigError::InvalidValue {
            path: config.path().to_path_buf(),
            key: "log_level".into(),
            message,
        })
    };
    match config.get("log_level") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => {
            pilot_core::log_level::check(s).map_err(|e| invalid(e.to_string()))?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(invalid("expected a string, like \"info\"".into())),
    }
}

/// `--metrics-addr`, else config `metrics_addr`: an `IP:PORT`; empty (or null in the config)
/// is off, so `--metrics-addr ""` turns off a configured endpoint for one run.
fn metrics_addr(args: &Args, config: &ConfigFile) -> Result<Option<SocketAddr>, SettingsError> {
    if let Some(value) = &args.run.metrics_addr {
        return match value.trim() {
            "" => Ok(None),
            v => v
                .parse()
                .map(Some)
                .map_err(|_| SettingsError::FlagMetricsAddr {
                    value: value.clone(),
                }),
        };
    }
    let invalid = || SettingsError::ConfigMetricsAddr {
        path: config.path().to_path_buf(),
    };
    match config.get(METRICS_KEY) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

fn webhook_options(args: &Args, config: &ConfigFile) -> Result<WebhookOptions, SettingsError> {
    let mut o = WebhookOptions::default();
    if let Some(n) = args
        .run
        .queue_size
        .or(config.get_u64("queue_size")?.map(|n| n as usize))
    {
        o.queue_size = n;
    }
    if let Some(d) = args
        .run
        .webhook_timeout
        .or(config.get_duration("webhook_timeout")?)
    {
        o.timeout = d;
    }
    if let Some(n) = args.run.max_attempts.or(config
        .get_u64("max_attempts")?
        .map(|n| n.min(u32::MAX as u64) as u32))
    {
        o.max_attempts = n;
    }
    if let Some(d) = args.run.backoff.or(config.get_duration("backoff")?) {
        o.backoff = d;
    }
    if let Some(n) = args.run.circuit_threshold.or(config
        .get_u64("circuit_threshold")?
        .map(|n| n.min(u32::MAX as u64) as u32))
    {
        o.circuit_threshold = n;
    }
    if let Some(d) = args
        .run
        .circuit_cooldown
        .or(config.get_duration("circuit_cooldown")?)
    {
        o.circuit_cooldown = d;
    }
    o.deny_private_networks = config.url_policy()?.deny_private;
    if o.queue_size == 0 {
        return Err(SettingsError::Zero { what: "queue size" });
    }
    if o.max_attempts == 0 {
        return Err(SettingsError::Zero {
            what: "max attempts",
        });
    }
    if o.circuit_threshold == 0 {
        return Err(SettingsError::Zero {
            what: "circuit threshold",
        });
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_addr_comes_from_the_flag_then_the_config() {
        use clap::Parser;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        let resolve = |flags: &[&str], config: &str| {
            std::fs::write(&path, config).unwrap();
            let config = ConfigFile::load(&path).unwrap();
            let mut argv = vec!["pilot-daemon"];
            argv.extend_from_slice(flags);
            metrics_addr(&Args::parse_from(argv), &config)
        };
        let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(resolve(&[], "{}").unwrap(), None);
        let configured = r#"{"metrics_addr": "127.0.0.1:9464"}"#;
        assert_eq!(resolve(&[], configured).unwrap(), addr("127.0.0.1:9464"));
        let flag = ["--metrics-addr", "[::1]:9000"];
        assert_eq!(resolve(&flag, configured).unwrap(), addr("[::1]:9000"));
        assert_eq!(resolve(&["--metrics-addr", ""], configured).unwrap(), None);
        assert_eq!(resolve(&[], r#"{"metrics_addr": ""}"#).unwrap(), None);
        let msg = resolve(&["--metrics-addr", "localhost:9464"], "{}")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("--metrics-addr \"localhost:9464\": expected IP:PORT"),
            "{msg}"
        );
        for bad in [r#"{"metrics_addr": 9464}"#, r#"{"metrics_addr": "9464"}"#] {
            let msg = resolve(&[], bad).unwrap_err().to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("metrics_addr"), "{msg}");
        }
    }

    #[test]
    fn bad_config_settings_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        for bad in [
            r#"{"webhook_settings": {"events": ["a*"]}}"#,
            r#"{"webhook_settings": {"batch_max": "ten"}}"#,
            r#"{"webhook_settings": {"batch_wait": "soon"}}"#,
            r#"{"webhook_settings": [1]}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let config = ConfigFile::load(&path).unwrap();
            let msg = pilot_core::endpoint::default_settings(&config)
                .unwrap_err()
                .to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("webhook_settings"), "{msg}");
        }
        std::fs::write(
            &path,
            r#"{"webhook_settings": {"durable": true, "future": 1}}"#,
        )
        .unwrap();
        let config = ConfigFile::load(&path).unwrap();
        assert!(
            pilot_core::endpoint::default_settings(&config)
                .unwrap()
                .durable
        );
    }
}
