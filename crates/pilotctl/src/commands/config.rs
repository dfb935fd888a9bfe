//! `config`: show `config.json`, or edit it with `--set KEY=VALUE` and `--unset KEY`.
//!
//! Every value is checked before the file is touched: the keys pilot reads with the checks of
//! [`pilot_core::config_keys`] (the webhook URL policy, [`WebhookSettings::validate`] and the
//! auth files `set-webhook` checks), the others not at all. The edit is one locked
//! read-modify-write through [`ConfigFile::update`]: atomic, mode 0600, every other key kept in
//! its place, and a file that does not parse is reported and left as it is. A running daemon
//! does not re-read the file; the result says which changes wait for a restart or
//! `set-webhook`.

use std::path::Path;

use pilot_core::config::DENY_PRIVATE_NETWORKS;
use pilot_core::config_keys::{self, Applies};
use pilot_core::{ConfigFile, WebhookSettings};
use pilot_ipc::Client;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::ConfigArgs;
use crate::commands::webhook::SETTINGS_KEY;
use crate::context::{show, Context};
use crate::output::{CliError, Output};

#[derive(Debug, Serialize)]
struct Shown {
    file: String,
    config: Map<String, Value>,
}

#[derive(Debug, Serialize)]
struct Edited {
    file: String,
    config: Map<String, Value>,
    set: Vec<String>,
    unset: Vec<String>,
    /// The pid of the daemon answering on the socket, if one does.
    daemon_pid: Option<u32>,
    /// Changed keys the running daemon has not taken (empty when no daemon runs).
    pending: Vec<Pending>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct Pending {
    key: String,
    /// `restart` or `set-webhook` (which also applies on a restart).
    applies_on: &'static str,
}

/// A `--set` value: JSON when it parses as JSON, else the text as a string.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// `config [--set KEY=VALUE]... [--unset KEY]...`.
pub async fn run(ctx: &Context, args: &ConfigArgs) -> Result<Output, CliError> {
    let home = ctx.home()?;
    let path = home.config_file();
    if args.set.is_empty() && args.unset.is_empty() {
        let config = ConfigFile::load(&path)?;
        let shown = Shown {
            file: show(&path),
            config: config.values().clone(),
        };
        let text = serde_json::to_string_pretty(&shown.config).unwrap_or_default();
        return Ok(Output::report(&shown, text));
    }
    let sets = checked_sets(args)?;
    home.ensure()?;
    let flag = ctx.socket_flag.as_deref();
    let (config, socket, changed, unset) = ConfigFile::update(&path, |c| {
        // The socket the daemon listens on now, before any `socket` change.
        let socket = home.socket_path(flag, c);
        let mut changed = Vec::new();
        for (key, value) in &sets {
            if c.get(key) != Some(value) {
                changed.push(key.clone());
            }
            c.set_checked(key, value.clone())?;
        }
        let mut unset = Vec::new();
        for key in &args.unset {
            if c.remove(key).is_some() {
                changed.push(key.clone());
                unset.push(key.clone());
            }
        }
        // The webhook as a whole, as the daemon will start it (the URL policy, the settings
        // with their URL): checked when any part of it changes; nothing is written otherwise.
        let webhook_keys = ["webhook", SETTINGS_KEY, DENY_PRIVATE_NETWORKS];
        if changed.iter().any(|k| webhook_keys.contains(&k.as_str())) {
            c.check_webhook()
                .map_err(|e| CliError::invalid_argument(e.to_string()))?;
        }
        Ok::<_, CliError>((c.values().clone(), socket, changed, unset))
    })?;
    let daemon_pid = running_daemon(&socket).await;
    let pending = match daemon_pid {
        None => Vec::new(),
        Some(_) => changed
            .iter()
            .filter_map(|k| config_keys::find(k))
            .map(|k| Pending {
                key: k.name.to_string(),
                applies_on: match k.applies {
                    Applies::Restart => "restart",
                    Applies::SetWebhook => "set-webhook",
                },
            })
            .collect(),
    };
    let edited = Edited {
        file: show(&path),
        config,
        set: sets.into_iter().map(|(k, _)| k).collect(),
        unset,
        daemon_pid,
        pending,
    };
    let text = edited_text(&edited);
    Ok(Output::report(&edited, text))
}

/// The `--set` pairs with their values parsed and checked, before anything is written.
fn checked_sets(args: &ConfigArgs) -> Result<Vec<(String, Value)>, CliError> {
    let mut sets: Vec<(String, Value)> = Vec::new();
    for (key, text) in &args.set {
        if args.unset.contains(key) {
            return Err(CliError::invalid_argument(format!(
                "key {key:?} is both --set and --unset"
            )));
        }
        let value = parse_value(text);
        config_keys::check(key, &value)
            .map_err(|m| CliError::invalid_argument(format!("config key {key:?}: {m}")))?;
        if key == crate::commands::webhook::SETTINGS_KEY {
            check_settings_files(&value).map_err(|e| e.context(format!("config key {key:?}")))?;
        }
        // A key given twice: the last value wins, in the place of the first.
        match sets.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => sets.push((key.clone(), value)),
        }
    }
    Ok(sets)
}

