//! The delivery log and the tools: `deliveries` (newest last, failed only, limit), `test` (a
//! signed `webhook.test` now, outside the queue), `redeliver` (one attempt of a logged event with
//! its original `webhook-id`), and the log sink.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pilot_core::{Bus, WebhookSettings};
use pilot_webhook::{DeliveryLogSink, DeliveryRecord, WebhookError, WebhookPlugin};

use crate::receiver::{refused_addr, Receiver, Reply};
use crate::support::{fast_options, settled, verify, wait_stats};

const WAIT: Duration = Duration::from_secs(5);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn the_log_records_every_attempt_newest_last() {
    let rx = Receiver::start(
        [Reply::Status(200), Reply::Status(500), Reply::Status(404)],
        Reply::Status(200),
    )
    .await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    bus.publish("a.one", None);
    bus.publish("a.two", None);
    bus.publish("a.three", None);
    wait_stats(&plugin, "done", |s| s.delivered + s.failed == 3).await;
    let log = plugin.deliveries(false, 100);
    let seen: Vec<(u64, u32, Option<u16>, bool)> = log
        .iter()
        .map(|r| (r.event_id, r.attempt, r.status, r.ok))
        .collect();
    assert_eq!(
        seen,
        [
            (1, 1, Some(200), true),
            (2, 1, Some(500), false),
            (2, 2, Some(404), false),
            (3, 1, Some(200), true),
        ]
    );
    let r = &log[1];
    assert_eq!(r.event, "a.two");
    assert_eq!(r.url, rx.url("/x").as_str());
    assert_eq!(r.webhook_id, plugin.webhook_id_for(2));
    assert!(r.error.as_deref().unwrap().starts_with("HTTP 500"));
    assert!(r.latency_ms >= 0.0);
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
    let failed: Vec<u32> = plugin
        .deliveries(true, 0)
        .iter()
        .map(|r| r.attempt)
        .collect();
    assert_eq!(failed, [1, 2]);
    assert_eq!(plugin.deliveries(false, 1)[0].event_id, 3);
    assert_eq!(plugin.deliveries(true, 1)[0].status, Some(404));
    let json = serde_json::to_value(&log[0]).unwrap();
    for key in [
        "event_id",
        "event",
        "webhook_id",
        "url",
        "attempt",
        "status",
        "latency_ms",
        "error",
        "at",
        "ok",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    settled(&plugin).await;
}

#[tokio::test]
async fn test_sends_a_signed_webhook_test_event_now() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(42);
    let plugin = WebhookPlugin::start(bus.clone(), None, fast_options());
    assert!(matches!(plugin.test().await, Err(WebhookError::NoWebhook)));

    plugin.set_url(Some(rx.url("/hook")));
    plugin.set_secrets(vec![SECRET.into()]);
    let outcome = plugin.test().await.unwrap();
    assert!(outcome.ok && outcome.signed);
    assert_eq!(outcome.status, Some(200));
    assert_eq!(outcome.url, rx.url("/hook").as_str());
    assert_eq!(outcome.event_id, 0);
    assert!(outcome.latency_ms > 0.0);
    let reqs = rx.wait_for(1, WAIT).await;
    let body = reqs[0].json();
    assert_eq!(body["event_id"], 0);
    assert_eq!(body["event"], "webhook.test");
    assert_eq!(body["node_id"], 42);
    assert_eq!(body["data"]["message"], "test delivery from pilot");
    assert_eq!(
        reqs[0].header("webhook-id").as_deref(),
        Some(outcome.webhook_id.as_str())
    );
    assert_eq!(verify(&reqs, &[SECRET])[0].matched, [0]);

    // A second test has its own id (receivers dedupe by id).
    let again = plugin.test().await.unwrap();
    assert_ne!(again.webhook_id, outcome.webhook_id);
    let log = plugin.deliveries(false, 0);
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].event, "webhook.test");

    // A failing endpoint is an outcome, not an error.
    let addr = refused_addr().await;
    plugin.set_url(Some(
        pilot_webhook::validate_url(&format!("http://{addr}/x")).unwrap(),
    ));
    let failed = plugin.test().await.unwrap();
    assert!(!failed.ok);
    assert_eq!(failed.status, None);
    assert!(failed.error.unwrap().contains("refused"));
    let stats = settled(&plugin).await;
    assert_eq!(stats.queued, 0, "tests are outside the queue");
    let attempts = stats.latency.success.count() + stats.latency.failure.count();
    assert_eq!(attempts, 0, "tests are outside the latency histogram");
    plugin.shutdown().await;
    assert!(matches!(plugin.test().await, Err(WebhookError::ShutDown)));
}

