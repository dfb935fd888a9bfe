//! The control socket server: accepts local clients and answers their requests.
//!
//! Each connection must come from the daemon's own uid (peer credentials) and say `hello` with
//! our protocol version within the handshake timeout. Garbage, an oversized or cut frame, or a
//! silent client costs only that connection. Replies go out in request order; a run of
//! pipelined requests is answered with one flush.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use pilot_core::endpoint::DEFAULT;
use pilot_core::{Event, Pattern, Severity, WebhookSettings};
use pilot_ipc::frame::{self, FrameError};
use pilot_ipc::protocol::{
    DeliveriesReply, DeliveryInfo, EndpointReply, ErrorCode, ErrorReply, HelloReply, OkReply,
    PauseReply, RedeliverReply, RemoveReply, Request, ShutdownReply, SubscribeReply, TestReply,
    WebhookReply, PROTOCOL_VERSION, REQUEST_TYPES,
};
use pilot_ipc::transport::prelude::*;
use pilot_ipc::transport::{self, Listener, Stream};
use pilot_webhook::{DeliveryRecord, WebhookError};
use serde::Serialize;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conns::{ConnGuard, Conns};
use crate::endpoints::{Endpoint, EndpointError};
use crate::replies::{emit_ok, Replies, MAX_HELD};
use crate::state::Daemon;

type Conn = Framed<Stream, LengthDelimitedCodec>;

/// Events buffered per `subscribe` client before the bus drops (and counts) for it.
const SUBSCRIBER_BUFFER: usize = 4096;

/// How long a connection may wait: for its hello, and between requests after it.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub handshake: Duration,
    pub idle: Duration,
}

