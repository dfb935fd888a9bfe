//! Reading the files a webhook's credentials live in (bearer and basic auth files, NATS
//! credential files): through `pilot_core::small_file` (non-blocking open, regular files only,
//! a size cap), trimmed, never empty; errors name the file, never its content, and a file
//! others may read is used with a warning.

use std::path::Path;

use pilot_core::small_file::{self, SmallFileError};

use crate::error::WebhookError;

/// The most a credential file may hold.
pub(crate) const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;

/// The error for a credential file whose content cannot be used.
pub(crate) fn content_error(path: &Path, reason: &str) -> WebhookError {
    WebhookError::AuthFileContent {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The trimmed content of the credential file at `path`; `what` names it in the warning
/// (e.g. "a webhook auth file").
pub(crate) fn read_credential(path: &Path, what: &str) -> Result<String, WebhookError> {
    let file = small_file::read(path, MAX_CREDENTIAL_FILE).map_err(|e| match e {
        SmallFileError::Io { source, .. } => WebhookError::AuthFile {
            path: path.to_path_buf(),
            source,
        },
        SmallFileError::TooLarge { .. } => content_error(path, "is larger than 64 KiB"),
        SmallFileError::NotRegular { kind, .. } => {
            content_error(path, &format!("is {kind}, not a regular file"))
        }
        SmallFileError::NotUtf8 { .. } => content_error(path, "is not UTF-8 text"),
    })?;
    if file.is_shared() {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", file.mode),
            "{what} is readable by others; make it owner-only (chmod 600)"
        );
    }
    let text = file
        .text(path)
        .map_err(|_| content_error(path, "is not UTF-8 text"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(content_error(path, "is empty"));
    }
    Ok(text.to_string())
}
