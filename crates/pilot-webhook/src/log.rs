//! The delivery log: the last [`LOG_CAPACITY`] attempts in memory (a ring buffer), one
//! [`DeliveryRecord`] per event per attempt (a batch attempt logs each of its events), with the
//! payload of each logged event kept (shared bytes, no copy) so it can be redelivered while it is
//! still in the log. Memory is bounded by the entries in the ring and their payloads.
//!
//! Logging is on every attempt's path, so the ring keeps each entry as a [`Logged`]: the
//! record's parts with its strings shared (the event name, `webhook-id`, URL and error are
//! `Arc<str>` clones, no allocation), and a [`DeliveryRecord`] is made only when one is read or
//! a sink is set.
//!
//! The log is pluggable: a [`DeliveryLogSink`] sees every record as it is logged (the daemon
//! may set one), the plugin's own persistence sink does too (durable mode writes the log to
//! the spool file), and [`DeliveryLog::restore`] puts persisted records back after a restart
//! (without payloads).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How many attempts the log keeps.
pub const LOG_CAPACITY: usize = 1000;

/// One attempt to deliver one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The event's id (0 for `webhook test`).
    pub event_id: u64,
    /// The event's name.
    pub event: String,
    /// The `webhook-id` the request carried (or would have, when unsigned).
    pub webhook_id: String,
    /// The URL, its password (if any) shown as `***`.
    pub url: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The response status, if a response came.
    pub status: Option<u16>,
    /// From sending the request until the response headers (or the failure).
    pub latency_ms: f64,
    /// Why the attempt failed.
    pub error: Option<String>,
    /// When the attempt started.
    pub at: jiff::Timestamp,
    /// Whether it was answered with a 2xx.
    pub ok: bool,
    /// When the body was a batch: how many events it carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
}

/// Sees every record as it is logged, in order. Called on the delivery path: it must not block
/// (hand the records to a channel or a background writer).
pub trait DeliveryLogSink: Send + Sync {
    /// The records of one attempt (several for a batch).
    fn on_records(&self, records: &[DeliveryRecord]);
}

/// One attempt of one event, as the ring keeps it (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub(crate) event_id: u64,
    pub(crate) event: Arc<str>,
    pub(crate) webhook_id: Arc<str>,
    pub(crate) url: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) status: Option<u16>,
    pub(crate) latency_ms: f64,
    pub(crate) error: Option<Arc<str>>,
    pub(crate) at: jiff::Timestamp,
    pub(crate) ok: bool,
    pub(crate) batch: Option<usize>,
    /// The payload sent, kept for `redeliver` (none for restored records).
    pub(crate) payload: Option<Bytes>,
}

impl Logged {
    /// The record as the log shows it.
    pub(crate) fn record(&self) -> DeliveryRecord {
        DeliveryRecord {
            event_id: self.event_id,
            event: self.event.to_string(),
            webhook_id: self.webhook_id.to_string(),
            url: self.url.to_string(),
            attempt: self.attempt,
            status: self.status,
            latency_ms: self.latency_ms,
            error: self.error.as_deref().map(str::to_string),
            at: self.at,
            ok: self.ok,
            batch: self.batch,
        }
    }

    /// A persisted record (without payload).
    fn restored(r: DeliveryRecord) -> Self {
        Self {
            event_id: r.event_id,
            event: r.event.into(),
            webhook_id: r.webhook_id.into(),
            url: r.url.into(),
            attempt: r.attempt,
            status: r.status,
            latency_ms: r.latency_ms,
            error: r.error.map(Into::into),
            at: r.at,
            ok: r.ok,
            batch: r.batch,
            payload: None,
        }
    }
}

/// The ring of recent attempts, and the sink.
pub(crate) struct DeliveryLog {
    capacity: usize,
    ring: Mutex<VecDeque<Logged>>,
    sink: RwLock<Option<Arc<dyn DeliveryLogSink>>>,
    /// The plugin's own sink (durable mode's on-disk log), beside the public one.
    persist: RwLock<Option<Arc<dyn DeliveryLogSink>>>,
}

impl std::fmt::Debug for DeliveryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryLog")
            .field("capacity", &self.capacity)
            .field("len", &self.ring().len())
            .finish()
    }
}

