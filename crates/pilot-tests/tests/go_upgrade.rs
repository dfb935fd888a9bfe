//! Switching from the Go daemon: a home as the Go daemon leaves it (config.json with
//! `registry`, `beacon` and `hostname` but no `webhook`, and the URL in `webhook_url`) starts
//! with `pilotctl daemon start` unedited and delivers to that URL; the unknown keys are kept;
//! `set-webhook` and `clear-webhook` migrate the file into config.json once; a URL in the file
//! that the policy refuses is reported in the log and not used.

use std::time::Duration;

use pilot_tests::{wait_until, Env, Receiver};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// The daemon log once it holds every one of `needles` (lines reach the file through a
/// writer thread); panics with the log when it does not within [`WAIT`].
fn log_with(env: &Env, needles: &[&str]) -> String {
    let has = || {
        let log = env.log();
        needles.iter().all(|n| log.contains(n))
    };
    let log = if wait_until(WAIT, has) {
        env.log()
    } else {
        String::new()
    };
    assert!(!log.is_empty(), "{needles:?} not in the log: {}", env.log());
    log
}

/// The running daemon's webhook URL, as `info` shows it ("" for none).
fn webhook_url(env: &Env) -> String {
    let info = env.info();
    info["webhook"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// config.json as the Go daemon writes it: its own keys, no `webhook`.
const GO_CONFIG: &str = r#"{
  "registry": "34.71.57.205:9000",
  "beacon": "34.71.57.205:9001",
  "hostname": "agent-7"
}"#;

fn go_home(env: &Env, url: &str) -> std::path::PathBuf {
    env.write_config(GO_CONFIG);
    let file = env.config_path().with_file_name("webhook_url");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    file
}

#[test]
fn a_home_left_by_the_go_daemon_delivers_to_its_webhook_url() {
    let env = Env::new();
    let rx = Receiver::start();
    let file = go_home(&env, &rx.url());

    // `daemon start` reports the webhook it will use, as Pilot's does.
    let started = env.ctl_json(&["daemon", "start"]).data();
    assert_eq!(started["webhook"], rx.url(), "{started}");
    rx.wait_for(1, WAIT);
    env.emit("agent.custom", Some(r#"{"x":1}"#));
    let got = rx.wait_for(2, WAIT);
    assert_eq!(got[0].event(), "daemon.started");
    assert_eq!(got[1].event(), "agent.custom");
    assert_eq!(got[1].json()["data"]["x"], 1);
    // The payload is Pilot's.
    let keys: Vec<String> = got[1].json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["event_id", "event", "node_id", "timestamp", "data"]);
    assert_eq!(webhook_url(&env), rx.url());

    // The log says where the webhook came from.
    log_with(&env, &["using the webhook URL in", "webhook_url"]);
    // Nothing was edited: config.json is the Go daemon's, the file is still there.
    assert_eq!(env.read_config(), GO_CONFIG);
    assert!(file.exists());

    // set-webhook migrates once: the webhook goes into config.json (the Go keys kept), the
    // file is removed and the command says so; the output is Pilot's.
    let rx2 = Receiver::start();
    let run = env.ctl_json(&["set-webhook", &rx2.url()]);
    let out = run.data();
    assert_eq!(out["webhook"], rx2.url());
    assert_eq!(out["applied"], true);
    assert!(
        run.stderr
            .contains("note: moved the webhook into config.json and removed")
            && run.stderr.contains("webhook_url"),
        "{run:?}"
    );
    assert!(!file.exists());
    let config = env.config();
    for (key, want) in [
        ("registry", "34.71.57.205:9000"),
        ("beacon", "34.71.57.205:9001"),
        ("hostname", "agent-7"),
    ] {
        assert_eq!(config[key], want, "{config}");
    }
    assert_eq!(config["webhook"], rx2.url());
    env.emit("agent.after", None);
    assert_eq!(rx2.wait_for(1, WAIT)[0].event(), "agent.after");
    env.stop();
}

#[test]
fn clear_webhook_removes_the_go_file_so_the_webhook_stays_cleared() {
    let env = Env::new();
    let rx = Receiver::start();
    let file = go_home(&env, &rx.url());
    env.ctl_json(&["daemon", "start"]).data();
    rx.wait_for(1, WAIT);

    let run = env.ctl_json(&["clear-webhook"]);
    let out = run.data();
    assert_eq!(out["webhook"], "");
    assert_eq!(out["applied"], true);
    assert!(run.stderr.contains("note: removed"), "{run:?}");
    assert!(!file.exists());
    env.stop();

    // The next start has no webhook: the file did not come back into effect.
    let started = env.ctl_json(&["daemon", "start"]).data();
    assert_eq!(started["webhook"], "");
    assert_eq!(webhook_url(&env), "");
    assert_eq!(env.config()["registry"], "34.71.57.205:9000");
    env.stop();
    assert_eq!(rx.count(), 1, "only the first run's daemon.started");
}

#[test]
fn a_refused_url_in_the_go_file_is_reported_and_not_used() {
    let env = Env::new();
    // Cloud metadata: refused by every policy.
    let file = go_home(&env, "http://169.254.169.254/latest/meta-data");
    let started = env.ctl_json(&["daemon", "start"]).data();
    assert_eq!(started["webhook"], "", "{started}");
    assert_eq!(webhook_url(&env), "");
    let log = log_with(&env, &["not using the webhook URL in", "169.254.169.254"]);
    assert!(log.contains("WARN"), "reported as a warning: {log}");
    assert!(file.exists(), "left for the user to fix");
    env.stop();

    // Private networks denied by config: a loopback URL is refused the same way.
    let env = Env::new();
    let rx = Receiver::start();
    go_home(&env, &rx.url());
    let mut config: Value = serde_json::from_str(GO_CONFIG).unwrap();
    config["deny_private_networks"] = true.into();
    env.write_config(&config.to_string());
    env.ctl_json(&["daemon", "start"]).data();
    assert_eq!(webhook_url(&env), "");
    log_with(&env, &["not using the webhook URL in"]);
    env.stop();
    assert_eq!(rx.count(), 0);
}

#[test]
fn config_json_wins_over_the_go_file() {
    let env = Env::new();
    let rx = Receiver::start();
    let stale = Receiver::start();
    go_home(&env, &stale.url());
    let mut config: Value = serde_json::from_str(GO_CONFIG).unwrap();
    config["webhook"] = rx.url().into();
    env.write_config(&config.to_string());
    let started = env.ctl_json(&["daemon", "start"]).data();
    assert_eq!(started["webhook"], rx.url());
    rx.wait_for(1, WAIT);
    log_with(&env, &["is ignored: config.json key"]);
    env.stop();
    assert_eq!(stale.count(), 0);
}
