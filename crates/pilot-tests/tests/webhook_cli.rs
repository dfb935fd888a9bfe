//! `set-webhook` settings and secrets on disk: what config.json and the secret file hold, that
//! every bad flag changes nothing, that `clear-webhook` keeps the secret, that the durable and
//! spool flags persist and show in `info`, and that a malformed settings object or secret file
//! stops `daemon start` with an error naming the file.

use std::os::unix::fs::PermissionsExt;

use pilot_tests::Env;
use serde_json::json;

const URL: &str = "http://localhost:8080/events";

#[test]
fn settings_are_persisted_whole_and_replaced_by_the_next_set_webhook() {
    let env = Env::new();
    env.write_config(r#"{"registry":"r:9000","hostname":"n1"}"#);
    let d = env
        .ctl_json(&[
            "set-webhook",
            URL,
            "--durable",
            "--max-spool-bytes",
            "1MiB",
            "--discard-after",
            "1h",
            "--max-backoff",
            "30s",
            "--events",
            "a.*",
            "--header",
            "X-Key: hunter2",
            "--batch-max",
            "50",
            "--batch-wait",
            "20ms",
            "--concurrency",
            "2",
        ])
        .data();
    assert_eq!(d["applied"], false);
    assert_eq!(d["settings"]["headers"], json!(["X-Key: ***"]));
    let config = env.config();
    assert_eq!(
        config,
        json!({
            "registry": "r:9000",
            "hostname": "n1",
            "webhook": URL,
            "webhook_settings": {
                "events": ["a.*"],
                "durable": true,
                "headers": ["X-Key: hunter2"],
                "batch_max": 50,
                "batch_wait": "20ms",
                "concurrency": 2,
                "max_spool_bytes": 1048576,
                "discard_after": "1h",
                "max_backoff": "30s"
            }
        })
    );
    let mode = std::fs::metadata(env.config_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The next set-webhook replaces the whole object; defaults leave no key.
    env.ctl_json(&["set-webhook", URL, "--exclude", "b.c"])
        .data();
    assert_eq!(
        env.config()["webhook_settings"],
        json!({"exclude": ["b.c"]})
    );
    env.ctl_json(&["set-webhook", URL]).data();
    assert!(env.config().get("webhook_settings").is_none());
}

#[test]
fn durable_and_spool_flags_show_in_info_and_daemon_start_does_not_persist_them() {
    let env = Env::new();
    let rx = pilot_tests::Receiver::start();
    let url = rx.url();
    let url = url.as_str();
    env.ctl_json(&[
        "set-webhook",
        url,
        "--durable",
        "--max-spool-bytes",
        "2MiB",
        "--discard-after",
        "2h",
    ])
    .data();
    env.start(&[]);
    let s = env.info()["webhook"]["settings"].clone();
    assert_eq!(s["durable"], true, "{s}");
    assert_eq!(s["max_spool_bytes"], 2 * 1024 * 1024);
    assert_eq!(s["discard_after"], "2h");
    let text = pilot_tests::squeeze(&env.ctl(&["info"]).stdout);
    assert!(text.contains("durable: yes"), "{text}");
    assert!(text.contains("max spool bytes: 2097152"), "{text}");
    assert!(text.contains("discard after: 2h"), "{text}");
    env.stop();

    env.ctl_json(&["set-webhook", url]).data();
    let before = env.read_config();
    env.start(&["--durable", "--max-backoff", "1m", "--batch-max", "5"]);
    let s = env.info()["webhook"]["settings"].clone();
    assert_eq!(s["durable"], true, "{s}");
    assert_eq!(s["max_backoff"], "1m");
    assert_eq!(s["batch_max"], 5);
    assert_eq!(env.read_config(), before);
}

#[test]
fn bad_flags_change_nothing() {
    let env = Env::new();
    env.write_config(r#"{"webhook":"http://localhost:1/x"}"#);
    let before = env.read_config();
    let tmp = env.tmp.path();
    let missing = tmp.join("missing").display().to_string();
    let bad: &[&[&str]] = &[
        &["set-webhook", URL, "--events", "a*"],
        &["set-webhook", URL, "--exclude", ""],
        &["set-webhook", URL, "--header", "no colon"],
        &["set-webhook", URL, "--header", "Bad Name: v"],
        &["set-webhook", URL, "--bearer-token-file", &missing],
        &["set-webhook", URL, "--basic-auth-file", &missing],
        &["set-webhook", URL, "--secret-file", &missing],
        &["set-webhook", URL, "--secret", "whsec_!!notbase64"],
        &["set-webhook", URL, "--secret", ""],
        &["set-webhook", URL, "--batch-max", "0"],
        &["set-webhook", URL, "--concurrency", "-1"],
        &["set-webhook", URL, "--max-spool-bytes", "lots"],
        &["set-webhook", URL, "--discard-after", "soon"],
        &["set-webhook", URL, "--secret", "a", "--generate-secret"],
        &["set-webhook", URL, "--generate-secret", "--no-secret"],
        &[
            "set-webhook",
            URL,
            "--bearer-token-file",
            "a",
            "--basic-auth-file",
            "b",
        ],
        &["set-webhook", "ftp://x/", "--generate-secret"],
    ];
    for args in bad {
        let run = env.ctl_json(args);
        assert_eq!(run.error_code(), "invalid_argument", "{args:?}: {run:?}");
        assert_eq!(env.read_config(), before, "{args:?} changed config.json");
        assert!(!env.secret_path().exists(), "{args:?} wrote a secret");
        // Text mode: exit 1 too, and nothing on stdout.
        let text = env.ctl(args);
        assert_eq!(text.code, 1, "{args:?}: {text:?}");
        assert!(text.stdout.is_empty(), "{args:?}: {text:?}");
    }
}

#[test]
fn a_corrupt_secret_file_is_never_overwritten_and_stops_the_daemon_start() {
    let env = Env::new();
    std::fs::create_dir_all(&env.pilot_home).unwrap();
    std::fs::write(env.secret_path(), "{not json").unwrap();
    let run = env.ctl_json(&["set-webhook", URL, "--secret", "x"]);
    assert_eq!(run.error_code(), "config_error");
    assert!(run.stderr.contains("webhook_secret.json"), "{}", run.stderr);
    assert!(!env.config_path().exists(), "config.json was written");
    assert_eq!(
        std::fs::read_to_string(env.secret_path()).unwrap(),
        "{not json"
    );
    assert_eq!(
        env.ctl_json(&["webhook", "secret", "show"]).error_code(),
        "config_error"
    );
    assert_eq!(
        env.ctl_json(&["webhook", "secret", "rotate"]).error_code(),
        "config_error"
    );
    let run = env.ctl_json(&["daemon", "start"]);
    assert_eq!(run.error_code(), "start_failed");
    assert!(run.stderr.contains("webhook_secret.json"), "{}", run.stderr);
}

#[test]
fn a_malformed_settings_object_stops_the_daemon_start_naming_the_file() {
    let env = Env::new();
    for bad in [
        r#"{"webhook_settings": {"events": ["a*"]}}"#,
        r#"{"webhook_settings": {"batch_wait": 5}}"#,
        r#"{"webhook_settings": {"retain": "soon"}}"#,
        r#"{"webhook_settings": {"retain_max_bytes": 4096}}"#,
        r#"{"webhook_settings": "durable"}"#,
    ] {
        env.write_config(bad);
        let run = env.ctl_json(&["daemon", "start"]);
        assert_eq!(run.error_code(), "start_failed", "{bad}");
        assert!(run.stderr.contains("config.json"), "{}", run.stderr);
        assert!(run.stderr.contains("webhook_settings"), "{}", run.stderr);
        assert_eq!(env.read_config(), bad);
    }
}

#[test]
fn clear_webhook_removes_url_and_settings_but_keeps_the_secret() {
    let env = Env::new();
    env.ctl_json(&["set-webhook", URL, "--events", "a.*", "--generate-secret"])
        .data();
    let secret_file = std::fs::read_to_string(env.secret_path()).unwrap();
    let d = env.ctl_json(&["clear-webhook"]).data();
    assert_eq!(d, json!({"webhook": "", "applied": false}));
    assert_eq!(env.config(), json!({}));
    assert_eq!(
        std::fs::read_to_string(env.secret_path()).unwrap(),
        secret_file
    );

    // rotate without a daemon: saved, applied later; show lists both.
    let d = env
        .ctl_json(&["webhook", "secret", "rotate", "--grace", "1h"])
        .data();
    assert_eq!(d["applied"], false);
    assert_eq!(d["grace"], "1h");
    let shown = env.ctl_json(&["webhook", "secret", "show"]).data();
    assert_eq!(shown["current"]["secret"], d["secret"]);
    assert_eq!(shown["previous"].as_array().unwrap().len(), 1);
    assert!(shown["previous"][0]["expires_at"].is_string());
    let text = env.ctl(&["webhook", "secret", "rotate"]).stdout;
    assert!(text.starts_with("new secret: whsec_"), "{text}");
    assert!(
        text.contains("will take effect on next daemon start"),
        "{text}"
    );
}

#[test]
fn passwords_and_query_tokens_are_masked_in_output_info_and_the_log() {
    let env = Env::new();
    let rx = pilot_tests::Receiver::start();
    let url = format!("http://user:pw0rd@{}/events?token=s3cr3t&v=2", rx.addr());
    let masked = format!("http://user:***@{}/events?token=***&v=***", rx.addr());
    let leaks = |text: &str| text.contains("pw0rd") || text.contains("s3cr3t");

    let run = env.ctl(&["set-webhook", &url]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!("webhook set: {masked}")),
        "{run:?}"
    );
    assert!(!leaks(&run.stdout) && !leaks(&run.stderr), "{run:?}");
    let d = env.ctl_json(&["set-webhook", &url]).data();
    assert_eq!(d["webhook"], masked.as_str());
    assert_eq!(
        env.config()["webhook"],
        url.as_str(),
        "the file keeps the URL"
    );

    let started = env.start(&["--log-level", "debug"]);
    assert_eq!(started["webhook"], masked.as_str());
    env.emit("a.b", None);
    let got = rx.wait_for(2, std::time::Duration::from_secs(10));
    assert!(got[1].header("authorization").is_some());
    let info = env.info();
    assert_eq!(info["webhook"]["url"], masked.as_str());
    let text = env.ctl(&["info"]).stdout;
    assert!(!leaks(&text), "{text}");
    let run = env.ctl(&["set-webhook", &url]);
    assert!(run.stdout.contains("applied to running daemon"), "{run:?}");
    assert!(!leaks(&run.stdout), "{run:?}");
    let deliveries = env.ctl(&["webhook", "deliveries"]).stdout;
    assert!(!leaks(&deliveries), "{deliveries}");
    env.stop();
    let log = env.log();
    assert!(
        log.contains("/events?token=***"),
        "the URL is logged, masked: {log}"
    );
    assert!(!leaks(&log), "{log}");
}

#[test]
fn a_url_without_a_scheme_is_refused_with_a_suggestion() {
    let env = Env::new();
    let run = env.ctl_json(&["set-webhook", "localhost:8080/x"]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(
        run.stderr.contains("did you mean http://localhost:8080/x?"),
        "{run:?}"
    );
    let run = env.ctl(&["set-webhook", "localhost:8080/x"]);
    assert!(
        run.stderr.contains("did you mean http://localhost:8080/x?"),
        "{run:?}"
    );
    assert!(!env.config_path().exists());
}

/// Every way a header or an Authorization can be wrong: refused by `set-webhook`, by `config
/// --set`, by the running daemon's `set_webhook` handler, and by the daemon's start; nothing is
/// written and the running webhook is kept.
#[test]
fn settings_are_checked_by_one_validation_before_anything_is_saved() {
    let env = Env::new();
    let rx = pilot_tests::Receiver::start();
    let good = rx.url();
    env.ctl_json(&["set-webhook", &good, "--header", "X-Team: blue"])
        .data();
    env.start(&[]);
    let before = env.read_config();
    let with_auth = format!("http://u:p@{}/events", rx.addr());
    let mut cases: Vec<(String, String)> = [
        "Host: x",
        "host: x",
        "webhook-id: x",
        "Webhook-Signature: v1,x",
        "X-Pilot-Signature-256: x",
        "Content-Type: text/plain",
        "Content-Length: 1",
        "Transfer-Encoding: chunked",
        "Connection: close",
        "Upgrade: h2c",
        "TE: trailers",
        "X-A: a\u{1}b",
        "X-A: a\u{7f}b",
    ]
    .iter()
    .map(|h| (good.clone(), h.to_string()))
    .collect();
    cases.push((with_auth.clone(), "Authorization: Bearer t".into()));
    for (url, header) in &cases {
        let run = env.ctl_json(&["set-webhook", url, "--header", header]);
        assert_eq!(run.error_code(), "invalid_argument", "{header:?}: {run:?}");
        assert_eq!(env.read_config(), before, "{header:?} wrote config.json");

        let settings = serde_json::json!({ "headers": [header] }).to_string();
        let mut runs = vec![env.ctl_json(&[
            "config",
            "--set",
            &format!("webhook={url}"),
            "--set",
            &format!("webhook_settings={settings}"),
        ])];
        if *url == good {
            // Wrong whatever the URL: refused alone too.
            runs.push(env.ctl_json(&["config", "--set", &format!("webhook_settings={settings}")]));
        }
        for run in runs {
            assert_eq!(run.error_code(), "invalid_argument", "{header:?}: {run:?}");
        }
        assert_eq!(env.read_config(), before, "config --set {header:?} wrote");
    }
    // Userinfo in the URL, set alone, against a settings object holding Authorization.
    env.ctl_json(&["set-webhook", &good, "--header", "Authorization: Bearer t"])
        .data();
    let kept = env.read_config();
    let run = env.ctl_json(&["config", "--set", &format!("webhook={with_auth}")]);
    assert_eq!(run.error_code(), "invalid_argument", "{run:?}");
    assert!(run.stderr.contains("user:password"), "{run:?}");
    assert_eq!(env.read_config(), kept);

    // The daemon's own handler refuses them too (a client other than pilotctl).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = pilot_ipc::Client::connect(&env.socket_path())
            .await
            .unwrap();
        for (url, header) in &cases {
            let settings = pilot_core::WebhookSettings {
                headers: vec![header.clone()],
                ..Default::default()
            };
            let err = client.set_webhook_with(url, settings).await.unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{header:?}: {err}");
        }
    });
    assert_eq!(
        env.info()["webhook"]["url"],
        good.as_str(),
        "the webhook is kept"
    );
    env.stop();

    // A config written by hand: the start fails, saying which key and why.
    for (config, why) in [
        (
            format!(r#"{{"webhook":"{good}","webhook_settings":{{"headers":["Host: x"]}}}}"#),
            "set by pilot",
        ),
        (
            format!(
                r#"{{"webhook":"{with_auth}","webhook_settings":{{"headers":["Authorization: Bearer t"]}}}}"#
            ),
            "user:password",
        ),
    ] {
        env.write_config(&config);
        let run = env.ctl(&["daemon", "start"]);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("webhook_settings"), "{run:?}");
        assert!(run.stderr.contains("config.json"), "{run:?}");
        assert!(run.stderr.contains(why), "{run:?}");
        assert_eq!(env.read_config(), config);
        assert!(env.pid().is_none());
    }
}

/// The dead-letter and retention settings of a named, in-memory webhook: `webhook add` saves
/// them, `webhook show` (text and `--json`) shows them from the running daemon, a restart keeps
/// them, `update` changes only what it is given and `--no-retain` removes retention; a bad value
/// is refused with a clear message and leaves config.json byte for byte as it was.
#[test]
fn dead_letter_and_retention_settings_are_saved_shown_and_kept_across_a_restart() {
    let env = Env::new();
    let rx = pilot_tests::Receiver::start();
    let url = rx.url();
    env.start(&[]);
    let d = env
        .ctl_json(&[
            "webhook",
            "add",
            "siem",
            &url,
            "--retain",
            "2h",
            "--dead-letter-max-bytes",
            "1MiB",
        ])
        .data();
    assert_eq!(d["applied"], true, "{d}");
    let want = json!({"dead_letter_max_bytes": 1048576, "retain": "2h"});
    assert_eq!(d["settings"], want);

    let shown = |env: &Env| env.ctl_json(&["webhook", "show", "siem"]).data();
    let s = shown(&env);
    assert_eq!(s["settings"], want, "{s}");
    assert_eq!(s["status"]["settings"], want, "the daemon runs them: {s}");
    assert_eq!(
        env.config()["webhooks"]["siem"],
        json!({"url": url, "dead_letter_max_bytes": 1048576, "retain": "2h"})
    );
    let text = pilot_tests::squeeze(&env.ctl(&["webhook", "show", "siem"]).stdout);
    assert!(text.contains("mode: memory"), "{text}");
    assert!(text.contains("dead letter max bytes: 1048576"), "{text}");
    assert!(text.contains("retain: 2h"), "{text}");

    env.stop();
    env.start(&[]);
    let s = shown(&env);
    assert_eq!(s["status"]["settings"], want, "kept across a restart: {s}");

    // Bad values: refused, nothing written, the running webhook kept.
    let before = env.read_config();
    let bad: &[(&[&str], &str)] = &[
        (
            &["webhook", "add", "other", &url, "--retain", "0s"],
            "must be longer than 0",
        ),
        (
            &["webhook", "update", "siem", "--retain", "0s"],
            "must be longer than 0",
        ),
        (
            &[
                "webhook",
                "update",
                "siem",
                "--dead-letter-max-bytes",
                "100",
            ],
            "at least 1KiB",
        ),
        (
            &[
                "webhook",
                "add",
                "other",
                &url,
                "--retain-max-bytes",
                "1MiB",
            ],
            "--retain-max-bytes needs --retain",
        ),
        (
            &[
                "webhook",
                "update",
                "siem",
                "--no-retain",
                "--retain-max-bytes",
                "1MiB",
            ],
            "--retain-max-bytes",
        ),
    ];
    for (args, why) in bad {
        let run = env.ctl_json(args);
        assert_eq!(run.error_code(), "invalid_argument", "{args:?}: {run:?}");
        assert!(run.stderr.contains(why), "{args:?}: {run:?}");
        let text = env.ctl(args);
        assert_eq!(text.code, 1, "{args:?}: {text:?}");
        assert!(text.stderr.contains(why), "{args:?}: {text:?}");
        assert_eq!(env.read_config(), before, "{args:?} changed config.json");
    }
    assert_eq!(shown(&env)["status"]["settings"], want);

    // `update` changes only what it is given; `--no-retain` removes retention and its size.
    let d = env
        .ctl_json(&["webhook", "update", "siem", "--retain-max-bytes", "2MiB"])
        .data();
    assert_eq!(d["applied"], true, "{d}");
    assert_eq!(
        shown(&env)["status"]["settings"],
        json!({"dead_letter_max_bytes": 1048576, "retain": "2h", "retain_max_bytes": 2097152})
    );
    env.ctl_json(&["webhook", "update", "siem", "--no-retain"])
        .data();
    assert_eq!(
        shown(&env)["status"]["settings"],
        json!({"dead_letter_max_bytes": 1048576})
    );
    assert_eq!(
        env.config()["webhooks"]["siem"],
        json!({"url": url, "dead_letter_max_bytes": 1048576})
    );
    env.stop();
}
