//! The webhook's spooler: pilot-spool's spooler with durable mode's record ids
//! ([`durable_webhook_id`]: `msg_<node_id>_<event_id>`, stored with each record).

use std::sync::Arc;

use pilot_core::bus::DurableSink;
use pilot_core::Subscription;
use pilot_spool::{Spool, SpoolerCounters, SpoolerReport};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::batch::durable_webhook_id;

/// Moves events from `sub` into `spool` in group commits, each with its
/// [`durable_webhook_id`], advancing `sink`; see [`pilot_spool::run_spooler`].
pub async fn run_spooler(
    sub: Subscription,
    spool: Arc<Spool>,
    sink: DurableSink,
    notify: Arc<Notify>,
    stop: CancellationToken,
) -> SpoolerReport {
    run_spooler_counted(sub, spool, sink, notify, stop, &SpoolerCounters::default()).await
}

/// [`run_spooler`], counting its progress into `counters` as it goes.
pub(crate) async fn run_spooler_counted(
    sub: Subscription,
    spool: Arc<Spool>,
    sink: DurableSink,
    notify: Arc<Notify>,
    stop: CancellationToken,
    counters: &SpoolerCounters,
) -> SpoolerReport {
    let id = durable_webhook_id;
    pilot_spool::run_spooler_counted(sub, spool, sink, notify, stop, counters, id).await
}
