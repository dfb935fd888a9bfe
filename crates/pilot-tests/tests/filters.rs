//! Include/exclude filters end to end: persisted by `set-webhook`, overridden for one run by
//! `daemon start`, counted as `filtered` and shown in `info`; and event patterns checked where
//! they are given (`--events`, `--exclude`, `events --filter`, the daemon's `subscribe`): one
//! that can never match an event name is refused, one a typo away from a catalog name warns.

use std::time::{Duration, Instant};

use pilot_tests::{raw, wait_until, Env, Receiver};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn events_and_exclude_pick_what_is_delivered_and_the_rest_is_counted() {
    let env = Env::new();
    let rx = Receiver::start();
    let d = env
        .ctl_json(&[
            "set-webhook",
            &rx.url(),
            "--events",
            "handshake.*,trust.*",
            "--exclude",
            "trust.revoked",
        ])
        .data();
    assert_eq!(
        d["settings"],
        json!({"events": ["handshake.*", "trust.*"], "exclude": ["trust.revoked"]})
    );
    assert_eq!(
        env.config()["webhook_settings"],
        json!({"events": ["handshake.*", "trust.*"], "exclude": ["trust.revoked"]})
    );
    env.start(&[]);
    for (name, data) in [
        (
            "handshake.received",
            Some(r#"{"peer_node_id":7,"justification":"hi"}"#),
        ),
        ("trust.revoked", Some(r#"{"peer_node_id":7}"#)),
        (
            "data.datagram",
            Some(r#"{"src_addr":"0:0000.0000.0007","src_port":1,"dst_port":2,"size":3}"#),
        ),
        ("trust.granted", None),
        (
            "node.registered",
            Some(r#"{"address":"0:0000.0000.0005","endpoint":"10.0.0.5:4000"}"#),
        ),
        ("handshake.accepted", None),
    ] {
        env.emit(name, data);
    }
    rx.wait_for(3, WAIT);
    // daemon.started, trust.revoked, data.datagram, node.registered.
    assert!(wait_until(WAIT, || env.info()["webhook"]["filtered"] == 4));
    assert_eq!(
        rx.events(),
        ["handshake.received", "trust.granted", "handshake.accepted"]
    );
    let w = env.info()["webhook"].clone();
    assert_eq!(w["delivered"], 3);
    assert_eq!(w["settings"]["events"], json!(["handshake.*", "trust.*"]));
    let text = pilot_tests::squeeze(&env.ctl(&["info"]).stdout);
    assert!(
        text.contains("filters: events=handshake.*,trust.* exclude=trust.revoked"),
        "{text}"
    );
    assert!(text.contains("filtered: 4"), "{text}");
}

#[test]
fn daemon_start_flags_override_the_persisted_filters_for_one_run() {
    let env = Env::new();
    let rx = Receiver::start();
    env.ctl_json(&["set-webhook", &rx.url(), "--events", "handshake.*"])
        .data();
    let before = env.read_config();
    env.start(&["--events", "node.*", "--events", "daemon.*"]);
    env.emit(
        "handshake.received",
        Some(r#"{"peer_node_id":7,"justification":"hi"}"#),
    );
    env.emit(
        "node.registered",
        Some(r#"{"address":"0:0000.0000.0005","endpoint":"10.0.0.5:4000"}"#),
    );
    let got = rx.wait_for(2, WAIT);
    assert_eq!(got[0].event(), "daemon.started");
    assert_eq!(got[1].event(), "node.registered");
    assert_eq!(env.read_config(), before, "daemon start does not persist");
    assert_eq!(
        env.info()["webhook"]["settings"]["events"],
        json!(["node.*", "daemon.*"])
    );

    // A bad pattern starts nothing.
    env.stop();
    let run = env.ctl_json(&["daemon", "start", "--events", "no*pe"]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert_eq!(env.ctl_json(&["daemon", "status"]).data()["running"], false);
}

/// Patterns no event name can match, with what the error must say.
const NEVER: &[(&str, &str)] = &[
    (
        "Handshake.*",
        "event names are lowercase (did you mean `handshake.*`?)",
    ),
    ("Bad..x", "event names have no empty part"),
    ("a..*", "event names have no empty part"),
    (
        "handshake",
        "at least two dot-separated parts (did you mean `handshake.*`?)",
    ),
    (
        "conn-x.*",
        "only a-z, 0-9 and _ between their dots, not '-'",
    ),
];

/// The message of a `--json` error, asserting its code is `invalid_argument`.
fn invalid_argument(run: &pilot_tests::Run) -> String {
    assert_eq!(run.error_code(), "invalid_argument", "{run:?}");
    let v: Value = serde_json::from_str(run.stderr.trim()).unwrap();
    v["message"].as_str().unwrap().to_string()
}

#[test]
fn events_filter_refuses_a_pattern_that_can_never_match_at_once() {
    let env = Env::new();
    env.start(&[]);
    for (pattern, why) in NEVER {
        // With a daemon running, a silent subscription would wait here until the timeout.
        let t0 = Instant::now();
        let run = env.ctl_json(&["events", "--filter", pattern, "--timeout", "30s"]);
        let message = invalid_argument(&run);
        assert!(t0.elapsed() < Duration::from_secs(10), "{pattern}: waited");
        assert!(
            message.starts_with(&format!(
                "invalid event pattern {pattern:?}: it can never match"
            )),
            "{message}"
        );
        assert!(message.contains(why), "{pattern}: {message}");
        let run = env.ctl(&["events", "--filter", pattern, "--timeout", "30s"]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr.starts_with("error: invalid event pattern"),
            "{run:?}"
        );
    }
    // The daemon refuses them too, for every IPC client, and the connection stays usable.
    let mut s = raw::connect(&env.socket_path(), WAIT).unwrap();
    raw::hello(&mut s).unwrap();
    for (pattern, why) in NEVER {
        raw::send(&mut s, &json!({"type": "subscribe", "pattern": pattern})).unwrap();
        let reply = raw::recv(&mut s).unwrap();
        assert_eq!(reply["code"], "invalid_argument", "{reply}");
        assert!(reply["message"].as_str().unwrap().contains(why), "{reply}");
    }
    raw::send(&mut s, &json!({"type": "info"})).unwrap();
    assert_eq!(raw::recv(&mut s).unwrap()["type"], "ok");
    assert!(env.info()["bus"]["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["label"] != "ipc subscriber"));
}

#[test]
fn a_typo_of_a_catalog_name_is_a_warning_not_an_error() {
    let env = Env::new();
    env.start(&[]);
    // `events`: the warning on stderr, then the stream as asked (none here).
    let run = env.ctl(&["events", "--filter", "handshake.recieved", "--count", "0"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "warning: event pattern `handshake.recieved` is not a catalog event: did you mean \
         `handshake.received`?"
    );
    // In --json mode too: stdout stays the result alone.
    let run = env.ctl_json(&["events", "--filter", "handshak.*", "--count", "0"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.contains("did you mean `handshake.*`?"),
        "{run:?}"
    );
    // Catalog names and names far from any are quiet.
    for quiet in ["handshake.received", "handshake.*", "myapp.started", "*"] {
        let run = env.ctl(&["events", "--filter", quiet, "--count", "0"]);
        assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{quiet}: {run:?}");
    }
    // The daemon subscribes all the same, and logs the warning.
    let events = env.spawn_ctl(&["events", "--filter", "trust.revoke", "--count", "1"]);
    assert!(
        wait_until(WAIT, || env.log().contains("did you mean `trust.revoked`?")),
        "{}",
        env.log()
    );
    drop(events);
}

#[test]
fn webhook_filters_refuse_patterns_that_can_never_match_and_warn_of_typos() {
    let env = Env::new();
    let rx = Receiver::start();
    env.write_config(r#"{"node_id":5}"#);
    let before = env.read_config();
    for (pattern, why) in NEVER {
        for flag in ["--events", "--exclude"] {
            let message =
                invalid_argument(&env.ctl_json(&["set-webhook", &rx.url(), flag, pattern]));
            assert!(message.contains(why), "{flag} {pattern}: {message}");
        }
    }
    let message = invalid_argument(&env.ctl_json(&[
        "config",
        "--set",
        r#"webhook_settings={"events":["Handshake.*"]}"#,
    ]));
    assert!(message.contains("did you mean `handshake.*`?"), "{message}");
    assert_eq!(env.read_config(), before, "nothing was written");
    let run = env.ctl_json(&["daemon", "start", "--events", "Bad..x"]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert_eq!(env.ctl_json(&["daemon", "status"]).data()["running"], false);

    // A typo is saved and applied, with a warning from pilotctl and from the daemon.
    env.start(&[]);
    let run = env.ctl_json(&[
        "set-webhook",
        &rx.url(),
        "--events",
        "handshake.recieved,trust.*",
        "--exclude",
        "secuirty.*",
    ]);
    assert_eq!(run.data()["applied"], true);
    let warnings: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        warnings,
        [
            "warning: event pattern `handshake.recieved` is not a catalog event: did you mean \
             `handshake.received`?",
            "warning: event pattern `secuirty.*` matches no catalog event: did you mean \
             `security.*`?"
        ]
    );
    assert_eq!(
        env.config()["webhook_settings"],
        json!({"events": ["handshake.recieved", "trust.*"], "exclude": ["secuirty.*"]})
    );
    assert!(
        wait_until(WAIT, || {
            let log = env.log();
            log.contains("did you mean `handshake.received`?") && log.contains("`security.*`")
        }),
        "{}",
        env.log()
    );
    // The typo is taken literally: it matches only itself.
    env.emit("handshake.recieved", None);
    env.emit(
        "trust.changed",
        Some(r#"{"peer_node_id":1,"state":"s","reason":"r"}"#),
    );
    let got = rx.wait_for(2, WAIT);
    assert_eq!(got[0].event(), "handshake.recieved");
    assert_eq!(got[1].event(), "trust.changed");
}