/// Accepts connections until `stop` is cancelled; handlers are spawned on `tracker`. Near the
/// descriptor limit, the connection idle the longest is closed to make room (see `conns`).
pub async fn serve(
    listener: Listener,
    daemon: Arc<Daemon>,
    timeouts: Timeouts,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let conns = Arc::new(Conns::default());
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok(stream) => {
                let daemon = daemon.clone();
                let stop = stop.clone();
                let guard = conns.register();
                conns.make_room(guard.id());
                tracker.spawn(async move {
                    if let Err(e) = connection(stream, daemon, timeouts, stop, guard).await {
                        tracing::debug!(error = %e, "control connection ended with an error");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a control connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn flush(conn: &mut Conn) -> io::Result<()> {
    SinkExt::<Bytes>::flush(conn).await
}

pub(crate) fn ok<T: Serialize>(data: &T) -> Bytes {
    frame::encode(&OkReply::new(data))
}

pub(crate) fn err(code: ErrorCode, message: &str) -> Bytes {
    frame::encode(&ErrorReply::new(code, message))
}

fn frame_error_reply(e: &io::Error) -> Bytes {
    if e.kind() == io::ErrorKind::InvalidData {
        err(
            ErrorCode::FrameTooLarge,
            &format!("frame rejected: {e} (limit {} bytes)", frame::MAX_FRAME),
        )
    } else {
        err(ErrorCode::MalformedRequest, &format!("bad frame: {e}"))
    }
}

fn decode_error_reply(e: &FrameError) -> Bytes {
    match e {
        FrameError::UnknownType(_) => err(ErrorCode::UnknownRequest, &e.to_string()),
        _ => err(ErrorCode::MalformedRequest, &e.to_string()),
    }
}

async fn connection(
    stream: Stream,
    daemon: Arc<Daemon>,
    timeouts: Timeouts,
    stop: CancellationToken,
    guard: ConnGuard,
) -> io::Result<()> {
    let handshake_timeout = timeouts.handshake;
    let peer = transport::peer_uid(&stream);
    let mut conn = Framed::new(stream, frame::codec());
    match peer {
        Ok(Some(uid)) if uid == daemon.uid => {}
        Ok(Some(uid)) => {
            tracing::warn!(
                peer_uid = uid,
                "refused a control connection from another user"
            );
            let msg = format!(
                "uid {uid} may not use this daemon (it runs as uid {})",
                daemon.uid
            );
            return conn.send(err(ErrorCode::PermissionDenied, &msg)).await;
        }
        Ok(None) => {
            tracing::warn!("the platform does not report peer credentials; refusing");
            return conn
                .send(err(
                    ErrorCode::PermissionDenied,
                    "peer credentials unavailable",
                ))
                .await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read peer credentials; refusing");
            return conn
                .send(err(
                    ErrorCode::PermissionDenied,
                    "peer credentials unavailable",
                ))
                .await;
        }
    }

    // The handshake: the first frame must be a hello with our version.
    let first = tokio::select! {
        () = guard.close.cancelled() => return Ok(()),
        first = tokio::time::timeout(handshake_timeout, conn.next()) => first,
    };
    let first = match first {
        Err(_) => {
            let msg = format!("no hello within {handshake_timeout:?}");
            return conn.send(err(ErrorCode::HandshakeTimeout, &msg)).await;
        }
        Ok(None) => return Ok(()),
        Ok(Some(Err(e))) => return conn.send(frame_error_reply(&e)).await,
        Ok(Some(Ok(body))) => body,
    };
    match frame::decode::<Request>(&first, REQUEST_TYPES) {
        Ok(Request::Hello { version, .. }) if version == PROTOCOL_VERSION => {
            conn.send(hello(&daemon)).await?;
        }
        Ok(Request::Hello { version, .. }) => {
            let msg = format!(
                "client speaks protocol version {version}, this daemon speaks {PROTOCOL_VERSION}: \
                 use a pilotctl of the same release as pilot-daemon {}",
                pilot_core::VERSION
            );
            return conn.send(err(ErrorCode::VersionMismatch, &msg)).await;
        }
        Ok(_) => {
            return conn
                .send(err(
                    ErrorCode::HandshakeRequired,
                    "the first message must be a hello",
                ))
                .await
        }
        Err(e) => return conn.send(decode_error_reply(&e)).await,
    }

    let mut replies = Replies::default();
    loop {
        // Answer a run of pipelined requests with one flush: flush only before waiting. The
        // replies wait until the events they acknowledge are durable (see `replies`).
        let next = match conn.next().now_or_never() {
            Some(n) if replies.len() < MAX_HELD => n,
            early => {
                replies.release(&mut conn, &daemon.bus).await?;
                flush(&mut conn).await?;
                match early {
                    Some(n) => n,
                    None => {
                        guard.set_busy(false);
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            () = guard.close.cancelled() => return Ok(()),
                            () = tokio::time::sleep(timeouts.idle) => {
                                tracing::debug!("closed a control connection idle for {:?}", timeouts.idle);
                                return Ok(());
                            }
                            n = conn.next() => n,
                        }
                    }
                }
            }
        };
        let body = match next {
            None => {
                replies.release(&mut conn, &daemon.bus).await?;
                return flush(&mut conn).await;
            }
            Some(Err(e)) => {
                // The framing is lost (oversized length): answer and hang up.
                replies.release(&mut conn, &daemon.bus).await?;
                conn.feed(frame_error_reply(&e)).await?;
                return flush(&mut conn).await;
            }
            Some(Ok(body)) => body,
        };
        let request = match Request::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                replies.push(decode_error_reply(&e), None);
                continue;
            }
        };
        if let Request::Subscribe { pattern } = request {
            let pattern = match Pattern::parse_checked(&pattern) {
                Ok((p, suggestion)) => {
                    if let Some(s) = suggestion {
                        tracing::warn!("subscription: {s}");
                    }
                    p
                }
                Err(e) => {
                    replies.push(err(ErrorCode::InvalidArgument, &e.to_string()), None);
                    continue;
                }
            };
            replies.release(&mut conn, &daemon.bus).await?;
            guard.set_busy(false);
            return stream_events(conn, &daemon, pattern, stop, &guard.close).await;
        }
        guard.set_busy(true);
        let (reply, event_id) = handle(&daemon, request).await;
        replies.push(reply, event_id);
    }
}

fn hello(daemon: &Daemon) -> Bytes {
    #[derive(Serialize)]
    struct Hello<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        reply: &'a HelloReply,
    }
    frame::encode(&Hello {
        kind: "hello",
        reply: &HelloReply {
            version: PROTOCOL_VERSION,
            server: format!("pilot-daemon/{}", pilot_core::VERSION),
            pid: daemon.pid,
        },
    })
}

/// Answers one request (everything but `subscribe`), with the id of the event an `emit`
/// published. `test_webhook` and `redeliver` wait for their one attempt (bounded by the webhook
/// timeout); everything else answers at once.
async fn handle(daemon: &Daemon, request: Request) -> (Bytes, Option<u64>) {
    if let Request::Emit {
        event,
        data,
        severity,
    } = request
    {
        return emit(daemon, event, data, severity.as_deref());
    }
    let reply = match request {
        Request::Hello { .. } => hello(daemon),
        Request::Info => ok(&daemon.info()),
        Request::SetWebhook { url, settings } => {
            match put_webhook(daemon, DEFAULT, &url, *settings, false).await {
                Ok(webhook) => ok(&WebhookReply { webhook }),
                Err(reply) => reply,
            }
        }
        Request::ClearWebhook => match daemon.endpoints.clear_default() {
            Ok(()) => {
                tracing::info!("webhook cleared");
                ok(&WebhookReply {
                    webhook: String::new(),
                })
            }
            Err(e) => endpoint_error(&e),
        },
        Request::AddWebhook {
            name,
            url,
            settings,
        } => match put_webhook(daemon, &name, &url, *settings, true).await {
            Ok(webhook) => ok(&EndpointReply { name, webhook }),
            Err(reply) => reply,
        },
        Request::UpdateWebhook {
            name,
            url,
            settings,
        } => match put_webhook(daemon, &name, &url, *settings, false).await {
            Ok(webhook) => ok(&EndpointReply { name, webhook }),
            Err(reply) => reply,
        },
        Request::RemoveWebhook { name, force } => {
            match daemon.endpoints.remove(&name, force).await {
                Ok((removed, discarded)) => ok(&RemoveReply {
                    name,
                    removed,
                    discarded,
                }),
                Err(e) => endpoint_error(&e),
            }
        }
        Request::DeadLetters { name, selection } => {
            crate::archive::dead_letters(daemon, name, selection).await
        }
        Request::PurgeDeadLetters { name, selection } => {
            crate::archive::purge(daemon, name, selection).await
        }
        Request::Replay {
            name,
            to,
            selection,
            dead_letters_only,
            dry_run,
        } => crate::archive::replay(daemon, name, to, selection, dead_letters_only, dry_run).await,
        Request::PauseWebhook { name } => pause(daemon, name, true),
        Request::ResumeWebhook { name } => pause(daemon, name, false),
        Request::Emit { .. } => err(ErrorCode::Internal, "emit is handled elsewhere"),
        Request::Shutdown { reason } => {
            let reason = reason.unwrap_or_else(|| "shutdown requested over IPC".into());
            tracing::info!(%reason, "shutdown requested");
            daemon.request_shutdown(&reason);
            ok(&ShutdownReply { pid: daemon.pid })
        }
        Request::Subscribe { .. } => err(ErrorCode::Internal, "subscribe is handled elsewhere"),
        Request::ReloadSecrets { name } => match endpoint(daemon, name.as_deref()) {
            Ok(e) => match e.secrets.reload() {
                Ok(reply) => ok(&reply),
                Err(e) => err(ErrorCode::Internal, &e.to_string()),
            },
            Err(reply) => reply,
        },
        Request::Deliveries {
            failed_only,
            limit,
            name,
        } => match endpoint(daemon, name.as_deref()) {
            Ok(e) => {
                let records = e.plugin.deliveries(failed_only, limit.unwrap_or(0));
                ok(&DeliveriesReply {
                    deliveries: records.into_iter().map(delivery_info).collect(),
                })
            }
            Err(reply) => reply,
        },
        Request::TestWebhook { name } => match endpoint(daemon, name.as_deref()) {
            Err(reply) => reply,
            Ok(e) => match e.plugin.test().await {
                Ok(o) => ok(&TestReply {
                    url: o.url,
                    event_id: o.event_id,
                    ok: o.ok,
                    status: o.status,
                    latency_ms: o.latency_ms,
                    error: o.error,
                    signed: o.signed,
                }),
                Err(e) => webhook_error(&e),
            },
        },
        Request::Redeliver { event_id, name } => match endpoint(daemon, name.as_deref()) {
            Err(reply) => reply,
            Ok(e) => match e.plugin.redeliver(event_id).await {
                Ok(o) => ok(&RedeliverReply {
                    event_id: o.event_id,
                    ok: o.ok,
                    status: o.status,
                    latency_ms: o.latency_ms,
                    error: o.error,
                }),
                Err(e) => webhook_error(&e),
            },
        },
    };
    (reply, None)
}

/// `emit`: checks the name, the data, (for a catalog event) the data's fields and the severity,
/// then publishes the event.
fn emit(
    daemon: &Daemon,
    event: String,
    data: Option<Box<serde_json::value::RawValue>>,
    severity: Option<&str>,
) -> (Bytes, Option<u64>) {
    if daemon.is_stopping() {
        return (
            err(ErrorCode::ShuttingDown, "the daemon is shutting down"),
            None,
        );
    }
    if let Err(e) = pilot_core::event::validate_name(&event) {
        return (err(ErrorCode::InvalidArgument, &e.to_string()), None);
    }
    if let Some(d) = &data {
        if let Err(e) = pilot_core::event::check_data(d) {
            return (err(ErrorCode::InvalidArgument, &e.to_string()), None);
        }
    }
    if let Err(e) = pilot_core::catalog::check(&event, data.as_deref()) {
        return (err(ErrorCode::CatalogMismatch, &e.to_string()), None);
    }
    let severity = match severity.map(str::parse::<Severity>).transpose() {
        Ok(s) => s,
        Err(e) => return (err(ErrorCode::InvalidArgument, &e.to_string()), None),
    };
    let ev = daemon.bus.publish_with(event, data, severity);
    (emit_ok(ev.event_id), Some(ev.event_id))
}

/// The endpoint `name` (`default` when not given), or the error reply.
/// The endpoint `name`, or the error reply.
pub(crate) fn endpoint_reply(daemon: &Daemon, name: &str) -> Result<Endpoint, Bytes> {
    endpoint(daemon, Some(name))
}

fn endpoint(daemon: &Daemon, name: Option<&str>) -> Result<Endpoint, Bytes> {
    daemon
        .endpoints
        .get(name.unwrap_or(DEFAULT))
        .map_err(|e| endpoint_error(&e))
}

/// `set_webhook`, `add_webhook`, `update_webhook`: checks the URL and settings, swaps (or
/// creates) the endpoint's webhook and re-reads its secrets. Any error changes nothing. The
/// URL in force, or the error reply.
async fn put_webhook(
    daemon: &Daemon,
    name: &str,
    url: &str,
    settings: WebhookSettings,
    create: bool,
) -> Result<String, Bytes> {
    let base = pilot_core::webhook_url::UrlPolicy {
        deny_private: daemon.endpoints.options().deny_private_networks,
    };
    let url = settings
        .url_policy(base)
        .validate(url)
        .map_err(|e| err(ErrorCode::InvalidArgument, &e.to_string()))?;
    pilot_core::webhook_settings::validate_target(&url, &settings).map_err(|e| {
        err(
            ErrorCode::InvalidArgument,
            &format!("webhook settings: {e}"),
        )
    })?;
    log_pattern_warnings(&settings);
    let redacted = pilot_webhook::redact_url(&url);
    let shown = redacted.clone();
    daemon
        .endpoints
        .put(name, url, settings, create)
        .await
        .map_err(|e| endpoint_error(&e))?;
    tracing::info!(webhook = %name, url = %redacted, "webhook set");
    Ok(shown)
}

/// `pause_webhook` / `resume_webhook`.
fn pause(daemon: &Daemon, name: String, paused: bool) -> Bytes {
    match daemon.endpoints.set_paused(&name, paused) {
        Ok(e) => {
            let state = crate::state::endpoint_status(&e.plugin).state;
            ok(&PauseReply { name, state })
        }
        Err(e) => endpoint_error(&e),
    }
}

/// The reply for an endpoint error.
fn endpoint_error(e: &EndpointError) -> Bytes {
    let code = match e {
        EndpointError::Name(_) => ErrorCode::InvalidArgument,
        EndpointError::NotFound { .. } => ErrorCode::NotFound,
        EndpointError::Exists { .. } => ErrorCode::AlreadyExists,
        EndpointError::Limit { .. } => ErrorCode::LimitReached,
        EndpointError::Backlog { .. } => ErrorCode::Backlog,
        EndpointError::Webhook { source, .. } => match source {
            WebhookError::ShutDown => ErrorCode::ShuttingDown,
            _ => ErrorCode::InvalidArgument,
        },
        EndpointError::Io { .. } => ErrorCode::Internal,
    };
    err(code, &e.to_string())
}

/// Logs a warning for each filter pattern that names no catalog event but is one edit away
/// from one (a likely typo; the webhook is configured all the same).
pub fn log_pattern_warnings(settings: &WebhookSettings) {
    for s in settings.pattern_warnings() {
        tracing::warn!("webhook filter: {s}");
    }
}

/// The reply for a plugin error: the caller's mistake, or the daemon stopping.
fn webhook_error(e: &WebhookError) -> Bytes {
    let code = match e {
        WebhookError::ShutDown => ErrorCode::ShuttingDown,
        _ => ErrorCode::InvalidArgument,
    };
    err(code, &e.to_string())
}

fn delivery_info(r: DeliveryRecord) -> DeliveryInfo {
    DeliveryInfo {
        event_id: r.event_id,
        event: r.event,
        webhook_id: r.webhook_id,
        url: r.url,
        attempt: r.attempt,
        status: r.status,
        latency_ms: r.latency_ms,
        error: r.error,
        at: r.at.to_string(),
        ok: r.ok,
    }
}

fn event_frame(ev: &Event) -> Bytes {
    let payload = ev.payload();
    let mut b = BytesMut::with_capacity(payload.len() + 26);
    b.put_slice(b"{\"type\":\"event\",\"event\":");
    b.put_slice(&payload);
    b.put_u8(b'}');
    b.freeze()
}

/// Sends every event `pattern` matches until the client leaves or the daemon stops.
async fn stream_events(
    mut conn: Conn,
    daemon: &Daemon,
    pattern: Pattern,
    stop: CancellationToken,
    close: &CancellationToken,
) -> io::Result<()> {
    let label = match conn.get_ref().peer_creds().ok().and_then(|c| c.pid()) {
        Some(pid) => format!("ipc subscriber (pid {pid})"),
        None => "ipc subscriber".to_string(),
    };
    let mut sub = daemon
        .bus
        .subscribe(label, pattern.clone(), SUBSCRIBER_BUFFER);
    conn.send(ok(&SubscribeReply {
        subscriber_id: sub.id(),
        pattern: pattern.to_string(),
    }))
    .await?;
    let mut batch = Vec::with_capacity(256);
    loop {
        tokio::select! {
            n = sub.recv_many(&mut batch, 256) => {
                if n == 0 {
                    return Ok(());
                }
                for ev in batch.drain(..) {
                    conn.feed(event_frame(&ev)).await?;
                }
                flush(&mut conn).await?;
            }
            () = close.cancelled() => return Ok(()),
            incoming = conn.next() => match incoming {
                // The client hung up (or broke the framing): end the subscription.
                None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {
                    conn.send(err(ErrorCode::InvalidArgument,
                        "this connection is a subscription; open another one for requests")).await?;
                }
            },
            _ = stop.cancelled() => {
                // Deliver what is already buffered (e.g. daemon.shutting_down), then close.
                while let Some(ev) = sub.try_recv() {
                    conn.feed(event_frame(&ev)).await?;
                }
                return flush(&mut conn).await;
            }
        }
    }
}
