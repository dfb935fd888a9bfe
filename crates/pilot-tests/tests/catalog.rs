//! The event catalog from outside: `pilotctl events catalog` (table and JSON, with each event's
//! severity), `emit` refusing catalog data that does not match (in pilotctl, and in the daemon
//! for every IPC client), `emit --severity` (checked, never in the payload), the daemon's own
//! events matching the catalog, and docs/events.md generated from it.

use std::path::PathBuf;
use std::time::Duration;

use pilot_core::catalog::{self, Category, CATALOG};
use pilot_tests::{raw, Env, Receiver};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn events_catalog_prints_an_aligned_table_and_json() {
    // No daemon needed.
    let env = Env::new();
    let run = env.ctl(&["events", "catalog"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), CATALOG.len() + 1, "{}", run.stdout);
    let header = lines[0];
    assert!(header.starts_with("EVENT "), "{header}");
    let cols = ["CATEGORY", "DATA", "DESCRIPTION", "SEVERITY"].map(|c| header.find(c).unwrap());
    for (line, e) in lines[1..].iter().zip(CATALOG) {
        assert!(line.starts_with(&format!("{} ", e.name)), "{line}");
        assert!(line[cols[0]..].starts_with(e.category.id()), "{line}");
        assert!(line[cols[2]..].starts_with(e.description), "{line}");
        assert!(
            line[cols[3]..].starts_with(&format!("{} ", e.severity)),
            "{line}"
        );
    }
    let severity_of = |name: &str| {
        let line = lines.iter().find(|l| l.starts_with(&format!("{name} ")));
        line.unwrap()[cols[3]..]
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(severity_of("daemon.started"), "info");
    assert_eq!(severity_of("webhook.disabled"), "warning");
    assert_eq!(severity_of("security.nonce_replay"), "critical");
    let hs = lines
        .iter()
        .find(|l| l.starts_with("handshake.received "))
        .unwrap();
    assert!(
        hs[cols[1]..].starts_with("peer_node_id:integer justification:string "),
        "{hs}"
    );

    let data = env.ctl_json(&["events", "catalog"]).data();
    let events = data["events"].as_array().unwrap();
    assert_eq!(events.len(), CATALOG.len());
    for (got, e) in events.iter().zip(CATALOG) {
        assert_eq!(got["name"], e.name);
        assert_eq!(got["category"], e.category.id());
        assert_eq!(got["severity"], e.severity.as_str());
        assert_eq!(got["description"], e.description);
        let fields = got["fields"].as_array().unwrap();
        assert_eq!(fields.len(), e.fields.len());
        for (g, f) in fields.iter().zip(e.fields) {
            assert_eq!(g["name"], f.name);
            assert_eq!(g["type"], f.ty.as_str());
            assert_eq!(g["required"], f.required);
        }
    }
    assert_eq!(
        data["categories"].as_array().unwrap().len(),
        Category::ALL.len()
    );
    let tunnel = events
        .iter()
        .find(|e| e["name"] == "tunnel.established")
        .unwrap();
    assert_eq!(tunnel["fields"][1]["type"], "boolean");

    let data = env
        .ctl_json(&["events", "catalog", "--category", "tunnel"])
        .data();
    let names: Vec<&str> = data["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "tunnel.peer_added",
            "tunnel.established",
            "tunnel.relay_activated",
            "tunnel.rekey_gave_up",
            "tunnel.desync_salvage"
        ]
    );
    let run = env.ctl(&["events", "catalog", "--category", "pubsub"]);
    assert_eq!(run.stdout.lines().count(), 4, "{run:?}");

    // Families are shown as their patterns: in the table, and in JSON with `pattern`.
    let data = env
        .ctl_json(&["events", "catalog", "--category", "plugin"])
        .data();
    let plugin = data["events"].as_array().unwrap();
    let names: Vec<&str> = plugin.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["plugin.<name>.panic", "plugin.<name>.unhealthy"]);
    assert!(plugin.iter().all(|e| e["pattern"] == true), "{data}");
    assert!(
        events
            .iter()
            .filter(|e| !e["name"].as_str().unwrap().contains('<'))
            .all(|e| e.get("pattern").is_none()),
        "fixed names carry no pattern key"
    );
    let run = env.ctl(&["events", "catalog", "--category", "plugin"]);
    let rows: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert!(
        rows[0].starts_with("plugin.<name>.panic ")
            && rows[0].contains("plugin:string op:string panic:string")
            && rows[1].starts_with("plugin.<name>.unhealthy "),
        "{run:?}"
    );
    // The newest release's events, each in its category.
    for (name, category) in [
        ("syn.port_rejected", "policy"),
        ("datagram.port_rejected", "policy"),
        ("dataexchange.ack_failed", "data"),
        ("received.full", "data"),
        ("inbox.full", "data"),
        ("tunnel.desync_salvage", "tunnel"),
    ] {
        let e = events.iter().find(|e| e["name"] == name).expect(name);
        assert_eq!(e["category"], category, "{name}");
    }

    let run = env.ctl_json(&["events", "catalog", "--category", "nodes"]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(run.stderr.contains("node, connection"), "{run:?}");
    // The stream's flags do not mix with the subcommand.
    assert_eq!(env.ctl(&["events", "--count", "1", "catalog"]).code, 1);
}

