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
//! A value is a small versioned header (version, event_ms, kept_ms, attempts, whether an error
//! is there, the lengths of the strings) followed by the event name, webhook_id, reason, error
//! and the payload; [`ArchivedEvent::stored_len`] is its length. A fourth table, `meta`, keyed
//! by `(endpoint, table, counter)`, holds each endpoint's [`ShelfStats`] per table (a counter
//! at zero is absent) and, under `("format", "", "")`, the layout's format number: a file of a
//! newer format is refused. The counters are mirrored in memory after each commit, so
//! [`Archive::stats`] and [`Archive::replay_depth`] never touch the disk.
//!
//! Putting an entry whose key exists replaces it (an event dead-lettered again after a replay
//! keeps one entry). Every shelf of every endpoint is bounded by its [`ArchiveLimits`]: past
//! `max_bytes` the oldest entries (lowest event ids) are dropped at once by [`Archive::put`],
//! and [`Archive::expire`] drops those kept longer ago than `max_age`; both are counted per
//! endpoint and shelf ([`ShelfStats`]), in the same transaction as the removals, so the
//! counters survive restarts. The replay table has no bounds: what is queued is delivered.
//!
//! Every mutating call is one write transaction (one fsync; none when it finds nothing to
//! change): callers batch. The API is synchronous (redb is): async callers use
//! `spawn_blocking`. An [`Archive`] is `Send + Sync`; share it in an `Arc`.
//!
//! # Errors
//! As with the spool: every [`ArchiveError`] names the file, a file that is not an archive is
//! never rewritten ([`ArchiveError::Corrupt`], integrity checked on every open), and after a
//! failed write the next write first reopens the database, which redb requires.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pilot_core::Pattern;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableError, WriteTransaction,
};
use tracing::warn;

use crate::{open_redb, prepare_file, IoClass, RedbFault};

/// The archive's file name in the pilot home.
pub const ARCHIVE_FILE: &str = "archive.redb";

/// The table and meta layout this code writes and reads.
const FORMAT: u64 = 1;
/// The first byte of every value.
const ENTRY_VERSION: u8 = 1;
/// version (1) + event_ms (8) + kept_ms (8) + attempts (4) + flags (1) + the lengths of event,
/// webhook_id, reason and error (4 x 4).
const HEADER_LEN: usize = 38;
/// In the header's flags: an error is there (an empty one is still `Some`).
const HAS_ERROR: u8 = 1;
/// Memory redb may use to cache pages (its default is 1 GiB).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// `(endpoint, event_id)`.
type EntryKey = (&'static str, u64);
const DEAD: TableDefinition<EntryKey, &[u8]> = TableDefinition::new("dead");
const RETAINED: TableDefinition<EntryKey, &[u8]> = TableDefinition::new("retained");
const REPLAY: TableDefinition<EntryKey, &[u8]> = TableDefinition::new("replay");
/// `(endpoint, table, counter) -> value`, and the format under [`FORMAT_KEY`].
const META: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("meta");
/// No counter has an empty table name, so this key is never an endpoint's.
const FORMAT_KEY: (&str, &str, &str) = ("format", "", "");
/// The counters' names in `meta`, in [`ShelfStats`] field order.
const COUNTERS: [&str; 4] = ["count", "bytes", "evicted_size", "evicted_age"];

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
        [
            HEADER_LEN,
            self.event.len(),
            self.webhook_id.len(),
            self.reason.len(),
            self.error.as_ref().map_or(0, String::len),
            self.payload.len(),
        ]
        .iter()
        .map(|&n| n as u64)
        .sum()
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
    /// `None` only between a failed reopen and the next successful one.
    db: RwLock<Option<Database>>,
    /// Serializes write transactions and reopening.
    writer: Mutex<()>,
    /// A write failed: redb refuses further writes until the database is reopened.
    reopen: AtomicBool,
    /// The counters as last committed: endpoint -> stats per [`Kind`] (absent: all zero).
    mirror: Mutex<HashMap<String, [ShelfStats; 3]>>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("path", &self.path).finish()
    }
}

impl ArchiveError {
    fn io(path: &Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        match IoClass::of(&source) {
            IoClass::DiskFull => ArchiveError::DiskFull { path, source },
            IoClass::ReadOnly | IoClass::Other => ArchiveError::Io { path, source },
        }
    }

    fn redb(path: &Path, e: impl Into<redb::Error>) -> Self {
        Self::fault(path, RedbFault::of(e.into()))
    }

    fn fault(path: &Path, fault: RedbFault) -> Self {
        let storage = |detail: String| ArchiveError::Storage {
            path: path.to_path_buf(),
            detail,
        };
        match fault {
            RedbFault::Io(source) => Self::io(path, source),
            RedbFault::Corrupt(detail) => Self::corrupt(path, detail),
            RedbFault::Locked => ArchiveError::Locked {
                path: path.to_path_buf(),
            },
            RedbFault::NotOurs => Self::corrupt(path, "not a pilot archive"),
            RedbFault::PreviousIo => {
                storage("an earlier write failed; the archive is reopened on the next write".into())
            }
            RedbFault::Other(detail) => storage(detail),
        }
    }

    fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        ArchiveError::Corrupt {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// The archive's tables of entries: the two shelves and the replay queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Dead,
    Retained,
    Replay,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Dead, Kind::Retained, Kind::Replay];

