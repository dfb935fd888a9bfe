//! From flags to [`WebhookSettings`]: the settings flags of `set-webhook` and `daemon start`
//! become one settings object, checked before anything is written or started.
//!
//! Checks: patterns, headers and numbers ([`WebhookSettings::validate`]), and that the auth
//! files exist, are readable and hold something usable (their content is never shown). Paths
//! are made absolute, because the daemon does not share pilotctl's working directory.

use std::path::{Path, PathBuf};

use pilot_core::WebhookSettings;

use crate::cli::SettingsArgs;
use crate::output::CliError;

/// The settings the flags ask for (fields not given stay at their defaults).
pub fn from_flags(args: &SettingsArgs) -> Result<WebhookSettings, CliError> {
    let settings = WebhookSettings {
        events: trimmed(&args.events),
        exclude: trimmed(&args.exclude),
        durable: args.durable,
        headers: args.headers.clone(),
        bearer_token_file: args.bearer_token_file.as_deref().map(absolute),
        basic_auth_file: args.basic_auth_file.as_deref().map(absolute),
        insecure_tls: args.insecure_tls,
        deny_private: args.deny_private,
        batch_max: args.batch_max,
        batch_wait: args.batch_wait,
        concurrency: args.concurrency,
        max_spool_bytes: args.max_spool_bytes,
        discard_after: args.discard_after,
        max_backoff: args.max_backoff,
    };
    check(&settings)?;
    Ok(settings)
}

/// Checks settings and their files (`invalid_argument`, naming the problem).
pub fn check(settings: &WebhookSettings) -> Result<(), CliError> {
    settings
        .validate()
        .map_err(|e| CliError::invalid_argument(e.to_string()))?;
    if let Some(path) = &settings.bearer_token_file {
        let token = read_small(path, "--bearer-token-file")?;
        if token.trim().is_empty() {
            return Err(CliError::invalid_argument(format!(
                "--bearer-token-file {}: the file is empty",
                path.display()
            )));
        }
    }
    if let Some(path) = &settings.basic_auth_file {
        let text = read_small(path, "--basic-auth-file")?;
        let line = text.lines().next().unwrap_or_default();
        if !line.contains(':') {
            return Err(CliError::invalid_argument(format!(
                "--basic-auth-file {}: the file must hold user:password on its first line",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Whether the settings skip certificate checks (pilotctl then warns on stderr).
pub fn warn_insecure(settings: &WebhookSettings) {
    if settings.insecure_tls {
        eprintln!(
            "warning: --insecure-tls: TLS certificates of the webhook are not checked; anyone \
             on the network path can read and forge deliveries. Use it for testing only."
        );
    }
}

/// Reads a small text file the user named with `flag` (at most 64 KiB).
pub fn read_small(path: &Path, flag: &str) -> Result<String, CliError> {
    const MAX: u64 = 64 * 1024;
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::invalid_argument(format!("{flag} {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(CliError::invalid_argument(format!(
            "{flag} {}: not a regular file",
            path.display()
        )));
    }
    if meta.len() > MAX {
        return Err(CliError::invalid_argument(format!(
            "{flag} {}: larger than {MAX} bytes",
            path.display()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::invalid_argument(format!("{flag} {}: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|_| {
        CliError::invalid_argument(format!("{flag} {}: not UTF-8 text", path.display()))
    })
}

/// The path made absolute against the current directory (kept as is if that fails).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn trimmed(patterns: &[String]) -> Vec<String> {
    patterns.iter().map(|p| p.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flags_become_settings_with_absolute_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let token = tmp.path().join("token");
        std::fs::write(&token, "abc\n").unwrap();
        let args = SettingsArgs {
            events: vec!["handshake.*".into(), " trust.* ".into()],
            exclude: vec!["data.datagram".into()],
            durable: true,
            headers: vec!["X-Team: blue".into()],
            bearer_token_file: Some(token.clone()),
            batch_max: Some(10),
            batch_wait: Some(Duration::from_millis(50)),
            ..Default::default()
        };
        let s = from_flags(&args).unwrap();
        assert_eq!(s.events, ["handshake.*", "trust.*"]);
        assert_eq!(s.bearer_token_file.as_deref(), Some(token.as_path()));
        assert!(s.durable);
        assert!(from_flags(&SettingsArgs::default()).unwrap().is_default());
    }

    #[test]
    fn bad_settings_and_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = |args: SettingsArgs| from_flags(&args).unwrap_err();
        let e = bad(SettingsArgs {
            events: vec!["a*".into()],
            ..Default::default()
        });
        assert_eq!(e.code, "invalid_argument");
        bad(SettingsArgs {
            headers: vec!["no colon".into()],
            ..Default::default()
        });
        let e = bad(SettingsArgs {
            bearer_token_file: Some(tmp.path().join("missing")),
            ..Default::default()
        });
        assert!(e.message.contains("missing"), "{e}");
        let empty = tmp.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        bad(SettingsArgs {
            bearer_token_file: Some(empty),
            ..Default::default()
        });
        let nocolon = tmp.path().join("basic");
        std::fs::write(&nocolon, "user-only\n").unwrap();
        let e = bad(SettingsArgs {
            basic_auth_file: Some(nocolon),
            ..Default::default()
        });
        assert!(!e.message.contains("user-only"), "content never shown: {e}");
        bad(SettingsArgs {
            bearer_token_file: Some(tmp.path().to_path_buf()),
            ..Default::default()
        });
    }
}
