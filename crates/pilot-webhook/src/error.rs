//! Why one delivery attempt failed ([`DeliveryError`]), and how URLs are shown in messages
//! (password replaced by `***`).

use std::time::Duration;

use http::StatusCode;
use pilot_core::webhook_url::Url;

/// Why one attempt to deliver an event failed. Every variant names the (redacted) URL.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DeliveryError {
    /// The endpoint answered with a status that is not 2xx.
    #[error("HTTP {status} from {url}")]
    Status { url: String, status: StatusCode },
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
}

impl DeliveryError {
    /// Whether another attempt may succeed: connection errors, timeouts and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => status.is_server_error(),
            DeliveryError::Timeout { .. }
            | DeliveryError::Connect { .. }
            | DeliveryError::Request { .. } => true,
            DeliveryError::Blocked { .. } | DeliveryError::BadUrl { .. } => false,
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

/// The URL as text with its password (if any) replaced by `***`, for logs and stats.
pub fn redact(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Only fails for URLs that cannot have a password, and this one has one.
    if shown.set_password(Some("***")).is_err() {
        return "<webhook URL>".into();
    }
    shown.to_string()
}

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

    #[test]
    fn passwords_are_hidden() {
        let u = Url::parse("https://bob:s3cret@hooks.example.com/x?y=1").unwrap();
        assert_eq!(redact(&u), "https://bob:***@hooks.example.com/x?y=1");
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
        };
        assert_eq!(
            e.to_string(),
            "HTTP 500 Internal Server Error from http://127.0.0.1:1234/x"
        );
        assert!(e.is_retryable());
        let e = DeliveryError::timeout("http://h/", Duration::from_secs(5));
        assert_eq!(e.to_string(), "timeout after 5s waiting for http://h/");
        assert!(e.is_retryable());
        for code in [302, 400, 404] {
            let e = DeliveryError::Status {
                url: "u".into(),
                status: StatusCode::from_u16(code).unwrap(),
            };
            assert!(!e.is_retryable(), "{code}");
        }
    }
}
