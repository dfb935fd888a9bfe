//! The archive: what each endpoint gave up on (dead letters), what it delivered (retained,
//! opt-in) and the replays queued for it, on disk in one redb file per daemon
//! ([`ARCHIVE_FILE`] in the pilot home), so they outlive the endpoint, a restart and `kill -9`.
//!
//! # Layout
//! Three tables, each keyed by `(endpoint name, event_id)` so an endpoint's entries are one
//! contiguous range in event-id order:
//! - `dead` ([`Shelf::Dead`]): events an endpoint gave up on, with the reason and last error.
//! - `retained` ([`Shelf::Retained`]): payloads of delivered events, kept for `--retain`.
//! - `replay`: replays queued for an endpoint, removed as each settles.
//!
//! Putting an entry whose key exists replaces it (an event dead-lettered again after a replay
//! keeps one entry). Every shelf of every endpoint is bounded by its [`ArchiveLimits`]: past
//! `max_bytes` the oldest entries (lowest event ids) are dropped at once by [`Archive::put`],
//! and [`Archive::expire`] drops those kept longer ago than `max_age`; both are counted per
//! endpoint and shelf ([`ShelfStats`]), in the same transaction as the removals, so the
//! counters survive restarts. The replay table has no bounds: what is queued is delivered.
//!
//! Every mutating call is one write transaction (one fsync): callers batch. The API is
//! synchronous (redb is): async callers use `spawn_blocking`. An [`Archive`] is `Send + Sync`;
//! share it in an `Arc`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use pilot_core::Pattern;

/// The archive's file name in the pilot home.
pub const ARCHIVE_FILE: &str = "archive.redb";

/// Which shelf of an endpoint's archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shelf {
    /// Events the endpoint gave up on.
    Dead,
    /// Events the endpoint delivered, kept for replay (`--retain`).
    Retained,
}

/// How much one shelf of one endpoint may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Stored bytes (payload + header) at most; past it the oldest entries are dropped.
    pub max_bytes: u64,
    /// Entries kept longer ago than this are dropped by [`Archive::expire`].
    pub max_age: Duration,
}

impl ArchiveLimits {
    /// The dead letters' default `max_bytes`: 64 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
    /// The dead letters' default `max_age`: 7 days.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_age: Self::DEFAULT_MAX_AGE,
        }
    }
}

/// One archived event (a dead letter, a retained delivery or a queued replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedEvent {
    pub event_id: u64,
    /// The event's name (`handshake.received`).
    pub event: String,
    /// The event's own timestamp, unix milliseconds (what `--since` / `--until` select on).
    pub event_ms: u64,
    /// When it was archived (dead-lettered, delivered, queued), unix milliseconds (what
    /// `max_age` is measured from).
    pub kept_ms: u64,
    /// The `webhook-id` it was (or would have been) sent with: a replay sends it again.
    pub webhook_id: String,
    /// Why it is here: a dead letter's reason (`failed`, `circuit_open`, `queue_full`, ...),
    /// `delivered` for a retained event; for a queued replay, the shelf it was taken from
    /// (`dead` or `retained`).
    pub reason: String,
    /// The last error (dead letters), if any.
    pub error: Option<String>,
    /// Attempts made before it was archived.
    pub attempts: u32,
    /// The event's JSON payload, exactly as the bus encoded it (never a template's rendering).
    pub payload: Bytes,
}

impl ArchivedEvent {
    /// The bytes this entry counts for against `max_bytes`.
    pub fn stored_len(&self) -> u64 {
        todo!()
    }
}

/// Which entries a list, purge or replay selects. Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `event_ms >= since_ms`.
    pub since_ms: Option<u64>,
    /// `event_ms < until_ms`.
    pub until_ms: Option<u64>,
    /// The reason equals this.
    pub reason: Option<String>,
    /// The event's name matches one of these patterns (none given: any name).
    pub events: Vec<Pattern>,
    /// At most this many (the lowest event ids first).
    pub limit: Option<usize>,
}

/// One shelf of one endpoint, as `info` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShelfStats {
    /// Entries held.
    pub count: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// Entries dropped because the shelf was over `max_bytes` (lifetime, kept on disk).
    pub evicted_size: u64,
    /// Entries dropped because they were older than `max_age` (lifetime, kept on disk).
    pub evicted_age: u64,
}

