//! What a plugin shares with its workers and tools: the bus, the options, the counters, the
//! signing secrets, the delivery log, the spool once open, and the endpoint's health. Below the
//! plugin and the workers: it imports neither.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use pilot_core::Bus;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::health::Health;
use crate::keeper::Keeper;
use crate::log::{DeliveryLog, DeliveryLogSink};
use crate::options::WebhookOptions;
use crate::sign::Secrets;
use crate::stats::Counters;
use crate::store::Store;
use pilot_spool::Spool;

/// What the plugin shares with its workers and tools.
pub(crate) struct Shared {
    pub(crate) bus: Bus,
    pub(crate) options: WebhookOptions,
    pub(crate) counters: Arc<Counters>,
    pub(crate) secrets: RwLock<Secrets>,
    pub(crate) log: DeliveryLog,
    /// This plugin's random id, part of every in-memory `webhook-id`.
    pub(crate) instance: String,
    pub(crate) tests_sent: AtomicU64,
    /// The spool, once open.
    pub(crate) store: OnceLock<Arc<Store>>,
    /// Serializes opening the spool (redb allows one open per file).
    pub(crate) opening: Mutex<()>,
    /// Wakes the durable worker when the spooler wrote events.
    pub(crate) notify: Arc<Notify>,
    /// Paused or not, and how long every attempt has failed.
    pub(crate) health: Health,
    /// Hands dead letters and retained deliveries to the archive.
    pub(crate) keeper: Keeper,
}

impl Shared {
    /// The secrets in force (read per attempt).
    pub(crate) fn secrets(&self) -> Secrets {
        self.secrets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The spool, if open.
    pub(crate) fn store(&self) -> Option<&Arc<Store>> {
        self.store.get()
    }

    /// Takes `spool` for the plugin's life: counts what it holds as recovered, restores its
    /// delivery log and persists the log from now on (while durable delivery is on).
    pub(crate) fn install(&self, spool: Arc<Spool>) -> Arc<Store> {
        let store = Arc::new(Store::new(spool));
        if self.store.set(store.clone()).is_err() {
            // Only `open_store` and `idle` install, `opening` held or before any sharing.
            return self.store.get().cloned().unwrap_or(store);
        }
        let spool = &store.spool;
        // What the spool drops for space is kept as dead letters, before the write that drops it.
        let sink = self.keeper.sink();
        let node = self.bus.node_id();
        spool.on_evict(Box::new(move |records| {
            sink.put_records(records, node, crate::keeper::Reason::SpoolFull)
        }));
        let stats = spool.stats();
        {
            let _moving = self.counters.moving();
            self.counters
                .recovered
                .store(stats.depth, Ordering::Relaxed);
        }
        match store.log.load() {
            Ok(records) => self.log.restore(records),
            Err(e) => warn!(error = %e, "webhook delivery log could not be read from the spool"),
        }
        self.log
            .set_persist(Some(store.log.clone() as Arc<dyn DeliveryLogSink>));
        let bus_last = self.bus.last_event_id();
        if stats.last_event_id > bus_last {
            error!(
                path = %spool.path().display(),
                spool_last_event_id = stats.last_event_id,
                bus_last_event_id = bus_last,
                "the bus started below the spool's last event id: the spool will refuse events \
                 until the bus passes it (start the bus with Bus::starting_after)"
            );
        }
        info!(
            path = %spool.path().display(),
            depth = stats.depth,
            bytes = stats.bytes,
            last_event_id = stats.last_event_id,
            "webhook spool open"
        );
        store
    }

    /// Writes the delivery log's pending entries (durable mode).
    pub(crate) async fn flush_log(&self) {
        if let Some(store) = self.store() {
            store.log.flush_async().await;
        }
    }
}