    fn name(self) -> &'static str {
        match self {
            Kind::Dead => "dead",
            Kind::Retained => "retained",
            Kind::Replay => "replay",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn table(self) -> TableDefinition<'static, EntryKey, &'static [u8]> {
        match self {
            Kind::Dead => DEAD,
            Kind::Retained => RETAINED,
            Kind::Replay => REPLAY,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<Shelf> for Kind {
    fn from(shelf: Shelf) -> Kind {
        match shelf {
            Shelf::Dead => Kind::Dead,
            Shelf::Retained => Kind::Retained,
        }
    }
}

fn counters(stats: &mut ShelfStats) -> [&mut u64; 4] {
    [
        &mut stats.count,
        &mut stats.bytes,
        &mut stats.evicted_size,
        &mut stats.evicted_age,
    ]
}

/// The counters a write transaction changes, loaded from `meta` on first use and stored back
/// before the commit. Every change to the entries sets the counters of the endpoint and table
/// it changed (even to the same values), so a transaction that set none changed nothing and
/// is not committed.
#[derive(Default)]
struct Changes {
    counters: BTreeMap<(String, Kind), ShelfStats>,
    /// Something is to be committed.
    changed: bool,
}

impl Changes {
    fn load(
        &mut self,
        tx: &WriteTransaction,
        endpoint: &str,
        kind: Kind,
    ) -> Result<ShelfStats, redb::Error> {
        if let Some(stats) = self.counters.get(&(endpoint.to_string(), kind)) {
            return Ok(*stats);
        }
        let table = tx.open_table(META)?;
        let mut stats = ShelfStats::default();
        for (name, field) in COUNTERS.iter().zip(counters(&mut stats)) {
            *field = table
                .get((endpoint, kind.name(), *name))?
                .map_or(0, |v| v.value());
        }
        Ok(stats)
    }

    fn set(&mut self, endpoint: &str, kind: Kind, stats: ShelfStats) {
        self.counters.insert((endpoint.to_string(), kind), stats);
        self.changed = true;
    }

    fn store(&self, tx: &WriteTransaction) -> Result<(), redb::Error> {
        let mut table = tx.open_table(META)?;
        for ((endpoint, kind), stats) in &self.counters {
            let mut stats = *stats;
            for (name, value) in COUNTERS.iter().zip(counters(&mut stats)) {
                let key = (endpoint.as_str(), kind.name(), *name);
                if *value == 0 {
                    table.remove(key)?;
                } else {
                    table.insert(key, *value)?;
                }
            }
        }
        Ok(())
    }
}

/// A value, parsed without copying.
#[derive(Debug)]
struct View<'v> {
    event_ms: u64,
    kept_ms: u64,
    attempts: u32,
    event: &'v str,
    webhook_id: &'v str,
    reason: &'v str,
    error: Option<&'v str>,
    payload: &'v [u8],
}

impl View<'_> {
    fn parse(v: &[u8]) -> Result<View<'_>, String> {
        if v.len() < HEADER_LEN {
            return Err(format!("{} bytes, shorter than its header", v.len()));
        }
        if v[0] != ENTRY_VERSION {
            return Err(format!("unknown entry version {}", v[0]));
        }
        let u64_at = |i: usize| {
            v.get(i..i + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or("truncated header")
        };
        let u32_at = |i: usize| {
            v.get(i..i + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or("truncated header")
        };
        let event_ms = u64_at(1)?;
        let kept_ms = u64_at(9)?;
        let attempts = u32_at(17)?;
        let flags = v[21];
        let mut at = HEADER_LEN;
        let mut texts = [""; 4];
        for (i, (text, what)) in texts
            .iter_mut()
            .zip(["the event name", "webhook_id", "reason", "error"])
            .enumerate()
        {
            let len = u32_at(22 + 4 * i)? as usize;
            let bytes = at
                .checked_add(len)
                .and_then(|end| v.get(at..end))
                .ok_or_else(|| format!("{what} runs past the entry"))?;
            *text = std::str::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))?;
            at += len;
        }
        let [event, webhook_id, reason, error] = texts;
        Ok(View {
            event_ms,
            kept_ms,
            attempts,
            event,
            webhook_id,
            reason,
            error: (flags & HAS_ERROR != 0).then_some(error),
            payload: &v[at..],
        })
    }

    fn selected(&self, query: &Query) -> bool {
        query.since_ms.is_none_or(|since| self.event_ms >= since)
            && query.until_ms.is_none_or(|until| self.event_ms < until)
            && query.reason.as_ref().is_none_or(|r| self.reason == r)
            && (query.events.is_empty() || query.events.iter().any(|p| p.matches(self.event)))
    }

    fn event(&self, event_id: u64) -> ArchivedEvent {
        ArchivedEvent {
            event_id,
            event: self.event.to_string(),
            event_ms: self.event_ms,
            kept_ms: self.kept_ms,
            webhook_id: self.webhook_id.to_string(),
            reason: self.reason.to_string(),
            error: self.error.map(str::to_string),
            attempts: self.attempts,
            payload: Bytes::copy_from_slice(self.payload),
        }
    }
}

fn encode(e: &ArchivedEvent) -> Result<Vec<u8>, String> {
    let error = e.error.as_deref().unwrap_or("");
    let texts = [
        ("the event name", e.event.as_str()),
        ("webhook_id", e.webhook_id.as_str()),
        ("reason", e.reason.as_str()),
        ("error", error),
    ];
    let mut v = Vec::with_capacity(usize::try_from(e.stored_len()).unwrap_or(0));
    v.push(ENTRY_VERSION);
    v.extend_from_slice(&e.event_ms.to_le_bytes());
    v.extend_from_slice(&e.kept_ms.to_le_bytes());
    v.extend_from_slice(&e.attempts.to_le_bytes());
    v.push(if e.error.is_some() { HAS_ERROR } else { 0 });
    for (what, text) in texts {
        let len = u32::try_from(text.len())
            .map_err(|_| format!("{what} is {} bytes; at most {}", text.len(), u32::MAX))?;
        v.extend_from_slice(&len.to_le_bytes());
    }
    for (_, text) in texts {
        v.extend_from_slice(text.as_bytes());
    }
    v.extend_from_slice(&e.payload);
    Ok(v)
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every key of `endpoint` from event id `from` on.
fn range_of(endpoint: &str, from: u64) -> std::ops::RangeInclusive<(&str, u64)> {
    (endpoint, from)..=(endpoint, u64::MAX)
}

impl Archive {
    /// Opens the archive at `path`, creating it (mode 0600) when missing; an existing file is
    /// made 0600 and reopened (repaired by redb after a crash). A file that is not an archive
    /// is an error naming it, and is left untouched. The parent directory must exist.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        prepare_file(path).map_err(|e| ArchiveError::io(path, e))?;
        let db = open_db(path)?;
        let archive = Archive {
            path: path.to_path_buf(),
            db: RwLock::new(Some(db)),
            writer: Mutex::new(()),
            reopen: AtomicBool::new(false),
            mirror: Mutex::new(HashMap::new()),
        };
        archive.init()?;
        Ok(archive)
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
        if entries.is_empty() {
            return Ok(PutOutcome::default());
        }
        let kind = Kind::from(shelf);
        let values = entries
            .iter()
            .map(|e| {
                encode(e)
                    .map(|v| (e.event_id, v))
                    .map_err(|d| self.unstorable(e.event_id, d))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max = limits.max_bytes;
        self.write(|tx, changes| {
            let mut stats = changes.load(tx, endpoint, kind).map_err(|e| self.err(e))?;
            let mut table = tx.open_table(kind.table()).map_err(|e| self.err(e))?;
            // The batch's event ids stored so far: `written` counts those still there at the
            // end (an entry of the batch can be dropped for space by the same call).
            let mut stored = HashSet::new();
            let mut evicted = 0;
            for (id, value) in &values {
                let len = value.len() as u64;
                let old = if len > max {
                    // Too large to keep at all. An older copy of the event goes too: it is
                    // replaced by nothing rather than left standing for the newer one.
                    evicted += 1;
                    stored.remove(id);
                    table.remove((endpoint, *id)).map_err(|e| self.err(e))?
                } else {
                    stored.insert(*id);
                    stats.count += 1;
                    stats.bytes += len;
                    table
                        .insert((endpoint, *id), value.as_slice())
                        .map_err(|e| self.err(e))?
                };
                if let Some(old) = old {
                    stats.count = stats.count.saturating_sub(1);
                    stats.bytes = stats.bytes.saturating_sub(old.value().len() as u64);
                }
            }
            if stats.bytes > max {
                let mut oldest = Vec::new();
                let mut left = stats.bytes;
                for entry in table
                    .range(range_of(endpoint, 0))
                    .map_err(|e| self.err(e))?
                {
                    if left <= max {
                        break;
                    }
                    let (key, value) = entry.map_err(|e| self.err(e))?;
                    oldest.push(key.value().1);
                    left = left.saturating_sub(value.value().len() as u64);
                }
                for id in oldest {
                    if let Some(old) = table.remove((endpoint, id)).map_err(|e| self.err(e))? {
                        stats.count = stats.count.saturating_sub(1);
                        stats.bytes = stats.bytes.saturating_sub(old.value().len() as u64);
                        evicted += 1;
                        stored.remove(&id);
                    }
                }
            }
            stats.evicted_size += evicted;
            changes.set(endpoint, kind, stats);
            Ok(PutOutcome {
                written: stored.len() as u64,
                evicted,
            })
        })
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
        let kind = Kind::from(shelf);
        let max_age = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        // Before `max_age` has passed since the epoch nothing can have been kept that long.
        let Some(cutoff) = now_ms.checked_sub(max_age) else {
            return Ok(0);
        };
        self.write(|tx, changes| {
            let mut table = tx.open_table(kind.table()).map_err(|e| self.err(e))?;
            // Entries are in event-id order, not kept_ms order (an event dead-lettered again
            // after a replay is kept anew): the whole range is looked at.
            let mut due = Vec::new();
            self.scan(&table, kind, endpoint, 0, |id, _, view| {
                if view.kept_ms <= cutoff {
                    due.push(id);
                }
                true
            })?;
            if due.is_empty() {
                return Ok(0);
            }
            let mut stats = changes.load(tx, endpoint, kind).map_err(|e| self.err(e))?;
            let removed = self.remove_in(&mut table, endpoint, &due, &mut stats)?;
            stats.evicted_age += removed;
            changes.set(endpoint, kind, stats);
            Ok(removed)
        })
    }

    /// The entries of `endpoint` on `shelf` that `query` selects, in event-id order.
    pub fn list(
        &self,
        shelf: Shelf,
        endpoint: &str,
        query: &Query,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let kind = Kind::from(shelf);
        self.read(|tx| {
            let table = tx.open_table(kind.table()).map_err(|e| self.err(e))?;
            self.select(&table, kind, endpoint, query)
        })
    }

    /// Removes the entries of `endpoint` on `shelf` that `query` selects; how many.
    pub fn purge(&self, shelf: Shelf, endpoint: &str, query: &Query) -> Result<u64, ArchiveError> {
        let kind = Kind::from(shelf);
        let limit = query.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(0);
        }
        self.write(|tx, changes| {
            let mut table = tx.open_table(kind.table()).map_err(|e| self.err(e))?;
            let mut ids = Vec::new();
            self.scan(&table, kind, endpoint, 0, |id, _, view| {
                if view.selected(query) {
                    ids.push(id);
                }
                ids.len() < limit
            })?;
            self.remove_ids(tx, changes, &mut table, kind, endpoint, &ids)
        })
    }

    /// Removes these event ids of `endpoint` from `shelf` (absent ones are ignored); how many
    /// were there.
    pub fn remove(&self, shelf: Shelf, endpoint: &str, ids: &[u64]) -> Result<u64, ArchiveError> {
        self.remove_from(Kind::from(shelf), endpoint, ids)
    }

    /// The counts of `endpoint` on `shelf` (all zero for an endpoint never seen).
    pub fn stats(&self, shelf: Shelf, endpoint: &str) -> ShelfStats {
        self.mirrored(endpoint, Kind::from(shelf))
    }

    /// Every endpoint name with entries on any shelf or queued replays, sorted.
    pub fn endpoints(&self) -> Result<Vec<String>, ArchiveError> {
        self.read(|tx| {
            let mut names = BTreeSet::new();
            for kind in Kind::ALL {
                let table = tx.open_table(kind.table()).map_err(|e| self.err(e))?;
                // One look-up per endpoint: from each name found, skip past its last key.
                let mut next = table
                    .first()
                    .map_err(|e| self.err(e))?
                    .map(|(key, _)| key.value().0.to_string());
                while let Some(name) = next.take() {
                    let after = (name.as_str(), u64::MAX);
                    next = match table
                        .range::<(&str, u64)>((Bound::Excluded(after), Bound::Unbounded))
                        .map_err(|e| self.err(e))?
                        .next()
                    {
                        Some(entry) => {
                            let (key, _) = entry.map_err(|e| self.err(e))?;
                            Some(key.value().0.to_string())
                        }
                        None => None,
                    };
                    names.insert(name);
                }
            }
            Ok(names.into_iter().collect())
        })
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
        // Dead first: on a tie in event id, the dead letter is kept.
        let kinds: Vec<Kind> = [Shelf::Dead, Shelf::Retained]
            .into_iter()
            .filter(|s| shelves.contains(s))
            .map(Kind::from)
            .collect();
        if dry_run {
            return self.read(|tx| {
                let selection = self.select_merged(
                    |kind| tx.open_table(kind.table()).map_err(|e| self.err(e)),
                    &kinds,
                    source,
                    query,
                )?;
                Ok(selection.into_iter().map(|(_, e)| e).collect())
            });
        }
        let now_ms = unix_ms_now();
        self.write(|tx, changes| {
            let selection = self.select_merged(
                |kind| tx.open_table(kind.table()).map_err(|e| self.err(e)),
                &kinds,
                source,
                query,
            )?;
            if selection.is_empty() {
                return Ok(Vec::new());
            }
            let mut stats = changes
                .load(tx, target, Kind::Replay)
                .map_err(|e| self.err(e))?;
            let mut table = tx.open_table(REPLAY).map_err(|e| self.err(e))?;
            let mut out = Vec::with_capacity(selection.len());
            for (kind, event) in selection {
                let copy = ArchivedEvent {
                    reason: kind.name().to_string(),
                    kept_ms: now_ms,
                    ..event.clone()
                };
                let value = encode(&copy).map_err(|d| self.unstorable(copy.event_id, d))?;
                stats.count += 1;
                stats.bytes += value.len() as u64;
                if let Some(old) = table
                    .insert((target, copy.event_id), value.as_slice())
                    .map_err(|e| self.err(e))?
                {
                    stats.count = stats.count.saturating_sub(1);
                    stats.bytes = stats.bytes.saturating_sub(old.value().len() as u64);
                }
                out.push(event);
            }
            changes.set(target, Kind::Replay, stats);
            Ok(out)
        })
    }

    /// Up to `limit` replays queued for `target` with event ids above `after`, in event-id
    /// order.
    pub fn peek_replays(
        &self,
        target: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let from = match after {
            None => 0,
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(id) => id + 1,
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read(|tx| {
            let table = tx.open_table(REPLAY).map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            self.scan(&table, Kind::Replay, target, from, |id, _, view| {
                out.push(view.event(id));
                out.len() < limit
            })?;
            Ok(out)
        })
    }

    /// Removes settled replays of `target`; how many were there.
    pub fn remove_replays(&self, target: &str, ids: &[u64]) -> Result<u64, ArchiveError> {
        self.remove_from(Kind::Replay, target, ids)
    }

    /// How many replays are queued for `target`.
    pub fn replay_depth(&self, target: &str) -> u64 {
        self.mirrored(target, Kind::Replay).count
    }

    // ---- private ----

    fn err(&self, e: impl Into<redb::Error>) -> ArchiveError {
        ArchiveError::redb(&self.path, e)
    }

    fn corrupt_entry(&self, kind: Kind, endpoint: &str, id: u64, detail: String) -> ArchiveError {
        ArchiveError::corrupt(
            &self.path,
            format!("{} entry ({endpoint:?}, {id}): {detail}", kind.name()),
        )
    }

    fn unstorable(&self, event_id: u64, detail: String) -> ArchiveError {
        ArchiveError::Storage {
            path: self.path.clone(),
            detail: format!("event {event_id} cannot be archived: {detail}"),
        }
    }

    fn closed(&self) -> ArchiveError {
        ArchiveError::Storage {
            path: self.path.clone(),
            detail: "closed after a failed write; it is reopened on the next write".into(),
        }
    }

    fn lock_mirror(&self) -> MutexGuard<'_, HashMap<String, [ShelfStats; 3]>> {
        // Only ever changed by whole entries: a poisoned lock still holds valid values.
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mirrored(&self, endpoint: &str, kind: Kind) -> ShelfStats {
        self.lock_mirror()
            .get(endpoint)
            .map_or_else(ShelfStats::default, |s| s[kind.index()])
    }

    /// Visits the entries of `endpoint` in `table` with event ids from `from` on, in order,
    /// while `visit` (given the id, the stored length and the parsed value) returns true.
    fn scan<T: ReadableTable<EntryKey, &'static [u8]>>(
        &self,
        table: &T,
        kind: Kind,
        endpoint: &str,
        from: u64,
        mut visit: impl FnMut(u64, u64, View<'_>) -> bool,
    ) -> Result<(), ArchiveError> {
        for entry in table
            .range(range_of(endpoint, from))
            .map_err(|e| self.err(e))?
        {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            let id = key.value().1;
            let value = value.value();
            let view = View::parse(value).map_err(|d| self.corrupt_entry(kind, endpoint, id, d))?;
            if !visit(id, value.len() as u64, view) {
                break;
            }
        }
        Ok(())
    }

    /// The entries of `endpoint` in `table` that `query` selects, in event-id order.
    fn select<T: ReadableTable<EntryKey, &'static [u8]>>(
        &self,
        table: &T,
        kind: Kind,
        endpoint: &str,
        query: &Query,
    ) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan(table, kind, endpoint, 0, |id, _, view| {
            if view.selected(query) {
                out.push(view.event(id));
            }
            out.len() < limit
        })?;
        Ok(out)
    }

    /// [`Archive::select`] over several tables (opened by `open`), merged in event-id order:
    /// an event in more than one is taken from the first of `kinds`. The limit applies to the
    /// merge (each table's own `limit` lowest are enough to find it).
    fn select_merged<T: ReadableTable<EntryKey, &'static [u8]>>(
        &self,
        mut open: impl FnMut(Kind) -> Result<T, ArchiveError>,
        kinds: &[Kind],
        endpoint: &str,
        query: &Query,
    ) -> Result<Vec<(Kind, ArchivedEvent)>, ArchiveError> {
        let mut merged = BTreeMap::new();
        for &kind in kinds {
            let table = open(kind)?;
            for event in self.select(&table, kind, endpoint, query)? {
                merged.entry(event.event_id).or_insert((kind, event));
            }
        }
        Ok(merged
            .into_values()
            .take(query.limit.unwrap_or(usize::MAX))
            .collect())
    }

