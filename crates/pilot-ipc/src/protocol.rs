//! The messages of the control protocol and their replies.
//!
//! Every message is a JSON object with a `type`. A connection starts with `hello` (carrying
//! [`PROTOCOL_VERSION`]); after that the client sends requests and the daemon answers each one
//! in order with `ok` (with `data`) or `error` (with a machine `code` and a `message`). After
//! `subscribe` is answered, the daemon sends only `event` messages on that connection.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::frame::{self, FrameError};

pub use pilot_core::{Accounting, SubscriberInfo, WebhookSettings};

/// The protocol version this build speaks. A peer with another version is refused with
/// [`ErrorCode::VersionMismatch`].
pub const PROTOCOL_VERSION: u32 = 1;

/// A message from a client.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "RequestWire")]
pub enum Request {
    /// The first message of every connection.
    Hello { version: u32, client: String },
    /// Everything the daemon knows of itself.
    Info,
    /// Deliver events published after the reply to `url`, with these settings.
    SetWebhook {
        url: String,
        #[serde(default, skip_serializing_if = "is_default_settings")]
        settings: Box<WebhookSettings>,
    },
    /// Stop delivering.
    ClearWebhook,
    /// Publish an event onto the bus.
    Emit {
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Box<RawValue>>,
        /// `debug`, `info`, `notice`, `warning` or `critical` (`pilot_core::Severity`); none:
        /// the catalog's for the name, `info` outside it. The daemon checks it (an unknown
        /// level is `invalid_argument`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<String>,
    },
    /// Turn this connection into a stream of the events `pattern` matches.
    Subscribe { pattern: String },
    /// Shut the daemon down (it replies first).
    Shutdown {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Re-read the signing secrets of a webhook (default: `default`) from its secret file.
    ReloadSecrets {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// The most recent delivery attempts of a webhook (default: `default`), newest last.
    Deliveries {
        #[serde(default)]
        failed_only: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Send a signed `webhook.test` event now to a webhook (default: `default`) and report how
    /// it went.
    TestWebhook {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Deliver a past event again (durable mode, or while its payload is in the log).
    Redeliver {
        event_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Add the webhook `name` (it must not exist yet).
    AddWebhook {
        name: String,
        url: String,
        #[serde(default, skip_serializing_if = "is_default_settings")]
        settings: Box<WebhookSettings>,
    },
    /// Replace the URL and settings of the webhook `name` (it must exist, except `default`,
    /// which this sets like `set_webhook`).
    UpdateWebhook {
        name: String,
        url: String,
        #[serde(default, skip_serializing_if = "is_default_settings")]
        settings: Box<WebhookSettings>,
    },
    /// Remove the webhook `name`; a durable one with a backlog only with `force` (the backlog
    /// is discarded).
    RemoveWebhook {
        name: String,
        #[serde(default)]
        force: bool,
    },
    /// Stop sending to the webhook `name` until it is resumed.
    PauseWebhook { name: String },
    /// Send again to the webhook `name`: un-pause it, and re-enable it if it was disabled.
    ResumeWebhook { name: String },
    /// The dead letters of the webhook `name` (every endpoint's when none) that `selection`
    /// selects, lowest event id first.
    DeadLetters {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default)]
        selection: Selection,
    },
    /// Remove the dead letters `selection` selects (of `name`, every endpoint's when none).
    PurgeDeadLetters {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default)]
        selection: Selection,
    },
    /// Queue the dead letters and retained events of `name` that `selection` selects for
    /// delivery again, to `name` or to the webhook `to` (re-signed with its secrets).
    Replay {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default)]
        selection: Selection,
        /// Only dead letters, not retained deliveries.
        #[serde(default)]
        dead_letters_only: bool,
        /// Select and count, change nothing.
        #[serde(default)]
        dry_run: bool,
    },
}

