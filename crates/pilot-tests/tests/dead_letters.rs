//! Dead letters, retention and replay end to end: what an endpoint gives up on is kept in the
//! archive with its payload and reason, listed and purged with `webhook dead-letters`, and sent
//! again with `webhook replay` through the endpoint's own pipeline (signatures with the
//! original `webhook-id`, filters, retries), to a real receiver.

use std::time::Duration;

use pilot_tests::{accounting, sig, wait_until, Env, Receiver, Reply};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// Fast retries, and a circuit that never opens (every give-up is a plain failure).
const FAST: [&str; 6] = [
    "--max-attempts",
    "2",
    "--backoff",
    "10ms",
    "--circuit-threshold",
    "100000",
];

/// The endpoint `name` in `info`.
fn endpoint(info: &Value, name: &str) -> Value {
    info["webhooks"]
        .as_array()
        .and_then(|all| all.iter().find(|w| w["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no webhook {name} in {info}"))
}

/// `data.i` of a request body (a single event).
fn number(json: &Value) -> u64 {
    json["data"]["i"].as_u64().expect("data.i")
}

fn dead_letters(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["webhook", "dead-letters"];
    all.extend_from_slice(args);
    let run = env.ctl_json(&all);
    assert_eq!(run.code, 0, "{run:?}");
    run.data()["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn an_outage_longer_than_the_retries_is_replayed_exactly_in_order_with_the_original_ids() {
    let env = Env::new();
    let rx = Receiver::start();
    let set = env.ctl_json(&["set-webhook", &rx.url(), "--generate-secret"]);
    assert_eq!(set.code, 0, "{set:?}");
    let secret = set.data()["secret"].as_str().expect("secret").to_string();
    env.start(&FAST);
    for i in 0..5u64 {
        env.emit("app.before", Some(&format!("{{\"i\":{i}}}")));
    }
    rx.wait_for(6, WAIT); // daemon.started and the 5
                          // The receiver goes down: every attempt of the next 10 events fails.
    rx.set_default(Reply::Status(503));
    for i in 5..15u64 {
        env.emit("app.missed", Some(&format!("{{\"i\":{i}}}")));
    }
    assert!(
        wait_until(WAIT, || {
            let w = endpoint(&env.info(), "default");
            w["accounting"]["failed"] == 10 && w["accounting"]["dead_lettered"] == 10
        }),
        "{}",
        env.info()
    );
    // Every failed attempt carried the event's id; a replay must carry the same.
    let failed_ids: Vec<(u64, String)> = rx
        .received()
        .iter()
        .filter(|r| r.event() == "app.missed")
        .map(|r| {
            (
                number(&r.json()),
                r.header("webhook-id").expect("webhook-id").to_string(),
            )
        })
        .collect();
    assert_eq!(failed_ids.len(), 20, "two attempts each");
    rx.set_default(Reply::Status(204));
    for i in 15..18u64 {
        env.emit("app.after", Some(&format!("{{\"i\":{i}}}")));
    }
    rx.wait_for(6 + 20 + 3, WAIT);

    let listed = dead_letters(&env, &[]);
    assert_eq!(listed.len(), 10, "{listed:?}");
    for (n, d) in listed.iter().enumerate() {
        assert_eq!(d["name"], "default");
        assert_eq!(d["event"], "app.missed");
        assert_eq!(d["reason"], "failed");
        assert_eq!(d["attempts"], 2);
        assert!(d["error"].as_str().unwrap().contains("503"), "{d}");
        assert_eq!(d["payload"]["data"]["i"], 5 + n as u64, "oldest first");
    }
    assert_eq!(
        dead_letters(&env, &["--reason", "queue_full"]).len(),
        0,
        "filtered by reason"
    );

    let before = rx.count();
    let run = env.ctl_json(&[
        "webhook", "replay", "--name", "default", "--since", "1h", "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let d = run.data();
    assert_eq!(
        (d["selected"].as_u64(), d["delivered"].as_u64()),
        (Some(10), Some(10)),
        "{d}"
    );
    let replayed: Vec<(u64, String)> = rx.received()[before..]
        .iter()
        .map(|r| {
            (
                number(&r.json()),
                r.header("webhook-id").expect("webhook-id").to_string(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = failed_ids.iter().step_by(2).cloned().collect();
    assert_eq!(
        replayed, expected,
        "exactly the missed events, in order, same ids"
    );
    assert!(rx.received()[before..]
        .iter()
        .all(|r| sig::standard_ok(r, &secret)));
    // Delivered now: no longer dead letters; the accounting still balances.
    assert!(dead_letters(&env, &[]).is_empty());
    let info = env.info();
    let w = endpoint(&info, "default");
    assert_eq!(w["replay"]["delivered"], 10, "{w}");
    accounting::assert_balanced(&info);
}
