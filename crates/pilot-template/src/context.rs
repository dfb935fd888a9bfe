//! What a template sees: one event as variables ([`Context`]).
//!
//! | variable | what |
//! |---|---|
//! | `event` | the event's name (`handshake.received`) |
//! | `event_id`, `node_id` | integers |
//! | `timestamp` | RFC 3339, UTC (`2026-01-15T12:34:56.789Z`) |
//! | `data` | the event's data (an empty object when it has none) |
//! | `severity` | `debug`, `info`, `notice`, `warning` or `critical` |
//! | `category`, `category_title` | the catalog's category (`trust`, `Trust and handshake`); `other` / `Other` outside the catalog |
//! | `description` | the catalog's one-line description (empty outside the catalog) |
//! | `summary` | a readable one-line summary ([`crate::summary::summary`]) |
//! | `fields` | the key fields: a list of `{name, value, text}` |
//! | `webhook_id` | the delivery's `webhook-id` (stable across retries) |
//! | `payload` | the event as pilot's own JSON body (`{{ payload \| tojson }}`) |
//! | `vars` | the endpoint's `--template-var KEY=VALUE` values |

use std::collections::BTreeMap;

use pilot_core::catalog;
use pilot_core::Event;
use serde::Serialize;
use serde_json::Value;

use crate::summary::{key_fields, summary, KeyField};

/// The user's template variables (`--template-var KEY=VALUE`), by key.
pub type Vars = BTreeMap<String, String>;

/// The variables of one render (see the module docs).
#[derive(Debug, Clone, Serialize)]
pub struct Context<'a> {
    pub event: &'a str,
    pub event_id: u64,
    pub node_id: u32,
    pub timestamp: String,
    pub data: Value,
    pub severity: &'static str,
    pub category: &'static str,
    pub category_title: &'static str,
    pub description: &'static str,
    pub summary: String,
    pub fields: Vec<KeyField>,
    pub webhook_id: &'a str,
    pub payload: Value,
    pub vars: &'a Vars,
}

impl<'a> Context<'a> {
    /// The variables for `event`, sent as `webhook_id`, with `vars`.
    pub fn of(event: &'a Event, webhook_id: &'a str, vars: &'a Vars) -> Self {
        let spec = catalog::lookup(&event.event);
        let data = event.data_value();
        let fields = key_fields(spec, &data);
        let timestamp = event.timestamp_string();
        let mut payload = serde_json::Map::new();
        payload.insert("event_id".into(), event.event_id.into());
        payload.insert("event".into(), event.event.clone().into());
        payload.insert("node_id".into(), event.node_id.into());
        payload.insert("timestamp".into(), timestamp.clone().into());
        if event.data.is_some() {
            payload.insert("data".into(), data.clone());
        }
        Self {
            event: &event.event,
            event_id: event.event_id,
            node_id: event.node_id,
            summary: summary(&event.event, event.node_id, &fields),
            timestamp,
            data,
            severity: event.severity.as_str(),
            category: spec.map_or("other", |s| s.category.id()),
            category_title: spec.map_or("Other", |s| s.category.title()),
            description: spec.map_or("", |s| s.description),
            fields,
            webhook_id,
            payload: Value::Object(payload),
            vars,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_event_gets_its_category_and_description() {
        let data = pilot_core::event::parse_data(r#"{"node_id":9,"public_key":"k"}"#).unwrap();
        let event = Event::new(
            3,
            "key.rotated",
            7,
            "2026-01-15T12:34:56.789Z".parse().unwrap(),
            Some(data),
        );
        let vars = Vars::new();
        let c = Context::of(&event, "msg_x_3", &vars);
        assert_eq!(c.category, "node");
        assert_eq!(c.severity, "notice");
        assert!(!c.description.is_empty());
        assert_eq!(c.summary, "key.rotated on node 7: node_id=9, public_key=k");
        assert_eq!(c.timestamp, "2026-01-15T12:34:56.789Z");
        let payload: Value = serde_json::from_slice(&event.payload()).unwrap();
        assert_eq!(c.payload, payload, "the same JSON as pilot's own body");
        let other = Event::new(1, "myapp.x", 0, jiff::Timestamp::UNIX_EPOCH, None);
        let c = Context::of(&other, "", &vars);
        assert_eq!((c.category, c.description), ("other", ""));
        assert_eq!(c.data, serde_json::json!({}));
    }
}
