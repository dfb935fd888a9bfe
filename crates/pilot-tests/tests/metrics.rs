//! `--metrics-addr`: the real daemon serves `/metrics` over TCP; the scraped, parsed values
//! equal `pilotctl info --json`, the latency histogram counts every attempt, other paths are
//! 404, a busy port fails the start, and the endpoint stops with the daemon.

use std::net::SocketAddr;
use std::time::Duration;

use pilot_tests::metrics::{http_get, scrape, Exposition};
use pilot_tests::{free_port, wait_until, Env, Receiver, Reply};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Waits until nothing moves: every event the webhook took has settled.
fn settled_info(env: &Env, events: u64) -> Value {
    let mut info = Value::Null;
    let quiet = wait_until(WAIT, || {
        info = env.info();
        let w = &info["webhook"];
        let done = w["delivered"].as_u64().unwrap() + w["failed"].as_u64().unwrap();
        done == events && w["in_flight"] == 0 && w["queue_depth"] == 0
    });
    assert!(quiet, "webhook did not settle: {info}");
    info
}

/// The labels of the default webhook's series.
const DEFAULT: &[(&str, &str)] = &[("webhook", "default")];
/// Every counter and gauge `info` also shows has the same value in the scrape.
fn assert_matches_info(m: &Exposition, info: &Value) {
    let w = &info["webhook"];
    let n = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("{k} in {w}")) as f64;
    for key in [
        "queued",
        "recovered",
        "delivered",
        "failed",
        "retries",
        "dropped",
        "dropped_queue_full",
        "circuit_skips",
        "filtered",
    ] {
        let name = format!("pilot_webhook_{key}_total");
        assert_eq!(m.value(&name, DEFAULT), n(key), "{name}");
        assert_eq!(m.families[&format!("pilot_webhook_{key}")].kind, "counter");
    }
    for key in ["queue_depth", "queue_capacity", "in_flight"] {
        let name = format!("pilot_webhook_{key}");
        assert_eq!(m.value(&name, DEFAULT), n(key), "{name}");
        assert_eq!(m.families[&name].kind, "gauge");
    }
    let bus = &info["bus"];
    assert_eq!(
        m.value("pilot_bus_events_published_total", &[]),
        bus["published"].as_u64().unwrap() as f64
    );
    for sub in bus["subscribers"].as_array().unwrap() {
        let label = sub["label"].as_str().unwrap();
        for key in ["queued", "dropped"] {
            let name = format!("pilot_bus_subscriber_{key}_total");
            assert_eq!(
                m.value(&name, &[("subscriber", label)]),
                sub[key].as_u64().unwrap() as f64,
                "{name} {label}"
            );
        }
    }
    let version = info["version"].as_str().unwrap();
    assert_eq!(m.value("pilot_build_info", &[("version", version)]), 1.0);
}

