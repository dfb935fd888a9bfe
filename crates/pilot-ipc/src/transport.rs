//! The local socket under a file path (never the abstract namespace), via `interprocess`.

use std::io;
use std::path::Path;

use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{ConnectOptions, GenericFilePath, ListenerOptions};
use interprocess::os::unix::local_socket::ListenerOptionsExt;

pub use interprocess::local_socket::tokio::{prelude, Listener, Stream};

/// Connects to the socket at `path`.
pub async fn connect(path: &Path) -> io::Result<Stream> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    ConnectOptions::new().name(name).connect_tokio().await
}

/// Listens at `path` with mode 0600. Fails if the path exists; the listener removes the socket
/// file when dropped.
pub fn listen(path: &Path) -> io::Result<Listener> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .reclaim_name(true)
        .try_overwrite(false)
        .create_tokio()
}

/// The effective uid of the process at the other end, where the platform tells it.
pub fn peer_uid(stream: &Stream) -> io::Result<Option<u32>> {
    Ok(stream.peer_creds()?.euid())
}
