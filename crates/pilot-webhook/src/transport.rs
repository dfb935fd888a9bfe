//! How one attempt reaches the endpoint: the [`Transport`] trait the sender calls, and HTTP(S),
//! today's only transport ([`Http`]: the signed POST of [`crate::attempt`] over the client's
//! keep-alive pool). Another transport (a message broker, say) implements the trait and
//! leaves the sender, the workers and the spool untouched.

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
        attempt::send_counted(&self.shared, &self.config, delivery, attempt)
            .await
            .result
    }
}