/// The message of a `--json` error that has the code `invalid_argument`.
fn invalid_argument(run: &pilot_tests::Run) -> String {
    assert_eq!(run.error_code(), "invalid_argument", "{run:?}");
    let v: Value = serde_json::from_str(run.stderr.trim()).unwrap();
    v["message"].as_str().unwrap().to_string()
}

#[test]
fn emit_refuses_catalog_data_that_does_not_match_and_publishes_nothing() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    rx.wait_for(1, WAIT);

    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "handshake.received",
            r#"{"peer_node_id":"7","justification":"hi"}"#,
            &[r#"field "peer_node_id" must be integer, found string"#],
        ),
        (
            "node.registered",
            r#"{"address":"0:0000.0000.0005"}"#,
            &[r#"field "endpoint" is missing (expected string)"#],
        ),
        (
            "tunnel.established",
            r#"{"peer_node_id":7,"authenticated":"yes","relay":false,"rekeyed":false}"#,
            &[r#"field "authenticated" must be boolean, found string"#],
        ),
        (
            "network.joined",
            r#"{"network_id":1.5,"member_tags":[]}"#,
            &[r#"field "network_id" must be integer, found number"#],
        ),
    ];
    for (event, data, needles) in cases {
        let message = invalid_argument(&env.ctl_json(&["emit", event, "--data", data]));
        for needle in needles {
            assert!(message.contains(needle), "{needle}: {message}");
        }
        assert!(
            message.starts_with(&format!("event {event}: ")),
            "{message}"
        );
        let run = env.ctl(&["emit", event, "--data", data]);
        assert_eq!(run.code, 1);
        assert!(run.stderr.starts_with("error: event "), "{run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    // No data at all for an event with required fields.
    let message = invalid_argument(&env.ctl_json(&["emit", "trust.revoked"]));
    assert!(
        message.contains(r#""peer_node_id" is missing"#),
        "{message}"
    );

    // emit --file: the bad line is named; the lines before it are published, none after it.
    let file = env.tmp.path().join("events.jsonl");
    std::fs::write(
        &file,
        "{\"event\":\"test.before\"}\n\
         {\"event\":\"trust.changed\",\"data\":{\"peer_node_id\":7,\"state\":\"trusted\"}}\n\
         {\"event\":\"test.never\"}\n",
    )
    .unwrap();
    let message = invalid_argument(&env.ctl_json(&["emit", "--file", file.to_str().unwrap()]));
    assert!(
        message.starts_with(
            r#"line 2: event trust.changed: data field "reason" is missing (expected string)"#
        ),
        "{message}"
    );

    // Names outside the catalog take any data; catalog events may carry extra fields.
    env.emit("order.placed", Some(r#"{"peer_node_id":"not checked"}"#));
    env.emit(
        "tunnel.peer_added",
        Some(r#"{"peer_node_id":7,"endpoint":"10.0.0.7:9000","added_by":"a newer publisher"}"#),
    );
    // Delivery is in order, so once the last one is in, anything published before it is too.
    rx.wait_for(4, WAIT);
    assert_eq!(
        rx.events(),
        [
            "daemon.started",
            "test.before",
            "order.placed",
            "tunnel.peer_added"
        ]
    );
    assert_eq!(env.info()["bus"]["published"], 4);
}

#[test]
fn the_daemon_checks_catalog_data_for_every_ipc_client() {
    let env = Env::new();
    env.start(&[]);
    let socket = env.socket_path();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = |s: &str| Some(serde_json::value::RawValue::from_string(s.to_string()).unwrap());
    rt.block_on(async {
        let mut client = pilot_ipc::Client::connect(&socket).await.unwrap();
        let err = client
            .emit("handshake.received", raw(r#"{"peer_node_id":7}"#))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "catalog_mismatch", "{err}");
        assert!(err.to_string().contains("\"justification\""), "{err}");
        let err = client
            .emit(
                "message.received",
                raw(r#"{"type":"text","from":"x","size":"42"}"#),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "catalog_mismatch", "{err}");
        assert!(
            err.to_string()
                .contains(r#"field "size" must be integer, found string"#),
            "{err}"
        );
        // The connection stays usable; other names pass.
        client.emit("a.b", raw(r#"{"size":"42"}"#)).await.unwrap();
    });
    assert_eq!(env.info()["bus"]["published"], 2, "daemon.started and a.b");
}

/// A family's events (`plugin.<name>.panic`) are checked like fixed names, by pilotctl and by
/// the daemon for every IPC client, and their errors name the event as given; a good one is
/// delivered as it was emitted.
#[test]
fn a_familys_events_are_checked_like_fixed_names() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    rx.wait_for(1, WAIT);

    // pilotctl checks before sending.
    let message = invalid_argument(&env.ctl_json(&["emit", "plugin.foo.panic"]));
    assert_eq!(
        message,
        r#"event plugin.foo.panic: data field "plugin" is missing (expected string)"#
    );
    let message = invalid_argument(&env.ctl_json(&[
        "emit",
        "plugin.foo.unhealthy",
        "--data",
        r#"{"plugin":"foo","plugin_panics":5,"recovered_total":"9"}"#,
    ]));
    assert!(
        message.contains(r#"field "recovered_total" must be integer, found string"#),
        "{message}"
    );

    // The daemon checks too: `catalog_mismatch`, nothing published.
    let socket = env.socket_path();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = |s: &str| Some(serde_json::value::RawValue::from_string(s.to_string()).unwrap());
    rt.block_on(async {
        let mut client = pilot_ipc::Client::connect(&socket).await.unwrap();
        let err = client.emit("plugin.foo.panic", None).await.unwrap_err();
        assert_eq!(err.code(), "catalog_mismatch", "{err}");
        assert!(err.to_string().contains("event plugin.foo.panic:"), "{err}");
        let err = client
            .emit(
                "plugin.tasks.panic",
                raw(r#"{"plugin":"tasks","op":"Start"}"#),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "catalog_mismatch", "{err}");
        assert!(err.to_string().contains(r#""panic" is missing"#), "{err}");
        // Names of another shape are outside the family, and pass.
        client.emit("plugin.foo.bar.panic", None).await.unwrap();
    });

    let good =
        r#"{"plugin":"webhook","op":"Start","panic":"boom","recovered_total":1,"plugin_panics":1}"#;
    env.emit("plugin.webhook.panic", Some(good));
    let got = rx.wait_for(3, WAIT);
    let names: Vec<String> = got.iter().map(|r| r.event()).collect();
    assert_eq!(
        names,
        [
            "daemon.started",
            "plugin.foo.bar.panic",
            "plugin.webhook.panic"
        ]
    );
    assert_eq!(
        got[2].json()["data"],
        serde_json::from_str::<Value>(good).unwrap()
    );
    assert_eq!(env.info()["bus"]["published"], 3);
}

#[test]
fn the_daemons_own_events_match_the_catalog() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    rx.wait_for(1, WAIT);
    env.ctl_json(&["webhook", "test"]).data();
    env.stop();
    let got = rx.wait_for(3, WAIT);
    let mut seen = Vec::new();
    for r in &got {
        for ev in r.events() {
            let name = ev["event"].as_str().unwrap().to_string();
            assert!(
                catalog::lookup(&name).is_some(),
                "{name} is not in the catalog"
            );
            let data = match ev.get("data") {
                None | Some(Value::Null) => None,
                Some(d) => Some(serde_json::value::to_raw_value(d).unwrap()),
            };
            catalog::check(&name, data.as_deref())
                .unwrap_or_else(|e| panic!("the daemon's own {name} does not match: {e}"));
            seen.push(name);
        }
    }
    assert_eq!(
        seen,
        ["daemon.started", "webhook.test", "daemon.shutting_down"]
    );
}

#[test]
fn emit_severity_is_checked_and_never_changes_the_payload() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    rx.wait_for(1, WAIT);

    // A level pilotctl does not know is refused before anything is sent.
    let run = env.ctl_json(&["emit", "a.b", "--severity", "loud"]);
    let message = invalid_argument(&run);
    assert!(
        message.contains(
            r#"unknown severity "loud" (one of: debug, info, notice, warning, critical)"#
        ),
        "{message}"
    );
    let file = env.tmp.path().join("levels.jsonl");
    std::fs::write(
        &file,
        "{\"event\":\"test.first\",\"severity\":\"notice\"}\n\
         {\"event\":\"test.never\",\"severity\":\"urgent\"}\n",
    )
    .unwrap();
    let message = invalid_argument(&env.ctl_json(&["emit", "--file", file.to_str().unwrap()]));
    assert!(
        message.starts_with(r#"line 2: unknown severity "urgent""#),
        "{message}"
    );
    // (Line 1, `test.first`, was published: lines before a bad one are.)

    // The daemon checks it too, for every IPC client: `invalid_argument`, nothing published.
    let mut s = raw::connect(&env.socket_path(), WAIT).unwrap();
    raw::hello(&mut s).unwrap();
    raw::send(
        &mut s,
        &json!({"type": "emit", "event": "test.raw", "severity": "loud"}),
    )
    .unwrap();
    let reply = raw::recv(&mut s).unwrap();
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "invalid_argument", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("one of: debug, info, notice, warning, critical"),
        "{reply}"
    );
    raw::send(
        &mut s,
        &json!({"type": "emit", "event": "test.raw", "severity": "Warning"}),
    )
    .unwrap();
    let reply = raw::recv(&mut s).unwrap();
    assert_eq!(reply["type"], "ok", "{reply}");
    drop(s);

    // Accepted levels: one event, a file with a per-line level and the flag's for the rest.
    let data = r#"{"peer_node_id":7,"counter":9}"#;
    env.ctl_json(&[
        "emit",
        "security.nonce_replay",
        "--data",
        data,
        "--severity",
        "debug",
    ])
    .data();
    let good = env.tmp.path().join("good.jsonl");
    std::fs::write(
        &good,
        "{\"event\":\"test.flag\"}\n{\"event\":\"test.own\",\"severity\":\"notice\"}\n",
    )
    .unwrap();
    let out = env
        .ctl_json(&[
            "emit",
            "--file",
            good.to_str().unwrap(),
            "--severity",
            "critical",
        ])
        .data();
    assert_eq!(out["count"], 2);
    let got = rx.wait_for(6, WAIT);
    let names: Vec<String> = got.iter().map(|r| r.event()).collect();
    assert_eq!(
        names,
        [
            "daemon.started",
            "test.first",
            "test.raw",
            "security.nonce_replay",
            "test.flag",
            "test.own"
        ]
    );
    // The body is exactly Pilot's fields, in order: the severity is not in it.
    for r in &got[1..] {
        let v = r.json();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let want: &[&str] = if v.get("data").is_some() {
            &["event_id", "event", "node_id", "timestamp", "data"]
        } else {
            &["event_id", "event", "node_id", "timestamp"]
        };
        assert_eq!(keys, want, "{v}");
    }
    let replay = &got[3];
    let v = replay.json();
    let expected = format!(
        r#"{{"event_id":{},"event":"security.nonce_replay","node_id":{},"timestamp":"{}","data":{data}}}"#,
        v["event_id"],
        v["node_id"],
        v["timestamp"].as_str().unwrap()
    );
    assert_eq!(std::str::from_utf8(&replay.body).unwrap(), expected);
    assert_eq!(env.info()["bus"]["published"], 6);
}

fn events_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md")
}

/// docs/events.md is its hand-written part, then exactly `pilotctl events catalog --markdown`.
/// `UPDATE_DOCS=1 cargo test -p pilot-tests --test catalog` rewrites the generated part.
#[test]
fn docs_events_md_is_generated_from_the_catalog() {
    let env = Env::new();
    let run = env.ctl(&["events", "catalog", "--markdown"]);
    assert_eq!(run.code, 0, "{run:?}");
    let generated = run.stdout;
    let marker = generated.lines().next().unwrap();
    assert!(marker.starts_with("<!-- Generated from "), "{marker}");
    let path = events_md();
    let page = std::fs::read_to_string(&path).unwrap();
    let at = page
        .find("<!-- Generated from ")
        .expect("docs/events.md has the generated marker");
    let want = format!("{}{generated}", &page[..at]);
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    if page != want {
        let first = page
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| page.lines().count().min(want.lines().count()));
        panic!(
            "docs/events.md differs from the catalog (crates/pilot-core/src/catalog.rs) from \
             line {}:\n  file:      {:?}\n  generated: {:?}\nregenerate it with \
             `UPDATE_DOCS=1 cargo test -p pilot-tests --test catalog` (after `cargo build \
             --workspace --bins`)",
            first + 1,
            page.lines().nth(first).unwrap_or(""),
            want.lines().nth(first).unwrap_or("")
        );
    }
}
