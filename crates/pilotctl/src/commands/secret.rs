//! The webhook signing secret: `set-webhook --secret/--secret-file/--generate-secret/
//! --no-secret`, and `webhook secret show|rotate`.
//!
//! Secrets live in `<home>/webhook_secret.json` (mode 0600, [`SecretStore`]). Only two things
//! print a secret: `webhook secret show`, and the command that generated it
//! (`set-webhook --generate-secret`, `webhook secret rotate`), once. After a change the running
//! daemon is told to re-read the file (`reload_secrets`).

use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::time::Duration;

use pilot_core::secrets::{self, SecretError};
use pilot_core::{PilotHome, SecretStore};
use pilot_ipc::protocol::ReloadSecretsReply;
use pilot_ipc::{Client, ClientError, Request};
use serde::Serialize;

use crate::cli::SecretArgs;
use crate::context::{show, Context};
use crate::output::{aligned, code, CliError, Output};
use crate::settings::read_small;

/// What `set-webhook` does to the secret file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChange {
    /// Make this the only secret; `generated` when pilotctl made it (it is then printed once).
    Set { secret: String, generated: bool },
    /// Remove every secret (requests go unsigned).
    Remove,
}

/// The change the flags ask for, checked (`None`: leave the file alone).
pub fn change_from_flags(args: &SecretArgs) -> Result<Option<SecretChange>, CliError> {
    let secret = if let Some(s) = &args.secret {
        s.trim().to_string()
    } else if let Some(path) = &args.secret_file {
        let text = read_small(path, "--secret-file")?;
        text.lines().next().unwrap_or_default().trim().to_string()
    } else if args.generate_secret {
        return Ok(Some(SecretChange::Set {
            secret: secrets::generate(),
            generated: true,
        }));
    } else if args.no_secret {
        return Ok(Some(SecretChange::Remove));
    } else {
        return Ok(None);
    };
    secrets::check(&secret).map_err(secret_error)?;
    Ok(Some(SecretChange::Set {
        secret,
        generated: false,
    }))
}

/// Loads the secret file of webhook `name` in `home` (missing: empty; corrupt:
/// `config_error`). A named webhook's directory is created (owner-only) so the file can be
/// written.
pub fn load(home: &PilotHome, name: &str) -> Result<SecretStore, CliError> {
    if name != pilot_core::endpoint::DEFAULT {
        let dir = home.endpoint_dir(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| CliError::io(format!("{}: {e}", dir.display())))?;
    }
    SecretStore::load(home.endpoint_secret_file(name)).map_err(secret_error)
}

/// Applies `change` to `store` and writes the file (0600; removed when empty).
pub fn save(store: &mut SecretStore, change: &SecretChange) -> Result<(), CliError> {
    match change {
        SecretChange::Set { secret, .. } => store.set(secret.clone(), jiff::Timestamp::now()),
        SecretChange::Remove => store.clear(),
    }
    store.save().map_err(secret_error)
}

/// The CLI error for a secret problem (the secret itself is never in the message).
pub fn secret_error(e: SecretError) -> CliError {
    match e {
        SecretError::Io { .. } => CliError::io(e.to_string()),
        SecretError::Invalid { .. } => CliError::new(code::CONFIG_ERROR, e.to_string()),
        SecretError::Empty | SecretError::BadBase64 => CliError::invalid_argument(e.to_string()),
    }
}

