//! The control socket's file: claim the path safely, never taking a live daemon's socket.
//!
//! The claim starts with an exclusive lock on `<socket>.lock`, held for the daemon's life (the
//! OS drops it when the process dies), so two daemons racing for one path cannot both pass the
//! stale check and unlink each other's fresh socket. Under the lock, an existing file at the
//! path is removed only when connecting to it is refused (a socket left by a daemon that died).
//! If a daemon holds the lock or answers there, or the path is something else, start-up fails
//! with an error that says so.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use pilot_ipc::transport::{self, Listener};

/// Why the socket path could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("a pilot daemon is already listening on {path}")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; remove it or choose another --socket")]
    NotASocket { path: PathBuf },
    #[error("{path} is a symbolic link; refusing to follow it (remove it)")]
    Symlink { path: PathBuf },
    #[error("cannot listen on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The lock on `<socket>.lock`; the path is ours while it is held.
#[derive(Debug)]
pub struct SocketLock {
    _file: File,
}

/// Takes the lock on `<path>.lock` without waiting: held elsewhere means another daemon owns
/// (or is claiming) the path.
fn lock(path: &Path) -> Result<SocketLock, SocketError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    // Never through a symbolic link: one planted there would make us create or lock a file
    // wherever it points.
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&lock_path)
        .map_err(|source| {
            let is_link =
                std::fs::symlink_metadata(&lock_path).is_ok_and(|m| m.file_type().is_symlink());
            if is_link {
                SocketError::Symlink {
                    path: lock_path.clone(),
                }
            } else {
                SocketError::Io {
                    path: lock_path.clone(),
                    source,
                }
            }
        })?;
    match file.try_lock() {
        Ok(()) => Ok(SocketLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(SocketError::InUse { path: path.into() }),
        Err(TryLockError::Error(source)) => Err(SocketError::Io {
            path: lock_path,
            source,
        }),
    }
}

/// Locks the path, removes a stale socket there (only if connecting is refused), then listens
/// there (0600). Keep the lock until the socket file is removed at exit.
pub async fn claim(path: &Path) -> Result<(Listener, SocketLock), SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.into(),
        source,
    };
    let held = lock(path)?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(SocketError::NotASocket { path: path.into() })
        }
        Ok(_) => match transport::connect(path).await {
            Ok(_) => return Err(SocketError::InUse { path: path.into() }),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %path.display(), "removing stale socket left by a daemon that is gone");
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        },
    }
    match transport::listen(path) {
        Ok(l) => Ok((l, held)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            Err(SocketError::InUse { path: path.into() })
        }
        Err(e) => Err(io_err(e)),
    }
}
