//! pilot-webhook: the webhook plugin. It subscribes to the pilot-core bus and POSTs every event
//! (its shared, already-encoded payload) to one HTTP(S) URL, in publish order, with retries,
//! backoff, a circuit breaker, an SSRF guard at connect time, hot swap and graceful shutdown.
//!
//! The plugin knows nothing of sockets, IPC or the CLI; the daemon owns a [`WebhookPlugin`] and
//! shows its [`Stats`]. URL rules live in `pilot_core::webhook_url` and are re-exported here.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pilot_webhook::UrlError> {
//! use pilot_webhook::{validate_url, WebhookOptions, WebhookPlugin};
//!
//! let bus = pilot_core::Bus::new(0);
//! let url = validate_url("http://localhost:8080/events")?;
//! let plugin = WebhookPlugin::start(bus.clone(), Some(url), WebhookOptions::default());
//! bus.publish("handshake.received", None); // POSTed in the background
//! plugin.set_url(Some(validate_url("http://localhost:9090/v2/events")?)); // returns at once
//! println!("{:?}", plugin.stats());
//! plugin.shutdown().await; // delivers what is queued, bounded by drain_timeout
//! # Ok(())
//! # }
//! ```

pub mod circuit;
mod client;
mod error;
mod options;
mod plugin;
mod stats;
mod worker;

pub use circuit::CircuitState;
pub use error::{redact as redact_url, DeliveryError};
pub use options::WebhookOptions;
pub use pilot_core::webhook_url::{
    check_hostname, check_ip, validate as validate_url, Url, UrlError,
};
pub use plugin::{WebhookPlugin, BUS_LABEL};
pub use stats::Stats;

/// The integration tests' HTTP receiver, shared with the unit tests.
#[cfg(test)]
#[path = "../tests/webhook/receiver.rs"]
mod test_receiver;