/// Which archived events `dead_letters`, `purge_dead_letters` and `replay` select. Every
/// condition given must hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Selection {
    /// The event's timestamp at or after this, unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// The event's timestamp before this, unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// The dead letter's reason (`failed`, `circuit_open`, `queue_full`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Event name patterns (`handshake.*`); any may match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// At most this many, lowest event ids first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl Request {
    /// Decodes a request frame. `emit`, the request sent in bulk, is first read through a
    /// struct that borrows from the frame (no copy of the type, no look at the other requests'
    /// fields); any other request, and an `emit` that read fails on, takes the general path
    /// ([`frame::decode`]), so every error reads the same.
    pub fn decode(body: &[u8]) -> Result<Request, FrameError> {
        if let Ok(EmitWire {
            kind,
            event: Some(event),
            data,
            severity,
        }) = serde_json::from_slice::<EmitWire<'_>>(body)
        {
            if kind == "emit" {
                return Ok(Request::Emit {
                    event: event.into_owned(),
                    data: data.filter(|d| d.get() != "null").map(RawValue::to_owned),
                    severity: severity.map(Cow::into_owned),
                });
            }
        }
        frame::decode(body, REQUEST_TYPES)
    }
}

/// The fields of an `emit`, borrowed from the frame (other fields are skipped).
#[derive(Deserialize)]
struct EmitWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    severity: Option<Cow<'a, str>>,
}

fn is_default_settings(s: &WebhookSettings) -> bool {
    s.is_default()
}

/// Every request type, for telling a newer client's message from garbage.
pub const REQUEST_TYPES: &[&str] = &[
    "hello",
    "info",
    "set_webhook",
    "clear_webhook",
    "emit",
    "subscribe",
    "shutdown",
    "reload_secrets",
    "deliveries",
    "test_webhook",
    "redeliver",
    "add_webhook",
    "update_webhook",
    "remove_webhook",
    "pause_webhook",
    "resume_webhook",
    "dead_letters",
    "purge_dead_letters",
    "replay",
];

/// A message from the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "ResponseWire")]
pub enum Response {
    /// The answer to `hello`.
    Hello(HelloReply),
    /// A request succeeded; `data`'s shape depends on the request.
    Ok { data: Box<RawValue> },
    /// A request failed.
    Error { code: ErrorCode, message: String },
    /// One event of a subscription, in the webhook payload shape.
    Event { event: Box<RawValue> },
}

/// Every response type.
pub const RESPONSE_TYPES: &[&str] = &["hello", "ok", "error", "event"];

// serde cannot put a `RawValue` inside an internally tagged enum when deserializing, so the
// messages are read through flat structs that name every field, then checked by type.

#[derive(Deserialize)]
struct RequestWire {
    #[serde(rename = "type")]
    kind: String,
    version: Option<u32>,
    client: Option<String>,
    url: Option<String>,
    event: Option<String>,
    data: Option<Box<RawValue>>,
    severity: Option<String>,
    pattern: Option<String>,
    reason: Option<String>,
    settings: Option<WebhookSettings>,
    failed_only: Option<bool>,
    limit: Option<usize>,
    event_id: Option<u64>,
    name: Option<String>,
    force: Option<bool>,
    selection: Option<Selection>,
    to: Option<String>,
    dead_letters_only: Option<bool>,
    dry_run: Option<bool>,
}

fn required<T>(v: Option<T>, kind: &str, field: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("`{kind}` needs the field `{field}`"))
}

impl TryFrom<RequestWire> for Request {
    type Error = String;

    fn try_from(w: RequestWire) -> Result<Self, String> {
        let k = w.kind.as_str();
        Ok(match k {
            "hello" => Request::Hello {
                version: required(w.version, k, "version")?,
                client: w.client.unwrap_or_default(),
            },
            "info" => Request::Info,
            "set_webhook" => Request::SetWebhook {
                url: required(w.url, k, "url")?,
                settings: Box::new(w.settings.unwrap_or_default()),
            },
            "clear_webhook" => Request::ClearWebhook,
            "emit" => Request::Emit {
                event: required(w.event, k, "event")?,
                data: w.data.filter(|d| d.get() != "null"),
                severity: w.severity,
            },
            "subscribe" => Request::Subscribe {
                pattern: required(w.pattern, k, "pattern")?,
            },
            "shutdown" => Request::Shutdown { reason: w.reason },
            "reload_secrets" => Request::ReloadSecrets { name: w.name },
            "deliveries" => Request::Deliveries {
                failed_only: w.failed_only.unwrap_or(false),
                limit: w.limit,
                name: w.name,
            },
            "test_webhook" => Request::TestWebhook { name: w.name },
            "redeliver" => Request::Redeliver {
                event_id: required(w.event_id, k, "event_id")?,
                name: w.name,
            },
            "add_webhook" => Request::AddWebhook {
                name: required(w.name, k, "name")?,
                url: required(w.url, k, "url")?,
                settings: Box::new(w.settings.unwrap_or_default()),
            },
            "update_webhook" => Request::UpdateWebhook {
                name: required(w.name, k, "name")?,
                url: required(w.url, k, "url")?,
                settings: Box::new(w.settings.unwrap_or_default()),
            },
            "remove_webhook" => Request::RemoveWebhook {
                name: required(w.name, k, "name")?,
                force: w.force.unwrap_or(false),
            },
            "pause_webhook" => Request::PauseWebhook {
                name: required(w.name, k, "name")?,
            },
            "resume_webhook" => Request::ResumeWebhook {
                name: required(w.name, k, "name")?,
            },
            "dead_letters" => Request::DeadLetters {
                name: w.name,
                selection: w.selection.unwrap_or_default(),
            },
            "purge_dead_letters" => Request::PurgeDeadLetters {
                name: w.name,
                selection: w.selection.unwrap_or_default(),
            },
            "replay" => Request::Replay {
                name: required(w.name, k, "name")?,
                to: w.to,
                selection: w.selection.unwrap_or_default(),
                dead_letters_only: w.dead_letters_only.unwrap_or(false),
                dry_run: w.dry_run.unwrap_or(false),
            },
            other => return Err(format!("unknown request type {other:?}")),
        })
    }
}

