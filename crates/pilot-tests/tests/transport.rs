//! Extra headers, Bearer and Basic auth from files, and `--insecure-tls`, end to end: what the
//! receiver gets, and that header values and credentials never reach `pilot.log` or `info`.

use std::time::Duration;

use base64::Engine as _;
use pilot_tests::{wait_until, Env, Receiver};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn extra_headers_and_bearer_then_basic_auth_arrive_and_never_leak() {
    let env = Env::new();
    let rx = Receiver::start();
    let token = env.tmp.path().join("token");
    std::fs::write(&token, "tok-LEAKCHECK-123\n").unwrap();
    env.ctl_json(&[
        "set-webhook",
        &rx.url(),
        "--header",
        "X-Team: blue-LEAKCHECK-456",
        "--header",
        "X-Env: e2e",
        "--bearer-token-file",
        token.to_str().unwrap(),
    ])
    .data();
    env.start(&["--log-level", "trace"]);
    env.emit("a.b", None);
    let got = rx.wait_for(2, WAIT);
    for r in &got {
        assert_eq!(r.header("x-team"), Some("blue-LEAKCHECK-456"));
        assert_eq!(r.header("x-env"), Some("e2e"));
        assert_eq!(r.header("authorization"), Some("Bearer tok-LEAKCHECK-123"));
    }
    let info = env.ctl_json(&["info"]);
    assert_eq!(
        info.data()["webhook"]["settings"]["headers"],
        json!(["X-Team: ***", "X-Env: ***"])
    );
    assert!(!info.stdout.contains("LEAKCHECK"), "{}", info.stdout);

    // Settings are replaced as a whole: the headers and the bearer token go.
    let basic = env.tmp.path().join("basic");
    std::fs::write(&basic, "alice:pw-LEAKCHECK-789\n").unwrap();
    env.ctl_json(&[
        "set-webhook",
        &rx.url(),
        "--basic-auth-file",
        basic.to_str().unwrap(),
    ])
    .data();
    env.emit("c.d", None);
    let got = rx.wait_for(3, WAIT);
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pw-LEAKCHECK-789")
    );
    assert_eq!(got[2].header("authorization"), Some(want.as_str()));
    assert_eq!(got[2].header("x-team"), None);
    env.stop();
    let log = env.log();
    assert!(!log.is_empty());
    assert!(!log.contains("LEAKCHECK"), "pilot.log leaks:\n{log}");
    assert!(
        !log.contains(&want[6..]),
        "pilot.log leaks basic credentials"
    );
}

#[test]
fn insecure_tls_warns_and_persists() {
    let env = Env::new();
    let run = env.ctl_json(&[
        "set-webhook",
        "https://127.0.0.1:9/events",
        "--insecure-tls",
    ]);
    assert!(
        run.stderr.contains("warning: --insecure-tls"),
        "{}",
        run.stderr
    );
    assert_eq!(run.data()["settings"]["insecure_tls"], true);
    assert_eq!(env.config()["webhook_settings"]["insecure_tls"], true);
    let plain = env.ctl_json(&["set-webhook", "https://127.0.0.1:9/events"]);
    assert!(plain.stderr.is_empty(), "{}", plain.stderr);
    assert!(env.config().get("webhook_settings").is_none());
}

#[test]
fn a_receiver_that_demands_a_client_certificate_accepts_pilots_and_refuses_none() {
    use pilot_tests::mtls::MtlsReceiver;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::Ordering;
    let env = Env::new();
    let rx = MtlsReceiver::start();
    let (cert, key) = rx.write_client_identity(env.tmp.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    env.start(&[]);
    // Without a client certificate: the handshake is refused, the event failed.
    env.ctl_json(&[
        "webhook",
        "add",
        "plain",
        &rx.url(),
        "--insecure-tls",
        "--events",
        "m.*",
    ])
    .data();
    // With one: delivered.
    let d = env
        .ctl_json(&[
            "webhook",
            "add",
            "mutual",
            &rx.url(),
            "--insecure-tls",
            "--events",
            "m.*",
            "--client-cert",
            cert,
            "--client-key",
            key,
        ])
        .data();
    assert_eq!(d["settings"]["client_cert"], cert);
    env.emit("m.one", None);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let info = env.info();
            let w = |n: &str| {
                info["webhooks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|w| w["name"] == n)
                    .cloned()
                    .unwrap()
            };
            w("mutual")["delivered"] == 1 && w("plain")["failed"] == 1
        }),
        "{}",
        env.info()
    );
    assert_eq!(
        rx.answered.load(Ordering::SeqCst),
        1,
        "only pilot's certificate got in"
    );
    assert!(rx.refused.load(Ordering::SeqCst) >= 1);
    // A key others can read is refused at add, nothing saved.
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = env.read_config();
    let run = env.ctl_json(&[
        "webhook",
        "add",
        "loose",
        &rx.url(),
        "--client-cert",
        cert,
        "--client-key",
        key,
    ]);
    assert_eq!(run.error_code(), "invalid_argument", "{run:?}");
    assert!(run.stderr.contains("chmod 600"), "{run:?}");
    assert_eq!(env.read_config(), before);
    // Half an identity is a usage error.
    let run = env.ctl_json(&["webhook", "add", "half", &rx.url(), "--client-cert", cert]);
    assert_ne!(run.code, 0);
    assert_eq!(env.read_config(), before);
}

