//! Retries that follow the standards, end to end: `Retry-After` on 429 is waited for, and 410
//! Gone disables the webhook (announced with `webhook.disabled` on the bus and in `info`) until
//! the next `set-webhook`.

use std::time::Duration;

use pilot_tests::{wait_until, Env, Receiver, Reply};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_429_with_retry_after_is_retried_no_sooner_than_asked() {
    let env = Env::new();
    let rx = Receiver::start();
    rx.script(&[Reply::RetryAfter(429, 1), Reply::Status(200)]);
    env.start(&["--webhook", &rx.url(), "--backoff", "20ms"]);
    let got = rx.wait_for(2, WAIT);
    assert_eq!(got[0].event(), "daemon.started");
    assert_eq!(got[1].event(), "daemon.started");
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(3), "waited too long: {gap:?}");
    assert!(wait_until(WAIT, || env.info()["webhook"]["delivered"] == 1));
    assert_eq!(env.info()["webhook"]["retries"], 1);
}

#[test]
fn a_410_disables_the_webhook_until_it_is_set_again() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    rx.wait_for(1, WAIT);
    let events = env.spawn_ctl(&[
        "events",
        "--filter",
        "webhook.*",
        "--count",
        "1",
        "--timeout",
        "10s",
    ]);
    assert!(
        wait_until(WAIT, || env.info()["bus"]["subscribers"]
            .as_array()
            .is_some_and(|s| s.len() == 2)),
        "the events subscriber did not show up"
    );

    rx.set_default(Reply::Status(410));
    env.emit("a.gone", None);
    let lines = events.wait_stdout(1, WAIT);
    let ev: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(ev["event"], "webhook.disabled", "{ev}");
    assert_eq!(ev["data"]["url"], rx.url());
    assert!(
        ev["data"]["reason"].as_str().unwrap().contains("410"),
        "{ev}"
    );
    let w = env.info()["webhook"].clone();
    assert!(w["disabled"].as_str().unwrap().contains("410"), "{w}");
    assert!(w["disabled_at"].is_string(), "{w}");
    let text = env.ctl(&["info"]).stdout;
    assert!(text.contains("disabled:"), "{text}");

    // Nothing more goes out while disabled.
    let before = rx.count();
    rx.set_default(Reply::Status(200));
    env.emit("a.while_disabled", None);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.count(), before, "a disabled webhook sent a request");

    // set-webhook enables it again.
    let d = env.ctl_json(&["set-webhook", &rx.url()]).data();
    assert_eq!(d["applied"], true);
    assert_eq!(env.info()["webhook"]["disabled"], Value::Null);
    env.emit("a.again", None);
    let got = rx.wait_for(before + 1, WAIT);
    assert_eq!(got.last().unwrap().event(), "a.again");
}
