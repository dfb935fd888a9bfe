//! Sample events for checking a template before it is used: one for every catalog entry (a
//! family's as its example name), its data holding every catalog field with a plausible value
//! of its type, plus an event outside the catalog with no data and one whose strings carry
//! quotes, backslashes, line breaks and non-ASCII text (a template that pastes a string into
//! JSON without `tojson` fails on it).

use pilot_core::catalog::{JsonType, CATALOG};
use pilot_core::{Event, Severity};
use serde_json::{json, Map, Value};

/// The node id of every sample.
pub const SAMPLE_NODE: u32 = 7;

/// The timestamp of every sample.
fn sample_time() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_768_480_496).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// A value of type `ty` for a field called `name`.
fn value_for(name: &str, ty: JsonType) -> Value {
    match ty {
        JsonType::String => {
            let s = if name.contains("address") || name == "peer" || name.ends_with("_addr") {
                "0:0000.0000.002a".to_string()
            } else if name.contains("endpoint") || name == "remote" {
                "203.0.113.5:4000".to_string()
            } else if name.contains("reason") || name.contains("error") {
                "peer closed the session".to_string()
            } else if name.contains("url") {
                "https://hooks.example.com/pilot".to_string()
            } else {
                format!("example-{name}")
            };
            Value::String(s)
        }
        JsonType::Integer => json!(42),
        JsonType::Number => json!(12.5),
        JsonType::Boolean => json!(true),
        JsonType::Array => json!(["ops", "eu-west"]),
        JsonType::Object => json!({"key": "value"}),
    }
}

/// The sample events: every catalog entry (ids from 1, in catalog order), then the two extras.
pub fn events() -> Vec<Event> {
    let mut out = Vec::with_capacity(CATALOG.len() + 2);
    for (i, spec) in CATALOG.iter().enumerate() {
        let data: Map<String, Value> = spec
            .fields
            .iter()
            .map(|f| (f.name.to_string(), value_for(f.name, f.ty)))
            .collect();
        let data = (!data.is_empty())
            .then(|| pilot_core::event::data_from_value(&Value::Object(data)).ok())
            .flatten();
        out.push(Event::new(
            i as u64 + 1,
            spec.example(),
            SAMPLE_NODE,
            sample_time(),
            data,
        ));
    }
    let n = out.len() as u64;
    out.push(Event::new(
        n + 1,
        "myapp.deployed",
        SAMPLE_NODE,
        sample_time(),
        None,
    ));
    let tricky = json!({
        "message": "a \"quoted\" word, a back\\slash,\na new line and caf\u{e9} \u{2603}",
        "empty": "",
        "nested": {"list": [1, 2.5, null, false]},
    });
    out.push(Event::with_severity(
        n + 2,
        "myapp.tricky_input",
        SAMPLE_NODE,
        sample_time(),
        pilot_core::event::data_from_value(&tricky).ok(),
        Some(Severity::Critical),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_sample_passes_the_catalog_check() {
        let events = events();
        assert_eq!(events.len(), CATALOG.len() + 2);
        for e in &events {
            pilot_core::catalog::check(&e.event, e.data.as_deref())
                .unwrap_or_else(|err| panic!("{}: {err}", e.event));
        }
        for c in pilot_core::catalog::Category::ALL {
            assert!(
                events
                    .iter()
                    .any(|e| pilot_core::catalog::lookup(&e.event).map(|s| s.category) == Some(c)),
                "{c} has a sample"
            );
        }
    }
}
