//! The NATS JetStream transport: an endpoint whose URL is `nats://HOST:PORT` (several servers
//! comma-separated; `tls://` for TLS) publishes every event to a subject made from its
//! template (`pilot.{node_id}.{event}` by default) instead of POSTing it.
//!
//! - One message per event: the body is the event's payload (the webhook body of a single
//!   event). A batch (`batch_max`) is not a batch body here: its events are published one after
//!   the other without waiting (pipelined) and their acknowledgements are awaited together.
//! - Headers: `Nats-Msg-Id` (the event's `webhook-id`, so JetStream's duplicate window drops
//!   what a retry or a crash sends twice), `Pilot-Event`, `Pilot-Event-Id`, and with a secret
//!   the same signature headers as HTTP (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`, `X-Pilot-Signature-256`), over the message body.
//! - Delivered means the stream acknowledged every message (a PubAck). An error ack, no stream
//!   for the subject, a permission violation, a timeout or a lost connection is a failure that
//!   is retried like a 5xx, its message naming what is missing.
//! - The connection is made at the first attempt (so a broker that is down fails an attempt,
//!   not the configure) and kept by the endpoint's [`Config`]; async-nats reconnects by itself.
//!   Every broker host passes the endpoint's address policy, names resolved first; servers a
//!   cluster announces are ignored (list every server in the URL), so the policy holds.
//! - `create_stream`: after connecting, a stream of that name for the template's fixed prefix
//!   (`pilot.>`) is created when no stream takes it; otherwise the broker's configuration is
//!   never changed.
//! - Credentials (token, `user:password`, NKey seed, `.creds`) are read from their files when
//!   the endpoint is configured, kept in memory only, and never logged or shown.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};
use bytes::Bytes;
use http::StatusCode;
use pilot_core::subject::SubjectTemplate;
use pilot_core::webhook_url::{broker_servers, Url, UrlPolicy};
use pilot_core::WebhookSettings;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::batch::{Delivery, Item};
use crate::error::{DeliveryError, WebhookError};
use crate::files::content_error;
use crate::sign::Secrets;

/// How a NATS endpoint authenticates. The secrets are held here only; `Debug` hides them.
enum Auth {
    None,
    Token(String),
    User(String, String),
    NKey(String),
    /// The content of a `.creds` file.
    Creds(String),
}

/// A NATS endpoint, ready to connect: servers, subject template, credentials, TLS files.
pub(crate) struct NatsTarget {
    servers: Vec<ServerAddr>,
    /// Host names to resolve and check with the policy at connect time (host, port).
    hosts: Vec<(String, u16)>,
    shown: Arc<str>,
    template: SubjectTemplate,
    auth: Auth,
    tls: bool,
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    create_stream: Option<String>,
    policy: UrlPolicy,
    connection: OnceCell<Connection>,
}

impl std::fmt::Debug for NatsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTarget")
            .field("servers", &self.shown)
            .field("subject", &self.template.as_str())
            .finish_non_exhaustive()
    }
}

/// A live connection and what the server last complained about (a permission violation
/// arrives on its own, not as the answer to a publish).
struct Connection {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    server_error: Arc<Mutex<Option<String>>>,
}

