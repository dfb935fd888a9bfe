//! The event catalog: every event the Pilot daemon and pilot itself publish, with its category,
//! its [`Severity`], a one-line description and its `data` fields (JSON type, required or not),
//! and the check `emit` applies to a catalog event's data.
//!
//! The catalog is the contract with receivers: `docs/events.md` and `pilotctl events catalog`
//! are generated from [`CATALOG`]. A catalog event's data must carry every required field with
//! its type, and an optional field, when present, must have its type; fields the catalog does
//! not list are allowed (newer publishers may add some), and so are names outside the catalog.
//!
//! Most entries name one event. An entry whose name has a `<part>` is a *family*: Pilot's
//! `plugin.<name>.panic` stands for `plugin.webhook.panic`, `plugin.tasks.panic`, and so on,
//! one event per value of that part ([`EventSpec::pattern`]). A name of a family is checked
//! like a fixed name, and `pilotctl events catalog` shows the family as its pattern.
//!
//! [`check`] costs one binary search of the fixed names plus a segment compare per family
//! (a handful) for a name outside the catalog, and one scan of the data (no allocation) for a
//! name in it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::severity::Severity;

/// The JSON type of a data field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    String,
    /// A number without a fraction or exponent (`7`, `-3`).
    Integer,
    /// Any number (`7`, `0.5`, `1e3`).
    Number,
    Boolean,
    Array,
    Object,
}

impl JsonType {
    pub fn as_str(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }

    /// Whether a value whose most specific type is `found` (`None`: null) is of this type.
    fn accepts(self, found: Option<JsonType>) -> bool {
        match (self, found) {
            (JsonType::Number, Some(JsonType::Integer)) => true,
            (want, Some(got)) => want == got,
            (_, None) => false,
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a value's type in messages: its JSON type, or `null`.
fn type_name(found: &Option<JsonType>) -> &'static str {
    found.map_or("null", JsonType::as_str)
}

/// The group an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Node,
    Connection,
    Tunnel,
    Trust,
    Data,
    Pubsub,
    Security,
    Policy,
    Plugin,
    Webhook,
}

impl Category {
    /// Every category, in the catalog's order.
    pub const ALL: [Category; 10] = [
        Category::Node,
        Category::Connection,
        Category::Tunnel,
        Category::Trust,
        Category::Data,
        Category::Pubsub,
        Category::Security,
        Category::Policy,
        Category::Plugin,
        Category::Webhook,
    ];

    /// The short name (`--category`, JSON).
    pub fn id(self) -> &'static str {
        match self {
            Category::Node => "node",
            Category::Connection => "connection",
            Category::Tunnel => "tunnel",
            Category::Trust => "trust",
            Category::Data => "data",
            Category::Pubsub => "pubsub",
            Category::Security => "security",
            Category::Policy => "policy",
            Category::Plugin => "plugin",
            Category::Webhook => "webhook",
        }
    }

    /// The heading, for people.
    pub fn title(self) -> &'static str {
        match self {
            Category::Node => "Node lifecycle",
            Category::Connection => "Connections",
            Category::Tunnel => "Tunnels",
            Category::Trust => "Trust and handshake",
            Category::Data => "Data",
            Category::Pubsub => "Pub/sub",
            Category::Security => "Security",
            Category::Policy => "Policy and managed networks",
            Category::Plugin => "Plugin health",
            Category::Webhook => "Webhook",
        }
    }

    /// The catalog's events of this category.
    pub fn events(self) -> impl Iterator<Item = &'static EventSpec> {
        CATALOG.iter().filter(move |e| e.category == self)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A category name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event category {given:?} (one of: {})", Category::ALL.map(Category::id).join(", "))]
pub struct UnknownCategory {
    pub given: String,
}

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Category::ALL
            .into_iter()
            .find(|c| c.id().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCategory { given: s.into() })
    }
}

/// One field of an event's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: JsonType,
    pub required: bool,
}

/// One event of the catalog, or one family of events (see [`EventSpec::pattern`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventSpec {
    /// The event's name; for a family, its pattern (`plugin.<name>.panic`).
    pub name: &'static str,
    /// Whether `name` is a pattern: some of its parts are `<placeholder>`s, each standing for
    /// any one part of a name (`plugin.<name>.panic` covers `plugin.webhook.panic`). In JSON
    /// only when true.
    #[serde(skip_serializing_if = "is_false")]
    pub pattern: bool,
    pub category: Category,
    /// How much the event matters (`events catalog` shows it; webhooks can filter on it).
    pub severity: Severity,
    pub description: &'static str,
    pub fields: &'static [Field],
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a catalog event's data was refused. `event` is the name as given (`plugin.foo.panic`
/// for a family's event), borrowed from the catalog for a fixed name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("event {event}: data field {field:?} is missing (expected {expected})")]
    Missing {
        event: Cow<'static, str>,
        field: &'static str,
        expected: JsonType,
    },
    #[error(
        "event {event}: data field {field:?} must be {expected}, found {}",
        type_name(found)
    )]
    WrongType {
        event: Cow<'static, str>,
        field: &'static str,
        expected: JsonType,
        /// The value's most specific type (`Integer` for `7`); `None` for null.
        found: Option<JsonType>,
    },
    #[error("event {event}: data must be a JSON object ({reason})")]
    NotObject {
        event: Cow<'static, str>,
        reason: String,
    },
}

