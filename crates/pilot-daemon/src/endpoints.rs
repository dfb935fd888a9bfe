//! The daemon's named webhook endpoints: one [`WebhookPlugin`] (its own bus subscription,
//! worker, retries, circuit, stats, delivery log, spool) and one [`SecretKeeper`] (its own
//! secret file) per name. The endpoint `default` always exists (idle while no URL is set), so
//! Pilot's `set-webhook`, `clear-webhook` and `info.webhook` keep acting on it.
//!
//! Adding, updating, pausing or removing one endpoint touches only that endpoint's plugin:
//! the others' subscriptions, queues and spools are never changed.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt as _;
use std::sync::{Arc, Mutex, MutexGuard};

use pilot_core::endpoint::DEFAULT;
use pilot_core::{Bus, PilotHome, SecretStore, WebhookSettings};
use pilot_webhook::{Spool, Url, WebhookError, WebhookOptions, WebhookPlugin};
use tokio_util::sync::CancellationToken;

use crate::secrets::SecretKeeper;

/// One endpoint: its plugin and its secrets.
#[derive(Clone)]
pub struct Endpoint {
    pub plugin: Arc<WebhookPlugin>,
    pub secrets: Arc<SecretKeeper>,
    /// Stops its secret keeper's expiry timer.
    stop: CancellationToken,
}

/// Why an endpoint change was refused.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Name(#[from] pilot_core::endpoint::NameError),
    #[error("no webhook is named {name:?} (see `pilotctl webhook list`)")]
    NotFound { name: String },
    #[error(
        "a webhook named {name:?} exists already (change it with `pilotctl webhook update {name}`)"
    )]
    Exists { name: String },
    #[error("the daemon runs {max} webhooks, the most config `max_webhooks` allows")]
    Limit { max: usize },
    #[error(
        "webhook {name:?} is durable and still holds {pending} undelivered events; \
         `--force` removes it and discards them"
    )]
    Backlog { name: String, pending: u64 },
    #[error("webhook {name:?}: {source}")]
    Webhook {
        name: String,
        #[source]
        source: WebhookError,
    },
    #[error("webhook {name:?}: {message}")]
    Io { name: String, message: String },
}

/// Every endpoint the daemon runs, by name.
pub struct Endpoints {
    bus: Bus,
    home: PilotHome,
    /// The options every endpoint starts from (its name and spool are its own).
    base: WebhookOptions,
    max: usize,
    map: Mutex<BTreeMap<String, Endpoint>>,
    /// Serializes changes, so a check and the change it guards are one step.
    changing: tokio::sync::Mutex<()>,
    stop: CancellationToken,
}

