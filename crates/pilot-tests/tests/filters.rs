//! Include/exclude filters end to end: persisted by `set-webhook`, overridden for one run by
//! `daemon start`, counted as `filtered` and shown in `info`.

use std::time::Duration;

use pilot_tests::{wait_until, Env, Receiver};
use serde_json::json;

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
