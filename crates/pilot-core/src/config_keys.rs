//! The `config.json` keys pilot reads: what each holds, how a value is checked before it is
//! written, and how a change reaches a daemon that is already running.
//!
//! Keys not listed here belong to other programs (`registry`, `beacon`, `hostname`, ...): pilot
//! keeps them as they are and never checks them.

use serde_json::Value;

use crate::WebhookSettings;

/// How a change to a key reaches a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// On the daemon's next start.
    Restart,
    /// On `pilotctl set-webhook` (which sends the webhook to the daemon) or the next start.
    SetWebhook,
}

/// One key pilot reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    /// What the value holds, with an example.
    pub holds: &'static str,
    pub applies: Applies,
}

/// Every key pilot reads, in the order `docs/cli.md` lists them.
pub const KEYS: &[Key] = &[
    Key {
        name: "webhook",
        holds: "the webhook URL (\"\" for none), checked like `set-webhook`",
        applies: Applies::SetWebhook,
    },
    Key {
        name: "webhook_settings",
        holds: "the webhook settings object, as `set-webhook` writes it",
        applies: Applies::SetWebhook,
    },
    Key {
        name: "webhooks",
        holds: "the named webhooks, {\"NAME\": {\"url\": URL, ...settings}}, as `webhook add` writes them",
        applies: Applies::SetWebhook,
    },
    Key {
        name: "max_webhooks",
        holds: "how many webhooks the daemon runs at most (default 64)",
        applies: Applies::Restart,
    },
    Key {
        name: "deny_private_networks",
        holds: "true to refuse loopback and private addresses for every webhook (false)",
        applies: Applies::Restart,
    },
    Key {
        name: "node_id",
        holds: "node id stamped on every event (0 to 4294967295)",
        applies: Applies::Restart,
    },
    Key {
        name: "socket",
        holds: "absolute path of the control socket",
        applies: Applies::Restart,
    },
    Key {
        name: "log_level",
        holds: "daemon log level (error, warn, info, debug, trace, off, or directives like \"pilot_webhook=debug,info\")",
        applies: Applies::Restart,
    },
    Key {
        name: "queue_size",
        holds: "webhook queue capacity in events (1 or more)",
        applies: Applies::Restart,
    },
    Key {
        name: "webhook_timeout",
        holds: "timeout of one webhook request (\"5s\")",
        applies: Applies::Restart,
    },
    Key {
        name: "max_attempts",
        holds: "attempts per event (1 or more)",
        applies: Applies::Restart,
    },
    Key {
        name: "backoff",
        holds: "first retry delay (\"1s\")",
        applies: Applies::Restart,
    },
    Key {
        name: "circuit_threshold",
        holds: "consecutive failed events that open the circuit (1 or more)",
        applies: Applies::Restart,
    },
    Key {
        name: "circuit_cooldown",
        holds: "how long the circuit stays open (\"30s\")",
        applies: Applies::Restart,
    },
];

