//! Why one delivery attempt failed ([`DeliveryError`]), why a webhook cannot be configured or a
//! tool cannot run ([`WebhookError`]), and how URLs are shown in messages (password replaced by
//! `***`). Every message names the URL or the file it is about, never a secret.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use pilot_core::webhook_settings::SettingsError;

/// Why a webhook cannot be configured, or a tool (`test`, `redeliver`) cannot run.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The settings do not validate (patterns, headers, numbers, two auth files).
    #[error("webhook {url}: {source}")]
    Settings {
        url: String,
        #[source]
        source: SettingsError,
    },
    /// An extra header cannot be sent.
    #[error("webhook {url}: header {name:?} {reason}")]
    Header {
        url: String,
        name: String,
        reason: String,
    },
    /// The body template cannot be loaded, or fails for a sample event.
    #[error("webhook {url}: {reason}")]
    Template { url: String, reason: String },
    /// An auth file cannot be read.
    #[error("webhook auth file {}: {source}", path.display())]
    AuthFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An auth file's content cannot be used (its content is never shown).
    #[error("webhook auth file {}: {reason}", path.display())]
    AuthFileContent { path: PathBuf, reason: String },
    /// The client certificate or key (mutual TLS) cannot be used (the key is never shown).
    #[error("webhook {url}: {reason}")]
    ClientIdentity { url: String, reason: String },
    /// A NATS endpoint's URL or settings cannot be used.
    #[error("NATS endpoint {url}: {reason}")]
    Nats { url: String, reason: String },
    /// `test` or `redeliver` without a webhook.
    #[error("no webhook is set")]
    NoWebhook,
    /// `redeliver` of an event whose payload is no longer in the delivery log.
    #[error(
        "event {event_id} is not in the delivery log (it keeps the last {} attempts)",
        crate::log::LOG_CAPACITY
    )]
    NotFound { event_id: u64 },
    /// The plugin was shut down.
    #[error("the webhook plugin is shut down")]
    ShutDown,
    /// Durable delivery was asked for, but the plugin was given no spool file.
    #[error(
        "webhook {url}: durable delivery needs a spool file and the plugin was given none \
         (WebhookOptions::spool_path)"
    )]
    NoSpool { url: String },
    /// The durable spool cannot be opened or used (the message names the file).
    #[error(transparent)]
    Spool(#[from] pilot_spool::SpoolError),
}

/// Why one attempt to deliver an event failed. Every variant names the (redacted) URL.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DeliveryError {
    /// The endpoint answered with a status that is not 2xx.
    #[error("HTTP {status} from {url}")]
    Status {
        url: String,
        status: StatusCode,
        /// The wait `Retry-After` asked for (429 and 503 only), already parsed.
        retry_after: Option<Duration>,
    },
    /// No response headers within the attempt timeout.
    #[error("timeout after {after} waiting for {url}")]
    Timeout { url: String, after: String },
    /// The connection could not be made (refused, unreachable, DNS, TLS).
    #[error("connection to {url} failed: {detail}")]
    Connect { url: String, detail: String },
    /// The request failed after connecting (reset, malformed response).
    #[error("request to {url} failed: {detail}")]
    Request { url: String, detail: String },
    /// The host is, or resolves only to, an address a webhook must not reach (SSRF guard).
    #[error("{url} is blocked: {reason}")]
    Blocked { url: String, reason: String },
    /// The URL cannot be turned into a request.
    #[error("webhook URL {url} cannot be used: {detail}")]
    BadUrl { url: String, detail: String },
    /// The body template failed for this event: nothing was sent.
    #[error("not sent to {url}: {detail}")]
    Template { url: String, detail: String },
}

impl DeliveryError {
    /// Whether another attempt may succeed: connection errors, timeouts, 408, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => crate::retry::is_retryable_status(*status),
            DeliveryError::Timeout { .. }
            | DeliveryError::Connect { .. }
            | DeliveryError::Request { .. } => true,
            DeliveryError::Blocked { .. }
            | DeliveryError::BadUrl { .. }
            | DeliveryError::Template { .. } => false,
        }
    }

    /// The HTTP status, when a response came.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            DeliveryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the endpoint answered 410 Gone (the webhook is then disabled).
    pub fn is_gone(&self) -> bool {
        self.status() == Some(StatusCode::GONE)
    }

    /// The wait the endpoint asked for with `Retry-After` (429 and 503 only).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A timeout after `after`.
    pub(crate) fn timeout(url: &str, after: Duration) -> Self {
        DeliveryError::Timeout {
            url: url.into(),
            after: pilot_core::duration::format(after),
        }
    }
}

/// The URL as text with its password and query values replaced by `***`, for logs and stats
/// (defined once, in pilot-core).
pub use pilot_core::webhook_url::redact;

/// An error and its causes, joined with `: `, skipping a first message that says nothing.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static), skip_first: bool) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    if skip_first && parts.len() > 1 {
        parts.remove(0);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pilot_core::webhook_url::Url;

    #[test]
    fn passwords_are_hidden() {
        let u = Url::parse("https://bob:s3cret@hooks.example.com/x?y=1").unwrap();
        assert_eq!(redact(&u), "https://bob:***@hooks.example.com/x?y=***");
        let u = Url::parse("http://bob@localhost:8080/events").unwrap();
        assert_eq!(redact(&u), "http://bob@localhost:8080/events");
        let u = Url::parse("http://localhost:8080/events").unwrap();
        assert_eq!(redact(&u), "http://localhost:8080/events");
    }

    #[test]
    fn messages_name_the_url() {
        let e = DeliveryError::Status {
            url: "http://127.0.0.1:1234/x".into(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "HTTP 500 Internal Server Error from http://127.0.0.1:1234/x"
        );
        assert!(e.is_retryable());
        let e = DeliveryError::timeout("http://h/", Duration::from_secs(5));
        assert_eq!(e.to_string(), "timeout after 5s waiting for http://h/");
        assert!(e.is_retryable());
        for code in [302, 400, 404, 410] {
            let e = DeliveryError::Status {
                url: "u".into(),
                status: StatusCode::from_u16(code).unwrap(),
                retry_after: None,
            };
            assert!(!e.is_retryable(), "{code}");
            assert_eq!(e.is_gone(), code == 410);
        }
        for code in [408, 429, 503] {
            let e = DeliveryError::Status {
                url: "u".into(),
                status: StatusCode::from_u16(code).unwrap(),
                retry_after: Some(Duration::from_secs(1)),
            };
            assert!(e.is_retryable(), "{code}");
            assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
        }
    }
}
