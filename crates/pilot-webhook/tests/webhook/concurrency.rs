//! `settings.concurrency` (in-memory mode): up to N units (events, or batches) in flight at
//! once, against receivers that count the requests they are answering at once. Each unit keeps
//! every guarantee of its own (retries, no retry on 4xx, ids and signatures, counting); the
//! circuit breaker counts units as they complete and sends one probe while the others wait;
//! clear, shutdown and 410 count what they cut short. Every test ends balanced.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use pilot_core::{Bus, Pattern};
use pilot_webhook::{CircuitState, WebhookOptions, WebhookPlugin, WebhookSettings};
use tokio::time::Instant;

use crate::receiver::{Receiver, Recorded, Reply};
use crate::support::{assert_balanced, fast_options, settled, verify, wait_stats, Verified};

const WAIT: Duration = Duration::from_secs(5);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn concurrent(n: usize) -> WebhookSettings {
    WebhookSettings {
        concurrency: Some(n),
        ..Default::default()
    }
}

fn start(
    bus: &Bus,
    rx: &Receiver,
    settings: WebhookSettings,
    options: WebhookOptions,
) -> WebhookPlugin {
    WebhookPlugin::start_with(bus.clone(), Some((rx.url("/x"), settings)), options).unwrap()
}

/// Requests per event id, in arrival order.
fn by_event(reqs: &[Recorded]) -> BTreeMap<u64, Vec<&Recorded>> {
    let mut map: BTreeMap<u64, Vec<&Recorded>> = BTreeMap::new();
    for r in reqs {
        map.entry(r.event_id()).or_default().push(r);
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_in_flight_deliver_32_slow_answers_in_parallel_each_once() {
    let rx = Receiver::start([], Reply::Delay(Duration::from_millis(100), 200)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_secs(2),
        ..fast_options()
    };
    let plugin = start(&bus, &rx, concurrent(8), options);
    let started = Instant::now();
    for _ in 0..32 {
        bus.publish("a.b", None);
    }
    // While the first eight are answered: eight events in flight, the rest queued.
    let busy = wait_stats(&plugin, "eight in flight", |s| s.in_flight == 8).await;
    assert!(
        busy.in_flight + busy.queue_depth + busy.delivered == 32,
        "{busy:#?}"
    );
    assert_balanced(&busy);
    wait_stats(&plugin, "all delivered", |s| s.delivered == 32).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1600),
        "32 answers of 100 ms with 8 in flight took {took:?}"
    );
    assert_eq!(rx.max_in_flight(), 8, "exactly 8 requests at once");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 32);
    let ids: Vec<u64> = by_event(&reqs).keys().copied().collect();
    assert_eq!(ids, (1..=32).collect::<Vec<_>>(), "each event exactly once");
    // Kept-alive connections are reused: one per request in flight, give or take the odd one
    // opened while a finished connection was on its way back to hyper's pool.
    let opened = rx.connections();
    assert!(
        (8..=12).contains(&opened),
        "{opened} connections for 32 requests"
    );
    let stats = settled(&plugin).await;
    assert_eq!(
        (stats.queued, stats.delivered, stats.failed, stats.retries),
        (32, 32, 0, 0)
    );
    // A second burst reuses the pooled connections (once they are back in the pool: hyper
    // returns a connection to it in the background after its response).
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..16 {
        bus.publish("a.c", None);
    }
    wait_stats(&plugin, "second burst", |s| s.delivered == 48).await;
    assert!(
        rx.connections() <= opened + 2,
        "{} connections after a second burst of 16",
        rx.connections()
    );
    settled(&plugin).await;
}

#[tokio::test]
async fn concurrency_one_keeps_publish_order_and_one_request_at_a_time() {
    let rx = Receiver::start([], Reply::Delay(Duration::from_millis(2), 200)).await;
    let bus = Bus::new(0);
    let plugin = start(&bus, &rx, concurrent(1), fast_options());
    for _ in 0..30 {
        bus.publish("a.b", None);
    }
    let reqs = rx.wait_for(30, WAIT).await;
    let ids: Vec<u64> = reqs.iter().map(Recorded::event_id).collect();
    assert_eq!(ids, (1..=30).collect::<Vec<_>>());
    assert_eq!(rx.max_in_flight(), 1);
    assert_eq!(rx.connections(), 1);
    settled(&plugin).await;
}