/// The key called `name`, if pilot reads it.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Checks `value` for `key` as pilot will read it. Keys pilot does not read are always fine.
/// The message says what is wrong (the caller adds the key and the file).
pub fn check(key: &str, value: &Value) -> Result<(), String> {
    let Some(k) = find(key) else {
        return Ok(());
    };
    if value.is_null() {
        return Err("null is not a value; remove the key instead".into());
    }
    let text = || {
        value
            .as_str()
            .ok_or_else(|| format!("expected a string ({})", k.holds))
    };
    let positive = || match value.as_u64() {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number ({})", k.holds)),
    };
    match key {
        "webhook" => {
            let url = text()?;
            if !url.trim().is_empty() {
                crate::webhook_url::validate(url).map_err(|e| e.to_string())?;
            }
        }
        "webhook_settings" => {
            if !value.is_object() {
                return Err("expected an object, like {\"events\":[\"handshake.*\"]}".into());
            }
            let settings: WebhookSettings = serde_json::from_value(value.clone())
                .map_err(|e| crate::webhook_settings::read_error(value, &e))?;
            settings.validate().map_err(|e| e.to_string())?;
        }
        "webhooks" => crate::endpoint::check_all(value)?,
        "max_webhooks" => {
            positive()?;
        }
        "deny_private_networks" if !value.is_boolean() => {
            return Err(format!("expected true or false ({})", k.holds));
        }
        "node_id" => match value.as_u64() {
            Some(n) if u32::try_from(n).is_ok() => {}
            _ => return Err(format!("expected a whole number ({})", k.holds)),
        },
        "socket" => {
            Some(text()?)
                .filter(|s| std::path::Path::new(s).is_absolute())
                .ok_or_else(|| format!("expected an {}", k.holds))?;
        }
        "log_level" => {
            crate::log_level::check(text()?).map_err(|e| e.to_string())?;
        }
        "queue_size" | "max_attempts" | "circuit_threshold" => {
            let n = positive()?;
            if key != "queue_size" && u32::try_from(n).is_err() {
                return Err(format!("{n} is too large"));
            }
        }
        "webhook_timeout" | "backoff" | "circuit_cooldown" => {
            crate::duration::parse(text()?).map_err(|e| e.to_string())?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_keys_are_checked_and_others_are_not() {
        let ok = |k: &str, v: Value| assert!(check(k, &v).is_ok(), "{k}={v}");
        let bad = |k: &str, v: Value| check(k, &v).unwrap_err();
        ok("webhook", json!("http://localhost:8080/events"));
        ok("webhook", json!(""));
        assert!(bad("webhook", json!("http://169.254.169.254/")).contains("blocked"));
        assert!(bad("webhook", json!("ftp://x/")).contains("scheme"));
        bad("webhook", json!(5));
        ok(
            "webhook_settings",
            json!({"events": ["a.*"], "batch_max": 5}),
        );
        assert!(bad("webhook_settings", json!({"events": ["a*"]})).contains("a*"));
        bad("webhook_settings", json!({"batch_max": 0}));
        assert!(bad("webhook_settings", json!({"retain": "soon"})).starts_with("retain: "));
        assert!(bad("webhook_settings", json!({"retain_max_bytes": 4096})).contains("--retain"));
        bad("webhook_settings", json!([1]));
        ok(
            "webhooks",
            json!({"siem": {"url": "http://localhost:9/", "durable": true}}),
        );
        assert!(bad("webhooks", json!({"Siem": {"url": "http://localhost:9/"}})).contains("Siem"));
        assert!(bad("webhooks", json!({"a": {"url": "http://169.254.169.254/"}})).contains("a:"));
        bad("webhooks", json!([]));
        ok("max_webhooks", json!(8));
        bad("max_webhooks", json!(0));
        ok("deny_private_networks", json!(true));
        assert!(bad("deny_private_networks", json!("yes")).contains("true or false"));
        ok("node_id", json!(5));
        bad("node_id", json!(-1));
        bad("node_id", json!(4294967296u64));
        bad("node_id", json!("5"));
        ok("socket", json!("/run/p.sock"));
        bad("socket", json!("rel.sock"));
        ok("queue_size", json!(16));
        bad("queue_size", json!(0));
        bad("max_attempts", json!(1u64 << 40));
        ok("backoff", json!("500ms"));
        assert!(bad("backoff", json!("soon")).contains("soon"));
        bad("circuit_cooldown", json!(30));
        bad("log_level", json!(""));
        ok("log_level", json!("pilot_webhook=debug,info"));
        assert!(bad("log_level", json!("loud")).contains("loud"));
        bad("node_id", Value::Null);
        ok("registry", json!("34.71.57.205:9000"));
        ok("anything", Value::Null);
    }

    #[test]
    fn every_key_has_a_description() {
        for k in KEYS {
            assert!(!k.holds.is_empty());
            assert_eq!(find(k.name), Some(k));
        }
    }
}