#[test]
fn webhooks_go_through_the_environments_proxy_or_their_own_and_no_proxy_is_honoured() {
    use pilot_tests::mtls::MtlsReceiver;
    use pilot_tests::proxy::ConnectProxy;
    let env = Env::new();
    let (env_proxy, own_proxy) = (ConnectProxy::start(), ConnectProxy::start());
    let (via_env, via_own, direct) = (Receiver::start(), Receiver::start(), Receiver::start());
    let tls = MtlsReceiver::start();
    let (cert, key) = tls.write_client_identity(env.tmp.path());
    let direct_port = direct
        .url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // The daemon's environment: a proxy for http and https, but not for `direct`'s port... NO_PROXY
    // works by host, so `direct` is reached as localhost, which NO_PROXY lists.
    let out = env
        .command(&env.pilotctl_bin())
        .env("HTTP_PROXY", env_proxy.url())
        .env("HTTPS_PROXY", env_proxy.url())
        .env("NO_PROXY", "localhost")
        .args(["--json", "daemon", "start"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let add = |args: &[&str]| {
        let mut all = vec!["webhook", "add"];
        all.extend_from_slice(args);
        let run = env.ctl_json(&all);
        assert_eq!(run.code, 0, "{run:?}");
    };
    add(&["env", &via_env.url(), "--events", "p.*"]);
    add(&[
        "own",
        &via_own.url(),
        "--events",
        "p.*",
        "--proxy",
        &format!(
            "http://pilot:s3cret@{}",
            own_proxy.url().trim_start_matches("http://")
        ),
    ]);
    let auth_file = env.tmp.path().join("proxy-auth");
    std::fs::write(&auth_file, "other:pw2\n").unwrap();
    add(&[
        "own2",
        &via_own.url(),
        "--events",
        "p.*",
        "--proxy",
        &own_proxy.url(),
        "--proxy-auth-file",
        auth_file.to_str().unwrap(),
    ]);
    add(&[
        "direct",
        &format!("http://localhost:{direct_port}/events"),
        "--events",
        "p.*",
    ]);
    add(&[
        "tls",
        &tls.url(),
        "--events",
        "p.*",
        "--insecure-tls",
        "--client-cert",
        cert.to_str().unwrap(),
        "--client-key",
        key.to_str().unwrap(),
    ]);
    env.emit("p.one", None);
    for rx in [&via_env, &via_own, &direct] {
        rx.wait_for(1, Duration::from_secs(20));
    }
    assert!(wait_until(Duration::from_secs(20), || {
        tls.answered.load(std::sync::atomic::Ordering::SeqCst) == 1
    }));
    let targets =
        |p: &ConnectProxy| -> Vec<String> { p.tunnels().into_iter().map(|t| t.target).collect() };
    let env_targets = targets(&env_proxy);
    let tls_target = tls
        .url()
        .trim_start_matches("https://")
        .trim_end_matches("/events")
        .to_string();
    let env_target = via_env
        .url()
        .trim_start_matches("http://")
        .trim_end_matches("/events")
        .to_string();
    assert!(env_targets.contains(&env_target), "{env_targets:?}");
    // HTTPS through CONNECT: the TLS handshake (with the client certificate) ran end to end.
    assert!(env_targets.contains(&tls_target), "{env_targets:?}");
    assert!(
        !env_targets.iter().any(|t| t.starts_with("localhost")),
        "NO_PROXY ignored: {env_targets:?}"
    );
    via_own.wait_for(2, Duration::from_secs(20));
    let mut auths: Vec<Option<String>> = own_proxy
        .tunnels()
        .into_iter()
        .map(|t| t.authorization)
        .collect();
    auths.sort();
    // From the proxy URL's userinfo, and from --proxy-auth-file.
    assert_eq!(
        auths,
        [
            Some("Basic b3RoZXI6cHcy".to_string()),
            Some("Basic cGlsb3Q6czNjcmV0".to_string())
        ]
    );
    // The proxy's password never reaches the log or info.
    assert!(
        !env.log().contains("s3cret"),
        "the proxy password was logged"
    );
    assert!(
        !env.info().to_string().contains("s3cret"),
        "the proxy password is in info"
    );
    // `--proxy none` bypasses the environment.
    env.ctl_json(&["webhook", "update", "env", "--proxy", "none"])
        .data();
    let before = env_proxy.tunnels().len();
    env.emit("p.two", None);
    via_env.wait_for(2, Duration::from_secs(20));
    assert!(
        !env.log().contains("pw2"),
        "the proxy auth file's password was logged"
    );
    assert_eq!(
        env_proxy.tunnels().len(),
        before,
        "--proxy none still used the proxy"
    );
    // A bad proxy setting is refused.
    let run = env.ctl_json(&[
        "webhook",
        "update",
        "env",
        "--proxy",
        "socks5://127.0.0.1:1",
    ]);
    assert_eq!(run.error_code(), "invalid_argument", "{run:?}");
}
