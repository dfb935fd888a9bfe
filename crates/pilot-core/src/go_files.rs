//! Files the Go Pilot daemon leaves in the pilot home that pilot reads, so a node that switches
//! from the Go daemon keeps working without edits.
//!
//! The Go webhook plugin persists its URL in `<home>/webhook_url` (one line; the file is
//! deleted when the webhook is cleared). pilot keeps the webhook in config.json (`webhook`);
//! the file is only a fallback:
//!
//! - at daemon start, when neither `--webhook` nor config `webhook` gives one, a URL in the
//!   file that the URL policy accepts is used (and the log says so); a refused or unreadable
//!   one is reported in the log and not used (the Go plugin ignores an invalid file too);
//! - `set-webhook` and `clear-webhook` migrate once: config.json gets (or loses) the URL and
//!   the file is removed, so the two can never disagree afterwards.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::paths::PilotHome;
use crate::webhook_url::{redact_str, Url, UrlPolicy};

/// The most a `webhook_url` file may hold (a URL and a line break; more is not one).
pub const MAX_WEBHOOK_URL_FILE: u64 = 8 * 1024;

/// What the `webhook_url` file offers as the default webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookUrlFile {
    /// No file, or one holding only whitespace (the Go daemon's "no webhook").
    Absent,
    /// A URL the policy accepts.
    Accepted { path: PathBuf, url: Url },
    /// A file that cannot be used: a URL the policy refuses, or a file that cannot be read.
    /// `reason` says why (the URL in it is masked).
    Refused { path: PathBuf, reason: String },
}

impl WebhookUrlFile {
    /// Reads `home`'s `webhook_url` and judges its URL with `policy`. Never fails: what
    /// cannot be used is [`WebhookUrlFile::Refused`] with the reason.
    pub fn read(home: &PilotHome, policy: &UrlPolicy) -> WebhookUrlFile {
        let path = home.webhook_url_file();
        match read_text(&path) {
            Ok(None) => WebhookUrlFile::Absent,
            Ok(Some(text)) => match policy.validate(&text) {
                Ok(url) => WebhookUrlFile::Accepted { path, url },
                Err(e) => WebhookUrlFile::Refused {
                    path,
                    reason: e.to_string(),
                },
            },
            Err(reason) => WebhookUrlFile::Refused { path, reason },
        }
    }

    /// The URL, when the file holds one the policy accepts.
    pub fn url(&self) -> Option<&Url> {
        match self {
            WebhookUrlFile::Accepted { url, .. } => Some(url),
            _ => None,
        }
    }
}

/// The file's text, trimmed; `None` when there is no file or only whitespace in it.
fn read_text(path: &Path) -> Result<Option<String>, String> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_WEBHOOK_URL_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_WEBHOOK_URL_FILE {
        return Err(format!(
            "larger than {MAX_WEBHOOK_URL_FILE} bytes: not a webhook URL"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.contains(['\n', '\r']) {
        return Err(format!(
            "more than one line (expected one URL): {:?}...",
            redact_str(text.lines().next().unwrap_or_default())
        ));
    }
    Ok(Some(text.to_string()))
}

/// Removes `home`'s `webhook_url` file; `Ok(true)` when there was one.
pub fn remove_webhook_url_file(home: &PilotHome) -> io::Result<bool> {
    match fs::remove_file(home.webhook_url_file()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_with(text: Option<&[u8]>) -> (tempfile::TempDir, PilotHome) {
        let tmp = tempfile::tempdir().unwrap();
        let home = PilotHome::at(tmp.path());
        if let Some(t) = text {
            fs::write(home.webhook_url_file(), t).unwrap();
        }
        (tmp, home)
    }

    #[test]
    fn a_missing_or_empty_file_offers_nothing() {
        for text in [None, Some(&b""[..]), Some(b"  \n")] {
            let (_t, home) = home_with(text);
            let got = WebhookUrlFile::read(&home, &UrlPolicy::DEFAULT);
            assert_eq!(got, WebhookUrlFile::Absent, "{text:?}");
            assert_eq!(got.url(), None);
        }
    }

    #[test]
    fn a_url_the_policy_accepts_is_offered_trimmed() {
        let (_t, home) = home_with(Some(b"http://127.0.0.1:8080/events\n"));
        let got = WebhookUrlFile::read(&home, &UrlPolicy::DEFAULT);
        assert_eq!(
            got.url().map(Url::as_str),
            Some("http://127.0.0.1:8080/events")
        );
        assert!(
            matches!(&got, WebhookUrlFile::Accepted { path, .. } if path == &home.webhook_url_file())
        );
    }

    #[test]
    fn a_refused_or_unreadable_file_says_why() {
        let refused = |text: &[u8], policy: UrlPolicy| {
            let (_t, home) = home_with(Some(text));
            match WebhookUrlFile::read(&home, &policy) {
                WebhookUrlFile::Refused { path, reason } => {
                    assert_eq!(path, home.webhook_url_file());
                    reason
                }
                other => panic!("{text:?}: {other:?}"),
            }
        };
        let r = refused(b"http://169.254.169.254/latest", UrlPolicy::DEFAULT);
        assert!(r.contains("169.254.169.254"), "{r}");
        let r = refused(b"ftp://example.com/x", UrlPolicy::DEFAULT);
        assert!(r.contains("invalid webhook URL"), "{r}");
        let strict = UrlPolicy { deny_private: true };
        let r = refused(b"http://127.0.0.1:9/e", strict);
        assert!(r.contains("127.0.0.1"), "{r}");
        let r = refused(b"\xff\xfe", UrlPolicy::DEFAULT);
        assert_eq!(r, "not UTF-8 text");
        let r = refused(
            b"http://a.example/x?token=hunter2\nhttp://b.example/",
            UrlPolicy::DEFAULT,
        );
        assert!(r.starts_with("more than one line"), "{r}");
        assert!(!r.contains("hunter2"), "the query value is masked: {r}");
        let big = vec![b'a'; MAX_WEBHOOK_URL_FILE as usize + 1];
        assert!(refused(&big, UrlPolicy::DEFAULT).starts_with("larger than"));
        // A directory where the file should be.
        let tmp = tempfile::tempdir().unwrap();
        let home = PilotHome::at(tmp.path());
        fs::create_dir(home.webhook_url_file()).unwrap();
        assert!(matches!(
            WebhookUrlFile::read(&home, &UrlPolicy::DEFAULT),
            WebhookUrlFile::Refused { reason, .. } if reason == "not a regular file"
        ));
    }

    #[test]
    fn removing_says_whether_there_was_a_file() {
        let (_t, home) = home_with(Some(b"http://127.0.0.1:1/e"));
        assert!(remove_webhook_url_file(&home).unwrap());
        assert!(!home.webhook_url_file().exists());
        assert!(!remove_webhook_url_file(&home).unwrap());
    }
}
