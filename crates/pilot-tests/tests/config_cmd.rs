//! `pilotctl config`: shows config.json and edits it in place, checking known keys like
//! set-webhook does, keeping every other key in its order, never touching a corrupt file, and
//! saying what a running daemon has not taken.

use pilot_tests::Env;
use serde_json::json;

#[test]
fn with_no_flags_it_prints_the_file() {
    let env = Env::new();
    let data = env.ctl_json(&["config"]).data();
    assert_eq!(data["config"], json!({}));
    assert_eq!(data["file"], env.config_path().display().to_string());
    assert!(!env.config_path().exists(), "viewing creates nothing");
    env.write_config(r#"{"registry":"34.71.57.205:9000","node_id":5}"#);
    let run = env.ctl(&["config"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "{\n  \"registry\": \"34.71.57.205:9000\",\n  \"node_id\": 5\n}\n"
    );
}

#[test]
fn set_and_unset_keep_other_keys_in_order() {
    let env = Env::new();
    env.write_config(
        r#"{"registry":"34.71.57.205:9000","beacon":"34.71.57.205:9001","hostname":"n1","extra":{"x":[1]}}"#,
    );
    let run = env.ctl(&[
        "config",
        "--set",
        "node_id=5",
        "--set",
        "webhook=http://localhost:8080/events",
        "--set",
        r#"webhook_settings={"events":["handshake.*"],"batch_max":10}"#,
        "--set",
        "hostname=n2",
        "--set",
        r#"label="42""#,
        "--unset",
        "beacon",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("set node_id = 5\n"), "{run:?}");
    assert!(run.stdout.contains("unset beacon\n"), "{run:?}");
    assert!(
        !run.stdout.contains("note:"),
        "no daemon, nothing pending: {run:?}"
    );
    let cfg = env.config();
    let keys: Vec<&String> = cfg.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "registry",
            "hostname",
            "extra",
            "node_id",
            "webhook",
            "webhook_settings",
            "label"
        ]
    );
    assert_eq!(cfg["node_id"], 5);
    assert_eq!(cfg["hostname"], "n2");
    assert_eq!(cfg["label"], "42", "a quoted value stays a string");
    assert_eq!(cfg["extra"], json!({"x": [1]}));
    assert_eq!(cfg["webhook_settings"]["batch_max"], 10);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.config_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // What config writes, the daemon reads.
    let started = env.start(&[]);
    assert_eq!(started["node_id"], 5);
    let info = env.info();
    assert_eq!(
        info["webhook"]["settings"]["events"],
        json!(["handshake.*"])
    );
    env.stop();
}

#[test]
fn bad_values_and_corrupt_files_change_nothing() {
    let env = Env::new();
    env.write_config(r#"{"registry":"r","node_id":1}"#);
    let before = env.read_config();
    for (set, needle) in [
        ("webhook=http://169.254.169.254/latest", "blocked"),
        ("webhook=ftp://x/", "scheme"),
        (r#"webhook_settings={"events":["a*"]}"#, "a*"),
        (r#"webhook_settings={"batch_max":0}"#, "batch max"),
        ("node_id=-1", "node_id"),
        ("backoff=soon", "soon"),
        ("queue_size=0", "queue_size"),
        ("novalue", "KEY=VALUE"),
    ] {
        let run = env.ctl_json(&["config", "--set", "node_id=2", "--set", set]);
        assert_eq!(run.error_code(), "invalid_argument", "{set}");
        assert!(run.stderr.contains(needle), "{set}: {run:?}");
        assert_eq!(env.read_config(), before, "{set} changed the file");
    }
    let missing = env.home.join("no-token");
    let run = env.ctl_json(&[
        "config",
        "--set",
        &format!(
            r#"webhook_settings={{"bearer_token_file":"{}"}}"#,
            missing.display()
        ),
    ]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert_eq!(env.read_config(), before);

    env.write_config("{\"webhook\": ");
    for args in [
        &["config"][..],
        &["config", "--set", "node_id=3"],
        &["config", "--unset", "x"],
    ] {
        let run = env.ctl_json(args);
        assert_eq!(run.error_code(), "config_error", "{args:?}");
        assert!(
            run.stderr
                .contains(&env.config_path().display().to_string()),
            "{run:?}"
        );
        assert_eq!(env.read_config(), "{\"webhook\": ");
    }
}

#[test]
fn a_running_daemon_is_told_about_honestly() {
    let env = Env::new();
    env.start(&[]);
    let pid = env.info()["pid"].clone();

    let run = env.ctl(&["config", "--set", "node_id=9", "--set", "registry=r"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "note: the running daemon (pid {pid}) does not re-read config.json; restart it to apply node_id"
        )),
        "{run:?}"
    );
    assert!(
        !run.stdout.contains("registry\n"),
        "unknown keys are not pending: {run:?}"
    );
    assert_eq!(
        env.info()["node_id"],
        0,
        "the daemon indeed kept its node id"
    );

    let data = env
        .ctl_json(&[
            "config",
            "--set",
            "webhook=http://localhost:9/events",
            "--unset",
            "node_id",
        ])
        .data();
    assert_eq!(data["daemon_pid"], pid);
    assert_eq!(
        data["pending"],
        json!([{"key": "webhook", "applies_on": "set-webhook"}, {"key": "node_id", "applies_on": "restart"}])
    );
    assert_eq!(data["unset"], json!(["node_id"]));
    let same = env
        .ctl_json(&["config", "--set", "webhook=http://localhost:9/events"])
        .data();
    assert_eq!(
        same["pending"],
        json!([]),
        "an unchanged value is not pending"
    );
    env.stop();
}