    /// Removes `ids` of `endpoint` from `table`, adjusting `stats`; how many were there.
    fn remove_in(
        &self,
        table: &mut redb::Table<'_, EntryKey, &'static [u8]>,
        endpoint: &str,
        ids: &[u64],
        stats: &mut ShelfStats,
    ) -> Result<u64, ArchiveError> {
        let mut removed = 0;
        for &id in ids {
            if let Some(old) = table.remove((endpoint, id)).map_err(|e| self.err(e))? {
                stats.count = stats.count.saturating_sub(1);
                stats.bytes = stats.bytes.saturating_sub(old.value().len() as u64);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// [`Archive::remove_in`] with the counters loaded and set (not when nothing was there).
    fn remove_ids(
        &self,
        tx: &WriteTransaction,
        changes: &mut Changes,
        table: &mut redb::Table<'_, EntryKey, &'static [u8]>,
        kind: Kind,
        endpoint: &str,
        ids: &[u64],
    ) -> Result<u64, ArchiveError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut stats = changes.load(tx, endpoint, kind).map_err(|e| self.err(e))?;
        let removed = self.remove_in(table, endpoint, ids, &mut stats)?;
        if removed > 0 {
            changes.set(endpoint, kind, stats);
        }
        Ok(removed)
    }

    fn remove_from(&self, kind: Kind, endpoint: &str, ids: &[u64]) -> Result<u64, ArchiveError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.write(|tx, changes| {
            let mut table = tx.open_table(kind.table()).map_err(|e| self.err(e))?;
            self.remove_ids(tx, changes, &mut table, kind, endpoint, ids)
        })
    }

    fn db(&self) -> RwLockReadGuard<'_, Option<Database>> {
        // The slot is only ever replaced whole, so a poisoned lock still holds a valid value.
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        let db = self.db();
        let db = db.as_ref().ok_or_else(|| self.closed())?;
        let tx = db.begin_read().map_err(|e| self.err(e))?;
        f(&tx)
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // Guards no data of its own: a poisoned lock is as good as a clean one.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one write transaction, stores the counters it set and commits (one fsync);
    /// when it set none, nothing changed and the transaction is aborted instead. On an error
    /// nothing is committed and the next write reopens the database first.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction, &mut Changes) -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        let _writer = self.lock_writer();
        if self.reopen.load(Ordering::Relaxed) {
            self.reopen_db()?;
        }
        let result = self.write_locked(f);
        if result.is_err() {
            self.reopen.store(true, Ordering::Relaxed);
        }
        result
    }

