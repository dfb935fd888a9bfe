//! The spool as the plugin keeps it: opened once ([`open_spool`], [`open_existing_spool`]) with
//! the limits a webhook's settings ask for ([`spool_limits`]), and durable mode's delivery log on
//! disk ([`SpoolLog`]), written in the spool's own transactions. Spool calls are blocking: async
//! callers go through [`blocking`].

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use pilot_core::WebhookSettings;
use tracing::warn;

use crate::error::WebhookError;
use crate::log::{DeliveryLogSink, DeliveryRecord, LOG_CAPACITY};
use pilot_spool::{Spool, SpoolError, SpoolLimits};

/// Opens the spool at `path`, creating it (mode 0600) when missing. The parent directory must
/// exist. Errors name the file (locked by another process, corrupt, read-only...).
pub fn open_spool(path: &Path) -> Result<Arc<Spool>, WebhookError> {
    Ok(Arc::new(Spool::open(path, SpoolLimits::default())?))
}

/// Opens the spool at `path` if the file exists (`Ok(None)` when it does not: nothing was ever
/// spooled there, and the plugin creates it on the first durable configure). The daemon calls
/// this before it creates the bus, to start the bus after [`Spool::last_event_id`], and passes
/// the spool in [`crate::WebhookOptions::spool`].
pub fn open_existing_spool(path: &Path) -> Result<Option<Arc<Spool>>, WebhookError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => open_spool(path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
        .into()),
    }
}

/// The spool limits a webhook's settings ask for (defaults: 256 MiB, 24 h).
pub fn spool_limits(settings: &WebhookSettings) -> SpoolLimits {
    SpoolLimits {
        max_bytes: settings
            .max_spool_bytes
            .unwrap_or(SpoolLimits::DEFAULT_MAX_BYTES),
        discard_after: settings
            .discard_after
            .unwrap_or(SpoolLimits::DEFAULT_DISCARD_AFTER),
    }
}

/// Runs a spool call on the blocking pool; the error as text (a panic included).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SpoolError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("webhook spool call crashed: {e}")),
    }
}

/// The spool the plugin keeps open for its life, and its on-disk delivery log.
pub(crate) struct Store {
    pub(crate) spool: Arc<Spool>,
    pub(crate) log: Arc<SpoolLog>,
}

impl Store {
    pub(crate) fn new(spool: Arc<Spool>) -> Self {
        Self {
            log: Arc::new(SpoolLog::new(spool.clone())),
            spool,
        }
    }
}

/// Durable mode's delivery log on disk: a [`DeliveryLogSink`] that queues each record (as
/// JSON) in memory, and writes the queue in the spool's next transaction: with the removal of
/// delivered records, with a failed attempt's count, or by an explicit flush. Off unless
/// durable delivery is on.
pub(crate) struct SpoolLog {
    spool: Arc<Spool>,
    enabled: AtomicBool,
    pending: Mutex<VecDeque<Bytes>>,
    /// Held (on a blocking thread) from taking the queue to its commit, so the log on disk
    /// keeps the order of the attempts.
    commit: Mutex<()>,
}

impl SpoolLog {
    pub(crate) fn new(spool: Arc<Spool>) -> Self {
        Self {
            spool,
            enabled: AtomicBool::new(false),
            pending: Mutex::new(VecDeque::new()),
            commit: Mutex::new(()),
        }
    }

