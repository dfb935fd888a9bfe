//! The spool's reserve: a small file of zeros beside it (`<spool>.reserve`, 256 KiB), written
//! while there is room, and deleted when a removal cannot commit because the file system is
//! full. redb commits copy-on-write, so even deleting records needs free pages; without the
//! reserve a spool on a full disk could deliver its events but never remove them. Once freed,
//! the space lets the removals commit, and the pages they free inside the spool file take new
//! events again. The reserve is written again once the file system has room to spare.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{debug, warn};

/// The reserve's size.
pub const RESERVE_BYTES: u64 = 256 * 1024;

/// How often, at most, a missing reserve is written again (when there is room).
const RETRY_SECS: u64 = 30;

#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    /// Whether the reserve is known to be on disk (no look at the file system then).
    present: AtomicBool,
    /// When the reserve was last found missing and not written (seconds since the epoch).
    last_try: AtomicU64,
}

impl Reserve {
    pub(crate) fn beside(spool: &Path) -> Reserve {
        let mut name = spool.as_os_str().to_owned();
        name.push(".reserve");
        Reserve {
            path: PathBuf::from(name),
            present: AtomicBool::new(false),
            last_try: AtomicU64::new(0),
        }
    }

    /// Writes the reserve when it is missing and the file system has at least four times its
    /// size free (never eating the last of the space itself); at most every [`RETRY_SECS`].
    pub(crate) fn ensure(&self) {
        if self.present.load(Ordering::Relaxed) {
            return;
        }
        if self.path.exists() {
            self.present.store(true, Ordering::Relaxed);
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_try.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < RETRY_SECS {
            return;
        }
        self.last_try.store(now, Ordering::Relaxed);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let free = rustix::fs::statvfs(dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(0);
        if free < RESERVE_BYTES * 4 {
            debug!(path = %self.path.display(), free, "no room for the spool's reserve yet");
            return;
        }
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(&vec![0u8; RESERVE_BYTES as usize])?;
                f.sync_all()
            });
        match written {
            Ok(()) => {
                self.present.store(true, Ordering::Relaxed);
                self.last_try.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                debug!(path = %self.path.display(), error = %e, "the spool's reserve could not be written");
            }
        }
    }

    /// Deletes the reserve to make room; whether there was one.
    pub(crate) fn release(&self) -> bool {
        self.present.store(false, Ordering::Relaxed);
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                warn!(
                    path = %self.path.display(),
                    bytes = RESERVE_BYTES,
                    "the disk is full: released the spool's reserve so delivered events can be removed"
                );
                true
            }
            Err(_) => false,
        }
    }
}
