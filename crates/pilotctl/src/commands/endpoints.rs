//! `webhook add|list|show|update|remove|pause|resume`: named webhooks, persisted in
//! config.json (`webhooks`, and `webhook`/`webhook_settings` for `default`) and applied to the
//! running daemon.
//!
//! A change is checked first (name, URL, settings and their files, secret), then, with
//! config.json locked, sent to the running daemon, and written only if the daemon took it (or
//! none runs): a change the daemon refuses never reaches the file.

use pilot_core::config::ConfigLock;
use pilot_core::endpoint::{self, EndpointConfig, DEFAULT};
use pilot_core::{ConfigFile, WebhookSettings};
use pilot_ipc::protocol::{
    Accounting, ArchiveStatus, EndpointReply, EndpointStatus, InfoReply, PauseReply, RemoveReply,
};
use pilot_ipc::{Client, ClientError, Request};
use serde::Serialize;

use crate::cli::{AddArgs, RemoveArgs, UpdateArgs};
use crate::commands::secret::{self, SecretChange};
use crate::commands::webhook::{change_text, settings_rows, WebhookResult};
use crate::context::Context;
use crate::output::{aligned, code, Align, CliError, Output, Table};
use crate::settings;

/// Checks that webhook `name` is configured (the default one always is).
pub fn require(ctx: &Context, name: &str) -> Result<(), CliError> {
    endpoint::validate_name(name).map_err(|e| CliError::invalid_argument(e.to_string()))?;
    if name == DEFAULT {
        return Ok(());
    }
    let home = ctx.home()?;
    let config = ConfigFile::load(home.config_file())?;
    if endpoint::named(&config)?.contains_key(name) {
        Ok(())
    } else {
        Err(not_found(name))
    }
}

fn not_found(name: &str) -> CliError {
    CliError::new(
        code::NOT_FOUND,
        format!("no webhook is named {name:?} (see `pilotctl webhook list`)"),
    )
}

/// config.json, locked until the lock is dropped, and the socket it points at.
fn locked(ctx: &Context) -> Result<(ConfigFile, ConfigLock, std::path::PathBuf), CliError> {
    let home = ctx.home()?;
    home.ensure()?;
    let (config, lock) = ConfigFile::lock_and_load(home.config_file())?;
    let socket = home.socket_path(ctx.socket_flag.as_deref(), &config);
    Ok((config, lock, socket))
}

/// Runs `call` on the daemon at `socket`; `None` when no daemon runs there.
async fn on_daemon<T, F, Fut>(socket: &std::path::Path, call: F) -> Result<Option<T>, CliError>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let client = match Client::connect(socket).await {
        Ok(c) => c,
        Err(ClientError::NotRunning { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(call(client).await?))
}

/// Writes `config` after the daemon took the change.
fn save_after_daemon(config: &ConfigFile, applied: bool) -> Result<(), CliError> {
    config.save().map_err(|e| {
        let e = CliError::from(e);
        if applied {
            e.context("the running daemon took the change, but config.json could not be written")
        } else {
            e
        }
    })
}

/// `webhook add NAME URL [settings] [secret]`.
pub async fn add(ctx: &Context, args: &AddArgs) -> Result<Output, CliError> {
    let name = args.name.trim();
    endpoint::validate_name(name).map_err(|e| CliError::invalid_argument(e.to_string()))?;
    if name == DEFAULT {
        return Err(CliError::new(
            code::ALREADY_EXISTS,
            "`default` is the webhook of `set-webhook`; set it with `pilotctl set-webhook URL` \
             or change it with `pilotctl webhook update default`",
        ));
    }
    let parsed = pilot_core::webhook_url::validate(&args.url)?;
    let url = args.url.trim().to_string();
    let webhook_settings = settings::from_flags(&args.settings)?;
    // The settings with their URL (NATS-only and HTTP-only flags), as the daemon checks them.
    pilot_core::webhook_settings::validate_target(&parsed, &webhook_settings)
        .map_err(|e| CliError::invalid_argument(e.to_string()))?;
    let change = secret::change_from_flags(&args.secret)?;
    settings::warn_insecure(&webhook_settings);
    let home = ctx.home()?;
    let (mut config, _lock, socket) = locked(ctx)?;
    let existing = endpoint::named(&config)?;
    if existing.contains_key(name) {
        return Err(CliError::new(
            code::ALREADY_EXISTS,
            format!(
                "a webhook named {name:?} exists already (change it with `pilotctl webhook \
                 update {name}`)"
            ),
        ));
    }
    let max = endpoint::max_endpoints(&config)?;
    if existing.len() + 1 >= max {
        return Err(CliError::new(
            code::LIMIT_REACHED,
            format!("{max} webhooks are configured, the most config `max_webhooks` allows"),
        ));
    }
    let entry = EndpointConfig {
        url,
        settings: webhook_settings,
    };
    let at = Changing {
        name,
        config: &mut config,
        socket: &socket,
    };
    let result = commit(&home, at, entry, change, true).await?;
    let text = change_text(format!("webhook {name} added: {}", result.webhook), &result);
    Ok(Output::report(&result, text))
}

/// The webhook a change is for, in config.json held locked, and the daemon's socket.
struct Changing<'a> {
    name: &'a str,
    config: &'a mut ConfigFile,
    socket: &'a std::path::Path,
}