#[derive(Deserialize)]
struct ResponseWire {
    #[serde(rename = "type")]
    kind: String,
    version: Option<u32>,
    server: Option<String>,
    pid: Option<u32>,
    data: Option<Box<RawValue>>,
    code: Option<ErrorCode>,
    message: Option<String>,
    event: Option<Box<RawValue>>,
}

impl TryFrom<ResponseWire> for Response {
    type Error = String;

    fn try_from(w: ResponseWire) -> Result<Self, String> {
        let k = w.kind.as_str();
        Ok(match k {
            "hello" => Response::Hello(HelloReply {
                version: required(w.version, k, "version")?,
                server: w.server.unwrap_or_default(),
                pid: w.pid.unwrap_or_default(),
            }),
            "ok" => Response::Ok {
                data: required(w.data, k, "data")?,
            },
            "error" => Response::Error {
                code: w.code.unwrap_or(ErrorCode::Unknown),
                message: w.message.unwrap_or_default(),
            },
            "event" => Response::Event {
                event: required(w.event, k, "event")?,
            },
            other => return Err(format!("unknown response type {other:?}")),
        })
    }
}

/// The body of an `ok` reply, for the sending side.
#[derive(Debug, Serialize)]
pub struct OkReply<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: &'a T,
}

impl<'a, T: Serialize> OkReply<'a, T> {
    pub fn new(data: &'a T) -> Self {
        Self { kind: "ok", data }
    }
}

/// The body of an `error` reply, for the sending side.
#[derive(Debug, Serialize)]
pub struct ErrorReply<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub code: ErrorCode,
    pub message: &'a str,
}

impl<'a> ErrorReply<'a> {
    pub fn new(code: ErrorCode, message: &'a str) -> Self {
        Self {
            kind: "error",
            code,
            message,
        }
    }
}

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A request's argument is invalid (bad URL, event name, data...).
    InvalidArgument,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The first message was not `hello`.
    HandshakeRequired,
    /// The client said nothing for too long after connecting.
    HandshakeTimeout,
    /// The frame was not a valid message.
    MalformedRequest,
    /// The message type is unknown (a newer client?).
    UnknownRequest,
    /// The frame was larger than the limit.
    FrameTooLarge,
    /// The peer is not allowed to use this daemon (another user).
    PermissionDenied,
    /// The daemon is shutting down.
    ShuttingDown,
    /// An `emit` of a catalog event whose data lacks a required field or has a field of the
    /// wrong JSON type (the message names the event, the field and both types).
    CatalogMismatch,
    /// The event was published but could not be written to the durable spool.
    NotDurable,
    /// No webhook has the name given.
    NotFound,
    /// A webhook with that name exists already.
    AlreadyExists,
    /// The daemon runs as many webhooks as `max_webhooks` allows.
    LimitReached,
    /// A durable webhook still holds undelivered events (remove it with `force`).
    Backlog,
    /// Something failed inside the daemon.
    Internal,
    /// A code this build does not know (from a newer daemon).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::HandshakeRequired => "handshake_required",
            ErrorCode::HandshakeTimeout => "handshake_timeout",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::CatalogMismatch => "catalog_mismatch",
            ErrorCode::NotDurable => "not_durable",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::Backlog => "backlog",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The daemon's answer to `hello`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HelloReply {
    pub version: u32,
    pub server: String,
    pub pid: u32,
}

