//! The readable one-line summary of an event (`summary` in a template) and its key fields
//! (`fields`): the event's name, its node, and its most telling data fields as `name=value`.
//!
//! The key fields of a catalog event are the catalog's fields it carries, required ones first,
//! in the catalog's order (so `handshake.received` shows its peer, `conn.fin` its ports,
//! `security.nonce_replay` the peer and nonce); for a name outside the catalog, the data's own
//! fields in order. At most [`MAX_FIELDS`] fields, each value shortened to [`MAX_VALUE`]
//! characters, the whole line to [`MAX_SUMMARY`].

use pilot_core::catalog::EventSpec;
use serde_json::{Map, Value};

/// The most key fields shown.
pub const MAX_FIELDS: usize = 8;
/// The longest value shown in a summary (in characters; longer ones end with `…`).
pub const MAX_VALUE: usize = 80;
/// The longest summary (in characters).
pub const MAX_SUMMARY: usize = 400;

/// One key field of an event: its name, its value, and the value as text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyField {
    pub name: String,
    pub value: Value,
    /// The value for people: a string as it is, anything else as compact JSON, shortened to
    /// [`MAX_VALUE`] characters.
    pub text: String,
}

/// The key fields of event `name` with `data` (an object; anything else has none).
pub fn key_fields(spec: Option<&EventSpec>, data: &Value) -> Vec<KeyField> {
    let Some(map) = data.as_object() else {
        return Vec::new();
    };
    let names: Vec<&str> = match spec {
        Some(spec) => {
            let required = spec.fields.iter().filter(|f| f.required);
            let optional = spec.fields.iter().filter(|f| !f.required);
            let mut names: Vec<&str> = required.chain(optional).map(|f| f.name).collect();
            // Fields the catalog does not list come after its own.
            let others: Vec<&str> = map
                .keys()
                .map(String::as_str)
                .filter(|k| !names.contains(k))
                .collect();
            names.extend(others);
            names
        }
        None => map.keys().map(String::as_str).collect(),
    };
    names
        .into_iter()
        .filter_map(|name| field(map, name))
        .take(MAX_FIELDS)
        .collect()
}

fn field(map: &Map<String, Value>, name: &str) -> Option<KeyField> {
    let value = map.get(name)?;
    if value.is_null() {
        return None;
    }
    Some(KeyField {
        name: name.to_string(),
        text: shorten(&text_of(value), MAX_VALUE),
        value: value.clone(),
    })
}

/// A value for people: strings as they are (line breaks as spaces), the rest as compact JSON.
pub fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.replace(['\r', '\n'], " "),
        other => other.to_string(),
    }
}

/// `s` cut to at most `max` characters, ending with `…` when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `<event> on node <node_id>: name=value, name=value` (no colon part without key fields).
pub fn summary(event: &str, node_id: u32, fields: &[KeyField]) -> String {
    let mut line = format!("{event} on node {node_id}");
    if !fields.is_empty() {
        line.push_str(": ");
        let parts: Vec<String> = fields
            .iter()
            .map(|f| {
                let quoted = f.text.is_empty() || f.text.contains([' ', ',', '=']);
                if quoted && f.value.is_string() {
                    format!("{}={:?}", f.name, f.text)
                } else {
                    format!("{}={}", f.name, f.text)
                }
            })
            .collect();
        line.push_str(&parts.join(", "));
    }
    shorten(&line, MAX_SUMMARY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn catalog_fields_come_first_in_catalog_order() {
        let spec = pilot_core::catalog::lookup("agent.registered");
        let data = json!({"extra": 1, "endpoint": "1.2.3.4:4000", "node_id": 7, "address": "0:0000.0000.0007"});
        let names: Vec<String> = key_fields(spec, &data)
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["address", "node_id", "endpoint", "extra"]);
    }

    #[test]
    fn summaries_are_one_readable_line() {
        let data = json!({"reason": "two words", "count": 3, "list": [1, 2], "note": "a\nb"});
        let fields = key_fields(None, &data);
        assert_eq!(
            summary("myapp.done", 4, &fields),
            r#"myapp.done on node 4: reason="two words", count=3, list=[1,2], note="a b""#
        );
        assert_eq!(summary("a.b", 0, &[]), "a.b on node 0");
        let long = json!({"k": "x".repeat(500)});
        let s = summary("a.b", 1, &key_fields(None, &long));
        assert!(s.chars().count() <= MAX_SUMMARY && !s.contains('\n'));
        assert!(s.ends_with('…'), "{s}");
        assert!(key_fields(None, &json!([1])).is_empty());
        assert!(key_fields(None, &json!({"n": null})).is_empty());
    }

    #[test]
    fn shorten_counts_characters_not_bytes() {
        assert_eq!(shorten("ééééé", 3), "éé…");
        assert_eq!(shorten("abc", 3), "abc");
    }
}