/// The end of `add` (`create`) and `update`: saves the secret (first, so the daemon signs from
/// the first delivery), sends the webhook to the running daemon, and writes `entry` to
/// config.json if the daemon took it (or none runs).
async fn commit(
    home: &pilot_core::PilotHome,
    at: Changing<'_>,
    entry: EndpointConfig,
    change: Option<SecretChange>,
    create: bool,
) -> Result<WebhookResult, CliError> {
    let (name, url, settings) = (
        at.name.to_string(),
        entry.url.clone(),
        Box::new(entry.settings.clone()),
    );
    let request = if create {
        Request::AddWebhook {
            name,
            url,
            settings,
        }
    } else {
        Request::UpdateWebhook {
            name,
            url,
            settings,
        }
    };
    if let Some(change) = &change {
        let mut store = secret::load(home, at.name)?;
        secret::save(&mut store, change)?;
    }
    let applied = on_daemon(at.socket, |mut c| async move {
        let _: EndpointReply = c.call(&request).await?;
        Ok(())
    })
    .await?
    .is_some();
    endpoint::put(at.config, at.name, &entry);
    save_after_daemon(at.config, applied)?;
    let shown = pilot_core::webhook_url::redact_str(&entry.url);
    Ok(WebhookResult::new(
        Some(at.name),
        shown,
        applied,
        &entry.settings,
        change,
    ))
}

fn applied_text(applied: bool) -> &'static str {
    if applied {
        "applied to running daemon"
    } else {
        "will take effect on next daemon start"
    }
}

/// The saved URL and settings of webhook `name`.
fn saved(config: &ConfigFile, name: &str) -> Result<EndpointConfig, CliError> {
    if name == DEFAULT {
        let url = config.webhook().ok_or_else(|| {
            CliError::new(
                code::NOT_FOUND,
                "the default webhook is not set (set it with `pilotctl set-webhook URL`)",
            )
        })?;
        return Ok(EndpointConfig {
            url: url.to_string(),
            settings: endpoint::default_settings(config)?,
        });
    }
    endpoint::named(config)?
        .remove(name)
        .ok_or_else(|| not_found(name))
}

