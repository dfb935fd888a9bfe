//! Payload templates end to end: each preset posts to a real receiver a body in its service's
//! documented schema (the required fields present), signed over the rendered bytes; a broken
//! template is refused at `add`; a template that fails for one event fails that event (with
//! the error in `webhook deliveries`) and the next event still goes, in memory and durable
//! mode; `webhook render` prints what would be sent without a daemon.

use std::time::Duration;

use pilot_tests::{accounting, sig, wait_until, Env, Receiver};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// The endpoint `name` in `info`.
fn endpoint(env: &Env, name: &str) -> Value {
    let info = env.info();
    info["webhooks"]
        .as_array()
        .and_then(|all| all.iter().find(|w| w["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no webhook {name} in {info}"))
}

fn add(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["webhook", "add"];
    all.extend_from_slice(args);
    env.ctl_json(&all).data()
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{ptr} is not a string in {v}"))
}

const HANDSHAKE: &str = r#"{"peer_node_id":42,"justification":"ops \"team\" <b>"}"#;

#[test]
fn every_preset_posts_its_services_schema_signed_over_the_rendered_body() {
    let env = Env::new();
    env.start(&[]);
    let names = ["slack", "discord", "teams", "pagerduty", "ntfy"];
    let receivers: Vec<Receiver> = names.iter().map(|_| Receiver::start()).collect();
    let mut secrets = Vec::new();
    for (name, rx) in names.iter().zip(&receivers) {
        let url = rx.url();
        let mut args = vec![*name, url.as_str(), "--template", name, "--generate-secret"];
        if *name == "pagerduty" {
            args.extend([
                "--template-var",
                "routing_key=R0UTING0KEY0000000000000000000000",
            ]);
        }
        let d = add(&env, &args);
        assert_eq!(d["applied"], true, "{d}");
        secrets.push(d["secret"].as_str().unwrap().to_string());
    }
    env.emit("handshake.received", Some(HANDSHAKE));
    let mut args = vec!["emit", "myapp.deploy_failed", "--severity", "critical"];
    args.extend(["--data", r#"{"service":"api","version":"1.2.3"}"#]);
    env.ctl_json(&args).data();

    for ((name, rx), secret) in names.iter().zip(&receivers).zip(&secrets) {
        let got = rx.wait_for(2, WAIT);
        assert_eq!(got.len(), 2, "{name}: {got:?}");
        for r in &got {
            assert!(
                sig::standard_ok(r, secret),
                "{name}: Standard Webhooks signature"
            );
            assert!(sig::pilot_ok(r, secret), "{name}: X-Pilot-Signature-256");
        }
        let (first, second) = (&got[0], &got[1]);
        if *name == "ntfy" {
            let text = std::str::from_utf8(&first.body).unwrap();
            assert!(
                text.starts_with("handshake.received on node 0: peer_node_id=42"),
                "{text}"
            );
            assert!(first
                .header("content-type")
                .unwrap()
                .starts_with("text/plain"));
            assert!(first
                .header("title")
                .unwrap()
                .contains("handshake.received"));
            assert_eq!(first.header("priority"), Some("3"), "notice");
            assert_eq!(second.header("priority"), Some("5"), "critical");
            assert!(second.header("tags").unwrap().contains("rotating_light"));
            continue;
        }
        assert_eq!(first.header("content-type"), Some("application/json"));
        let (a, b) = (first.json(), second.json());
        match *name {
            "slack" => {
                assert!(str_at(&a, "/text").contains("handshake.received"));
                assert_eq!(a["blocks"][0]["type"], "header");
                let section = &a["blocks"][1];
                assert_eq!(section["type"], "section");
                assert!(str_at(section, "/fields/1/text").contains(r#"ops "team" <b>"#));
                assert!(str_at(&b, "/text").contains(":rotating_light:"));
            }
            "discord" => {
                assert!(str_at(&a, "/content").contains("handshake.received on node 0"));
                assert_eq!(a["embeds"][0]["title"], "handshake.received");
                assert!(a["embeds"][0]["fields"].as_array().unwrap().len() <= 25);
                assert_eq!(b["embeds"][0]["color"], 15158332, "critical is red");
            }
            "teams" => {
                assert_eq!(a["type"], "message");
                let att = &a["attachments"][0];
                assert_eq!(
                    att["contentType"],
                    "application/vnd.microsoft.card.adaptive"
                );
                assert_eq!(att["content"]["type"], "AdaptiveCard");
                assert!(str_at(att, "/content/version").starts_with('1'));
                assert!(str_at(att, "/content/body/0/text").contains("handshake.received"));
            }
            "pagerduty" => {
                assert_eq!(a["routing_key"], "R0UTING0KEY0000000000000000000000");
                assert_eq!(a["event_action"], "trigger");
                assert_eq!(
                    a["dedup_key"],
                    first.header("webhook-id").unwrap(),
                    "one alert per event, the same across retries"
                );
                assert!(str_at(&a, "/payload/summary").contains("peer_node_id=42"));
                assert_eq!(a["payload"]["source"], "pilot node 0");
                assert_eq!(a["payload"]["severity"], "info", "notice maps to info");
                assert_eq!(
                    b["payload"]["severity"], "critical",
                    "emit --severity is kept"
                );
                assert_eq!(b["payload"]["custom_details"]["data"]["service"], "api");
            }
            other => unreachable!("{other}"),
        }
    }
    for name in names {
        let w = endpoint(&env, name);
        assert_eq!(w["delivered"], 2, "{w}");
        accounting::check(&w).unwrap();
    }
    let pd = endpoint(&env, "pagerduty");
    assert_eq!(pd["settings"]["template"], "pagerduty");
    assert_eq!(
        pd["settings"]["template_vars"]["routing_key"], "***",
        "masked in info"
    );
    let saved = env.config();
    assert_eq!(
        saved["webhooks"]["pagerduty"]["template_vars"]["routing_key"],
        "R0UTING0KEY0000000000000000000000"
    );
    // `webhook test` goes through the template too.
    let t = env
        .ctl_json(&["webhook", "test", "--name", "discord"])
        .data();
    assert_eq!(t["ok"], true, "{t}");
    let last = receivers[1].received().last().unwrap().json();
    assert_eq!(last["embeds"][0]["title"], "webhook.test");
}

#[test]
fn a_broken_template_is_refused_at_add_and_changes_nothing() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&[]);
    let dir = env.tmp.path();
    let syntax = dir.join("syntax.j2");
    std::fs::write(&syntax, "{% if %}").unwrap();
    let unescaped = dir.join("unescaped.j2");
    std::fs::write(&unescaped, r#"{"text": "{{ summary }}"}"#).unwrap();
    let cases: [(&str, Vec<String>, &str); 5] = [
        (
            "syntax",
            vec![syntax.display().to_string()],
            "does not compile",
        ),
        (
            "unescaped",
            vec![unescaped.display().to_string()],
            "not valid JSON",
        ),
        (
            "missing",
            vec!["/nonexistent/t.j2".into()],
            "/nonexistent/t.j2",
        ),
        (
            "unknown",
            vec!["slak".into()],
            "slack, discord, teams, pagerduty, ntfy",
        ),
        (
            "nokey",
            vec!["pagerduty".into()],
            "--template-var routing_key=",
        ),
    ];
    for (name, template, want) in &cases {
        let url = rx.url();
        let run = env.ctl_json(&["webhook", "add", name, &url, "--template", &template[0]]);
        assert_eq!(run.error_code(), "invalid_argument", "{name}");
        assert!(run.stderr.contains(want), "{name}: {}", run.stderr);
    }
    assert!(
        !env.read_config().contains("template"),
        "{}",
        env.read_config()
    );
    assert!(env.info()["webhooks"].as_array().unwrap().len() <= 1);

    // `update` checks the same way, and a refused update keeps what was saved.
    let run = env.ctl_json(&["webhook", "add", "ok", &rx.url(), "--template", "slack"]);
    run.data();
    std::fs::write(&syntax, "{{ fail('now broken') }}").unwrap();
    let run = env.ctl_json(&[
        "webhook",
        "update",
        "ok",
        "--template",
        syntax.to_str().unwrap(),
    ]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(run.stderr.contains("now broken"), "{}", run.stderr);
    assert_eq!(env.config()["webhooks"]["ok"]["template"], "slack");
    // Back to pilot's own body.
    env.ctl_json(&["webhook", "update", "ok", "--no-template"])
        .data();
    env.emit("plain.again", None);
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["event"], "plain.again");
}

/// A template that renders the samples but fails for events carrying `data.boom`.
const FRAGILE: &str = r#"{% if data.boom %}{{ fail("cannot render a boom: " ~ data.boom) }}{% endif %}{"event": {{ event | tojson }}, "summary": {{ summary | tojson }}}"#;

#[test]
fn a_template_failing_for_one_event_fails_that_event_and_the_next_one_goes() {
    let env = Env::new();
    env.start(&[]);
    let file = env.tmp.path().join("fragile.j2");
    std::fs::write(&file, FRAGILE).unwrap();
    let (memory, durable) = (Receiver::start(), Receiver::start());
    let path = file.display().to_string();
    add(&env, &["memory", &memory.url(), "--template", &path]);
    add(
        &env,
        &["durable", &durable.url(), "--template", &path, "--durable"],
    );
    let bad = env.emit("app.crash", Some(r#"{"boom":"segfault"}"#));
    env.emit("app.recovered", Some(r#"{"ok":true}"#));

    for (name, rx) in [("memory", &memory), ("durable", &durable)] {
        let got = rx.wait_for(1, WAIT);
        assert_eq!(got.len(), 1, "{name}: {got:?}");
        assert_eq!(got[0].json()["event"], "app.recovered", "{name}");
        assert!(
            wait_until(WAIT, || endpoint(&env, name)["failed"] == 1),
            "{name}: {}",
            endpoint(&env, name)
        );
        let w = endpoint(&env, name);
        assert_eq!(w["delivered"], 1, "{name}: {w}");
        assert_eq!(
            w["state"].as_str().map(|s| s != "disabled"),
            Some(true),
            "{w}"
        );
        accounting::check(&w).unwrap();
        let failed = env
            .ctl_json(&["webhook", "deliveries", "--name", name, "--failed"])
            .data();
        let failed = failed["deliveries"].as_array().unwrap().clone();
        assert_eq!(
            failed.len(),
            1,
            "{name}: one attempt, never retried: {failed:?}"
        );
        assert_eq!(failed[0]["event_id"], bad);
        assert_eq!(failed[0]["status"], Value::Null, "nothing was sent");
        let error = failed[0]["error"].as_str().unwrap();
        assert!(
            error.contains("cannot render a boom: segfault") && error.contains(&path),
            "{name}: {error}"
        );
    }
    assert_eq!(
        endpoint(&env, "durable")["spool"]["depth"],
        0,
        "the failed event left the spool"
    );
    // Failures of the template never open the circuit.
    for i in 0..6 {
        env.emit("app.crash", Some(&format!(r#"{{"boom":"{i}"}}"#)));
    }
    env.emit("app.recovered", None);
    assert_eq!(memory.wait_for(2, WAIT).len(), 2);
    assert!(wait_until(WAIT, || endpoint(&env, "memory")["failed"] == 7));
    assert_eq!(endpoint(&env, "memory")["circuit_skips"], 0);
}

#[test]
fn render_prints_what_would_be_sent_without_a_daemon() {
    let env = Env::new();
    let run = env.ctl(&[
        "webhook",
        "render",
        "--template",
        "ntfy",
        "security.nonce_replay",
        "--data",
        r#"{"peer_node_id":9,"counter":3}"#,
        "--node-id",
        "4",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let head: Vec<&str> = run.stdout.lines().take_while(|l| !l.is_empty()).collect();
    assert_eq!(
        head,
        [
            "Content-Type: text/plain; charset=utf-8",
            "Priority: 5",
            "Tags: rotating_light,security",
            "Title: pilot: security.nonce_replay (node 4)",
        ],
        "the Content-Type, then the template's headers by name"
    );
    assert!(run
        .stdout
        .contains("\n\nsecurity.nonce_replay on node 4: peer_node_id=9, counter=3\n"));

    let d = env
        .ctl_json(&[
            "webhook",
            "render",
            "--template",
            "pagerduty",
            "--template-var",
            "routing_key=abc",
            "myapp.x",
            "--severity",
            "warning",
        ])
        .data();
    assert_eq!(d["content_type"], "application/json");
    let body: Value = serde_json::from_str(d["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["payload"]["severity"], "warning");
    assert_eq!(body["routing_key"], "abc");

    let file = env.tmp.path().join("mine.j2");
    std::fs::write(
        &file,
        "{% set content_type = 'text/plain' %}{{ event }}: {{ data.n * 2 }}",
    )
    .unwrap();
    let d = env
        .ctl_json(&[
            "webhook",
            "render",
            "--template",
            file.to_str().unwrap(),
            "a.b",
            "--data",
            r#"{"n":21}"#,
        ])
        .data();
    assert_eq!(d["body"], "a.b: 42");

    let run = env.ctl_json(&["webhook", "render", "--template", "pagerduty", "a.b"]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(run.stderr.contains("routing_key"), "{}", run.stderr);
    let run = env.ctl_json(&["webhook", "render", "--template", "slack", "conn.fin"]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(run.stderr.contains("missing"), "{}", run.stderr);
}

#[test]
fn set_webhook_takes_a_template_and_config_keeps_it() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&[]);
    env.ctl_json(&["set-webhook", &rx.url(), "--template", "discord"])
        .data();
    let config = env.config();
    assert_eq!(
        config["webhook_settings"]["template"], "discord",
        "{config}"
    );
    env.emit("handshake.received", Some(HANDSHAKE));
    let got = rx.wait_for(1, WAIT);
    assert_eq!(got[0].json()["embeds"][0]["title"], "handshake.received");
    let run = env.ctl_json(&[
        "set-webhook",
        &rx.url(),
        "--template",
        "slack",
        "--batch-max",
        "5",
    ]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(run.stderr.contains("--batch-max"), "{}", run.stderr);
}

#[test]
fn the_daemon_checks_a_template_from_config_json_at_start() {
    let env = Env::new();
    let file = env.tmp.path().join("broken.j2");
    std::fs::write(&file, "{{ fail('broken at start') }}").unwrap();
    let config = serde_json::json!({
        "webhooks": {"mine": {"url": "http://127.0.0.1:9/in", "template": file}}
    });
    env.write_config(&config.to_string());
    let run = env.ctl_json(&["daemon", "start"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("broken at start") && run.stderr.contains("mine"),
        "{}",
        run.stderr
    );
    std::fs::write(&file, r#"{"e": {{ event | tojson }}}"#).unwrap();
    env.start(&[]);
    let w = endpoint(&env, "mine");
    assert_eq!(w["settings"]["template"], file.to_str().unwrap(), "{w}");
}
