//! How one attempt reaches the endpoint: the [`Transport`] trait the sender calls, HTTP(S)
//! ([`Http`]: the signed POST of [`crate::attempt`] over the client's keep-alive pool), NATS
//! JetStream ([`Nats`]: pipelined publishes acknowledged by the stream, [`crate::nats`]), and
//! [`Endpoint`], the one an endpoint uses, picked by its URL's scheme.
//!
//! Why an enum and not a generic plugin: the plugin, its workers and the durable worker hold
//! their sender by a concrete type, and the daemon keeps every endpoint in one map whatever
//! its transport. An enum keeps that one type (the transport is statically dispatched through
//! one `match` per attempt, nothing beside a network round trip), where a generic plugin would
//! carry its parameter up to the daemon's endpoint map. Another transport is one more variant.

use std::future::Future;
use std::sync::Arc;

use http::StatusCode;

use crate::attempt;
use crate::batch::Delivery;
use crate::config::Config;
use crate::error::DeliveryError;
use crate::shared::Shared;

/// Sends one attempt of one delivery. `Ok` is a success (a 2xx); every failure is a
/// [`DeliveryError`], which says whether it is worth another attempt, how long the endpoint
/// asked to wait, and whether the endpoint is gone.
pub(crate) trait Transport: Send + Sync {
    /// Makes attempt number `attempt` (1-based) of `delivery`.
    fn send(
        &self,
        delivery: &Delivery,
        attempt: u32,
    ) -> impl Future<Output = Result<StatusCode, DeliveryError>> + Send;
}

/// HTTP(S): one POST per attempt, signed with the secrets in force, recorded in the delivery
/// log and in the latency histogram.
pub(crate) struct Http {
    shared: Arc<Shared>,
    config: Arc<Config>,
}

impl Http {
    pub(crate) fn new(shared: Arc<Shared>, config: Arc<Config>) -> Self {
        Self { shared, config }
    }
}

impl Transport for Http {
    async fn send(&self, delivery: &Delivery, attempt: u32) -> Result<StatusCode, DeliveryError> {
        let sent = attempt::post(&self.shared, &self.config, delivery, attempt).await;
        attempt::counted(&self.shared, sent).result
    }
}

/// NATS JetStream: every event of a delivery published to its subject (pipelined), the
/// stream's acknowledgements awaited together; signed and logged like an HTTP attempt.
pub(crate) struct Nats {
    shared: Arc<Shared>,
    config: Arc<Config>,
}

impl Transport for Nats {
    async fn send(&self, delivery: &Delivery, attempt: u32) -> Result<StatusCode, DeliveryError> {
        let Some(nats) = &self.config.nats else {
            // Built only for a config with a NATS target (Endpoint::new).
            return Err(DeliveryError::BadUrl {
                url: self.config.shown.to_string(),
                detail: "not a NATS endpoint".into(),
            });
        };
        let sent = attempt::publish(&self.shared, &self.config, nats, delivery, attempt).await;
        attempt::counted(&self.shared, sent).result
    }
}

/// The transport of one endpoint: NATS for a `nats://` or `tls://` URL, HTTP(S) otherwise.
pub(crate) enum Endpoint {
    Http(Http),
    Nats(Nats),
}

impl Endpoint {
    /// The transport `config`'s URL asks for.
    pub(crate) fn new(shared: Arc<Shared>, config: Arc<Config>) -> Self {
        if config.nats.is_some() {
            Endpoint::Nats(Nats { shared, config })
        } else {
            Endpoint::Http(Http::new(shared, config))
        }
    }
}

impl Transport for Endpoint {
    async fn send(&self, delivery: &Delivery, attempt: u32) -> Result<StatusCode, DeliveryError> {
        match self {
            Endpoint::Http(t) => t.send(delivery, attempt).await,
            Endpoint::Nats(t) => t.send(delivery, attempt).await,
        }
    }
}
