//! One attempt to deliver one [`Delivery`]: over HTTP ([`post`]: the headers of this attempt
//! (extra headers, auth, and the signatures with this attempt's timestamp) and the POST) or to
//! NATS JetStream ([`publish`], see [`crate::nats`]), its latency, and its records in the
//! delivery log. [`send`] picks by the endpoint's URL. Shared by the transports and the `test` /
//! `redeliver` tools. A delivery its template rendered carries the template's `Content-Type`
//! and headers; one it could not render is never sent: its attempt is logged with the
//! template's error.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde::Serialize;
use tokio::time::Instant;
use tracing::warn;

use crate::batch::Delivery;
use crate::config::Config;
use crate::error::DeliveryError;
use crate::log::Logged;
use crate::nats::NatsTarget;
use crate::shared::Shared;

/// What `test` and `redeliver` report of their one attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptOutcome {
    /// The URL, its password (if any) shown as `***`.
    pub url: String,
    /// The event sent (0 for `test`).
    pub event_id: u64,
    /// The `webhook-id` of the request.
    pub webhook_id: String,
    /// The response status, if a response came.
    pub status: Option<u16>,
    pub latency_ms: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// Answered with a 2xx.
    pub ok: bool,
    /// Whether the request carried signatures.
    pub signed: bool,
}

/// The result of one attempt.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) result: Result<StatusCode, DeliveryError>,
    pub(crate) latency: Duration,
    pub(crate) signed: bool,
}

impl Attempt {
    /// The report of this attempt of `delivery`'s first event.
    pub(crate) fn outcome(&self, config: &Config, delivery: &Delivery) -> AttemptOutcome {
        AttemptOutcome {
            url: config.shown.to_string(),
            event_id: delivery.items.first().map_or(0, |i| i.event_id),
            webhook_id: delivery.webhook_id.to_string(),
            status: status_of(&self.result),
            latency_ms: millis(self.latency),
            error: self.result.as_ref().err().map(|e| e.to_string()),
            ok: self.result.is_ok(),
            signed: self.signed,
        }
    }
}

fn status_of(result: &Result<StatusCode, DeliveryError>) -> Option<u16> {
    match result {
        Ok(status) => Some(status.as_u16()),
        Err(e) => e.status().map(|s| s.as_u16()),
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// For the queue workers: the attempt's latency also goes into the stats' histogram (`test`
/// and `redeliver` count nowhere but in the delivery log).
pub(crate) fn counted(shared: &Shared, sent: Attempt) -> Attempt {
    shared
        .counters
        .latency
        .record(sent.latency, sent.result.is_ok());
    sent
}

/// Makes attempt number `attempt` (1-based) of `delivery` with `config` over the endpoint's
/// transport (by its URL: NATS or HTTP), and logs it.
pub(crate) async fn send(
    shared: &Shared,
    config: &Config,
    delivery: &Delivery,
    attempt: u32,
) -> Attempt {
    if let Some(error) = delivery.render_error() {
        return unrendered(shared, config, delivery, attempt, error);
    }
    match &config.nats {
        Some(nats) => publish(shared, config, nats, delivery, attempt).await,
        None => post(shared, config, delivery, attempt).await,
    }
}

/// Publishes attempt number `attempt` of `delivery` to NATS JetStream, and logs it.
pub(crate) async fn publish(
    shared: &Shared,
    config: &Config,
    nats: &NatsTarget,
    delivery: &Delivery,
    attempt: u32,
) -> Attempt {
    let at = jiff::Timestamp::now();
    let secrets = shared.secrets();
    let started = Instant::now();
    let timeout = shared.options.timeout;
    let (result, signed) = nats
        .publish(&secrets, delivery, timeout, shared.bus.node_id())
        .await;
    record(
        shared,
        config,
        delivery,
        attempt,
        at,
        started.elapsed(),
        result,
        signed,
    )
}

/// POSTs attempt number `attempt` (1-based) of `delivery` with `config`, and logs it.
pub(crate) async fn post(
    shared: &Shared,
    config: &Config,
    delivery: &Delivery,
    attempt: u32,
) -> Attempt {
    let mut headers = config.request_headers.clone();
    if let Some(head) = delivery.head() {
        headers.insert(http::header::CONTENT_TYPE, head.content_type.clone());
        for (name, value) in &head.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    let at = jiff::Timestamp::now();
    let secrets = shared.secrets();
    let mut signed = false;
    if let Some(sig) = secrets.sign(&delivery.webhook_id, at.as_second(), &delivery.body) {
        match sig.pairs() {
            Some(pairs) => {
                for (name, value) in pairs {
                    headers.insert(name, value);
                }
                signed = true;
            }
            None => warn!(
                webhook_id = %delivery.webhook_id,
                "webhook-id is not a valid header value; the request goes unsigned"
            ),
        }
    }
    let started = Instant::now();
    let result = match &config.target {
        Ok(target) => {
            config
                .client
                .post(target, headers, delivery.body.clone())
                .await
        }
        Err(e) => Err(e.clone()),
    };
    record(
        shared,
        config,
        delivery,
        attempt,
        at,
        started.elapsed(),
        result,
        signed,
    )
}

/// Logs attempt number `attempt` of `delivery`, made at `at`, and makes its [`Attempt`].
#[allow(clippy::too_many_arguments)]
fn record(
    shared: &Shared,
    config: &Config,
    delivery: &Delivery,
    attempt: u32,
    at: jiff::Timestamp,
    latency: Duration,
    result: Result<StatusCode, DeliveryError>,
    signed: bool,
) -> Attempt {
    let status = status_of(&result);
    let error: Option<Arc<str>> = result.as_ref().err().map(|e| e.to_string().into());
    let batch = delivery.batched.then_some(delivery.len());
    let latency_ms = millis(latency);
    let ok = result.is_ok();
    shared.log.push(delivery.items.iter().map(|item| Logged {
        event_id: item.event_id,
        event: item.event.clone(),
        webhook_id: delivery.webhook_id.clone(),
        url: config.shown.clone(),
        attempt,
        status,
        latency_ms,
        error: error.clone(),
        at,
        ok,
        batch,
        payload: Some(item.payload.clone()),
    }));
    Attempt {
        result,
        latency,
        signed,
    }
}

/// The attempt of a delivery its template could not render: nothing is sent; the delivery
/// log records the template's error.
fn unrendered(
    shared: &Shared,
    config: &Config,
    delivery: &Delivery,
    attempt: u32,
    error: &Arc<str>,
) -> Attempt {
    let e = DeliveryError::Template {
        url: config.shown.to_string(),
        detail: error.to_string(),
    };
    let logged: Arc<str> = e.to_string().into();
    let at = jiff::Timestamp::now();
    shared.log.push(delivery.items.iter().map(|item| Logged {
        event_id: item.event_id,
        event: item.event.clone(),
        webhook_id: delivery.webhook_id.clone(),
        url: config.shown.clone(),
        attempt,
        status: None,
        latency_ms: 0.0,
        error: Some(logged.clone()),
        at,
        ok: false,
        batch: None,
        payload: Some(item.payload.clone()),
    }));
    Attempt {
        result: Err(e),
        latency: Duration::ZERO,
        signed: false,
    }
}
