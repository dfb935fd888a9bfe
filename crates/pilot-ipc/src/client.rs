//! The async client: connect, say hello, send requests, read replies, stream events.
//!
//! Replies come back in request order, so [`Client::emit_pipelined`] keeps many `emit`s in
//! flight on one connection and waits on the socket's flow control instead of giving up.
//! A [`Client`] is one connection; it is not shared between tasks (open one per task, they are
//! cheap). Every method returns a [`ClientError`] with a stable [`ClientError::code`].

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream as _, StreamExt};
use pilot_core::{Event, Severity, WebhookSettings};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::frame::{self, FrameError};
use crate::protocol::{
    EmitReply, ErrorCode, HelloReply, InfoReply, Request, Response, ShutdownReply, SubscribeReply,
    WebhookReply, PROTOCOL_VERSION, RESPONSE_TYPES,
};
use crate::transport::{self, Stream};

/// How long [`Client::connect`] waits for the connection and the hello reply.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many `emit`s [`Client::emit_pipelined`] keeps in flight.
pub const PIPELINE_WINDOW: usize = 512;

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket path (no file, or a stale one): no daemon runs there.
    #[error("no daemon is running at {path} (start one with `pilotctl daemon start`)")]
    NotRunning { path: PathBuf },
    /// The socket exists but connecting failed for another reason (permissions, ...).
    #[error("cannot connect to the daemon at {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    /// Reading or writing the connection failed.
    #[error("connection to the daemon failed: {0}")]
    Io(#[from] io::Error),
    /// The daemon hung up (it stopped, or refused the connection).
    #[error("the daemon closed the connection")]
    Closed,
    /// The daemon sent something this client cannot decode (another version?).
    #[error("the daemon sent a reply this client does not understand: {0}")]
    Protocol(String),
    /// The daemon refused the request: `code` is its machine code (see `docs/ipc.md`).
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
    /// The process listening at the socket runs as another user (not root): it may be a fake
    /// daemon collecting secrets, so nothing was sent to it.
    #[error(
        "refusing the daemon at {path}: it runs as uid {uid}, not as you (uid {me}) or root; \
         nothing was sent to it"
    )]
    Untrusted { path: PathBuf, uid: u32, me: u32 },
    /// Connecting (socket and hello) took longer than [`CONNECT_TIMEOUT`].
    #[error("the daemon did not answer within {0:?}")]
    Timeout(Duration),
    /// The socket path could not be resolved: no home directory.
    #[error(transparent)]
    Home(#[from] pilot_core::paths::HomeError),
    /// The socket path could not be resolved: `config.json` does not parse.
    #[error(transparent)]
    Config(#[from] pilot_core::ConfigError),
}

impl ClientError {
    /// A stable machine code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::NotRunning { .. } => "not_running",
            ClientError::Connect { .. } => "connect_failed",
            ClientError::Io(_) | ClientError::Closed => "connection_lost",
            ClientError::Protocol(_) => "protocol_error",
            ClientError::Remote { code, .. } => code.as_str(),
            ClientError::Untrusted { .. } => "untrusted_daemon",
            ClientError::Timeout(_) => "timeout",
            ClientError::Home(_) => "io_error",
            ClientError::Config(_) => "config_error",
        }
    }
}

/// Refuses a server that runs as another user than ours, unless it is root: before anything
/// (the hello, then requests that may carry secrets) is sent.
fn check_server(stream: &Stream, path: &Path) -> Result<(), ClientError> {
    let me = rustix::process::geteuid().as_raw();
    match transport::peer_uid(stream) {
        Ok(Some(uid)) if uid == me || uid == 0 => Ok(()),
        Ok(Some(uid)) => Err(ClientError::Untrusted {
            path: path.into(),
            uid,
            me,
        }),
        // No credentials to judge by (not Linux): the socket's own permissions protect it.
        Ok(None) => Ok(()),
        Err(source) => Err(ClientError::Connect {
            path: path.into(),
            source,
        }),
    }
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        ClientError::Protocol(e.to_string())
    }
}