impl DeliveryLog {
    /// An empty log keeping `capacity` attempts (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(LOG_CAPACITY))),
            sink: RwLock::new(None),
            persist: RwLock::new(None),
        }
    }

    fn ring(&self) -> MutexGuard<'_, VecDeque<Logged>> {
        // Updates are single pushes and pops: a poisoned lock still guards a valid ring.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets (or removes) the sink.
    pub(crate) fn set_sink(&self, sink: Option<Arc<dyn DeliveryLogSink>>) {
        *self.sink.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    /// Sets (or removes) the plugin's persistence sink.
    pub(crate) fn set_persist(&self, sink: Option<Arc<dyn DeliveryLogSink>>) {
        *self.persist.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    /// Logs the entries of one attempt (one per event), then tells the sinks (their records
    /// are made only when a sink is set).
    pub(crate) fn push(&self, entries: impl IntoIterator<Item = Logged>) {
        let sink = self.sink.read().unwrap_or_else(|p| p.into_inner()).clone();
        let persist = self
            .persist
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut for_sink: Option<Vec<DeliveryRecord>> =
            (sink.is_some() || persist.is_some()).then(Vec::new);
        {
            let mut ring = self.ring();
            for entry in entries {
                if let Some(records) = &mut for_sink {
                    records.push(entry.record());
                }
                if ring.len() >= self.capacity {
                    ring.pop_front();
                }
                ring.push_back(entry);
            }
        }
        if let Some(records) = for_sink {
            if let Some(persist) = persist {
                persist.on_records(&records);
            }
            if let Some(sink) = sink {
                sink.on_records(&records);
            }
        }
    }

    /// Puts persisted records back, older than anything logged since (no payloads).
    pub(crate) fn restore(&self, records: Vec<DeliveryRecord>) {
        let mut ring = self.ring();
        for record in records.into_iter().rev() {
            if ring.len() >= self.capacity {
                break;
            }
            ring.push_front(Logged::restored(record));
        }
    }

    /// The newest `limit` records (every one for 0), failed ones only if asked, newest last.
    pub(crate) fn list(&self, failed_only: bool, limit: usize) -> Vec<DeliveryRecord> {
        let ring = self.ring();
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut out: Vec<DeliveryRecord> = ring
            .iter()
            .rev()
            .filter(|e| !failed_only || !e.ok)
            .take(limit)
            .map(Logged::record)
            .collect();
        out.reverse();
        out
    }

    /// The newest record of `event_id` whose payload is still kept, with the payload.
    pub(crate) fn find(&self, event_id: u64) -> Option<(DeliveryRecord, Bytes)> {
        self.ring()
            .iter()
            .rev()
            .filter(|e| e.event_id == event_id)
            .find_map(|e| e.payload.clone().map(|p| (e.record(), p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(event_id: u64, ok: bool) -> DeliveryRecord {
        DeliveryRecord {
            event_id,
            event: "a.b".into(),
            webhook_id: format!("msg_x_{event_id}"),
            url: "http://h/".into(),
            attempt: 1,
            status: ok.then_some(200),
            latency_ms: 1.5,
            error: (!ok).then(|| "HTTP 500".into()),
            at: jiff::Timestamp::UNIX_EPOCH,
            ok,
            batch: None,
        }
    }

    /// The ring entry of `record` with `payload`.
    fn entry(record: DeliveryRecord, payload: Option<Bytes>) -> Logged {
        Logged {
            payload,
            ..Logged::restored(record)
        }
    }

    fn payload(id: u64) -> Option<Bytes> {
        Some(Bytes::from(format!("{{\"event_id\":{id}}}")))
    }

    #[test]
    fn keeps_the_newest_entries_and_their_payloads_only() {
        let log = DeliveryLog::new(3);
        for id in 1..=5 {
            log.push(vec![entry(rec(id, id % 2 == 0), payload(id))]);
        }
        let ids: Vec<u64> = log.list(false, 0).iter().map(|r| r.event_id).collect();
        assert_eq!(ids, [3, 4, 5], "oldest dropped, newest last");
        assert!(log.find(2).is_none(), "payloads go with their entries");
        assert_eq!(log.find(4).unwrap().1, payload(4).unwrap());
        let failed: Vec<u64> = log.list(true, 0).iter().map(|r| r.event_id).collect();
        assert_eq!(failed, [3, 5]);
        let last: Vec<u64> = log.list(false, 2).iter().map(|r| r.event_id).collect();
        assert_eq!(last, [4, 5]);
        assert_eq!(log.list(true, 1)[0].event_id, 5);
    }

    #[test]
    fn find_takes_the_newest_attempt_with_a_payload() {
        let log = DeliveryLog::new(10);
        log.push(vec![entry(rec(1, false), payload(1))]);
        let mut second = rec(1, true);
        second.attempt = 2;
        log.push(vec![entry(second, payload(1))]);
        assert_eq!(log.find(1).unwrap().0.attempt, 2);
        assert!(log.find(9).is_none());
    }

    #[test]
    fn restored_records_come_first_and_have_no_payload() {
        let log = DeliveryLog::new(3);
        log.push(vec![entry(rec(10, true), payload(10))]);
        log.restore(vec![rec(1, true), rec(2, false), rec(3, true)]);
        let ids: Vec<u64> = log.list(false, 0).iter().map(|r| r.event_id).collect();
        assert_eq!(ids, [2, 3, 10]);
        assert!(log.find(2).is_none());
    }

    #[test]
    fn the_sink_sees_every_record_in_order() {
        #[derive(Default)]
        struct Collect(Mutex<Vec<u64>>);
        impl DeliveryLogSink for Collect {
            fn on_records(&self, records: &[DeliveryRecord]) {
                self.0
                    .lock()
                    .unwrap()
                    .extend(records.iter().map(|r| r.event_id));
            }
        }
        let sink = Arc::new(Collect::default());
        let log = DeliveryLog::new(2);
        log.push(vec![entry(rec(1, true), None)]);
        log.set_sink(Some(sink.clone()));
        log.push(vec![entry(rec(2, true), None), entry(rec(3, true), None)]);
        log.push(vec![entry(rec(4, true), None)]);
        assert_eq!(*sink.0.lock().unwrap(), [2, 3, 4]);
        let json = serde_json::to_value(rec(5, false)).unwrap();
        assert_eq!(json["status"], serde_json::Value::Null);
        assert_eq!(json["at"], "1970-01-01T00:00:00Z");
        assert!(json.get("batch").is_none());
        let back: DeliveryRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, rec(5, false));
    }
}
