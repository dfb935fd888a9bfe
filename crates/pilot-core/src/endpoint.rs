//! Named webhook endpoints as config.json holds them: the endpoint `default` (Pilot's keys
//! `webhook` and `webhook_settings`, untouched) and the others under `webhooks`, an object keyed
//! by name whose values are the URL plus the settings fields:
//!
//! ```json
//! {
//!   "webhook": "http://localhost:8080/events",
//!   "webhooks": {
//!     "siem": {"url": "https://siem.example.com/in", "events": ["security.*"], "durable": true}
//!   }
//! }
//! ```
//!
//! One reader ([`from_config`]) and one writer ([`put`], [`remove`]) serve pilotctl and the
//! daemon, so both read the file the same way and check every entry the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ConfigError, ConfigFile, WebhookSettings};

/// The endpoint Pilot's `webhook`, `set-webhook` and `clear-webhook` act on.
pub const DEFAULT: &str = "default";

/// The config key of the named endpoints.
pub const WEBHOOKS_KEY: &str = "webhooks";

/// The config key of the default endpoint's settings.
pub const SETTINGS_KEY: &str = "webhook_settings";

/// The config key of the endpoint limit.
pub const MAX_KEY: &str = "max_webhooks";

/// How many endpoints a daemon runs unless config `max_webhooks` says otherwise.
pub const DEFAULT_MAX: usize = 64;

/// The longest endpoint name.
pub const MAX_NAME_LEN: usize = 63;

/// A name that is not `[a-z0-9][a-z0-9_-]{0,62}`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid webhook name {name:?}: use 1 to 63 lowercase letters, digits, `_` or `-`, \
     starting with a letter or digit (like `siem` or `chat-relay`)"
)]
pub struct NameError {
    pub name: String,
}

/// Checks an endpoint name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(NameError {
            name: name.chars().take(80).collect(),
        })
    }
}

/// One endpoint as config.json holds it under `webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointConfig {
    pub url: String,
    #[serde(flatten)]
    pub settings: WebhookSettings,
}

/// Every endpoint config.json defines, by name (`default` from `webhook`/`webhook_settings`
/// when its URL is set), each URL checked by the URL policy and each settings object checked.
/// An error names the key and the endpoint.
pub fn from_config(config: &ConfigFile) -> Result<BTreeMap<String, EndpointConfig>, ConfigError> {
    let mut all = BTreeMap::new();
    if let Some(url) = config.webhook() {
        crate::webhook_url::validate(url).map_err(|e| invalid(config, "webhook", e.to_string()))?;
        let settings = default_settings(config)?;
        all.insert(
            DEFAULT.to_string(),
            EndpointConfig {
                url: url.to_string(),
                settings,
            },
        );
    }
    for (name, entry) in named(config)? {
        all.insert(name, entry);
    }
    Ok(all)
}

/// The settings of the default endpoint (config `webhook_settings`; absent or null: defaults).
pub fn default_settings(config: &ConfigFile) -> Result<WebhookSettings, ConfigError> {
    let settings = match config.get(SETTINGS_KEY) {
        None | Some(Value::Null) => WebhookSettings::default(),
        Some(v @ Value::Object(_)) => serde_json::from_value(v.clone()).map_err(|e| {
            invalid(
                config,
                SETTINGS_KEY,
                crate::webhook_settings::read_error(v, &e),
            )
        })?,
        Some(_) => return Err(invalid(config, SETTINGS_KEY, "expected an object")),
    };
    settings
        .validate()
        .map_err(|e| invalid(config, SETTINGS_KEY, e.to_string()))?;
    Ok(settings)
}

/// The endpoints under `webhooks`, checked.
pub fn named(config: &ConfigFile) -> Result<BTreeMap<String, EndpointConfig>, ConfigError> {
    let mut all = BTreeMap::new();
    let map = match config.get(WEBHOOKS_KEY) {
        None | Some(Value::Null) => return Ok(all),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(invalid(
                config,
                WEBHOOKS_KEY,
                "expected an object keyed by webhook name",
            ))
        }
    };
    for (name, value) in map {
        let entry = check_entry(name, value)
            .map_err(|message| invalid(config, &format!("{WEBHOOKS_KEY}.{name}"), message))?;
        all.insert(name.clone(), entry);
    }
    Ok(all)
}

