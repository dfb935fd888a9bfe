//! pilot-metrics: the metrics plugin. It serves `GET /metrics` in the Prometheus text
//! exposition format (OpenMetrics 1.0 text, encoded by the `prometheus-client` crate), built on
//! every scrape from a [`Snapshot`] that its owner supplies through a [`Source`].
//!
//! The plugin knows nothing of the bus, the webhook plugin or the socket: the daemon fills the
//! plain [`Snapshot`] from the webhook plugin's stats and the bus's counters. No URL ever goes
//! into a label (a webhook URL's userinfo or query may carry secrets).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pilot_metrics::{Metrics, MetricsServer, Snapshot};
//! use tokio_util::{sync::CancellationToken, task::TaskTracker};
//!
//! let server = MetricsServer::bind("127.0.0.1:9464".parse()?).await?; // fails at once if busy
//! let metrics = Metrics::new(|| Snapshot { version: "0.1.0".into(), ..Snapshot::default() });
//! let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
//! server.spawn(metrics, stop.clone(), &tracker);
//! // ... later:
//! stop.cancel();
//! tracker.close();
//! tracker.wait().await;
//! # Ok(())
//! # }
//! ```

mod encode;
mod server;
mod snapshot;

pub use encode::{Metrics, CONTENT_TYPE};
pub use server::{MetricsError, MetricsServer};
pub use snapshot::{
    BusSnapshot, CircuitState, Histogram, ShelfSnapshot, Snapshot, Source, SpoolSnapshot,
    SubscriberSnapshot, WebhookSnapshot,
};