    /// Turns persistence on (durable mode) or off.
    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn pending(&self) -> MutexGuard<'_, VecDeque<Bytes>> {
        // Pushes and drains only: a poisoned lock still guards a valid queue.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Vec<Bytes> {
        self.pending().drain(..).collect()
    }

    /// Puts entries whose write failed back in front, keeping at most a log's worth.
    fn put_back(&self, entries: Vec<Bytes>) {
        let mut pending = self.pending();
        for e in entries.into_iter().rev() {
            pending.push_front(e);
        }
        while pending.len() > LOG_CAPACITY {
            pending.pop_front();
        }
    }

    fn with_entries<T>(
        &self,
        f: impl FnOnce(&[Bytes]) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let _commit = self.commit.lock().unwrap_or_else(|p| p.into_inner());
        let entries = self.take();
        let result = f(&entries);
        if result.is_err() {
            self.put_back(entries);
        }
        result
    }

    /// Blocking: removes the records of each group of ids and writes the queued log entries,
    /// in one transaction; how many records of each group were removed.
    ///
    /// On a full disk the removal is tried again alone: it only frees pages inside the spool
    /// file (for new events), while the log entries would need new ones; they wait (queued
    /// again) for a commit that has room.
    pub(crate) fn remove_groups(&self, groups: &[&[u64]]) -> Result<Vec<u64>, SpoolError> {
        let with_log = self.with_entries(|entries| {
            self.spool
                .remove_groups_and_log(groups, entries, LOG_CAPACITY)
        });
        match with_log {
            Err(SpoolError::DiskFull { .. }) => {
                let _commit = self.commit.lock().unwrap_or_else(|p| p.into_inner());
                self.spool.remove_groups_and_log(groups, &[], LOG_CAPACITY)
            }
            other => other,
        }
    }

    /// Blocking: stores the attempt count of `ids` and writes the queued log entries, in one
    /// transaction.
    pub(crate) fn set_attempts(&self, ids: &[u64], attempts: u32) -> Result<(), SpoolError> {
        self.with_entries(|entries| {
            self.spool
                .set_attempts_and_log(ids, attempts, entries, LOG_CAPACITY)
        })
    }

    /// Blocking: writes the queued log entries (nothing when none).
    pub(crate) fn flush(&self) -> Result<(), SpoolError> {
        self.with_entries(|entries| self.spool.append_log(entries, LOG_CAPACITY))
    }

    /// Writes the queued log entries on the blocking pool; a failure is logged.
    pub(crate) async fn flush_async(self: &Arc<Self>) {
        if self.pending().is_empty() {
            return;
        }
        let log = self.clone();
        if let Err(e) = blocking(move || log.flush()).await {
            warn!(error = %e, "webhook delivery log could not be written to the spool");
        }
    }

    /// Blocking: the persisted log, oldest first (entries that do not parse are skipped).
    pub(crate) fn load(&self) -> Result<Vec<DeliveryRecord>, SpoolError> {
        let entries = self.spool.recent_log(LOG_CAPACITY)?;
        let mut skipped = 0;
        let records: Vec<DeliveryRecord> = entries
            .iter()
            .filter_map(|e| {
                let r = serde_json::from_slice(e).ok();
                skipped += usize::from(r.is_none());
                r
            })
            .collect();
        if skipped > 0 {
            warn!(
                skipped,
                path = %self.spool.path().display(),
                "webhook delivery log entries in the spool could not be read; skipped"
            );
        }
        Ok(records)
    }
}

impl DeliveryLogSink for SpoolLog {
    fn on_records(&self, records: &[DeliveryRecord]) {
        if !self.is_enabled() {
            return;
        }
        let mut pending = self.pending();
        for r in records {
            match serde_json::to_vec(r) {
                Ok(v) => pending.push_back(Bytes::from(v)),
                Err(e) => warn!(error = %e, "webhook delivery record not persisted"),
            }
        }
        while pending.len() > LOG_CAPACITY {
            pending.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn limits_come_from_the_settings() {
        assert_eq!(
            spool_limits(&WebhookSettings::default()),
            SpoolLimits::default()
        );
        let s = WebhookSettings {
            max_spool_bytes: Some(1000),
            discard_after: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        assert_eq!(
            spool_limits(&s),
            SpoolLimits {
                max_bytes: 1000,
                discard_after: Duration::from_secs(3)
            }
        );
    }

    #[test]
    fn the_log_sink_queues_only_when_enabled_and_writes_with_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open_spool(&dir.path().join("s.redb")).unwrap();
        let log = SpoolLog::new(spool.clone());
        let rec = DeliveryRecord {
            event_id: 1,
            event: "a.b".into(),
            webhook_id: "msg_0_1".into(),
            url: "http://h/".into(),
            attempt: 1,
            status: Some(200),
            latency_ms: 1.0,
            error: None,
            at: jiff::Timestamp::UNIX_EPOCH,
            ok: true,
            batch: None,
        };
        log.on_records(std::slice::from_ref(&rec));
        assert!(log.pending().is_empty(), "off by default");
        log.set_enabled(true);
        log.on_records(&[rec.clone(), rec.clone()]);
        assert_eq!(log.remove_groups(&[&[42], &[]]).unwrap(), vec![0, 0]);
        assert!(log.pending().is_empty());
        assert_eq!(log.load().unwrap(), vec![rec.clone(), rec.clone()]);
        log.on_records(std::slice::from_ref(&rec));
        log.flush().unwrap();
        assert_eq!(log.load().unwrap().len(), 3);
    }

    #[test]
    fn open_existing_spool_is_none_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        assert!(open_existing_spool(&path).unwrap().is_none());
        assert!(!path.exists(), "not created");
        drop(open_spool(&path).unwrap());
        assert!(open_existing_spool(&path).unwrap().is_some());
        let err = open_spool(&dir.path().join("missing-dir/s.redb")).unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }
}
