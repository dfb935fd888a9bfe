//! The webhook signing secrets, in `<home>/webhook_secret.json` (mode 0600).
//!
//! One current secret, plus the previous ones during a rotation's grace period: requests carry
//! one signature per secret that is still valid, so receivers can switch without losing events.
//! A secret's text never appears in `Debug` output, logs or `info`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

/// The prefix of generated secrets (Standard Webhooks).
pub const PREFIX: &str = "whsec_";

/// What went wrong with the secret file.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "secret file {path} is not valid: {reason} (fix or remove it; pilot will not overwrite it)"
    )]
    Invalid { path: PathBuf, reason: String },
    #[error("a webhook secret must not be empty")]
    Empty,
    #[error("a webhook secret starting with whsec_ must be base64 after the prefix")]
    BadBase64,
}

/// One secret, with when it stops being used (None: it is the current one).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub secret: String,
    pub created_at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<jiff::Timestamp>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("secret", &"***")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    secrets: Vec<Secret>,
}

/// The secret file's contents, with its path.
#[derive(Debug)]
pub struct SecretStore {
    path: PathBuf,
    secrets: Vec<Secret>,
    /// The mode the file had when `load` found it readable by others and made it owner-only.
    tightened_from: Option<u32>,
}

/// A new random secret: `whsec_` + base64 of 32 random bytes.
pub fn generate() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Checks a secret given by the user.
pub fn check(secret: &str) -> Result<(), SecretError> {
    if secret.is_empty() {
        return Err(SecretError::Empty);
    }
    if let Some(b64) = secret.strip_prefix(PREFIX) {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| SecretError::BadBase64)?;
    }
    Ok(())
}

/// The HMAC key of a secret: the base64-decoded part after `whsec_`, else the raw bytes.
pub fn signing_key(secret: &str) -> Vec<u8> {
    match secret.strip_prefix(PREFIX) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// The most the secret store file may hold.
const MAX_STORE_BYTES: u64 = 1024 * 1024;

impl SecretStore {
    /// Reads the file; a missing file is an empty store. A file that is not a regular file, or
    /// larger than 1 MiB, is refused; one readable by others is made owner-only (0600) first
    /// ([`SecretStore::tightened_from`] tells).
    pub fn load(path: impl Into<PathBuf>) -> Result<SecretStore, SecretError> {
        let path = path.into();
        let mut tightened_from = None;
        let text = match crate::small_file::read(&path, MAX_STORE_BYTES) {
            Ok(file) => {
                if file.is_shared() {
                    // Ours, and meant to be owner-only: tightened, and the caller is told.
                    file.make_private().map_err(|source| SecretError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    tightened_from = Some(file.mode);
                }
                file.bytes
            }
            Err(e) if e.is_not_found() => {
                return Ok(SecretStore {
                    path,
                    secrets: Vec::new(),
                    tightened_from: None,
                })
            }
            Err(crate::small_file::SmallFileError::Io { source, .. }) => {
                return Err(SecretError::Io { path, source })
            }
            Err(e) => {
                return Err(SecretError::Invalid {
                    reason: e.to_string(),
                    path,
                })
            }
        };
        let file: File = serde_json::from_slice(&text).map_err(|e| SecretError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(SecretStore {
            path,
            secrets: file.secrets,
            tightened_from,
        })
    }

    /// The mode the file had when `load` found it readable by others and made it owner-only
    /// (for a warning); `None` when it was owner-only already.
    pub fn tightened_from(&self) -> Option<u32> {
        self.tightened_from
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current secret.
    pub fn current(&self) -> Option<&Secret> {
        self.secrets.iter().find(|s| s.expires_at.is_none())
    }

    /// Every secret still valid at `now`: the current one first, then those in their grace period.
    pub fn active(&self, now: jiff::Timestamp) -> Vec<&Secret> {
        let mut v: Vec<&Secret> = self.current().into_iter().collect();
        v.extend(
            self.secrets
                .iter()
                .filter(|s| s.expires_at.is_some_and(|t| t > now)),
        );
        v
    }

    /// Makes `secret` the only secret (no grace for the old ones).
    pub fn set(&mut self, secret: String, now: jiff::Timestamp) {
        self.secrets = vec![Secret {
            secret,
            created_at: now,
            expires_at: None,
        }];
    }

    /// Makes `secret` current; the old current one stays valid until `now + grace`.
    pub fn rotate(&mut self, secret: String, now: jiff::Timestamp, grace: std::time::Duration) {
        let until = now
            .checked_add(jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(jiff::Timestamp::MAX);
        self.secrets
            .retain(|s| s.expires_at.is_none_or(|t| t > now));
        for s in &mut self.secrets {
            if s.expires_at.is_none() {
                s.expires_at = Some(until);
            }
        }
        self.secrets.insert(
            0,
            Secret {
                secret,
                created_at: now,
                expires_at: None,
            },
        );
    }

    /// Removes every secret (requests are then unsigned).
    pub fn clear(&mut self) {
        self.secrets.clear();
    }

    /// Writes the file atomically, mode 0600 (removes it when there is no secret).
    pub fn save(&self) -> Result<(), SecretError> {
        let io_err = |source| SecretError::Io {
            path: self.path.clone(),
            source,
        };
        if self.secrets.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(e)),
                _ => Ok(()),
            };
        }
        let mut text = serde_json::to_vec_pretty(&File {
            secrets: self.secrets.clone(),
        })
        .map_err(|e| io_err(e.into()))?;
        text.push(b'\n');
        crate::fsutil::write_atomic(&self.path, &text).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn generated_secrets_are_whsec_32_bytes() {
        let s = generate();
        assert!(s.starts_with("whsec_"));
        assert_eq!(signing_key(&s).len(), 32);
        assert_ne!(generate(), s);
        check(&s).unwrap();
    }

    #[test]
    fn keys_decode_whsec_and_take_raw_bytes_otherwise() {
        assert_eq!(signing_key("whsec_aGVsbG8="), b"hello");
        assert_eq!(signing_key("plain-secret"), b"plain-secret");
        assert!(check("whsec_!!!").is_err());
        assert!(check("").is_err());
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_grace_period() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = SecretStore::load(tmp.path().join("webhook_secret.json")).unwrap();
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        store.set("old".into(), t0);
        store.rotate("new".into(), t0, Duration::from_secs(3600));
        let names = |now| {
            store
                .active(now)
                .iter()
                .map(|s| s.secret.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(t0), ["new", "old"]);
        let later: jiff::Timestamp = "2026-01-01T01:00:01Z".parse().unwrap();
        assert_eq!(names(later), ["new"]);
        store.save().unwrap();
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let back = SecretStore::load(store.path()).unwrap();
        assert_eq!(back.current().unwrap().secret, "new");
        assert!(
            !format!("{back:?}").contains("new\""),
            "Debug hides secrets"
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("webhook_secret.json");
        std::fs::write(&p, "{nope").unwrap();
        assert!(SecretStore::load(&p)
            .unwrap_err()
            .to_string()
            .contains("webhook_secret.json"));
    }
}