/// Tells the daemon at `socket` to re-read the secret file; `None` when no daemon runs.
pub async fn reload(socket: &Path, name: &str) -> Result<Option<ReloadSecretsReply>, CliError> {
    let mut client = match Client::connect(socket).await {
        Ok(c) => c,
        Err(ClientError::NotRunning { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let reply = client
        .call(&Request::ReloadSecrets {
            name: crate::commands::tools::named(name),
        })
        .await?;
    Ok(Some(reply))
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct ShownSecret {
    secret: String,
    created_at: String,
    /// When it stops signing (`null` for the current secret).
    expires_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct ShowResult {
    file: String,
    /// `null` when requests are unsigned.
    current: Option<ShownSecret>,
    /// Secrets still valid in a rotation's grace period.
    previous: Vec<ShownSecret>,
}

/// `webhook secret show`.
pub fn show_cmd(ctx: &Context, name: &str) -> Result<Output, CliError> {
    let home = ctx.home()?;
    crate::commands::endpoints::require(ctx, name)?;
    let store = SecretStore::load(home.endpoint_secret_file(name)).map_err(secret_error)?;
    let now = jiff::Timestamp::now();
    let shown = |s: &secrets::Secret| ShownSecret {
        secret: s.secret.clone(),
        created_at: s.created_at.to_string(),
        expires_at: s.expires_at.map(|t| t.to_string()),
    };
    let active = store.active(now);
    let current = active
        .iter()
        .find(|s| s.expires_at.is_none())
        .map(|s| shown(s));
    let previous: Vec<ShownSecret> = active
        .iter()
        .filter(|s| s.expires_at.is_some())
        .map(|s| shown(s))
        .collect();
    let text = show_text(current.as_ref(), &previous);
    Ok(Output::report(
        &ShowResult {
            file: show(store.path()),
            current,
            previous,
        },
        text,
    ))
}

fn show_text(current: Option<&ShownSecret>, previous: &[ShownSecret]) -> String {
    let mut rows = Vec::new();
    match current {
        Some(c) => rows.push(("current", format!("{}  (since {})", c.secret, c.created_at))),
        None => rows.push(("current", "(none: requests are unsigned)".into())),
    }
    for p in previous {
        rows.push((
            "previous",
            format!(
                "{}  (valid until {})",
                p.secret,
                p.expires_at.as_deref().unwrap_or("?")
            ),
        ));
    }
    aligned(&rows, 0)
}

#[derive(Debug, Serialize)]
struct RotateResult {
    secret: String,
    /// Until when the previous secret still signs (`null` when there was none).
    previous_valid_until: Option<String>,
    grace: String,
    applied: bool,
    /// How many secrets sign each request now (when applied).
    active_secrets: Option<usize>,
}

/// `webhook secret rotate [--grace DURATION]`.
pub async fn rotate_cmd(ctx: &Context, grace: Duration, name: &str) -> Result<Output, CliError> {
    let home = ctx.home()?;
    home.ensure()?;
    crate::commands::endpoints::require(ctx, name)?;
    let socket = ctx.socket()?;
    let mut store = load(&home, name)?;
    let now = jiff::Timestamp::now();
    let had_current = store.current().is_some();
    let secret = secrets::generate();
    store.rotate(secret.clone(), now, grace);
    store.save().map_err(secret_error)?;
    let previous_valid_until = if had_current {
        store
            .active(now)
            .iter()
            .filter_map(|s| s.expires_at)
            .max()
            .map(|t| t.to_string())
    } else {
        None
    };
    let reply = reload(&socket, name).await.map_err(|e| {
        e.context("the new secret is saved, but the running daemon did not take it")
    })?;
    let result = RotateResult {
        secret,
        previous_valid_until,
        grace: pilot_core::duration::format(grace),
        applied: reply.is_some(),
        active_secrets: reply.map(|r| r.active_secrets),
    };
    let text = rotate_text(&result);
    Ok(Output::report(&result, text))
}

fn rotate_text(r: &RotateResult) -> String {
    let previous = match &r.previous_valid_until {
        Some(t) => format!(
            "the previous secret stays valid until {t} (grace {})",
            r.grace
        ),
        None => "there was no previous secret".into(),
    };
    let applied = if r.applied {
        "applied to running daemon"
    } else {
        "will take effect on next daemon start"
    };
    format!("new secret: {}\n{previous}\n{applied}", r.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_pick_one_change() {
        let none = change_from_flags(&SecretArgs::default()).unwrap();
        assert_eq!(none, None);
        let set = change_from_flags(&SecretArgs {
            secret: Some(" s3cret ".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            set,
            Some(SecretChange::Set {
                secret: "s3cret".into(),
                generated: false
            })
        );
        let Some(SecretChange::Set { secret, generated }) = change_from_flags(&SecretArgs {
            generate_secret: true,
            ..Default::default()
        })
        .unwrap() else {
            panic!()
        };
        assert!(generated && secret.starts_with("whsec_"));
        let bad = change_from_flags(&SecretArgs {
            secret: Some("whsec_!!".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(bad.code, "invalid_argument");
        assert!(!bad.message.contains("!!"));
    }

    #[test]
    fn a_secret_file_gives_its_first_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("s");
        std::fs::write(&p, "whsec_aGVsbG8=\nignored\n").unwrap();
        let got = change_from_flags(&SecretArgs {
            secret_file: Some(p),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            got,
            Some(SecretChange::Set {
                secret: "whsec_aGVsbG8=".into(),
                generated: false
            })
        );
        let empty = tmp.path().join("e");
        std::fs::write(&empty, "\n").unwrap();
        assert!(change_from_flags(&SecretArgs {
            secret_file: Some(empty),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn texts() {
        let c = ShownSecret {
            secret: "whsec_new".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: None,
        };
        let p = ShownSecret {
            secret: "whsec_old".into(),
            created_at: "2025-01-01T00:00:00Z".into(),
            expires_at: Some("2026-01-02T00:00:00Z".into()),
        };
        assert_eq!(
            show_text(Some(&c), &[p]),
            "current:  whsec_new  (since 2026-01-01T00:00:00Z)\n\
             previous: whsec_old  (valid until 2026-01-02T00:00:00Z)"
        );
        assert_eq!(
            show_text(None, &[]),
            "current: (none: requests are unsigned)"
        );
    }
}