/// 4, 8: 500 every time; 1, 5: 404; the others: 200.
fn by_id(r: &Recorded, _seen: usize) -> Reply {
    match r.event_id() % 4 {
        0 => Reply::Status(500),
        1 => Reply::Status(404),
        _ => Reply::Status(200),
    }
}

#[tokio::test]
async fn each_event_is_retried_on_its_own_and_a_4xx_is_not_retried() {
    let rx = Receiver::start([], Reply::Decide(by_id)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        backoff: Duration::from_millis(100),
        circuit_threshold: 0,
        ..fast_options()
    };
    let plugin = start(&bus, &rx, concurrent(4), options);
    plugin.set_secrets(vec![SECRET.into()]);
    for _ in 0..8 {
        bus.publish("a.b", None);
    }
    let stats = wait_stats(&plugin, "all done", |s| s.delivered + s.failed == 8).await;
    assert_eq!((stats.delivered, stats.failed, stats.retries), (4, 4, 4));
    let reqs = rx.requests();
    let per = by_event(&reqs);
    for (id, got) in &per {
        let want = match id % 4 {
            0 => 3,
            _ => 1,
        };
        assert_eq!(got.len(), want, "attempts of event {id}");
        for r in got {
            assert_eq!(
                r.header("webhook-id"),
                Some(plugin.webhook_id_for(*id)),
                "event {id} keeps its id on every attempt"
            );
        }
    }
    assert_eq!(per.len(), 8);
    // A unit backing off does not hold the others: every 2xx came before the first retry.
    let first_retry = per[&4][1].at.min(per[&8][1].at);
    for id in [2, 3, 6, 7] {
        assert!(
            per[&id][0].at < first_retry,
            "event {id} waited for a retry"
        );
    }
    let checks = verify(&reqs, &[SECRET]);
    assert!(checks.iter().all(|c| c
        == &Verified {
            matched: vec![0],
            pilot: true
        }));
    // The delivery log has every attempt of event 4.
    let attempts: Vec<u32> = plugin
        .deliveries(false, 0)
        .iter()
        .filter(|r| r.event_id == 4)
        .map(|r| r.attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let stats = settled(&plugin).await;
    assert_eq!(stats.queued, 8);
}

#[tokio::test]
async fn the_circuit_opens_skips_then_one_probe_goes_while_the_rest_wait() {
    let mut script = vec![Reply::Delay(Duration::from_millis(50), 500); 4];
    script.push(Reply::Delay(Duration::from_millis(200), 200)); // the probe
    let rx = Receiver::start(script, Reply::Delay(Duration::from_millis(100), 200)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        max_attempts: 1,
        circuit_threshold: 3,
        circuit_cooldown: Duration::from_millis(300),
        timeout: Duration::from_secs(2),
        ..fast_options()
    };
    let plugin = start(&bus, &rx, concurrent(4), options);
    for _ in 0..4 {
        bus.publish("a.fails", None);
    }
    let stats = wait_stats(&plugin, "four failed", |s| s.failed == 4).await;
    assert_eq!(stats.circuit, CircuitState::Open);
    assert_eq!(rx.max_in_flight(), 4, "the four went together");

    for _ in 0..3 {
        bus.publish("a.skipped", None);
    }
    wait_stats(&plugin, "skips", |s| s.circuit_skips == 3).await;
    assert_eq!(rx.count(), 4, "nothing sent while open");

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(plugin.stats().circuit, CircuitState::HalfOpen);
    let probe = bus.publish("a.probe", None);
    for _ in 0..3 {
        bus.publish("a.waits", None);
    }
    rx.wait_for(5, WAIT).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The probe is being answered; the others wait in the queue, not skipped.
    assert_eq!((rx.count(), rx.in_flight()), (5, 1));
    let stats = plugin.stats();
    assert_eq!(
        (stats.in_flight, stats.queue_depth, stats.circuit_skips),
        (1, 3, 3)
    );
    assert_eq!(stats.circuit, CircuitState::HalfOpen);
    assert_balanced(&stats);

    let stats = wait_stats(&plugin, "the rest delivered", |s| s.delivered == 4).await;
    assert_eq!(stats.circuit, CircuitState::Closed);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 8);
    assert_eq!(reqs[4].event_id(), probe.event_id);
    for r in &reqs[5..] {
        assert!(
            r.at - reqs[4].at >= Duration::from_millis(190),
            "sent before the probe was answered"
        );
    }
    let stats = settled(&plugin).await;
    assert_eq!(
        (
            stats.queued,
            stats.failed,
            stats.circuit_skips,
            stats.delivered
        ),
        (11, 4, 3, 4)
    );
}