/// The answer to `info`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InfoReply {
    pub pid: u32,
    pub version: String,
    pub node_id: u32,
    pub socket: String,
    pub started_at: String,
    pub uptime_secs: u64,
    /// The endpoint `default` (as before endpoints had names; empty when it is not set).
    pub webhook: WebhookStatus,
    /// Every endpoint, `default` first, then by name.
    #[serde(default)]
    pub webhooks: Vec<EndpointStatus>,
    /// Every endpoint's accounting added up.
    #[serde(default)]
    pub totals: Accounting,
    pub bus: BusStatus,
    /// Log lines lost because writing them failed (a full disk) or the log writer was behind.
    #[serde(default)]
    pub log_write_errors: u64,
}

/// One endpoint in `info`: its name, its state and everything [`WebhookStatus`] shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EndpointStatus {
    pub name: String,
    /// `active`, `paused`, `disabled` or `failed` (a task ended unexpectedly; `failure`
    /// says why).
    pub state: String,
    /// Whether it spools on disk (durable mode).
    pub durable: bool,
    /// Its include and exclude filters.
    pub events: Vec<String>,
    pub exclude: Vec<String>,
    /// Of `dropped`, the events that arrived while it was paused (in memory mode).
    pub dropped_paused: u64,
    #[serde(flatten)]
    pub status: WebhookStatus,
}

/// The answer to `add_webhook` and `update_webhook`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointReply {
    pub name: String,
    /// The URL now in force.
    pub webhook: String,
}

/// The answer to `remove_webhook`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RemoveReply {
    pub name: String,
    /// Whether the running daemon had it.
    pub removed: bool,
    /// Undelivered events discarded with it (a durable backlog, a queue).
    pub discarded: u64,
}

/// The answer to `pause_webhook` and `resume_webhook`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PauseReply {
    pub name: String,
    /// `active` or `paused` (or `disabled`, for a resume that could not re-enable).
    pub state: String,
}

/// The bus part of `info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BusStatus {
    /// Events published since the daemon started.
    pub published: u64,
    /// The newest event id.
    pub last_event_id: u64,
    /// Every live subscriber with its counters.
    pub subscribers: Vec<SubscriberInfo>,
}

/// The webhook part of `info`: configuration and counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WebhookStatus {
    /// The URL events go to; `None` when no webhook is set.
    pub url: Option<String>,
    /// `closed` (delivering), `open` (skipping until the cooldown ends) or `half_open` (probing).
    pub circuit: String,
    /// Events waiting in the queue now.
    pub queue_depth: u64,
    /// The queue's capacity.
    pub queue_capacity: u64,
    /// Events handed to the webhook queue.
    pub queued: u64,
    /// Events answered with a 2xx.
    pub delivered: u64,
    /// Events that failed every attempt, or got a 4xx/3xx.
    pub failed: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Events dropped: queue full, or pending when the webhook was cleared or the daemon stopped.
    pub dropped: u64,
    /// Events skipped without an attempt while the circuit was open.
    pub circuit_skips: u64,
    /// The latest delivery error, and when it happened (RFC 3339).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// The options in force.
    pub options: WebhookOptionsInfo,
    /// The per-webhook settings in force (header values masked).
    pub settings: WebhookSettings,
    /// Whether requests are signed (the secrets themselves are never shown).
    pub signing: bool,
    /// Set when the endpoint answered 410 Gone: delivery stopped until the next set-webhook.
    pub disabled: Option<String>,
    pub disabled_at: Option<String>,
    /// Events not delivered because the webhook's filters exclude them.
    pub filtered: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Of `dropped`, the events that never entered the queue because it was full.
    pub dropped_queue_full: u64,
    /// How long a send would wait now for the rate limit, in milliseconds (0 without one).
    pub rate_wait_ms: u64,
    /// Events found in the durable spool at start (accepted by an earlier run).
    pub recovered: u64,
    /// The durable spool, while one is open (also in memory mode, so a leftover backlog shows).
    pub spool: Option<SpoolStatus>,
    /// Tasks of the endpoint (spooler, durable or in-memory worker) that ended unexpectedly.
    pub task_failures: u64,
    /// Why the endpoint is `failed` (a task ended unexpectedly), until it is resumed.
    pub failure: Option<String>,
    /// Where every event emitted to the webhook went (read in one consistent step): `emitted
    /// = delivered + failed + dropped + skipped + filtered + pending` (see docs/delivery.md).
    /// `None` only from a daemon too old to send it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounting: Option<Accounting>,
    /// The endpoint's dead letters in the archive (`None` from a daemon without one).
    pub dead_letters: Option<ArchiveStatus>,
    /// Its retained deliveries (`None` unless it retains).
    pub retained: Option<ArchiveStatus>,
    /// Its replays: queued, and settled since the daemon started.
    pub replay: ReplayStatus,
    /// Archive writes that failed (their events are not kept).
    pub archive_write_errors: u64,
}

