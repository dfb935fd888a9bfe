//! pilot-spool: an embedded, ordered, bounded queue of bus events on disk, with group commit.
//! It knows nothing of HTTP: pilot-webhook's durable mode is its user.
//!
//! The durable webhook spool: an embedded on-disk store of accepted events, in event_id order,
//! kept until their delivery succeeds (at-least-once delivery across endpoint outages,
//! `daemon stop` and `kill -9`).
//!
//! # Why redb
//! The spool is one [redb](https://www.redb.org) file. redb is pure Rust (no C toolchain, no
//! build script that needs cmake or a system library), keeps everything in a single file,
//! and is ACID: every write transaction is committed with an fsync, onto copy-on-write B-trees
//! whose commit slot is checksummed, so a crash (`kill -9`, power loss) at any moment leaves the
//! file at the last committed transaction and it reopens cleanly. It is actively maintained
//! with a stable, versioned file format. SQLite would need a C toolchain (or a bundled C
//! build); fjall is an LSM tree with background compaction threads and many files, more than a
//! FIFO of at most a few hundred MiB needs.
//!
//! # Layout
//! Three tables in the file:
//! - `records`: `event_id -> value`, the value a small fixed header (format, attempts,
//!   accepted_at_ms, webhook_id) followed by the event's JSON body, exactly as POSTed.
//! - `meta`: counters kept in the same transactions as the records they describe: depth,
//!   bytes, the high-water mark `last_event_id` (kept when the spool empties, so event ids
//!   never repeat across restarts), lifetime drop counters, the log's sequence.
//! - `log`: a bounded log of recent delivery attempts (opaque JSON bytes, newest last).
//!
//! # Costs
//! Every mutating call is one write transaction, so one fsync: callers batch (group commit).
//! [`Spool::append`] takes a whole batch; [`run_spooler`] feeds it up to
//! [`SPOOLER_BATCH`] events per transaction. `bytes` counts each record's stored value (JSON
//! body + header), not the file size: the file is larger (B-tree pages, copy-on-write slack)
//! and does not shrink, but space freed by delivered records is reused.
//!
//! # Errors
//! Every [`SpoolError`] names the file. A file that is not a valid spool is never deleted or
//! rewritten: opening it fails with [`SpoolError::Corrupt`] and it is left as is (redb's
//! integrity check runs on every open: about 0.5 s for a full 256 MiB spool). After a
//! failed write (disk full, I/O error) the next write first reopens the database, which
//! redb requires before writing again.
//!
//! The API is synchronous (redb is): async callers use `spawn_blocking`. A [`Spool`] is
//! `Send + Sync`; share it in an `Arc`. Its limits can change while it is open
//! ([`Spool::set_limits`]: a webhook's settings carry them). The webhook plugin's durable mode
//! (`pilot_webhook::durable`) is its user: it removes settled records in groups
//! ([`Spool::remove_groups_and_log`]) and persists attempt counts of a whole batch
//! ([`Spool::set_attempts_and_log`]), each in one transaction with the delivery log.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use bytes::Bytes;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use tracing::warn;

use crate::reserve::Reserve;

pub mod archive;
mod reserve;
mod spooler;

pub use archive::{
    Archive, ArchiveError, ArchiveLimits, ArchivedEvent, PutOutcome, Query, Shelf, ShelfStats,
    ARCHIVE_FILE,
};
pub use spooler::{
    run_spooler, run_spooler_counted, RecordId, SpoolerCounters, SpoolerFault, SpoolerReport,
    SPOOLER_BATCH,
};

/// The spool's file name in the pilot home.
pub const SPOOL_FILE: &str = "webhook-spool.redb";

/// The record and meta layout this code writes and reads.
const FORMAT: u64 = 1;
/// The first byte of every record value.
const RECORD_VERSION: u8 = 1;
/// version (1) + attempts (4) + accepted_at_ms (8) + webhook_id length (2).
const HEADER_LEN: usize = 15;
/// Memory redb may use to cache pages (its default is 1 GiB).
const CACHE_BYTES: usize = 32 * 1024 * 1024;

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// How much the spool may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// Records' stored bytes (JSON body + header) at most; past it the oldest are dropped.
    pub max_bytes: u64,
    /// Records accepted longer ago than this are dropped by [`Spool::expire`].
    pub discard_after: Duration,
}

impl SpoolLimits {
    /// The default `max_bytes`: 256 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
    /// The default `discard_after`: 24 h.
    pub const DEFAULT_DISCARD_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
}

impl Default for SpoolLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            discard_after: Self::DEFAULT_DISCARD_AFTER,
        }
    }
}

/// One spooled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub event_id: u64,
    /// The Standard Webhooks `webhook-id`, stable across retries and restarts.
    pub webhook_id: String,
    /// When the bus accepted the event, in unix milliseconds.
    pub accepted_at_ms: u64,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// The event's JSON body, exactly as POSTed.
    pub payload: Bytes,
}

impl SpoolRecord {
    /// The bytes this record counts for against `max_bytes` (its stored value).
    pub fn stored_len(&self) -> u64 {
        (HEADER_LEN + self.webhook_id.len() + self.payload.len()) as u64
    }
}

