//! Retries that follow the standards: 408 and 429 are retried, `Retry-After` is honoured on
//! 429/503, and 410 Gone disables the webhook (announced on the bus as `webhook.disabled`) until
//! the next configure.

use std::time::Duration;

use pilot_core::{Bus, Pattern};
use pilot_webhook::{WebhookOptions, WebhookPlugin};

use crate::receiver::{Receiver, Reply};
use crate::support::{fast_options, settled, wait_stats};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_503_with_retry_after_waits_that_long() {
    let rx = Receiver::start(
        [Reply::WithHeader(503, "retry-after", "1")],
        Reply::Status(200),
    )
    .await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    bus.publish("a.b", None);
    let reqs = rx.wait_for(2, WAIT).await;
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(995),
        "Retry-After: 1 means a second, not the 10ms backoff: {gap:?}"
    );
    assert!(gap < Duration::from_millis(1500), "{gap:?}");
    let stats = settled(&plugin).await;
    assert_eq!((stats.delivered, stats.retries), (1, 1));
}

#[tokio::test]
async fn a_408_and_a_429_are_retried_with_the_backoff() {
    let rx = Receiver::start([Reply::Status(408), Reply::Status(429)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    bus.publish("a.b", None);
    let stats = wait_stats(&plugin, "delivery", |s| s.delivered == 1).await;
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    // Backoff with jitter never goes below the nominal 10ms, 20ms.
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(10));
    assert!(reqs[2].at - reqs[1].at >= Duration::from_millis(20));
    assert_eq!(stats.retries, 2);
    settled(&plugin).await;
}

#[tokio::test]
async fn a_410_disables_the_webhook_until_it_is_set_again() {
    let rx = Receiver::start([Reply::Status(410)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let mut watch = bus.subscribe("watch", "webhook.*".parse::<Pattern>().unwrap(), 16);
    let options = WebhookOptions {
        queue_size: 16,
        ..fast_options()
    };
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/gone")), options);
    // Three queued before the worker runs: the first gets the 410, the other two are dropped.
    for _ in 0..3 {
        bus.publish("a.b", None);
    }
    let disabled = tokio::time::timeout(WAIT, watch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disabled.event, "webhook.disabled");
    pilot_core::catalog::check(&disabled.event, disabled.data.as_deref())
        .expect("webhook.disabled matches the catalog");
    let data = disabled.data_value();
    assert_eq!(data["url"], rx.url("/gone").as_str());
    let reason = data["reason"].as_str().unwrap();
    assert!(reason.starts_with("HTTP 410 Gone from "), "{reason}");

    let stats = settled(&plugin).await;
    assert_eq!(
        (stats.queued, stats.failed, stats.dropped, stats.retries),
        (3, 1, 2, 0)
    );
    assert_eq!(stats.disabled.as_deref(), Some(reason));
    assert!(stats.disabled_at.is_some());
    assert_eq!(stats.url.as_deref(), Some(rx.url("/gone").as_str()));
    assert_eq!(rx.count(), 1, "one attempt, no retry, nothing after it");

    // Later events do not reach the disabled URL (nor does the announcement).
    bus.publish("a.later", None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rx.count(), 1);
    let stats = settled(&plugin).await;
    assert_eq!(stats.queued, 3);

    // Setting the webhook again (even the same URL) re-enables it.
    plugin.set_url(Some(rx.url("/gone")));
    let ev = bus.publish("a.again", None);
    let reqs = rx.wait_for(2, WAIT).await;
    assert_eq!(reqs[1].event_id(), ev.event_id);
    let stats = settled(&plugin).await;
    assert_eq!((stats.disabled, stats.disabled_at), (None, None));
    assert_eq!((stats.queued, stats.delivered), (4, 1));
}
