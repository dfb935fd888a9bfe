//! NATS JetStream endpoints end to end: the real daemon publishing to a real `nats-server -js`
//! on a free loopback port (its own store), read back with an independent client (async-nats
//! in the test): order, subjects, headers, bodies and signatures; retries through a server
//! restart; a durable endpoint across a broker outage and `kill -9` of the daemon, exactly once
//! in the stream; `--create-stream`; clear errors for a missing stream and a missing
//! permission; no credential in the log, `info` or config.json.

use std::collections::HashSet;
use std::time::Duration;

use pilot_tests::nats::{Msg, NatsServer};
use pilot_tests::{sig, wait_until, Env};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// Fast retries, so an outage ends soon after the broker comes back.
const FAST: [&str; 6] = [
    "--backoff",
    "50ms",
    "--circuit-cooldown",
    "200ms",
    "--webhook-timeout",
    "2s",
];

fn ok(env: &Env, args: &[&str]) -> Value {
    let run = env.ctl_json(args);
    assert_eq!(run.code, 0, "{run:?}");
    run.data()
}

/// The distinct `Nats-Msg-Id`s of `msgs`, asserting none repeats.
fn unique_ids(msgs: &[Msg]) -> Vec<String> {
    let mut seen = HashSet::new();
    msgs.iter()
        .map(|m| {
            let id = m.header("Nats-Msg-Id").expect("Nats-Msg-Id").to_string();
            assert!(seen.insert(id.clone()), "{id} is in the stream twice");
            id
        })
        .collect()
}

fn event_ids(msgs: &[Msg]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m.json()["event_id"].as_u64().expect("event_id"))
        .collect()
}