/// What [`Spool::append`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Records of the batch now stored.
    pub appended: u64,
    /// Records removed to stay within `max_bytes`: the oldest stored ones, and the oldest of
    /// the batch itself when even an empty spool could not hold all of it.
    pub dropped_for_space: u64,
    /// Of those, how many the [`Spool::on_evict`] hook kept.
    pub kept: u64,
}

/// A snapshot of the spool's counters (read without touching the disk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records stored.
    pub depth: u64,
    /// Their stored bytes (JSON bodies + headers).
    pub bytes: u64,
    /// The highest event_id ever appended (kept when the spool empties).
    pub last_event_id: u64,
    /// Records ever dropped to stay within `max_bytes` (kept across restarts).
    pub dropped_for_space: u64,
    /// Records ever dropped by [`Spool::expire`] (kept across restarts).
    pub expired: u64,
}

/// Why the spool could not do something. Every variant names the spool file.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("webhook spool {}: the disk is full ({source}); events are kept in memory and retried", path.display())]
    DiskFull { path: PathBuf, source: io::Error },
    #[error("webhook spool {} cannot be written ({source}): check the file's owner and mode and that its file system is writable", path.display())]
    ReadOnly { path: PathBuf, source: io::Error },
    #[error("webhook spool {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "webhook spool {} is corrupt: {detail}. The file is left as is; move it aside to start \
         with an empty spool (the events in it are then not delivered)",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("webhook spool {} is in use by another process (another pilot-daemon with the same home?)", path.display())]
    Locked { path: PathBuf },
    #[error("webhook spool {} was written by a newer pilot (format {found}; this one reads {FORMAT})", path.display())]
    UnsupportedFormat { path: PathBuf, found: u64 },
    #[error(
        "webhook spool {}: event_id {event_id} is not above the spool's high-water mark \
         {last_event_id} (event ids must keep increasing)",
        path.display()
    )]
    OutOfOrder {
        path: PathBuf,
        event_id: u64,
        last_event_id: u64,
    },
    #[error("webhook spool {}: event {event_id} cannot be stored: {reason}", path.display())]
    InvalidRecord {
        path: PathBuf,
        event_id: u64,
        reason: String,
    },
    #[error("webhook spool {}: {detail}", path.display())]
    Storage { path: PathBuf, detail: String },
}

impl SpoolError {
    /// The spool file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            SpoolError::DiskFull { path, .. }
            | SpoolError::ReadOnly { path, .. }
            | SpoolError::Io { path, .. }
            | SpoolError::Corrupt { path, .. }
            | SpoolError::Locked { path }
            | SpoolError::UnsupportedFormat { path, .. }
            | SpoolError::OutOfOrder { path, .. }
            | SpoolError::InvalidRecord { path, .. }
            | SpoolError::Storage { path, .. } => path,
        }
    }

    fn io(path: &Path, source: io::Error) -> Self {
        let path = path.to_path_buf();
        match IoClass::of(&source) {
            IoClass::DiskFull => SpoolError::DiskFull { path, source },
            IoClass::ReadOnly => SpoolError::ReadOnly { path, source },
            IoClass::Other => SpoolError::Io { path, source },
        }
    }

    fn redb(path: &Path, e: impl Into<redb::Error>) -> Self {
        Self::fault(path, RedbFault::of(e.into()))
    }

    fn fault(path: &Path, fault: RedbFault) -> Self {
        match fault {
            RedbFault::Io(source) => Self::io(path, source),
            RedbFault::Corrupt(detail) => SpoolError::Corrupt {
                path: path.to_path_buf(),
                detail,
            },
            RedbFault::Locked => SpoolError::Locked {
                path: path.to_path_buf(),
            },
            RedbFault::NotOurs => SpoolError::Corrupt {
                path: path.to_path_buf(),
                detail: "not a pilot webhook spool".into(),
            },
            RedbFault::PreviousIo => SpoolError::Storage {
                path: path.to_path_buf(),
                detail: "an earlier write failed; the spool is reopened on the next write".into(),
            },
            RedbFault::Other(detail) => SpoolError::Storage {
                path: path.to_path_buf(),
                detail,
            },
        }
    }

    fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        SpoolError::Corrupt {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// The `meta` table's values, read and written inside each write transaction.
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    depth: u64,
    bytes: u64,
    last_event_id: u64,
    dropped_for_space: u64,
    expired: u64,
    log_seq: u64,
}

const META_KEYS: [&str; 6] = [
    "depth",
    "bytes",
    "last_event_id",
    "dropped_for_space",
    "expired",
    "log_seq",
];

impl Meta {
    fn fields(&mut self) -> [&mut u64; 6] {
        [
            &mut self.depth,
            &mut self.bytes,
            &mut self.last_event_id,
            &mut self.dropped_for_space,
            &mut self.expired,
            &mut self.log_seq,
        ]
    }

