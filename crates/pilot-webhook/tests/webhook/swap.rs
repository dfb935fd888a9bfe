//! Hot swap and clear: the stream splits at the call, the old queue drains in the background
//! (bounded), the call never waits, and a clear drops and counts.

use std::time::Duration;

use pilot_core::Bus;
use pilot_webhook::{WebhookOptions, WebhookPlugin, BUS_LABEL};
use tokio::time::Instant;

use crate::receiver::{Receiver, Reply};
use crate::support::{fast_options, settled, wait_stats};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_before_the_swap_go_to_a_and_after_it_to_b() {
    let a = Receiver::start([], Reply::Delay(Duration::from_millis(20), 200)).await;
    let b = Receiver::ok().await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        drain_timeout: Duration::from_secs(2),
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(a.url("/a")), options);
    for _ in 0..5 {
        bus.publish("a.before", None);
    }
    let started = Instant::now();
    plugin.set_url(Some(b.url("/b")));
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(plugin.url(), Some(b.url("/b")));
    for _ in 0..5 {
        bus.publish("a.after", None);
    }
    let on_a: Vec<u64> = a
        .wait_for(5, WAIT)
        .await
        .iter()
        .map(|r| r.event_id())
        .collect();
    let on_b: Vec<u64> = b
        .wait_for(5, WAIT)
        .await
        .iter()
        .map(|r| r.event_id())
        .collect();
    assert_eq!(on_a, [1, 2, 3, 4, 5]);
    assert_eq!(on_b, [6, 7, 8, 9, 10]);
    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.delivered, stats.dropped), (10, 10, 0));
    assert_eq!(stats.url.as_deref(), Some(b.url("/b").as_str()));
    let subs = bus.subscribers();
    assert_eq!(subs.iter().filter(|s| s.label == BUS_LABEL).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_url_returns_at_once_while_the_old_receiver_hangs() {
    let a = Receiver::start([], Reply::Hang).await;
    let b = Receiver::ok().await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_millis(300),
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(a.url("/a")), options);
    bus.publish("a.one", None);
    bus.publish("a.two", None);
    a.wait_for(1, WAIT).await;

    let started = Instant::now();
    plugin.set_url(Some(b.url("/b")));
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "set_url waited {:?}",
        started.elapsed()
    );
    bus.publish("a.three", None);
    let on_b = b.wait_for(1, WAIT).await;
    assert_eq!(on_b[0].event_id(), 3);
    assert!(
        on_b[0].at - started < Duration::from_millis(250),
        "the new URL does not wait for the old drain"
    );

    // The old drain runs out of time: the hanging event and the one behind it are dropped.
    let stats = wait_stats(&plugin, "old drain to end", |s| s.dropped == 2).await;
    assert_eq!(stats.delivered, 1);
    assert_eq!(a.count(), 1);
    let stats = settled(&plugin).await;
    assert_eq!(stats.queued, 3);
}

#[tokio::test]
async fn clearing_drops_and_counts_what_is_queued_and_in_flight() {
    let a = Receiver::start([], Reply::Hang).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(a.url("/a")), options);
    for _ in 0..3 {
        bus.publish("a.b", None);
    }
    a.wait_for(1, WAIT).await;
    let started = Instant::now();
    plugin.set_url(None);
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(plugin.url(), None);
    let stats = wait_stats(&plugin, "drops", |s| s.dropped == 3).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a clear does not drain"
    );
    assert_eq!((stats.url, stats.queue_capacity), (None, 0));
    assert!(bus.subscribers().is_empty(), "no queue without a URL");

    bus.publish("a.unseen", None);
    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.dropped, stats.delivered), (3, 3, 0));

    let c = Receiver::ok().await;
    plugin.set_url(Some(c.url("/c")));
    let ev = bus.publish("a.again", None);
    assert_eq!(c.wait_for(1, WAIT).await[0].event_id(), ev.event_id);
    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.delivered, stats.dropped), (4, 1, 3));
}

#[tokio::test]
async fn starting_without_a_url_has_no_queue_until_one_is_set() {
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), None, fast_options());
    assert!(bus.subscribers().is_empty());
    bus.publish("a.nobody", None);
    let stats = plugin.stats();
    let idle = pilot_webhook::Stats {
        name: "default".into(),
        ..Default::default()
    };
    assert_eq!(stats, idle);

    let rx = Receiver::ok().await;
    plugin.set_url(Some(rx.url("/x")));
    bus.publish("a.somebody", None);
    assert_eq!(rx.wait_for(1, WAIT).await[0].event_id(), 2);
    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.delivered), (1, 1));
}

#[tokio::test]
async fn setting_the_same_url_again_keeps_the_worker_and_the_order() {
    let rx = Receiver::start([], Reply::Delay(Duration::from_millis(5), 200)).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    let id_before = bus.subscribers()[0].id;
    for i in 0..20 {
        bus.publish("a.b", None);
        if i == 10 {
            plugin.set_url(Some(rx.url("/x")));
        }
    }
    assert_eq!(bus.subscribers()[0].id, id_before);
    let ids: Vec<u64> = rx
        .wait_for(20, WAIT)
        .await
        .iter()
        .map(|r| r.event_id())
        .collect();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
    settled(&plugin).await;
}

#[tokio::test]
async fn counters_are_cumulative_across_swaps() {
    let a = Receiver::ok().await;
    let b = Receiver::start([], Reply::Status(404)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        queue_size: 1,
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(a.url("/a")), options);
    bus.publish("a.b", None);
    bus.publish("a.dropped_full", None);
    wait_stats(&plugin, "a", |s| s.delivered == 1).await;
    plugin.set_url(Some(b.url("/b")));
    bus.publish("a.b", None);
    bus.publish("a.dropped_full", None);
    let stats = wait_stats(&plugin, "b", |s| s.failed == 1).await;
    assert_eq!((stats.queued, stats.dropped_queue_full), (2, 2));
    let subs = bus.subscribers();
    assert_eq!(
        (subs[0].queued, subs[0].dropped),
        (2, 2),
        "bus shows cumulative counts"
    );
    settled(&plugin).await;
}