impl NatsTarget {
    /// Checks the settings for a NATS endpoint at `url` (shown as `shown`; its hosts reached
    /// under `policy`) and reads its credential file.
    pub(crate) fn new(
        url: &Url,
        settings: &WebhookSettings,
        shown: Arc<str>,
        policy: UrlPolicy,
    ) -> Result<NatsTarget, WebhookError> {
        let settings_error =
            |source: pilot_core::webhook_settings::SettingsError| WebhookError::Settings {
                url: shown.to_string(),
                source,
            };
        let template = settings
            .subject_template()
            .map_err(|e| settings_error(e.into()))?;
        let mut servers = Vec::new();
        let mut hosts = Vec::new();
        for server in broker_servers(url) {
            let addr: ServerAddr = server.parse().map_err(|e| WebhookError::Nats {
                url: shown.to_string(),
                reason: format!("server {server:?} cannot be used: {e}"),
            })?;
            if addr.host().parse::<IpAddr>().is_err() {
                hosts.push((addr.host().to_string(), addr.port()));
            }
            servers.push(addr);
        }
        let auth = if let Some(path) = &settings.nats_token_file {
            Auth::Token(crate::files::read_credential(
                path,
                "a NATS credential file",
            )?)
        } else if let Some(path) = &settings.nats_user_file {
            let text = crate::files::read_credential(path, "a NATS credential file")?;
            let (user, password) = text
                .split_once(':')
                .ok_or_else(|| content_error(path, "must hold user:password"))?;
            Auth::User(user.to_string(), password.to_string())
        } else if let Some(path) = &settings.nats_nkey_file {
            let seed = crate::files::read_credential(path, "a NATS credential file")?;
            if !seed.starts_with('S') || seed.chars().any(char::is_whitespace) {
                return Err(content_error(path, "must hold one NKey seed (SU...)"));
            }
            Auth::NKey(seed)
        } else if let Some(path) = &settings.nats_creds {
            let creds = crate::files::read_credential(path, "a NATS credential file")?;
            // Checked now (JWT and seed present), used at every connect.
            ConnectOptions::with_credentials(&creds).map_err(|_| {
                content_error(
                    path,
                    "is not a NATS .creds file (a user JWT and an NKey seed)",
                )
            })?;
            Auth::Creds(creds)
        } else {
            Auth::None
        };
        for path in [
            &settings.nats_ca_file,
            &settings.nats_cert_file,
            &settings.nats_key_file,
        ]
        .into_iter()
        .flatten()
        {
            std::fs::metadata(path).map_err(|source| WebhookError::AuthFile {
                path: path.clone(),
                source,
            })?;
        }
        let client_cert = settings
            .nats_cert_file
            .clone()
            .zip(settings.nats_key_file.clone());
        Ok(NatsTarget {
            tls: url.scheme() == "tls",
            servers,
            hosts,
            shown,
            template,
            auth,
            ca_file: settings.nats_ca_file.clone(),
            client_cert,
            create_stream: settings.create_stream.clone(),
            policy,
            connection: OnceCell::new(),
        })
    }

