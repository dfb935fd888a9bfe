//! Delivery: payload and headers, order, retries and their backoff, timeouts, refused
//! connections, large response bodies, Basic auth from userinfo.

use std::time::Duration;

use pilot_core::event::parse_data;
use pilot_core::Bus;
use pilot_webhook::{WebhookOptions, WebhookPlugin};

use crate::receiver::{refused_addr, Receiver, Reply};
use crate::support::{fast_options, settled, wait_stats};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn posts_the_shared_payload_bytes_with_pilot_headers() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(5);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/events?x=1")), fast_options());
    let data = parse_data(r#"{"peer_node_id":7,"justification":"want to collaborate"}"#).unwrap();
    let first = bus.publish("handshake.received", Some(data));
    let second = bus.publish("node.deregistered", None);
    let reqs = rx.wait_for(2, WAIT).await;

    for (req, ev) in reqs.iter().zip([&first, &second]) {
        assert_eq!(req.method, http::Method::POST);
        assert_eq!(req.target, "/events?x=1");
        assert_eq!(
            req.body,
            ev.payload(),
            "body is the event's encoded payload"
        );
        assert_eq!(
            req.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            req.header("user-agent"),
            Some(format!("pilot-daemon/{}", pilot_core::VERSION))
        );
        assert_eq!(
            req.header("content-length"),
            Some(ev.payload().len().to_string())
        );
        assert_eq!(req.header("authorization"), None);
        assert!(req.header("host").is_some());
    }
    let body = std::str::from_utf8(&reqs[0].body).unwrap();
    assert!(
        body.starts_with(r#"{"event_id":1,"event":"handshake.received","node_id":5,"timestamp":""#),
        "{body}"
    );
    assert!(body.ends_with(r#""data":{"peer_node_id":7,"justification":"want to collaborate"}}"#));
    assert!(!std::str::from_utf8(&reqs[1].body)
        .unwrap()
        .contains("\"data\""));

    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.delivered, stats.failed), (2, 2, 0));
    // Shown with query values masked (tokens often ride in the query); sent as given.
    assert_eq!(stats.url.as_deref(), Some(rx.url("/events?x=***").as_str()));
    assert_eq!(stats.last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_events_arrive_in_publish_order_over_a_kept_alive_connection() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/hook")), fast_options());
    for i in 0..200 {
        bus.publish(format!("test.event_{}", i % 7), None);
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let reqs = rx.wait_for(200, WAIT).await;
    let ids: Vec<u64> = reqs.iter().map(|r| r.event_id()).collect();
    assert_eq!(ids, (1..=200).collect::<Vec<_>>());
    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.delivered), (200, 200));
    assert!(
        rx.connections() <= 2,
        "connections are reused: {} for 200 requests",
        rx.connections()
    );
}

#[tokio::test]
async fn a_500_is_attempted_three_times_with_doubling_backoff() {
    let rx = Receiver::start([], Reply::Status(500)).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    bus.publish("a.b", None);
    let stats = wait_stats(&plugin, "one failed event", |s| s.failed == 1).await;
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3, "exactly max_attempts attempts");
    assert!(reqs.iter().all(|r| r.event_id() == 1));
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(10));
    assert!(reqs[2].at - reqs[1].at >= Duration::from_millis(20));
    assert_eq!(stats.retries, 2);
    assert_eq!(
        stats.last_error.as_deref(),
        Some(format!("HTTP 500 Internal Server Error from {}", rx.url("/x")).as_str())
    );
    assert!(stats.last_error_at.is_some());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rx.count(), 3);
    let stats = settled(&plugin).await;
    assert_eq!((stats.delivered, stats.failed), (0, 1));
    let latency = &stats.latency;
    assert_eq!((latency.success.count(), latency.failure.count()), (0, 3));
    assert!(latency.failure.sum_seconds > 0.0);
}

