//! Durable mode end to end: real spool files in temp dirs, real receivers on 127.0.0.1. A
//! crash and restart with 1000 spooled events, outages with the circuit open, retries past
//! `max_attempts`, expiry, the size limit, 4xx, 410, filters, batching, shutdown, the on-disk
//! delivery log, `wait_durable`, hot swaps in and out of durable mode, and `redeliver`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pilot_core::{Bus, Pattern, WebhookSettings};
use pilot_webhook::{
    open_existing_spool, open_spool, CircuitState, Stats, WebhookError, WebhookOptions,
    WebhookPlugin, SPOOL_FILE,
};
use tokio::time::Instant;

use crate::receiver::{refused_addr, Receiver, Recorded, Reply};
use crate::support::{assert_balanced, fast_options, wait_stats};

const WAIT: Duration = Duration::from_secs(5);

fn spool_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(SPOOL_FILE)
}

fn options(path: &Path) -> WebhookOptions {
    WebhookOptions {
        spool_path: Some(path.to_path_buf()),
        ..fast_options()
    }
}

fn durable() -> WebhookSettings {
    WebhookSettings {
        durable: true,
        max_backoff: Some(Duration::from_millis(50)),
        ..Default::default()
    }
}

async fn refused_url() -> url::Url {
    url::Url::parse(&format!("http://{}/down", refused_addr().await)).unwrap()
}

/// Publishes `n` events named `name` and waits until the last is on disk; their ids.
async fn publish_durably(bus: &Bus, name: &str, n: usize) -> Vec<u64> {
    let ids: Vec<u64> = (0..n).map(|_| bus.publish(name, None).event_id).collect();
    if let Some(last) = ids.last() {
        tokio::time::timeout(WAIT, bus.wait_durable(*last))
            .await
            .expect("wait_durable settles")
            .expect("durable");
    }
    ids
}

/// The event ids of single-event requests, with consecutive repeats of one webhook-id (a
/// redelivery) collapsed; checks each id is `msg_<node>_<event_id>`.
fn delivered_ids(requests: &[Recorded]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    let mut last_id: Option<String> = None;
    for r in requests {
        let id = r.event_id();
        let webhook_id = r.header("webhook-id").unwrap_or_default();
        let want = format!("msg_0_{id}");
        assert!(
            r.header("webhook-id").is_none() || webhook_id == want,
            "{webhook_id} for event {id}"
        );
        if last_id.as_deref() == Some(want.as_str()) {
            continue;
        }
        last_id = Some(want);
        out.push(id);
    }
    out
}

/// Waits until the spool is empty and nothing moves, then checks the accounting identity.
async fn settled(plugin: &WebhookPlugin) -> Stats {
    let stats = wait_stats(plugin, "the spool to drain", |s| {
        s.queue_depth == 0 && s.in_flight == 0 && s.spool.as_ref().is_some_and(|sp| sp.depth == 0)
    })
    .await;
    assert_balanced(&stats);
    stats
}

fn start(bus: &Bus, url: url::Url, settings: WebhookSettings, o: WebhookOptions) -> WebhookPlugin {
    WebhookPlugin::start_with(bus.clone(), Some((url, settings)), o).expect("starts")
}

