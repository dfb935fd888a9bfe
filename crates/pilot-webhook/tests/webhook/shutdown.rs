//! Graceful shutdown: what was published before it is delivered, the drain is bounded, the rest
//! is counted as dropped, and background drains from earlier swaps are awaited.

use std::time::Duration;

use pilot_core::Bus;
use pilot_webhook::{WebhookOptions, WebhookPlugin};
use tokio::time::Instant;

use crate::receiver::{Receiver, Reply};
use crate::support::{assert_balanced, fast_options};

#[tokio::test]
async fn an_event_published_just_before_shutdown_is_delivered() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    let last = bus.publish(
        "daemon.shutting_down",
        Some(pilot_core::event::parse_data(r#"{"uptime_seconds":3,"reason":"test"}"#).unwrap()),
    );
    plugin.shutdown().await;
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1, "delivered before shutdown returned");
    assert_eq!(reqs[0].body, last.payload());
    assert!(bus.subscribers().is_empty(), "detached from the bus");
    bus.publish("a.after", None);
    let stats = plugin.stats();
    assert_eq!((stats.queued, stats.delivered, stats.dropped), (1, 1, 0));
    assert_eq!(stats.url, None);
    assert_balanced(&stats);
    plugin.shutdown().await; // a second call is harmless
}

#[tokio::test]
async fn shutdown_against_a_hanging_receiver_is_bounded_and_counts_the_rest() {
    let rx = Receiver::start([], Reply::Hang).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_millis(300),
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), options);
    for _ in 0..3 {
        bus.publish("a.b", None);
    }
    rx.wait_for(1, Duration::from_secs(5)).await;
    let started = Instant::now();
    plugin.shutdown().await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(290), "drained for {took:?}");
    assert!(took < Duration::from_millis(800), "drained for {took:?}");
    let stats = plugin.stats();
    assert_eq!((stats.queued, stats.delivered, stats.dropped), (3, 0, 3));
    assert_eq!((stats.queue_depth, stats.in_flight), (0, 0));
    assert_balanced(&stats);
}

#[tokio::test]
async fn shutdown_waits_for_an_earlier_swaps_drain() {
    let a = Receiver::start([], Reply::Delay(Duration::from_millis(60), 200)).await;
    let b = Receiver::ok().await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        drain_timeout: Duration::from_secs(2),
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(a.url("/a")), options);
    for _ in 0..3 {
        bus.publish("a.b", None);
    }
    plugin.set_url(Some(b.url("/b")));
    bus.publish("a.c", None);
    plugin.shutdown().await;
    assert_eq!(
        a.count(),
        3,
        "the old URL's queue finished before shutdown returned"
    );
    assert_eq!(b.count(), 1);
    let stats = plugin.stats();
    assert_eq!((stats.queued, stats.delivered, stats.dropped), (4, 4, 0));
    assert_balanced(&stats);

    plugin.set_url(Some(a.url("/a")));
    assert_eq!(plugin.url(), None, "URL changes after shutdown are ignored");
    assert!(bus.subscribers().is_empty());
}

#[tokio::test]
async fn dropping_the_plugin_stops_its_workers() {
    let rx = Receiver::start([], Reply::Hang).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_secs(5),
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), options);
    bus.publish("a.b", None);
    rx.wait_for(1, Duration::from_secs(5)).await;
    drop(plugin);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !bus.subscribers().is_empty() {
        assert!(Instant::now() < deadline, "worker still subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