/// `webhook update NAME [--url URL] [settings] [--no-*] [secret]`: changes only what is given.
pub async fn update(ctx: &Context, args: &UpdateArgs) -> Result<Output, CliError> {
    let name = args.name.trim();
    endpoint::validate_name(name).map_err(|e| CliError::invalid_argument(e.to_string()))?;
    if let Some(url) = &args.url {
        pilot_core::webhook_url::validate(url)?;
    }
    let change = secret::change_from_flags(&args.secret)?;
    let home = ctx.home()?;
    let (mut config, _lock, socket) = locked(ctx)?;
    let old = saved(&config, name)?;
    let url = args
        .url
        .as_deref()
        .map_or(old.url.clone(), |u| u.trim().to_string());
    let new_settings = args.settings.apply(args.clear.apply(old.settings.clone()));
    settings::check(&new_settings)?;
    let parsed = pilot_core::webhook_url::validate(&url)?;
    pilot_core::webhook_settings::validate_target(&parsed, &new_settings)
        .map_err(|e| CliError::invalid_argument(e.to_string()))?;
    settings::warn_insecure(&new_settings);
    let entry = EndpointConfig {
        url,
        settings: new_settings,
    };
    let at = Changing {
        name,
        config: &mut config,
        socket: &socket,
    };
    let result = commit(&home, at, entry, change, false).await?;
    let text = change_text(
        format!("webhook {name} updated: {}", result.webhook),
        &result,
    );
    Ok(Output::report(&result, text))
}

#[derive(Debug, Serialize)]
struct RemoveResult {
    name: String,
    applied: bool,
    /// Undelivered events discarded with it.
    discarded: u64,
}

/// `webhook remove NAME [--force]`.
pub async fn remove(ctx: &Context, args: &RemoveArgs) -> Result<Output, CliError> {
    let name = args.name.trim();
    endpoint::validate_name(name).map_err(|e| CliError::invalid_argument(e.to_string()))?;
    let home = ctx.home()?;
    let (mut config, _lock, socket) = locked(ctx)?;
    saved(&config, name)?;
    let request = Request::RemoveWebhook {
        name: name.to_string(),
        force: args.force,
    };
    let reply: Option<RemoveReply> =
        on_daemon(&socket, |mut c| async move { c.call(&request).await })
            .await
            .map_err(|e| {
                if e.code == "backlog" {
                    e.with_suffix("; nothing was changed")
                } else {
                    e
                }
            })?;
    let spool = home.endpoint_spool_file(name);
    if reply.is_none() && name != DEFAULT && !args.force && spool.exists() {
        return Err(CliError::new(
            code::BACKLOG,
            format!(
                "webhook {name:?} has a durable spool at {} that may hold undelivered events; \
                 `--force` removes it and discards them (nothing was changed)",
                spool.display()
            ),
        ));
    }
    endpoint::remove(&mut config, name);
    save_after_daemon(&config, reply.is_some())?;
    if reply.is_none() && name != DEFAULT {
        let dir = home.endpoint_dir(name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(CliError::io(format!(
                    "removed from config.json, but {} could not be deleted: {e}",
                    dir.display()
                )));
            }
        }
    }
    let result = RemoveResult {
        name: name.to_string(),
        applied: reply.is_some(),
        discarded: reply.map_or(0, |r| r.discarded),
    };
    let mut text = format!("webhook {name} removed");
    if result.discarded > 0 {
        text.push_str(&format!(
            " ({} undelivered events discarded)",
            result.discarded
        ));
    }
    text.push('\n');
    text.push_str(applied_text(result.applied));
    Ok(Output::report(&result, text))
}

#[derive(Debug, Serialize)]
struct PauseResult {
    name: String,
    state: String,
    applied: bool,
}

/// `webhook pause NAME` / `webhook resume NAME`: persisted (`paused` in its settings).
pub async fn pause(ctx: &Context, name: &str, paused: bool) -> Result<Output, CliError> {
    let name = name.trim();
    endpoint::validate_name(name).map_err(|e| CliError::invalid_argument(e.to_string()))?;
    let (mut config, _lock, socket) = locked(ctx)?;
    let mut entry = saved(&config, name)?;
    let request = if paused {
        Request::PauseWebhook { name: name.into() }
    } else {
        Request::ResumeWebhook { name: name.into() }
    };
    let reply: Option<PauseReply> =
        on_daemon(&socket, |mut c| async move { c.call(&request).await }).await?;
    entry.settings.paused = paused;
    endpoint::put(&mut config, name, &entry);
    save_after_daemon(&config, reply.is_some())?;
    let applied = reply.is_some();
    let state = reply
        .map(|r| r.state)
        .unwrap_or_else(|| if paused { "paused" } else { "active" }.to_string());
    let result = PauseResult {
        name: name.to_string(),
        applied,
        state,
    };
    let text = format!(
        "webhook {name} {}\n{}",
        if paused { "paused" } else { "resumed" },
        applied_text(result.applied)
    );
    Ok(Output::report(&result, text))
}