/// The histogram of one outcome: its `_count`, after checking its buckets are cumulative and
/// end in `+Inf` = `_count`.
fn histogram_count(m: &Exposition, outcome: &str) -> u64 {
    let name = "pilot_webhook_attempt_duration_seconds";
    let buckets: Vec<(f64, f64)> = m
        .of(name)
        .into_iter()
        .filter(|s| s.name == format!("{name}_bucket") && s.labels["outcome"] == outcome)
        .map(|s| {
            let le = &s.labels["le"];
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (bound, s.value)
        })
        .collect();
    assert_eq!(buckets.len(), 16, "15 bounds and +Inf: {buckets:?}");
    assert_eq!(buckets[0].0, 0.0005);
    assert_eq!(buckets[14].0, 30.0);
    assert!(buckets
        .windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    let count = m.value(
        &format!("{name}_count"),
        &[("webhook", "default"), ("outcome", outcome)],
    );
    assert_eq!(buckets[15], (f64::INFINITY, count));
    let sum = m.value(
        &format!("{name}_sum"),
        &[("webhook", "default"), ("outcome", outcome)],
    );
    assert!(
        sum >= 0.0 && (count > 0.0) == (sum > 0.0),
        "sum {sum}, count {count}"
    );
    count as u64
}

#[test]
fn scraped_counters_equal_info_and_the_histogram_counts_every_attempt() {
    let env = Env::new();
    // daemon.started: 500, 500, then 200 (two retries); the first emit: 404 (failed at once);
    // the rest: 200.
    let rx = Receiver::start();
    rx.script(&[
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(200),
        Reply::Status(404),
    ]);
    let addr = free_addr();
    env.start(&[
        "--webhook",
        &rx.url(),
        "--backoff",
        "10ms",
        "--metrics-addr",
        &addr.to_string(),
    ]);
    for i in 0..5 {
        env.emit(
            "handshake.received",
            Some(&format!(r#"{{"peer_node_id":{i},"justification":"x"}}"#)),
        );
    }
    let info = settled_info(&env, 6);
    let m = scrape(addr);
    assert_matches_info(&m, &info);
    let w = &info["webhook"];
    assert_eq!(
        (
            w["delivered"].as_u64(),
            w["failed"].as_u64(),
            w["retries"].as_u64()
        ),
        (Some(5), Some(1), Some(2))
    );

    // One histogram entry per HTTP attempt: the 8 requests the receiver got, the 8 lines of the
    // delivery log; a 2xx is a success, the two 500s and the 404 failures.
    let success = histogram_count(&m, "success");
    let failure = histogram_count(&m, "failure");
    assert_eq!((success, failure), (5, 3));
    assert_eq!(rx.count(), 8);
    let log = env
        .ctl_json(&["webhook", "deliveries", "--limit", "0"])
        .data();
    assert_eq!(
        log["deliveries"].as_array().unwrap().len() as u64,
        success + failure
    );

    for family in [
        "pilot_webhook_attempt_duration_seconds",
        "pilot_webhook_circuit_state",
        "pilot_bus_subscriber_dropped",
        "pilot_uptime_seconds",
    ] {
        let f = &m.families[family];
        assert!(!f.help.is_empty(), "{family} has a HELP text");
    }
    assert_eq!(
        m.value(
            "pilot_webhook_circuit_state",
            &[("webhook", "default"), ("state", "closed")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "pilot_webhook_circuit_state",
            &[("webhook", "default"), ("state", "open")]
        ),
        0.0
    );
    assert_eq!(m.value("pilot_webhook_configured", DEFAULT), 1.0);
    let uptime = m.value("pilot_uptime_seconds", &[]);
    assert!(uptime > 0.0 && uptime < 600.0, "{uptime}");
    // No URL anywhere in the exposition.
    let body = http_get(addr, "/metrics").unwrap().body;
    assert!(!body.contains("127.0.0.1"), "{body}");

    // A scrape is taken fresh: one more event shows at once.
    env.emit("trust.revoked", Some(r#"{"peer_node_id":1}"#));
    let info = settled_info(&env, 7);
    let m = scrape(addr);
    assert_matches_info(&m, &info);
    assert_eq!(histogram_count(&m, "success"), 6);
    env.stop();
}

#[test]
fn the_endpoint_serves_only_get_metrics_in_the_openmetrics_type() {
    let env = Env::new();
    let addr = free_addr();
    env.start(&["--metrics-addr", &addr.to_string()]);
    let r = http_get(addr, "/metrics").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    for path in ["/", "/metric", "/metrics/extra", "/favicon.ico"] {
        let r = http_get(addr, path).unwrap();
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    // Without a webhook: no URL, an empty queue.
    let m = scrape(addr);
    assert_eq!(m.value("pilot_webhook_configured", DEFAULT), 0.0);
    assert_eq!(m.value("pilot_webhook_queue_capacity", DEFAULT), 0.0);
    assert_matches_info(&m, &env.info());

    // The endpoint stops with the daemon.
    env.stop();
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(),
        "nothing listens on {addr} after the stop"
    );
}

#[test]
fn config_metrics_addr_serves_and_shows_the_durable_spool() {
    let env = Env::new();
    let addr = free_addr();
    // The receiver refuses: events stay in the spool.
    let rx = Receiver::with_default(Reply::Status(503));
    env.write_config(&format!(r#"{{"metrics_addr": "{addr}"}}"#));
    env.start(&[
        "--webhook",
        &rx.url(),
        "--durable",
        "--backoff",
        "1h",
        "--max-backoff",
        "1h",
    ]);
    for i in 0..3 {
        env.emit(
            "message.received",
            Some(&format!(r#"{{"type":"t","from":"n","size":{i}}}"#)),
        );
    }
    let mut info = Value::Null;
    assert!(
        wait_until(WAIT, || {
            info = env.info();
            info["webhook"]["spool"]["depth"] == 4 && rx.count() >= 1
        }),
        "{info}"
    );
    let m = scrape(addr);
    let spool = &info["webhook"]["spool"];
    for key in ["depth", "bytes", "max_bytes"] {
        assert_eq!(
            m.value(&format!("pilot_webhook_spool_{key}"), DEFAULT),
            spool[key].as_u64().unwrap() as f64,
            "{key}"
        );
    }
    assert!(m.value("pilot_webhook_spool_bytes", DEFAULT) > 0.0);
    assert!(histogram_count(&m, "failure") >= 1);
    assert_eq!(histogram_count(&m, "success"), 0);
    env.stop();
}

#[test]
fn a_busy_port_fails_the_start_with_a_clear_message() {
    let env = Env::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let run = env.ctl_json(&["daemon", "start", "--metrics-addr", &addr.to_string()]);
    assert_eq!(run.error_code(), "start_failed", "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("cannot serve metrics on {addr}")),
        "{run:?}"
    );
    assert!(run.stderr.to_lowercase().contains("in use"), "{run:?}");
    assert!(env.pid().is_none(), "no pid file left behind");
    assert!(!env.socket_path().exists(), "no socket left behind");

    // The daemon itself exits 1 with one `error:` line, before it says it is ready.
    let out = env
        .command(&env.daemon_bin())
        .args(["--metrics-addr", &addr.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: cannot serve metrics on {addr}: ")),
        "{stderr}"
    );
    assert!(!stderr.contains(" ready "), "never ready: {stderr}");

    // A malformed address is refused before anything starts.
    let run = env.ctl(&["daemon", "start", "--metrics-addr", "localhost:9464"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("expected IP:PORT"), "{run:?}");
    drop(taken);
}
