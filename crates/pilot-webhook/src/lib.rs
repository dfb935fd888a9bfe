//! pilot-webhook: the webhook plugin. It subscribes to the pilot-core bus and POSTs every event
//! (its shared, already-encoded payload) to one HTTP(S) URL, in publish order, with retries
//! (backoff with jitter, `Retry-After`), a circuit breaker, an SSRF guard at connect time, hot
//! swap and graceful shutdown. Per webhook ([`pilot_core::WebhookSettings`]): include/exclude
//! filters, extra headers, Bearer/Basic auth from a file, `insecure_tls`, batching, and
//! `concurrency` (up to N requests in flight, unordered, in memory mode; see the worker's
//! docs and [`circuit`]). Requests are
//! signed (Standard Webhooks and `X-Pilot-Signature-256`) once secrets are set. A 410 Gone
//! disables the webhook until it is set again. The last 1000 attempts are kept in a delivery log,
//! and `test` / `redeliver` send one attempt at once.
//!
//! With `settings.durable`, delivery is at-least-once through an on-disk spool ([`durable`]):
//! every event is on disk before the bus's durability watermark passes it, and is removed only
//! after a 2xx; it survives endpoint outages, restarts and crashes. The daemon opens an existing
//! spool ([`open_existing_spool`]) before it creates the bus, starts the bus after the spool's
//! last event id, and passes the spool (or at least its path) in [`WebhookOptions`].
//!
//! The plugin knows nothing of sockets, IPC or the CLI; the daemon owns a [`WebhookPlugin`] and
//! shows its [`Stats`]. URL rules live in `pilot_core::webhook_url` and are re-exported here.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pilot_webhook::{validate_url, WebhookOptions, WebhookPlugin, WebhookSettings};
//!
//! let bus = pilot_core::Bus::new(0);
//! let url = validate_url("http://localhost:8080/events")?;
//! let settings = WebhookSettings {
//!     events: vec!["handshake.*".into()],
//!     headers: vec!["X-Team: blue".into()],
//!     ..Default::default()
//! };
//! let plugin = WebhookPlugin::start_with(bus.clone(), Some((url, settings)), WebhookOptions::default())?;
//! plugin.set_secrets(vec![pilot_core::secrets::generate()]); // signed from the next attempt
//! bus.publish("handshake.received", None); // POSTed in the background
//! plugin.set_url(Some(validate_url("http://localhost:9090/v2/events")?)); // returns at once
//! println!("{:?}", plugin.stats());
//! println!("{:?}", plugin.test().await?); // one signed webhook.test now
//! println!("{:?}", plugin.deliveries(true, 20)); // the last 20 failed attempts
//! plugin.shutdown().await; // delivers what is queued, bounded by drain_timeout
//! # Ok(())
//! # }
//! ```

mod attempt;
pub mod batch;
pub mod circuit;
mod client;
mod config;
pub mod durable;
mod error;
mod files;
mod filter;
mod h1;
mod health;
mod keeper;
mod log;
mod nats;
mod options;
mod plugin;
mod rate;
mod replay;
pub mod retry;
mod sender;
mod shared;
pub mod sign;
mod stats;
mod store;
mod supervise;
mod tls;
mod transport;
mod worker;

pub use attempt::AttemptOutcome;
pub use batch::durable_webhook_id;
pub use circuit::CircuitState;
pub use config::DEFAULT_BATCH_WAIT;
pub use error::{redact as redact_url, DeliveryError, WebhookError};
pub use keeper::Reason as DeadLetterReason;
pub use log::{DeliveryLogSink, DeliveryRecord, LOG_CAPACITY};
pub use options::WebhookOptions;
pub use pilot_core::webhook_url::{
    check_hostname, check_ip, validate as validate_url, Url, UrlError,
};
pub use pilot_core::WebhookSettings;
pub use pilot_spool::{
    run_spooler, AppendOutcome, Archive, ArchiveError, ArchiveLimits, ArchivedEvent, Query, Shelf,
    ShelfStats, Spool, SpoolError, SpoolLimits, SpoolRecord, SpoolStats, SpoolerFault,
    SpoolerReport, SPOOLER_BATCH, SPOOL_FILE,
};
pub use plugin::{WebhookPlugin, BUS_LABEL};
pub use sender::DEFAULT_MAX_BACKOFF;
pub use stats::{
    Accounting, AttemptLatency, LatencyHistogram, ReplayInfo, ShelfInfo, SpoolInfo, Stats,
};
pub use store::{open_existing_spool, open_spool, spool_limits};

/// The integration tests' HTTP receiver, shared with the unit tests.
#[cfg(test)]
#[path = "../tests/webhook/receiver.rs"]
mod test_receiver;
