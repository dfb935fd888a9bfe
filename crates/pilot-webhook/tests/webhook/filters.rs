//! Filters and batching end to end: include/exclude patterns (the subscription stays `*`, left
//! out events are counted as `filtered`), and batches of up to N events in one signed
//! `{"events":[...]}` body, in order, retried as one.

use std::time::Duration;

use pilot_core::{Bus, WebhookSettings};
use pilot_webhook::{WebhookPlugin, BUS_LABEL};
use tokio::time::Instant;

use crate::receiver::{Receiver, Reply};
use crate::support::{fast_options, settled, verify, wait_stats};

const WAIT: Duration = Duration::from_secs(5);

fn patterns(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn include_and_exclude_patterns_select_events_and_count_the_rest() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        events: patterns(&["handshake.*", "trust.*"]),
        exclude: patterns(&["trust.revoked"]),
        ..Default::default()
    };
    let plugin =
        WebhookPlugin::start_with(bus.clone(), Some((rx.url("/x"), settings)), fast_options())
            .unwrap();
    let subs = bus.subscribers();
    let sub = subs.iter().find(|s| s.label == BUS_LABEL).unwrap();
    assert_eq!(sub.pattern, "*", "the subscription stays `*`");
    for name in [
        "handshake.received",
        "data.datagram",
        "trust.changed",
        "trust.revoked",
        "handshake.accepted",
        "handshake",
    ] {
        bus.publish(name, None);
    }
    let stats = wait_stats(&plugin, "all taken", |s| s.delivered + s.filtered == 6).await;
    let names: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["handshake.received", "trust.changed", "handshake.accepted"]
    );
    assert_eq!((stats.delivered, stats.filtered, stats.queued), (3, 3, 6));
    let stats = settled(&plugin).await;
    assert_eq!(
        stats.settings.unwrap().exclude,
        ["trust.revoked".to_string()]
    );
}

#[tokio::test]
async fn batches_concatenate_payloads_in_order_and_are_signed_as_one_body() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        batch_max: Some(3),
        batch_wait: Some(Duration::from_millis(100)),
        exclude: patterns(&["a.noise"]),
        ..Default::default()
    };
    let plugin =
        WebhookPlugin::start_with(bus.clone(), Some((rx.url("/x"), settings)), fast_options())
            .unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    plugin.set_secrets(vec![secret.into()]);
    let started = Instant::now();
    // Single-threaded runtime: all of these are queued before the worker runs.
    let mut events = Vec::new();
    for i in 0..8 {
        if i == 4 {
            bus.publish("a.noise", None);
        } else {
            events.push(bus.publish("a.event", None));
        }
    }
    let reqs = rx.wait_for(3, WAIT).await;
    let ids: Vec<Vec<u64>> = reqs
        .iter()
        .map(|r| {
            r.json()["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].as_u64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(ids, [vec![1, 2, 3], vec![4, 6, 7], vec![8]]);
    // The body is the payloads byte for byte, in order.
    let payload = |id: u64| {
        let ev = events.iter().find(|e| e.event_id == id).unwrap();
        String::from_utf8(ev.payload().to_vec()).unwrap()
    };
    assert_eq!(
        std::str::from_utf8(&reqs[0].body).unwrap(),
        format!(
            "{{\"events\":[{},{},{}]}}",
            payload(1),
            payload(2),
            payload(3)
        )
    );
    let instance = plugin.instance_id().to_string();
    let wids: Vec<String> = reqs
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(
        wids,
        [
            format!("msg_{instance}_1-3"),
            format!("msg_{instance}_4-7"),
            format!("msg_{instance}_8-8")
        ]
    );
    for check in verify(&reqs, &[secret]) {
        assert_eq!(check.matched, [0]);
        assert!(check.pilot);
    }
    // The last batch waited for company before going out alone.
    assert!(reqs[2].at - started >= Duration::from_millis(100));
    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.delivered, stats.filtered), (8, 7, 1));
    let log = plugin.deliveries(false, 0);
    assert_eq!(log.len(), 7, "one record per event");
    assert_eq!(log[0].batch, Some(3));
    assert_eq!(log[6].batch, Some(1));
}

#[tokio::test]
async fn a_batch_is_retried_as_one_and_counted_per_event() {
    let rx = Receiver::start([Reply::Status(503)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        batch_max: Some(10),
        batch_wait: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    let plugin =
        WebhookPlugin::start_with(bus.clone(), Some((rx.url("/x"), settings)), fast_options())
            .unwrap();
    for _ in 0..4 {
        bus.publish("a.b", None);
    }
    let stats = wait_stats(&plugin, "delivery", |s| s.delivered == 4).await;
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body, reqs[1].body, "the same body is retried");
    assert_eq!(reqs[0].header("webhook-id"), None, "unsigned: no secret");
    assert_eq!(stats.retries, 1, "retries count requests");
    let attempts: Vec<u32> = plugin
        .deliveries(false, 0)
        .iter()
        .map(|r| r.attempt)
        .collect();
    assert_eq!(attempts, [1, 1, 1, 1, 2, 2, 2, 2]);
    settled(&plugin).await;
}

#[tokio::test]
async fn a_failed_batch_counts_every_event_as_failed() {
    let rx = Receiver::start([], Reply::Status(400)).await;
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        batch_max: Some(2),
        batch_wait: Some(Duration::from_millis(10)),
        ..Default::default()
    };
    let plugin =
        WebhookPlugin::start_with(bus.clone(), Some((rx.url("/x"), settings)), fast_options())
            .unwrap();
    for _ in 0..5 {
        bus.publish("a.b", None);
    }
    let stats = wait_stats(&plugin, "failures", |s| s.failed == 5).await;
    assert_eq!(rx.count(), 3);
    assert_eq!(stats.retries, 0);
    settled(&plugin).await;
}