#[tokio::test]
async fn redeliver_sends_a_logged_event_again_with_its_id() {
    let rx = Receiver::start([Reply::Status(400)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    plugin.set_secrets(vec![SECRET.into()]);
    let ev = bus.publish("a.important", None);
    wait_stats(&plugin, "failure", |s| s.failed == 1).await;

    let outcome = plugin.redeliver(ev.event_id).await.unwrap();
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.event_id, ev.event_id);
    let reqs = rx.wait_for(2, WAIT).await;
    assert_eq!(reqs[1].body, ev.payload());
    assert_eq!(reqs[1].header("webhook-id"), reqs[0].header("webhook-id"));
    assert_eq!(
        reqs[1].header("webhook-id").as_deref(),
        Some(plugin.webhook_id_for(ev.event_id).as_str())
    );
    assert_eq!(verify(&reqs[1..], &[SECRET])[0].matched, [0]);
    let log = plugin.deliveries(false, 0);
    assert_eq!(log.len(), 2);
    assert_eq!((log[1].attempt, log[1].ok), (2, true));

    let err = plugin.redeliver(999).await.unwrap_err();
    assert!(matches!(err, WebhookError::NotFound { event_id: 999 }));
    assert!(err.to_string().contains("999"), "{err}");
    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.failed, stats.delivered), (1, 1, 0));
}

#[tokio::test]
async fn redeliver_follows_the_body_shape_in_force() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    let ev = bus.publish("a.b", None);
    wait_stats(&plugin, "delivery", |s| s.delivered == 1).await;
    let settings = WebhookSettings {
        batch_max: Some(5),
        ..Default::default()
    };
    plugin.configure(Some((rx.url("/x"), settings))).unwrap();
    let outcome = plugin.redeliver(ev.event_id).await.unwrap();
    let reqs = rx.wait_for(2, WAIT).await;
    assert_eq!(reqs[1].json()["events"][0]["event_id"], ev.event_id);
    assert_eq!(
        outcome.webhook_id,
        format!("msg_{}_1-1", plugin.instance_id())
    );
    settled(&plugin).await;
}

#[tokio::test]
async fn a_sink_sees_every_record_and_restored_records_come_first() {
    #[derive(Default)]
    struct Collect(Mutex<Vec<DeliveryRecord>>);
    impl DeliveryLogSink for Collect {
        fn on_records(&self, records: &[DeliveryRecord]) {
            self.0.lock().unwrap().extend_from_slice(records);
        }
    }
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    let sink = Arc::new(Collect::default());
    plugin.set_log_sink(Some(sink.clone()));
    bus.publish("a.b", None);
    bus.publish("a.c", None);
    rx.wait_for(2, WAIT).await;
    settled(&plugin).await;
    let seen = sink.0.lock().unwrap().clone();
    assert_eq!(seen, plugin.deliveries(false, 0));

    let mut old = seen[0].clone();
    old.event_id = 77;
    plugin.restore_deliveries(vec![old]);
    let ids: Vec<u64> = plugin
        .deliveries(false, 0)
        .iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(ids, [77, 1, 2]);
    assert!(matches!(
        plugin.redeliver(77).await,
        Err(WebhookError::NotFound { .. })
    ));
}
