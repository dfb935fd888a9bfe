//! The files of a webhook's client identity (mutual TLS): a PEM certificate chain and its PEM
//! private key. Checked the same way by pilotctl before anything is saved and by the daemon
//! when it configures the webhook: both regular files (read without blocking, with a size cap),
//! both PEM, and the key owner-only (0600), as ssh insists for its keys. The PEM is parsed
//! into certificates and a key by the webhook plugin, which owns TLS.

use std::path::{Path, PathBuf};

use crate::small_file::{self, SmallFileError, MAX_SMALL_FILE};

/// Why a client certificate or key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("--client-cert {0}")]
    Cert(SmallFileError),
    #[error("--client-key {0}")]
    Key(SmallFileError),
    #[error("--client-cert {path}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCert { path: PathBuf },
    #[error("--client-key {path}: holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)")]
    NoKey { path: PathBuf },
    #[error(
        "--client-key {path}: readable by others (mode {mode:o}); make it owner-only with \
         chmod 600 {path}"
    )]
    KeyShared { path: PathBuf, mode: u32 },
}

/// The certificate and key files' contents (PEM), checked.
#[derive(Debug)]
pub struct IdentityFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Reads and checks `cert` and `key`.
pub fn read(cert: &Path, key: &Path) -> Result<IdentityFiles, IdentityError> {
    let cert_file = small_file::read(cert, MAX_SMALL_FILE).map_err(IdentityError::Cert)?;
    let key_file = small_file::read(key, MAX_SMALL_FILE).map_err(IdentityError::Key)?;
    if key_file.is_shared() {
        return Err(IdentityError::KeyShared {
            path: key.into(),
            mode: key_file.mode,
        });
    }
    let has = |bytes: &[u8], what: &str| {
        String::from_utf8_lossy(bytes)
            .lines()
            .any(|l| l.starts_with("-----BEGIN ") && l.contains(what))
    };
    if !has(&cert_file.bytes, "CERTIFICATE") {
        return Err(IdentityError::NoCert { path: cert.into() });
    }
    if !has(&key_file.bytes, "PRIVATE KEY") {
        return Err(IdentityError::NoKey { path: key.into() });
    }
    Ok(IdentityFiles {
        cert_pem: cert_file.bytes,
        key_pem: key_file.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_shared_key_or_a_file_without_pem_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cert = tmp.path().join("c.pem");
        let key = tmp.path().join("k.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        read(&cert, &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read(&cert, &key).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read(&key, &key).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = read(&cert, &cert).unwrap_err().to_string();
        assert!(
            e.contains("readable by others") || e.contains("no PEM private key"),
            "{e}"
        );
        let e = read(&cert, &tmp.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--client-key"), "{e}");
    }
}
