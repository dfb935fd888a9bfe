//! Events from `pilotctl emit` to a real HTTP receiver through the real daemon.

use std::time::Duration;

use pilot_tests::{wait_until, Env, Receiver, Reply};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// The webhook counters from `info`, checking that they balance.
fn webhook_stats(env: &Env) -> Value {
    let w = env.info()["webhook"].clone();
    let n = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("{k} in {w}"));
    // Every event put in the queue is delivered, failed, skipped, dropped or still pending.
    // (`dropped` also counts queue-full drops, which never entered the queue.)
    let settled = n("delivered") + n("failed") + n("circuit_skips");
    assert!(
        settled + n("queue_depth") <= n("queued"),
        "more settled than queued: {w}"
    );
    w
}

/// The webhook's accounting from `info` balances (and agrees with the raw counters).
fn assert_balanced(env: &Env) {
    pilot_tests::accounting::assert_balanced(&env.info());
}

#[test]
fn payload_shape_headers_and_order() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url(), "--node-id", "5"]);
    let got = rx.wait_for(1, WAIT);
    let started = got[0].json();
    assert_eq!(started["event"], "daemon.started");
    assert_eq!(started["event_id"], 1);
    assert_eq!(started["node_id"], 5);
    assert_eq!(
        started["data"]["pid"].as_i64().unwrap() as i32,
        env.pid().unwrap()
    );
    assert!(started["data"]["version"].is_string());
    assert!(started["data"]["socket"]
        .as_str()
        .unwrap()
        .ends_with("pilot.sock"));

    let id = env.emit(
        "handshake.received",
        Some(r#"{"peer_node_id":7,"justification":"want to collaborate"}"#),
    );
    assert_eq!(id, 2);
    for i in 0..30 {
        env.emit(
            "message.received",
            Some(&format!(r#"{{"type":"t","from":"n{i}","size":{i}}}"#)),
        );
    }
    env.emit("node.deregistered", None);
    let got = rx.wait_for(33, WAIT);

    let hs = &got[1];
    assert_eq!(hs.method, "POST");
    assert_eq!(hs.path, "/events");
    assert_eq!(hs.header("content-type"), Some("application/json"));
    assert_eq!(
        hs.header("user-agent"),
        Some(format!("pilot-daemon/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let body = std::str::from_utf8(&hs.body).unwrap();
    assert!(
        body.starts_with(r#"{"event_id":2,"event":"handshake.received","node_id":5,"timestamp":""#),
        "{body}"
    );
    assert!(
        body.ends_with(r#"","data":{"peer_node_id":7,"justification":"want to collaborate"}}"#),
        "{body}"
    );
    let ts = hs.json()["timestamp"].as_str().unwrap().to_string();
    assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
    if let Some((_, frac)) = ts.trim_end_matches('Z').split_once('.') {
        assert!(!frac.ends_with('0'), "trailing zeros are trimmed: {ts}");
    }

    // Publish order, ids 1..=33 without gaps.
    let ids: Vec<u64> = got
        .iter()
        .map(|r| r.json()["event_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=33).collect::<Vec<u64>>());
    for (i, r) in got[2..32].iter().enumerate() {
        assert_eq!(r.json()["data"]["from"], format!("n{i}"));
    }
    let last = got[32].json();
    assert_eq!(last["event"], "node.deregistered");
    assert!(
        last.get("data").is_none(),
        "no data key without data: {last}"
    );

    // The receiver has the 33rd request a moment before the daemon reads its answer.
    assert!(wait_until(WAIT, || webhook_stats(&env)["delivered"] == 33));
    let w = webhook_stats(&env);
    assert_eq!(w["failed"], 0);
    assert_eq!(w["url"], rx.url());
    assert_balanced(&env);
}

#[test]
fn exactly_three_attempts_on_500_and_one_on_404() {
    let env = Env::new();
    let rx = Receiver::with_default(Reply::Status(500));
    env.start(&["--webhook", &rx.url(), "--backoff", "50ms"]);
    let got = rx.wait_for(3, WAIT);
    assert!(got.iter().all(|r| r.event() == "daemon.started"));
    // Backoff doubles: >= 50ms, then >= 100ms.
    assert!(got[1].at - got[0].at >= Duration::from_millis(50));
    assert!(got[2].at - got[1].at >= Duration::from_millis(100));
    assert!(wait_until(WAIT, || webhook_stats(&env)["failed"] == 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.count(), 3, "no fourth attempt");

    rx.set_default(Reply::Status(404));
    env.emit("test.not_found", None);
    assert!(wait_until(WAIT, || webhook_stats(&env)["failed"] == 2));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.count(), 4, "a 4xx is not retried");

    rx.set_default(Reply::Status(302));
    env.emit("test.redirect", None);
    assert!(wait_until(WAIT, || webhook_stats(&env)["failed"] == 3));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.count(), 5, "a redirect is neither followed nor retried");

    let w = webhook_stats(&env);
    assert_eq!(w["retries"], 2);
    assert_eq!(w["delivered"], 0);
    assert!(w["last_error"].as_str().unwrap().contains("302"), "{w}");
    assert!(w["last_error_at"].is_string());
}

#[test]
fn a_retry_that_succeeds_is_delivered_once() {
    let env = Env::new();
    let rx = Receiver::start();
    rx.script(&[Reply::Status(503), Reply::Status(500)]);
    env.start(&["--webhook", &rx.url(), "--backoff", "10ms"]);
    let got = rx.wait_for(3, WAIT);
    assert!(got.iter().all(|r| r.event() == "daemon.started"));
    assert!(wait_until(WAIT, || webhook_stats(&env)["delivered"] == 1));
    let w = webhook_stats(&env);
    assert_eq!(
        (w["failed"].as_u64(), w["retries"].as_u64()),
        (Some(0), Some(2))
    );
}

#[test]
fn circuit_opens_skips_probes_and_closes() {
    let env = Env::new();
    let rx = Receiver::with_default(Reply::Status(500));
    env.start(&[
        "--webhook",
        &rx.url(),
        "--max-attempts",
        "1",
        "--circuit-threshold",
        "2",
        "--circuit-cooldown",
        "1s",
    ]);
    // daemon.started fails (1), e1 fails (2): the circuit opens.
    env.emit("test.e1", None);
    assert!(wait_until(WAIT, || webhook_stats(&env)["circuit"] == "open"));
    assert_eq!(rx.count(), 2);
    env.emit("test.skipped1", None);
    env.emit("test.skipped2", None);
    assert!(wait_until(WAIT, || webhook_stats(&env)["circuit_skips"] == 2));
    assert_eq!(rx.count(), 2, "no request while open");

    // After the cooldown a probe goes out; it fails, so the circuit reopens.
    std::thread::sleep(Duration::from_millis(1100));
    env.emit("test.probe_fails", None);
    assert!(wait_until(WAIT, || rx.count() == 3));
    env.emit("test.skipped3", None);
    assert!(wait_until(WAIT, || webhook_stats(&env)["circuit_skips"] == 3));
    assert_eq!(webhook_stats(&env)["circuit"], "open");

    // Endpoint back: the next probe succeeds and closes the circuit.
    rx.set_default(Reply::Status(200));
    std::thread::sleep(Duration::from_millis(1100));
    env.emit("test.probe_ok", None);
    env.emit("test.after", None);
    assert!(wait_until(WAIT, || webhook_stats(&env)["delivered"] == 2));
    let w = webhook_stats(&env);
    assert_eq!(w["circuit"], "closed");
    assert_eq!(
        rx.events(),
        [
            "daemon.started",
            "test.e1",
            "test.probe_fails",
            "test.probe_ok",
            "test.after"
        ]
    );
    assert_eq!(w["failed"], 3);
    assert_eq!(w["queued"], 8);
    assert_balanced(&env);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let env = Env::new();
    let rx = Receiver::with_default(Reply::Hang);
    env.start(&[
        "--webhook",
        &rx.url(),
        "--queue-size",
        "2",
        "--webhook-timeout",
        "30s",
    ]);
    rx.wait_for(1, WAIT); // daemon.started is in flight, hanging
    env.burst("test.burst", 50, 0);
    let w = webhook_stats(&env);
    assert_eq!(w["dropped"], 48, "2 fit in the queue: {w}");
    assert_eq!(w["dropped_queue_full"], 48);
    assert_eq!(w["queue_depth"], 2);
    assert_eq!(w["queue_capacity"], 2);
    assert_eq!(w["in_flight"], 1, "daemon.started hangs in flight");
    assert_balanced(&env);
    let a = &w["accounting"];
    assert_eq!(
        (&a["emitted"], &a["dropped"], &a["pending"], &a["delivered"]),
        (&51.into(), &48.into(), &3.into(), &0.into()),
        "the queue-full drops were emitted to the webhook and dropped: {a}"
    );
}

#[test]
fn hot_swap_moves_later_events_and_does_not_wait_for_the_old_endpoint() {
    let env = Env::new();
    let a = Receiver::start();
    let b = Receiver::start();
    env.start(&["--webhook", &a.url()]);
    env.emit("test.a1", None);
    env.emit("test.a2", None);
    a.wait_for(3, WAIT);

    // A now hangs on a1': set-webhook must answer without waiting for it.
    a.set_default(Reply::Hang);
    env.emit("test.a_hanging", None);
    a.wait_for(4, WAIT);
    let t = std::time::Instant::now();
    let data = env.ctl_json(&["set-webhook", &b.url()]).data();
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "set-webhook waited for the drain"
    );
    assert_eq!(data, json!({"webhook": b.url(), "applied": true}));
    env.emit("test.b1", None);
    env.emit("test.b2", None);
    b.wait_for(2, WAIT);
    assert_eq!(b.events(), ["test.b1", "test.b2"]);
    assert_eq!(
        a.events(),
        ["daemon.started", "test.a1", "test.a2", "test.a_hanging"]
    );
    assert_eq!(env.config()["webhook"], b.url());
    assert_eq!(env.info()["webhook"]["url"], b.url());
}

#[test]
fn events_queued_before_a_swap_finish_on_the_old_url() {
    let env = Env::new();
    let a = Receiver::with_default(Reply::Delay(Duration::from_millis(100), 200));
    let b = Receiver::start();
    env.start(&["--webhook", &a.url()]);
    a.wait_for(1, WAIT);
    for i in 0..5 {
        env.emit(&format!("test.old{i}"), None);
    }
    env.ctl_json(&["set-webhook", &b.url()]).data();
    env.emit("test.new", None);
    a.wait_for(6, WAIT);
    b.wait_for(1, WAIT);
    assert_eq!(b.events(), ["test.new"]);
    assert_eq!(
        a.events()[1..],
        [
            "test.old0",
            "test.old1",
            "test.old2",
            "test.old3",
            "test.old4"
        ]
    );
}

#[test]
fn clear_webhook_stops_delivery() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    rx.wait_for(1, WAIT);
    let data = env.ctl_json(&["clear-webhook"]).data();
    assert_eq!(data, json!({"webhook": "", "applied": true}));
    env.emit("test.unseen", None);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.events(), ["daemon.started"]);
    assert!(env.info()["webhook"]["url"].is_null());
}

#[test]
fn the_persisted_url_is_used_after_a_restart() {
    let env = Env::new();
    let rx = Receiver::start();
    env.ctl_json(&["set-webhook", &rx.url()]).data();
    let started = env.start(&[]);
    assert_eq!(started["webhook"], rx.url());
    env.emit("test.one", None);
    rx.wait_for(2, WAIT);
    env.stop();
    rx.wait_for(3, WAIT);
    env.start(&[]);
    env.emit("test.two", None);
    let got = rx.wait_for(5, WAIT);
    let names: Vec<String> = got.iter().map(|r| r.event()).collect();
    assert_eq!(
        names,
        [
            "daemon.started",
            "test.one",
            "daemon.shutting_down",
            "daemon.started",
            "test.two"
        ]
    );
    // A fresh daemon starts its sequence again.
    assert_eq!(got[3].json()["event_id"], 1);
}

#[test]
fn daemon_start_webhook_flag_is_not_persisted() {
    let env = Env::new();
    env.write_config("{\"registry\": \"r:1\"}");
    let rx = Receiver::start();
    let started = env.start(&["--webhook", &rx.url()]);
    assert_eq!(started["webhook"], rx.url());
    rx.wait_for(1, WAIT);
    assert_eq!(env.read_config(), "{\"registry\": \"r:1\"}");
}

#[test]
fn graceful_shutdown_delivers_shutting_down_last() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    for i in 0..3 {
        env.emit(&format!("test.e{i}"), None);
    }
    let stopped = env.stop();
    assert_eq!(stopped["forced"], false);
    let got = rx.wait_for(5, WAIT);
    let names: Vec<String> = got.iter().map(|r| r.event()).collect();
    assert_eq!(
        names,
        [
            "daemon.started",
            "test.e0",
            "test.e1",
            "test.e2",
            "daemon.shutting_down"
        ]
    );
    let last = got[4].json();
    assert_eq!(last["event_id"], 5);
    assert!(last["data"]["uptime_seconds"].is_u64());
    assert!(last["data"]["reason"].is_string());
    assert!(!env.pid_path().exists());
    assert!(!env.socket_path().exists());
}

#[test]
fn emit_file_publishes_lines_and_reports_a_bad_line_by_number() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    let file = env.tmp.path().join("events.jsonl");
    std::fs::write(
        &file,
        "{\"event\":\"test.one\",\"data\":{\"n\":1}}\n\n{\"event\":\"test.two\"}\n{\"event\":\"BAD NAME\"}\n{\"event\":\"test.never\"}\n",
    )
    .unwrap();
    let run = env.ctl_json(&["emit", "--file", file.to_str().unwrap()]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(run.stderr.contains("line 4"), "{run:?}");
    let got = rx.wait_for(3, WAIT);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rx.events(), ["daemon.started", "test.one", "test.two"]);
    assert_eq!(got[1].json()["data"], json!({"n": 1}));

    std::fs::write(&file, "{\"event\":\"test.a\"}\n{\"event\":\"test.b\"}\n").unwrap();
    let out = env
        .ctl_json(&["emit", "--file", file.to_str().unwrap()])
        .data();
    assert_eq!(
        out,
        json!({"count": 2, "first_event_id": 4, "last_event_id": 5})
    );
}

#[test]
fn events_streams_matching_events_as_json_lines() {
    let env = Env::new();
    env.start(&[]);
    let child = env
        .command(&env.pilotctl_bin())
        .args([
            "events",
            "--filter",
            "handshake.*",
            "--count",
            "2",
            "--timeout",
            "20s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the subscriber is on the bus.
    assert!(wait_until(WAIT, || {
        env.info()["bus"]["subscribers"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["pattern"] == "handshake.*"))
    }));
    env.emit(
        "trust.changed",
        Some(r#"{"peer_node_id":7,"state":"trusted","reason":"approved"}"#),
    );
    env.emit(
        "handshake.received",
        Some(r#"{"peer_node_id":7,"justification":"hi"}"#),
    );
    env.emit("handshake.approved", Some(r#"{"peer_node_id":7}"#));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["event"], "handshake.received");
    assert_eq!(
        lines[0]["data"],
        json!({"peer_node_id": 7, "justification": "hi"})
    );
    assert_eq!(lines[1]["event"], "handshake.approved");
}

#[test]
fn a_large_emit_file_completes_over_one_connection() {
    let env = Env::new();
    env.start(&[]);
    let file = env.tmp.path().join("big.jsonl");
    let line = "{\"event\":\"load.test\",\"data\":{\"n\":1}}\n";
    std::fs::write(&file, line.repeat(100_000)).unwrap();
    let out = env
        .ctl_json(&["emit", "--file", file.to_str().unwrap()])
        .data();
    assert_eq!(
        out,
        json!({"count": 100_000, "first_event_id": 2, "last_event_id": 100_001})
    );
    assert_eq!(env.info()["bus"]["last_event_id"], 100_001);
}