/// One row of `webhook list --json`.
#[derive(Debug, Serialize)]
struct ListedWebhook {
    name: String,
    url: String,
    state: String,
    durable: bool,
    events: Vec<String>,
    exclude: Vec<String>,
    /// `null` while no daemon runs.
    accounting: Option<Accounting>,
    delivered: Option<u64>,
    failed: Option<u64>,
    pending: Option<u64>,
    last_status: Option<String>,
    /// The rate limit (`10/s`), if any, and how long a send would wait now.
    rate_limit: Option<String>,
    rate_wait_ms: Option<u64>,
    /// Dead letters and retained deliveries in the archive (`null` while no daemon runs, and
    /// `retained` while the webhook does not retain).
    dead_letters: Option<ArchiveStatus>,
    retained: Option<ArchiveStatus>,
}

#[derive(Debug, Serialize)]
struct ListResult {
    /// Whether the counters come from a running daemon.
    running: bool,
    webhooks: Vec<ListedWebhook>,
}

/// The daemon's view of every endpoint, or `None` when no daemon runs.
async fn live(socket: &std::path::Path) -> Result<Option<Vec<EndpointStatus>>, CliError> {
    let info: Option<InfoReply> =
        on_daemon(socket, |mut c| async move { c.call(&Request::Info).await }).await?;
    Ok(info.map(|i| i.webhooks))
}

fn listed(name: &str, entry: &EndpointConfig, live: Option<&EndpointStatus>) -> ListedWebhook {
    let s = &entry.settings;
    match live {
        Some(l) => ListedWebhook {
            name: name.to_string(),
            url: l
                .status
                .url
                .clone()
                .unwrap_or_else(|| pilot_core::webhook_url::redact_str(&entry.url)),
            state: l.state.clone(),
            durable: l.durable,
            events: l.events.clone(),
            exclude: l.exclude.clone(),
            accounting: l.status.accounting,
            delivered: Some(l.status.delivered),
            failed: Some(l.status.failed),
            pending: l.status.accounting.map(|a| a.pending),
            last_status: l.status.last_error.clone(),
            rate_limit: s.rate_limit.map(|r| r.to_string()),
            rate_wait_ms: Some(l.status.rate_wait_ms),
            dead_letters: l.status.dead_letters.clone(),
            retained: l.status.retained.clone(),
        },
        None => ListedWebhook {
            name: name.to_string(),
            url: pilot_core::webhook_url::redact_str(&entry.url),
            state: if s.paused { "paused" } else { "stopped" }.to_string(),
            durable: s.durable,
            events: s.events.clone(),
            exclude: s.exclude.clone(),
            accounting: None,
            delivered: None,
            failed: None,
            pending: None,
            last_status: None,
            rate_limit: s.rate_limit.map(|r| r.to_string()),
            rate_wait_ms: None,
            dead_letters: None,
            retained: None,
        },
    }
}

/// Every endpoint: config.json's, with the running daemon's state and counters.
async fn gather(ctx: &Context) -> Result<(bool, Vec<ListedWebhook>), CliError> {
    let home = ctx.home()?;
    let config = ConfigFile::load(home.config_file())?;
    let socket = ctx.socket()?;
    let configured = endpoint::from_config(&config)?;
    let live = live(&socket).await?;
    let mut rows = Vec::new();
    let mut names: Vec<&String> = configured.keys().collect();
    names.sort_by_key(|n| (n.as_str() != DEFAULT, n.as_str()));
    for name in names {
        let l = live
            .as_ref()
            .and_then(|all| all.iter().find(|w| &w.name == name));
        rows.push(listed(name, &configured[name], l));
    }
    // What the daemon runs that config.json does not say (`daemon start --webhook`).
    for l in live.iter().flatten() {
        if !configured.contains_key(&l.name) && l.status.url.is_some() {
            let entry = EndpointConfig {
                url: l.status.url.clone().unwrap_or_default(),
                settings: WebhookSettings::default(),
            };
            rows.push(listed(&l.name, &entry, Some(l)));
        }
    }
    rows.sort_by(|a, b| (a.name != DEFAULT, &a.name).cmp(&(b.name != DEFAULT, &b.name)));
    Ok((live.is_some(), rows))
}