impl DataError {
    /// The field concerned, if one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            DataError::Missing { field, .. } | DataError::WrongType { field, .. } => Some(field),
            DataError::NotObject { .. } => None,
        }
    }

    /// The event named in the message.
    pub fn event(&self) -> &str {
        match self {
            DataError::Missing { event, .. }
            | DataError::WrongType { event, .. }
            | DataError::NotObject { event, .. } => event,
        }
    }

    /// The same error, naming `name` (the event as given) instead of the catalog entry.
    fn named(mut self, name: &str) -> Self {
        match &mut self {
            DataError::Missing { event, .. }
            | DataError::WrongType { event, .. }
            | DataError::NotObject { event, .. } => *event = Cow::Owned(name.to_owned()),
        }
        self
    }
}

/// The catalog entry of event `name`, if it has one: a binary search of the fixed names ordered
/// by length, then bytes (so most steps compare lengths only), then the families, whose
/// patterns are compared part by part. For a family's event (`plugin.webhook.panic`) this is
/// the family's entry (`plugin.<name>.panic`).
pub fn lookup(name: &str) -> Option<&'static EventSpec> {
    static BY_NAME: LazyLock<Vec<(usize, &'static str, &'static EventSpec)>> =
        LazyLock::new(|| {
            let mut v: Vec<_> = CATALOG
                .iter()
                .filter(|e| !e.pattern)
                .map(|e| (e.name.len(), e.name, e))
                .collect();
            v.sort_unstable_by_key(|&(len, name, _)| (len, name));
            v
        });
    BY_NAME
        .binary_search_by(|&(len, n, _)| len.cmp(&name.len()).then_with(|| n.cmp(name)))
        .ok()
        .map(|i| BY_NAME[i].2)
        .or_else(|| families().find(|e| e.matches(name)))
}

/// The catalog's families (entries whose name is a pattern), in catalog order.
pub fn families() -> impl Iterator<Item = &'static EventSpec> {
    static FAMILIES: LazyLock<Vec<&'static EventSpec>> =
        LazyLock::new(|| CATALOG.iter().filter(|e| e.pattern).collect());
    FAMILIES.iter().copied()
}

/// Whether one part of a name pattern is a placeholder (`<name>`).
fn is_placeholder(part: &str) -> bool {
    part.len() > 2 && part.starts_with('<') && part.ends_with('>')
}

/// Whether a name has a placeholder part (used when the catalog is built).
const fn has_placeholder(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'<' {
            return true;
        }
        i += 1;
    }
    false
}

/// The severity of event `name`: the catalog's, or [`Severity::Info`] for a name outside it
/// (one [`lookup`]).
pub fn severity(name: &str) -> Severity {
    lookup(name).map_or(Severity::Info, |e| e.severity)
}

/// Checks the data of event `name` against the catalog (a family's event against its family);
/// names outside it always pass. An error names the event as given.
pub fn check(name: &str, data: Option<&RawValue>) -> Result<(), DataError> {
    match lookup(name) {
        None => Ok(()),
        Some(spec) if spec.pattern => spec.check(data).map_err(|e| e.named(name)),
        Some(spec) => spec.check(data),
    }
}

impl EventSpec {
    /// Whether event `name` is this entry's: the same name, or for a family, as many parts
    /// with each fixed part equal and a non-empty part for each placeholder.
    pub fn matches(&self, name: &str) -> bool {
        if !self.pattern {
            return self.name == name;
        }
        let mut want = self.name.split('.');
        let mut got = name.split('.');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w == g || (is_placeholder(w) && !g.is_empty()) => {}
                _ => return false,
            }
        }
    }

    /// A name this entry covers: the name itself, or for a family the pattern with each
    /// placeholder replaced by its own word (`plugin.<name>.panic` -> `plugin.name.panic`).
    pub fn example(&self) -> Cow<'static, str> {
        if self.pattern {
            Cow::Owned(self.name.replace(['<', '>'], ""))
        } else {
            Cow::Borrowed(self.name)
        }
    }

    /// Whether some event of this entry has a name starting with `prefix` (which ends with a
    /// dot, as in a `prefix.*` pattern).
    pub fn may_start_with(&self, prefix: &str) -> bool {
        if !self.pattern {
            return self.name.starts_with(prefix);
        }
        let Some(body) = prefix.strip_suffix('.') else {
            return false;
        };
        let mut want = self.name.split('.');
        for g in body.split('.') {
            match want.next() {
                Some(w) if w == g || (is_placeholder(w) && !g.is_empty()) => {}
                _ => return false,
            }
        }
        // Room for at least one more part.
        want.next().is_some()
    }

    /// Checks `data` (valid JSON): every required field present with its type, every optional
    /// field that is present with its type; other fields are ignored.
    pub fn check(&self, data: Option<&RawValue>) -> Result<(), DataError> {
        debug_assert!(self.fields.len() <= 64);
        let mut seen: u64 = 0;
        if let (Some(data), false) = (data, self.fields.is_empty()) {
            let mut de = serde_json::Deserializer::from_str(data.get());
            let scan = Scan {
                spec: self,
                seen: &mut seen,
            };
            match (&mut de).deserialize_map(scan) {
                Ok(None) => {}
                Ok(Some(e)) => return Err(e),
                Err(e) => {
                    return Err(DataError::NotObject {
                        event: Cow::Borrowed(self.name),
                        reason: e.to_string(),
                    })
                }
            }
        }
        match self
            .fields
            .iter()
            .enumerate()
            .find(|(i, f)| f.required && seen & (1 << i) == 0)
        {
            Some((_, f)) => Err(DataError::Missing {
                event: Cow::Borrowed(self.name),
                field: f.name,
                expected: f.ty,
            }),
            None => Ok(()),
        }
    }

    /// The fields every instance must carry.
    pub fn required(&self) -> impl Iterator<Item = &'static Field> {
        self.fields.iter().filter(|f| f.required)
    }
}