/// The auth files of a settings object: absolute (the daemon has another working directory)
/// and readable, as `set-webhook` checks them.
fn check_settings_files(value: &Value) -> Result<(), CliError> {
    let settings: WebhookSettings = serde_json::from_value(value.clone())
        .map_err(|e| CliError::invalid_argument(e.to_string()))?;
    for path in [&settings.bearer_token_file, &settings.basic_auth_file]
        .into_iter()
        .flatten()
    {
        if !path.is_absolute() {
            return Err(CliError::invalid_argument(format!(
                "{} must be an absolute path",
                path.display()
            )));
        }
    }
    crate::settings::check(&settings)
}

/// The pid of the daemon answering on `socket` (0 if it did not say), if one answers.
async fn running_daemon(socket: &Path) -> Option<u32> {
    Client::connect(socket).await.ok().map(|c| c.server().pid)
}

fn edited_text(e: &Edited) -> String {
    let mut lines: Vec<String> = Vec::new();
    for key in &e.set {
        let value = e.config.get(key).map(Value::to_string).unwrap_or_default();
        lines.push(format!("set {key} = {value}"));
    }
    for key in &e.unset {
        lines.push(format!("unset {key}"));
    }
    lines.push(format!("saved {}", e.file));
    let keys = |on: &str| {
        e.pending
            .iter()
            .filter(|p| p.applies_on == on)
            .map(|p| p.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pid = e.daemon_pid.unwrap_or(0);
    let restart = keys("restart");
    if !restart.is_empty() {
        lines.push(format!(
            "note: the running daemon (pid {pid}) does not re-read config.json; restart it to \
             apply {restart}"
        ));
    }
    let webhook = keys("set-webhook");
    if !webhook.is_empty() {
        lines.push(format!(
            "note: the running daemon (pid {pid}) keeps its webhook; `pilotctl set-webhook URL \
             [flags]` or a restart applies {webhook}"
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_json_when_they_parse() {
        assert_eq!(parse_value("5"), json!(5));
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value(r#"{"a":[1]}"#), json!({"a":[1]}));
        assert_eq!(parse_value(r#""5""#), json!("5"));
        assert_eq!(parse_value("http://x/"), json!("http://x/"));
        assert_eq!(parse_value("500ms"), json!("500ms"));
        assert_eq!(parse_value(""), json!(""));
    }

    #[test]
    fn bad_values_are_refused_before_anything_is_written() {
        let args = |set: &[(&str, &str)], unset: &[&str]| ConfigArgs {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            unset: unset.iter().map(|s| s.to_string()).collect(),
        };
        let e = checked_sets(&args(&[("webhook", "http://169.254.169.254/")], &[])).unwrap_err();
        assert_eq!(e.code, "invalid_argument");
        assert!(e.message.contains("\"webhook\""), "{e}");
        checked_sets(&args(&[("node_id", "x")], &[])).unwrap_err();
        checked_sets(&args(&[("a", "1")], &["a"])).unwrap_err();
        let e = checked_sets(&args(
            &[("webhook_settings", r#"{"bearer_token_file":"rel/token"}"#)],
            &[],
        ))
        .unwrap_err();
        assert!(e.message.contains("absolute"), "{e}");
        let got = checked_sets(&args(&[("k", "1"), ("j", "x"), ("k", "2")], &[])).unwrap();
        assert_eq!(got, [("k".into(), json!(2)), ("j".into(), json!("x"))]);
    }

    #[test]
    fn notes_name_the_pending_keys() {
        let e = Edited {
            file: "/h/config.json".into(),
            config: json!({"node_id": 5, "webhook": "http://x/"})
                .as_object()
                .unwrap()
                .clone(),
            set: vec!["node_id".into(), "webhook".into()],
            unset: vec!["old".into()],
            daemon_pid: Some(42),
            pending: vec![
                Pending {
                    key: "node_id".into(),
                    applies_on: "restart",
                },
                Pending {
                    key: "webhook".into(),
                    applies_on: "set-webhook",
                },
            ],
        };
        assert_eq!(
            edited_text(&e),
            "set node_id = 5\nset webhook = \"http://x/\"\nunset old\nsaved /h/config.json\n\
             note: the running daemon (pid 42) does not re-read config.json; restart it to apply \
             node_id\nnote: the running daemon (pid 42) keeps its webhook; `pilotctl set-webhook \
             URL [flags]` or a restart applies webhook"
        );
    }
}