/// `webhook list`.
pub async fn list(ctx: &Context) -> Result<Output, CliError> {
    let (running, webhooks) = gather(ctx).await?;
    let text = list_text(running, &webhooks);
    Ok(Output::report(&ListResult { running, webhooks }, text))
}

fn list_text(running: bool, rows: &[ListedWebhook]) -> String {
    if rows.is_empty() {
        return "no webhooks (add one with `pilotctl webhook add NAME URL`)".into();
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("URL", Align::Left),
        ("MODE", Align::Left),
        ("FILTERS", Align::Left),
        ("STATE", Align::Left),
        ("DELIVERED", Align::Right),
        ("FAILED", Align::Right),
        ("PENDING", Align::Right),
        ("DEAD", Align::Right),
        ("LAST ERROR", Align::Left),
    ]);
    let num = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    for r in rows {
        let mut filters = Vec::new();
        if !r.events.is_empty() {
            filters.push(r.events.join(","));
        }
        if !r.exclude.is_empty() {
            filters.push(format!("!{}", r.exclude.join(",!")));
        }
        table.row([
            r.name.clone(),
            r.url.clone(),
            match &r.rate_limit {
                Some(rate) => format!("{} {rate}", if r.durable { "durable" } else { "memory" }),
                None => if r.durable { "durable" } else { "memory" }.to_string(),
            },
            if filters.is_empty() {
                "*".to_string()
            } else {
                filters.join(" ")
            },
            r.state.clone(),
            num(r.delivered),
            num(r.failed),
            num(r.pending),
            num(r.dead_letters.as_ref().map(|d| d.count)),
            r.last_status
                .as_deref()
                .map(crate::output::one_line)
                .map_or("-".to_string(), |s| s.into_owned()),
        ]);
    }
    let mut out = table.render();
    if !running {
        out.push_str("\n(the daemon is not running: counters are not shown)");
    }
    out
}

#[derive(Debug, Serialize)]
struct ShowResult {
    name: String,
    url: String,
    state: String,
    settings: WebhookSettings,
    /// The daemon's full status of it (`null` while no daemon runs).
    status: Option<EndpointStatus>,
}

/// `webhook show NAME`.
pub async fn show(ctx: &Context, name: &str) -> Result<Output, CliError> {
    let name = name.trim();
    endpoint::validate_name(name).map_err(|e| CliError::invalid_argument(e.to_string()))?;
    let home = ctx.home()?;
    let config = ConfigFile::load(home.config_file())?;
    let socket = ctx.socket()?;
    let live = live(&socket).await?;
    let status = live
        .into_iter()
        .flatten()
        .find(|w| w.name == name && w.status.url.is_some());
    let entry = match saved(&config, name) {
        Ok(e) => e,
        Err(e) if status.is_none() => return Err(e),
        Err(_) => EndpointConfig {
            url: String::new(),
            settings: WebhookSettings::default(),
        },
    };
    let row = listed(name, &entry, status.as_ref());
    let settings = status
        .as_ref()
        .map(|s| s.status.settings.clone())
        .unwrap_or_else(|| entry.settings.redacted());
    let mut rows = vec![
        ("name", name.to_string()),
        ("url", row.url.clone()),
        ("state", row.state.clone()),
        (
            "mode",
            if row.durable { "durable" } else { "memory" }.to_string(),
        ),
    ];
    rows.extend(settings_rows(&settings));
    let mut text = aligned(&rows, 0);
    if let Some(s) = &status {
        text.push_str("\n\n");
        text.push_str(&crate::commands::info::webhook_text(&s.status));
    }
    let result = ShowResult {
        name: name.to_string(),
        url: row.url,
        state: row.state,
        settings,
        status,
    };
    Ok(Output::report(&result, text))
}
