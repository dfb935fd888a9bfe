//! pilotctl without a daemon: persistence, validation, corrupt config, outputs.

use pilot_tests::Env;
use serde_json::json;

#[test]
fn set_webhook_persists_and_keeps_unknown_keys() {
    let env = Env::new();
    env.write_config(
        r#"{"registry": "34.71.57.205:9000", "beacon": "34.71.57.205:9001", "hostname": "n1", "custom": {"a": [1, 2]}}"#,
    );
    let data = env
        .ctl_json(&["set-webhook", "http://localhost:8080/events"])
        .data();
    assert_eq!(
        data,
        json!({"webhook": "http://localhost:8080/events", "applied": false})
    );
    let cfg = env.config();
    assert_eq!(cfg["webhook"], "http://localhost:8080/events");
    assert_eq!(cfg["registry"], "34.71.57.205:9000");
    assert_eq!(cfg["beacon"], "34.71.57.205:9001");
    assert_eq!(cfg["hostname"], "n1");
    assert_eq!(cfg["custom"], json!({"a": [1, 2]}));
    let keys: Vec<&String> = cfg.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["registry", "beacon", "hostname", "custom", "webhook"]
    );
    assert!(
        env.read_config().contains("\n  \"registry\": "),
        "pretty, 2-space"
    );
}

#[test]
fn set_webhook_text_output() {
    let env = Env::new();
    let run = env.ctl(&["set-webhook", "http://localhost:8080/events"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "webhook set: http://localhost:8080/events\nwill take effect on next daemon start\n"
    );
    let run = env.ctl(&["clear-webhook"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "webhook cleared\nwill take effect on next daemon start\n"
    );
}

#[test]
fn clear_webhook_removes_only_the_webhook_key() {
    let env = Env::new();
    env.write_config(
        r#"{"registry": "r:1", "webhook": "http://localhost:8080/events", "beacon": "b:2"}"#,
    );
    let data = env.ctl_json(&["clear-webhook"]).data();
    assert_eq!(data, json!({"webhook": "", "applied": false}));
    assert_eq!(env.config(), json!({"registry": "r:1", "beacon": "b:2"}));
}

#[test]
fn files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.ctl_json(&["set-webhook", "http://localhost:8080/events"])
        .data();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.pilot_home), 0o700);
    assert_eq!(mode(&env.config_path()), 0o600);
}

#[test]
fn invalid_urls_are_rejected_and_config_is_untouched() {
    let env = Env::new();
    let original = "{\n  \"webhook\": \"http://localhost:1/x\"\n}\n";
    env.write_config(original);
    for bad in [
        "not a url",
        "ftp://example.com/x",
        "localhost:8080",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/x",
        "http://224.0.0.5/x",
        "http://0.0.0.0:8080/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.GOOGLE.INTERNAL./x",
        "http://ec2.internal/x",
        "http://instance-data-service.ec2.internal/",
        "http://metadata.azure.com/x",
        "http://metadata.google.com/x",
    ] {
        let run = env.ctl_json(&["set-webhook", bad]);
        assert_eq!(run.error_code(), "invalid_argument", "{bad}: {run:?}");
        assert_eq!(env.read_config(), original, "{bad} changed the config");
    }
    let run = env.ctl(&["set-webhook", "http://169.254.169.254/"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    assert!(run.stderr.contains("169.254.169.254"), "{run:?}");
}

#[test]
fn private_and_local_addresses_stay_allowed() {
    let env = Env::new();
    for ok in [
        "http://localhost:8080/events",
        "http://127.0.0.1:9000/",
        "http://10.1.2.3/hook",
        "http://192.168.1.10:8080/x",
        "https://hooks.example.com/pilot",
        "http://[::1]:8080/",
    ] {
        env.ctl_json(&["set-webhook", ok]).data();
    }
}

#[test]
fn a_corrupt_config_is_reported_and_never_overwritten() {
    let env = Env::new();
    for bad in ["{\"webhook\": ", "", "[1, 2]", "42"] {
        env.write_config(bad);
        for args in [
            vec!["set-webhook", "http://localhost:8080/events"],
            vec!["clear-webhook"],
            vec!["daemon", "start"],
            vec!["daemon", "status"],
        ] {
            let run = env.ctl_json(&args);
            assert_eq!(
                run.error_code(),
                "config_error",
                "{bad:?} {args:?}: {run:?}"
            );
            assert!(run.stderr.contains("config.json"), "{run:?}");
            assert_eq!(env.read_config(), bad, "{args:?} touched the file");
        }
    }
    assert!(
        env.pid().is_none(),
        "no daemon may start on a corrupt config"
    );
}

#[test]
fn commands_that_need_a_daemon_say_not_running() {
    let env = Env::new();
    for args in [
        vec!["info"],
        vec!["daemon", "stop"],
        vec!["emit", "test.event"],
        vec!["events", "--count", "1"],
    ] {
        let run = env.ctl_json(&args);
        assert_eq!(run.error_code(), "not_running", "{args:?}: {run:?}");
    }
    let status = env.ctl_json(&["daemon", "status"]).data();
    assert_eq!(status["running"], false);
    assert_eq!(status["responsive"], false);
    let run = env.ctl(&["daemon", "status", "--check"]);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
}

#[test]
fn usage_errors_exit_nonzero_and_change_nothing() {
    let env = Env::new();
    env.write_config("{\"registry\": \"r:1\"}");
    for args in [
        vec!["set-webhook"],
        vec!["emit"],
        vec!["bogus-command"],
        vec!["daemon", "start", "--node-id", "not-a-number"],
        vec!["daemon", "start", "--backoff", "fast"],
        vec!["events", "--count", "-3"],
    ] {
        let run = env.ctl(&args);
        assert!(
            run.code == 1 || run.code == 2,
            "{args:?} should be a usage error: {run:?}"
        );
        assert_eq!(env.read_config(), "{\"registry\": \"r:1\"}");
    }
    assert!(env.pid().is_none());
}

#[test]
fn emit_checks_its_arguments_before_connecting() {
    let env = Env::new();
    for (args, what) in [
        (vec!["emit", "NoDots"], "name"),
        (vec!["emit", "a.b", "--data", "[1,2]"], "object"),
        (vec!["emit", "a.b", "--data", "{broken"], "JSON"),
    ] {
        let run = env.ctl_json(&args);
        assert_eq!(run.error_code(), "invalid_argument", "{args:?}: {run:?}");
        assert!(
            run.stderr.to_lowercase().contains(&what.to_lowercase()),
            "{what}: {run:?}"
        );
    }
}

#[test]
fn daemon_start_rejects_a_bad_webhook_before_starting() {
    let env = Env::new();
    let run = env.ctl_json(&["daemon", "start", "--webhook", "http://169.254.169.254/"]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(env.pid().is_none());
    assert!(!env.socket_path().exists());
}
