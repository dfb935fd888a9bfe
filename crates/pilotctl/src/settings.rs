//! From flags to [`WebhookSettings`]: the settings flags of `set-webhook` and `daemon start`
//! become one settings object, checked before anything is written or started.
//!
//! Checks: patterns, headers and numbers ([`WebhookSettings::validate`]: a pattern that can
//! never match an event name is refused), and that the auth files exist, are readable and hold
//! something usable (their content is never shown). A pattern one edit away from a catalog name
//! gets a warning on stderr. Paths are made absolute, because the daemon does not share
//! pilotctl's working directory.

use std::path::Path;

use pilot_core::WebhookSettings;

use crate::cli::SettingsArgs;
use crate::output::CliError;

/// The settings the flags ask for (fields not given stay at their defaults).
pub fn from_flags(args: &SettingsArgs) -> Result<WebhookSettings, CliError> {
    let settings = args.apply(WebhookSettings::default());
    check(&settings)?;
    Ok(settings)
}

/// Checks settings and their files (`invalid_argument`, naming the problem); once they pass,
/// warns on stderr of each pattern that looks like a typo of a catalog name.
pub fn check(settings: &WebhookSettings) -> Result<(), CliError> {
    check_quietly(settings)?;
    for s in settings.pattern_warnings() {
        crate::output::warn(&s);
    }
    Ok(())
}

fn check_quietly(settings: &WebhookSettings) -> Result<(), CliError> {
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
    if let (Some(cert), Some(key)) = (&settings.client_cert, &settings.client_key) {
        pilot_core::client_identity::read(cert, key)
            .map_err(|e| CliError::invalid_argument(e.to_string()))?;
    }
    check_template(settings)?;
    if let Some(path) = &settings.proxy_auth_file {
        let text = read_small(path, "--proxy-auth-file")?;
        if !text.lines().next().unwrap_or_default().contains(':') {
            return Err(CliError::invalid_argument(format!(
                "--proxy-auth-file {}: the file must hold user:password on its first line",
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

/// Loads the settings' template (a file is read) and renders it against a sample of every
/// catalog event with the settings' variables: one that fails, or that makes invalid JSON for
/// a JSON Content-Type, is refused with the sample event it failed for.
fn check_template(settings: &WebhookSettings) -> Result<(), CliError> {
    let Some(spec) = &settings.template else {
        return Ok(());
    };
    let refused = |e: pilot_template::TemplateError| {
        CliError::invalid_argument(format!("--template {spec}: {e}"))
    };
    pilot_template::Template::load(spec)
        .map_err(refused)?
        .check(&settings.template_vars)
        .map_err(refused)
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

/// Reads a small text file the user named with `flag` (at most 64 KiB; a FIFO, a directory
/// or a device is refused without blocking). A file others may read gets a warning.
pub fn read_small(path: &Path, flag: &str) -> Result<String, CliError> {
    use pilot_core::small_file::{self, MAX_SMALL_FILE};
    let invalid = |e: &dyn std::fmt::Display| CliError::invalid_argument(format!("{flag} {e}"));
    let file = small_file::read(path, MAX_SMALL_FILE).map_err(|e| invalid(&e))?;
    if file.is_shared() {
        crate::output::warn(&format!(
            "{flag} {}: readable by others (mode {:o}); make it owner-only with chmod 600",
            path.display(),
            file.mode
        ));
    }
    file.text(path).map_err(|e| invalid(&e))
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
