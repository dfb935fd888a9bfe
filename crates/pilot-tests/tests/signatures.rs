//! Signed deliveries, checked by implementations independent of the code under test: the
//! documented Python and Node receivers (docs/receivers/) as real processes, and the harness's
//! own HMAC verifier. Covers generated and raw secrets, secret privacy, rotation with a grace
//! period, `webhook-id` stability, and `pilotctl listen --secret`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use pilot_tests::{sig, wait_until, Env, External, Kind, Receiver, Reply};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
/// A URL nothing listens on, to set a webhook (and get a secret) before a receiver exists.
const NOWHERE: &str = "http://127.0.0.1:9/events";

/// `set-webhook NOWHERE --generate-secret`; returns the secret it printed.
fn generate(env: &Env) -> String {
    let d = env
        .ctl_json(&["set-webhook", NOWHERE, "--generate-secret"])
        .data();
    assert_eq!(d["signing"], true, "{d}");
    d["secret"]
        .as_str()
        .expect("the generated secret")
        .to_string()
}

fn events_of(report: &Value) -> Vec<String> {
    report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn python_and_node_receivers_verify_signed_deliveries_and_dedupe_redeliveries() {
    let env = Env::new();
    let secret = generate(&env);
    assert!(secret.starts_with("whsec_"), "{secret}");
    let py = External::start(Kind::Python, &secret);
    let node = External::start(Kind::Node, &secret);

    // set-webhook without a secret flag keeps the secret.
    env.ctl_json(&["set-webhook", py.url()]).data();
    assert_eq!(env.secret(), secret);
    env.start(&["--backoff", "20ms"]);
    env.emit(
        "handshake.received",
        Some(r#"{"peer_node_id":7,"justification":"hi"}"#),
    );
    env.emit("trust.granted", None);
    let reports = py.wait_reports(3, WAIT);
    assert!(reports.iter().all(|r| r["verified"] == true), "{reports:?}");
    assert_eq!(
        py.verified_events(),
        ["daemon.started", "handshake.received", "trust.granted"]
    );

    // A redelivery keeps its webhook-id: the receiver sees a duplicate.
    let d = env.ctl_json(&["webhook", "redeliver", "2"]).data();
    assert_eq!(d["ok"], true, "{d}");
    let reports = py.wait_reports(4, WAIT);
    assert_eq!(reports[3]["duplicate"], true, "{reports:?}");
    assert_eq!(reports[3]["webhook_id"], reports[1]["webhook_id"]);

    let applied = env.ctl_json(&["set-webhook", node.url()]).data();
    assert_eq!(applied["applied"], true);
    env.emit(
        "node.registered",
        Some(r#"{"address":"0:0000.0000.0005","endpoint":"10.0.0.5:4000"}"#),
    );
    env.emit(
        "message.received",
        Some(r#"{"type":"text","from":"0:0000.0000.0007","size":3}"#),
    );
    let reports = node.wait_reports(2, WAIT);
    assert!(reports.iter().all(|r| r["verified"] == true), "{reports:?}");
    assert_eq!(
        node.verified_events(),
        ["node.registered", "message.received"]
    );

    // The secret is owner-only and shown nowhere but by `webhook secret show`.
    let mode = std::fs::metadata(env.secret_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let info = env.ctl_json(&["info"]);
    assert_eq!(info.data()["webhook"]["signing"], true);
    assert!(!info.stdout.contains(&secret));
    assert!(!env.ctl(&["info"]).stdout.contains(&secret));
    assert!(!env.read_config().contains(&secret));
    assert!(
        !env.log().contains(&secret),
        "the secret leaked into pilot.log"
    );
    assert!(env
        .ctl(&["webhook", "secret", "show"])
        .stdout
        .contains(&secret));
}

#[test]
fn raw_and_file_secrets_sign_both_headers_and_no_secret_stops_signing() {
    let env = Env::new();
    let rx = Receiver::start();
    let file = env.tmp.path().join("secret.txt");
    std::fs::write(&file, "plain text secret\n").unwrap();
    let d = env
        .ctl_json(&[
            "set-webhook",
            &rx.url(),
            "--secret-file",
            file.to_str().unwrap(),
        ])
        .data();
    assert_eq!(d["signing"], true);
    assert!(
        d.get("secret").is_none(),
        "a given secret is not printed: {d}"
    );
    let secret = "plain text secret";
    env.start(&[]);
    env.emit("a.b", Some(r#"{"k":1}"#));
    let got = rx.wait_for(2, WAIT);
    let now = pilot_tests::unix_now();
    for r in &got {
        assert_eq!(sig::entries(r).len(), 1, "{:?}", r.headers);
        assert!(sig::standard_ok(r, secret), "{:?}", r.headers);
        assert!(sig::pilot_ok(r, secret), "{:?}", r.headers);
        let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
        assert!((now - ts).abs() < 30, "timestamp {ts} vs now {now}");
        assert!(r.header("webhook-id").unwrap().starts_with("msg_"));
    }
    assert_ne!(got[0].header("webhook-id"), got[1].header("webhook-id"));

    // The node receiver takes a raw secret too.
    let node = External::start(Kind::Node, secret);
    env.ctl_json(&["set-webhook", node.url()]).data();
    env.emit("c.d", None);
    let reports = node.wait_reports(1, WAIT);
    assert_eq!(reports[0]["verified"], true, "{reports:?}");

    let d = env
        .ctl_json(&["set-webhook", &rx.url(), "--no-secret"])
        .data();
    assert_eq!(d["signing"], false);
    assert!(!env.secret_path().exists());
    env.emit("e.f", None);
    let got = rx.wait_for(3, WAIT);
    assert_eq!(got[2].event(), "e.f");
    assert!(got[2].header("webhook-signature").is_none());
    assert!(got[2].header("x-pilot-signature-256").is_none());
    assert_eq!(env.info()["webhook"]["signing"], false);
}

#[test]
fn rotation_signs_with_both_secrets_for_the_grace_period_then_only_the_new_one() {
    let env = Env::new();
    let old = generate(&env);
    let py_old = External::start(Kind::Python, &old);
    let rx = Receiver::start();
    env.ctl_json(&["set-webhook", py_old.url()]).data();
    env.start(&[]);
    py_old.wait_reports(1, WAIT);

    let d = env
        .ctl_json(&["webhook", "secret", "rotate", "--grace", "2s"])
        .data();
    let rotated_at = Instant::now();
    let new = d["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(d["applied"], true);
    assert_eq!(d["active_secrets"], 2);
    assert!(d["previous_valid_until"].is_string(), "{d}");

    // In the grace period the receiver that still has the old secret verifies...
    env.emit("during.old_receiver", None);
    let reports = py_old.wait_reports(2, WAIT);
    assert_eq!(reports[1]["verified"], true, "{reports:?}");
    assert_eq!(events_of(&reports[1]), ["during.old_receiver"]);
    // ...because every request carries one signature per valid secret.
    env.ctl_json(&["set-webhook", &rx.url()]).data();
    env.emit("during.both", None);
    let got = rx.wait_for(1, WAIT);
    assert!(
        rotated_at.elapsed() < Duration::from_secs(2),
        "too slow to observe the grace period"
    );
    assert_eq!(sig::entries(&got[0]).len(), 2, "{:?}", got[0].headers);
    assert!(sig::standard_ok(&got[0], &new));
    assert!(sig::standard_ok(&got[0], &old));
    assert!(
        sig::pilot_ok(&got[0], &new),
        "X-Pilot-Signature-256 uses the current secret"
    );
    let shown = env.ctl_json(&["webhook", "secret", "show"]).data();
    assert_eq!(shown["current"]["secret"], new.as_str());
    assert_eq!(shown["previous"][0]["secret"], old.as_str());

    // The receiver with the new secret verifies (now and later).
    let node_new = External::start(Kind::Node, &new);
    env.ctl_json(&["set-webhook", node_new.url()]).data();
    env.emit("to.new_receiver", None);
    assert_eq!(node_new.wait_reports(1, WAIT)[0]["verified"], true);

    // After the grace period only the new secret signs.
    let after = Duration::from_millis(2300).saturating_sub(rotated_at.elapsed());
    std::thread::sleep(after);
    env.ctl_json(&["set-webhook", &rx.url()]).data();
    env.emit("after.grace", None);
    let got = rx.wait_for(2, WAIT);
    assert_eq!(sig::entries(&got[1]).len(), 1, "{:?}", got[1].headers);
    assert!(sig::standard_ok(&got[1], &new));
    assert!(!sig::standard_ok(&got[1], &old));
    let shown = env.ctl_json(&["webhook", "secret", "show"]).data();
    assert_eq!(shown["previous"], serde_json::json!([]));

    env.ctl_json(&["set-webhook", py_old.url()]).data();
    env.emit("after.old_receiver", None);
    let reports = py_old.wait_reports(3, WAIT);
    assert_eq!(reports[2]["verified"], false, "{reports:?}");
    let info = env.info();
    assert!(
        info["webhook"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("401")),
        "{info}"
    );
}

#[test]
fn webhook_id_is_stable_across_retries_and_new_after_a_restart() {
    let env = Env::new();
    let rx = Receiver::start();
    rx.script(&[Reply::Status(500), Reply::Status(200)]);
    env.ctl_json(&["set-webhook", &rx.url(), "--secret", "s3cret"])
        .data();
    env.start(&["--backoff", "20ms"]);
    let got = rx.wait_for(2, WAIT);
    assert_eq!(got[0].event(), "daemon.started");
    assert_eq!(got[1].event(), "daemon.started");
    let id = got[0].header("webhook-id").unwrap().to_string();
    assert_eq!(got[1].header("webhook-id"), Some(id.as_str()));
    assert!(sig::standard_ok(&got[0], "s3cret") && sig::standard_ok(&got[1], "s3cret"));

    env.stop();
    let n = rx.count();
    env.start(&[]);
    let got = rx.wait_for(n + 1, WAIT);
    let again = &got[n];
    assert_eq!(
        again.json()["event_id"],
        1,
        "the restarted daemon counts from 1"
    );
    assert_ne!(again.header("webhook-id"), Some(id.as_str()));
    assert!(sig::standard_ok(again, "s3cret"));
}

/// POSTs `body` with these extra header lines; returns the status line.
fn post(addr: &str, body: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_string()
}

#[test]
fn listen_with_a_secret_verifies_deliveries_batches_and_rejects_forgeries() {
    let env = Env::new();
    let secret = generate(&env);
    let listen = env.spawn_ctl(&["listen", "--addr", "127.0.0.1:0", "--secret", &secret]);
    let line = listen.wait_stderr("listening on", WAIT);
    let url = line.trim_start_matches("listening on ").trim().to_string();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/events")
        .to_string();
    let secret_file = env.tmp.path().join("listen-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let listen_json = env.spawn_ctl(&[
        "--json",
        "listen",
        "--addr",
        "127.0.0.1:0",
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]);
    let json_url = listen_json
        .wait_stderr("listening on", WAIT)
        .trim_start_matches("listening on ")
        .trim()
        .to_string();

    env.ctl_json(&["set-webhook", &url]).data();
    env.start(&[]);
    env.emit("a.one", None);
    let lines = listen.wait_stdout(2, WAIT);
    assert!(
        lines[0].contains("daemon.started") && lines[0].ends_with("  verified"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("#2 a.one ") && lines[1].ends_with("  verified"),
        "{lines:?}"
    );

    // A forged delivery: right shape, wrong signature.
    let body =
        r#"{"event_id":99,"event":"forged.event","node_id":0,"timestamp":"2026-01-01T00:00:00Z"}"#;
    let ts = pilot_tests::unix_now().to_string();
    let wrong = sig::standard_entry(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "msg_x",
        &ts,
        body.as_bytes(),
    );
    let status = post(
        &addr,
        body,
        &format!("webhook-id: msg_x\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {wrong}\r\n"),
    );
    assert!(status.contains(" 401 "), "{status}");
    let status = post(&addr, body, "");
    assert!(status.contains(" 401 "), "unsigned: {status}");
    // The same body correctly signed by the test itself is accepted.
    let right = sig::standard_entry(&secret, "msg_x", &ts, body.as_bytes());
    let status = post(
        &addr,
        body,
        &format!("webhook-id: msg_x\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {right}\r\n"),
    );
    assert!(status.contains(" 200 "), "{status}");
    let lines = listen.wait_stdout(5, WAIT);
    assert!(
        lines[2].starts_with("#99 forged.event") && lines[2].contains("INVALID SIGNATURE"),
        "{lines:?}"
    );
    assert!(
        lines[3].contains("INVALID SIGNATURE (the request is not signed)"),
        "{lines:?}"
    );
    assert!(lines[4].ends_with("  verified"), "{lines:?}");

    // Batches: one line per event, each verified; --json adds a field.
    env.ctl_json(&[
        "set-webhook",
        &json_url,
        "--batch-max",
        "5",
        "--batch-wait",
        "300ms",
    ])
    .data();
    let events = env.tmp.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"event\":\"b.one\"}\n{\"event\":\"b.two\"}\n{\"event\":\"b.three\"}\n",
    )
    .unwrap();
    env.ctl_json(&["emit", "--file", events.to_str().unwrap()])
        .data();
    let lines = listen_json.wait_stdout(3, WAIT);
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = parsed
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b.one", "b.two", "b.three"]);
    assert!(parsed.iter().all(|v| v["verified"] == true), "{lines:?}");
    assert!(
        wait_until(WAIT, || env.info()["webhook"]["delivered"] == 5),
        "{}",
        env.info()
    );
}