    /// Publishes `delivery` (one message per event, pipelined) and waits for every
    /// acknowledgement, each wait at most `timeout`; subjects name node `node_id`. Returns
    /// whether the messages were signed.
    pub(crate) async fn publish(
        &self,
        secrets: &Secrets,
        delivery: &Delivery,
        timeout: Duration,
        node_id: u32,
    ) -> (Result<StatusCode, DeliveryError>, bool) {
        let connect = || self.connect(timeout);
        let conn = match self.connection.get_or_try_init(connect).await {
            Ok(conn) => conn,
            Err(e) => return (Err(e), false),
        };
        if conn.client.connection_state() != async_nats::connection::State::Connected {
            return (
                Err(DeliveryError::Connect {
                    url: self.shown.to_string(),
                    detail: "not connected to any NATS server (reconnecting)".into(),
                }),
                false,
            );
        }
        let at = jiff::Timestamp::now().as_second();
        let mut signed = false;
        let mut acks: Vec<(String, PublishAckFuture)> = Vec::with_capacity(delivery.len());
        for (item, id, body) in messages(delivery) {
            let subject = self.template.render(&item.event, node_id);
            if let Err(e) = pilot_core::subject::check_subject(&subject) {
                return (
                    Err(DeliveryError::BadUrl {
                        url: self.shown.to_string(),
                        detail: e.to_string(),
                    }),
                    signed,
                );
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            headers.insert("Pilot-Event", &*item.event);
            headers.insert("Pilot-Event-Id", item.event_id.to_string().as_str());
            if let Some(pairs) = secrets.sign(&id, at, &body).and_then(|s| s.pairs()) {
                for (name, value) in pairs {
                    if let Ok(value) = value.to_str() {
                        headers.insert(name.as_str(), value);
                        signed = true;
                    }
                }
            }
            match conn
                .js
                .publish_with_headers(subject.clone(), headers, body)
                .await
            {
                Ok(ack) => acks.push((subject, ack)),
                Err(e) => return (Err(self.publish_error(conn, &subject, e, timeout)), signed),
            }
        }
        let (subjects, futures): (Vec<_>, Vec<_>) = acks.into_iter().unzip();
        let results = futures_util::future::join_all(
            futures
                .into_iter()
                .map(std::future::IntoFuture::into_future),
        )
        .await;
        for (subject, result) in subjects.iter().zip(results) {
            if let Err(e) = result {
                return (Err(self.publish_error(conn, subject, e, timeout)), signed);
            }
        }
        (Ok(StatusCode::OK), signed)
    }

    /// Connects (after checking every host's addresses) and, with `create_stream`, makes the
    /// stream when none takes the subjects.
    async fn connect(&self, timeout: Duration) -> Result<Connection, DeliveryError> {
        let url = || self.shown.to_string();
        for (host, port) in &self.hosts {
            let addrs = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| DeliveryError::Connect {
                    url: url(),
                    detail: format!("cannot resolve {host}: {e}"),
                })?;
            for addr in addrs {
                self.policy
                    .check_ip(addr.ip())
                    .map_err(|reason| DeliveryError::Blocked {
                        url: url(),
                        reason: format!("{host} resolves to {reason}"),
                    })?;
            }
        }
        let mut options = match &self.auth {
            Auth::Creds(creds) => {
                ConnectOptions::with_credentials(creds).map_err(|e| DeliveryError::Connect {
                    url: url(),
                    detail: format!("the .creds file cannot be used: {e}"),
                })?
            }
            Auth::Token(t) => ConnectOptions::new().token(t.clone()),
            Auth::User(u, p) => ConnectOptions::new().user_and_password(u.clone(), p.clone()),
            Auth::NKey(seed) => ConnectOptions::new().nkey(seed.clone()),
            Auth::None => ConnectOptions::new(),
        };
        let server_error = Arc::new(Mutex::new(None::<String>));
        let seen = server_error.clone();
        let shown = self.shown.clone();
        options = options
            .name("pilot-daemon")
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .ignore_discovered_servers()
            .max_reconnects(None)
            .event_callback(move |event| {
                let seen = seen.clone();
                let shown = shown.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => info!(url = %shown, "NATS connected"),
                        async_nats::Event::Disconnected => {
                            warn!(url = %shown, "NATS disconnected; reconnecting")
                        }
                        async_nats::Event::ServerError(e) => {
                            let text = e.to_string();
                            warn!(url = %shown, error = %text, "NATS server error");
                            if let Ok(mut last) = seen.lock() {
                                *last = Some(text);
                            }
                        }
                        other => info!(url = %shown, event = %other, "NATS connection event"),
                    }
                }
            });
        if self.tls {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let client = async_nats::connect_with_options(self.servers.clone(), options)
            .await
            .map_err(|e| {
                let detail = match e.kind() {
                    ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                        "authorization failed: the server refused the credentials (check the \
                         --nats-* credential file and the server's accounts)"
                            .to_string()
                    }
                    _ => crate::error::chain(&e, false),
                };
                DeliveryError::Connect { url: url(), detail }
            })?;
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(timeout);
        if let Some(name) = &self.create_stream {
            self.ensure_stream(&js, name).await?;
        }
        Ok(Connection {
            client,
            js,
            server_error,
        })
    }

    /// Creates stream `name` for the template's prefix unless a stream takes it already.
    async fn ensure_stream(
        &self,
        js: &async_nats::jetstream::Context,
        name: &str,
    ) -> Result<(), DeliveryError> {
        let fail = |detail: String| DeliveryError::Request {
            url: self.shown.to_string(),
            detail,
        };
        let Some(filter) = self.template.stream_filter() else {
            return Err(fail(
                "the subject template has no fixed prefix for a stream".into(),
            ));
        };
        if let Ok(existing) = js.stream_by_subject(filter.clone()).await {
            info!(url = %self.shown, stream = %existing, subjects = %filter, "NATS stream exists; not created");
            return Ok(());
        }
        let config = async_nats::jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![filter.clone()],
            ..Default::default()
        };
        match js.get_or_create_stream(config).await {
            Ok(_) => {
                info!(url = %self.shown, stream = %name, subjects = %filter, "NATS stream created (--create-stream)");
                Ok(())
            }
            Err(e) => Err(fail(format!(
                "cannot create stream {name} for {filter}: {}",
                crate::error::chain(&e, false)
            ))),
        }
    }

    /// The failure of a publish to `subject`, naming what is missing.
    fn publish_error(
        &self,
        conn: &Connection,
        subject: &str,
        e: async_nats::jetstream::context::PublishError,
        timeout: Duration,
    ) -> DeliveryError {
        let url = self.shown.to_string();
        let denied = conn
            .server_error
            .lock()
            .ok()
            .and_then(|mut last| last.take())
            .filter(|text| text.to_ascii_lowercase().contains("permission"));
        if let Some(text) = denied {
            return DeliveryError::Request {
                url,
                detail: format!(
                    "no permission to publish to {subject:?} (or to receive its \
                     acknowledgement): the server said {text}"
                ),
            };
        }
        match e.kind() {
            PublishErrorKind::StreamNotFound => DeliveryError::Request {
                url,
                detail: format!(
                    "no JetStream stream takes subject {subject:?}: create one on the broker \
                     (or give --create-stream NAME)"
                ),
            },
            PublishErrorKind::TimedOut => DeliveryError::timeout(&url, timeout),
            PublishErrorKind::BrokenPipe => DeliveryError::Request {
                url,
                detail: "the connection was lost before the stream acknowledged".into(),
            },
            PublishErrorKind::MaxPayloadExceeded => DeliveryError::BadUrl {
                url,
                detail: crate::error::chain(&e, false),
            },
            _ => DeliveryError::Request {
                url,
                detail: format!(
                    "the stream refused the message on {subject:?}: {}",
                    crate::error::chain(&e, false)
                ),
            },
        }
    }
}

