//! `set-webhook` and `clear-webhook`: persist the URL in `config.json`, then apply it to the
//! running daemon (no daemon is fine: it takes effect on the next start).

use std::path::PathBuf;

use pilot_core::{ConfigError, ConfigFile};
use pilot_ipc::{Client, ClientError};
use serde::Serialize;

use crate::context::Context;
use crate::output::{CliError, Output};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WebhookResult {
    pub webhook: String,
    pub applied: bool,
}

/// `set-webhook URL`.
pub async fn set(ctx: &Context, url: &str) -> Result<Output, CliError> {
    pilot_core::webhook_url::validate(url)?;
    let url = url.trim().to_string();
    let socket = persist(ctx, |c| c.set("webhook", url.clone().into()))?;
    let applied = apply(&socket, |mut c| {
        let url = url.clone();
        async move { c.set_webhook(&url).await.map(drop) }
    })
    .await?;
    Ok(report(url, applied))
}

/// `clear-webhook`.
pub async fn clear(ctx: &Context) -> Result<Output, CliError> {
    let socket = persist(ctx, |c| {
        c.remove("webhook");
    })?;
    let applied = apply(
        &socket,
        |mut c| async move { c.clear_webhook().await.map(drop) },
    )
    .await?;
    Ok(report(String::new(), applied))
}

/// Edits `config.json` under its lock and returns the socket the edited config points at.
fn persist(ctx: &Context, edit: impl FnOnce(&mut ConfigFile)) -> Result<PathBuf, CliError> {
    let home = ctx.home()?;
    home.ensure()?;
    let socket = ConfigFile::update(home.config_file(), |c| {
        edit(c);
        Ok::<_, ConfigError>(home.socket_path(ctx.socket_flag.as_deref(), c))
    })?;
    Ok(socket)
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

fn report(webhook: String, applied: bool) -> Output {
    let text = result_text(&webhook, applied);
    Output::report(&WebhookResult { webhook, applied }, text)
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
        let Output::Report { data, .. } = report("http://x/".into(), false) else {
            panic!()
        };
        assert_eq!(
            data.to_string(),
            r#"{"webhook":"http://x/","applied":false}"#
        );
    }
}
