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

/// `data.i` of every request named `event` since request `from`, in arrival order.
fn numbers_since(rx: &Receiver, from: usize, event: &str) -> Vec<u64> {
    rx.received()[from..]
        .iter()
        .filter(|r| r.event() == event)
        .map(|r| number(&r.json()))
        .collect()
}

#[test]
fn queue_full_drops_of_an_in_memory_endpoint_are_dead_letters_and_replay() {
    let env = Env::new();
    let rx = Receiver::with_default(Reply::Delay(Duration::from_millis(100), 204));
    env.start(&["--webhook", &rx.url(), "--queue-size", "4"]);
    env.burst("app.burst", 60, 0);
    let mut w = Value::Null;
    assert!(
        wait_until(WAIT, || {
            w = endpoint(&env.info(), "default");
            w["accounting"]["pending"] == 0 && w["dropped_queue_full"].as_u64() > Some(0)
        }),
        "{w}"
    );
    let dropped = w["dropped_queue_full"].as_u64().unwrap();
    assert!(
        wait_until(WAIT, || endpoint(&env.info(), "default")["accounting"]
            ["dead_lettered"]
            == dropped),
        "{}",
        env.info()
    );
    let listed = dead_letters(&env, &["--reason", "queue_full", "--limit", "1000"]);
    assert_eq!(
        listed.len() as u64,
        dropped,
        "every queue-full drop is kept"
    );
    let delivered_first: Vec<u64> = numbers_since(&rx, 0, "app.burst");
    let kept: Vec<u64> = listed
        .iter()
        .map(|d| d["payload"]["data"]["i"].as_u64().unwrap())
        .collect();
    let mut all: Vec<u64> = delivered_first.iter().chain(&kept).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..60).collect::<Vec<_>>(),
        "delivered + kept = every event, once"
    );

    rx.set_default(Reply::Status(204));
    let before = rx.count();
    let run = env.ctl_json(&[
        "webhook",
        "replay",
        "--name",
        "default",
        "--since",
        "10m",
        "--events",
        "app.*",
        "--dead-letters-only",
        "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.data()["selected"].as_u64(), Some(dropped));
    assert_eq!(
        numbers_since(&rx, before, "app.burst"),
        kept,
        "in event-id order"
    );
    accounting::assert_balanced(&env.info());
}

#[test]
fn replay_to_another_endpoint_re_signs_and_dry_run_changes_nothing() {
    let env = Env::new();
    let (down, other) = (
        Receiver::with_default(Reply::Status(400)),
        Receiver::start(),
    );
    env.start(&[]);
    let add = |args: &[&str]| {
        let mut all = vec!["webhook", "add"];
        all.extend_from_slice(args);
        let run = env.ctl_json(&all);
        assert_eq!(run.code, 0, "{run:?}");
        run.data()["secret"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let first = add(&["first", &down.url(), "--generate-secret"]);
    let second = add(&[
        "second",
        &other.url(),
        "--events",
        "app.*",
        "--generate-secret",
    ]);
    for i in 0..6u64 {
        env.emit(
            if i % 2 == 0 { "app.x" } else { "misc.y" },
            Some(&format!("{{\"i\":{i}}}")),
        );
    }
    // A 400 is not retried: each event fails at once.
    assert!(wait_until(WAIT, || dead_letters(
        &env,
        &["--name", "first"]
    )
    .len()
        == 6));
    let other_before = other.count();

    let archive = env.pilot_home.join("archive.redb");
    let bytes = std::fs::read(&archive).unwrap();
    let run = env.ctl_json(&[
        "webhook",
        "replay",
        "--name",
        "first",
        "--to",
        "second",
        "--since",
        "1h",
        "--dry-run",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.data()["selected"], 6);
    assert_eq!(run.data()["dry_run"], true);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(other.count(), other_before, "nothing sent");
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        bytes,
        "the archive is untouched"
    );

    let run = env.ctl_json(&[
        "webhook", "replay", "--name", "first", "--to", "second", "--since", "1h", "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    // The second endpoint's filters of today apply: only app.* goes out.
    assert_eq!(numbers_since(&other, other_before, "app.x"), [0, 2, 4]);
    assert_eq!(other.count(), other_before + 3);
    for r in &other.received()[other_before..] {
        assert!(
            sig::standard_ok(r, &second),
            "signed with the target's secret"
        );
        assert!(!sig::standard_ok(r, &first));
    }
    let d = run.data();
    assert_eq!(
        (d["delivered"].as_u64(), d["filtered"].as_u64()),
        (Some(3), Some(3)),
        "{d}"
    );
    // The first endpoint's dead letters stay: they were never delivered to it.
    assert_eq!(dead_letters(&env, &["--name", "first"]).len(), 6);
    let purged = env.ctl_json(&[
        "webhook",
        "dead-letters",
        "purge",
        "--name",
        "first",
        "--events",
        "misc.*",
    ]);
    assert_eq!(purged.data()["purged"], 3, "{purged:?}");
    assert_eq!(dead_letters(&env, &["--name", "first"]).len(), 3);
}

#[test]
fn a_replay_survives_kill_9_in_the_middle() {
    let env = Env::new();
    let rx = Receiver::with_default(Reply::Status(503));
    let set = env.ctl_json(&["set-webhook", &rx.url(), "--generate-secret"]);
    assert_eq!(set.code, 0, "{set:?}");
    env.start(&FAST);
    let (first, last) = env.burst("app.lost", 200, 0);
    assert!(
        wait_until(WAIT, || {
            dead_letters(&env, &["--limit", "1000", "--events", "app.*"]).len() == 200
        }),
        "{}",
        env.info()
    );
    // Back, but slow: the replay is under way when the daemon is killed.
    rx.set_default(Reply::Delay(Duration::from_millis(10), 204));
    let before = rx.count();
    let run = env.ctl_json(&[
        "webhook", "replay", "--name", "default", "--since", "1h", "--events", "app.*",
    ]);
    assert_eq!(run.data()["selected"], 200, "{run:?}");
    assert!(wait_until(WAIT, || rx.count() >= before + 50));
    env.kill_9();
    let at_kill = rx.count();
    assert!(at_kill < before + 200, "killed in the middle");
    env.start(&FAST);
    assert!(
        wait_until(WAIT, || endpoint(&env.info(), "default")["replay"]
            ["pending"]
            == 0
            && rx.received()[before..]
                .iter()
                .filter(|r| r.event() == "app.lost")
                .map(|r| number(&r.json()))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == 200),
        "{}",
        env.info()
    );
    let got: Vec<(u64, String)> = rx.received()[before..]
        .iter()
        .filter(|r| r.event() == "app.lost")
        .map(|r| {
            (
                number(&r.json()),
                r.header("webhook-id").unwrap().to_string(),
            )
        })
        .collect();
    let mut seen = std::collections::BTreeMap::new();
    for (i, id) in &got {
        let prev = seen.insert(*i, id.clone());
        if let Some(prev) = prev {
            assert_eq!(&prev, id, "a duplicate carries the same webhook-id");
        }
    }
    assert_eq!(seen.len(), 200, "no event lost");
    let duplicates = got.len() - 200;
    assert!(
        duplicates <= 64,
        "duplicates only from the group in flight: {duplicates}"
    );
    assert_eq!(last - first + 1, 200);
    assert!(
        dead_letters(&env, &["--events", "app.*"]).is_empty(),
        "all delivered"
    );
}

#[test]
fn a_durable_endpoint_keeps_its_failures_and_a_forced_remove_keeps_its_backlog() {
    let env = Env::new();
    let (bad, hung) = (
        Receiver::with_default(Reply::Status(422)),
        Receiver::with_default(Reply::Status(503)),
    );
    env.start(&["--backoff", "5s"]);
    for (name, rx) in [("strict", &bad), ("stuck", &hung)] {
        let run = env.ctl_json(&["webhook", "add", name, &rx.url(), "--durable"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    for i in 0..5u64 {
        env.emit("app.d", Some(&format!("{{\"i\":{i}}}")));
    }
    // A 422 is not retried: removed from the spool, kept as a dead letter first.
    assert!(wait_until(WAIT, || {
        dead_letters(&env, &["--name", "strict", "--events", "app.*"]).len() == 5
    }));
    let w = endpoint(&env.info(), "strict");
    assert_eq!(w["spool"]["depth"], 0, "{w}");
    assert_eq!(
        w["accounting"]["dead_lettered"], w["accounting"]["failed"],
        "{w}"
    );
    let kept = dead_letters(&env, &["--name", "strict", "--events", "app.*"]);
    assert!(kept.iter().all(
        |d| d["reason"] == "failed" && d["webhook_id"].as_str().unwrap().starts_with("msg_0_")
    ));

    // The stuck endpoint holds its backlog in the spool; removed with --force, it is kept.
    assert!(wait_until(WAIT, || hung.count() >= 1));
    let run = env.ctl_json(&["webhook", "remove", "stuck", "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    let kept = dead_letters(&env, &["--name", "stuck", "--events", "app.*"]);
    let numbers: Vec<u64> = kept
        .iter()
        .map(|d| d["payload"]["data"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4], "{kept:?}");
    assert!(kept.iter().all(|d| d["reason"] == "removed"));
    // Replayed to another endpoint after its own is gone.
    let rx = Receiver::start();
    let run = env.ctl_json(&["webhook", "add", "new", &rx.url()]);
    assert_eq!(run.code, 0, "{run:?}");
    let before = rx.count();
    let run = env.ctl_json(&[
        "webhook", "replay", "--name", "stuck", "--to", "new", "--since", "1h", "--events",
        "app.*", "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(numbers_since(&rx, before, "app.d"), [0, 1, 2, 3, 4]);
}

#[test]
fn retention_bounds_drop_the_oldest_and_count_them_and_retained_events_replay() {
    let env = Env::new();
    let (ok, bad) = (
        Receiver::start(),
        Receiver::with_default(Reply::Status(400)),
    );
    env.start(&[]);
    let run = env.ctl_json(&[
        "webhook",
        "add",
        "kept",
        &ok.url(),
        "--retain",
        "1h",
        "--retain-max-bytes",
        "4KiB",
        "--events",
        "app.*",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = env.ctl_json(&[
        "webhook",
        "add",
        "short",
        &bad.url(),
        "--dead-letter-retention",
        "1s",
        "--dead-letter-max-bytes",
        "2KiB",
        "--events",
        "app.*",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    env.burst("app.r", 40, 100);
    assert!(wait_until(WAIT, || ok.count() == 40));

    // Size: 40 entries of ~250 bytes do not fit in 4 KiB: the oldest went, counted.
    let mut w = Value::Null;
    assert!(
        wait_until(WAIT, || {
            w = endpoint(&env.info(), "kept");
            w["retained"]["count"].as_u64().unwrap_or(0)
                + w["retained"]["evicted_size"].as_u64().unwrap_or(0)
                == 40
        }),
        "{w}"
    );
    let retained = w["retained"]["count"].as_u64().unwrap();
    assert!(retained > 0 && retained < 40, "{w}");
    assert!(w["retained"]["bytes"].as_u64().unwrap() <= 4096, "{w}");

    // The retained ones replay: the newest `retained` events, in order.
    let before = ok.count();
    let run = env.ctl_json(&[
        "webhook", "replay", "--name", "kept", "--since", "1h", "--wait",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.data()["selected"].as_u64(), Some(retained));
    let expected: Vec<u64> = (40 - retained..40).collect();
    assert_eq!(numbers_since(&ok, before, "app.r"), expected);

    // Age: dead letters older than 1 s are dropped and counted; size counted too.
    assert!(
        wait_until(WAIT, || {
            w = endpoint(&env.info(), "short");
            let d = &w["dead_letters"];
            d["count"] == 0
                && d["evicted_age"].as_u64().unwrap_or(0) > 0
                && d["evicted_size"].as_u64().unwrap_or(0) > 0
                && d["evicted_age"].as_u64().unwrap() + d["evicted_size"].as_u64().unwrap() == 40
        }),
        "{w}"
    );
    assert!(dead_letters(&env, &["--name", "short"]).is_empty());
    let text = env.ctl(&["info"]);
    assert!(text.stdout.contains("dead letters"), "{}", text.stdout);
}

#[test]
fn bad_selections_are_refused_and_change_nothing() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    let archive = env.pilot_home.join("archive.redb");
    let bytes = std::fs::read(&archive).unwrap();
    let refused = |args: &[&str], says: &str| {
        let run = env.ctl_json(args);
        assert_ne!(run.code, 0, "{args:?} should fail: {run:?}");
        assert_eq!(run.error_code(), "invalid_argument", "{run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    };
    refused(
        &["webhook", "dead-letters", "--reason", "bored"],
        "one of: failed",
    );
    refused(
        &["webhook", "dead-letters", "--since", "yesterday"],
        "RFC 3339",
    );
    refused(
        &["webhook", "dead-letters", "--events", "Bad Pattern"],
        "pattern",
    );
    refused(
        &["webhook", "dead-letters", "--since", "1h", "--until", "2h"],
        "--since must be before --until",
    );
    refused(
        &["webhook", "dead-letters", "purge", "--reason", "x"],
        "unknown reason",
    );
    refused(
        &["webhook", "replay", "--name", "Bad Name", "--since", "1h"],
        "name",
    );
    let run = env.ctl_json(&[
        "webhook", "replay", "--name", "default", "--to", "nobody", "--since", "1h",
    ]);
    assert_eq!(run.error_code(), "not_found", "{run:?}");
    refused(&["webhook", "replay", "--name", "default"], "needs --since");
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        bytes,
        "the archive is untouched"
    );
    assert_eq!(rx.count(), 1, "only daemon.started was sent");
}

#[test]
fn durable_events_that_expire_in_the_spool_are_dead_letters() {
    let env = Env::new();
    let rx = Receiver::with_default(Reply::Status(503));
    env.start(&["--backoff", "50ms"]);
    let run = env.ctl_json(&[
        "webhook",
        "add",
        "slow",
        &rx.url(),
        "--durable",
        "--discard-after",
        "500ms",
        "--max-backoff",
        "100ms",
        "--events",
        "app.*",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    for i in 0..5u64 {
        env.emit("app.e", Some(&format!("{{\"i\":{i}}}")));
    }
    let mut kept = Vec::new();
    assert!(
        wait_until(WAIT, || {
            kept = dead_letters(&env, &["--name", "slow", "--reason", "expired"]);
            kept.len() == 5
        }),
        "{}",
        env.info()
    );
    let w = endpoint(&env.info(), "slow");
    assert_eq!(w["spool"]["depth"], 0, "{w}");
    assert!(w["accounting"]["dead_lettered"].as_u64() >= Some(5), "{w}");
    accounting::check(&w).unwrap();
    let ids: Vec<&str> = kept
        .iter()
        .map(|d| d["webhook_id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("msg_0_")), "{ids:?}");
}

#[test]
fn a_replay_that_fails_again_exits_non_zero_and_is_a_dead_letter_again() {
    let env = Env::new();
    let rx = Receiver::with_default(Reply::Status(503));
    env.start(&FAST);
    let run = env.ctl_json(&["webhook", "add", "down", &rx.url(), "--events", "app.*"]);
    assert_eq!(run.code, 0, "{run:?}");
    for i in 0..3u64 {
        env.emit("app.f", Some(&format!("{{\"i\":{i}}}")));
    }
    assert!(wait_until(WAIT, || dead_letters(&env, &["--name", "down"])
        .len()
        == 3));
    let run = env.ctl_json(&[
        "webhook", "replay", "--name", "down", "--since", "1h", "--wait",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.error_code(), "replay_failed", "{run:?}");
    assert!(run.stderr.contains("3 failed again"), "{}", run.stderr);
    let again = dead_letters(&env, &["--name", "down", "--reason", "replay_failed"]);
    assert_eq!(again.len(), 3, "replaced, not added: {again:?}");
    assert_eq!(dead_letters(&env, &["--name", "down"]).len(), 3);
    let w = endpoint(&env.info(), "down");
    assert_eq!(w["replay"]["failed"], 3, "{w}");
    assert_eq!(w["replay"]["pending"], 0, "{w}");
}

#[test]
fn what_a_full_durable_spool_drops_is_kept_as_dead_letters() {
    let env = Env::new();
    let rx = Receiver::with_default(Reply::Status(503));
    env.start(&["--backoff", "1s"]);
    let run = env.ctl_json(&[
        "webhook",
        "add",
        "full",
        &rx.url(),
        "--durable",
        "--max-spool-bytes",
        "4KiB",
        "--events",
        "app.*",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    env.burst("app.s", 60, 100);
    let mut w = Value::Null;
    assert!(
        wait_until(WAIT, || {
            w = endpoint(&env.info(), "full");
            w["spool"]["dropped_full"].as_u64() > Some(0)
                && w["accounting"]["pending"].as_u64() < Some(60)
        }),
        "{w}"
    );
    let dropped = w["spool"]["dropped_full"].as_u64().unwrap();
    let kept = dead_letters(
        &env,
        &[
            "--name",
            "full",
            "--reason",
            "spool_full",
            "--limit",
            "1000",
        ],
    );
    assert_eq!(kept.len() as u64, dropped, "{w}");
    assert!(
        w["accounting"]["dead_lettered"].as_u64() >= Some(dropped),
        "{w}"
    );
    accounting::check(&w).unwrap();
    // The oldest were dropped: the kept ones are the first events, in order.
    let numbers: Vec<u64> = kept
        .iter()
        .map(|d| d["payload"]["data"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..dropped).collect::<Vec<_>>());
}

#[test]
fn a_cleared_endpoint_keeps_what_was_in_flight_and_what_was_queued() {
    let env = Env::new();
    let rx = Receiver::with_default(Reply::Hang);
    env.start(&["--webhook", &rx.url()]);
    // daemon.started is in flight (the receiver never answers); these wait in the queue.
    assert!(wait_until(WAIT, || rx.count() == 1));
    for i in 0..3u64 {
        env.emit("app.q", Some(&format!("{{\"i\":{i}}}")));
    }
    assert_eq!(env.ctl(&["clear-webhook"]).code, 0);
    let mut kept = Vec::new();
    assert!(
        wait_until(WAIT, || {
            kept = dead_letters(&env, &[]);
            kept.len() == 4
        }),
        "{kept:?}"
    );
    let reasons: Vec<(&str, &str)> = kept
        .iter()
        .map(|d| (d["event"].as_str().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("daemon.started", "aborted"),
            ("app.q", "stopped"),
            ("app.q", "stopped"),
            ("app.q", "stopped")
        ]
    );
    let w = accounting::assert_balanced(&env.info());
    assert_eq!(
        w["accounting"]["dead_lettered"], w["accounting"]["dropped"],
        "{w}"
    );
}