/// One event to publish with [`Client::emit_pipelined`].
#[derive(Debug, Clone)]
pub struct EmitItem {
    /// The event name: lowercase dotted words, like `handshake.received`.
    pub event: String,
    /// The event's data: a JSON object (at most 64 KiB), or none.
    pub data: Option<Box<RawValue>>,
    /// The event's severity; none: the catalog's for the name (`info` outside it).
    pub severity: Option<Severity>,
}

/// What a pipelined emit published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmitSummary {
    /// How many events the daemon accepted.
    pub count: u64,
    /// The id of the first accepted event (`None` when none was).
    pub first_event_id: Option<u64>,
    /// The id of the last accepted event.
    pub last_event_id: Option<u64>,
}

impl EmitSummary {
    fn add(&mut self, id: u64) {
        self.count += 1;
        self.first_event_id.get_or_insert(id);
        self.last_event_id = Some(id);
    }
}

/// A pipelined emit that stopped at item `index` (0-based).
#[derive(Debug, thiserror::Error)]
#[error("item {index}: {error}")]
pub struct EmitFailure {
    /// The item that failed (0-based).
    pub index: usize,
    /// Why it failed.
    pub error: ClientError,
    /// What was published before (and, for items already in flight, after) the failure.
    pub summary: EmitSummary,
}

/// A connection to the daemon, past the hello.
///
/// ```no_run
/// # async fn demo() -> Result<(), pilot_ipc::ClientError> {
/// let mut client = pilot_ipc::Client::connect_default().await?;
/// let data = serde_json::value::to_raw_value(&serde_json::json!({"peer_node_id": 7})).ok();
/// let reply = client.emit("handshake.received", data).await?;
/// println!("published event {}", reply.event_id);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Client {
    framed: Framed<Stream, LengthDelimitedCodec>,
    server: HelloReply,
    path: PathBuf,
}

impl Client {
    /// Connects to the daemon where `pilotctl` finds it ([`crate::socket_path`]: `$PILOT_SOCKET`,
    /// config `socket`, else `<home>/pilot.sock`) and says hello.
    pub async fn connect_default() -> Result<Client, ClientError> {
        Self::connect(&crate::socket_path()?).await
    }

