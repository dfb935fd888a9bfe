//! `set-webhook` and `clear-webhook`: persist the URL (config `webhook`), its settings (config
//! `webhook_settings`) and the signing secret (`webhook_secret.json`), then apply them to the
//! running daemon (no daemon is fine: they take effect on the next start).
//!
//! Everything is checked before anything is written: the URL, the settings and their files,
//! the secret, and that the secret file (when it is to change) is not corrupt.
//!
//! The Go daemon's `<home>/webhook_url` file (which the daemon falls back on when config.json
//! has no webhook) is migrated once: `set-webhook` moves the webhook into config.json and
//! removes the file, `clear-webhook` removes it with the config key, each saying so on stderr
//! (the output stays Pilot's). Afterwards config.json alone says what the webhook is.

use std::path::PathBuf;

use pilot_core::config::ConfigLock;
use pilot_core::{ConfigError, ConfigFile, WebhookSettings};
use pilot_ipc::protocol::ReloadSecretsReply;
use pilot_ipc::{Client, ClientError, Request};
use serde::Serialize;

use crate::cli::SetWebhookArgs;
use crate::commands::secret::{self, SecretChange};
use crate::context::Context;
use crate::output::{aligned, note, warn, CliError, Output};
use crate::settings;

/// The config key of the persisted settings.
pub const SETTINGS_KEY: &str = "webhook_settings";

/// What `set-webhook`, `clear-webhook`, `webhook add` and `webhook update` print.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WebhookResult {
    /// The webhook's name (`webhook add` and `update`; left out by `set-webhook`, whose output
    /// is Pilot's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub webhook: String,
    pub applied: bool,
    /// The settings persisted (header values masked); left out when all are defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<WebhookSettings>,
    /// Whether requests are signed; only when a secret flag was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<bool>,
    /// The secret `--generate-secret` made (shown this once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `set-webhook URL [settings] [secret]`.
pub async fn set(ctx: &Context, args: &SetWebhookArgs) -> Result<Output, CliError> {
    pilot_core::webhook_url::validate(&args.url)?;
    let url = args.url.trim().to_string();
    let webhook_settings = settings::from_flags(&args.settings)?;
    let change = secret::change_from_flags(&args.secret)?;
    let home = ctx.home()?;
    // Judged again with the policy it will be delivered under: config deny_private_networks
    // and --deny-private (the daemon checks the same).
    let policy = webhook_settings.url_policy(ConfigFile::load(home.config_file())?.url_policy()?);
    let parsed = policy.validate(&args.url)?;
    // The settings with their URL (one Authorization), as the daemon checks them.
    pilot_core::webhook_settings::validate_target(&parsed, &webhook_settings)
        .map_err(|e| CliError::invalid_argument(e.to_string()))?;
    // A corrupt secret file is reported before anything is written.
    let mut store = match &change {
        Some(_) => Some(secret::load(&home, pilot_core::endpoint::DEFAULT)?),
        None => None,
    };
    settings::warn_insecure(&webhook_settings);
    let persisted = webhook_settings.clone();
    let (socket, _lock) = persist(ctx, |c| {
        c.set("webhook", url.clone().into());
        if persisted.is_default() {
            c.remove(SETTINGS_KEY);
        } else {
            c.set(
                SETTINGS_KEY,
                serde_json::to_value(&persisted).unwrap_or_default(),
            );
        }
    })?;
    // config.json now has the webhook, which wins over the Go daemon's file at start; the
    // file goes so the two cannot disagree later (after a clear-webhook, say).
    match pilot_core::go_files::remove_webhook_url_file(&home) {
        Ok(false) => {}
        Ok(true) => note(&format!(
            "moved the webhook into config.json and removed {} (left by the Go daemon)",
            home.webhook_url_file().display()
        )),
        Err(e) => warn(&format!(
            "cannot remove {} (left by the Go daemon): {e}; config.json's webhook wins over it",
            home.webhook_url_file().display()
        )),
    }
    if let (Some(store), Some(change)) = (store.as_mut(), &change) {
        secret::save(store, change)
            .map_err(|e| e.context("the webhook is saved to config.json, but the secret"))?;
    }
    let sent = webhook_settings.clone();
    let applied = apply(&socket, |mut c| {
        let url = url.clone();
        async move {
            c.set_webhook_with(&url, sent).await?;
            let _: ReloadSecretsReply = c.call(&Request::ReloadSecrets { name: None }).await?;
            Ok(())
        }
    })
    .await?;
    // Shown as `info` shows it: password and query values masked.
    let shown = pilot_core::webhook_url::redact_str(&url);
    let result = WebhookResult::new(None, shown, applied, &webhook_settings, change);
    let text = set_text(&result);
    Ok(Output::report(&result, text))
}

