//! The pid file: an exclusive lock that makes this daemon the only one for its pilot home.
//!
//! The lock is an OS file lock on `pilot.pid`, so it dies with the process (no stale lock after
//! `kill -9`); the file holds the pid for `pilotctl`. The file is removed on a clean exit.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the pid file could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidError {
    #[error("another pilot-daemon{} is already running for this pilot home (it holds the lock on {path})",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error("cannot use pid file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The held pid file; dropping it releases the lock (call [`PidFile::remove`] on clean exit).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    /// Takes the lock on `path` and writes our pid into it.
    pub fn acquire(path: &Path) -> Result<PidFile, PidError> {
        let io_err = |source| PidError::Io {
            path: path.into(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(PidError::Locked {
                    path: path.into(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        Ok(PidFile {
            path: path.into(),
            file,
        })
    }

    /// Removes the file, then releases the lock.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquire_fails_and_names_the_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pilot.pid");
        let held = PidFile::acquire(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        match PidFile::acquire(&path) {
            Err(PidError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        held.remove();
        assert!(!path.exists());
        PidFile::acquire(&path).unwrap();
    }

    #[test]
    fn a_stale_pid_file_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pilot.pid");
        fs::write(&path, "999999999\n").unwrap();
        let _held = PidFile::acquire(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
    }
}