    fn write_locked<T>(
        &self,
        f: impl FnOnce(&WriteTransaction, &mut Changes) -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        let db = self.db();
        let db = db.as_ref().ok_or_else(|| self.closed())?;
        let tx = db.begin_write().map_err(|e| self.err(e))?;
        let mut changes = Changes::default();
        let out = f(&tx, &mut changes)?;
        if !changes.changed {
            tx.abort().map_err(|e| self.err(e))?;
            return Ok(out);
        }
        changes.store(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        let mut mirror = self.lock_mirror();
        for ((endpoint, kind), stats) in changes.counters {
            let slot = mirror.entry(endpoint.clone()).or_default();
            slot[kind.index()] = stats;
            if slot.iter().all(|s| *s == ShelfStats::default()) {
                mirror.remove(&endpoint);
            }
        }
        Ok(out)
    }

    /// Closes and reopens the database after a failed write (redb refuses to write again
    /// before that), then reloads the counters. Called with the writer lock held.
    fn reopen_db(&self) -> Result<(), ArchiveError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        // Close first: redb holds a lock on the file.
        drop(slot.take());
        *slot = Some(open_db(&self.path)?);
        drop(slot);
        self.load_mirror()?;
        self.reopen.store(false, Ordering::Relaxed);
        warn!(path = %self.path.display(), "archive reopened after a failed write");
        Ok(())
    }

    /// Checks the format, creates the tables of a new file and loads the counters
    /// (recounting a table whose counters disagree with its entries).
    fn init(&self) -> Result<(), ArchiveError> {
        let ready = self.read(|tx| {
            let meta = match tx.open_table(META) {
                Ok(meta) => meta,
                Err(TableError::TableDoesNotExist(_)) => return Ok(false),
                Err(e) => return Err(self.err(e)),
            };
            let format = meta.get(FORMAT_KEY).map_err(|e| self.err(e))?;
            let Some(format) = format.map(|v| v.value()) else {
                return Ok(false);
            };
            self.check_format(format)?;
            for kind in Kind::ALL {
                match tx.open_table(kind.table()) {
                    Ok(_) => {}
                    Err(TableError::TableDoesNotExist(_)) => return Ok(false),
                    Err(e) => return Err(self.err(e)),
                }
            }
            Ok(true)
        })?;
        if !ready {
            self.write(|tx, changes| {
                {
                    let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
                    let found = meta
                        .get(FORMAT_KEY)
                        .map_err(|e| self.err(e))?
                        .map(|v| v.value());
                    match found {
                        Some(found) => self.check_format(found)?,
                        None => {
                            meta.insert(FORMAT_KEY, FORMAT).map_err(|e| self.err(e))?;
                        }
                    }
                }
                for kind in Kind::ALL {
                    tx.open_table(kind.table()).map_err(|e| self.err(e))?;
                }
                changes.changed = true;
                Ok(())
            })?;
        }
        for kind in self.load_mirror()? {
            warn!(path = %self.path.display(), table = kind.name(), "archive counters disagree with its entries; recounting");
            self.recount(kind)?;
        }
        Ok(())
    }

    fn check_format(&self, found: u64) -> Result<(), ArchiveError> {
        if found > FORMAT {
            return Err(ArchiveError::Storage {
                path: self.path.clone(),
                detail: format!(
                    "written by a newer pilot (format {found}; this one reads {FORMAT})"
                ),
            });
        }
        Ok(())
    }

    /// Loads the counters from `meta` into the mirror; the tables whose entry count disagrees
    /// with them.
    fn load_mirror(&self) -> Result<Vec<Kind>, ArchiveError> {
        let (loaded, disagree) = self.read(|tx| {
            let meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let mut loaded: HashMap<String, [ShelfStats; 3]> = HashMap::new();
            for entry in meta.iter().map_err(|e| self.err(e))? {
                let (key, value) = entry.map_err(|e| self.err(e))?;
                let (endpoint, table, counter) = key.value();
                let Some(kind) = Kind::from_name(table) else {
                    continue;
                };
                let Some(i) = COUNTERS.iter().position(|c| *c == counter) else {
                    continue;
                };
                let slot = loaded.entry(endpoint.to_string()).or_default();
                *counters(&mut slot[kind.index()])[i] = value.value();
            }
            let mut disagree = Vec::new();
            for kind in Kind::ALL {
                let table = tx.open_table(kind.table()).map_err(|e| self.err(e))?;
                let len = table.len().map_err(|e| self.err(e))?;
                let counted: u64 = loaded.values().map(|s| s[kind.index()].count).sum();
                if len != counted {
                    disagree.push(kind);
                }
            }
            Ok((loaded, disagree))
        })?;
        *self.lock_mirror() = loaded;
        Ok(disagree)
    }

    /// Sets every endpoint's count and bytes in `kind` from its entries (the eviction counters
    /// are kept). Cannot be needed (the counters change in the same transactions as the
    /// entries); if it ever is, recounting beats trusting them.
    fn recount(&self, kind: Kind) -> Result<(), ArchiveError> {
        let known: Vec<String> = self.lock_mirror().keys().cloned().collect();
        self.write(|tx, changes| {
            let mut tally: BTreeMap<String, (u64, u64)> =
                known.into_iter().map(|e| (e, (0, 0))).collect();
            {
                let table = tx.open_table(kind.table()).map_err(|e| self.err(e))?;
                for entry in table.iter().map_err(|e| self.err(e))? {
                    let (key, value) = entry.map_err(|e| self.err(e))?;
                    let t = tally.entry(key.value().0.to_string()).or_default();
                    t.0 += 1;
                    t.1 += value.value().len() as u64;
                }
            }
            for (endpoint, (count, bytes)) in tally {
                let mut stats = changes.load(tx, &endpoint, kind).map_err(|e| self.err(e))?;
                stats.count = count;
                stats.bytes = bytes;
                changes.set(&endpoint, kind, stats);
            }
            Ok(())
        })
    }
}

