//! The event envelope: what the bus carries and what a webhook receives, one event per body.
//!
//! The JSON shape is fixed (Pilot-compatible): `event_id`, `event`, `node_id`, `timestamp`,
//! `data`, in that order; the timestamp is RFC 3339 UTC with `Z` and trailing fractional zeros
//! trimmed; `data` is left out when the event has none. An event is encoded at most once and
//! the bytes are shared by every consumer (webhook retries, IPC streams).
//!
//! An event also carries its [`Severity`], for consumers on the bus (a webhook's
//! `min_severity`). It is not part of the payload: the bytes stay Pilot's, and an event read
//! back from a payload takes the catalog's severity of its name.

use std::sync::OnceLock;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::severity::Severity;

/// Longest accepted event name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Largest accepted `data` object, in bytes of JSON.
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// Why an event name or its data was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event name is empty")]
    EmptyName,
    #[error("event name {name:?} is longer than {MAX_NAME_LEN} characters")]
    NameTooLong { name: String },
    #[error(
        "event name {name:?} is not lowercase dotted words (like `handshake.received`): \
         use a-z, 0-9 and _ in at least two dot-separated parts"
    )]
    BadName { name: String },
    #[error("event data is {len} bytes; the limit is {MAX_DATA_BYTES}")]
    DataTooLarge { len: usize },
    #[error("event data must be a JSON object, like {{\"key\":\"value\"}}")]
    DataNotObject,
    #[error("event data is not valid JSON: {0}")]
    DataNotJson(String),
}

/// Checks an event name: lowercase dotted words, at least two parts, at most 128 bytes.
pub fn validate_name(name: &str) -> Result<(), EventError> {
    if name.is_empty() {
        return Err(EventError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(EventError::NameTooLong {
            name: name.chars().take(32).collect::<String>() + "...",
        });
    }
    let mut parts = 0;
    for part in name.split('.') {
        parts += 1;
        let ok = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(EventError::BadName { name: name.into() });
        }
    }
    if parts < 2 {
        return Err(EventError::BadName { name: name.into() });
    }
    Ok(())
}

/// Checks event data given as JSON text: an object of at most [`MAX_DATA_BYTES`].
pub fn parse_data(json: &str) -> Result<Box<RawValue>, EventError> {
    if json.len() > MAX_DATA_BYTES {
        return Err(EventError::DataTooLarge { len: json.len() });
    }
    let raw: Box<RawValue> =
        serde_json::from_str(json).map_err(|e| EventError::DataNotJson(e.to_string()))?;
    check_data(&raw)?;
    Ok(raw)
}

/// Checks already-parsed JSON: an object of at most [`MAX_DATA_BYTES`].
pub fn check_data(raw: &RawValue) -> Result<(), EventError> {
    let text = raw.get();
    if text.len() > MAX_DATA_BYTES {
        return Err(EventError::DataTooLarge { len: text.len() });
    }
    if !text.trim_start().starts_with('{') {
        return Err(EventError::DataNotObject);
    }
    Ok(())
}

/// Builds `data` from a `serde_json::Value`, which must be an object.
pub fn data_from_value(value: &serde_json::Value) -> Result<Box<RawValue>, EventError> {
    if !value.is_object() {
        return Err(EventError::DataNotObject);
    }
    let raw = serde_json::value::to_raw_value(value)
        .map_err(|e| EventError::DataNotJson(e.to_string()))?;
    check_data(&raw)?;
    Ok(raw)
}

/// Bytes of a payload beside the name and the data: the keys, the id, the node and the
/// timestamp, with room to spare (`{"event_id":18446744073709551615,"event":"","node_id":
/// 4294967295,"timestamp":"-009999-01-02T01:59:59.999999999Z","data":}` is 117 bytes; escapes in
/// the name cannot occur, names are checked).
const PAYLOAD_OVERHEAD: usize = 128;

/// One thing that happened on the node.
#[derive(Debug, Deserialize)]
#[serde(from = "Incoming")]
pub struct Event {
    /// Per-daemon sequence number, from 1, strictly increasing.
    pub event_id: u64,
    /// Lowercase dotted name, like `handshake.received`.
    pub event: String,
    /// The node this daemon runs as.
    pub node_id: u32,
    /// When the bus accepted the event (UTC).
    #[serde(with = "timestamp")]
    pub timestamp: jiff::Timestamp,
    /// Event details: a JSON object, or none.
    pub data: Option<Box<RawValue>>,
    /// How much the event matters: the publisher's choice, else the catalog's for the name
    /// ([`crate::catalog::severity`]: `info` outside the catalog). Not in the payload.
    pub severity: Severity,
    encoded: OnceLock<Bytes>,
}

