//! Fuzzing entry points for the core's parsers: `config.json`, webhook URLs, event names and
//! data.
//!
//! Each `pub fn` taking `&[u8]` is the whole body of one cargo-fuzz target in `fuzz/` and is
//! also run over the checked-in corpus by `cargo test` (`pilot-tests/tests/fuzz_corpus.rs`).
//! They panic when an invariant breaks, not only when the code under test panics: errors must
//! be the typed ones and name what they concern, and what pilot writes must read back the same.
//! Compiled only with the `fuzzing` feature.

use std::path::Path;
use std::str::FromStr;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::{ConfigError, ConfigFile};
use crate::event::{self, EventError, MAX_DATA_BYTES, MAX_NAME_LEN};
use crate::pattern::Pattern;
use crate::webhook_settings::WebhookSettings;
use crate::webhook_url::{self, UrlError};
use crate::{duration, Event};

/// The path the config target pretends its bytes came from.
const CONFIG_PATH: &str = "/fuzz/home/config.json";

/// `config.json` from arbitrary file contents: it parses exactly when the bytes are a JSON
/// object; every typed getter answers a value or an error naming the file and the key; the URL
/// and settings it holds go through their checks; and what `save` would write parses back to
/// the same config.
pub fn config(data: &[u8]) {
    let json = serde_json::from_slice::<Value>(data);
    let config = match ConfigFile::parse(CONFIG_PATH, data) {
        Ok(c) => c,
        Err(e) => {
            assert!(
                e.to_string().contains(CONFIG_PATH),
                "error without the path: {e}"
            );
            match e {
                ConfigError::Parse { .. } => assert!(json.is_err(), "valid JSON refused: {e}"),
                ConfigError::DuplicateKey { .. } => {
                    assert!(json.is_ok(), "a duplicate key in invalid JSON: {e}")
                }
                ConfigError::NotObject { .. } => {
                    assert!(json.is_ok_and(|v| !v.is_object()), "{e}")
                }
                other => panic!("parsing bytes gave a non-parse error: {other}"),
            }
            return;
        }
    };
    assert_eq!(
        Value::Object(config.values().clone()),
        json.expect("a parsed config is valid JSON")
    );
    for key in config.values().keys() {
        check_typed(&config, key);
    }
    let _ = config
        .node_id()
        .map_err(|e| assert_names_key(&e, "node_id"));
    if let Some(url) = config.webhook() {
        check_url(url);
    }
    if let Some(settings) = config.get("webhook_settings") {
        if let Ok(s) = serde_json::from_value::<WebhookSettings>(settings.clone()) {
            check_settings(&s);
        }
    }
    let written = config.to_json().expect("a parsed config serializes");
    let back = ConfigFile::parse(CONFIG_PATH, &written).expect("what pilot writes parses back");
    assert_eq!(back, config, "the config changed on a write and read");
}

/// Every typed getter on `key`: a value, or an error that names the file and the key.
fn check_typed(config: &ConfigFile, key: &str) {
    let _ = config.get_u64(key).map_err(|e| assert_names_key(&e, key));
    match config.get_duration(key) {
        Ok(Some(d)) => assert_eq!(
            duration::parse(&duration::format(d)).ok(),
            Some(d),
            "duration {d:?} does not read back"
        ),
        Ok(None) => {}
        Err(e) => assert_names_key(&e, key),
    }
    let _ = config.get_str(key);
}

fn assert_names_key(e: &ConfigError, key: &str) {
    match e {
        ConfigError::InvalidValue { path, key: k, .. } => {
            assert_eq!(path, Path::new(CONFIG_PATH));
            assert_eq!(k, key);
        }
        other => panic!("a typed getter gave {other}"),
    }
}

/// The webhook URL policy on arbitrary text.
pub fn webhook_url(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        check_url(s);
    }
}

/// Checks one URL: an accepted URL is http(s) with an allowed host, and its normal form is
/// accepted as the same URL (so what is stored and shown passes the policy again); a refusal
/// names the URL as given.
pub fn check_url(input: &str) {
    match webhook_url::validate(input) {
        Ok(url) => {
            assert!(
                matches!(url.scheme(), "http" | "https" | "nats" | "tls"),
                "{url}"
            );
            match url.host().expect("an accepted URL has a host") {
                url::Host::Domain(d) => {
                    assert!(!d.is_empty());
                    assert!(webhook_url::check_hostname(d).is_ok(), "{url}");
                }
                url::Host::Ipv4(ip) => assert!(webhook_url::check_ip(ip.into()).is_ok(), "{url}"),
                url::Host::Ipv6(ip) => assert!(webhook_url::check_ip(ip.into()).is_ok(), "{url}"),
            }
            let again = webhook_url::validate(url.as_str());
            assert_eq!(
                again.as_ref(),
                Ok(&url),
                "the normal form of {input:?} changed"
            );
        }
        Err(
            UrlError::Parse { url, .. }
            | UrlError::Scheme { url, .. }
            | UrlError::NoHost { url }
            | UrlError::Broker { url, .. }
            | UrlError::Blocked { url, .. },
        ) => assert_eq!(url, input),
    }
}