#[test]
fn events_reach_the_stream_in_order_with_subjects_headers_bodies_and_signatures() {
    let nats = NatsServer::start();
    nats.create_stream("PILOT", &["pilot.>"]);
    let env = Env::new();
    let set = ok(
        &env,
        &[
            "set-webhook",
            &nats.url(),
            "--subject",
            "pilot.{node_id}.{category}.{event}",
            "--generate-secret",
        ],
    );
    let secret = set["secret"]
        .as_str()
        .expect("a generated secret")
        .to_string();
    env.start(&["--node-id", "7"]);
    let mut ids = Vec::new();
    for i in 0..10 {
        let name = if i % 2 == 0 {
            "app.alpha"
        } else {
            "job.beta.done"
        };
        ids.push(env.emit(name, Some(&format!("{{\"i\":{i}}}"))));
    }
    let mine = |m: &&Msg| {
        m.header("Pilot-Event")
            .is_some_and(|e| e.starts_with("app.") || e.starts_with("job."))
    };
    assert!(
        wait_until(WAIT, || nats.messages("PILOT").iter().filter(mine).count()
            >= 10),
        "{}\n{}",
        env.info(),
        env.log()
    );
    let msgs = nats.messages("PILOT");
    let ours: Vec<&Msg> = msgs.iter().filter(mine).collect();
    let got: Vec<u64> = ours
        .iter()
        .map(|m| m.json()["event_id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, ids, "in order, each once");
    for (i, m) in ours.iter().enumerate() {
        let body = m.json();
        let name = body["event"].as_str().unwrap();
        let category = name.split('.').next().unwrap();
        assert_eq!(m.subject, format!("pilot.7.{category}.{name}"));
        assert_eq!(body["data"]["i"], i as u64);
        assert_eq!(body["node_id"], 7);
        assert_eq!(m.header("Pilot-Event"), Some(name));
        assert_eq!(
            m.header("Pilot-Event-Id"),
            Some(ids[i].to_string().as_str())
        );
        let id = m.header("Nats-Msg-Id").unwrap();
        assert_eq!(m.header("webhook-id"), Some(id));
        let ts = m.header("webhook-timestamp").expect("signed");
        let want = sig::standard_entry(&secret, id, ts, &m.body);
        assert!(
            m.header("webhook-signature")
                .unwrap()
                .split(' ')
                .any(|e| e == want),
            "{m:?}"
        );
        assert_eq!(
            m.header("X-Pilot-Signature-256"),
            Some(sig::pilot_hex(&secret, &m.body).as_str())
        );
    }
    unique_ids(&msgs);
    // test: one attempt through the same transport.
    let t = ok(&env, &["webhook", "test"]);
    assert_eq!(t["ok"], true, "{t}");
    // The URL is shown as given.
    assert_eq!(env.info()["webhook"]["url"], nats.url());
}

#[test]
fn batches_are_pipelined_messages_one_per_event() {
    let nats = NatsServer::start();
    nats.create_stream("PILOT", &["pilot.>"]);
    let env = Env::new();
    ok(
        &env,
        &[
            "set-webhook",
            &nats.url(),
            "--batch-max",
            "50",
            "--batch-wait",
            "20ms",
        ],
    );
    env.start(&[]);
    let (first, last) = env.burst("load.tick", 300, 10);
    let ticks = || {
        nats.messages("PILOT")
            .into_iter()
            .filter(|m| m.header("Pilot-Event") == Some("load.tick"))
            .count()
    };
    assert!(wait_until(WAIT, || ticks() >= 300), "{}", env.log());
    let msgs: Vec<Msg> = nats
        .messages("PILOT")
        .into_iter()
        .filter(|m| m.header("Pilot-Event") == Some("load.tick"))
        .collect();
    assert_eq!(event_ids(&msgs), (first..=last).collect::<Vec<_>>());
    unique_ids(&msgs);
    assert!(
        msgs.iter().all(|m| m.json()["event"] == "load.tick"),
        "one event per body"
    );
}

#[test]
fn retries_carry_events_through_a_server_restart() {
    let mut nats = NatsServer::start();
    nats.create_stream("PILOT", &["pilot.>"]);
    let env = Env::new();
    ok(&env, &["set-webhook", &nats.url()]);
    let mut args = FAST.to_vec();
    args.extend(["--max-attempts", "100"]);
    env.start(&args);
    let xs = |nats: &NatsServer| -> Vec<Msg> {
        nats.messages("PILOT")
            .into_iter()
            .filter(|m| m.header("Pilot-Event").is_some_and(|e| e.starts_with("x.")))
            .collect()
    };
    let a = env.emit("x.before", None);
    assert!(wait_until(WAIT, || xs(&nats).len() == 1), "{}", env.log());
    nats.stop();
    let b = env.emit("x.during", None);
    assert!(wait_until(WAIT, || env.info()["webhook"]["retries"]
        .as_u64()
        .is_some_and(|r| r > 0)));
    let err = env.info()["webhook"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!err.is_empty());
    nats.start_again();
    let c = env.emit("x.after", None);
    assert!(
        wait_until(WAIT, || xs(&nats).len() >= 3),
        "{}\n{}",
        env.info(),
        env.log()
    );
    let msgs = xs(&nats);
    assert_eq!(event_ids(&msgs), [a, b, c]);
    unique_ids(&msgs);
}

#[test]
fn a_durable_endpoint_survives_a_broker_outage_and_kill_9_exactly_once() {
    let mut nats = NatsServer::start();
    nats.create_stream("PILOT", &["pilot.>"]);
    nats.stop();
    let env = Env::new();
    ok(
        &env,
        &[
            "set-webhook",
            &nats.url(),
            "--durable",
            "--batch-max",
            "100",
        ],
    );
    env.start(&FAST);
    let (first, last) = env.burst("bulk.item", 1000, 20);
    // Some attempts fail against the broker that is down.
    assert!(wait_until(WAIT, || env.info()["webhook"]["retries"]
        .as_u64()
        .is_some_and(|r| r > 0)));
    env.kill_9();
    nats.start_again();
    env.start(&FAST);
    assert!(
        wait_until(Duration::from_secs(120), || {
            let m = nats.messages("PILOT");
            m.iter()
                .filter(|m| m.header("Pilot-Event") == Some("bulk.item"))
                .count()
                >= 1000
        }),
        "{}\n{}",
        env.info(),
        env.log()
    );
    let msgs: Vec<Msg> = nats
        .messages("PILOT")
        .into_iter()
        .filter(|m| m.header("Pilot-Event") == Some("bulk.item"))
        .collect();
    assert_eq!(msgs.len(), 1000, "exactly once in the stream");
    assert_eq!(
        event_ids(&msgs),
        (first..=last).collect::<Vec<_>>(),
        "in order"
    );
    let ids = unique_ids(&msgs);
    assert!(
        ids.iter().all(|id| id.starts_with("msg_0_")),
        "durable ids: {}",
        ids[0]
    );
}

#[test]
fn create_stream_makes_the_missing_stream_once() {
    let nats = NatsServer::start();
    let env = Env::new();
    ok(
        &env,
        &[
            "set-webhook",
            &nats.url(),
            "--subject",
            "fleet.{event}",
            "--create-stream",
            "FLEET",
        ],
    );
    env.start(&[]);
    let id = env.emit("a.b", None);
    assert!(
        wait_until(WAIT, || nats.count("FLEET") >= 2),
        "{}",
        env.log()
    );
    let msgs = nats.messages("FLEET");
    assert!(msgs
        .iter()
        .any(|m| m.subject == "fleet.a.b" && m.json()["event_id"] == id));
    assert!(
        wait_until(WAIT, || env.log().contains("NATS stream created")),
        "{}",
        env.log()
    );
}

#[test]
fn a_missing_stream_is_a_clear_retried_error() {
    let nats = NatsServer::start();
    let env = Env::new();
    ok(&env, &["set-webhook", &nats.url()]);
    env.start(&FAST);
    env.emit("a.b", None);
    assert!(wait_until(WAIT, || env.info()["webhook"]["retries"]
        .as_u64()
        .is_some_and(|r| r > 0)));
    let err = env.info()["webhook"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no JetStream stream takes subject \"pilot.0.")
            && err.contains("--create-stream"),
        "{err}"
    );
    // Then the stream appears and the next event goes through.
    nats.create_stream("PILOT", &["pilot.>"]);
    env.emit("a.c", None);
    assert!(wait_until(WAIT, || nats
        .messages("PILOT")
        .iter()
        .any(|m| m.subject == "pilot.0.a.c")));
}

#[test]
fn a_missing_permission_is_a_clear_error_and_no_credential_leaks() {
    let nats = NatsServer::with_config(
        r#"authorization {
  users = [
    { user: "pilot", password: "pw-Z9q8-secret", permissions: { publish: { deny: ["pilot.0.denied.>"] } } }
  ]
}"#,
    );
    // The test's own client authenticates too.
    let env = Env::new();
    let user_file = env.tmp.path().join("nats-user");
    std::fs::write(&user_file, "pilot:pw-Z9q8-secret\n").unwrap();
    let user = user_file.to_str().unwrap();
    // A stream, made with the test's own authenticated client.
    pilot_tests::nats::create_stream_as(&nats, "pilot", "pw-Z9q8-secret", "PILOT", &["pilot.>"]);
    ok(
        &env,
        &["set-webhook", &nats.url(), "--nats-user-file", user],
    );
    env.start(&FAST);
    env.emit("ok.one", None);
    assert!(
        wait_until(WAIT, || env.info()["webhook"]["delivered"]
            .as_u64()
            .is_some_and(|d| d >= 1)),
        "{}",
        env.log()
    );
    env.emit("denied.one", None);
    assert!(
        wait_until(WAIT, || env.info()["webhook"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no permission"))),
        "{}\n{}",
        env.info(),
        env.log()
    );
    let err = env.info()["webhook"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("pilot.0.denied.one"), "{err}");

    // A wrong password: refused at connect, named, never shown.
    let bad = env.tmp.path().join("bad-user");
    std::fs::write(&bad, "pilot:wrong-Q7-secret\n").unwrap();
    ok(
        &env,
        &[
            "webhook",
            "add",
            "bad",
            &nats.url(),
            "--nats-user-file",
            bad.to_str().unwrap(),
        ],
    );
    env.emit("ok.two", None);
    let bad_err = || {
        env.info()["webhooks"]
            .as_array()
            .and_then(|a| a.iter().find(|w| w["name"] == "bad").cloned())
            .map(|w| w["last_error"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert!(
        wait_until(WAIT, || bad_err().contains("authorization")),
        "{}",
        env.info()
    );
    for text in [env.log(), env.info().to_string(), env.read_config()] {
        assert!(!text.contains("pw-Z9q8-secret"), "{text}");
        assert!(!text.contains("wrong-Q7-secret"), "{text}");
    }
    assert!(env.read_config().contains("nats_user_file"));
}

#[test]
fn bad_urls_and_templates_are_refused_at_add() {
    let env = Env::new();
    for (args, want) in [
        (
            vec![
                "webhook",
                "add",
                "a",
                "nats://127.0.0.1:4222",
                "--subject",
                "pilot.{evnt}",
            ],
            "unknown placeholder",
        ),
        (
            vec![
                "webhook",
                "add",
                "a",
                "nats://127.0.0.1:4222",
                "--subject",
                "pilot.*.{event}",
            ],
            "wildcards",
        ),
        (
            vec!["webhook", "add", "a", "nats://u:p@127.0.0.1:4222"],
            "no user or password",
        ),
        (
            vec!["webhook", "add", "a", "nats://169.254.169.254:4222"],
            "blocked",
        ),
        (
            vec![
                "webhook",
                "add",
                "a",
                "nats://127.0.0.1:4222",
                "--header",
                "X-A: 1",
            ],
            "HTTP(S) webhooks",
        ),
        (
            vec![
                "webhook",
                "add",
                "a",
                "http://127.0.0.1:9/x",
                "--subject",
                "a.{event}",
            ],
            "NATS endpoints",
        ),
    ] {
        let run = env.ctl_json(&args);
        assert_ne!(run.code, 0, "{args:?}");
        let text = format!("{}{}", run.stdout, run.stderr);
        assert!(text.contains(want), "{args:?}: {text}");
    }
    let run = env.ctl_json(&[
        "webhook",
        "add",
        "a",
        "nats://127.0.0.1:4222,127.0.0.1:4223",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        env.config()["webhooks"]["a"]["url"],
        "nats://127.0.0.1:4222,127.0.0.1:4223"
    );
}

#[test]
fn a_tls_endpoint_verifies_the_server_with_its_ca_file() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let tmp = tempfile::tempdir().unwrap();
    // A CA, a server certificate it signs for 127.0.0.1, and an unrelated CA.
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let (good, other) = (ca("pilot test CA"), ca("another CA"));
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &good)
        .unwrap();
    let write = |name: &str, text: String| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good_ca = write("ca.pem", good.pem());
    let other_ca = write("other-ca.pem", other.pem());
    let cert = write("server.pem", server.pem());
    let key = write("server.key", server_key.serialize_pem());
    // TLS for pilot; the test's own reader may still connect in the clear.
    let nats = NatsServer::with_config(&format!(
        "tls {{ cert_file: {cert:?}, key_file: {key:?} }}\nallow_non_tls: true\n"
    ));
    nats.create_stream("SECURE", &["secure.>"]);
    let env = Env::new();
    env.start(&FAST);
    let url = nats.url().replace("nats://", "tls://");
    ok(
        &env,
        &[
            "webhook",
            "add",
            "secure",
            &url,
            "--events",
            "t.*",
            "--subject",
            "secure.{event}",
            "--nats-ca-file",
            &good_ca,
        ],
    );
    ok(
        &env,
        &[
            "webhook",
            "add",
            "wrongca",
            &url,
            "--events",
            "t.*",
            "--subject",
            "secure.{event}",
            "--nats-ca-file",
            &other_ca,
        ],
    );
    for i in 0..3 {
        env.emit("t.x", Some(&format!("{{\"i\":{i}}}")));
    }
    assert!(
        wait_until(WAIT, || nats.count("SECURE") == 3),
        "{} messages; log:\n{}",
        nats.count("SECURE"),
        env.log()
    );
    let msgs = nats.messages("SECURE");
    assert!(msgs.iter().all(|m| m.subject == "secure.t.x"), "{msgs:?}");
    // The endpoint that trusts another CA refuses the server: nothing from it reached the
    // stream, and its error says why.
    let endpoint = |name: &str| {
        env.info()["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .cloned()
            .unwrap()
    };
    assert!(wait_until(WAIT, || endpoint("wrongca")["last_error"].is_string()));
    let w = endpoint("wrongca");
    assert_eq!(w["delivered"], 0, "{w}");
    let error = w["last_error"].as_str().unwrap().to_lowercase();
    assert!(
        error.contains("cert") || error.contains("tls") || error.contains("issuer"),
        "{w}"
    );
    assert_eq!(endpoint("secure")["delivered"], 3);
}
