//! `webhook test` and `webhook redeliver`: one attempt now, outside the queue, and how it went.
//!
//! An attempt that is not answered with a 2xx is an error (`delivery_failed`, exit 1) whose
//! message carries the status, latency and error, so scripts can rely on the exit status.

use pilot_ipc::protocol::{RedeliverReply, TestReply};
use pilot_ipc::{Client, Request};

use crate::commands::deliveries::latency;
use crate::context::Context;
use crate::output::{CliError, Output};

/// The code of an attempt that was made and failed.
pub const DELIVERY_FAILED: &str = "delivery_failed";

/// `webhook test`.
pub async fn test(ctx: &Context, name: &str) -> Result<Output, CliError> {
    let socket = ctx.socket()?;
    let mut client = Client::connect(&socket).await?;
    let r: TestReply = client
        .call(&Request::TestWebhook { name: named(name) })
        .await?;
    let signed = if r.signed { "signed" } else { "unsigned" };
    let how = attempt_text(r.status, r.latency_ms, r.error.as_deref());
    if !r.ok {
        return Err(CliError::new(
            DELIVERY_FAILED,
            format!("test delivery to {} failed: {how} ({signed})", r.url),
        ));
    }
    let text = format!("test delivered to {}: {how} ({signed})", r.url);
    Ok(Output::report(&r, text))
}

/// `webhook redeliver EVENT_ID`.
pub async fn redeliver(ctx: &Context, event_id: u64, name: &str) -> Result<Output, CliError> {
    let socket = ctx.socket()?;
    let mut client = Client::connect(&socket).await?;
    let r: RedeliverReply = client
        .call(&Request::Redeliver {
            event_id,
            name: named(name),
        })
        .await?;
    let how = attempt_text(r.status, r.latency_ms, r.error.as_deref());
    if !r.ok {
        return Err(CliError::new(
            DELIVERY_FAILED,
            format!("redelivery of event {event_id} failed: {how}"),
        ));
    }
    Ok(Output::report(
        &r,
        format!("event {event_id} redelivered: {how}"),
    ))
}

/// The `name` field of a per-webhook request: left out for `default`, so the request reads as
/// it did before webhooks had names.
pub fn named(name: &str) -> Option<String> {
    (name != pilot_core::endpoint::DEFAULT).then(|| name.to_string())
}

/// `HTTP 200 in 3.2ms`, or the error with what is known.
fn attempt_text(status: Option<u16>, latency_ms: f64, error: Option<&str>) -> String {
    let took = latency(latency_ms);
    match (status, error) {
        (Some(s), None) => format!("HTTP {s} in {took}"),
        (_, Some(e)) => format!("{e} (after {took})"),
        (None, None) => format!("no answer after {took}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_read_well() {
        assert_eq!(attempt_text(Some(200), 3.21, None), "HTTP 200 in 3.2ms");
        assert_eq!(
            attempt_text(
                Some(500),
                12.0,
                Some("HTTP 500 Internal Server Error from u")
            ),
            "HTTP 500 Internal Server Error from u (after 12.0ms)"
        );
    }
}