/// Settings as a client or the config file gives them: `validate` answers, and a serialized
/// copy reads back equal (durations survive their text form).
pub fn check_settings(s: &WebhookSettings) {
    let _ = s.validate();
    let _ = s.redacted();
    let text = serde_json::to_string(s).expect("settings serialize");
    let back: WebhookSettings = serde_json::from_str(&text).expect("settings read back");
    assert_eq!(&back, s, "settings changed through {text}");
}

/// An event name, then a newline, then its data (JSON text), as `pilotctl emit` takes them.
pub fn event(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, json) = text.split_once('\n').unwrap_or((text, ""));
    let data = if json.is_empty() {
        None
    } else {
        check_data(json)
    };
    check_event(name, data.as_deref());
}

/// `parse_data`: an accepted value is a JSON object within the size limit; each refusal is the
/// right one. (Numbers beyond an f64, like `1e400`, are valid JSON to the parser and are kept
/// as written.)
fn check_data(json: &str) -> Option<Box<RawValue>> {
    let valid = serde_json::from_str::<IgnoredAny>(json).is_ok();
    let object = json.trim_start().starts_with('{');
    match event::parse_data(json) {
        Ok(raw) => {
            assert!(
                json.len() <= MAX_DATA_BYTES && valid && object,
                "accepted {json:?}"
            );
            assert!(event::check_data(&raw).is_ok());
            assert_eq!(raw.get(), json.trim(), "the data changed");
            if let Ok(v) = serde_json::from_str::<Value>(json) {
                assert!(v.is_object());
            }
            Some(raw)
        }
        Err(EventError::DataTooLarge { len }) => {
            assert!(len > MAX_DATA_BYTES);
            None
        }
        Err(EventError::DataNotJson(_)) => {
            assert!(!valid, "valid JSON refused as not JSON");
            None
        }
        Err(EventError::DataNotObject) => {
            assert!(valid && !object);
            None
        }
        Err(other) => panic!("data gave a name error: {other}"),
    }
}

/// The webhook body, as a receiver reads it.
#[derive(Deserialize)]
struct Payload<'a> {
    event_id: u64,
    event: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// An event as the daemon's `emit` checks it: a valid name is a lowercase dotted name that
/// subscriptions match exactly, and the webhook body of the event is JSON holding the name and
/// data as given.
pub fn check_event(name: &str, data: Option<&RawValue>) {
    match event::validate_name(name) {
        Ok(()) => {
            assert!(
                name.len() <= MAX_NAME_LEN && name.split('.').count() >= 2,
                "{name:?}"
            );
            let p = Pattern::from_str(name).expect("a valid name is a pattern");
            assert_eq!(p, Pattern::Exact(name.into()));
            assert!(p.matches(name));
            // A prefix pattern needs room for one more part under it (`name.x`).
            match Pattern::from_str(&format!("{name}.*")) {
                Ok(under) => {
                    assert!(name.len() + 2 <= MAX_NAME_LEN, "{name:?}");
                    assert!(under.matches(&format!("{name}.x")) && !under.matches(name));
                }
                Err(e) => assert!(name.len() + 2 > MAX_NAME_LEN, "{name:?}: {e}"),
            }
        }
        Err(EventError::EmptyName) => assert!(name.is_empty()),
        Err(EventError::NameTooLong { .. }) => assert!(name.len() > MAX_NAME_LEN),
        Err(EventError::BadName { name: n }) => assert_eq!(n, name),
        Err(other) => panic!("a name gave a data error: {other}"),
    }
    let data_ok = data.is_none_or(|d| event::check_data(d).is_ok());
    if event::validate_name(name).is_ok() && data_ok {
        let ev = Event::new(
            7,
            name,
            3,
            jiff::Timestamp::UNIX_EPOCH,
            data.map(RawValue::to_owned),
        );
        let payload = ev.payload();
        let body: Payload = serde_json::from_slice(&payload).expect("the payload is JSON");
        assert_eq!((body.event_id, body.event.as_str()), (7, name));
        assert_eq!(body.data.map(RawValue::get), data.map(RawValue::get));
    }
}