    fn load(table: &impl ReadableTable<&'static str, u64>) -> Result<Meta, redb::StorageError> {
        let mut meta = Meta::default();
        for (key, field) in META_KEYS.iter().zip(meta.fields()) {
            *field = table.get(*key)?.map_or(0, |v| v.value());
        }
        Ok(meta)
    }

    fn store(
        mut self,
        table: &mut redb::Table<&'static str, u64>,
    ) -> Result<(), redb::StorageError> {
        for (key, field) in META_KEYS.iter().zip(self.fields()) {
            table.insert(*key, *field)?;
        }
        Ok(())
    }
}

/// The counters as last committed, readable without a lock.
#[derive(Debug, Default)]
struct Mirror {
    depth: AtomicU64,
    bytes: AtomicU64,
    last_event_id: AtomicU64,
    dropped_for_space: AtomicU64,
    expired: AtomicU64,
}

impl Mirror {
    fn set(&self, m: &Meta) {
        self.depth.store(m.depth, Ordering::Relaxed);
        self.bytes.store(m.bytes, Ordering::Relaxed);
        self.last_event_id.store(m.last_event_id, Ordering::Relaxed);
        self.dropped_for_space
            .store(m.dropped_for_space, Ordering::Relaxed);
        self.expired.store(m.expired, Ordering::Relaxed);
    }
}

/// The on-disk spool. See the module docs.
pub struct Spool {
    path: PathBuf,
    /// Changed by [`Spool::set_limits`] (a webhook's settings carry them).
    limits: RwLock<SpoolLimits>,
    /// `None` only between a failed reopen and the next successful one.
    db: RwLock<Option<Database>>,
    /// Serializes write transactions and reopening.
    writer: Mutex<()>,
    /// A write failed: redb refuses further writes until the database is reopened.
    reopen: AtomicBool,
    mirror: Mirror,
    commits: AtomicU64,
    /// Why the latest write failed; cleared by the next one that succeeds.
    write_error: Mutex<Option<String>>,
    /// Space kept to remove delivered records on a full disk.
    reserve: Reserve,
    /// Given the records about to be dropped for space, before the write that drops them;
    /// says how many it kept (see [`Spool::on_evict`]).
    on_evict: std::sync::OnceLock<EvictHook>,
}

