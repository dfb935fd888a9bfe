//! Resolves what the daemon runs with: flags first, then config.json, then defaults.

use std::path::PathBuf;

use pilot_core::{ConfigError, ConfigFile, PilotHome};
use pilot_webhook::{Url, WebhookOptions};

use crate::cli::Args;

/// Everything the daemon needs to start.
#[derive(Debug)]
pub struct Settings {
    pub home: PilotHome,
    pub socket: PathBuf,
    pub node_id: u32,
    pub webhook: Option<Url>,
    pub webhook_options: WebhookOptions,
    /// Config `log_level`, used when neither --log-level nor RUST_LOG is given.
    pub log_level: Option<String>,
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
}

impl Settings {
    pub fn resolve(args: &Args) -> Result<Settings, SettingsError> {
        let home = PilotHome::resolve()?;
        home.ensure()?;
        let config = ConfigFile::load(home.config_file())?;
        let socket = home.socket_path(args.socket.as_deref(), &config);
        let node_id = match args.node_id {
            Some(n) => n,
            None => config.node_id()?.unwrap_or(0),
        };
        let webhook = match (&args.webhook, config.webhook()) {
            (Some(flag), _) if flag.is_empty() => None,
            (Some(flag), _) => {
                Some(pilot_webhook::validate_url(flag).map_err(SettingsError::FlagUrl)?)
            }
            (None, Some(cfg)) => Some(pilot_webhook::validate_url(cfg).map_err(|source| {
                SettingsError::ConfigUrl {
                    path: config.path().to_path_buf(),
                    source,
                }
            })?),
            (None, None) => None,
        };
        let webhook_options = webhook_options(args, &config)?;
        Ok(Settings {
            home,
            socket,
            node_id,
            webhook,
            webhook_options,
            log_level: config.get_str("log_level").map(String::from),
        })
    }
}

fn webhook_options(args: &Args, config: &ConfigFile) -> Result<WebhookOptions, SettingsError> {
    let mut o = WebhookOptions::default();
    if let Some(n) = args
        .queue_size
        .or(config.get_u64("queue_size")?.map(|n| n as usize))
    {
        o.queue_size = n;
    }
    if let Some(d) = args
        .webhook_timeout
        .or(config.get_duration("webhook_timeout")?)
    {
        o.timeout = d;
    }
    if let Some(n) = args.max_attempts.or(config
        .get_u64("max_attempts")?
        .map(|n| n.min(u32::MAX as u64) as u32))
    {
        o.max_attempts = n;
    }
    if let Some(d) = args.backoff.or(config.get_duration("backoff")?) {
        o.backoff = d;
    }
    if let Some(n) = args.circuit_threshold.or(config
        .get_u64("circuit_threshold")?
        .map(|n| n.min(u32::MAX as u64) as u32))
    {
        o.circuit_threshold = n;
    }
    if let Some(d) = args
        .circuit_cooldown
        .or(config.get_duration("circuit_cooldown")?)
    {
        o.circuit_cooldown = d;
    }
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