/// One shelf of an endpoint's archive (dead letters, retained deliveries) in `info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ArchiveStatus {
    /// Events held and their stored bytes.
    pub count: u64,
    pub bytes: u64,
    /// The bounds: bytes, and how long an entry is kept (`7d`).
    pub max_bytes: u64,
    pub retention: String,
    /// Events dropped (oldest first) to stay within `max_bytes`, and for age.
    pub evicted_size: u64,
    pub evicted_age: u64,
}

/// An endpoint's replays in `info`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ReplayStatus {
    /// Queued on disk, not settled yet.
    pub pending: u64,
    /// Settled since the daemon started: delivered, failed again, left out by the filters.
    pub delivered: u64,
    pub failed: u64,
    pub filtered: u64,
}

/// One dead letter, as `dead_letters` lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadLetterInfo {
    /// The endpoint that gave up on it.
    pub name: String,
    pub event_id: u64,
    pub event: String,
    /// The event's timestamp and when it was dead-lettered (RFC 3339).
    pub timestamp: String,
    pub dead_lettered_at: String,
    pub webhook_id: String,
    pub reason: String,
    pub error: Option<String>,
    pub attempts: u32,
    /// The event's payload, as it would be POSTed.
    pub payload: Option<Box<RawValue>>,
}

/// The answer to `dead_letters`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadLettersReply {
    pub dead_letters: Vec<DeadLetterInfo>,
}

/// The answer to `purge_dead_letters`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PurgeReply {
    pub purged: u64,
}

/// The answer to `replay`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ReplayReply {
    /// Where the events come from and go to.
    pub name: String,
    pub to: String,
    /// How many were selected (and queued, unless `dry_run`), and their event ids' range.
    pub selected: u64,
    pub first_event_id: Option<u64>,
    pub last_event_id: Option<u64>,
    pub dry_run: bool,
    /// The target's replay counters just after queueing (for following its progress).
    pub replay: ReplayStatus,
}

/// The durable spool part of `info`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SpoolStatus {
    pub path: String,
    /// Events waiting on disk.
    pub depth: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Oldest events dropped because the spool was full.
    pub dropped_full: u64,
    /// Events dropped because they were older than discard_after.
    pub expired: u64,
    /// Why the spool cannot be written now (a full disk, a read-only file), if it cannot:
    /// it still delivers what it holds, and durable emits are refused until it can.
    pub write_error: Option<String>,
}

/// One delivery attempt, as `deliveries` lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DeliveryInfo {
    pub event_id: u64,
    pub event: String,
    pub webhook_id: String,
    pub url: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub error: Option<String>,
    /// When the attempt started (RFC 3339).
    pub at: String,
    pub ok: bool,
}

/// The answer to `deliveries`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DeliveriesReply {
    pub deliveries: Vec<DeliveryInfo>,
}

/// The answer to `test_webhook`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TestReply {
    pub url: String,
    pub event_id: u64,
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub error: Option<String>,
    pub signed: bool,
}

/// The answer to `redeliver`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RedeliverReply {
    pub event_id: u64,
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub error: Option<String>,
}

/// The answer to `reload_secrets`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ReloadSecretsReply {
    /// Whether requests are now signed.
    pub signing: bool,
    /// How many secrets sign each request (more than 1 during a rotation's grace period).
    pub active_secrets: usize,
}

/// Webhook options as `info` shows them (durations as `5s`, `500ms`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct WebhookOptionsInfo {
    pub queue_size: u64,
    pub timeout: String,
    pub max_attempts: u32,
    pub backoff: String,
    pub circuit_threshold: u32,
    pub circuit_cooldown: String,
}