/// What [`Spool::on_evict`] is given.
pub type EvictHook = Box<dyn Fn(&[SpoolRecord]) -> u64 + Send + Sync>;

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.path)
            .field("limits", &self.limits())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Spool {
    /// Opens the spool at `path`, creating it (mode 0600) when missing. An existing file is
    /// made 0600, reopened (repaired by redb after a crash, its integrity checked) and its
    /// counters restored. A file that is not a valid spool is an error naming it, and is left
    /// untouched. The parent directory must exist.
    pub fn open(path: &Path, limits: SpoolLimits) -> Result<Spool, SpoolError> {
        prepare_file(path).map_err(|e| SpoolError::io(path, e))?;
        let db = open_db(path)?;
        let spool = Spool {
            path: path.to_path_buf(),
            limits: RwLock::new(limits),
            db: RwLock::new(Some(db)),
            writer: Mutex::new(()),
            reopen: AtomicBool::new(false),
            mirror: Mirror::default(),
            commits: AtomicU64::new(0),
            write_error: Mutex::new(None),
            reserve: Reserve::beside(path),
            on_evict: std::sync::OnceLock::new(),
        };
        match spool.init() {
            Ok(()) => {}
            // A full disk must not keep the daemon from delivering what the spool holds:
            // opened read-mostly, it is read (and emptied as events are delivered, which
            // frees pages inside the file for new events) and written again once it can be.
            Err(e @ SpoolError::DiskFull { .. }) => {
                spool
                    .init_read_only()
                    .map_err(|_| e.to_string())
                    .map_err(|detail| SpoolError::Storage {
                        path: path.to_path_buf(),
                        detail,
                    })?;
                warn!(path = %path.display(), error = %e, "webhook spool opened read-mostly on a full disk: what it holds is delivered, new events are refused until it can be written");
                spool.reopen.store(true, Ordering::Relaxed);
                spool.set_write_error(Some(e.to_string()));
            }
            Err(e) => return Err(e),
        }
        spool.reserve.ensure();
        Ok(spool)
    }

    /// [`Spool::write`] for a removal: on a full disk the reserve is released and the removal
    /// tried again (a copy-on-write commit needs free pages even to delete).
    fn write_freeing<T>(
        &self,
        f: impl Fn(&WriteTransaction, &mut Meta) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let result = match self.write(&f) {
            Err(SpoolError::DiskFull { .. }) if self.reserve.release() => self.write(&f),
            other => other,
        };
        if result.is_ok() {
            self.reserve.ensure();
        }
        result
    }

    /// [`Spool::init`] without writing: the tables must exist (a file that was a spool).
    fn init_read_only(&self) -> Result<(), SpoolError> {
        let db = self.db();
        let db = db.as_ref().ok_or_else(|| self.closed())?;
        let tx = db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(META).map_err(|e| self.err(e))?;
        let format = table
            .get("format")
            .map_err(|e| self.err(e))?
            .map_or(0, |v| v.value());
        if format > FORMAT {
            return Err(SpoolError::UnsupportedFormat {
                path: self.path.clone(),
                found: format,
            });
        }
        let meta = Meta::load(&table).map_err(|e| self.err(e))?;
        self.mirror.set(&meta);
        Ok(())
    }

    fn set_write_error(&self, error: Option<String>) {
        *self.write_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// Why the latest write failed (a full disk, a read-only file), until one succeeds: the
    /// spool's condition as `info` shows it.
    pub fn write_error(&self) -> Option<String> {
        self.write_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates the tables of a new file, checks the format and loads the counters.
    fn init(&self) -> Result<(), SpoolError> {
        let format = self.write(|tx, meta| {
            let mut table = tx.open_table(META).map_err(|e| self.err(e))?;
            let found = table.get("format").map_err(|e| self.err(e))?.map(|v| v.value());
            let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            tx.open_table(LOG).map_err(|e| self.err(e))?;
            let len = records.len().map_err(|e| self.err(e))?;
            match found {
                Some(found) if found > FORMAT => return Ok(found),
                Some(_) => {}
                None => {
                    table.insert("format", FORMAT).map_err(|e| self.err(e))?;
                }
            }
            if len != meta.depth {
                // Cannot happen (meta changes in the same transactions as the records); if it
                // ever does, recount rather than trust it.
                warn!(path = %self.path.display(), "webhook spool counters disagree with its records; recounting");
                meta.depth = len;
                meta.bytes = 0;
                for entry in records.iter().map_err(|e| self.err(e))? {
                    let (_, value) = entry.map_err(|e| self.err(e))?;
                    meta.bytes += value.value().len() as u64;
                }
            }
            Ok(FORMAT)
        })?;
        if format > FORMAT {
            return Err(SpoolError::UnsupportedFormat {
                path: self.path.clone(),
                found: format,
            });
        }
        Ok(())
    }

    fn err(&self, e: impl Into<redb::Error>) -> SpoolError {
        SpoolError::redb(&self.path, e)
    }

    /// Sets (once) what is done with records dropped for space: `hook` gets them before the
    /// write that drops them (a crash in between leaves them spooled) and says how many it
    /// kept (see [`AppendOutcome::kept`]). Later calls are ignored.
    pub fn on_evict(&self, hook: EvictHook) {
        let _ = self.on_evict.set(hook);
    }

    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits in force.
    pub fn limits(&self) -> SpoolLimits {
        // Only ever replaced whole: a poisoned lock still holds a valid value.
        *self.limits.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the limits for the next [`Spool::append`] and [`Spool::expire`] (nothing is
    /// dropped by this call itself).
    pub fn set_limits(&self, limits: SpoolLimits) {
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    /// The counters as last committed (no disk access, no lock).
    pub fn stats(&self) -> SpoolStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SpoolStats {
            depth: load(&self.mirror.depth),
            bytes: load(&self.mirror.bytes),
            last_event_id: load(&self.mirror.last_event_id),
            dropped_for_space: load(&self.mirror.dropped_for_space),
            expired: load(&self.mirror.expired),
        }
    }

    /// The highest event_id ever appended; survives emptying and restarts. A daemon in
    /// durable mode starts its bus after it, so event ids never repeat.
    pub fn last_event_id(&self) -> u64 {
        self.mirror.last_event_id.load(Ordering::Relaxed)
    }

    /// Write transactions committed since open (tests use it to check group commit).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Appends `records` in one write transaction (one fsync). Their event ids must be strictly
    /// increasing and above [`Spool::last_event_id`]; else nothing is written and the error is
    /// [`SpoolError::OutOfOrder`]. When the spool would pass `max_bytes`, the oldest records are
    /// removed in the same transaction and counted. The high-water mark moves to the last id,
    /// even when every record had to be dropped.
    pub fn append(&self, records: &[SpoolRecord]) -> Result<AppendOutcome, SpoolError> {
        let Some(last) = records.last() else {
            return Ok(AppendOutcome::default());
        };
        let mut prev = self.last_event_id();
        let mut values = Vec::with_capacity(records.len());
        for r in records {
            if r.event_id <= prev {
                return Err(SpoolError::OutOfOrder {
                    path: self.path.clone(),
                    event_id: r.event_id,
                    last_event_id: prev,
                });
            }
            prev = r.event_id;
            values.push(encode(r).map_err(|reason| SpoolError::InvalidRecord {
                path: self.path.clone(),
                event_id: r.event_id,
                reason,
            })?);
        }
        let max = self.limits().max_bytes;
        self.write(|tx, meta| {
            if last.event_id <= meta.last_event_id {
                // Another writer got in between the check above and this transaction.
                return Err(SpoolError::OutOfOrder {
                    path: self.path.clone(),
                    event_id: records[0].event_id,
                    last_event_id: meta.last_event_id,
                });
            }
            let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut incoming: u64 = values.iter().map(|v| v.len() as u64).sum();
            let mut dropped = 0;
            let hook = self.on_evict.get();
            let mut evicted = Vec::new();
            while meta.bytes.saturating_add(incoming) > max && meta.depth > 0 {
                let Some((key, value)) = table.pop_first().map_err(|e| self.err(e))? else {
                    break;
                };
                if hook.is_some() {
                    if let Ok(r) = decode(key.value(), value.value()) {
                        evicted.push(r);
                    }
                }
                meta.bytes = meta.bytes.saturating_sub(value.value().len() as u64);
                meta.depth -= 1;
                dropped += 1;
            }
            let mut skip = 0;
            while meta.bytes.saturating_add(incoming) > max && skip < values.len() {
                incoming -= values[skip].len() as u64;
                if hook.is_some() {
                    evicted.push(records[skip].clone());
                }
                skip += 1;
                dropped += 1;
            }
            let kept = match hook {
                Some(hook) if !evicted.is_empty() => hook(&evicted).min(dropped),
                _ => 0,
            };
            for (r, v) in records.iter().zip(&values).skip(skip) {
                table
                    .insert(r.event_id, v.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            let appended = (values.len() - skip) as u64;
            meta.bytes += incoming;
            meta.depth += appended;
            meta.last_event_id = last.event_id;
            meta.dropped_for_space += dropped;
            Ok(AppendOutcome {
                appended,
                dropped_for_space: dropped,
                kept,
            })
        })
    }

    /// The oldest `limit` records with event_id above `after` (all when `None`), in order.
    pub fn peek(&self, after: Option<u64>, limit: usize) -> Result<Vec<SpoolRecord>, SpoolError> {
        let start = match after {
            None => 0,
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(id) => id + 1,
        };
        self.read(|tx| {
            let table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut out = Vec::with_capacity(limit.min(4096));
            for entry in table.range(start..).map_err(|e| self.err(e))?.take(limit) {
                let (key, value) = entry.map_err(|e| self.err(e))?;
                out.push(
                    decode(key.value(), value.value())
                        .map_err(|d| self.corrupt_record(key.value(), d))?,
                );
            }
            Ok(out)
        })
    }

    /// The record of `event_id`, if still spooled.
    pub fn get(&self, event_id: u64) -> Result<Option<SpoolRecord>, SpoolError> {
        self.read(|tx| {
            let table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let Some(value) = table.get(event_id).map_err(|e| self.err(e))? else {
                return Ok(None);
            };
            decode(event_id, value.value())
                .map(Some)
                .map_err(|d| self.corrupt_record(event_id, d))
        })
    }

    /// Removes delivered records in one transaction; ids not stored are ignored. Returns how
    /// many records were removed.
    pub fn remove(&self, event_ids: &[u64]) -> Result<u64, SpoolError> {
        self.remove_and_log(event_ids, &[], 0)
    }

    /// [`Spool::remove`] and [`Spool::append_log`] in one transaction (one fsync instead of
    /// two): the worker's "delivered, and here is the attempt" step. With no log entries,
    /// `keep` is ignored. Returns how many records were removed (ids no longer stored, for
    /// example dropped for space meanwhile, are not counted).
    pub fn remove_and_log(
        &self,
        event_ids: &[u64],
        log_entries: &[Bytes],
        keep: usize,
    ) -> Result<u64, SpoolError> {
        let removed = self.remove_groups_and_log(&[event_ids], log_entries, keep)?;
        Ok(removed.iter().sum())
    }

    /// [`Spool::remove_and_log`] for several groups of ids (delivered, failed, filtered...) in
    /// one transaction; how many records of each group were removed.
    pub fn remove_groups_and_log(
        &self,
        groups: &[&[u64]],
        log_entries: &[Bytes],
        keep: usize,
    ) -> Result<Vec<u64>, SpoolError> {
        if groups.iter().all(|g| g.is_empty()) && log_entries.is_empty() {
            return Ok(vec![0; groups.len()]);
        }
        self.write_freeing(|tx, meta| {
            let mut removed = Vec::with_capacity(groups.len());
            {
                let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
                for group in groups {
                    let mut n = 0;
                    for id in *group {
                        if let Some(value) = table.remove(*id).map_err(|e| self.err(e))? {
                            meta.bytes = meta.bytes.saturating_sub(value.value().len() as u64);
                            meta.depth = meta.depth.saturating_sub(1);
                            n += 1;
                        }
                    }
                    removed.push(n);
                }
            }
            if !log_entries.is_empty() {
                self.log_in(tx, meta, log_entries, keep)?;
            }
            Ok(removed)
        })
    }

    /// Persists a record's attempt count (so a restart keeps its retry schedule). A record no
    /// longer stored (delivered, dropped or expired meanwhile) is ignored.
    pub fn set_attempts(&self, event_id: u64, attempts: u32) -> Result<(), SpoolError> {
        self.set_attempts_and_log(&[event_id], attempts, &[], 0)
    }

    /// [`Spool::set_attempts`] for several records (a batch) and [`Spool::append_log`], in one
    /// transaction: the worker's "attempt failed, retry later" step.
    pub fn set_attempts_and_log(
        &self,
        event_ids: &[u64],
        attempts: u32,
        log_entries: &[Bytes],
        keep: usize,
    ) -> Result<(), SpoolError> {
        if event_ids.is_empty() && log_entries.is_empty() {
            return Ok(());
        }
        self.write(|tx, meta| {
            {
                let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
                for &event_id in event_ids {
                    let mut value = match table.get(event_id).map_err(|e| self.err(e))? {
                        Some(v) => v.value().to_vec(),
                        None => continue,
                    };
                    if value.len() < HEADER_LEN || value[0] != RECORD_VERSION {
                        return Err(self.corrupt_record(event_id, "bad header".into()));
                    }
                    value[1..5].copy_from_slice(&attempts.to_le_bytes());
                    table
                        .insert(event_id, value.as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            if !log_entries.is_empty() {
                self.log_in(tx, meta, log_entries, keep)?;
            }
            Ok(())
        })
    }

    /// Removes the records accepted more than `discard_after` before `now_ms`, oldest first,
    /// stopping at the first younger one (records are in acceptance order; after a backwards
    /// clock step a few may outlive their deadline until the ones before them expire). Returns
    /// how many were removed. Writes nothing when none is due.
    pub fn expire(&self, now_ms: u64) -> Result<u64, SpoolError> {
        self.expire_keeping(now_ms, &|_| {})
    }

    /// [`Spool::expire`], handing the expired records to `keep` first, in the same write (so
    /// a crash after `keep` leaves them spooled, to be expired and kept again, never lost).
    /// `keep` may run more than once for the same records when the write is retried.
    pub fn expire_keeping(
        &self,
        now_ms: u64,
        keep: &(dyn Fn(&[SpoolRecord]) + Sync),
    ) -> Result<u64, SpoolError> {
        let max_age = u64::try_from(self.limits().discard_after.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms.saturating_sub(max_age);
        let due = |value: &[u8]| header_accepted_at(value).is_some_and(|at| at < cutoff);
        let any_due = self.read(|tx| {
            let table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let first = table.first().map_err(|e| self.err(e))?;
            Ok(first.is_some_and(|(_, v)| due(v.value())))
        })?;
        if !any_due {
            return Ok(0);
        }
        self.write_freeing(|tx, meta| {
            let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut records = Vec::new();
            for entry in table.iter().map_err(|e| self.err(e))? {
                let (key, value) = entry.map_err(|e| self.err(e))?;
                if !due(value.value()) {
                    break;
                }
                if let Ok(r) = decode(key.value(), value.value()) {
                    records.push(r);
                }
            }
            keep(&records);
            let mut removed = 0;
            loop {
                let next_due = match table.first().map_err(|e| self.err(e))? {
                    Some((_, v)) => due(v.value()),
                    None => false,
                };
                if !next_due {
                    break;
                }
                if let Some((_, value)) = table.pop_first().map_err(|e| self.err(e))? {
                    meta.bytes = meta.bytes.saturating_sub(value.value().len() as u64);
                    meta.depth = meta.depth.saturating_sub(1);
                    removed += 1;
                }
            }
            meta.expired += removed;
            Ok(removed)
        })
    }

    /// Appends delivery-log entries (opaque bytes, in order) and keeps only the newest `keep`.
    pub fn append_log(&self, entries: &[Bytes], keep: usize) -> Result<(), SpoolError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(|tx, meta| self.log_in(tx, meta, entries, keep))
    }

    fn log_in(
        &self,
        tx: &WriteTransaction,
        meta: &mut Meta,
        entries: &[Bytes],
        keep: usize,
    ) -> Result<(), SpoolError> {
        let mut table = tx.open_table(LOG).map_err(|e| self.err(e))?;
        // Entries that would be trimmed at once are not written at all.
        let skip = entries.len().saturating_sub(keep);
        meta.log_seq += skip as u64;
        for entry in &entries[skip..] {
            meta.log_seq += 1;
            table
                .insert(meta.log_seq, entry.as_ref())
                .map_err(|e| self.err(e))?;
        }
        let mut len = table.len().map_err(|e| self.err(e))?;
        while len > keep as u64 {
            if table.pop_first().map_err(|e| self.err(e))?.is_none() {
                break;
            }
            len -= 1;
        }
        Ok(())
    }

    /// The newest `limit` log entries, newest last.
    pub fn recent_log(&self, limit: usize) -> Result<Vec<Bytes>, SpoolError> {
        self.read(|tx| {
            let table = tx.open_table(LOG).map_err(|e| self.err(e))?;
            let mut out = Vec::with_capacity(limit.min(4096));
            for entry in table
                .range::<u64>(..)
                .map_err(|e| self.err(e))?
                .rev()
                .take(limit)
            {
                let (_, value) = entry.map_err(|e| self.err(e))?;
                out.push(Bytes::copy_from_slice(value.value()));
            }
            out.reverse();
            Ok(out)
        })
    }

    fn corrupt_record(&self, event_id: u64, detail: String) -> SpoolError {
        SpoolError::corrupt(&self.path, format!("record {event_id}: {detail}"))
    }

    fn db(&self) -> RwLockReadGuard<'_, Option<Database>> {
        // The slot is only ever replaced whole, so a poisoned lock still holds a valid value.
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    fn closed(&self) -> SpoolError {
        SpoolError::Storage {
            path: self.path.clone(),
            detail: "closed after a failed write; it is reopened on the next write".into(),
        }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let db = self.db();
        let db = db.as_ref().ok_or_else(|| self.closed())?;
        let tx = db.begin_read().map_err(|e| self.err(e))?;
        f(&tx)
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // Guards no data of its own: a poisoned lock is as good as a clean one.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one write transaction with the meta values loaded, stores them and commits
    /// (one fsync). On an error nothing is committed; a storage error makes the next write
    /// reopen the database first.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction, &mut Meta) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let _writer = self.lock_writer();
        if self.reopen.load(Ordering::Relaxed) {
            if let Err(e) = self.reopen_db() {
                self.set_write_error(Some(e.to_string()));
                return Err(e);
            }
        }
        let result = self.write_locked(f);
        match &result {
            Ok(_) => self.set_write_error(None),
            Err(SpoolError::OutOfOrder { .. } | SpoolError::InvalidRecord { .. }) => {}
            Err(e) => {
                self.reopen.store(true, Ordering::Relaxed);
                self.set_write_error(Some(e.to_string()));
            }
        }
        result
    }

    fn write_locked<T>(
        &self,
        f: impl FnOnce(&WriteTransaction, &mut Meta) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let db = self.db();
        let db = db.as_ref().ok_or_else(|| self.closed())?;
        let tx = db.begin_write().map_err(|e| self.err(e))?;
        let mut meta = {
            let table = tx.open_table(META).map_err(|e| self.err(e))?;
            Meta::load(&table).map_err(|e| self.err(e))?
        };
        let out = f(&tx, &mut meta)?;
        {
            let mut table = tx.open_table(META).map_err(|e| self.err(e))?;
            meta.store(&mut table).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.mirror.set(&meta);
        Ok(out)
    }

    /// Closes and reopens the database after a failed write (redb refuses to write again
    /// before that), then reloads the counters. Called with the writer lock held.
    fn reopen_db(&self) -> Result<(), SpoolError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        // Close first: redb holds a lock on the file.
        drop(slot.take());
        let db = open_db(&self.path)?;
        let meta = {
            let tx = db.begin_read().map_err(|e| self.err(e))?;
            let table = tx.open_table(META).map_err(|e| self.err(e))?;
            Meta::load(&table).map_err(|e| self.err(e))?
        };
        *slot = Some(db);
        self.mirror.set(&meta);
        self.reopen.store(false, Ordering::Relaxed);
        warn!(path = %self.path.display(), "webhook spool reopened after a failed write");
        Ok(())
    }
}

/// What an I/O error means to the spool and the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoClass {
    /// No space left (ENOSPC) or over quota (EDQUOT).
    DiskFull,
    /// A read-only file system (EROFS) or no permission.
    ReadOnly,
    Other,
}

impl IoClass {
    pub(crate) fn of(e: &io::Error) -> IoClass {
        // ENOSPC, EDQUOT, EROFS: matched by number too, for kinds std maps to `Other`.
        match (e.kind(), e.raw_os_error()) {
            (io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded, _)
            | (_, Some(28 | 122)) => IoClass::DiskFull,
            (io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied, _)
            | (_, Some(30)) => IoClass::ReadOnly,
            _ => IoClass::Other,
        }
    }
}

/// What a redb error means to the spool and the archive (each words it in its own error type).
#[derive(Debug)]
pub(crate) enum RedbFault {
    Io(io::Error),
    /// The file is damaged or not a redb database; the detail says how.
    Corrupt(String),
    /// Another process (or another handle in this one) has the file open.
    Locked,
    /// A redb database, but its tables are not the ones this code expects.
    NotOurs,
    /// An earlier write failed: redb refuses to write until the database is reopened.
    PreviousIo,
    Other(String),
}

impl RedbFault {
    pub(crate) fn of(e: redb::Error) -> RedbFault {
        match e {
            redb::Error::Io(source) => RedbFault::Io(source),
            redb::Error::Corrupted(detail) => RedbFault::Corrupt(detail),
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
                RedbFault::Locked
            }
            redb::Error::TableTypeMismatch { .. } | redb::Error::UpgradeRequired(_) => {
                RedbFault::NotOurs
            }
            redb::Error::PreviousIo => RedbFault::PreviousIo,
            other => RedbFault::Other(other.to_string()),
        }
    }
}

/// Creates the file with mode 0600 when missing, else makes sure it is a regular file of
/// mode 0600.
pub(crate) fn prepare_file(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.permissions().mode() & 0o777 != 0o600 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Opens the spool's redb file (see [`open_redb`]).
fn open_db(path: &Path) -> Result<Database, SpoolError> {
    open_redb(path, CACHE_BYTES, "webhook spool").map_err(|f| SpoolError::fault(path, f))
}

/// Opens a redb file with a page cache of `cache_bytes`, checking its integrity (so a damaged
/// file is an error now rather than a surprise later). redb repairs a file left by a crash on
/// its own; that is logged, with `what` the file is ("webhook spool", "archive").
pub(crate) fn open_redb(
    path: &Path,
    cache_bytes: usize,
    what: &'static str,
) -> Result<Database, RedbFault> {
    let logged = Arc::new(AtomicBool::new(false));
    let shown = path.display().to_string();
    let mut builder = Database::builder();
    builder
        .set_cache_size(cache_bytes)
        .set_check_integrity_on_open(true)
        .set_repair_callback(move |session| {
            if !logged.swap(true, Ordering::Relaxed) {
                warn!(path = %shown, progress = session.progress(), "{what} was not closed cleanly; recovering it");
            }
        });
    // redb reports damaged files as errors; the guard keeps a panic on a file damaged in a way
    // it does not foresee from taking the daemon down (it becomes a "corrupt" error instead).
    match catch_unwind(AssertUnwindSafe(|| builder.create(path))) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(match RedbFault::of(e.into()) {
            // A file that is not a redb database at all.
            RedbFault::Io(source) if source.kind() == io::ErrorKind::InvalidData => {
                RedbFault::Corrupt(format!("not a {what} ({source})"))
            }
            other => other,
        }),
        Err(_) => Err(RedbFault::Corrupt("the database could not be read".into())),
    }
}

fn encode(r: &SpoolRecord) -> Result<Vec<u8>, String> {
    let id_len = u16::try_from(r.webhook_id.len())
        .map_err(|_| format!("webhook_id is {} bytes; at most 65535", r.webhook_id.len()))?;
    let mut v = Vec::with_capacity(HEADER_LEN + r.webhook_id.len() + r.payload.len());
    v.push(RECORD_VERSION);
    v.extend_from_slice(&r.attempts.to_le_bytes());
    v.extend_from_slice(&r.accepted_at_ms.to_le_bytes());
    v.extend_from_slice(&id_len.to_le_bytes());
    v.extend_from_slice(r.webhook_id.as_bytes());
    v.extend_from_slice(&r.payload);
    Ok(v)
}

fn header_accepted_at(v: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = v.get(5..13)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn decode(event_id: u64, v: &[u8]) -> Result<SpoolRecord, String> {
    if v.len() < HEADER_LEN {
        return Err(format!("{} bytes, shorter than its header", v.len()));
    }
    if v[0] != RECORD_VERSION {
        return Err(format!("unknown record version {}", v[0]));
    }
    let u32_at = |i: usize| {
        v.get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let attempts = u32_at(1).ok_or("truncated header")?;
    let accepted_at_ms = header_accepted_at(v).ok_or("truncated header")?;
    let id_len = v
        .get(13..15)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or("truncated header")? as usize;
    let id_bytes = v
        .get(HEADER_LEN..HEADER_LEN + id_len)
        .ok_or("webhook_id runs past the record")?;
    let webhook_id = std::str::from_utf8(id_bytes)
        .map_err(|_| "webhook_id is not UTF-8".to_string())?
        .to_string();
    Ok(SpoolRecord {
        event_id,
        webhook_id,
        accepted_at_ms,
        attempts,
        payload: Bytes::copy_from_slice(&v[HEADER_LEN + id_len..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, payload: &str) -> SpoolRecord {
        SpoolRecord {
            event_id: id,
            webhook_id: format!("msg_0_{id}"),
            accepted_at_ms: 1_000 + id,
            attempts: 0,
            payload: Bytes::from(payload.to_string()),
        }
    }

    #[test]
    fn records_round_trip_through_their_encoding() {
        let r = SpoolRecord {
            attempts: 7,
            ..rec(42, r#"{"event_id":42}"#)
        };
        let v = encode(&r).unwrap();
        assert_eq!(v.len() as u64, r.stored_len());
        assert_eq!(decode(42, &v).unwrap(), r);
        assert_eq!(header_accepted_at(&v), Some(1_042));
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let v = encode(&rec(1, "{}")).unwrap();
        for cut in 0..v.len() {
            let _ = decode(1, &v[..cut]);
        }
        assert!(decode(1, &v[..3]).is_err());
        let mut bad = v.clone();
        bad[0] = 9;
        assert!(decode(1, &bad).unwrap_err().contains("version"));
        let mut long_id = v;
        long_id[13] = 0xff;
        assert!(decode(1, &long_id).is_err());
    }

    #[test]
    fn io_errors_are_classified() {
        let p = Path::new("/x/spool");
        let full = SpoolError::io(p, io::Error::from_raw_os_error(28));
        assert!(matches!(full, SpoolError::DiskFull { .. }), "{full:?}");
        assert!(full.to_string().contains("/x/spool"));
        let ro = SpoolError::io(p, io::Error::from_raw_os_error(30));
        assert!(matches!(ro, SpoolError::ReadOnly { .. }), "{ro:?}");
        let other = SpoolError::io(p, io::Error::from_raw_os_error(5));
        assert!(matches!(other, SpoolError::Io { .. }));
        assert_eq!(other.path(), p);
    }
}