/// An event as a payload holds it (no severity: the catalog's is taken).
#[derive(Deserialize)]
struct Incoming {
    event_id: u64,
    event: String,
    node_id: u32,
    #[serde(with = "timestamp")]
    timestamp: jiff::Timestamp,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

impl From<Incoming> for Event {
    fn from(i: Incoming) -> Self {
        Event::new(i.event_id, i.event, i.node_id, i.timestamp, i.data)
    }
}

impl Clone for Event {
    fn clone(&self) -> Self {
        Self {
            event_id: self.event_id,
            event: self.event.clone(),
            node_id: self.node_id,
            timestamp: self.timestamp,
            data: self.data.clone(),
            severity: self.severity,
            encoded: self.encoded.clone(),
        }
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.event_id == other.event_id
            && self.event == other.event
            && self.node_id == other.node_id
            && self.timestamp == other.timestamp
            && self.data.as_ref().map(|d| d.get()) == other.data.as_ref().map(|d| d.get())
            && self.severity == other.severity
    }
}

#[derive(Serialize)]
struct Wire<'a> {
    event_id: u64,
    event: &'a str,
    node_id: u32,
    #[serde(with = "timestamp")]
    timestamp: jiff::Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            event_id: self.event_id,
            event: &self.event,
            node_id: self.node_id,
            timestamp: self.timestamp,
            data: self.data.as_deref(),
        }
        .serialize(s)
    }
}

impl Event {
    /// An event as the bus stamps it, with the catalog's severity for its name.
    pub fn new(
        event_id: u64,
        event: impl Into<String>,
        node_id: u32,
        timestamp: jiff::Timestamp,
        data: Option<Box<RawValue>>,
    ) -> Self {
        Self::with_severity(event_id, event, node_id, timestamp, data, None)
    }

    /// Like [`Event::new`], with `severity` instead of the catalog's when it is given.
    pub fn with_severity(
        event_id: u64,
        event: impl Into<String>,
        node_id: u32,
        timestamp: jiff::Timestamp,
        data: Option<Box<RawValue>>,
        severity: Option<Severity>,
    ) -> Self {
        let event = event.into();
        Self {
            severity: severity.unwrap_or_else(|| crate::catalog::severity(&event)),
            event_id,
            event,
            node_id,
            timestamp,
            data,
            encoded: OnceLock::new(),
        }
    }

    /// The JSON body of this event, encoded once and shared.
    pub fn payload(&self) -> Bytes {
        self.encoded
            .get_or_init(|| {
                // Sized once: the fixed fields take under 100 bytes beside the name and data, so
                // the buffer is never grown and copied while encoding.
                let data = self.data.as_ref().map_or(0, |d| d.get().len());
                let mut out = Vec::with_capacity(PAYLOAD_OVERHEAD + self.event.len() + data);
                if self.write_direct(&mut out).is_err() {
                    out.clear();
                    // Serializing plain strings, integers and already-valid raw JSON cannot
                    // fail.
                    if serde_json::to_writer(&mut out, self).is_err() {
                        out.clear();
                    }
                }
                Bytes::from(out)
            })
            .clone()
    }

    /// Writes the payload field by field: the same bytes as serde's encoding (a test checks),
    /// without its per-byte escaping of the keys and the name or the `fmt` detour of the
    /// timestamp. Refuses (`Err`) a name that would need escaping; the caller then falls back
    /// to serde (checked names never do).
    fn write_direct(&self, out: &mut Vec<u8>) -> Result<(), ()> {
        if !self
            .event
            .bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\')
        {
            return Err(());
        }
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(b"{\"event_id\":");
        out.extend_from_slice(digits.format(self.event_id).as_bytes());
        out.extend_from_slice(b",\"event\":\"");
        out.extend_from_slice(self.event.as_bytes());
        out.extend_from_slice(b"\",\"node_id\":");
        out.extend_from_slice(digits.format(self.node_id).as_bytes());
        out.extend_from_slice(b",\"timestamp\":\"");
        // The same printer as the timestamp's `Display` (digits, `-`, `:`, `.`, `T`, `Z`:
        // nothing to escape).
        jiff::fmt::temporal::DateTimePrinter::new()
            .print_timestamp(&self.timestamp, &mut *out)
            .map_err(|_| ())?;
        out.push(b'"');
        if let Some(data) = &self.data {
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(data.get().as_bytes());
        }
        out.push(b'}');
        Ok(())
    }

    /// The timestamp in the wire format (RFC 3339, UTC, `Z`, trailing zeros trimmed).
    pub fn timestamp_string(&self) -> String {
        timestamp::format(self.timestamp)
    }

    /// The data as a `serde_json::Value` (an empty object when there is none).
    pub fn data_value(&self) -> serde_json::Value {
        self.data
            .as_ref()
            .and_then(|d| serde_json::from_str(d.get()).ok())
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()))
    }
}