/// The answer to `set_webhook` and `clear_webhook`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookReply {
    /// The URL now in force (`""` when cleared).
    pub webhook: String,
}

/// The answer to `emit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmitReply {
    /// The id the bus gave the event (per daemon, from 1, increasing).
    pub event_id: u64,
}

/// The answer to `subscribe`, before the events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscribeReply {
    /// This subscriber's id (as `info` lists it).
    pub subscriber_id: u64,
    /// The pattern as the daemon parsed it.
    pub pattern: String,
}

/// The answer to `shutdown`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShutdownReply {
    pub pid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_decode_reads_emits_like_the_general_path() {
        let same = [
            r#"{"type":"emit","event":"a.b","data":{"k":[1,"\u00e9"]}}"#,
            r#"{"type":"emit","event":"a.b"}"#,
            r#"{"type":"emit","event":"a.b","data":null}"#,
            r#"{"event":"a\u002eb","type":"emit","extra":1}"#,
            r#"{"type":"info"}"#,
            r#"{"type":"emit"}"#,
            r#"{"type":"emit","event":5}"#,
            r#"{"type":"emit","event":"a.b","event":"c.d"}"#,
            r#"{"type":"emit","event":"a.b","severity":"warning"}"#,
            r#"{"type":"emit","event":"a.b","data":{"k":1},"severity":"w\u0061rning"}"#,
            r#"{"type":"emit","event":"a.b","severity":null}"#,
            r#"{"type":"emit","event":"a.b","severity":"loud"}"#,
            r#"{"type":"emit","event":"a.b","severity":3}"#,
            r#"{"type":"emit","event":"a.b","severity":"info","severity":"debug"}"#,
            r#"{"type":"teleport","event":"a.b"}"#,
            "not json",
        ];
        for body in same {
            let fast = Request::decode(body.as_bytes());
            let general = frame::decode::<Request>(body.as_bytes(), REQUEST_TYPES);
            assert_eq!(format!("{fast:?}"), format!("{general:?}"), "{body}");
        }
        assert!(matches!(
            Request::decode(br#"{"type":"emit","event":"a.b","data":{"k":1}}"#),
            Ok(Request::Emit { event, data: Some(d), severity: None }) if event == "a.b" && d.get() == r#"{"k":1}"#
        ));
        assert!(matches!(
            Request::decode(br#"{"severity":"critical","type":"emit","event":"a.b"}"#),
            Ok(Request::Emit { data: None, severity: Some(s), .. }) if s == "critical"
        ));
        // The daemon, not the decoder, judges the level (`invalid_argument`, not malformed).
        assert!(matches!(
            Request::decode(br#"{"type":"emit","event":"a.b","severity":"loud"}"#),
            Ok(Request::Emit { severity: Some(s), .. }) if s == "loud"
        ));
    }

    #[test]
    fn requests_have_a_snake_case_type_tag() {
        let r = Request::SetWebhook {
            url: "http://localhost:8080/events".into(),
            settings: Box::default(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"type":"set_webhook","url":"http://localhost:8080/events"}"#
        );
        let e: Request =
            serde_json::from_str(r#"{"type":"emit","event":"a.b","data":{"k":1}}"#).unwrap();
        match e {
            Request::Emit {
                event,
                data,
                severity,
            } => {
                assert_eq!(event, "a.b");
                assert_eq!(data.unwrap().get(), r#"{"k":1}"#);
                assert_eq!(severity, None);
            }
            other => panic!("{other:?}"),
        }
        let e = Request::Emit {
            event: "a.b".into(),
            data: None,
            severity: Some("warning".into()),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"emit","event":"a.b","severity":"warning"}"#
        );
    }

    #[test]
    fn replies_encode_as_documented() {
        let ok = OkReply::new(&EmitReply { event_id: 7 });
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"type":"ok","data":{"event_id":7}}"#
        );
        let err = ErrorReply::new(ErrorCode::InvalidArgument, "bad");
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"type":"error","code":"invalid_argument","message":"bad"}"#
        );
        let back: Response =
            serde_json::from_str(r#"{"type":"error","code":"from_the_future","message":"m"}"#)
                .unwrap();
        assert!(matches!(
            back,
            Response::Error {
                code: ErrorCode::Unknown,
                ..
            }
        ));
    }
}
