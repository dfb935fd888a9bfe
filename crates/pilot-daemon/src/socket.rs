//! The control socket's file: claim the path safely, never taking a live daemon's socket.
//!
//! An existing file at the path is removed only when connecting to it is refused (a socket left
//! by a daemon that died). If a daemon answers there, or the path is something else, start-up
//! fails with an error that says so.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use pilot_ipc::transport::{self, Listener};

/// Why the socket path could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("a pilot daemon is already listening on {path}")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; remove it or choose another --socket")]
    NotASocket { path: PathBuf },
    #[error("cannot listen on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Removes a stale socket at `path` (only if connecting is refused), then listens there (0600).
pub async fn claim(path: &Path) -> Result<Listener, SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.into(),
        source,
    };
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
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            Err(SocketError::InUse { path: path.into() })
        }
        Err(e) => Err(io_err(e)),
    }
}