/// Checks one `webhooks` entry: its name, URL and settings. The message says what is wrong
/// (the caller adds the key and the file).
pub fn check_entry(name: &str, value: &Value) -> Result<EndpointConfig, String> {
    validate_name(name).map_err(|e| e.to_string())?;
    if name == DEFAULT {
        return Err(format!(
            "`{DEFAULT}` is the endpoint of the keys `webhook` and `webhook_settings`; \
             use another name"
        ));
    }
    if !value.is_object() {
        return Err(r#"expected an object like {"url": "http://localhost:8080/events"}"#.into());
    }
    let entry: EndpointConfig = serde_json::from_value(value.clone())
        .map_err(|e| crate::webhook_settings::read_error(value, &e))?;
    let url = crate::webhook_url::validate(&entry.url).map_err(|e| e.to_string())?;
    crate::webhook_settings::validate_target(&url, &entry.settings).map_err(|e| e.to_string())?;
    Ok(entry)
}

/// Checks the whole `webhooks` value (for `pilotctl config --set`).
pub fn check_all(value: &Value) -> Result<(), String> {
    let Some(map) = value.as_object() else {
        return Err("expected an object keyed by webhook name".into());
    };
    for (name, entry) in map {
        check_entry(name, entry).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// The endpoint limit (config `max_webhooks`, else [`DEFAULT_MAX`]).
pub fn max_endpoints(config: &ConfigFile) -> Result<usize, ConfigError> {
    match config.get_u64(MAX_KEY)? {
        None => Ok(DEFAULT_MAX),
        Some(0) => Err(invalid(config, MAX_KEY, "must be at least 1")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

/// Writes endpoint `name` into `config` (in memory; the caller saves): the default one into
/// `webhook`/`webhook_settings` (settings removed when all are defaults, as Pilot leaves the
/// file), the others into `webhooks`.
pub fn put(config: &mut ConfigFile, name: &str, entry: &EndpointConfig) {
    if name == DEFAULT {
        config.set("webhook", entry.url.clone().into());
        if entry.settings.is_default() {
            config.remove(SETTINGS_KEY);
        } else {
            config.set(
                SETTINGS_KEY,
                serde_json::to_value(&entry.settings).unwrap_or_default(),
            );
        }
        return;
    }
    let mut map = match config.get(WEBHOOKS_KEY) {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    map.insert(
        name.to_string(),
        serde_json::to_value(entry).unwrap_or_default(),
    );
    config.set(WEBHOOKS_KEY, Value::Object(map));
}

/// Removes endpoint `name` from `config` (in memory); whether it was there. Removing the last
/// named endpoint removes the `webhooks` key.
pub fn remove(config: &mut ConfigFile, name: &str) -> bool {
    if name == DEFAULT {
        let had = config.webhook().is_some();
        config.remove("webhook");
        config.remove(SETTINGS_KEY);
        return had;
    }
    let Some(Value::Object(map)) = config.get(WEBHOOKS_KEY) else {
        return false;
    };
    let mut map = map.clone();
    let had = map.remove(name).is_some();
    if map.is_empty() {
        config.remove(WEBHOOKS_KEY);
    } else {
        config.set(WEBHOOKS_KEY, Value::Object(map));
    }
    had
}

fn invalid(config: &ConfigFile, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        path: config.path().to_path_buf(),
        key: key.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_rule() {
        for ok in [
            "default",
            "siem",
            "a",
            "0",
            "chat-relay",
            "x_1",
            &"a".repeat(63),
        ] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "-a",
            "_a",
            "Siem",
            "a b",
            "a.b",
            "a/b",
            "é",
            &"a".repeat(64),
            "../x",
        ] {
            let e = validate_name(bad).unwrap_err();
            assert!(e.to_string().contains("invalid webhook name"), "{e}");
        }
    }

    fn config(v: Value) -> ConfigFile {
        ConfigFile::parse("/tmp/config.json", v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn reads_default_and_named_endpoints() {
        let c = config(json!({
            "webhook": "http://localhost:8080/a",
            "webhook_settings": {"events": ["trust.*"]},
            "webhooks": {"siem": {"url": "http://localhost:9000/s", "durable": true, "future": 1}},
            "registry": "x"
        }));
        let all = from_config(&c).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["default"].settings.events, ["trust.*"]);
        assert!(all["siem"].settings.durable);
        assert_eq!(all["siem"].url, "http://localhost:9000/s");
    }

    #[test]
    fn bad_entries_name_the_key() {
        for (bad, want) in [
            (json!({"webhooks": [1]}), "webhooks"),
            (
                json!({"webhooks": {"Bad": {"url": "http://x/"}}}),
                "webhooks.Bad",
            ),
            (
                json!({"webhooks": {"default": {"url": "http://x/"}}}),
                "webhooks.default",
            ),
            (
                json!({"webhooks": {"a": {"url": "ftp://x/"}}}),
                "webhooks.a",
            ),
            (
                json!({"webhooks": {"a": {"url": "http://x/", "events": ["a*"]}}}),
                "webhooks.a",
            ),
            (json!({"webhooks": {"a": {"events": []}}}), "webhooks.a"),
            (json!({"webhooks": {"a": "http://x/"}}), "webhooks.a"),
        ] {
            let e = from_config(&config(bad.clone())).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(e.contains("/tmp/config.json"), "{e}");
        }
    }

    #[test]
    fn put_and_remove_keep_pilots_layout() {
        let mut c = config(json!({"registry": "x"}));
        let plain = EndpointConfig {
            url: "http://localhost:8080/a".into(),
            settings: WebhookSettings::default(),
        };
        put(&mut c, DEFAULT, &plain);
        assert_eq!(
            c.to_json().unwrap(),
            config(json!({"registry": "x", "webhook": "http://localhost:8080/a"}))
                .to_json()
                .unwrap()
        );
        let siem = EndpointConfig {
            url: "http://localhost:9000/s".into(),
            settings: WebhookSettings {
                durable: true,
                ..Default::default()
            },
        };
        put(&mut c, "siem", &siem);
        assert_eq!(
            c.get(WEBHOOKS_KEY).unwrap(),
            &json!({"siem": {"url": "http://localhost:9000/s", "durable": true}})
        );
        assert_eq!(named(&c).unwrap()["siem"], siem);
        assert!(remove(&mut c, "siem"));
        assert!(!remove(&mut c, "siem"));
        assert!(c.get(WEBHOOKS_KEY).is_none());
        assert!(remove(&mut c, DEFAULT));
        assert!(c.webhook().is_none());
    }

    #[test]
    fn dead_letter_and_retention_keys_persist_and_bad_values_name_the_key() {
        let mut c = config(json!({"registry": "x"}));
        let settings = WebhookSettings {
            dead_letter_max_bytes: Some(1 << 20),
            dead_letter_retention: Some(std::time::Duration::from_secs(86400)),
            retain: Some(std::time::Duration::from_secs(7200)),
            retain_max_bytes: Some(8 << 20),
            ..Default::default()
        };
        let entry = EndpointConfig {
            url: "http://localhost:9000/s".into(),
            settings: settings.clone(),
        };
        put(&mut c, "siem", &entry);
        put(&mut c, DEFAULT, &entry);
        let text = c.to_json().unwrap();
        let back = ConfigFile::parse("/tmp/config.json", &text).unwrap();
        let all = from_config(&back).unwrap();
        assert_eq!(all["siem"], entry);
        assert_eq!(all[DEFAULT], entry);
        assert_eq!(
            back.get(WEBHOOKS_KEY).unwrap()["siem"],
            json!({
                "url": "http://localhost:9000/s",
                "dead_letter_max_bytes": 1048576,
                "dead_letter_retention": "24h",
                "retain": "2h",
                "retain_max_bytes": 8388608
            })
        );

        for (bad, want) in [
            (
                json!({"webhooks": {"a": {"url": "http://x/", "retain": "soon"}}}),
                r#"key "webhooks.a": retain: invalid duration "soon""#,
            ),
            (
                json!({"webhooks": {"a": {"url": "http://x/", "dead_letter_max_bytes": "1MiB"}}}),
                r#"key "webhooks.a": dead_letter_max_bytes: invalid type"#,
            ),
            (
                json!({"webhooks": {"a": {"url": "http://x/", "retain": "0s"}}}),
                "retain must be longer than 0",
            ),
            (
                json!({"webhooks": {"a": {"url": "http://x/", "retain_max_bytes": 4096}}}),
                "--retain-max-bytes needs --retain",
            ),
            (
                json!({"webhook": "http://x/", "webhook_settings": {"dead_letter_retention": 5}}),
                r#"key "webhook_settings": dead_letter_retention: invalid type"#,
            ),
            (
                json!({"webhook": "http://x/", "webhook_settings": {"dead_letter_max_bytes": 10}}),
                "dead_letter_max_bytes must be at least 1KiB",
            ),
        ] {
            let e = from_config(&config(bad.clone())).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn the_limit_defaults_to_64() {
        assert_eq!(max_endpoints(&config(json!({}))).unwrap(), 64);
        assert_eq!(
            max_endpoints(&config(json!({"max_webhooks": 3}))).unwrap(),
            3
        );
        assert!(max_endpoints(&config(json!({"max_webhooks": 0}))).is_err());
    }
}