/// `clear-webhook`: removes `webhook` and `webhook_settings` (the secret file stays), and the
/// Go daemon's `webhook_url` file, which would otherwise be the webhook at the next start.
pub async fn clear(ctx: &Context) -> Result<Output, CliError> {
    // First, so that a file that cannot be removed changes nothing.
    let home = ctx.home()?;
    let go_file = home.webhook_url_file();
    let removed = pilot_core::go_files::remove_webhook_url_file(&home).map_err(|e| {
        CliError::io(format!(
            "cannot remove {} (the Go daemon's webhook URL, used when config.json has none): \
             {e}; nothing was changed",
            go_file.display()
        ))
    })?;
    if removed {
        note(&format!(
            "removed {} (left by the Go daemon) too, so the webhook stays cleared",
            go_file.display()
        ));
    }
    let (socket, _lock) = persist(ctx, |c| {
        c.remove("webhook");
        c.remove(SETTINGS_KEY);
    })?;
    let applied = apply(
        &socket,
        |mut c| async move { c.clear_webhook().await.map(drop) },
    )
    .await?;
    let result = WebhookResult {
        name: None,
        webhook: String::new(),
        applied,
        settings: None,
        signing: None,
        secret: None,
    };
    let text = result_text("", applied);
    Ok(Output::report(&result, text))
}

/// Edits `config.json` under its lock and returns the socket the edited config points at,
/// with the lock still held: the caller applies the change to the daemon before releasing it,
/// so concurrent changes reach the daemon in the order they reached the file, and the daemon
/// ends with the file's webhook.
fn persist(
    ctx: &Context,
    edit: impl FnOnce(&mut ConfigFile),
) -> Result<(PathBuf, ConfigLock), CliError> {
    let home = ctx.home()?;
    home.ensure()?;
    let held = ConfigFile::update_and_hold(home.config_file(), |c| {
        edit(c);
        Ok::<_, ConfigError>(home.socket_path(ctx.socket_flag.as_deref(), c))
    })?;
    Ok(held)
}

/// Runs `call` on the daemon at `socket`; `false` when no daemon runs there.
async fn apply<F, Fut>(socket: &std::path::Path, call: F) -> Result<bool, CliError>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let client = match Client::connect(socket).await {
        Ok(c) => c,
        Err(ClientError::NotRunning { .. }) => return Ok(false),
        Err(e) => return Err(not_applied(e)),
    };
    call(client).await.map_err(not_applied)?;
    Ok(true)
}

fn not_applied(e: ClientError) -> CliError {
    CliError::from(e)
        .context("saved to config.json, but the running daemon did not take the change")
}

impl WebhookResult {
    /// The result of setting webhook `name` (`None`: `set-webhook`) to `url` with `settings`
    /// and the secret `change`.
    pub fn new(
        name: Option<&str>,
        url: String,
        applied: bool,
        settings: &WebhookSettings,
        change: Option<SecretChange>,
    ) -> WebhookResult {
        let (signing, generated) = match change {
            None => (None, None),
            Some(SecretChange::Remove) => (Some(false), None),
            Some(SecretChange::Set { secret, generated }) => {
                (Some(true), generated.then_some(secret))
            }
        };
        WebhookResult {
            name: name.map(String::from),
            webhook: url,
            applied,
            settings: (!settings.is_default()).then(|| settings.redacted()),
            signing,
            secret: generated,
        }
    }
}

/// The text of `set-webhook`: the URL, the settings and the secret, then where it applies.
fn set_text(r: &WebhookResult) -> String {
    change_text(format!("webhook set: {}", r.webhook), r)
}

/// `heading`, then the settings and the secret of `r`, then where it applies.
pub fn change_text(heading: String, r: &WebhookResult) -> String {
    let mut out = heading;
    if let Some(s) = &r.settings {
        let rows = settings_rows(s);
        if !rows.is_empty() {
            out.push('\n');
            out.push_str(&aligned(&rows, 2));
        }
    }
    match (&r.secret, r.signing) {
        (Some(secret), _) => {
            let show = match &r.name {
                Some(name) => format!("pilotctl webhook secret show --name {name}"),
                None => "pilotctl webhook secret show".to_string(),
            };
            out.push_str(&format!(
                "\nsigning secret (shown once; `{show}` prints it again):\n{secret}"
            ))
        }
        (None, Some(true)) => out.push_str("\nsigning secret saved"),
        (None, Some(false)) => out.push_str("\nsigning secret removed: requests are unsigned"),
        (None, None) => {}
    }
    let applied = result_text("", r.applied);
    let applied = applied.lines().last().unwrap_or_default();
    format!("{out}\n{applied}")
}

