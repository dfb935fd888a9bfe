//! Named webhooks end to end: several endpoints on one daemon, each with its own filters,
//! secret, mode, health and accounting; changes to one never touch the others; config.json
//! brings them all back after a restart (and after `kill -9`, durable ones lose nothing).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pilot_tests::{accounting, sig, wait_until, Env, Receiver, Reply};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// The endpoint `name` in `info`.
fn endpoint(info: &Value, name: &str) -> Value {
    info["webhooks"]
        .as_array()
        .and_then(|all| all.iter().find(|w| w["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no webhook {name} in {info}"))
}

/// `data.i` of every request's event named `name`, in arrival order.
fn numbers(rx: &Receiver, name: &str) -> Vec<u64> {
    rx.received()
        .iter()
        .filter(|r| r.event() == name)
        .map(|r| r.json()["data"]["i"].as_u64().expect("data.i"))
        .collect()
}

fn add(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["webhook", "add"];
    all.extend_from_slice(args);
    let run = env.ctl_json(&all);
    assert_eq!(run.code, 0, "{run:?}");
    run.data()
}

#[test]
fn three_endpoints_get_exactly_their_events_in_order_each_signed_with_its_own_secret() {
    let env = Env::new();
    let (siem, chat, all) = (Receiver::start(), Receiver::start(), Receiver::start());
    env.start(&["--webhook", &all.url()]);
    let d = add(
        &env,
        &[
            "siem",
            &siem.url(),
            "--events",
            "security.*",
            "--generate-secret",
        ],
    );
    assert_eq!(d["name"], "siem");
    assert_eq!(d["webhook"], siem.url());
    assert_eq!(d["applied"], true);
    let siem_secret = d["secret"].as_str().unwrap().to_string();
    let d = add(
        &env,
        &[
            "chat",
            &chat.url(),
            "--events",
            "trust.*",
            "--exclude",
            "trust.chatter",
            "--generate-secret",
        ],
    );
    let chat_secret = d["secret"].as_str().unwrap().to_string();
    assert_ne!(siem_secret, chat_secret);

    let kinds = ["security.drill", "trust.memo", "trust.chatter", "app.x"];
    for i in 0..40u64 {
        let name = kinds[(i % 4) as usize];
        env.emit(name, Some(&format!("{{\"i\":{i}}}")));
    }
    let siem_got = siem.wait_for(10, WAIT);
    let chat_got = chat.wait_for(10, WAIT);
    all.wait_for(41, WAIT);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        siem.events().iter().all(|e| e == "security.drill"),
        "{:?}",
        siem.events()
    );
    assert!(
        chat.events().iter().all(|e| e == "trust.memo"),
        "{:?}",
        chat.events()
    );
    assert_eq!(
        numbers(&siem, "security.drill"),
        (0..40).step_by(4).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&chat, "trust.memo"),
        (1..40).step_by(4).collect::<Vec<_>>()
    );
    assert_eq!(all.count(), 41, "daemon.started + 40");
    for r in &siem_got {
        assert!(
            sig::standard_ok(r, &siem_secret),
            "siem request not signed with its secret"
        );
        assert!(
            !sig::standard_ok(r, &chat_secret),
            "siem request verifies with chat's secret"
        );
    }
    for r in &chat_got {
        assert!(sig::standard_ok(r, &chat_secret));
        assert!(!sig::standard_ok(r, &siem_secret));
    }
    assert!(all
        .received()
        .iter()
        .all(|r| r.header("webhook-signature").is_none()));

    let info = env.info();
    for (name, delivered, filtered) in [("siem", 10, 30), ("chat", 10, 30), ("default", 41, 0)] {
        let w = endpoint(&info, name);
        assert_eq!(w["state"], "active", "{w}");
        assert_eq!(w["delivered"], delivered, "{w}");
        assert_eq!(w["accounting"]["filtered"], filtered, "{w}");
        accounting::check(&w).unwrap();
    }
    assert_eq!(info["totals"]["delivered"], 61);
    assert_eq!(info["totals"]["balanced"], true);
    assert_eq!(
        info["webhook"]["url"],
        all.url(),
        "info.webhook stays the default one"
    );

    let list = env.ctl_json(&["webhook", "list"]).data();
    let names: Vec<&str> = list["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "chat", "siem"]);
    for w in list["webhooks"].as_array().unwrap() {
        for key in ["url", "state", "durable", "events", "exclude", "accounting"] {
            assert!(w.get(key).is_some(), "{key} missing from {w}");
        }
    }
    let text = env.ctl(&["webhook", "list"]).stdout;
    assert!(
        text.contains("NAME") && text.contains("siem") && text.contains("security.*"),
        "{text}"
    );
    let show = env.ctl(&["webhook", "show", "chat"]).stdout;
    assert!(
        show.contains("trust.chatter") && show.contains(&chat.url()),
        "{show}"
    );
    let deliveries = env
        .ctl_json(&["webhook", "deliveries", "--name", "siem", "--limit", "0"])
        .data();
    assert_eq!(deliveries["deliveries"].as_array().unwrap().len(), 10);
    let shown = env
        .ctl_json(&["webhook", "secret", "show", "--name", "chat"])
        .data();
    assert_eq!(shown["current"]["secret"], chat_secret.as_str());
    let t = env.ctl_json(&["webhook", "test", "--name", "siem"]).data();
    assert_eq!(
        (t["ok"].clone(), t["signed"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    assert_eq!(siem.events().last().unwrap(), "webhook.test");

    // The secret files are the endpoints' own, owner-only.
    use std::os::unix::fs::PermissionsExt;
    let file = env.pilot_home.join("webhooks/siem/secret.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    let dir = std::fs::metadata(env.pilot_home.join("webhooks/siem")).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    assert!(
        !env.read_config().contains(&siem_secret),
        "a secret reached config.json"
    );
}

#[test]
fn a_hanging_endpoint_does_not_slow_the_others() {
    let env = Env::new();
    let hang = Receiver::with_default(Reply::Hang);
    let (a, b) = (Receiver::start(), Receiver::start());
    env.start(&["--webhook-timeout", "3s", "--max-attempts", "5"]);
    add(&env, &["stuck", &hang.url(), "--events", "load.*"]);
    add(&env, &["a", &a.url(), "--events", "load.*"]);
    add(&env, &["b", &b.url(), "--events", "load.*"]);
    let n = 30;
    let mut sent = Vec::new();
    for i in 0..n {
        sent.push(Instant::now());
        env.emit("load.x", Some(&format!("{{\"i\":{i}}}")));
        std::thread::sleep(Duration::from_millis(20));
    }
    a.wait_for(n, WAIT);
    b.wait_for(n, WAIT);
    // Every event reached a and b well within the hanging endpoint's 3 s timeout: nothing
    // waited for it.
    for rx in [&a, &b] {
        let got = rx.received();
        assert_eq!(numbers(rx, "load.x"), (0..n as u64).collect::<Vec<_>>());
        for (i, r) in got.iter().enumerate() {
            let lag = r.at.saturating_duration_since(sent[i]);
            assert!(lag < Duration::from_millis(1500), "event {i} took {lag:?}");
        }
    }
    assert_eq!(
        hang.count(),
        1,
        "one request in flight to the hanging endpoint"
    );
    let info = env.info();
    assert_eq!(endpoint(&info, "a")["delivered"], n as u64);
    assert_eq!(endpoint(&info, "stuck")["delivered"], 0);
}

#[test]
fn changing_one_endpoint_while_events_flow_never_touches_another() {
    let env = Env::new();
    let steady = Receiver::start();
    let (b1, b2) = (Receiver::start(), Receiver::start());
    env.start(&[]);
    add(&env, &["steady", &steady.url(), "--events", "flow.*"]);
    add(&env, &["other", &b1.url(), "--events", "flow.*"]);
    let stop = Arc::new(AtomicBool::new(false));
    let emitter = {
        let stop = stop.clone();
        let env_home = (env.home.clone(), env.pilot_home.clone(), env.pilotctl_bin());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) || i < 100 {
                let out = std::process::Command::new(&env_home.2)
                    .env("HOME", &env_home.0)
                    .env("PILOT_HOME", &env_home.1)
                    .env_remove("PILOT_SOCKET")
                    .args(["emit", "flow.x", "--data", &format!("{{\"i\":{i}}}")])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                i += 1;
            }
            i
        })
    };
    let step = |args: &[&str]| {
        std::thread::sleep(Duration::from_millis(150));
        let run = env.ctl_json(args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
    };
    step(&["webhook", "update", "other", "--url", &b2.url()]);
    step(&["webhook", "update", "other", "--batch-max", "5"]);
    step(&["webhook", "pause", "other"]);
    step(&["webhook", "resume", "other"]);
    step(&["webhook", "update", "other", "--no-batch", "--durable"]);
    step(&["webhook", "remove", "other", "--force"]);
    step(&["webhook", "add", "other", &b1.url()]);
    stop.store(true, Ordering::SeqCst);
    let sent = emitter.join().unwrap();
    steady.wait_for(sent as usize, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        numbers(&steady, "flow.x"),
        (0..sent).collect::<Vec<_>>(),
        "the untouched endpoint lost, duplicated or reordered an event"
    );
    let info = env.info();
    let w = endpoint(&info, "steady");
    assert_eq!(w["delivered"], sent);
    accounting::check(&w).unwrap();
    // The changed endpoint: every event it got, it got once.
    let mut seen = BTreeSet::new();
    for rx in [&b1, &b2] {
        for r in rx.received() {
            for ev in r.events() {
                if ev["event"] == "flow.x" {
                    let i = ev["data"]["i"].as_u64().unwrap();
                    let webhook_id = r.header("webhook-id").unwrap_or_default().to_string();
                    assert!(
                        seen.insert((i, webhook_id.clone(), rx.url())),
                        "duplicate {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_restart_restores_every_endpoint_and_cli_errors_change_nothing() {
    let env = Env::new();
    let (a, b) = (Receiver::start(), Receiver::start());
    env.ctl_json(&["set-webhook", &a.url()]);
    add(
        &env,
        &["b", &b.url(), "--events", "x.*", "--disable-after", "10m"],
    );
    let d = env.ctl_json(&["webhook", "pause", "b"]).data();
    assert_eq!(d["applied"], false);
    let before = env.read_config();
    let config = env.config();
    assert_eq!(config["webhook"], a.url());
    assert_eq!(config["webhooks"]["b"]["url"], b.url());
    assert_eq!(config["webhooks"]["b"]["disable_after"], "10m");
    assert_eq!(config["webhooks"]["b"]["paused"], true);

    // Bad input: a clear error, the file unchanged.
    for (args, code) in [
        (
            vec!["webhook", "add", "Bad", "http://localhost:9/"],
            "invalid_argument",
        ),
        (
            vec!["webhook", "add", "b", "http://localhost:9/"],
            "already_exists",
        ),
        (
            vec!["webhook", "add", "c", "http://169.254.169.254/"],
            "invalid_argument",
        ),
        (vec!["webhook", "add", "c", "ftp://x/"], "invalid_argument"),
        (
            vec!["webhook", "add", "default", "http://localhost:9/"],
            "already_exists",
        ),
        (vec!["webhook", "update", "nope", "--durable"], "not_found"),
        (vec!["webhook", "remove", "nope"], "not_found"),
        (vec!["webhook", "pause", "nope"], "not_found"),
        (
            vec![
                "webhook",
                "add",
                "c",
                "http://localhost:9/",
                "--events",
                "a*",
            ],
            "invalid_argument",
        ),
        (
            vec!["webhook", "update", "b", "--events", "a.*", "--no-events"],
            "usage",
        ),
    ] {
        let run = env.ctl_json(&args);
        assert_ne!(run.code, 0, "{args:?}");
        if code != "usage" {
            assert_eq!(run.error_code(), code, "{args:?}: {run:?}");
        }
        assert_eq!(env.read_config(), before, "{args:?} changed config.json");
    }

    env.start(&[]);
    let info = env.info();
    assert_eq!(endpoint(&info, "default")["url"], a.url());
    let w = endpoint(&info, "b");
    assert_eq!(w["url"], b.url());
    assert_eq!(w["state"], "paused");
    assert_eq!(w["events"], serde_json::json!(["x.*"]));
    assert_eq!(w["settings"]["disable_after"], "10m");
    env.emit("x.one", None);
    a.wait_for(2, WAIT);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(b.count(), 0, "a paused endpoint sent");
    assert!(wait_until(WAIT, || endpoint(&env.info(), "b")
        ["dropped_paused"]
        == 1));
    accounting::check(&endpoint(&env.info(), "b")).unwrap();
    env.ctl_json(&["webhook", "resume", "b"]).data();
    assert_eq!(env.config()["webhooks"]["b"].get("paused"), None);
    env.emit("x.two", None);
    assert_eq!(b.wait_for(1, WAIT)[0].event(), "x.two");

    // update changes only what is given.
    env.ctl_json(&["webhook", "update", "b", "--header", "X-Team: blue"])
        .data();
    let entry = env.config()["webhooks"]["b"].clone();
    assert_eq!(entry["events"], serde_json::json!(["x.*"]), "{entry}");
    assert_eq!(entry["headers"], serde_json::json!(["X-Team: blue"]));
    env.ctl_json(&[
        "webhook",
        "update",
        "b",
        "--no-headers",
        "--no-disable-after",
    ])
    .data();
    let entry = env.config()["webhooks"]["b"].clone();
    assert_eq!(
        entry,
        serde_json::json!({"url": b.url(), "events": ["x.*"]})
    );

    env.stop();
    let removed = env.ctl_json(&["webhook", "remove", "b"]).data();
    assert_eq!(removed["applied"], false);
    assert!(env.config().get("webhooks").is_none());
    assert!(!env.pilot_home.join("webhooks/b").exists());
}

#[test]
fn disable_after_and_410_disable_one_endpoint_and_another_hears_of_it() {
    let env = Env::new();
    let (relay, dead, gone) = (
        Receiver::start(),
        Receiver::with_default(Reply::Status(503)),
        Receiver::start(),
    );
    env.start(&[
        "--backoff",
        "50ms",
        "--max-attempts",
        "2",
        "--circuit-threshold",
        "100",
    ]);
    add(&env, &["relay", &relay.url(), "--events", "webhook.*"]);
    add(
        &env,
        &[
            "dead",
            &dead.url(),
            "--events",
            "app.*",
            "--disable-after",
            "1s",
        ],
    );
    add(&env, &["gone", &gone.url(), "--events", "app.*"]);
    gone.set_default(Reply::Status(410));
    for i in 0..8 {
        env.emit("app.tick", Some(&format!("{{\"i\":{i}}}")));
        std::thread::sleep(Duration::from_millis(250));
    }
    let got = relay.wait_for(2, WAIT);
    let mut disabled: Vec<(String, String)> = got
        .iter()
        .filter(|r| r.event() == "webhook.disabled")
        .map(|r| {
            let d = &r.json()["data"];
            (
                d["name"].as_str().unwrap().into(),
                d["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    disabled.sort();
    assert_eq!(disabled.len(), 2, "{disabled:?}");
    assert_eq!(disabled[0].0, "dead");
    assert!(disabled[0].1.contains("disable_after 1s"), "{disabled:?}");
    assert_eq!(disabled[1].0, "gone");
    assert!(disabled[1].1.contains("410"), "{disabled:?}");
    let info = env.info();
    for name in ["dead", "gone"] {
        let w = endpoint(&info, name);
        assert_eq!(w["state"], "disabled", "{w}");
        accounting::check(&w).unwrap();
    }
    assert_eq!(endpoint(&info, "relay")["state"], "active");
    let list = env.ctl(&["webhook", "list"]).stdout;
    assert!(list.contains("disabled"), "{list}");

    // Stays off until resumed; then it delivers again.
    dead.set_default(Reply::Status(200));
    let before = dead.count();
    env.emit("app.after", None);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dead.count(), before, "a disabled endpoint sent");
    let d = env.ctl_json(&["webhook", "resume", "dead"]).data();
    assert_eq!(d["state"], "active");
    env.emit("app.resumed", None);
    assert!(wait_until(WAIT, || dead
        .events()
        .contains(&"app.resumed".to_string())));
}

#[test]
fn two_durable_endpoints_survive_kill_9_and_removal_with_a_backlog_needs_force() {
    let env = Env::new();
    let (a, b) = (
        Receiver::with_default(Reply::Status(503)),
        Receiver::with_default(Reply::Status(503)),
    );
    env.start(&["--backoff", "50ms"]);
    add(
        &env,
        &[
            "a",
            &a.url(),
            "--durable",
            "--events",
            "d.*",
            "--max-backoff",
            "200ms",
        ],
    );
    add(
        &env,
        &[
            "b",
            &b.url(),
            "--durable",
            "--events",
            "d.*",
            "--max-backoff",
            "200ms",
        ],
    );
    let mut acked = Vec::new();
    for i in 0..20u64 {
        acked.push(i);
        env.emit("d.x", Some(&format!("{{\"i\":{i}}}")));
    }
    env.kill_9();
    a.set_default(Reply::Status(200));
    b.set_default(Reply::Status(200));
    env.start(&["--backoff", "50ms"]);
    for rx in [&a, &b] {
        assert!(
            wait_until(WAIT, || {
                let got: BTreeSet<u64> = numbers(rx, "d.x").into_iter().collect();
                acked.iter().all(|i| got.contains(i))
            }),
            "an acknowledged event was lost: {:?}",
            numbers(rx, "d.x")
        );
        let got = numbers(rx, "d.x");
        let mut delivered: Vec<u64> = Vec::new();
        for i in got {
            if delivered.last() != Some(&i) && !delivered.contains(&i) {
                delivered.push(i);
            }
        }
        assert_eq!(delivered, acked, "out of order");
    }

    // A backlog: removal asks for --force and says how many events it discards.
    b.set_default(Reply::Status(503));
    for i in 0..5 {
        env.emit("d.y", Some(&format!("{{\"i\":{i}}}")));
    }
    assert!(wait_until(WAIT, || endpoint(&env.info(), "b")
        ["accounting"]["pending"]
        == 5));
    let before = env.read_config();
    let run = env.ctl_json(&["webhook", "remove", "b"]);
    assert_eq!(run.error_code(), "backlog", "{run:?}");
    assert!(run.stderr.contains("5 undelivered"), "{run:?}");
    assert_eq!(env.read_config(), before);
    let d = env.ctl_json(&["webhook", "remove", "b", "--force"]).data();
    assert_eq!(d["discarded"], 5);
    assert!(!env.pilot_home.join("webhooks/b").exists());
    assert!(endpoint_missing(&env.info(), "b"));
}

fn endpoint_missing(info: &Value, name: &str) -> bool {
    info["webhooks"]
        .as_array()
        .is_some_and(|all| all.iter().all(|w| w["name"] != name))
}

#[test]
fn a_paused_durable_endpoint_keeps_spooling_and_drains_in_order_on_resume() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&[]);
    add(&env, &["d", &rx.url(), "--durable", "--events", "p.*"]);
    env.ctl_json(&["webhook", "pause", "d"]).data();
    for i in 0..10 {
        env.emit("p.x", Some(&format!("{{\"i\":{i}}}")));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.count(), 0);
    let w = endpoint(&env.info(), "d");
    assert_eq!(w["state"], "paused");
    assert_eq!(w["spool"]["depth"], 10, "{w}");
    env.ctl_json(&["webhook", "resume", "d"]).data();
    rx.wait_for(10, WAIT);
    assert_eq!(numbers(&rx, "p.x"), (0..10).collect::<Vec<_>>());
}

#[test]
fn sixty_four_endpoints_and_no_more() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&[]);
    env.ctl_json(&["set-webhook", &rx.url(), "--events", "many.*"]);
    for i in 1..64 {
        add(
            &env,
            &[&format!("e{i:02}"), &rx.url(), "--events", "many.*"],
        );
    }
    let run = env.ctl_json(&["webhook", "add", "e64", &rx.url()]);
    assert_eq!(run.error_code(), "limit_reached", "{run:?}");
    env.emit("many.x", None);
    rx.wait_for(64, WAIT);
    let info = env.info();
    assert_eq!(info["webhooks"].as_array().unwrap().len(), 64);
    assert_eq!(info["totals"]["delivered"], 64);
    let labels: BTreeSet<String> = info["bus"]["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap().to_string())
        .collect();
    assert!(
        labels.contains("webhook") && labels.contains("webhook:e63"),
        "{labels:?}"
    );
    env.stop();
    env.start(&[]);
    assert_eq!(env.info()["webhooks"].as_array().unwrap().len(), 64);
}

#[test]
fn min_severity_takes_only_events_at_or_above_it() {
    let env = Env::new();
    let (alerts, all) = (Receiver::start(), Receiver::start());
    env.start(&[]);
    add(
        &env,
        &["alerts", &alerts.url(), "--min-severity", "warning"],
    );
    add(&env, &["all", &all.url(), "--events", "app.*"]);
    for (name, severity) in [
        ("app.low", None),
        ("app.alarm", Some("critical")),
        ("app.note", Some("notice")),
        ("app.warn", Some("warning")),
    ] {
        let mut args = vec!["emit", name];
        if let Some(s) = severity {
            args.extend(["--severity", s]);
        }
        assert_eq!(env.ctl_json(&args).code, 0);
    }
    all.wait_for(4, WAIT);
    alerts.wait_for(2, WAIT);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(alerts.events(), ["app.alarm", "app.warn"]);
    let w = endpoint(&env.info(), "alerts");
    assert_eq!(w["settings"]["min_severity"], "warning");
    accounting::check(&w).unwrap();
    let run = env.ctl_json(&["webhook", "update", "alerts", "--min-severity", "loud"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("critical"), "{run:?}");
}

#[test]
fn a_rate_limit_spaces_sends_and_durable_mode_loses_nothing() {
    let env = Env::new();
    let (mem, dur) = (Receiver::start(), Receiver::start());
    env.start(&[]);
    add(
        &env,
        &["mem", &mem.url(), "--events", "r.*", "--rate-limit", "20/s"],
    );
    add(
        &env,
        &[
            "dur",
            &dur.url(),
            "--events",
            "r.*",
            "--durable",
            "--rate-limit",
            "50/s",
            "--rate-burst",
            "5",
        ],
    );
    let list = env.ctl(&["webhook", "list"]).stdout;
    assert!(
        list.contains("memory 20/s") && list.contains("durable 50/s"),
        "{list}"
    );
    let (first, last) = env.burst("r.x", 40, 0);
    assert_eq!(last - first, 39);
    // The in-memory one: 40 sends 50 ms apart (its queue holds the burst): at least 39 x 50 ms.
    let got = mem.wait_for(40, WAIT);
    let span = got[39].at - got[0].at;
    assert!(
        span >= Duration::from_millis(1850),
        "40 sends at 20/s took only {span:?}"
    );
    for pair in got.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(30),
            "two sends too close"
        );
    }
    // The durable one: a burst of 5, then 20 ms apart; every event, in order.
    let got = dur.wait_for(40, WAIT);
    let span = got[39].at - got[0].at;
    assert!(
        span >= Duration::from_millis(650),
        "35 spaced sends at 50/s took only {span:?}"
    );
    assert_eq!(numbers(&dur, "r.x"), (0..40).collect::<Vec<_>>());
    let info = env.info();
    let w = endpoint(&info, "dur");
    assert_eq!(w["settings"]["rate_limit"], "50/s");
    assert_eq!(w["delivered"], 40);
    accounting::check(&w).unwrap();
    let run = env.ctl_json(&["webhook", "update", "mem", "--rate-limit", "fast"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("N/s"), "{run:?}");
}
