//! pilotctl's own checks: persistence, validation, corrupt config, usage errors that change
//! nothing (for every command), outputs.

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

/// Every command that reads config.json (all but `webhook secret show` and `listen`).
const READS_CONFIG: &[&[&str]] = &[
    &["set-webhook", "http://localhost:8080/events"],
    &[
        "set-webhook",
        "http://localhost:8080/events",
        "--generate-secret",
    ],
    &["clear-webhook"],
    &["daemon", "start"],
    &["daemon", "stop"],
    &["daemon", "status"],
    &["info"],
    &["emit", "test.event"],
    &["events", "--count", "1"],
    &["webhook", "deliveries"],
    &["webhook", "test"],
    &["webhook", "redeliver", "1"],
    &["webhook", "secret", "rotate"],
];

#[test]
fn a_corrupt_config_is_reported_and_never_overwritten() {
    let env = Env::new();
    for bad in [
        "{\"webhook\": ",
        "",
        "   \n",
        "[1, 2]",
        "42",
        "\"text\"",
        "null",
        "\u{feff}{}",
        "{\"webhook\": \"http://a/\", \"webhook\": \"http://b/\"}",
    ] {
        env.write_config(bad);
        for args in READS_CONFIG {
            let run = env.ctl_json(args);
            assert_eq!(
                run.error_code(),
                "config_error",
                "{bad:?} {args:?}: {run:?}"
            );
            assert!(run.stderr.contains("config.json"), "{run:?}");
            assert_eq!(env.read_config(), bad, "{args:?} touched the file");
            assert!(!env.secret_path().exists(), "{args:?} wrote a secret");
        }
        // The daemon binary itself, started by hand.
        let out = env.command(&env.daemon_bin()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains("config.json"),
            "{err}"
        );
        assert_eq!(env.read_config(), bad, "pilot-daemon touched the file");
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

/// Every command path `pilotctl help` lists, groups included (`daemon`, `daemon start`,
/// `webhook secret rotate`, ...), found by reading the help of each group.
fn command_paths(env: &Env, prefix: &[String]) -> Vec<Vec<String>> {
    let mut args = prefix.to_vec();
    args.push("--help".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let help = env.ctl(&args).stdout;
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect();
    let mut paths = Vec::new();
    for name in names {
        let mut path = prefix.to_vec();
        path.push(name);
        paths.push(path.clone());
        paths.extend(command_paths(env, &path));
    }
    paths
}

/// What a usage error must leave alone: the home's files (config and secret byte for byte)
/// and the daemon's state.
fn snapshot(env: &Env) -> (Vec<String>, String, String, serde_json::Value) {
    let mut files: Vec<String> = std::fs::read_dir(&env.pilot_home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let info = env.info();
    let state = json!({
        "pid": info["pid"],
        "last_event_id": info["bus"]["last_event_id"],
        "subscribers": info["bus"]["subscribers"].as_array().map(Vec::len),
        "url": info["webhook"]["url"],
        "settings": info["webhook"]["settings"],
        "signatures": info["webhook"]["signatures"],
    });
    (
        files,
        env.read_config(),
        std::fs::read_to_string(env.secret_path()).unwrap(),
        state,
    )
}

#[test]
fn usage_errors_exit_nonzero_and_change_nothing() {
    let env = Env::new();
    env.write_config("{\"registry\": \"r:1\"}");
    env.ctl_json(&[
        "set-webhook",
        "http://127.0.0.1:9/events",
        "--generate-secret",
    ])
    .data();
    env.start(&[]);
    let before = snapshot(&env);

    // Missing and malformed arguments, command by command.
    let table: &[&[&str]] = &[
        &[],
        &["bogus-command"],
        &["--socket"],
        &["daemon"],
        &["daemon", "start", "--node-id", "not-a-number"],
        &["daemon", "start", "--node-id", "-1"],
        &["daemon", "start", "--backoff", "fast"],
        &["daemon", "start", "--log-format", "xml"],
        &["daemon", "start", "--queue-size", "many"],
        &["daemon", "start", "--webhook"],
        &["daemon", "start", "--batch-max", "0"],
        &["daemon", "status", "--check", "now"],
        &["set-webhook"],
        &["set-webhook", "http://127.0.0.1:9/x", "--batch-max", "zero"],
        &["set-webhook", "http://127.0.0.1:9/x", "--concurrency", "0"],
        &[
            "set-webhook",
            "http://127.0.0.1:9/x",
            "--batch-wait",
            "later",
        ],
        &["set-webhook", "http://127.0.0.1:9/x", "--secret"],
        &[
            "set-webhook",
            "http://127.0.0.1:9/x",
            "--secret",
            "a",
            "--no-secret",
        ],
        &["set-webhook", "not a url"],
        &["clear-webhook", "http://127.0.0.1:9/x"],
        &["webhook"],
        &["webhook", "secret"],
        &["webhook", "secret", "rotate", "--grace", "forever"],
        &["webhook", "secret", "rotate", "--grace"],
        &["webhook", "deliveries", "--limit", "some"],
        &["webhook", "redeliver"],
        &["webhook", "redeliver", "abc"],
        &["webhook", "redeliver", "-1"],
        &["webhook", "test", "now"],
        &["info", "--verbose"],
        &["emit"],
        &["emit", "a.b", "--data"],
        &["emit", "a.b", "--file"],
        &["emit", "a.b", "--data", "{}", "--file", "/dev/null"],
        &["emit", "a.b", "--data", "{broken"],
        &["emit", "NoDots"],
        &["events", "--count", "-3"],
        &["events", "--count", "x"],
        &["events", "--timeout", "soon"],
        &["listen", "--count", "x"],
        &["listen", "--addr"],
    ];
    // And for every command there is (found from the help, so new ones are covered too): an
    // unknown flag, and arguments it does not take.
    let paths = command_paths(&env, &[]);
    assert!(paths.len() >= 15, "expected every command, found {paths:?}");
    let mut generic: Vec<Vec<String>> = Vec::new();
    for path in &paths {
        for extra in [&["--no-such-flag"][..], &["extra", "args", "here"][..]] {
            let mut args = path.clone();
            args.extend(extra.iter().map(|s| s.to_string()));
            generic.push(args);
        }
    }
    eprintln!(
        "{} commands; {} table rows and {} generic cases, each in text and JSON mode",
        paths.len(),
        table.len(),
        generic.len()
    );
    let all = table
        .iter()
        .map(|a| a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .chain(generic);
    for args in all {
        for json in [false, true] {
            let mut full: Vec<&str> = if json { vec!["--json"] } else { vec![] };
            full.extend(args.iter().map(String::as_str));
            let run = env.ctl(&full);
            assert!(
                run.code == 1 || run.code == 2,
                "{full:?} should be a usage error: {run:?}"
            );
            assert!(
                !run.stderr.trim().is_empty(),
                "{full:?}: no message: {run:?}"
            );
            assert_eq!(snapshot(&env), before, "{full:?} changed something");
        }
    }
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
