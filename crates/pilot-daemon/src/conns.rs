//! The control connections alive now, so the daemon keeps a reserve of file descriptors: when
//! clients hold so many connections that the process nears its descriptor limit, the
//! connection idle the longest is closed to make room, so `info` and `daemon stop` always get
//! in. Also raises the soft descriptor limit to the hard one at start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Descriptors kept free for the daemon's own use (a new control connection, webhook
/// connections, the spool, the log) when clients crowd the limit.
pub const RESERVE: u64 = 32;

/// When the connections alone are this far below the soft limit, the process is taken to be
/// far from it (its other descriptors, webhook connections and files, are fewer than this).
const FAR_FROM_LIMIT: u64 = 4096;

/// One connection's entry.
#[derive(Debug)]
struct Entry {
    /// When it last finished a request (or connected).
    idle_since: Instant,
    /// Handling a request now: not closed to make room.
    busy: bool,
    close: CancellationToken,
}

/// Every live control connection.
#[derive(Debug, Default)]
pub struct Conns {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Entry>>,
}

/// A registered connection; unregisters itself when dropped.
#[derive(Debug)]
pub struct ConnGuard {
    conns: Arc<Conns>,
    id: u64,
    /// Cancelled when the daemon closes this connection to make room.
    pub close: CancellationToken,
}

impl Conns {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // Entries are inserted, updated and removed whole: a poisoned lock holds a valid map.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection.
    pub fn register(self: &Arc<Self>) -> ConnGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = CancellationToken::new();
        self.lock().insert(
            id,
            Entry {
                idle_since: Instant::now(),
                busy: false,
                close: close.clone(),
            },
        );
        ConnGuard {
            conns: self.clone(),
            id,
            close,
        }
    }

    /// How many connections are alive.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Closes the connection (other than `except`) idle the longest; whether there was one.
    pub fn close_oldest_idle(&self, except: u64) -> bool {
        let live = self.lock();
        let oldest = live
            .iter()
            .filter(|(id, e)| **id != except && !e.busy && !e.close.is_cancelled())
            .min_by_key(|(_, e)| e.idle_since);
        match oldest {
            Some((_, e)) => {
                e.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Makes room when the process is within [`RESERVE`] descriptors of its soft limit:
    /// closes the connection idle the longest (never `except`, the one just accepted).
    pub fn make_room(&self, except: u64) {
        let Some(limit) = soft_limit() else {
            return;
        };
        // Far from the limit (the usual case, once it is raised to the hard one): no need to
        // count the open descriptors on every accept.
        if (self.len() as u64).saturating_add(FAR_FROM_LIMIT) < limit {
            return;
        }
        let Some(open) = open_fds() else {
            return;
        };
        if open.saturating_add(RESERVE) >= limit && self.close_oldest_idle(except) {
            tracing::warn!(
                open_fds = open,
                limit,
                connections = self.len(),
                "near the file descriptor limit: closed the control connection idle the longest"
            );
        }
    }
}

impl ConnGuard {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Marks the connection busy (handling a request) or idle (waiting for the next one).
    pub fn set_busy(&self, busy: bool) {
        if let Some(e) = self.conns.lock().get_mut(&self.id) {
            e.busy = busy;
            if !busy {
                e.idle_since = Instant::now();
            }
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
    }
}

/// How many descriptors this process has open.
fn open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

/// The soft descriptor limit now (it can be lowered from outside with prlimit).
fn soft_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the soft descriptor limit to the hard one, so clients have to try hard to exhaust
/// it; returns the limit in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the file descriptor limit");
            return limit.current;
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_connection_idle_the_longest_is_closed_never_a_busy_one() {
        let conns = Arc::new(Conns::default());
        let a = conns.register();
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let b = conns.register();
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        let c = conns.register();
        a.set_busy(true);
        assert!(conns.close_oldest_idle(c.id()));
        assert!(!a.close.is_cancelled(), "busy: kept");
        assert!(b.close.is_cancelled(), "idle the longest: closed");
        assert!(!c.close.is_cancelled(), "the new one: kept");
        drop(b);
        assert_eq!(conns.len(), 2);
        assert!(
            !conns.close_oldest_idle(c.id()),
            "only a busy one and the new one left"
        );
    }
}
