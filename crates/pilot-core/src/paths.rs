//! Where pilot keeps its files: the pilot home and the control socket's path.
//!
//! The home is `$PILOT_HOME`, else `~/.pilot`. It holds `config.json`, `pilot.pid`, `pilot.log`
//! and, by default, the control socket `pilot.sock` (and, left by the Go daemon, maybe
//! `webhook_url`). The home is kept at mode 0700.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::ConfigFile;

/// The environment variable that overrides the pilot home.
pub const HOME_ENV: &str = "PILOT_HOME";
/// The environment variable that overrides the control socket path.
pub const SOCKET_ENV: &str = "PILOT_SOCKET";

/// The pilot home could not be found or prepared.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot find a home directory: set {HOME_ENV} or HOME")]
    NoHome,
    #[error("cannot prepare pilot home {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The pilot home directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PilotHome {
    dir: PathBuf,
}

impl PilotHome {
    /// `$PILOT_HOME` if set and not empty, else `~/.pilot`.
    pub fn resolve() -> Result<Self, HomeError> {
        if let Some(dir) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::at(dir));
        }
        let base = directories::BaseDirs::new().ok_or(HomeError::NoHome)?;
        Ok(Self::at(base.home_dir().join(".pilot")))
    }

    /// A home at an explicit directory.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("pilot.pid")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("pilot.log")
    }
    pub fn default_socket(&self) -> PathBuf {
        self.dir.join("pilot.sock")
    }
    /// The webhook signing secrets (mode 0600).
    pub fn secret_file(&self) -> PathBuf {
        self.dir.join("webhook_secret.json")
    }
    /// The Go daemon's persisted webhook URL (read as a fallback, see [`crate::go_files`]).
    pub fn webhook_url_file(&self) -> PathBuf {
        self.dir.join("webhook_url")
    }
    /// The durable webhook spool.
    pub fn spool_file(&self) -> PathBuf {
        self.dir.join("webhook-spool.redb")
    }
    /// The archive of every endpoint's dead letters, retained deliveries and queued replays.
    pub fn archive_file(&self) -> PathBuf {
        self.dir.join("archive.redb")
    }
    /// The directory of the named endpoint `name` (not `default`): its secrets and spool.
    pub fn endpoint_dir(&self, name: &str) -> PathBuf {
        self.dir.join("webhooks").join(name)
    }
    /// The signing secrets of endpoint `name` (the `default` endpoint's: [`Self::secret_file`]).
    pub fn endpoint_secret_file(&self, name: &str) -> PathBuf {
        if name == crate::endpoint::DEFAULT {
            return self.secret_file();
        }
        self.endpoint_dir(name).join("secret.json")
    }
    /// The durable spool of endpoint `name` (the `default` endpoint's: [`Self::spool_file`]).
    pub fn endpoint_spool_file(&self, name: &str) -> PathBuf {
        if name == crate::endpoint::DEFAULT {
            return self.spool_file();
        }
        self.endpoint_dir(name).join("spool.redb")
    }

    /// Creates the home if needed and makes it owner-only (0700).
    pub fn ensure(&self) -> Result<(), HomeError> {
        let err = |source| HomeError::Io {
            path: self.dir.clone(),
            source,
        };
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        let meta = fs::metadata(&self.dir).map_err(err)?;
        if meta.permissions().mode() & 0o777 != 0o700 {
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
        Ok(())
    }

    /// The control socket: `flag`, else `$PILOT_SOCKET`, else config `socket`, else the default.
    pub fn socket_path(&self, flag: Option<&Path>, config: &ConfigFile) -> PathBuf {
        if let Some(p) = flag {
            return p.to_path_buf();
        }
        if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()) {
            return PathBuf::from(p);
        }
        if let Some(p) = config.get_str("socket").filter(|s| !s.is_empty()) {
            return PathBuf::from(p);
        }
        self.default_socket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_live_in_the_home() {
        let home = PilotHome::at("/x/.pilot");
        assert_eq!(home.config_file(), Path::new("/x/.pilot/config.json"));
        assert_eq!(home.pid_file(), Path::new("/x/.pilot/pilot.pid"));
        assert_eq!(home.log_file(), Path::new("/x/.pilot/pilot.log"));
        assert_eq!(home.default_socket(), Path::new("/x/.pilot/pilot.sock"));
        assert_eq!(home.webhook_url_file(), Path::new("/x/.pilot/webhook_url"));
    }

    #[test]
    fn ensure_creates_an_owner_only_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let home = PilotHome::at(tmp.path().join("a/b"));
        home.ensure().unwrap();
        let mode = fs::metadata(home.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(home.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        home.ensure().unwrap();
        let mode = fs::metadata(home.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn socket_flag_beats_config_beats_default() {
        let tmp = tempfile::tempdir().unwrap();
        let home = PilotHome::at(tmp.path());
        let mut config = ConfigFile::empty(home.config_file());
        if std::env::var_os(SOCKET_ENV).is_none() {
            assert_eq!(home.socket_path(None, &config), home.default_socket());
            config.set("socket", "/run/p.sock".into());
            assert_eq!(home.socket_path(None, &config), Path::new("/run/p.sock"));
        }
        assert_eq!(
            home.socket_path(Some(Path::new("/f.sock")), &config),
            Path::new("/f.sock")
        );
    }
}