#[tokio::test]
async fn a_4xx_or_3xx_fails_at_once_without_retry_or_redirect() {
    for code in [404u16, 400, 302, 301] {
        let rx = Receiver::start([Reply::Status(code)], Reply::Status(200)).await;
        let bus = Bus::new(0);
        let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
        bus.publish("a.b", None);
        bus.publish("a.c", None);
        let stats = wait_stats(&plugin, "both events done", |s| s.failed + s.delivered == 2).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let reqs = rx.requests();
        let targets: Vec<&str> = reqs.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            targets,
            ["/x", "/x"],
            "{code}: one attempt each, no redirect followed"
        );
        assert_eq!(
            (stats.failed, stats.delivered, stats.retries),
            (1, 1, 0),
            "{code}"
        );
        assert!(
            stats
                .last_error
                .as_deref()
                .unwrap()
                .starts_with(&format!("HTTP {code} ")),
            "{:?}",
            stats.last_error
        );
        settled(&plugin).await;
    }
}

#[tokio::test]
async fn a_retry_that_succeeds_delivers_once() {
    let rx = Receiver::start([Reply::Status(500), Reply::Status(503)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    bus.publish("a.b", None);
    let stats = wait_stats(&plugin, "delivery", |s| s.delivered == 1).await;
    assert_eq!(rx.count(), 3);
    assert_eq!((stats.failed, stats.retries), (0, 2));
    assert!(stats
        .last_error
        .unwrap()
        .starts_with("HTTP 503 Service Unavailable"));
    settled(&plugin).await;
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_each_attempt() {
    let rx = Receiver::start([], Reply::Hang).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/slow")), fast_options());
    let started = tokio::time::Instant::now();
    bus.publish("a.b", None);
    let stats = wait_stats(&plugin, "failure", |s| s.failed == 1).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "3 x 200ms timeouts, took {took:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(rx.count(), 3);
    assert_eq!(stats.retries, 2);
    assert_eq!(
        stats.last_error.as_deref(),
        Some(format!("timeout after 200ms waiting for {}", rx.url("/slow")).as_str())
    );
    settled(&plugin).await;
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_failed() {
    let addr = refused_addr().await;
    let url = pilot_webhook::validate_url(&format!("http://{addr}/x")).unwrap();
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(url.clone()), fast_options());
    bus.publish("a.b", None);
    let stats = wait_stats(&plugin, "failure", |s| s.failed == 1).await;
    assert_eq!(stats.retries, 2);
    let err = stats.last_error.unwrap();
    assert!(
        err.starts_with(&format!("connection to {url} failed: ")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("refused"), "{err}");
    settled(&plugin).await;
}

#[tokio::test]
async fn large_response_bodies_are_not_a_problem() {
    let rx = Receiver::start([Reply::Big(4 << 20)], Reply::Big(100)).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    for _ in 0..3 {
        bus.publish("a.b", None);
    }
    rx.wait_for(3, WAIT).await;
    let stats = settled(&plugin).await;
    assert_eq!(stats.delivered, 3);
}

#[tokio::test]
async fn userinfo_becomes_basic_auth_and_the_password_is_never_shown() {
    let rx = Receiver::ok().await;
    let mut url = rx.url("/x");
    url.set_username("bob").unwrap();
    url.set_password(Some("p@ss:word")).unwrap();
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(url.clone()), fast_options());
    bus.publish("a.b", None);
    let reqs = rx.wait_for(1, WAIT).await;
    // base64("bob:p@ss:word")
    assert_eq!(
        reqs[0].header("authorization").as_deref(),
        Some("Basic Ym9iOnBAc3M6d29yZA==")
    );
    assert_eq!(reqs[0].target, "/x");
    let stats = settled(&plugin).await;
    let shown = stats.url.unwrap();
    assert!(shown.contains("bob:***@"), "{shown}");
    assert!(!shown.contains("word"), "{shown}");
    assert_eq!(plugin.url(), Some(url));
}

#[tokio::test]
async fn options_are_kept_and_brought_into_range() {
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(
        bus,
        None,
        WebhookOptions {
            queue_size: 0,
            max_attempts: 0,
            ..WebhookOptions::default()
        },
    );
    assert_eq!(plugin.options().queue_size, 1);
    assert_eq!(plugin.options().max_attempts, 1);
    assert_eq!(plugin.options().timeout, Duration::from_secs(5));
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&plugin);
}