/// What [`Archive::put`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Entries written (new or replaced).
    pub written: u64,
    /// Older entries dropped to stay within `max_bytes` (an entry larger than `max_bytes` by
    /// itself is not written and counts here too).
    pub evicted: u64,
}

/// Why the archive could not do something. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive {}: the disk is full ({source})", path.display())]
    DiskFull {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("archive {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("archive {} is corrupt: {detail}. The file is left as is; move it aside to start with an empty archive", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("archive {} is in use by another process (another pilot-daemon with the same home?)", path.display())]
    Locked { path: PathBuf },
    #[error("archive {}: {detail}", path.display())]
    Storage { path: PathBuf, detail: String },
}

/// The archive file (see the module docs).
pub struct Archive {
    path: PathBuf,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("path", &self.path).finish()
    }
}

impl Archive {
    /// Opens the archive at `path`, creating it (mode 0600) when missing; an existing file is
    /// made 0600 and reopened (repaired by redb after a crash). A file that is not an archive
    /// is an error naming it, and is left untouched. The parent directory must exist.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let _ = path;
        todo!()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts `entries` on `shelf` of `endpoint` (replacing entries with the same event id),
    /// then drops the endpoint's oldest entries on that shelf while it holds more than
    /// `limits.max_bytes`; one transaction.
    pub fn put(
        &self,
        shelf: Shelf,
        endpoint: &str,
        entries: &[ArchivedEvent],
        limits: ArchiveLimits,
    ) -> Result<PutOutcome, ArchiveError> {
        let _ = (shelf, endpoint, entries, limits);
        todo!()
    }

    /// Drops the entries of `endpoint` on `shelf` kept at or before `now_ms - max_age`;
    /// how many.
    pub fn expire(
        &self,
        shelf: Shelf,
        endpoint: &str,
        max_age: Duration,
        now_ms: u64,
    ) -> Result<u64, ArchiveError> {
        let _ = (shelf, endpoint, max_age, now_ms);
        todo!()
    }

    /// The entries of `endpoint` on `shelf` that `query` selects, in event-id order.
    pub fn list(
        &self,
        shelf: Shelf,
        endpoint: &str,
        query: &Query,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let _ = (shelf, endpoint, query);
        todo!()
    }

    /// Removes the entries of `endpoint` on `shelf` that `query` selects; how many.
    pub fn purge(&self, shelf: Shelf, endpoint: &str, query: &Query) -> Result<u64, ArchiveError> {
        let _ = (shelf, endpoint, query);
        todo!()
    }

    /// Removes these event ids of `endpoint` from `shelf` (absent ones are ignored); how many
    /// were there.
    pub fn remove(&self, shelf: Shelf, endpoint: &str, ids: &[u64]) -> Result<u64, ArchiveError> {
        let _ = (shelf, endpoint, ids);
        todo!()
    }

    /// The counts of `endpoint` on `shelf` (all zero for an endpoint never seen).
    pub fn stats(&self, shelf: Shelf, endpoint: &str) -> ShelfStats {
        let _ = (shelf, endpoint);
        todo!()
    }

    /// Every endpoint name with entries on any shelf or queued replays, sorted.
    pub fn endpoints(&self) -> Result<Vec<String>, ArchiveError> {
        todo!()
    }

    /// Selects the entries of `source` on `shelves` that `query` selects (an event on both
    /// shelves once, the dead letter preferred), in event-id order, and unless `dry_run`
    /// queues copies of them as replays for `target` (`reason` set to the shelf they came
    /// from: `dead` or `retained`), in one transaction. Returns the selection.
    pub fn queue_replay(
        &self,
        source: &str,
        shelves: &[Shelf],
        query: &Query,
        target: &str,
        dry_run: bool,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let _ = (source, shelves, query, target, dry_run);
        todo!()
    }

    /// Up to `limit` replays queued for `target` with event ids above `after`, in event-id
    /// order.
    pub fn peek_replays(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let _ = (target, after, limit);
        todo!()
    }

    /// Removes settled replays of `target`; how many were there.
    pub fn remove_replays(&self, target: &str, ids: &[u64]) -> Result<u64, ArchiveError> {
        let _ = (target, ids);
        todo!()
    }

    /// How many replays are queued for `target`.
    pub fn replay_depth(&self, target: &str) -> u64 {
        let _ = target;
        todo!()
    }
}