    /// Connects to the daemon at `path` and says hello (within [`CONNECT_TIMEOUT`]). No daemon
    /// there is [`ClientError::NotRunning`].
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let client_name = format!("pilot-ipc/{}", pilot_core::VERSION);
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(path, client_name)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(CONNECT_TIMEOUT)),
        }
    }

    async fn connect_inner(path: &Path, client: String) -> Result<Client, ClientError> {
        let stream = transport::connect(path)
            .await
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning { path: path.into() }
                }
                _ => ClientError::Connect {
                    path: path.into(),
                    source,
                },
            })?;
        check_server(&stream, path)?;
        let mut framed = Framed::new(stream, frame::codec());
        let sent = framed
            .send(frame::encode(&Request::Hello {
                version: PROTOCOL_VERSION,
                client,
            }))
            .await;
        // A daemon that refuses us (another uid) answers and hangs up before reading our hello:
        // its error reply is still there to read, and says more than a broken pipe.
        let reply = read_response(&mut framed).await;
        if let Err(e) = sent {
            return match reply {
                Ok(Response::Error { code, message }) => Err(ClientError::Remote { code, message }),
                _ => Err(ClientError::Io(e)),
            };
        }
        let server = match reply? {
            Response::Hello(h) => h,
            Response::Error { code, message } => return Err(ClientError::Remote { code, message }),
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected hello, got {other:?}"
                )))
            }
        };
        Ok(Client {
            framed,
            server,
            path: path.into(),
        })
    }

    /// What the daemon said of itself in its hello.
    pub fn server(&self) -> &HelloReply {
        &self.server
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and decodes the `ok` reply's data as `T` (an `error` reply is
    /// [`ClientError::Remote`]). The typed methods below are built on it; use it for requests
    /// they do not cover, like [`Request::Deliveries`].
    pub async fn call<T: DeserializeOwned>(&mut self, req: &Request) -> Result<T, ClientError> {
        self.framed.send(frame::encode(req)).await?;
        ok_data(read_response(&mut self.framed).await?)
    }

    /// Everything the daemon knows of itself: process, webhook status and counters, bus.
    pub async fn info(&mut self) -> Result<InfoReply, ClientError> {
        self.call(&Request::Info).await
    }

    /// Points the running daemon's webhook at `url` with default settings. Runtime only:
    /// `config.json` is not written (that is `pilotctl set-webhook`).
    pub async fn set_webhook(&mut self, url: &str) -> Result<WebhookReply, ClientError> {
        self.call(&Request::SetWebhook {
            url: url.into(),
            settings: Box::default(),
        })
        .await
    }

    /// Like [`Client::set_webhook`], with per-webhook settings (filters, batching, ...).
    pub async fn set_webhook_with(
        &mut self,
        url: &str,
        settings: WebhookSettings,
    ) -> Result<WebhookReply, ClientError> {
        self.call(&Request::SetWebhook {
            url: url.into(),
            settings: Box::new(settings),
        })
        .await
    }

    /// Stops webhook delivery in the running daemon (runtime only).
    pub async fn clear_webhook(&mut self) -> Result<WebhookReply, ClientError> {
        self.call(&Request::ClearWebhook).await
    }

    /// Publishes one event and returns its id. `event` must be lowercase dotted words and
    /// `data` a JSON object of at most 64 KiB, else [`ClientError::Remote`] with
    /// `invalid_argument`. In durable mode the reply comes once the event is on disk.
    pub async fn emit(
        &mut self,
        event: &str,
        data: Option<Box<RawValue>>,
    ) -> Result<EmitReply, ClientError> {
        self.emit_with(event, data, None).await
    }

    /// Like [`Client::emit`], with the event's severity (none: the catalog's for the name,
    /// `info` outside the catalog). The severity travels on the bus, not in the payload.
    pub async fn emit_with(
        &mut self,
        event: &str,
        data: Option<Box<RawValue>>,
        severity: Option<Severity>,
    ) -> Result<EmitReply, ClientError> {
        self.call(&Request::Emit {
            event: event.into(),
            data,
            severity: severity.map(|s| s.as_str().into()),
        })
        .await
    }

    /// Publishes every item over this connection with up to [`PIPELINE_WINDOW`] in flight.
    /// Stops sending at the first item the daemon refuses; replies already in flight are
    /// still read and counted.
    pub async fn emit_pipelined(
        &mut self,
        items: impl IntoIterator<Item = EmitItem>,
    ) -> Result<EmitSummary, EmitFailure> {
        let mut items = items.into_iter().enumerate();
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        let mut summary = EmitSummary::default();
        let mut failure: Option<(usize, ClientError)> = None;
        let mut exhausted = false;
        let framed = &mut self.framed;
        // One poll loop that reads replies whenever they are there, also while a send waits on
        // the socket: awaiting a send without reading deadlocks once both sides' socket
        // buffers are full (each waits for the other to read).
        let lost = std::future::poll_fn(|cx| loop {
            let mut progressed = false;
            while let Some(&index) = in_flight.front() {
                let Poll::Ready(next) = Pin::new(&mut *framed).poll_next(cx) else {
                    break;
                };
                in_flight.pop_front();
                progressed = true;
                let fast = match &next {
                    Some(Ok(body)) => emit_reply_id(body),
                    _ => None,
                };
                let reply = match fast {
                    Some(event_id) => Ok(EmitReply { event_id }),
                    None => response_from(next).and_then(ok_data::<EmitReply>),
                };
                match reply {
                    Ok(r) => summary.add(r.event_id),
                    Err(e @ (ClientError::Remote { .. } | ClientError::Protocol(_))) => {
                        failure.get_or_insert((index, e));
                    }
                    Err(e) => return Poll::Ready(Some((index, e))),
                }
            }
            while failure.is_none() && !exhausted && in_flight.len() < PIPELINE_WINDOW {
                match Sink::<bytes::Bytes>::poll_ready(Pin::new(&mut *framed), cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => {
                        let i = in_flight.front().copied().unwrap_or(0);
                        return Poll::Ready(Some((i, ClientError::Io(e))));
                    }
                    Poll::Ready(Ok(())) => {}
                }
                let Some((i, item)) = items.next() else {
                    exhausted = true;
                    break;
                };
                let req = encode_emit(&item.event, item.data.as_deref(), item.severity);
                if let Err(e) = Pin::new(&mut *framed).start_send(req) {
                    return Poll::Ready(Some((i, ClientError::Io(e))));
                }
                in_flight.push_back(i);
                progressed = true;
            }
            if let Poll::Ready(Err(e)) = SinkExt::<bytes::Bytes>::poll_flush_unpin(&mut *framed, cx)
            {
                let i = in_flight.front().copied().unwrap_or(0);
                return Poll::Ready(Some((i, ClientError::Io(e))));
            }
            if in_flight.is_empty() && (exhausted || failure.is_some()) {
                return Poll::Ready(None);
            }
            if !progressed {
                return Poll::Pending;
            }
        })
        .await;
        if let Some((index, error)) = lost {
            return Err(EmitFailure {
                index,
                error,
                summary,
            });
        }
        match failure {
            None => Ok(summary),
            Some((index, error)) => Err(EmitFailure {
                index,
                error,
                summary,
            }),
        }
    }

    /// Asks the daemon to shut down; it answers before it stops.
    pub async fn shutdown(&mut self, reason: Option<&str>) -> Result<ShutdownReply, ClientError> {
        self.call(&Request::Shutdown {
            reason: reason.map(Into::into),
        })
        .await
    }

    /// Turns this connection into a stream of the events `pattern` matches: `*`, `prefix.*`
    /// or an exact name. Events published after the reply arrive in bus order; a subscriber
    /// that reads too slowly loses events (counted in `info`).
    pub async fn subscribe(mut self, pattern: &str) -> Result<EventStream, ClientError> {
        let reply: SubscribeReply = self
            .call(&Request::Subscribe {
                pattern: pattern.into(),
            })
            .await?;
        Ok(EventStream {
            framed: self.framed,
            reply,
        })
    }
}

