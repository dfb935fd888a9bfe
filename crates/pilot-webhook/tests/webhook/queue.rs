//! The webhook queue is the bus subscription buffer: bounded, never blocking the publisher, and a
//! full queue drops and counts.

use std::time::Duration;

use pilot_core::Bus;
use pilot_webhook::{WebhookOptions, WebhookPlugin, BUS_LABEL};

use crate::receiver::{Receiver, Reply};
use crate::support::{assert_balanced, fast_options, settled, wait_stats};

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let rx = Receiver::start([], Reply::Delay(Duration::from_millis(50), 200)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        queue_size: 2,
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), options);
    // The test runtime is single-threaded: the worker cannot run between these publishes.
    for _ in 0..10 {
        bus.publish("a.b", None);
    }
    let stats = plugin.stats();
    assert_eq!(
        (stats.queued, stats.dropped_queue_full, stats.dropped),
        (2, 8, 8)
    );
    assert_eq!((stats.queue_depth, stats.queue_capacity), (2, 2));
    assert_balanced(&stats);

    let subs = bus.subscribers();
    let sub = subs.iter().find(|s| s.label == BUS_LABEL).unwrap();
    assert_eq!((sub.capacity, sub.queued, sub.dropped), (2, 2, 8));

    let stats = settled(&plugin).await;
    assert_eq!((stats.delivered, stats.dropped), (2, 8));
    let ids: Vec<u64> = rx.requests().iter().map(|r| r.event_id()).collect();
    assert_eq!(ids, [1, 2]);
}

#[tokio::test]
async fn queue_depth_and_in_flight_follow_the_queue() {
    let rx = Receiver::start([Reply::Hang], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_millis(400),
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), options);
    bus.publish("a.one", None);
    rx.wait_for(1, Duration::from_secs(5)).await;
    bus.publish("a.two", None);
    bus.publish("a.three", None);
    let stats = plugin.stats();
    assert_eq!(
        (stats.queued, stats.in_flight, stats.queue_depth),
        (3, 1, 2)
    );
    let subs = bus.subscribers();
    let sub = subs.iter().find(|s| s.label == BUS_LABEL).unwrap();
    assert_eq!(sub.buffered, 2, "depth matches the bus buffer");
    assert_balanced(&stats);
    // The hanging attempt times out, the retry succeeds, and the rest follows.
    let stats = wait_stats(&plugin, "all delivered", |s| s.delivered == 3).await;
    assert_eq!(stats.retries, 1);
    settled(&plugin).await;
}