/// The headline scenario: 1000 events accepted while the receiver is down, the process "dies"
/// (the plugin is dropped without shutdown and its runtime torn down), a new plugin on the
/// same spool file with the receiver up delivers all of them, in order, with their ids.
#[test]
fn a_thousand_events_survive_a_crash_and_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        assert!(open_existing_spool(&path).unwrap().is_none(), "no file yet");
        let bus = Bus::new(0);
        let plugin = start(&bus, refused_url().await, durable(), options(&path));
        let ids = publish_durably(&bus, "handshake.received", 1000).await;
        assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
        let spool = plugin.spool().expect("opened by the durable configure");
        assert_eq!(spool.stats().depth, 1000, "every accepted event is on disk");
        let stats = plugin.stats();
        assert_eq!((stats.queued, stats.delivered, stats.dropped), (1000, 0, 0));
        assert_balanced(&stats);
        // No shutdown: the plugin and its runtime just go away.
        drop(plugin);
    });
    drop(first);

    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let rx = Receiver::ok().await;
        let spool = open_existing_spool(&path)
            .unwrap()
            .expect("the file is there");
        assert_eq!(spool.stats().depth, 1000);
        let bus = Bus::starting_after(0, spool.last_event_id());
        let o = WebhookOptions {
            spool: Some(spool),
            spool_path: None,
            ..fast_options()
        };
        let plugin = start(&bus, rx.url("/events"), durable(), o);
        let requests = rx.wait_for(1000, Duration::from_secs(20)).await;
        assert_eq!(delivered_ids(&requests), (1..=1000).collect::<Vec<_>>());
        let next = bus.publish("handshake.received", None);
        assert_eq!(
            next.event_id, 1001,
            "event ids never repeat across restarts"
        );
        rx.wait_for(1001, WAIT).await;
        let stats = settled(&plugin).await;
        assert_eq!(stats.recovered, 1000);
        assert_eq!((stats.queued, stats.delivered, stats.dropped), (1, 1001, 0));
        plugin.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_durable_resolves_once_the_event_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(0);
    let plugin = start(
        &bus,
        refused_url().await,
        durable(),
        options(&spool_path(&dir)),
    );
    let spool = plugin.spool().unwrap();
    for _ in 0..5 {
        let ev = bus.publish("a.b", None);
        bus.wait_durable(ev.event_id).await.unwrap();
        let rec = spool.get(ev.event_id).unwrap().expect("on disk");
        assert_eq!(rec.webhook_id, format!("msg_0_{}", ev.event_id));
        assert_eq!(rec.payload, ev.payload());
    }
    assert_eq!(spool.stats().depth, 5);
    assert_eq!(bus.durable_sinks().len(), 1);
    plugin.shutdown().await;
    assert!(
        bus.durable_sinks().is_empty(),
        "the sink is gone after shutdown"
    );
    assert_balanced(&plugin.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_the_circuit_open_drains_in_order_without_skips() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(vec![Reply::Status(503); 6], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let o = WebhookOptions {
        max_attempts: 1,
        circuit_threshold: 2,
        circuit_cooldown: Duration::from_millis(300),
        ..options(&spool_path(&dir))
    };
    let plugin = start(&bus, rx.url("/x"), durable(), o);
    let ids = publish_durably(&bus, "a.b", 20).await;
    wait_stats(&plugin, "the circuit to open", |s| {
        s.circuit == CircuitState::Open
    })
    .await;
    let stats = wait_stats(&plugin, "all delivered", |s| s.delivered == 20).await;
    assert_eq!(stats.circuit_skips, 0, "nothing is skipped in durable mode");
    assert_eq!(stats.failed, 0);
    assert_eq!(stats.circuit, CircuitState::Closed);
    let requests = rx.requests();
    assert_eq!(
        requests.len(),
        26,
        "6 failed attempts of the oldest, then 20"
    );
    assert!(
        requests[..7].iter().all(|r| r.event_id() == 1),
        "probes use the oldest event"
    );
    assert_eq!(delivered_ids(&requests), ids);
    // The probes waited for the cooldown.
    let gap = requests[2].at - requests[1].at;
    assert!(gap >= Duration::from_millis(290), "probe after {gap:?}");
    settled(&plugin).await;
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_go_on_past_max_attempts_until_success_with_one_webhook_id() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(
        [
            Reply::Status(500),
            Reply::Status(429),
            Reply::Status(408),
            Reply::Status(502),
            Reply::Status(500),
            Reply::Status(503),
        ],
        Reply::Status(200),
    )
    .await;
    let bus = Bus::new(0);
    let o = WebhookOptions {
        circuit_threshold: 0,
        ..options(&spool_path(&dir))
    };
    let plugin = start(&bus, rx.url("/x"), durable(), o);
    plugin.set_secrets(vec![pilot_core::secrets::generate()]);
    publish_durably(&bus, "a.b", 1).await;
    let requests = rx.wait_for(7, WAIT).await;
    let stats = settled(&plugin).await;
    assert_eq!((stats.delivered, stats.failed, stats.retries), (1, 0, 6));
    let latency = &stats.latency;
    assert_eq!((latency.success.count(), latency.failure.count()), (1, 6));
    let ids: Vec<String> = requests
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert!(ids.iter().all(|id| id == "msg_0_1"), "{ids:?}");
    let attempts: Vec<u32> = plugin
        .deliveries(false, 0)
        .iter()
        .map(|d| d.attempt)
        .collect();
    assert_eq!(attempts, (1..=7).collect::<Vec<_>>());
    // Backoff doubles from 10 ms and is capped by max_backoff (50 ms): well under a second.
    let took = requests[6].at - requests[0].at;
    assert!(
        took >= Duration::from_millis(10 + 20 + 40 + 50 + 50 + 50),
        "{took:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_beyond_max_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(
        [Reply::WithHeader(429, "retry-after", "1")],
        Reply::Status(200),
    )
    .await;
    let bus = Bus::new(0);
    let plugin = start(&bus, rx.url("/x"), durable(), options(&spool_path(&dir)));
    publish_durably(&bus, "a.b", 1).await;
    let requests = rx.wait_for(2, WAIT).await;
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(2), "retried after {gap:?}");
    let stats = settled(&plugin).await;
    assert_eq!((stats.delivered, stats.retries), (1, 1));
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_count_is_kept_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start([], Reply::Status(500)).await;
    let bus = Bus::new(0);
    let plugin = start(&bus, rx.url("/x"), durable(), options(&spool_path(&dir)));
    publish_durably(&bus, "a.b", 1).await;
    rx.wait_for(3, WAIT).await;
    let spool = plugin.spool().unwrap();
    let deadline = Instant::now() + WAIT;
    while spool.get(1).unwrap().unwrap().attempts < 3 {
        assert!(Instant::now() < deadline, "attempts never reached 3");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    plugin.shutdown().await;
    assert_balanced(&plugin.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_discard_after_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        discard_after: Some(Duration::from_millis(300)),
        ..durable()
    };
    let plugin = start(
        &bus,
        refused_url().await,
        settings,
        options(&spool_path(&dir)),
    );
    publish_durably(&bus, "a.b", 5).await;
    let stats = wait_stats(&plugin, "expiry", |s| {
        s.spool.as_ref().is_some_and(|sp| sp.expired == 5)
    })
    .await;
    let spool = stats.spool.clone().unwrap();
    assert_eq!((spool.depth, spool.bytes), (0, 0));
    assert_eq!(stats.dropped, 5, "expired events are counted as dropped");
    assert_eq!(stats.delivered, 0);
    let stats = settled(&plugin).await;
    assert_eq!(plugin.spool().unwrap().stats().expired, 5, "also on disk");
    assert_eq!(stats.queued, 5);
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(0);
    // Each record is ~100 bytes of JSON plus its header: room for about ten.
    let settings = WebhookSettings {
        max_spool_bytes: Some(1200),
        ..durable()
    };
    let plugin = start(
        &bus,
        refused_url().await,
        settings.clone(),
        options(&spool_path(&dir)),
    );
    for _ in 0..30 {
        publish_durably(&bus, "a.b", 1).await;
    }
    let stats = plugin.stats();
    let spool = stats.spool.clone().unwrap();
    assert!(spool.bytes <= 1200, "{spool:?}");
    assert!(spool.depth >= 5 && spool.depth < 30, "{spool:?}");
    assert_eq!(spool.dropped_full, 30 - spool.depth, "{spool:?}");
    assert_eq!(stats.dropped, spool.dropped_full);
    assert_eq!(spool.max_bytes, 1200);
    assert_balanced(&stats);
    // The receiver comes back (a new URL): the newest events survive, in order.
    let rx = Receiver::ok().await;
    plugin.configure(Some((rx.url("/x"), settings))).unwrap();
    let kept = spool.depth as usize;
    let requests = rx.wait_for(kept, WAIT).await;
    let want: Vec<u64> = (31 - kept as u64..=30).collect();
    assert_eq!(delivered_ids(&requests), want);
    settled(&plugin).await;
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_removes_the_event_as_failed_and_the_next_one_goes() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start([Reply::Status(404), Reply::Status(302)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let plugin = start(&bus, rx.url("/x"), durable(), options(&spool_path(&dir)));
    publish_durably(&bus, "a.b", 3).await;
    let requests = rx.wait_for(3, WAIT).await;
    assert_eq!(delivered_ids(&requests), vec![1, 2, 3], "one attempt each");
    let stats = settled(&plugin).await;
    assert_eq!((stats.failed, stats.delivered, stats.retries), (2, 1, 0));
    assert_eq!(plugin.deliveries(true, 0).len(), 2);
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_webhook_and_keeps_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start([Reply::Status(410)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let mut announcements = bus.subscribe("watch", "webhook.*".parse::<Pattern>().unwrap(), 8);
    let plugin = start(&bus, rx.url("/x"), durable(), options(&spool_path(&dir)));
    publish_durably(&bus, "a.b", 3).await;
    let stats = wait_stats(&plugin, "disabled", |s| s.disabled.is_some()).await;
    assert!(
        stats.disabled.as_deref().unwrap().contains("410"),
        "{stats:?}"
    );
    let disabled = tokio::time::timeout(WAIT, announcements.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disabled.event, "webhook.disabled");
    let stats = plugin.stats();
    assert_eq!(
        stats.spool.as_ref().unwrap().depth,
        3,
        "the spool keeps every event"
    );
    assert_eq!((stats.failed, stats.dropped, stats.delivered), (0, 0, 0));
    assert!(
        !bus.subscribers().iter().any(|s| s.label == "webhook"),
        "no more events are taken"
    );
    assert_balanced(&stats);
    // webhook.disabled itself was not taken, nor is anything published now.
    bus.publish("a.after", None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rx.count(), 1);
    // The next configure re-enables it: the spooled events go, in order.
    plugin.configure(Some((rx.url("/x"), durable()))).unwrap();
    let requests = rx.wait_for(4, WAIT).await;
    assert_eq!(delivered_ids(&requests), vec![1, 2, 3]);
    let after = publish_durably(&bus, "a.b", 1).await;
    rx.wait_for(5, WAIT).await;
    assert_eq!(rx.requests()[4].event_id(), after[0]);
    let stats = settled(&plugin).await;
    assert_eq!((stats.delivered, stats.disabled), (4, None));
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_apply_at_delivery_and_count_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        events: vec!["handshake.*".into()],
        exclude: vec!["handshake.rejected".into()],
        ..durable()
    };
    let plugin = start(&bus, rx.url("/x"), settings, options(&spool_path(&dir)));
    for name in [
        "handshake.received",
        "data.datagram",
        "handshake.rejected",
        "handshake.accepted",
        "trust.changed",
    ] {
        publish_durably(&bus, name, 1).await;
    }
    let stats = wait_stats(&plugin, "all settled", |s| s.delivered + s.filtered == 5).await;
    assert_eq!((stats.delivered, stats.filtered), (2, 3));
    let names: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["handshake.received", "handshake.accepted"]);
    settled(&plugin).await;
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_come_from_the_spool_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        batch_max: Some(10),
        batch_wait: Some(Duration::from_millis(50)),
        ..durable()
    };
    // Spooled while the receiver is down, then delivered in full batches.
    let plugin = start(
        &bus,
        refused_url().await,
        settings.clone(),
        options(&spool_path(&dir)),
    );
    plugin.set_secrets(vec![pilot_core::secrets::generate()]);
    publish_durably(&bus, "a.b", 25).await;
    let rx = Receiver::ok().await;
    plugin.configure(Some((rx.url("/x"), settings))).unwrap();
    let stats = wait_stats(&plugin, "all delivered", |s| s.delivered == 25).await;
    let requests = rx.requests();
    let mut ids = Vec::new();
    for r in &requests {
        let body = r.json();
        let events = body["events"].as_array().expect("a batch body");
        assert!(events.len() <= 10);
        let batch: Vec<u64> = events
            .iter()
            .map(|e| e["event_id"].as_u64().unwrap())
            .collect();
        assert_eq!(
            r.header("webhook-id").unwrap(),
            format!("msg_0_{}-{}", batch[0], batch[batch.len() - 1])
        );
        ids.extend(batch);
    }
    assert_eq!(ids, (1..=25).collect::<Vec<_>>());
    assert_eq!(requests.len(), 3, "10 + 10 + 5");
    assert_eq!(stats.failed, 0);
    settled(&plugin).await;
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_undelivered_events_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    let rx = Receiver::start([], Reply::Hang).await;
    let bus = Bus::new(0);
    let o = WebhookOptions {
        timeout: Duration::from_secs(5),
        ..options(&path)
    };
    let plugin = start(&bus, rx.url("/x"), durable(), o);
    // Published, not waited for: the spooler writes them at shutdown at the latest.
    for _ in 0..10 {
        bus.publish("a.b", None);
    }
    rx.wait_for(1, WAIT).await;
    let started = Instant::now();
    plugin.shutdown().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "bounded by drain_timeout: {took:?}"
    );
    let stats = plugin.stats();
    assert_eq!((stats.dropped, stats.delivered), (0, 0), "nothing dropped");
    assert_eq!(stats.queue_depth + stats.in_flight, 10);
    assert_balanced(&stats);
    drop(plugin);
    let spool = open_existing_spool(&path).unwrap().unwrap();
    assert_eq!(spool.stats().depth, 10, "all ten are still on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_log_is_on_disk_and_comes_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    let rx = Receiver::start([Reply::Status(500)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let plugin = start(&bus, rx.url("/x"), durable(), options(&path));
    publish_durably(&bus, "a.b", 3).await;
    settled(&plugin).await;
    let test = plugin.test().await.unwrap();
    assert!(test.ok);
    let before = plugin.deliveries(false, 0);
    assert_eq!(before.len(), 5, "4 attempts and the test");
    plugin.shutdown().await;
    drop(plugin);

    let spool = open_existing_spool(&path).unwrap().unwrap();
    let bus = Bus::starting_after(0, spool.last_event_id());
    let o = WebhookOptions {
        spool: Some(spool),
        ..fast_options()
    };
    let plugin = WebhookPlugin::start_with(bus, None, o).unwrap();
    assert_eq!(
        plugin.deliveries(false, 0),
        before,
        "restored from the spool"
    );
    assert_eq!(plugin.deliveries(true, 0).len(), 1);
    let stats = plugin.stats();
    assert_eq!(stats.recovered, 0);
    assert!(stats.spool.is_some(), "shown while the spool is open");
    assert_balanced(&stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_url_takes_the_backlog_and_switching_modes_keeps_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(0);
    let plugin = start(
        &bus,
        refused_url().await,
        durable(),
        options(&spool_path(&dir)),
    );
    publish_durably(&bus, "a.one", 3).await;

    // Durable to in-memory: new events go to the queue, spooled ones wait on disk.
    let rx = Receiver::ok().await;
    plugin
        .configure(Some((rx.url("/mem"), WebhookSettings::default())))
        .unwrap();
    bus.publish("a.two", None);
    bus.publish("a.two", None);
    rx.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ids: Vec<u64> = rx.requests().iter().map(|r| r.event_id()).collect();
    assert_eq!(ids, vec![4, 5], "only the new events, in memory mode");
    let stats = plugin.stats();
    assert_eq!(stats.spool.as_ref().unwrap().depth, 3);
    assert_eq!(
        stats.queue_depth, 3,
        "spooled events still count as waiting"
    );
    assert_balanced(&stats);

    // Back to durable, on this URL: the backlog follows it.
    plugin.configure(Some((rx.url("/dur"), durable()))).unwrap();
    rx.wait_for(5, WAIT).await;
    let tail: Vec<(String, u64)> = rx.requests()[2..]
        .iter()
        .map(|r| (r.target.clone(), r.event_id()))
        .collect();
    assert_eq!(
        tail,
        vec![("/dur".into(), 1), ("/dur".into(), 2), ("/dur".into(), 3)]
    );

    // Cleared while durable: delivery stops, nothing is dropped; the spool keeps what is
    // published before the clear.
    let down = refused_url().await;
    plugin.configure(Some((down, durable()))).unwrap();
    publish_durably(&bus, "a.three", 2).await;
    plugin.configure(None).unwrap();
    bus.publish("a.ignored", None);
    let stats = plugin.stats();
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.url, None);
    let depth = wait_stats(&plugin, "the worker to stop", |s| s.in_flight == 0)
        .await
        .spool
        .unwrap()
        .depth;
    assert_eq!(depth, 2);
    assert_balanced(&plugin.stats());
    plugin.configure(Some((rx.url("/dur"), durable()))).unwrap();
    rx.wait_for(7, WAIT).await;
    let stats = settled(&plugin).await;
    assert_eq!((stats.delivered, stats.dropped), (7, 0));
    plugin.shutdown().await;
}

/// In-memory to durable while events keep coming: each event is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_durable_under_load_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    // The in-memory queue drains in the background after the switch: give it the time.
    let o = WebhookOptions {
        queue_size: 10_000,
        drain_timeout: Duration::from_secs(20),
        ..options(&spool_path(&dir))
    };
    let plugin = start(&bus, rx.url("/x"), WebhookSettings::default(), o);
    let publisher = std::thread::spawn({
        let bus = bus.clone();
        move || {
            for i in 0..2000 {
                bus.publish("a.b", None);
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    plugin.configure(Some((rx.url("/x"), durable()))).unwrap();
    publisher.join().unwrap();
    rx.wait_for(2000, Duration::from_secs(20)).await;
    let stats = settled(&plugin).await;
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for r in rx.requests() {
        *seen.entry(r.event_id()).or_default() += 1;
    }
    assert_eq!(seen.len(), 2000, "every event arrived");
    assert!(seen.values().all(|n| *n == 1), "none twice");
    assert_eq!((stats.queued, stats.delivered), (2000, 2000));
    assert!(stats.spool.is_some());
    plugin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_takes_a_spooled_event_with_its_webhook_id() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start([], Reply::Status(503)).await;
    let bus = Bus::new(0);
    let plugin = start(&bus, rx.url("/x"), durable(), options(&spool_path(&dir)));
    plugin.set_secrets(vec![pilot_core::secrets::generate()]);
    publish_durably(&bus, "a.b", 1).await;
    rx.wait_for(1, WAIT).await;
    let outcome = plugin.redeliver(1).await.unwrap();
    assert_eq!(outcome.webhook_id, "msg_0_1");
    assert_eq!((outcome.status, outcome.ok), (Some(503), false));
    assert!(outcome.signed);
    assert!(matches!(
        plugin.redeliver(99).await,
        Err(WebhookError::NotFound { event_id: 99 })
    ));
    plugin.shutdown().await;
    assert_balanced(&plugin.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_needs_a_spool_and_a_spool_in_use_is_an_error_naming_it() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let err =
        WebhookPlugin::start_with(bus.clone(), Some((rx.url("/x"), durable())), fast_options())
            .unwrap_err();
    assert!(matches!(err, WebhookError::NoSpool { .. }), "{err}");
    assert!(err.to_string().contains("spool"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = spool_path(&dir);
    let held = open_spool(&path).unwrap();
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), options(&path));
    let err = plugin
        .configure(Some((rx.url("/y"), durable())))
        .unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(
        plugin.url().unwrap().path(),
        "/x",
        "a failed configure changes nothing"
    );
    drop(held);
    plugin.configure(Some((rx.url("/y"), durable()))).unwrap();
    let ev = bus.publish("a.b", None);
    bus.wait_durable(ev.event_id).await.unwrap();
    rx.wait_for(1, WAIT).await;
    let spool: Arc<_> = plugin.spool().unwrap();
    assert_eq!(spool.path(), path);
    settled(&plugin).await;
    plugin.shutdown().await;
}