/// Walks a data object once, marking the catalog fields found with their type; stops at the
/// first one of the wrong type (consuming the rest, so the object still parses).
struct Scan<'a> {
    spec: &'a EventSpec,
    seen: &'a mut u64,
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = Option<DataError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let Some(i) = self.spec.fields.iter().position(|f| f.name == key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let field = &self.spec.fields[i];
            let TypeOf(found) = map.next_value()?;
            if !field.ty.accepts(found) {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(Some(DataError::WrongType {
                    event: Cow::Borrowed(self.spec.name),
                    field: field.name,
                    expected: field.ty,
                    found,
                }));
            }
            *self.seen |= 1 << i;
        }
        Ok(None)
    }
}

/// The most specific type of one JSON value (`Integer` for `7`, `Number` for `7.5` or `1e3`,
/// `None` for null), read without copying it (nested values are skipped).
struct TypeOf(Option<JsonType>);

impl<'de> Deserialize<'de> for TypeOf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TypeOf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TypeOf, E> {
                Ok(TypeOf(Some(JsonType::Boolean)))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<TypeOf, E> {
                Ok(TypeOf(Some(JsonType::Integer)))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<TypeOf, E> {
                Ok(TypeOf(Some(JsonType::Integer)))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TypeOf, E> {
                Ok(TypeOf(Some(JsonType::Number)))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<TypeOf, E> {
                Ok(TypeOf(Some(JsonType::String)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TypeOf, E> {
                Ok(TypeOf(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<TypeOf, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TypeOf(Some(JsonType::Array)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TypeOf, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TypeOf(Some(JsonType::Object)))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object key, borrowed from the input unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

const fn req(name: &'static str, ty: JsonType) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: JsonType) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

const fn ev(
    name: &'static str,
    category: Category,
    severity: Severity,
    description: &'static str,
    fields: &'static [Field],
) -> EventSpec {
    EventSpec {
        name,
        pattern: has_placeholder(name),
        category,
        severity,
        description,
        fields,
    }
}

use Category::{Connection, Data, Node, Plugin, Policy, Pubsub, Security, Trust, Tunnel, Webhook};
use Severity::{Critical, Debug, Info, Notice, Warning};
const STR: JsonType = JsonType::String;
const INT: JsonType = JsonType::Integer;
const NUM: JsonType = JsonType::Number;
const BOOL: JsonType = JsonType::Boolean;
const ARR: JsonType = JsonType::Array;

const PEER: &[Field] = &[req("peer_node_id", INT)];
const PEER_REASON: &[Field] = &[req("peer_node_id", INT), req("reason", STR)];
const PEER_JUSTIFICATION: &[Field] = &[req("peer_node_id", INT), req("justification", STR)];
const NETWORK: &[Field] = &[req("network_id", INT)];
const CONN_OPENED: &[Field] = &[
    req("src_addr", STR),
    req("src_port", INT),
    req("dst_port", INT),
    req("conn_id", INT),
];
const CONN_CLOSED: &[Field] = &[
    req("remote_addr", STR),
    req("remote_port", INT),
    req("local_port", INT),
    req("conn_id", INT),
];
const UNTRUSTED_SOURCE: &[Field] = &[
    req("src_node_id", INT),
    req("src_addr", STR),
    req("dst_port", INT),
];
const POLICY_REFUSED: &[Field] = &[
    req("src_node_id", INT),
    req("dst_port", INT),
    req("network", INT),
];
const FULL: &[Field] = &[
    req("type", STR),
    req("frame_bytes", INT),
    req("max_bytes", INT),
];
const TOPIC_REMOTE: &[Field] = &[req("topic", STR), req("remote", STR)];

/// Every event, grouped by category in [`Category::ALL`] order.
pub static CATALOG: &[EventSpec] = &[
    // Node lifecycle.
    ev(
        "node.registered",
        Node,
        Info,
        "This node registered with the registry and got its address.",
        &[req("address", STR), req("endpoint", STR)],
    ),
    ev(
        "node.reregistered",
        Node,
        Notice,
        "This node registered again (after a registry restart or a network change).",
        &[req("address", STR)],
    ),
    ev(
        "node.deregistered",
        Node,
        Notice,
        "This node removed itself from the registry.",
        &[],
    ),
    ev(
        "agent.registered",
        Node,
        Info,
        "An agent registered, with its address and node id (the endpoint on a first registration, `reregistered` on a later one).",
        &[
            req("address", STR),
            req("node_id", INT),
            opt("endpoint", STR),
            opt("reregistered", BOOL),
        ],
    ),
    ev(
        "agent.heartbeat",
        Node,
        Debug,
        "An agent's periodic heartbeat.",
        &[req("address", STR), req("node_id", INT)],
    ),
    ev(
        "daemon.started",
        Node,
        Info,
        "pilot-daemon is ready: the first event of every run.",
        &[req("pid", INT), req("version", STR), req("socket", STR)],
    ),
    ev(
        "daemon.shutting_down",
        Node,
        Notice,
        "The daemon is stopping: its last event (pilot-daemon adds `reason`, Pilot the counts).",
        &[
            req("uptime_seconds", NUM),
            opt("reason", STR),
            opt("open_connections", INT),
            opt("known_peers", INT),
        ],
    ),
    ev(
        "key.rotated",
        Node,
        Notice,
        "This node's identity key was replaced.",
        &[req("node_id", INT), req("public_key", STR)],
    ),
    ev(
        "network.joined",
        Node,
        Info,
        "This node joined a network, with its member tags.",
        &[req("network_id", INT), req("member_tags", ARR)],
    ),
    ev("network.left", Node, Info, "This node left a network.", NETWORK),
    ev(
        "network.auto_joined",
        Node,
        Info,
        "This node joined a network automatically.",
        NETWORK,
    ),
    ev(
        "network.tags_changed",
        Node,
        Info,
        "This node's tags in a network changed.",
        &[req("network_id", INT), req("tags", ARR)],
    ),
    // Connections.
    ev(
        "conn.syn_received",
        Connection,
        Debug,
        "A peer is opening a connection to a local port (SYN received).",
        CONN_OPENED,
    ),
    ev(
        "conn.established",
        Connection,
        Debug,
        "A connection from a peer is established.",
        CONN_OPENED,
    ),
    ev(
        "conn.fin",
        Connection,
        Debug,
        "A connection closed normally (FIN).",
        CONN_CLOSED,
    ),
    ev(
        "conn.rst",
        Connection,
        Debug,
        "A connection was reset (RST).",
        CONN_CLOSED,
    ),
    ev(
        "conn.idle_timeout",
        Connection,
        Debug,
        "A connection closed after being idle too long.",
        CONN_CLOSED,
    ),
    ev(
        "conn.dead_peer",
        Connection,
        Notice,
        "A connection closed because the peer stopped answering.",
        CONN_CLOSED,
    ),
    ev(
        "conn.accept_queue_full",
        Connection,
        Warning,
        "A connection was dropped: the port's accept queue is full.",
        &[
            req("port", INT),
            req("src_addr", STR),
            req("src_port", INT),
            req("drops_total", INT),
        ],
    ),
    ev(
        "syn.rejected",
        Connection,
        Debug,
        "A private node silently dropped a connection (SYN) from a source it does not trust.",
        UNTRUSTED_SOURCE,
    ),
    ev(
        "datagram.rejected",
        Connection,
        Debug,
        "A private node dropped a datagram from a source it does not trust.",
        UNTRUSTED_SOURCE,
    ),
    // Tunnels.
    ev(
        "tunnel.peer_added",
        Tunnel,
        Info,
        "A peer was added to the tunnel table, with the endpoint it was seen at.",
        &[req("peer_node_id", INT), req("endpoint", STR)],
    ),
    ev(
        "tunnel.established",
        Tunnel,
        Info,
        "An encrypted tunnel to a peer is up.",
        &[
            req("peer_node_id", INT),
            req("authenticated", BOOL),
            req("relay", BOOL),
            req("rekeyed", BOOL),
        ],
    ),
    ev(
        "tunnel.relay_activated",
        Tunnel,
        Notice,
        "Traffic to a peer now goes through the relay.",
        PEER,
    ),
    ev(
        "tunnel.rekey_gave_up",
        Tunnel,
        Warning,
        "Rekeying the tunnel to a peer failed for good.",
        PEER,
    ),
    ev(
        "tunnel.desync_salvage",
        Tunnel,
        Notice,
        "After a rekey, frames sent under the old key were re-encrypted and sent again (`replayed` of them).",
        &[req("peer_node_id", INT), req("replayed", INT)],
    ),
    // Trust and handshake.
    ev(
        "handshake.received",
        Trust,
        Notice,
        "A peer asks to trust this node, with its justification.",
        PEER_JUSTIFICATION,
    ),
    ev(
        "handshake.pending",
        Trust,
        Notice,
        "A trust request awaits approval.",
        PEER_JUSTIFICATION,
    ),
    ev(
        "handshake.approved",
        Trust,
        Info,
        "A trust request was approved.",
        PEER,
    ),
    ev(
        "handshake.rejected",
        Trust,
        Info,
        "A trust request was rejected.",
        PEER_REASON,
    ),
    ev(
        "handshake.auto_approved",
        Trust,
        Notice,
        "A trust request was approved automatically.",
        PEER_REASON,
    ),
    ev(
        "trust.revoked",
        Trust,
        Notice,
        "This node revoked its trust in a peer.",
        PEER,
    ),
    ev(
        "trust.revoked_by_peer",
        Trust,
        Notice,
        "A peer revoked its trust in this node.",
        PEER,
    ),
    ev(
        "trust.changed",
        Trust,
        Notice,
        "A peer's trust state changed.",
        &[
            req("peer_node_id", INT),
            req("state", STR),
            req("reason", STR),
        ],
    ),
    // Data.
    ev(
        "message.received",
        Data,
        Info,
        "A message arrived from a peer.",
        &[req("type", STR), req("from", STR), req("size", INT)],
    ),
    ev(
        "file.received",
        Data,
        Info,
        "A file arrived from a peer and was saved.",
        &[req("filename", STR), req("size", INT), req("path", STR)],
    ),
    ev(
        "file.delivered",
        Data,
        Info,
        "A file sent to a peer was delivered.",
        &[
            req("remote_addr", STR),
            req("remote_port", INT),
            req("conn_id", INT),
        ],
    ),
    ev(
        "data.datagram",
        Data,
        Debug,
        "A datagram arrived on a local port.",
        &[
            req("src_addr", STR),
            req("src_port", INT),
            req("dst_port", INT),
            req("size", INT),
        ],
    ),
    ev(
        "dataexchange.ack_failed",
        Data,
        Warning,
        "The acknowledgement of a received frame could not be written back to the sender.",
        &[
            req("remote", STR),
            req("frame_type", STR),
            req("error", STR),
        ],
    ),
    ev(
        "received.full",
        Data,
        Warning,
        "A received file was refused: it would take the received-files directory past its quota.",
        FULL,
    ),
    ev(
        "inbox.full",
        Data,
        Warning,
        "A received message was refused: the inbox is at its byte budget even after evicting old messages.",
        &[
            req("from", STR),
            req("type", STR),
            req("frame_bytes", INT),
            req("max_bytes", INT),
        ],
    ),
    // Pub/sub.
    ev(
        "pubsub.subscribed",
        Pubsub,
        Info,
        "A remote subscribed to a topic.",
        TOPIC_REMOTE,
    ),
    ev(
        "pubsub.unsubscribed",
        Pubsub,
        Info,
        "A remote unsubscribed from a topic.",
        TOPIC_REMOTE,
    ),
    ev(
        "pubsub.published",
        Pubsub,
        Debug,
        "A message was published on a topic.",
        &[req("topic", STR), req("size", INT), req("from", STR)],
    ),
    // Security.
    ev(
        "security.syn_rate_limited",
        Security,
        Warning,
        "Connection attempts from one source were rate limited (its address is hashed).",
        &[req("src_addr_hash", STR), req("src_port", INT)],
    ),
    ev(
        "security.nonce_replay",
        Security,
        Critical,
        "A replayed packet from a peer was dropped (a nonce counter seen before).",
        &[req("peer_node_id", INT), req("counter", INT)],
    ),
    // Policy and managed networks.
    ev(
        "policy.cycle",
        Policy,
        Debug,
        "A network policy cycle ran: peers kept, evicted, pruned and filled.",
        &[
            req("network_id", INT),
            req("cycle_num", INT),
            req("peers", INT),
            req("evicted", INT),
            req("pruned", INT),
            req("filled", INT),
        ],
    ),
    ev(
        "policy.join_denied",
        Policy,
        Warning,
        "The network policy refused a peer's join.",
        &[req("network_id", INT), req("peer_id", INT)],
    ),
    ev(
        "policy.eval_error",
        Policy,
        Warning,
        "Evaluating the network policy on an event failed.",
        &[
            req("network_id", INT),
            req("event", STR),
            req("error", STR),
        ],
    ),
    ev(
        "managed.cycle",
        Policy,
        Debug,
        "A managed network's maintenance cycle ran.",
        &[
            req("network_id", INT),
            req("pruned", INT),
            req("filled", INT),
            req("peers", INT),
        ],
    ),
    ev(
        "syn.port_rejected",
        Policy,
        Notice,
        "A network policy refused a connection (SYN) to a port; it was dropped silently.",
        POLICY_REFUSED,
    ),
    ev(
        "datagram.port_rejected",
        Policy,
        Notice,
        "A network policy refused a datagram to a port; it was dropped.",
        POLICY_REFUSED,
    ),
    // Plugin health (a family per plugin: the name carries the plugin's).
    ev(
        "plugin.<name>.panic",
        Plugin,
        Warning,
        "A plugin panicked in `op` and was recovered; `plugin_panics` counts its panics, `recovered_total` all plugins'.",
        &[
            req("plugin", STR),
            req("op", STR),
            req("panic", STR),
            req("recovered_total", INT),
            req("plugin_panics", INT),
        ],
    ),
    ev(
        "plugin.<name>.unhealthy",
        Plugin,
        Critical,
        "A plugin panicked often enough to be marked unhealthy (sent once, when it crosses the threshold).",
        &[
            req("plugin", STR),
            req("plugin_panics", INT),
            req("recovered_total", INT),
        ],
    ),
    // Webhook (pilot's own).
    ev(
        "webhook.disabled",
        Webhook,
        Warning,
        "A webhook endpoint was disabled (it answered 410 Gone, or every attempt failed for its `disable_after`): nothing more is sent to it until `pilotctl webhook resume NAME`.",
        &[req("name", STR), req("url", STR), req("reason", STR)],
    ),
    ev(
        "webhook.test",
        Webhook,
        Info,
        "Sent by `pilotctl webhook test` straight to the webhook, with event_id 0; never on the bus.",
        &[req("message", STR)],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn raw(s: &str) -> Box<RawValue> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn names_are_unique_valid_and_grouped_by_category() {
        let mut names = HashSet::new();
        for e in CATALOG {
            assert!(names.insert(e.name), "{} is listed twice", e.name);
            crate::event::validate_name(&e.example()).unwrap();
            assert!(e.matches(&e.example()), "{}", e.name);
            // A pattern's parts are valid parts or whole placeholders.
            assert_eq!(e.pattern, e.name.contains('<'), "{}", e.name);
            for part in e.name.split('.') {
                assert!(
                    !part.contains(['<', '>']) || is_placeholder(part),
                    "{}: {part}",
                    e.name
                );
            }
            assert!(!e.description.is_empty() && !e.description.contains('\n'));
            assert!(e.description.ends_with('.'), "{}", e.name);
        }
        let order: Vec<usize> = CATALOG
            .iter()
            .map(|e| Category::ALL.iter().position(|c| *c == e.category).unwrap())
            .collect();
        assert!(
            order.is_sorted(),
            "the catalog is grouped in Category::ALL order"
        );
    }

    #[test]
    fn every_category_has_events() {
        for c in Category::ALL {
            assert!(c.events().count() > 0, "{c} has no events");
            assert_eq!(c.id().parse::<Category>(), Ok(c));
        }
        let err = "nodes".parse::<Category>().unwrap_err();
        assert!(err.to_string().contains("node, connection"), "{err}");
        assert_eq!(" Tunnel ".parse::<Category>(), Ok(Category::Tunnel));
    }

    #[test]
    fn field_types_are_sane() {
        for e in CATALOG {
            let mut seen = HashSet::new();
            assert!(e.fields.len() <= 64);
            for f in e.fields {
                assert!(seen.insert(f.name), "{}: {} twice", e.name, f.name);
                let want = match f.name {
                    n if n.ends_with("_id") || n.ends_with("port") => Some(JsonType::Integer),
                    "size" | "counter" | "peers" | "pruned" | "filled" | "evicted"
                    | "drops_total" | "cycle_num" | "pid" | "replayed" | "network"
                    | "frame_bytes" | "max_bytes" | "recovered_total" | "plugin_panics" => {
                        Some(JsonType::Integer)
                    }
                    "plugin" | "op" | "panic" | "error" | "type" | "frame_type" => {
                        Some(JsonType::String)
                    }
                    "reregistered" => Some(JsonType::Boolean),
                    n if n.ends_with("addr") || n == "address" || n == "endpoint" => {
                        Some(JsonType::String)
                    }
                    "authenticated" | "relay" | "rekeyed" => Some(JsonType::Boolean),
                    "tags" | "member_tags" => Some(JsonType::Array),
                    "reason" | "justification" | "topic" | "from" | "remote" | "url" => {
                        Some(JsonType::String)
                    }
                    _ => None,
                };
                if let Some(want) = want {
                    assert_eq!(f.ty, want, "{}.{}", e.name, f.name);
                }
            }
        }
    }

    #[test]
    fn lookup_finds_every_event_and_nothing_else() {
        for e in CATALOG {
            assert_eq!(lookup(&e.example()), Some(e));
            if !e.pattern {
                assert_eq!(lookup(e.name), Some(e));
            }
        }
        for name in ["a.b", "handshake", "handshake.received.x", "zzz.z", ""] {
            assert_eq!(lookup(name), None, "{name}");
        }
    }

    #[test]
    fn a_family_covers_every_name_of_its_shape_and_no_other() {
        let panic = lookup("plugin.webhook.panic").unwrap();
        assert_eq!(panic.name, "plugin.<name>.panic");
        assert!(panic.pattern);
        assert_eq!(lookup("plugin.x_2.panic"), Some(panic));
        let unhealthy = lookup("plugin.tasks.unhealthy").unwrap();
        assert_eq!(unhealthy.name, "plugin.<name>.unhealthy");
        assert_eq!(severity("plugin.tasks.unhealthy"), Severity::Critical);
        assert_eq!(severity("plugin.tasks.panic"), Severity::Warning);
        for name in [
            "plugin.panic",
            "plugin..panic",
            "plugin.a.b.panic",
            "plugin.webhook.panicked",
            "plugins.webhook.panic",
            "plugin.webhook",
            "x.plugin.webhook.panic",
        ] {
            assert_eq!(lookup(name), None, "{name}");
        }
        // The family's example name is one of its events.
        assert_eq!(lookup(&panic.example()), Some(panic));
        assert_eq!(panic.example(), "plugin.name.panic");
        assert!(families().all(|e| e.pattern && e.category == Category::Plugin));
        assert_eq!(families().count(), 2);
        // Prefixes a `prefix.*` pattern may use.
        for prefix in ["plugin.", "plugin.webhook.", "plugin.x."] {
            assert!(panic.may_start_with(prefix), "{prefix}");
        }
        for prefix in ["plugin.webhook.panic.", "plugins.", "plugin", "p."] {
            assert!(!panic.may_start_with(prefix), "{prefix}");
        }
        let fixed = lookup("tunnel.established").unwrap();
        assert!(fixed.may_start_with("tunnel.") && !fixed.may_start_with("tunnel.x."));
    }

    #[test]
    fn a_familys_event_is_checked_and_named_as_given() {
        let good = raw(
            r#"{"plugin":"webhook","op":"Start","panic":"boom","recovered_total":3,"plugin_panics":1}"#,
        );
        check("plugin.webhook.panic", Some(&good)).unwrap();
        let err = check(
            "plugin.webhook.panic",
            Some(&raw(r#"{"plugin":"webhook"}"#)),
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("op"));
        assert_eq!(err.event(), "plugin.webhook.panic");
        assert_eq!(
            err.to_string(),
            r#"event plugin.webhook.panic: data field "op" is missing (expected string)"#
        );
        let err = check(
            "plugin.tasks.unhealthy",
            Some(&raw(
                r#"{"plugin":"tasks","plugin_panics":"5","recovered_total":9}"#,
            )),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"event plugin.tasks.unhealthy: data field "plugin_panics" must be integer, found string"#
        );
        let err = check("plugin.tasks.unhealthy", Some(&raw("[1]"))).unwrap_err();
        assert_eq!(err.event(), "plugin.tasks.unhealthy");
        assert!(matches!(err, DataError::NotObject { .. }), "{err}");
        // A fixed name's error borrows the catalog's name.
        let err = check("trust.revoked", None).unwrap_err();
        assert!(matches!(
            err,
            DataError::Missing {
                event: Cow::Borrowed("trust.revoked"),
                ..
            }
        ));
    }

    #[test]
    fn the_events_of_the_newest_pilot_release_are_listed_with_their_fields() {
        // Field lists as the Go daemon publishes them (its daemon, tunnel, dataexchange and
        // plugin-recovery code): every one required, in this order.
        let want: &[(&str, &[&str])] = &[
            ("syn.port_rejected", &["src_node_id", "dst_port", "network"]),
            (
                "datagram.port_rejected",
                &["src_node_id", "dst_port", "network"],
            ),
            ("syn.rejected", &["src_node_id", "src_addr", "dst_port"]),
            (
                "datagram.rejected",
                &["src_node_id", "src_addr", "dst_port"],
            ),
            ("tunnel.desync_salvage", &["peer_node_id", "replayed"]),
            ("tunnel.peer_added", &["peer_node_id", "endpoint"]),
            (
                "tunnel.established",
                &["peer_node_id", "authenticated", "relay", "rekeyed"],
            ),
            (
                "dataexchange.ack_failed",
                &["remote", "frame_type", "error"],
            ),
            ("received.full", &["type", "frame_bytes", "max_bytes"]),
            ("inbox.full", &["from", "type", "frame_bytes", "max_bytes"]),
            (
                "plugin.<name>.panic",
                &["plugin", "op", "panic", "recovered_total", "plugin_panics"],
            ),
            (
                "plugin.<name>.unhealthy",
                &["plugin", "plugin_panics", "recovered_total"],
            ),
        ];
        for (name, fields) in want {
            let e = CATALOG.iter().find(|e| e.name == *name).expect(name);
            let got: Vec<&str> = e.fields.iter().map(|f| f.name).collect();
            assert_eq!(&got, fields, "{name}");
            assert!(e.fields.iter().all(|f| f.required), "{name}");
        }
        // agent.registered: the endpoint on a first registration, `reregistered` on a later one.
        let a = lookup("agent.registered").unwrap();
        check(
            "agent.registered",
            Some(&raw(
                r#"{"address":"0:0001.0000.cafe","node_id":51966,"reregistered":true}"#,
            )),
        )
        .unwrap();
        assert_eq!(
            a.required().map(|f| f.name).collect::<Vec<_>>(),
            ["address", "node_id"]
        );
    }

    #[test]
    fn severities_are_chosen_by_what_the_event_means() {
        let of = |name| lookup(name).unwrap().severity;
        assert_eq!(of("daemon.started"), Severity::Info);
        assert_eq!(of("webhook.disabled"), Severity::Warning);
        assert_eq!(of("security.nonce_replay"), Severity::Critical);
        assert_eq!(of("data.datagram"), Severity::Debug);
        for e in Category::Security.events() {
            assert!(e.severity >= Severity::Warning, "{}", e.name);
        }
        for e in CATALOG.iter().filter(|e| e.name.contains("denied")) {
            assert!(e.severity >= Severity::Warning, "{}", e.name);
        }
        // Data arriving is routine; data refused or lost is not.
        for e in Category::Data.events() {
            if e.name.ends_with(".full") || e.name.ends_with("_failed") {
                assert!(e.severity >= Severity::Warning, "{}", e.name);
            } else {
                assert!(e.severity <= Severity::Info, "{}", e.name);
            }
        }
        // Every level is used by some event.
        for level in Severity::ALL {
            assert!(CATALOG.iter().any(|e| e.severity == level), "{level}");
        }
    }

    #[test]
    fn names_outside_the_catalog_are_info() {
        assert_eq!(severity("security.nonce_replay"), Severity::Critical);
        assert_eq!(severity("conn.fin"), Severity::Debug);
        for name in ["a.b", "security.other", "", "Webhook.disabled"] {
            assert_eq!(severity(name), Severity::Info, "{name}");
        }
    }

    #[test]
    fn good_data_passes_and_extra_fields_are_allowed() {
        let d = raw(r#"{"peer_node_id":7,"justification":"hi","extra":[1,{"x":null}]}"#);
        check("handshake.received", Some(&d)).unwrap();
        check("node.deregistered", None).unwrap();
        check("node.deregistered", Some(&raw(r#"{"why":"x"}"#))).unwrap();
        // Number takes integers too; optional fields may be left out.
        check(
            "daemon.shutting_down",
            Some(&raw(r#"{"uptime_seconds":3}"#)),
        )
        .unwrap();
        check(
            "daemon.shutting_down",
            Some(&raw(r#"{"uptime_seconds":3.5,"known_peers":2}"#)),
        )
        .unwrap();
        let t = raw(r#"{"peer_node_id":1,"authenticated":true,"relay":false,"rekeyed":false}"#);
        check("tunnel.established", Some(&t)).unwrap();
        let n = raw(r#"{"network_id":1,"member_tags":["a"]}"#);
        check("network.joined", Some(&n)).unwrap();
        // Escaped keys are matched after unescaping.
        let d = raw(r#"{"peer_node_id":7,"justific\u0061tion":"hi"}"#);
        check("handshake.received", Some(&d)).unwrap();
    }

    #[test]
    fn names_outside_the_catalog_pass_anything() {
        check("a.b", None).unwrap();
        check("a.b", Some(&raw(r#"{"peer_node_id":"x"}"#))).unwrap();
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = check("handshake.received", Some(&raw(r#"{"peer_node_id":7}"#))).unwrap_err();
        assert_eq!(
            err,
            DataError::Missing {
                event: "handshake.received".into(),
                field: "justification",
                expected: JsonType::String
            }
        );
        assert_eq!(
            err.to_string(),
            r#"event handshake.received: data field "justification" is missing (expected string)"#
        );
        let err = check("handshake.received", None).unwrap_err();
        assert_eq!(err.field(), Some("peer_node_id"));
    }

    #[test]
    fn a_wrong_type_is_named_with_both_types() {
        let cases = [
            (
                "handshake.received",
                r#"{"peer_node_id":"7","justification":"x"}"#,
                "peer_node_id",
                "integer",
                "string",
            ),
            (
                "handshake.received",
                r#"{"justification":"x","peer_node_id":7.5}"#,
                "peer_node_id",
                "integer",
                "number",
            ),
            (
                "handshake.received",
                r#"{"peer_node_id":1e3,"justification":"x"}"#,
                "peer_node_id",
                "integer",
                "number",
            ),
            (
                "handshake.received",
                r#"{"peer_node_id":7,"justification":null}"#,
                "justification",
                "string",
                "null",
            ),
            (
                "tunnel.established",
                r#"{"peer_node_id":1,"authenticated":"yes"}"#,
                "authenticated",
                "boolean",
                "string",
            ),
            (
                "network.joined",
                r#"{"network_id":1,"member_tags":"a,b"}"#,
                "member_tags",
                "array",
                "string",
            ),
            (
                "daemon.shutting_down",
                r#"{"uptime_seconds":1,"reason":5}"#,
                "reason",
                "string",
                "integer",
            ),
            (
                "message.received",
                r#"{"type":"t","from":{},"size":1}"#,
                "from",
                "string",
                "object",
            ),
        ];
        for (event, data, field, expected, found) in cases {
            let err = check(event, Some(&raw(data))).unwrap_err();
            assert_eq!(err.field(), Some(field), "{data}");
            assert_eq!(
                err.to_string(),
                format!("event {event}: data field {field:?} must be {expected}, found {found}")
            );
        }
    }

    #[test]
    fn data_that_is_not_an_object_is_refused() {
        let err = check("handshake.received", Some(&raw("[1]"))).unwrap_err();
        assert!(matches!(err, DataError::NotObject { .. }), "{err}");
    }

    #[test]
    fn serializes_for_the_cli() {
        let e = lookup("tunnel.peer_added").unwrap();
        assert_eq!(
            serde_json::to_string(e).unwrap(),
            r#"{"name":"tunnel.peer_added","category":"tunnel","severity":"info","description":"A peer was added to the tunnel table, with the endpoint it was seen at.","fields":[{"name":"peer_node_id","type":"integer","required":true},{"name":"endpoint","type":"string","required":true}]}"#
        );
        // A family says it is a pattern.
        let e = lookup("plugin.webhook.unhealthy").unwrap();
        let v = serde_json::to_value(e).unwrap();
        assert_eq!(v["name"], "plugin.<name>.unhealthy");
        assert_eq!(v["pattern"], true);
        assert_eq!(v["category"], "plugin");
    }
}