/// RFC 3339 UTC timestamps with `Z` and the fractional part's trailing zeros trimmed.
pub mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer};

    /// `2026-01-15T12:34:56.789Z`; whole seconds print without a fraction.
    pub fn format(ts: jiff::Timestamp) -> String {
        // jiff prints UTC with `Z` and the shortest fraction that is exact.
        ts.to_string()
    }

    pub fn serialize<S: Serializer>(ts: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{ts}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<jiff::Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn payload_has_pilot_field_order_and_trimmed_timestamp() {
        let data =
            parse_data(r#"{"peer_node_id":7,"justification":"want to collaborate"}"#).unwrap();
        let ev = Event::new(
            1,
            "handshake.received",
            5,
            ts("2026-01-15T12:34:56.789Z"),
            Some(data),
        );
        assert_eq!(
            std::str::from_utf8(&ev.payload()).unwrap(),
            r#"{"event_id":1,"event":"handshake.received","node_id":5,"timestamp":"2026-01-15T12:34:56.789Z","data":{"peer_node_id":7,"justification":"want to collaborate"}}"#
        );
    }

    #[test]
    fn data_is_omitted_when_none_and_whole_seconds_have_no_fraction() {
        let ev = Event::new(2, "node.deregistered", 0, ts("2026-01-15T12:34:56Z"), None);
        assert_eq!(
            std::str::from_utf8(&ev.payload()).unwrap(),
            r#"{"event_id":2,"event":"node.deregistered","node_id":0,"timestamp":"2026-01-15T12:34:56Z"}"#
        );
        let ev = Event::new(3, "a.b", 0, ts("2026-01-15T12:34:56.120000Z"), None);
        assert_eq!(ev.timestamp_string(), "2026-01-15T12:34:56.12Z");
    }

    #[test]
    fn event_round_trips_through_json() {
        let ev = Event::new(
            9,
            "pubsub.published",
            3,
            ts("2026-01-15T12:34:56.000001Z"),
            Some(parse_data(r#"{"topic":"t","size":3}"#).unwrap()),
        );
        let back: Event = serde_json::from_slice(&ev.payload()).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn the_direct_payload_is_byte_for_byte_serdes() {
        let data = || Some(parse_data(r#"{"k":"v\u00e9\"","n":[1,2,{"x":null}]}"#).unwrap());
        let cases = [
            Event::new(1, "a.b", 0, ts("2026-01-15T12:34:56Z"), None),
            Event::new(
                u64::MAX,
                "conn.syn_received",
                u32::MAX,
                ts("1970-01-01T00:00:00.000000001Z"),
                data(),
            ),
            Event::new(7, "x.y", 3, ts("-000001-06-30T23:59:59.5Z"), data()),
            Event::new(
                8,
                "\u{e9}t\u{e9}.\u{7f}~/",
                3,
                ts("9999-12-30T21:59:59.999999999Z"),
                data(),
            ),
            // Names that need escaping take serde's path.
            Event::new(9, "a\"b\\c\n\u{1}", 3, ts("2026-01-15T12:34:56.1Z"), data()),
        ];
        for ev in cases {
            let serde = serde_json::to_vec(&ev).unwrap();
            assert_eq!(
                std::str::from_utf8(&ev.payload()).unwrap(),
                std::str::from_utf8(&serde).unwrap()
            );
        }
    }

    #[test]
    fn severity_is_the_catalogs_unless_given_and_never_in_the_payload() {
        let at = ts("2026-01-15T12:34:56Z");
        let replay = || Some(parse_data(r#"{"peer_node_id":1,"counter":2}"#).unwrap());
        let ev = Event::new(1, "security.nonce_replay", 5, at, replay());
        assert_eq!(ev.severity, Severity::Critical);
        assert_eq!(Event::new(1, "a.b", 5, at, None).severity, Severity::Info);
        let given = Event::with_severity(
            1,
            "security.nonce_replay",
            5,
            at,
            replay(),
            Some(Severity::Debug),
        );
        assert_eq!(given.severity, Severity::Debug);
        // The payload is the same bytes whatever the severity.
        assert_eq!(given.payload(), ev.payload());
        assert!(!std::str::from_utf8(&ev.payload())
            .unwrap()
            .contains("severity"));
        // Read back from a payload: the catalog's severity.
        let back: Event = serde_json::from_slice(&given.payload()).unwrap();
        assert_eq!(back.severity, Severity::Critical);
        assert_eq!(back.clone(), ev);
        assert_ne!(back, given, "the severity is part of equality");
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("handshake.received").is_ok());
        assert!(validate_name("conn.syn_received").is_ok());
        assert!(validate_name("a.b.c").is_ok());
        assert_eq!(validate_name(""), Err(EventError::EmptyName));
        for bad in [
            "single",
            "Upper.case",
            "a..b",
            ".a",
            "a.",
            "sp ace.x",
            "a.b/c",
        ] {
            assert!(
                matches!(validate_name(bad), Err(EventError::BadName { .. })),
                "{bad}"
            );
        }
        let long = format!("a.{}", "b".repeat(MAX_NAME_LEN));
        assert!(matches!(
            validate_name(&long),
            Err(EventError::NameTooLong { .. })
        ));
    }

    #[test]
    fn data_must_be_a_small_object() {
        assert!(parse_data(r#"{"a":1}"#).is_ok());
        assert_eq!(parse_data("[1,2]").unwrap_err(), EventError::DataNotObject);
        assert_eq!(parse_data("3").unwrap_err(), EventError::DataNotObject);
        assert!(matches!(
            parse_data("{nope"),
            Err(EventError::DataNotJson(_))
        ));
        let big = format!(r#"{{"k":"{}"}}"#, "x".repeat(MAX_DATA_BYTES));
        assert!(matches!(
            parse_data(&big),
            Err(EventError::DataTooLarge { .. })
        ));
    }
}