/// The events of a subscription, in bus order ([`Client::subscribe`]).
#[derive(Debug)]
pub struct EventStream {
    framed: Framed<Stream, LengthDelimitedCodec>,
    reply: SubscribeReply,
}

impl EventStream {
    /// The daemon's answer to the subscribe request.
    pub fn subscription(&self) -> &SubscribeReply {
        &self.reply
    }

    /// The next event's JSON (the webhook payload shape); `None` when the daemon hangs up.
    pub async fn next_raw(&mut self) -> Option<Result<Box<RawValue>, ClientError>> {
        match read_response(&mut self.framed).await {
            Ok(Response::Event { event }) => Some(Ok(event)),
            Ok(Response::Error { code, message }) => {
                Some(Err(ClientError::Remote { code, message }))
            }
            Ok(other) => Some(Err(ClientError::Protocol(format!(
                "expected an event, got {other:?}"
            )))),
            Err(ClientError::Closed) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// The next event, decoded.
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        let raw = self.next_raw().await?;
        Some(raw.and_then(|r| {
            serde_json::from_str(r.get()).map_err(|e| ClientError::Protocol(e.to_string()))
        }))
    }
}

async fn read_response(
    framed: &mut Framed<Stream, LengthDelimitedCodec>,
) -> Result<Response, ClientError> {
    response_from(framed.next().await)
}

/// What one read of the framed stream means.
fn response_from(next: Option<io::Result<bytes::BytesMut>>) -> Result<Response, ClientError> {
    match next {
        None => Err(ClientError::Closed),
        Some(Err(e)) if e.kind() == io::ErrorKind::InvalidData => Err(ClientError::Protocol(
            format!("bad frame from the daemon: {e}"),
        )),
        Some(Err(e)) => Err(ClientError::Io(e)),
        Some(Ok(body)) => Ok(frame::decode(&body, RESPONSE_TYPES)?),
    }
}

/// The frame of an `emit` request, written by hand: the bytes `frame::encode` writes for
/// `Request::Emit` (a test checks it; the name goes through serde_json's string escaping),
/// without serde's per-field machinery, once per event of a pipelined emit.
fn encode_emit(event: &str, data: Option<&RawValue>, severity: Option<Severity>) -> bytes::Bytes {
    let raw = data.map_or("", RawValue::get);
    let mut out = Vec::with_capacity(event.len() + raw.len() + 64);
    out.extend_from_slice(br#"{"type":"emit","event":"#);
    // Writing into a Vec cannot fail, and a `str` always serializes.
    let _ = serde_json::to_writer(&mut out, event);
    if data.is_some() {
        out.extend_from_slice(br#","data":"#);
        out.extend_from_slice(raw.as_bytes());
    }
    if let Some(s) = severity {
        // A level's name is lowercase letters: nothing to escape.
        out.extend_from_slice(br#","severity":""#);
        out.extend_from_slice(s.as_str().as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    bytes::Bytes::from(out)
}

/// The event id of an `emit`'s usual reply, `{"type":"ok","data":{"event_id":N}}` exactly as
/// the daemon writes it, read without a JSON parser; `None` for anything else (an error, other
/// spacing), which then takes the general path.
fn emit_reply_id(body: &[u8]) -> Option<u64> {
    let digits = body
        .strip_prefix(br#"{"type":"ok","data":{"event_id":"#)?
        .strip_suffix(b"}}")?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn ok_data<T: DeserializeOwned>(resp: Response) -> Result<T, ClientError> {
    match resp {
        Response::Ok { data } => serde_json::from_str(data.get())
            .map_err(|e| ClientError::Protocol(format!("unexpected reply data: {e}"))),
        Response::Error { code, message } => Err(ClientError::Remote { code, message }),
        other => Err(ClientError::Protocol(format!(
            "expected ok or error, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_frames_are_the_bytes_serde_writes() {
        let data = serde_json::value::RawValue::from_string(r#"{"k":"v","n":[1,2]}"#.into());
        let levels = std::iter::once(None).chain(Severity::ALL.map(Some));
        for severity in levels {
            for event in ["a.b", "handshake.received", "we\"ird\n.name", ""] {
                for data in [None, Some(data.as_ref().unwrap().clone())] {
                    let serde = frame::encode(&Request::Emit {
                        event: event.into(),
                        data: data.clone(),
                        severity: severity.map(|s| s.to_string()),
                    });
                    assert_eq!(
                        encode_emit(event, data.as_deref(), severity),
                        serde,
                        "{event} {data:?} {severity:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_usual_emit_reply_is_read_like_the_general_path() {
        for id in [0, 1, 42, 1_000_000, u64::MAX] {
            let body = frame::encode(&crate::protocol::OkReply::new(&EmitReply { event_id: id }));
            assert_eq!(emit_reply_id(&body), Some(id));
            let general = response_from(Some(Ok(bytes::BytesMut::from(&body[..]))))
                .and_then(ok_data::<EmitReply>)
                .unwrap();
            assert_eq!(general.event_id, id);
        }
        for other in [
            &br#"{"type":"ok","data":{"event_id":}}"#[..],
            br#"{"type":"ok","data":{"event_id":-1}}"#,
            br#"{"type":"ok","data":{"event_id":1.5}}"#,
            br#"{"type":"ok","data":{"event_id":18446744073709551616}}"#,
            br#"{"type":"ok", "data":{"event_id":1}}"#,
            br#"{"type":"error","code":"invalid_argument","message":"x"}"#,
        ] {
            assert_eq!(
                emit_reply_id(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[tokio::test]
    async fn connecting_to_nothing_says_not_running() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("none.sock");
        let err = Client::connect(&path).await.unwrap_err();
        assert_eq!(err.code(), "not_running");
        assert!(err.to_string().contains("none.sock"));
    }

    #[tokio::test]
    async fn a_stale_socket_file_says_not_running() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let err = Client::connect(&path).await.unwrap_err();
        assert_eq!(err.code(), "not_running");
    }
}
