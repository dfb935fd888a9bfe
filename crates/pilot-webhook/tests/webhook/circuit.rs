//! The circuit breaker end to end: opens after the threshold, skips without requests, probes
//! after the cooldown, closes on success and reopens on failure.

use std::time::Duration;

use pilot_core::Bus;
use pilot_webhook::{CircuitState, WebhookOptions, WebhookPlugin};

use crate::receiver::{Receiver, Reply};
use crate::support::{fast_options, settled, wait_stats};

fn breaker_options() -> WebhookOptions {
    WebhookOptions {
        max_attempts: 2,
        circuit_threshold: 2,
        circuit_cooldown: Duration::from_millis(300),
        ..fast_options()
    }
}

#[tokio::test]
async fn opens_skips_then_a_successful_probe_closes_it() {
    // Two events x two attempts fail, then everything succeeds.
    let rx = Receiver::start([Reply::Status(500); 4], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), breaker_options());
    bus.publish("a.one", None);
    bus.publish("a.two", None);
    let stats = wait_stats(&plugin, "two failed events", |s| s.failed == 2).await;
    assert_eq!(stats.circuit, CircuitState::Open);
    assert_eq!(rx.count(), 4);

    for _ in 0..3 {
        bus.publish("a.skipped", None);
    }
    let stats = wait_stats(&plugin, "skips", |s| s.circuit_skips == 3).await;
    assert_eq!(rx.count(), 4, "no request reaches the receiver while open");
    assert_eq!(stats.circuit, CircuitState::Open);

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(plugin.stats().circuit, CircuitState::HalfOpen);
    let probe = bus.publish("a.probe", None);
    let stats = wait_stats(&plugin, "the probe", |s| s.delivered == 1).await;
    assert_eq!(stats.circuit, CircuitState::Closed);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs[4].event_id(), probe.event_id);

    bus.publish("a.after", None);
    let stats = wait_stats(&plugin, "normal delivery", |s| s.delivered == 2).await;
    assert_eq!(stats.circuit_skips, 3);
    let stats = settled(&plugin).await;
    assert_eq!(stats.queued, 7);
}

#[tokio::test]
async fn a_failed_probe_reopens_for_another_cooldown() {
    let rx = Receiver::start([], Reply::Status(503)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        max_attempts: 1,
        ..breaker_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), options);
    bus.publish("a.one", None);
    bus.publish("a.two", None);
    wait_stats(&plugin, "open", |s| s.circuit == CircuitState::Open).await;
    assert_eq!(rx.count(), 2);

    tokio::time::sleep(Duration::from_millis(350)).await;
    bus.publish("a.probe", None);
    let stats = wait_stats(&plugin, "failed probe", |s| s.failed == 3).await;
    assert_eq!(stats.circuit, CircuitState::Open);
    assert_eq!(rx.count(), 3, "one attempt series for the probe");

    bus.publish("a.skipped", None);
    wait_stats(&plugin, "skip", |s| s.circuit_skips == 1).await;
    assert_eq!(rx.count(), 3);

    tokio::time::sleep(Duration::from_millis(350)).await;
    bus.publish("a.probe_again", None);
    wait_stats(&plugin, "second probe", |s| s.failed == 4).await;
    assert_eq!(rx.count(), 4);
    settled(&plugin).await;
}

#[tokio::test]
async fn a_delivered_event_resets_the_failure_count() {
    // fail, ok, fail, ok ...: never two failures in a row, so never open.
    let script = [500, 200, 500, 200, 500, 200].map(Reply::Status);
    let rx = Receiver::start(script, Reply::Status(200)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        max_attempts: 1,
        ..breaker_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), options);
    for _ in 0..6 {
        bus.publish("a.b", None);
    }
    let stats = wait_stats(&plugin, "all done", |s| s.failed + s.delivered == 6).await;
    assert_eq!(
        (stats.failed, stats.delivered, stats.circuit_skips),
        (3, 3, 0)
    );
    assert_eq!(stats.circuit, CircuitState::Closed);
    settled(&plugin).await;
}