#[tokio::test]
async fn a_failed_probe_reopens_and_the_events_that_waited_are_skipped() {
    let rx = Receiver::start([], Reply::Delay(Duration::from_millis(100), 503)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        max_attempts: 1,
        circuit_threshold: 2,
        circuit_cooldown: Duration::from_millis(300),
        timeout: Duration::from_secs(2),
        ..fast_options()
    };
    let plugin = start(&bus, &rx, concurrent(4), options);
    bus.publish("a.one", None);
    bus.publish("a.two", None);
    wait_stats(&plugin, "open", |s| s.circuit == CircuitState::Open).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..4 {
        bus.publish("a.b", None);
    }
    let stats = wait_stats(&plugin, "probe failed, rest skipped", |s| {
        s.failed == 3 && s.circuit_skips == 3
    })
    .await;
    assert_eq!(stats.circuit, CircuitState::Open);
    assert_eq!(rx.count(), 3, "one probe only");
    let stats = settled(&plugin).await;
    assert_eq!(stats.queued, 6);
}

#[tokio::test]
async fn clearing_drops_and_counts_every_unit_in_flight_and_the_queue() {
    let rx = Receiver::start([], Reply::Hang).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
        ..fast_options()
    };
    let plugin = start(&bus, &rx, concurrent(4), options);
    for _ in 0..6 {
        bus.publish("a.b", None);
    }
    rx.wait_for(4, WAIT).await;
    let stats = wait_stats(&plugin, "four in flight", |s| s.in_flight == 4).await;
    assert_eq!(stats.queue_depth, 2);
    assert_eq!(rx.max_in_flight(), 4);
    let started = Instant::now();
    plugin.set_url(None);
    let stats = wait_stats(&plugin, "drops", |s| s.dropped == 6).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        (stats.in_flight, stats.queue_depth, stats.delivered),
        (0, 0, 0)
    );
    assert_balanced(&stats);
    assert_eq!(rx.count(), 4);
}

#[tokio::test]
async fn shutdown_drains_every_unit_then_is_bounded_and_counts_the_rest() {
    // Draining: the eight queued ones are delivered, four at a time.
    let rx = Receiver::start([], Reply::Delay(Duration::from_millis(100), 200)).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(3),
        ..fast_options()
    };
    let plugin = start(&bus, &rx, concurrent(4), options);
    for _ in 0..8 {
        bus.publish("a.b", None);
    }
    let started = Instant::now();
    plugin.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let stats = plugin.stats();
    assert_eq!((stats.delivered, stats.dropped), (8, 0));
    assert_eq!(rx.max_in_flight(), 4);
    assert_balanced(&stats);

    // Bounded: against a receiver that never answers, four in flight and two queued are
    // dropped after drain_timeout.
    let rx = Receiver::start([], Reply::Hang).await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_secs(5),
        drain_timeout: Duration::from_millis(300),
        ..fast_options()
    };
    let plugin = start(&bus, &rx, concurrent(4), options);
    for _ in 0..6 {
        bus.publish("a.b", None);
    }
    rx.wait_for(4, WAIT).await;
    let started = Instant::now();
    plugin.shutdown().await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(290), "drained for {took:?}");
    assert!(took < Duration::from_millis(900), "drained for {took:?}");
    let stats = plugin.stats();
    assert_eq!((stats.queued, stats.delivered, stats.dropped), (6, 0, 6));
    assert_eq!((stats.queue_depth, stats.in_flight), (0, 0));
    assert_balanced(&stats);
}