/// Opens the archive's redb file (see [`open_redb`]).
fn open_db(path: &Path) -> Result<Database, ArchiveError> {
    open_redb(path, CACHE_BYTES, "archive").map_err(|f| ArchiveError::fault(path, f))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::*;

    fn dead(id: u64, payload: &str) -> ArchivedEvent {
        ArchivedEvent {
            event_id: id,
            event: "handshake.received".into(),
            event_ms: id.wrapping_add(1_000),
            kept_ms: id.wrapping_add(10_000),
            webhook_id: format!("msg_0_{id}"),
            reason: "failed".into(),
            error: Some("HTTP 500".into()),
            attempts: 3,
            payload: Bytes::from(payload.to_string()),
        }
    }

    fn retained(id: u64) -> ArchivedEvent {
        ArchivedEvent {
            reason: "delivered".into(),
            error: None,
            attempts: 1,
            ..dead(id, r#"{"r":1}"#)
        }
    }

    fn limits(max_bytes: u64) -> ArchiveLimits {
        ArchiveLimits {
            max_bytes,
            ..ArchiveLimits::default()
        }
    }

    fn new_archive() -> (tempfile::TempDir, Archive) {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(&dir.path().join(ARCHIVE_FILE)).unwrap();
        (dir, archive)
    }

    fn ids(events: &[ArchivedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.event_id).collect()
    }

    fn all() -> Query {
        Query::default()
    }

    /// The stats as the disk has them (a fresh open), to compare with the mirror.
    fn stats_on_disk(path: &Path, shelf: Shelf, endpoint: &str) -> ShelfStats {
        Archive::open(path).unwrap().stats(shelf, endpoint)
    }

    #[test]
    fn values_round_trip_through_their_encoding() {
        for e in [
            dead(42, r#"{"event_id":42}"#),
            retained(7),
            ArchivedEvent {
                event_id: u64::MAX,
                event: String::new(),
                event_ms: u64::MAX,
                kept_ms: 0,
                webhook_id: "ü/\0".into(),
                reason: String::new(),
                error: Some(String::new()),
                attempts: u32::MAX,
                payload: Bytes::new(),
            },
        ] {
            let v = encode(&e).unwrap();
            assert_eq!(v.len() as u64, e.stored_len());
            assert_eq!(View::parse(&v).unwrap().event(e.event_id), e);
        }
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let v = encode(&dead(1, "{}")).unwrap();
        for cut in 0..v.len() {
            let _ = View::parse(&v[..cut]);
        }
        assert!(View::parse(&v[..HEADER_LEN - 1]).is_err());
        let mut bad = v.clone();
        bad[0] = 9;
        assert!(View::parse(&bad).unwrap_err().contains("version"));
        let mut long = v.clone();
        long[22..26].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(View::parse(&long).unwrap_err().contains("runs past"));
        let mut not_utf8 = v;
        not_utf8[HEADER_LEN] = 0xff;
        assert!(View::parse(&not_utf8).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn every_field_round_trips_through_the_file() {
        let (dir, archive) = new_archive();
        let entries = vec![
            dead(5, r#"{"a":1}"#),
            ArchivedEvent {
                event: "relay.message".into(),
                reason: "circuit_open".into(),
                error: None,
                attempts: 0,
                payload: Bytes::from_static(b"\x00\xff binary too"),
                ..dead(9, "")
            },
        ];
        let out = archive
            .put(Shelf::Dead, "hook", &entries, ArchiveLimits::default())
            .unwrap();
        assert_eq!(
            out,
            PutOutcome {
                written: 2,
                evicted: 0
            }
        );
        assert_eq!(archive.list(Shelf::Dead, "hook", &all()).unwrap(), entries);
        let bytes: u64 = entries.iter().map(ArchivedEvent::stored_len).sum();
        let expected = ShelfStats {
            count: 2,
            bytes,
            ..ShelfStats::default()
        };
        assert_eq!(archive.stats(Shelf::Dead, "hook"), expected);
        assert_eq!(
            archive.stats(Shelf::Retained, "hook"),
            ShelfStats::default()
        );
        assert!(archive
            .list(Shelf::Retained, "hook", &all())
            .unwrap()
            .is_empty());
        let path = archive.path().to_path_buf();
        drop(archive);
        let archive = Archive::open(&path).unwrap();
        assert_eq!(archive.list(Shelf::Dead, "hook", &all()).unwrap(), entries);
        assert_eq!(archive.stats(Shelf::Dead, "hook"), expected);
        drop(dir);
    }

    #[test]
    fn replacing_an_entry_keeps_count_and_bytes_right() {
        let (_dir, archive) = new_archive();
        let lim = ArchiveLimits::default();
        archive
            .put(Shelf::Dead, "h", &[dead(1, "short"), dead(2, "x")], lim)
            .unwrap();
        let longer = ArchivedEvent {
            reason: "queue_full".into(),
            kept_ms: 99_999,
            ..dead(1, "a much longer payload than before")
        };
        let out = archive
            .put(Shelf::Dead, "h", std::slice::from_ref(&longer), lim)
            .unwrap();
        assert_eq!(out.written, 1);
        let stats = archive.stats(Shelf::Dead, "h");
        assert_eq!(stats.count, 2);
        assert_eq!(stats.bytes, longer.stored_len() + dead(2, "x").stored_len());
        assert_eq!(
            archive.list(Shelf::Dead, "h", &all()).unwrap(),
            vec![longer.clone(), dead(2, "x")]
        );
        // The same id twice in one batch: the last wins, counted once.
        let out = archive
            .put(
                Shelf::Dead,
                "h",
                &[dead(3, "first"), dead(3, "second!")],
                lim,
            )
            .unwrap();
        assert_eq!(out.written, 1);
        let stats = archive.stats(Shelf::Dead, "h");
        assert_eq!(stats.count, 3);
        assert_eq!(
            stats.bytes,
            longer.stored_len() + dead(2, "x").stored_len() + dead(3, "second!").stored_len()
        );
        assert_eq!(stats, stats_on_disk_after_drop(archive, Shelf::Dead, "h"));
    }

    fn stats_on_disk_after_drop(archive: Archive, shelf: Shelf, endpoint: &str) -> ShelfStats {
        let path = archive.path().to_path_buf();
        drop(archive);
        stats_on_disk(&path, shelf, endpoint)
    }

    #[test]
    fn past_max_bytes_the_oldest_are_dropped_and_counted() {
        let (_dir, archive) = new_archive();
        let one = dead(1, "0123456789").stored_len();
        let lim = limits(3 * one);
        // Put out of order: eviction goes by event id, not by arrival.
        archive
            .put(
                Shelf::Dead,
                "h",
                &[dead(3, "0123456789"), dead(1, "0123456789")],
                lim,
            )
            .unwrap();
        archive
            .put(Shelf::Dead, "h", &[dead(2, "0123456789")], lim)
            .unwrap();
        let out = archive
            .put(
                Shelf::Dead,
                "h",
                &[dead(4, "0123456789"), dead(5, "0123456789")],
                lim,
            )
            .unwrap();
        assert_eq!(
            out,
            PutOutcome {
                written: 2,
                evicted: 2
            }
        );
        assert_eq!(
            ids(&archive.list(Shelf::Dead, "h", &all()).unwrap()),
            [3, 4, 5]
        );
        let stats = archive.stats(Shelf::Dead, "h");
        assert_eq!(
            stats,
            ShelfStats {
                count: 3,
                bytes: 3 * one,
                evicted_size: 2,
                evicted_age: 0
            }
        );
        // A batch larger than the bound keeps its newest; the rest count as evicted, not
        // as written.
        let batch: Vec<_> = (6..10).map(|id| dead(id, "0123456789")).collect();
        let out = archive.put(Shelf::Dead, "h", &batch, lim).unwrap();
        assert_eq!(
            out,
            PutOutcome {
                written: 3,
                evicted: 4
            }
        );
        assert_eq!(
            ids(&archive.list(Shelf::Dead, "h", &all()).unwrap()),
            [7, 8, 9]
        );
        assert_eq!(archive.stats(Shelf::Dead, "h").evicted_size, 6);
        // Another endpoint, and the other shelf, are not touched by this one's bound.
        assert_eq!(archive.stats(Shelf::Retained, "h"), ShelfStats::default());
        assert_eq!(archive.stats(Shelf::Dead, "h2"), ShelfStats::default());
    }

    #[test]
    fn an_entry_larger_than_max_bytes_is_not_written_and_counts_as_evicted() {
        let (_dir, archive) = new_archive();
        let small = dead(1, "x");
        let lim = limits(small.stored_len() + 5);
        archive
            .put(Shelf::Dead, "h", std::slice::from_ref(&small), lim)
            .unwrap();
        let big = dead(2, "this payload is far too large");
        let out = archive.put(Shelf::Dead, "h", &[big], lim).unwrap();
        assert_eq!(
            out,
            PutOutcome {
                written: 0,
                evicted: 1
            }
        );
        // The small one stays: nothing had to make room for an entry that is not kept.
        assert_eq!(archive.list(Shelf::Dead, "h", &all()).unwrap(), vec![small]);
        let stats = archive.stats(Shelf::Dead, "h");
        assert_eq!((stats.count, stats.evicted_size), (1, 1));
        // An oversized new version of a stored event removes the old one.
        let out = archive
            .put(
                Shelf::Dead,
                "h",
                &[dead(1, "now far too large a payload")],
                lim,
            )
            .unwrap();
        assert_eq!(out.evicted, 1);
        assert!(archive.list(Shelf::Dead, "h", &all()).unwrap().is_empty());
        assert_eq!(
            archive.stats(Shelf::Dead, "h"),
            ShelfStats {
                evicted_size: 2,
                ..ShelfStats::default()
            }
        );
        // Zero bytes allowed: nothing is kept.
        let out = archive
            .put(Shelf::Retained, "h", &[retained(1)], limits(0))
            .unwrap();
        assert_eq!(out.written, 0);
    }

    #[test]
    fn expire_drops_by_age_counts_and_keeps_the_young() {
        let (_dir, archive) = new_archive();
        let at = |id: u64, kept_ms: u64| ArchivedEvent {
            kept_ms,
            ..dead(id, "{}")
        };
        // Event id order is not kept_ms order (2 was dead-lettered again after a replay).
        archive
            .put(
                Shelf::Dead,
                "h",
                &[at(1, 1_000), at(2, 9_000), at(3, 2_000), at(4, 5_000)],
                ArchiveLimits::default(),
            )
            .unwrap();
        archive
            .put(
                Shelf::Dead,
                "other",
                &[at(1, 1_000)],
                ArchiveLimits::default(),
            )
            .unwrap();
        let max_age = Duration::from_secs(3);
        // Before max_age has passed since the epoch, nothing is that old.
        assert_eq!(archive.expire(Shelf::Dead, "h", max_age, 2_999).unwrap(), 0);
        // Cutoff 5_000 - 3_000 = 2_000: kept at or before it goes.
        assert_eq!(archive.expire(Shelf::Dead, "h", max_age, 5_000).unwrap(), 2);
        assert_eq!(
            ids(&archive.list(Shelf::Dead, "h", &all()).unwrap()),
            [2, 4]
        );
        assert_eq!(archive.expire(Shelf::Dead, "h", max_age, 5_000).unwrap(), 0);
        assert_eq!(
            archive
                .expire(Shelf::Retained, "h", max_age, 99_000)
                .unwrap(),
            0
        );
        let stats = archive.stats(Shelf::Dead, "h");
        assert_eq!(
            stats,
            ShelfStats {
                count: 2,
                bytes: at(2, 9_000).stored_len() + at(4, 5_000).stored_len(),
                evicted_size: 0,
                evicted_age: 2
            }
        );
        // Another endpoint's old entries are its own business.
        assert_eq!(archive.stats(Shelf::Dead, "other").count, 1);
        assert_eq!(archive.expire(Shelf::Dead, "h", max_age, 8_000).unwrap(), 1);
        assert_eq!(archive.stats(Shelf::Dead, "h").evicted_age, 3);
        assert_eq!(
            archive
                .expire(Shelf::Dead, "h", Duration::ZERO, 9_000)
                .unwrap(),
            1
        );
        assert_eq!(
            archive.stats(Shelf::Dead, "h"),
            ShelfStats {
                evicted_age: 4,
                ..ShelfStats::default()
            }
        );
    }

    #[test]
    fn counters_survive_a_reopen() {
        let (_dir, archive) = new_archive();
        let one = dead(1, "0123456789").stored_len();
        archive
            .put(
                Shelf::Dead,
                "h",
                &(1..=4).map(|id| dead(id, "0123456789")).collect::<Vec<_>>(),
                limits(3 * one),
            )
            .unwrap();
        archive
            .expire(Shelf::Dead, "h", Duration::from_millis(1), 10_004)
            .unwrap();
        archive
            .put(
                Shelf::Retained,
                "h",
                &[retained(7)],
                ArchiveLimits::default(),
            )
            .unwrap();
        archive
            .queue_replay("h", &[Shelf::Dead], &all(), "t", false)
            .unwrap();
        let before = [
            archive.stats(Shelf::Dead, "h"),
            archive.stats(Shelf::Retained, "h"),
        ];
        assert_eq!(
            before[0],
            ShelfStats {
                count: 1,
                bytes: one,
                evicted_size: 1,
                evicted_age: 2
            }
        );
        let path = archive.path().to_path_buf();
        drop(archive);
        let archive = Archive::open(&path).unwrap();
        assert_eq!(
            [
                archive.stats(Shelf::Dead, "h"),
                archive.stats(Shelf::Retained, "h")
            ],
            before
        );
        assert_eq!(archive.replay_depth("t"), 1);
        assert_eq!(archive.replay_depth("h"), 0);
    }

    #[test]
    fn list_and_purge_apply_every_query_condition_and_the_limit() {
        let (_dir, archive) = new_archive();
        let ev = |id: u64, event: &str, event_ms: u64, reason: &str| ArchivedEvent {
            event: event.into(),
            event_ms,
            reason: reason.into(),
            ..dead(id, "{}")
        };
        let entries = vec![
            ev(1, "handshake.received", 100, "failed"),
            ev(2, "handshake.sent", 200, "circuit_open"),
            ev(3, "relay.message", 300, "failed"),
            ev(4, "handshake.received", 400, "queue_full"),
            ev(5, "relay.message", 500, "failed"),
        ];
        archive
            .put(Shelf::Dead, "h", &entries, ArchiveLimits::default())
            .unwrap();
        let list = |q: Query| ids(&archive.list(Shelf::Dead, "h", &q).unwrap());
        assert_eq!(list(all()), [1, 2, 3, 4, 5]);
        let since = |ms| Query {
            since_ms: Some(ms),
            ..all()
        };
        assert_eq!(list(since(300)), [3, 4, 5]);
        assert_eq!(list(since(301)), [4, 5]);
        let until = |ms| Query {
            until_ms: Some(ms),
            ..all()
        };
        assert_eq!(list(until(300)), [1, 2]);
        assert_eq!(list(until(0)), [] as [u64; 0]);
        assert_eq!(
            list(Query {
                since_ms: Some(200),
                until_ms: Some(500),
                ..all()
            }),
            [2, 3, 4]
        );
        let reason = |r: &str| Query {
            reason: Some(r.into()),
            ..all()
        };
        assert_eq!(list(reason("failed")), [1, 3, 5]);
        assert_eq!(list(reason("fail")), [] as [u64; 0]);
        let events = |p: &str| Query {
            events: vec![p.parse().unwrap()],
            ..all()
        };
        assert_eq!(list(events("handshake.*")), [1, 2, 4]);
        assert_eq!(list(events("relay.message")), [3, 5]);
        assert_eq!(list(events("*")), [1, 2, 3, 4, 5]);
        let limit = |n| Query {
            limit: Some(n),
            ..all()
        };
        assert_eq!(list(limit(2)), [1, 2]);
        assert_eq!(list(limit(0)), [] as [u64; 0]);
        assert_eq!(list(limit(99)), [1, 2, 3, 4, 5]);
        // The limit counts selected entries only.
        assert_eq!(
            list(Query {
                reason: Some("failed".into()),
                limit: Some(2),
                ..all()
            }),
            [1, 3]
        );
        assert_eq!(
            list(Query {
                events: vec![
                    "handshake.*".parse().unwrap(),
                    "relay.message".parse().unwrap()
                ],
                reason: Some("failed".into()),
                since_ms: Some(50),
                until_ms: Some(1_000),
                limit: None,
            }),
            [1, 3, 5],
            "any of several patterns"
        );

        // Purge removes what list selects, and counts it.
        let purge = |q: Query| archive.purge(Shelf::Dead, "h", &q).unwrap();
        assert_eq!(purge(limit(0)), 0);
        assert_eq!(
            purge(Query {
                reason: Some("failed".into()),
                limit: Some(2),
                ..all()
            }),
            2
        );
        assert_eq!(list(all()), [2, 4, 5]);
        assert_eq!(purge(events("nothing.matches")), 0);
        assert_eq!(purge(since(450)), 1);
        assert_eq!(purge(until(201)), 1);
        assert_eq!(list(all()), [4]);
        let stats = archive.stats(Shelf::Dead, "h");
        assert_eq!(
            stats,
            ShelfStats {
                count: 1,
                bytes: entries[3].stored_len(),
                ..ShelfStats::default()
            }
        );
        assert_eq!(purge(all()), 1);
        assert_eq!(archive.stats(Shelf::Dead, "h"), ShelfStats::default());
        assert!(archive.endpoints().unwrap().is_empty());
    }

    #[test]
    fn remove_takes_the_ids_given_and_ignores_absent_ones() {
        let (_dir, archive) = new_archive();
        archive
            .put(
                Shelf::Retained,
                "h",
                &[retained(1), retained(2), retained(3)],
                ArchiveLimits::default(),
            )
            .unwrap();
        assert_eq!(archive.remove(Shelf::Retained, "h", &[]).unwrap(), 0);
        assert_eq!(archive.remove(Shelf::Dead, "h", &[1, 2]).unwrap(), 0);
        assert_eq!(archive.remove(Shelf::Retained, "other", &[1]).unwrap(), 0);
        assert_eq!(
            archive.remove(Shelf::Retained, "h", &[1, 3, 9, 3]).unwrap(),
            2
        );
        assert_eq!(
            archive.list(Shelf::Retained, "h", &all()).unwrap(),
            vec![retained(2)]
        );
        assert_eq!(
            archive.stats(Shelf::Retained, "h"),
            ShelfStats {
                count: 1,
                bytes: retained(2).stored_len(),
                ..ShelfStats::default()
            }
        );
    }

    #[test]
    fn endpoints_are_isolated_from_each_other() {
        let (_dir, archive) = new_archive();
        let names = ["a", "ab", "a\u{0}", "", "a b/ü\u{0}x", "b", "A"];
        for (i, name) in names.iter().enumerate() {
            let i = i as u64;
            let entries: Vec<_> = (1..=i + 1).map(|id| dead(id * 10 + i, name)).collect();
            archive
                .put(Shelf::Dead, name, &entries, ArchiveLimits::default())
                .unwrap();
            // Ids at the ends of the id range must not leak into a neighbour either.
            archive
                .put(
                    Shelf::Retained,
                    name,
                    &[retained(0), retained(u64::MAX)],
                    ArchiveLimits::default(),
                )
                .unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            let listed = archive.list(Shelf::Dead, name, &all()).unwrap();
            assert_eq!(listed.len(), i + 1, "{name:?}");
            assert!(
                listed.iter().all(|e| e.payload == name.as_bytes()),
                "{name:?}"
            );
            assert_eq!(archive.stats(Shelf::Dead, name).count, i as u64 + 1);
            assert_eq!(
                ids(&archive.list(Shelf::Retained, name, &all()).unwrap()),
                [0, u64::MAX]
            );
        }
        let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        sorted.sort();
        assert_eq!(archive.endpoints().unwrap(), sorted);
        // Purging, expiring and evicting one leaves its prefix-sharing neighbours alone.
        assert_eq!(archive.purge(Shelf::Dead, "a", &all()).unwrap(), 1);
        assert_eq!(
            archive
                .expire(Shelf::Retained, "ab", Duration::ZERO, u64::MAX)
                .unwrap(),
            2
        );
        archive
            .put(
                Shelf::Dead,
                "a\u{0}",
                &[dead(1_000, "x")],
                limits(dead(1_000, "x").stored_len()),
            )
            .unwrap();
        assert_eq!(
            archive.list(Shelf::Dead, "a\u{0}", &all()).unwrap().len(),
            1
        );
        assert_eq!(archive.list(Shelf::Dead, "ab", &all()).unwrap().len(), 2);
        assert_eq!(archive.list(Shelf::Retained, "a", &all()).unwrap().len(), 2);
        assert_eq!(
            archive
                .list(Shelf::Dead, "a b/ü\u{0}x", &all())
                .unwrap()
                .len(),
            5
        );
        assert_eq!(archive.list(Shelf::Dead, "", &all()).unwrap().len(), 4);
        assert_eq!(archive.endpoints().unwrap(), sorted);
        // An endpoint with nothing left anywhere is no longer listed.
        assert_eq!(archive.purge(Shelf::Retained, "a", &all()).unwrap(), 2);
        assert!(!archive.endpoints().unwrap().contains(&"a".to_string()));
        // An endpoint known only by its queued replays is listed.
        archive
            .queue_replay("b", &[Shelf::Dead], &all(), "only-replays", false)
            .unwrap();
        assert!(archive
            .endpoints()
            .unwrap()
            .contains(&"only-replays".to_string()));
    }

    #[test]
    fn queue_replay_merges_the_shelves_prefers_dead_letters_and_dry_run_changes_nothing() {
        let (_dir, archive) = new_archive();
        let lim = ArchiveLimits::default();
        archive
            .put(Shelf::Dead, "src", &[dead(2, "d2"), dead(4, "d4")], lim)
            .unwrap();
        archive
            .put(
                Shelf::Retained,
                "src",
                &[retained(1), retained(2), retained(3)],
                lim,
            )
            .unwrap();
        archive
            .put(Shelf::Dead, "srcx", &[dead(5, "elsewhere")], lim)
            .unwrap();
        let both = [Shelf::Retained, Shelf::Dead];
        let before = (
            archive.list(Shelf::Dead, "src", &all()).unwrap(),
            archive.list(Shelf::Retained, "src", &all()).unwrap(),
            archive.stats(Shelf::Dead, "src"),
        );

        let dry = archive
            .queue_replay("src", &both, &all(), "dst", true)
            .unwrap();
        assert_eq!(ids(&dry), [1, 2, 3, 4]);
        // The dead letter of event 2 is taken, as stored on its shelf.
        assert_eq!(dry[1], dead(2, "d2"));
        assert_eq!(dry[0], retained(1));
        assert_eq!(archive.replay_depth("dst"), 0);
        assert!(archive.peek_replays("dst", None, 100).unwrap().is_empty());
        assert!(!archive.endpoints().unwrap().contains(&"dst".to_string()));

        let queued = archive
            .queue_replay("src", &both, &all(), "dst", false)
            .unwrap();
        assert_eq!(queued, dry);
        assert_eq!(archive.replay_depth("dst"), 4);
        let replays = archive.peek_replays("dst", None, 100).unwrap();
        assert_eq!(ids(&replays), [1, 2, 3, 4]);
        let reasons: Vec<_> = replays.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["retained", "dead", "retained", "dead"]);
        let now = unix_ms_now();
        for (r, q) in replays.iter().zip(&queued) {
            assert!(
                r.kept_ms <= now && r.kept_ms + 60_000 > now,
                "{}",
                r.kept_ms
            );
            let as_queued = ArchivedEvent {
                reason: r.reason.clone(),
                kept_ms: r.kept_ms,
                ..q.clone()
            };
            assert_eq!(*r, as_queued);
        }
        // The shelves are as they were: a replay copies.
        assert_eq!(
            (
                archive.list(Shelf::Dead, "src", &all()).unwrap(),
                archive.list(Shelf::Retained, "src", &all()).unwrap(),
                archive.stats(Shelf::Dead, "src"),
            ),
            before
        );
        // Queuing again replaces: still one replay per event.
        archive
            .queue_replay("src", &[Shelf::Dead], &all(), "dst", false)
            .unwrap();
        assert_eq!(archive.replay_depth("dst"), 4);
        let bytes: u64 = archive
            .peek_replays("dst", None, 100)
            .unwrap()
            .iter()
            .map(ArchivedEvent::stored_len)
            .sum();
        assert_eq!(archive.mirrored("dst", Kind::Replay).bytes, bytes);

        // One shelf only, a query, a limit over the merge.
        let retained_only = archive
            .queue_replay("src", &[Shelf::Retained], &all(), "t2", true)
            .unwrap();
        assert_eq!(ids(&retained_only), [1, 2, 3]);
        assert_eq!(retained_only[1], retained(2));
        let limited = archive
            .queue_replay(
                "src",
                &both,
                &Query {
                    limit: Some(3),
                    ..all()
                },
                "t3",
                false,
            )
            .unwrap();
        assert_eq!(ids(&limited), [1, 2, 3]);
        assert_eq!(limited[1].reason, "failed");
        assert_eq!(archive.replay_depth("t3"), 3);
        let dead_reason = archive
            .queue_replay(
                "src",
                &both,
                &Query {
                    reason: Some("failed".into()),
                    since_ms: Some(1_003),
                    ..all()
                },
                "t4",
                true,
            )
            .unwrap();
        assert_eq!(ids(&dead_reason), [4]);
        // Nothing selected, no shelves: nothing queued, no error.
        assert!(archive
            .queue_replay("nobody", &both, &all(), "t5", false)
            .unwrap()
            .is_empty());
        assert!(archive
            .queue_replay("src", &[], &all(), "t5", false)
            .unwrap()
            .is_empty());
        assert_eq!(archive.replay_depth("t5"), 0);
        // An endpoint may replay into itself.
        archive
            .queue_replay("srcx", &[Shelf::Dead], &all(), "srcx", false)
            .unwrap();
        assert_eq!(archive.replay_depth("srcx"), 1);
        assert_eq!(archive.stats(Shelf::Dead, "srcx").count, 1);
    }

    #[test]
    fn replays_are_peeked_in_order_removed_and_counted() {
        let (_dir, archive) = new_archive();
        let entries: Vec<_> = (1..=5).map(|id| dead(id * 2, "{}")).collect();
        archive
            .put(Shelf::Dead, "h", &entries, ArchiveLimits::default())
            .unwrap();
        archive
            .queue_replay("h", &[Shelf::Dead], &all(), "h", false)
            .unwrap();
        archive
            .queue_replay("h", &[Shelf::Dead], &all(), "hh", false)
            .unwrap();
        assert_eq!(archive.replay_depth("h"), 5);
        let peek = |after, limit| ids(&archive.peek_replays("h", after, limit).unwrap());
        assert_eq!(peek(None, 2), [2, 4]);
        assert_eq!(peek(Some(4), 2), [6, 8]);
        assert_eq!(peek(Some(5), 100), [6, 8, 10]);
        assert_eq!(peek(Some(10), 100), [] as [u64; 0]);
        assert_eq!(peek(Some(u64::MAX), 100), [] as [u64; 0]);
        assert_eq!(peek(None, 0), [] as [u64; 0]);
        assert_eq!(archive.remove_replays("h", &[2, 6, 7]).unwrap(), 2);
        assert_eq!(archive.remove_replays("h", &[2]).unwrap(), 0);
        assert_eq!(peek(None, 100), [4, 8, 10]);
        assert_eq!(archive.replay_depth("h"), 3);
        assert_eq!(archive.replay_depth("hh"), 5);
        assert_eq!(archive.remove_replays("h", &[4, 8, 10]).unwrap(), 3);
        assert_eq!(archive.replay_depth("h"), 0);
        assert_eq!(archive.mirrored("h", Kind::Replay), ShelfStats::default());
        // Replays do not count against the dead shelf.
        assert_eq!(archive.stats(Shelf::Dead, "h").count, 5);
        let path = archive.path().to_path_buf();
        drop(archive);
        let archive = Archive::open(&path).unwrap();
        assert_eq!(archive.replay_depth("h"), 0);
        assert_eq!(archive.replay_depth("hh"), 5);
    }

    #[test]
    fn the_file_is_created_0600_and_an_existing_one_made_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ARCHIVE_FILE);
        let archive = Archive::open(&path).unwrap();
        assert_eq!(archive.path(), path);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        archive
            .put(Shelf::Dead, "h", &[dead(1, "{}")], ArchiveLimits::default())
            .unwrap();
        drop(archive);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let archive = Archive::open(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(archive.stats(Shelf::Dead, "h").count, 1);
        drop(archive);
        // An existing empty file (made by hand) becomes an archive, 0600 too.
        let empty = dir.path().join("empty.redb");
        fs::write(&empty, b"").unwrap();
        fs::set_permissions(&empty, fs::Permissions::from_mode(0o644)).unwrap();
        Archive::open(&empty).unwrap();
        assert_eq!(mode(&empty), 0o600);
    }

    #[test]
    fn a_file_that_is_not_an_archive_is_corrupt_and_left_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ARCHIVE_FILE);
        let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(&path, &garbage).unwrap();
        let err = Archive::open(&path).unwrap_err();
        assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("move it aside"), "{text}");
        assert_eq!(fs::read(&path).unwrap(), garbage);
        // Not a regular file.
        let err = Archive::open(dir.path()).unwrap_err();
        assert!(matches!(err, ArchiveError::Io { .. }), "{err:?}");
    }

    #[test]
    fn a_webhook_spool_is_not_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        drop(crate::Spool::open(&path, crate::SpoolLimits::default()).unwrap());
        let err = Archive::open(&path).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::Corrupt { detail, .. } if detail.contains("not a pilot archive")),
            "{err:?}"
        );
        // And the spool still opens.
        crate::Spool::open(&path, crate::SpoolLimits::default()).unwrap();
    }

    #[test]
    fn a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ARCHIVE_FILE);
        drop(Archive::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert(FORMAT_KEY, FORMAT + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let err = Archive::open(&path).unwrap_err();
        assert!(matches!(err, ArchiveError::Storage { .. }), "{err:?}");
        assert!(err.to_string().contains("newer pilot (format 2"), "{err}");
    }

    #[test]
    fn counters_that_disagree_with_the_entries_are_recounted_on_open() {
        let (_dir, archive) = new_archive();
        archive
            .put(
                Shelf::Dead,
                "h",
                &[dead(1, "{}"), dead(2, "{}")],
                limits(dead(1, "{}").stored_len() * 2),
            )
            .unwrap();
        archive
            .put(
                Shelf::Dead,
                "h",
                &[dead(3, "{}")],
                limits(dead(1, "{}").stored_len() * 2),
            )
            .unwrap();
        let good = archive.stats(Shelf::Dead, "h");
        let path = archive.path().to_path_buf();
        drop(archive);
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut meta = tx.open_table(META).unwrap();
                meta.insert(("h", "dead", "count"), 7).unwrap();
                meta.insert(("ghost", "dead", "count"), 1).unwrap();
                meta.insert(("ghost", "dead", "bytes"), 100).unwrap();
            }
            tx.commit().unwrap();
        }
        let archive = Archive::open(&path).unwrap();
        assert_eq!(archive.stats(Shelf::Dead, "h"), good);
        assert_eq!(good.evicted_size, 1);
        assert_eq!(archive.stats(Shelf::Dead, "ghost"), ShelfStats::default());
        drop(archive);
        assert_eq!(stats_on_disk(&path, Shelf::Dead, "h"), good);
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused_and_a_reopen_after_drop_works() {
        let (_dir, archive) = new_archive();
        let path = archive.path().to_path_buf();
        archive
            .put(Shelf::Dead, "h", &[dead(1, "{}")], ArchiveLimits::default())
            .unwrap();
        let err = Archive::open(&path).unwrap_err();
        assert!(matches!(err, ArchiveError::Locked { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
        // The first handle is unharmed.
        assert_eq!(archive.list(Shelf::Dead, "h", &all()).unwrap().len(), 1);
        archive
            .put(Shelf::Dead, "h", &[dead(2, "{}")], ArchiveLimits::default())
            .unwrap();
        drop(archive);
        let archive = Archive::open(&path).unwrap();
        assert_eq!(
            ids(&archive.list(Shelf::Dead, "h", &all()).unwrap()),
            [1, 2]
        );
        assert_eq!(archive.stats(Shelf::Dead, "h").count, 2);
    }

    #[test]
    fn after_a_failed_write_the_next_write_reopens_the_database() {
        let (_dir, archive) = new_archive();
        archive
            .put(Shelf::Dead, "h", &[dead(1, "{}")], ArchiveLimits::default())
            .unwrap();
        // What a failed write leaves behind (a full disk cannot be had in a unit test).
        archive.reopen.store(true, Ordering::Relaxed);
        // Reads go on meanwhile.
        assert_eq!(archive.list(Shelf::Dead, "h", &all()).unwrap().len(), 1);
        archive
            .put(Shelf::Dead, "h", &[dead(2, "{}")], ArchiveLimits::default())
            .unwrap();
        assert!(!archive.reopen.load(Ordering::Relaxed));
        assert_eq!(archive.stats(Shelf::Dead, "h").count, 2);
        assert_eq!(
            ids(&archive.list(Shelf::Dead, "h", &all()).unwrap()),
            [1, 2]
        );
    }

    #[test]
    fn an_archive_is_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Archive>();
        let (_dir, archive) = new_archive();
        let archive = Arc::new(archive);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let archive = Arc::clone(&archive);
                std::thread::spawn(move || {
                    for i in 0..10 {
                        archive
                            .put(
                                Shelf::Dead,
                                "h",
                                &[dead(t * 100 + i, "{}")],
                                ArchiveLimits::default(),
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(archive.stats(Shelf::Dead, "h").count, 40);
        assert_eq!(archive.list(Shelf::Dead, "h", &all()).unwrap().len(), 40);
    }

    #[test]
    fn io_errors_are_classified_and_name_the_file() {
        let p = Path::new("/x/archive.redb");
        let full = ArchiveError::io(p, io::Error::from_raw_os_error(28));
        assert!(matches!(full, ArchiveError::DiskFull { .. }), "{full:?}");
        assert!(full.to_string().contains("/x/archive.redb"));
        let other = ArchiveError::io(p, io::Error::from_raw_os_error(5));
        assert!(matches!(other, ArchiveError::Io { .. }));
        let locked = ArchiveError::redb(p, redb::Error::DatabaseAlreadyOpen);
        assert!(matches!(locked, ArchiveError::Locked { .. }));
        let again = ArchiveError::redb(p, redb::Error::PreviousIo);
        assert!(again.to_string().contains("reopened on the next write"));
    }
}
