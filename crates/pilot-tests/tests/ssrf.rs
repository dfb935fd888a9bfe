//! The SSRF policy end to end: an IPv6 spelling of a metadata address is refused by
//! `set-webhook`, `--deny-private` refuses private URLs for one webhook, the config key
//! `deny_private_networks` for every one, and `daemon start` refuses a config whose URL the
//! policy refuses, naming the file. (The table of verdicts is
//! `pilot-core/src/webhook_url.rs::the_ssrf_table`; connect-time checks are unit-tested in
//! `pilot-webhook/src/client.rs`.)

use pilot_tests::Env;
use serde_json::json;

fn refused(env: &Env, args: &[&str]) -> String {
    let run = env.ctl_json(args);
    assert_eq!(run.error_code(), "invalid_argument", "{args:?}");
    run.stderr
}

#[test]
fn deny_private_refuses_private_urls_for_one_webhook_or_for_all() {
    let env = Env::new();
    for url in [
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://metadata/computeMetadata/v1/",
    ] {
        let msg = refused(&env, &["set-webhook", url]);
        assert!(msg.contains("blocked"), "{msg}");
    }
    assert!(!env.config_path().exists(), "nothing written");

    // Per webhook: --deny-private.
    let msg = refused(
        &env,
        &["set-webhook", "http://127.0.0.1:9/x", "--deny-private"],
    );
    assert!(msg.contains("deny_private"), "{msg}");
    assert!(!env.config_path().exists(), "nothing written");
    let d = env
        .ctl_json(&["set-webhook", "http://93.184.216.34/x", "--deny-private"])
        .data();
    assert_eq!(d["settings"]["deny_private"], true);
    assert_eq!(
        env.config()["webhook_settings"],
        json!({"deny_private": true})
    );

    // For every webhook: the config key.
    env.ctl_json(&["config", "--set", "deny_private_networks=true"])
        .data();
    let before = env.read_config();
    for url in [
        "http://localhost:8080/x",
        "http://[::1]/",
        "http://10.0.0.1/",
    ] {
        let msg = refused(&env, &["set-webhook", url]);
        assert!(msg.contains("deny_private"), "{msg}");
    }
    assert_eq!(env.read_config(), before, "config untouched");
    let run = env.ctl_json(&["config", "--set", "deny_private_networks=yes"]);
    assert_eq!(run.error_code(), "invalid_argument");

    // A start whose config URL the policy refuses fails, naming the file and the key.
    env.write_config(r#"{"webhook":"http://localhost:1/x","deny_private_networks":true}"#);
    let run = env.ctl_json(&["daemon", "start"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("deny_private"), "{run:?}");
    assert!(run.stderr.contains("config.json"), "{run:?}");
    let run = env.ctl_json(&["daemon", "start", "--webhook", "http://192.168.1.1/"]);
    assert_eq!(run.error_code(), "invalid_argument", "{run:?}");

    // Without the key, the same URL is fine (receivers on the node are the main use).
    env.write_config(r#"{"webhook":"http://localhost:1/x"}"#);
    env.start(&[]);
    // The running daemon applies the per-webhook flag too (pilotctl checks first, the IPC
    // handler again: both say the same).
    let msg = refused(
        &env,
        &["set-webhook", "http://localhost:2/x", "--deny-private"],
    );
    assert!(msg.contains("deny_private"), "{msg}");
    assert_eq!(env.info()["webhook"]["url"], "http://localhost:1/x");
    env.stop();
}