/// The messages of `delivery`: each event with its id and body. A single event keeps the
/// delivery's id and body; the events of a batch each get their own id (the batch id's prefix
/// `msg_<instance or node>_` and the event id, the id that event has alone) and payload.
fn messages(delivery: &Delivery) -> Vec<(&Item, String, Bytes)> {
    if !delivery.batched {
        return delivery
            .items
            .iter()
            .map(|item| (item, delivery.webhook_id.to_string(), delivery.body.clone()))
            .collect();
    }
    let prefix = match delivery.webhook_id.rfind('_') {
        Some(i) => &delivery.webhook_id[..=i],
        None => "msg_",
    };
    delivery
        .items
        .iter()
        .map(|item| {
            (
                item,
                format!("{prefix}{}", item.event_id),
                item.payload.clone(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u64) -> Item {
        Item {
            event_id: id,
            event: Arc::from("a.b"),
            payload: Bytes::from(format!("{{\"event_id\":{id}}}")),
            severity: None,
            at_ms: 0,
        }
    }

    #[test]
    fn a_batch_is_one_message_per_event_with_its_own_id() {
        let d = Delivery::new(vec![item(4), item(5)], true, "00ff").unwrap();
        let m = messages(&d);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1, "msg_00ff_4");
        assert_eq!(m[1].1, "msg_00ff_5");
        assert_eq!(m[1].2, item(5).payload);
        let d = Delivery::new(vec![item(7)], false, "00ff").unwrap();
        let m = messages(&d);
        assert_eq!((m[0].1.as_str(), &m[0].2), ("msg_00ff_7", &item(7).payload));
    }

    #[test]
    fn credentials_are_read_and_checked_without_showing_them() {
        let dir = tempfile::tempdir().unwrap();
        let url =
            pilot_core::webhook_url::validate("nats://127.0.0.1:4222,localhost:4223").unwrap();
        let new =
            |s: &WebhookSettings| NatsTarget::new(&url, s, "nats://x".into(), UrlPolicy::DEFAULT);
        let user = dir.path().join("user");
        std::fs::write(&user, "nosecretcolon").unwrap();
        let settings = WebhookSettings {
            nats_user_file: Some(user.clone()),
            ..Default::default()
        };
        let err = new(&settings).unwrap_err().to_string();
        assert!(
            err.contains("user:password") && !err.contains("nosecretcolon"),
            "{err}"
        );
        std::fs::write(&user, "bob:s3cret").unwrap();
        let t = new(&settings).unwrap();
        assert_eq!(t.servers.len(), 2);
        assert_eq!(t.hosts, vec![("localhost".to_string(), 4223)]);
        assert!(!format!("{t:?}").contains("s3cret"));
        let creds = dir.path().join("c.creds");
        std::fs::write(&creds, "not a creds file").unwrap();
        let settings = WebhookSettings {
            nats_creds: Some(creds),
            ..Default::default()
        };
        let err = new(&settings).unwrap_err().to_string();
        assert!(err.contains(".creds"), "{err}");
    }
}