/// One `label: value` row per setting that is not at its default (header values as given).
pub fn settings_rows(s: &WebhookSettings) -> Vec<(&'static str, String)> {
    let dur = |d: std::time::Duration| pilot_core::duration::format(d);
    let mut rows = Vec::new();
    if !s.events.is_empty() {
        rows.push(("events", s.events.join(", ")));
    }
    if !s.exclude.is_empty() {
        rows.push(("exclude", s.exclude.join(", ")));
    }
    if let Some(min) = s.min_severity {
        rows.push(("min severity", min.as_str().to_string()));
    }
    if s.durable {
        rows.push(("durable", "yes".to_string()));
    }
    if let Some(n) = s.max_spool_bytes {
        rows.push(("max spool bytes", n.to_string()));
    }
    if let Some(d) = s.discard_after {
        rows.push(("discard after", dur(d)));
    }
    if let Some(d) = s.max_backoff {
        rows.push(("max backoff", dur(d)));
    }
    if let Some(n) = s.dead_letter_max_bytes {
        rows.push(("dead letter max bytes", n.to_string()));
    }
    if let Some(d) = s.dead_letter_retention {
        rows.push(("dead letter retention", dur(d)));
    }
    if let Some(d) = s.retain {
        rows.push(("retain", dur(d)));
    }
    if let Some(n) = s.retain_max_bytes {
        rows.push(("retain max bytes", n.to_string()));
    }
    for h in &s.headers {
        rows.push(("header", h.clone()));
    }
    if let Some(p) = &s.bearer_token_file {
        rows.push(("bearer token file", p.display().to_string()));
    }
    if let Some(p) = &s.basic_auth_file {
        rows.push(("basic auth file", p.display().to_string()));
    }
    if s.insecure_tls {
        rows.push((
            "insecure tls",
            "yes (certificates are not checked)".to_string(),
        ));
    }
    if let Some(n) = s.batch_max {
        rows.push(("batch max", n.to_string()));
    }
    if let Some(d) = s.batch_wait {
        rows.push(("batch wait", dur(d)));
    }
    if let Some(n) = s.concurrency {
        rows.push(("concurrency", n.to_string()));
    }
    if let Some(r) = s.rate_limit {
        rows.push(("rate limit", r.to_string()));
    }
    if let Some(n) = s.rate_burst {
        rows.push(("rate burst", n.to_string()));
    }
    if let Some(d) = s.disable_after {
        rows.push(("disable after", dur(d)));
    }
    if let Some(t) = &s.template {
        rows.push(("template", t.clone()));
    }
    for k in s.template_vars.keys() {
        rows.push(("template var", format!("{k}=***")));
    }
    if s.paused {
        rows.push(("paused", "yes".to_string()));
    }
    rows
}

/// `webhook set: URL` or `webhook cleared`, then where it took effect.
pub fn result_text(webhook: &str, applied: bool) -> String {
    let first = if webhook.is_empty() {
        "webhook cleared".to_string()
    } else {
        format!("webhook set: {webhook}")
    };
    let second = if applied {
        "applied to running daemon"
    } else {
        "will take effect on next daemon start"
    };
    format!("{first}\n{second}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_the_docs() {
        assert_eq!(
            result_text("http://localhost:8080/events", true),
            "webhook set: http://localhost:8080/events\napplied to running daemon"
        );
        assert_eq!(
            result_text("", false),
            "webhook cleared\nwill take effect on next daemon start"
        );
        let plain = WebhookResult {
            name: None,
            webhook: "http://x/".into(),
            applied: false,
            settings: None,
            signing: None,
            secret: None,
        };
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"webhook":"http://x/","applied":false}"#
        );
        assert_eq!(
            set_text(&plain),
            "webhook set: http://x/\nwill take effect on next daemon start"
        );
        let full = WebhookResult {
            settings: Some(WebhookSettings {
                events: vec!["handshake.*".into(), "trust.*".into()],
                headers: vec!["X-Team: ***".into()],
                batch_max: Some(10),
                ..Default::default()
            }),
            signing: Some(true),
            secret: Some("whsec_abc".into()),
            applied: true,
            ..plain
        };
        assert_eq!(
            set_text(&full),
            "webhook set: http://x/\n  events:    handshake.*, trust.*\n  header:    X-Team: ***\n  \
             batch max: 10\nsigning secret (shown once; `pilotctl webhook secret show` prints it \
             again):\nwhsec_abc\napplied to running daemon"
        );
    }

    #[test]
    fn dead_letter_and_retention_settings_have_rows() {
        let s = WebhookSettings {
            dead_letter_max_bytes: Some(1 << 20),
            dead_letter_retention: Some(std::time::Duration::from_secs(86400)),
            retain: Some(std::time::Duration::from_secs(7200)),
            retain_max_bytes: Some(4096),
            ..Default::default()
        };
        assert_eq!(
            settings_rows(&s),
            [
                ("dead letter max bytes", "1048576".to_string()),
                ("dead letter retention", "24h".to_string()),
                ("retain", "2h".to_string()),
                ("retain max bytes", "4096".to_string()),
            ]
        );
        assert!(settings_rows(&WebhookSettings::default()).is_empty());
    }
}
