//! The delivery log and the webhook tools end to end: `webhook deliveries` (`--failed`,
//! `--limit`, JSON fields, table), `webhook test` (status, latency, signed) and
//! `webhook redeliver` (same body and `webhook-id`).

use std::time::Duration;

use pilot_tests::{sig, wait_until, Env, Receiver, Reply};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn deliveries(env: &Env, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["webhook", "deliveries"];
    args.extend_from_slice(extra);
    env.ctl_json(&args).data()["deliveries"]
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn deliveries_list_attempts_newest_last_with_filters_and_limits() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url(), "--backoff", "20ms"]);
    let ok_id = env.emit("ok.one", None);
    rx.wait_for(2, WAIT);
    rx.set_default(Reply::Status(500));
    let bad_id = env.emit("bad.one", None);
    rx.wait_for(5, WAIT);
    assert!(wait_until(WAIT, || env.info()["webhook"]["failed"] == 1));

    let all = deliveries(&env, &[]);
    assert_eq!(all.len(), 5, "{all:?}");
    let first = &all[1];
    assert_eq!(first["event_id"], ok_id);
    assert_eq!(first["event"], "ok.one");
    assert_eq!(first["attempt"], 1);
    assert_eq!(first["status"], 200);
    assert_eq!(first["ok"], true);
    assert_eq!(first["url"], rx.url());
    assert_eq!(first["error"], Value::Null);
    assert!(first["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(first["at"].as_str().unwrap().ends_with('Z'));
    assert!(first["webhook_id"].as_str().unwrap().starts_with("msg_"));

    let failed = deliveries(&env, &["--failed"]);
    assert_eq!(failed.len(), 3, "{failed:?}");
    for (i, d) in failed.iter().enumerate() {
        assert_eq!(d["event_id"], bad_id);
        assert_eq!(d["attempt"], i as u64 + 1);
        assert_eq!(d["status"], 500);
        assert_eq!(d["ok"], false);
        assert!(d["error"].as_str().unwrap().contains("500"));
    }
    let last_two = deliveries(&env, &["--failed", "--limit", "2"]);
    assert_eq!(last_two.len(), 2);
    assert_eq!(last_two[0]["attempt"], 2);
    assert_eq!(last_two[1]["attempt"], 3);

    let text = env.ctl(&["webhook", "deliveries", "--limit", "0"]).stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("EVENT_ID"),
        "{text}"
    );
    assert!(
        lines[5].contains("bad.one") && lines[5].contains("500"),
        "{text}"
    );
}

#[test]
fn test_sends_a_signed_test_event_and_reports_status_and_latency() {
    let env = Env::new();
    env.start(&[]);
    let run = env.ctl_json(&["webhook", "test"]);
    assert_eq!(run.error_code(), "invalid_argument", "no webhook set");

    let rx = Receiver::start();
    env.ctl_json(&["set-webhook", &rx.url(), "--secret", "test-secret"])
        .data();
    let d = env.ctl_json(&["webhook", "test"]).data();
    assert_eq!(d["ok"], true, "{d}");
    assert_eq!(d["status"], 200);
    assert_eq!(d["signed"], true);
    assert!(d["latency_ms"].as_f64().unwrap() > 0.0);
    let got = rx.wait_for(1, WAIT);
    let body = got[0].json();
    assert_eq!(body["event"], "webhook.test");
    assert_eq!(body["event_id"], 0);
    assert!(sig::standard_ok(&got[0], "test-secret"));
    let text = env.ctl(&["webhook", "test"]).stdout;
    assert!(
        text.contains("HTTP 200 in ") && text.contains("(signed)"),
        "{text}"
    );

    rx.set_default(Reply::Status(503));
    let run = env.ctl_json(&["webhook", "test"]);
    assert_eq!(run.error_code(), "delivery_failed");
    assert!(run.stderr.contains("503"), "{}", run.stderr);
    // Tests count nowhere but in the delivery log.
    assert_eq!(env.info()["webhook"]["delivered"], 0);
    let log = deliveries(&env, &["--limit", "0"]);
    assert_eq!(
        log.iter().filter(|d| d["event"] == "webhook.test").count(),
        3
    );
}

#[test]
fn redeliver_sends_the_same_body_with_the_same_webhook_id() {
    let env = Env::new();
    let rx = Receiver::start();
    env.ctl_json(&["set-webhook", &rx.url(), "--secret", "r-secret"])
        .data();
    env.start(&[]);
    let id = env.emit("order.placed", Some(r#"{"n":1}"#));
    let got = rx.wait_for(2, WAIT);
    let d = env
        .ctl_json(&["webhook", "redeliver", &id.to_string()])
        .data();
    assert_eq!(d["ok"], true, "{d}");
    assert_eq!(d["event_id"], id);
    assert_eq!(d["status"], 200);
    let again = rx.wait_for(3, WAIT);
    assert_eq!(again[2].body, got[1].body);
    assert_eq!(again[2].header("webhook-id"), got[1].header("webhook-id"));
    assert!(sig::standard_ok(&again[2], "r-secret"));

    let run = env.ctl_json(&["webhook", "redeliver", "999"]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(run.stderr.contains("999"), "{}", run.stderr);
    let text = env.ctl(&["webhook", "redeliver", &id.to_string()]).stdout;
    assert!(
        text.starts_with(&format!("event {id} redelivered: HTTP 200")),
        "{text}"
    );
}