impl Endpoints {
    /// The registry with the endpoint `default`, idle (no URL) and using `default_spool` (an
    /// existing spool opened before the bus started) if given.
    pub fn new(
        bus: Bus,
        home: PilotHome,
        base: WebhookOptions,
        max: usize,
        stop: CancellationToken,
        default_spool: Option<Arc<Spool>>,
    ) -> Result<Endpoints, EndpointError> {
        let endpoints = Endpoints {
            bus,
            home,
            base,
            max: max.max(1),
            map: Mutex::default(),
            changing: tokio::sync::Mutex::new(()),
            stop,
        };
        let default = endpoints.start(DEFAULT, default_spool)?;
        endpoints.lock().insert(DEFAULT.to_string(), default);
        Ok(endpoints)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Endpoint>> {
        // Entries are inserted and removed whole: a poisoned lock still holds a valid map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new idle endpoint `name` (not yet in the map), with its secrets applied.
    fn start(&self, name: &str, spool: Option<Arc<Spool>>) -> Result<Endpoint, EndpointError> {
        let mut options = self.base.clone();
        options.name = name.to_string();
        options.spool_path = Some(self.home.endpoint_spool_file(name));
        options.spool = spool;
        let plugin = Arc::new(
            WebhookPlugin::start_with(self.bus.clone(), None, options).map_err(|source| {
                EndpointError::Webhook {
                    name: name.into(),
                    source,
                }
            })?,
        );
        let path = self.home.endpoint_secret_file(name);
        let store = SecretStore::load(&path).map_err(|e| EndpointError::Io {
            name: name.into(),
            message: e.to_string(),
        })?;
        let secrets = SecretKeeper::new(name, store, plugin.clone());
        let stop = self.stop.child_token();
        tokio::spawn(secrets.clone().run(stop.clone()));
        Ok(Endpoint {
            plugin,
            secrets,
            stop,
        })
    }

    /// Creates the directory of a named endpoint (owner-only), for its spool and secrets.
    fn ensure_dir(&self, name: &str) -> Result<(), EndpointError> {
        if name == DEFAULT {
            return Ok(());
        }
        let dir = self.home.endpoint_dir(name);
        let io = |e: std::io::Error| EndpointError::Io {
            name: name.into(),
            message: format!("{}: {e}", dir.display()),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        Ok(())
    }

    /// The options every endpoint starts from.
    pub fn options(&self) -> &WebhookOptions {
        &self.base
    }

    /// The endpoint `name`.
    pub fn get(&self, name: &str) -> Result<Endpoint, EndpointError> {
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| EndpointError::NotFound { name: name.into() })
    }

    /// The endpoint `default`.
    pub fn default_endpoint(&self) -> Endpoint {
        // Inserted by `new` and never removed.
        self.get(DEFAULT)
            .unwrap_or_else(|_| unreachable!("the default endpoint is never removed"))
    }

    /// Every endpoint, `default` first, then by name.
    pub fn all(&self) -> Vec<(String, Endpoint)> {
        let map = self.lock();
        let mut all: Vec<_> = map.iter().map(|(n, e)| (n.clone(), e.clone())).collect();
        all.sort_by_key(|(n, _)| (n != DEFAULT, n.clone()));
        all
    }

    /// Starts the endpoints config.json names at daemon start (their spools opened already, if
    /// they had one). The default one is configured by the caller.
    pub fn restore(
        &self,
        name: &str,
        url: Url,
        settings: WebhookSettings,
        spool: Option<Arc<Spool>>,
    ) -> Result<(), EndpointError> {
        pilot_core::endpoint::validate_name(name)?;
        self.create(name, url, settings, spool)
    }

    /// Starts the new endpoint `name` with `url` and `settings` and adds it, within the limit;
    /// on an error nothing is added (the plugin, never configured, stops when dropped).
    fn create(
        &self,
        name: &str,
        url: Url,
        settings: WebhookSettings,
        spool: Option<Arc<Spool>>,
    ) -> Result<(), EndpointError> {
        if self.lock().len() >= self.max {
            return Err(EndpointError::Limit { max: self.max });
        }
        self.ensure_dir(name)?;
        let endpoint = self.start(name, spool)?;
        if let Err(source) = endpoint.plugin.configure(Some((url, settings))) {
            endpoint.stop.cancel();
            return Err(EndpointError::Webhook {
                name: name.into(),
                source,
            });
        }
        self.lock().insert(name.to_string(), endpoint);
        Ok(())
    }

    /// Adds the endpoint `name` (`create`) or replaces the URL and settings of an existing
    /// one. The default endpoint always exists, so for it both replace. The secrets are re-read
    /// from its file (the CLI may have changed them with the webhook). Nothing changes on an
    /// error.
    pub async fn put(
        &self,
        name: &str,
        url: Url,
        settings: WebhookSettings,
        create: bool,
    ) -> Result<(), EndpointError> {
        pilot_core::endpoint::validate_name(name)?;
        let _changing = self.changing.lock().await;
        let existing = self.lock().get(name).cloned();
        let webhook = |source| EndpointError::Webhook {
            name: name.into(),
            source,
        };
        match existing {
            Some(endpoint) => {
                if create && name != DEFAULT {
                    return Err(EndpointError::Exists { name: name.into() });
                }
                let secrets = endpoint
                    .secrets
                    .read_file()
                    .map_err(|e| EndpointError::Io {
                        name: name.into(),
                        message: e.to_string(),
                    })?;
                endpoint
                    .plugin
                    .configure(Some((url, settings)))
                    .map_err(webhook)?;
                endpoint.secrets.install(secrets);
            }
            None if !create => return Err(EndpointError::NotFound { name: name.into() }),
            None => self.create(name, url, settings, None)?,
        }
        Ok(())
    }

    /// Clears the default endpoint's webhook (Pilot's `clear-webhook`).
    pub fn clear_default(&self) -> Result<(), EndpointError> {
        self.default_endpoint()
            .plugin
            .configure(None)
            .map_err(|source| EndpointError::Webhook {
                name: DEFAULT.into(),
                source,
            })
    }

    /// Removes the endpoint `name` and what it holds (the default one is cleared instead, and
    /// keeps its spool as `clear-webhook` does). A durable endpoint with undelivered events is
    /// removed only with `force`. Returns whether it existed and how many undelivered events
    /// went with it.
    pub async fn remove(&self, name: &str, force: bool) -> Result<(bool, u64), EndpointError> {
        pilot_core::endpoint::validate_name(name)?;
        let _changing = self.changing.lock().await;
        let Some(endpoint) = self.lock().get(name).cloned() else {
            return Ok((false, 0));
        };
        if name == DEFAULT {
            self.clear_default()?;
            return Ok((true, 0));
        }
        let stats = endpoint.plugin.stats();
        let spooled = stats.spool.as_ref().map_or(0, |s| s.depth);
        let discarded = stats.accounting.pending.max(spooled);
        let durable = stats.settings.as_ref().is_some_and(|s| s.durable);
        if (durable || spooled > 0) && discarded > 0 && !force {
            return Err(EndpointError::Backlog {
                name: name.into(),
                pending: discarded,
            });
        }
        self.lock().remove(name);
        endpoint.stop.cancel();
        endpoint.plugin.configure(None).ok();
        endpoint.plugin.shutdown().await;
        if spooled > 0 {
            let kept = endpoint.plugin.archive_backlog().await;
            tracing::info!(webhook = %name, kept, "the removed webhook's backlog is kept as dead letters");
        }
        drop(endpoint);
        let dir = self.home.endpoint_dir(name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(webhook = %name, dir = %dir.display(), error = %e, "the removed webhook's directory could not be deleted");
            }
        }
        tracing::info!(webhook = %name, discarded, "webhook removed");
        Ok((true, discarded))
    }

    /// Pauses or resumes the endpoint `name`; a resume also re-enables a disabled one.
    pub fn set_paused(&self, name: &str, paused: bool) -> Result<Endpoint, EndpointError> {
        let endpoint = self.get(name)?;
        if paused {
            endpoint.plugin.set_paused(true);
        } else {
            endpoint
                .plugin
                .resume()
                .map_err(|source| EndpointError::Webhook {
                    name: name.into(),
                    source,
                })?;
        }
        Ok(endpoint)
    }

    /// Shuts every endpoint down at once (each drains within its own bound).
    pub async fn shutdown(&self) {
        let all = self.all();
        let drains = all.iter().map(|(_, e)| e.plugin.shutdown());
        futures_util::future::join_all(drains).await;
    }
}
