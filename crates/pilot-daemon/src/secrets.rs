//! The signing secrets in force: read from `<home>/webhook_secret.json`, handed to the webhook
//! plugin (current first, then those in a rotation's grace period), re-read on `reload_secrets`
//! and `set_webhook`, and re-applied when a grace period ends so an expired secret stops
//! signing at its expiry. Secrets are never logged: only how many there are.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pilot_core::secrets::SecretError;
use pilot_core::SecretStore;
use pilot_ipc::protocol::ReloadSecretsReply;
use pilot_webhook::WebhookPlugin;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Holds the secret file's contents and keeps the plugin's secrets in step with them.
pub struct SecretKeeper {
    /// The endpoint's name, for the logs.
    name: String,
    path: PathBuf,
    plugin: Arc<WebhookPlugin>,
    store: Mutex<SecretStore>,
    changed: Notify,
}

impl SecretKeeper {
    /// Applies `store` to `plugin` at once.
    pub fn new(name: &str, store: SecretStore, plugin: Arc<WebhookPlugin>) -> Arc<SecretKeeper> {
        warn_if_tightened(name, &store);
        let keeper = Arc::new(SecretKeeper {
            name: name.to_string(),
            path: store.path().to_path_buf(),
            plugin,
            store: Mutex::new(store),
            changed: Notify::new(),
        });
        let reply = keeper.apply();
        tracing::info!(
            webhook = %keeper.name,
            signing = reply.signing,
            active_secrets = reply.active_secrets,
            "webhook signing secrets loaded"
        );
        keeper
    }

    fn lock(&self) -> MutexGuard<'_, SecretStore> {
        // The store is replaced whole under the lock, so a poisoned lock still holds a store.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the file and applies it. On an error (corrupt or unreadable file) the secrets
    /// in force stay as they were.
    pub fn reload(&self) -> Result<ReloadSecretsReply, SecretError> {
        Ok(self.install(self.read_file()?))
    }

    /// Reads the secret file without applying it.
    pub fn read_file(&self) -> Result<SecretStore, SecretError> {
        SecretStore::load(&self.path)
    }

    /// Applies a store read with [`SecretKeeper::read_file`].
    pub fn install(&self, store: SecretStore) -> ReloadSecretsReply {
        warn_if_tightened(&self.name, &store);
        *self.lock() = store;
        let reply = self.apply();
        self.changed.notify_one();
        tracing::info!(
            webhook = %self.name,
            signing = reply.signing,
            active_secrets = reply.active_secrets,
            "webhook signing secrets reloaded"
        );
        reply
    }

    /// Hands the secrets valid now to the plugin.
    fn apply(&self) -> ReloadSecretsReply {
        let now = jiff::Timestamp::now();
        let active: Vec<String> = self
            .lock()
            .active(now)
            .into_iter()
            .map(|s| s.secret.clone())
            .collect();
        let reply = ReloadSecretsReply {
            signing: !active.is_empty(),
            active_secrets: active.len(),
        };
        self.plugin.set_secrets(active);
        reply
    }

    /// How long until the next grace period ends (`None`: no secret expires).
    fn next_expiry(&self) -> Option<Duration> {
        let now = jiff::Timestamp::now();
        let next = self
            .lock()
            .active(now)
            .iter()
            .filter_map(|s| s.expires_at)
            .min()?;
        let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
        // Just past the expiry, so the secret no longer counts as active when we look.
        Some(wait + Duration::from_millis(5))
    }

    /// Re-applies the secrets whenever a grace period ends, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let wait = self.next_expiry();
            let sleep = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.changed.notified() => {}
                _ = sleep => {
                    let reply = self.apply();
                    tracing::info!(
                        webhook = %self.name,
                        active_secrets = reply.active_secrets,
                        "a rotated webhook secret's grace period ended; it no longer signs"
                    );
                }
            }
        }
    }
}

/// Says so when the secret file was readable by others (it has been made owner-only).
fn warn_if_tightened(name: &str, store: &SecretStore) {
    if let Some(mode) = store.tightened_from() {
        tracing::warn!(
            webhook = %name,
            file = %store.path().display(),
            mode = format!("{mode:o}"),
            "the secret file was readable by others; it is now owner-only (0600)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn secrets_follow_the_file_and_expire_at_the_end_of_the_grace_period() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("webhook_secret.json");
        let bus = pilot_core::Bus::new(0);
        let plugin = Arc::new(WebhookPlugin::start(bus, None, Default::default()));
        let keeper =
            SecretKeeper::new("default", SecretStore::load(&path).unwrap(), plugin.clone());
        assert!(!plugin.stats().signing);

        let mut store = SecretStore::load(&path).unwrap();
        let now = jiff::Timestamp::now();
        store.set("old".into(), now);
        store.rotate("new".into(), now, Duration::from_millis(300));
        store.save().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(keeper.clone().run(stop.clone()));
        let reply = keeper.reload().unwrap();
        assert_eq!((reply.signing, reply.active_secrets), (true, 2));
        assert_eq!(plugin.stats().signatures, 2);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(plugin.stats().signatures, 1, "the old secret expired");

        std::fs::write(&path, "{broken").unwrap();
        assert!(keeper.reload().is_err());
        assert_eq!(plugin.stats().signatures, 1, "a bad file changes nothing");
        stop.cancel();
    }
}