/// Event 1: 410 after 100 ms; the others hang.
fn gone_first(r: &Recorded, _seen: usize) -> Reply {
    if r.event_id() == 1 {
        Reply::Delay(Duration::from_millis(100), 410)
    } else {
        Reply::Hang
    }
}

#[tokio::test]
async fn a_410_stops_at_once_and_drops_the_other_units_in_flight() {
    let rx = Receiver::start([], Reply::Decide(gone_first)).await;
    let bus = Bus::new(0);
    let mut watch = bus.subscribe("watch", "webhook.*".parse::<Pattern>().unwrap(), 16);
    let options = WebhookOptions {
        timeout: Duration::from_secs(5),
        ..fast_options()
    };
    let plugin = start(&bus, &rx, concurrent(4), options);
    for _ in 0..6 {
        bus.publish("a.b", None);
    }
    let disabled = tokio::time::timeout(WAIT, watch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disabled.event, "webhook.disabled");
    let stats = settled(&plugin).await;
    assert_eq!(
        (stats.queued, stats.failed, stats.dropped, stats.retries),
        (6, 1, 5, 0),
        "the 410 failed, three in flight and two queued dropped"
    );
    assert!(stats.disabled.is_some());
    assert_eq!(rx.count(), 4);
    bus.publish("a.later", None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rx.count(), 4, "nothing more is sent");
}

#[tokio::test]
async fn batches_go_in_parallel_each_with_its_own_id() {
    let rx = Receiver::start([], Reply::Delay(Duration::from_millis(100), 200)).await;
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        batch_max: Some(4),
        batch_wait: Some(Duration::from_millis(50)),
        concurrency: Some(3),
        ..Default::default()
    };
    let options = WebhookOptions {
        timeout: Duration::from_secs(2),
        ..fast_options()
    };
    let plugin = start(&bus, &rx, settings, options);
    plugin.set_secrets(vec![SECRET.into()]);
    for _ in 0..24 {
        bus.publish("a.b", None);
    }
    let stats = wait_stats(&plugin, "all delivered", |s| s.delivered == 24).await;
    assert_eq!(stats.retries, 0);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 6, "six full batches");
    assert_eq!(rx.max_in_flight(), 3);
    let mut seen = HashSet::new();
    let mut ids = HashSet::new();
    for r in &reqs {
        let events = r.json()["events"].as_array().unwrap().clone();
        assert_eq!(events.len(), 4);
        let got: Vec<u64> = events
            .iter()
            .map(|e| e["event_id"].as_u64().unwrap())
            .collect();
        let want = format!("msg_{}_{}-{}", plugin.instance_id(), got[0], got[3]);
        assert_eq!(r.header("webhook-id"), Some(want));
        assert!(ids.insert(r.header("webhook-id")));
        for id in got {
            assert!(seen.insert(id), "event {id} sent twice");
        }
    }
    assert_eq!(seen.len(), 24);
    assert!(verify(&reqs, &[SECRET])
        .iter()
        .all(|c| c.pilot && c.matched == [0]));
    settled(&plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_lets_the_old_units_finish_while_the_new_url_delivers() {
    let a = Receiver::start([], Reply::Delay(Duration::from_millis(100), 200)).await;
    let b = Receiver::ok().await;
    let bus = Bus::new(0);
    let options = WebhookOptions {
        timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(3),
        ..fast_options()
    };
    let plugin = start(&bus, &a, concurrent(4), options);
    for _ in 0..8 {
        bus.publish("a.before", None);
    }
    a.wait_for(4, WAIT).await;
    plugin
        .configure(Some((b.url("/b"), concurrent(4))))
        .unwrap();
    for _ in 0..4 {
        bus.publish("a.after", None);
    }
    let on_b = b.wait_for(4, WAIT).await;
    let mut ids: Vec<u64> = on_b.iter().map(Recorded::event_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [9, 10, 11, 12]);
    let on_a = a.wait_for(8, WAIT).await;
    let mut ids: Vec<u64> = on_a.iter().map(Recorded::event_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=8).collect::<Vec<_>>());
    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.delivered, stats.dropped), (12, 12, 0));
}
