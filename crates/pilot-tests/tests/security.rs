//! Security end to end: DNS answers that point at blocked addresses are refused at connect
//! time, another user's process cannot use the control socket, and every file in the pilot
//! home is owner-only whatever the umask.
//!
//! The first two need root (a private mount namespace for /etc/hosts; switching to `nobody`).
//! When they cannot run they say so on stderr and pass without checking anything else.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use pilot_tests::env::Spawned;
use pilot_tests::{wait_until, Env, Receiver};

const WAIT: Duration = Duration::from_secs(10);

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn can_unshare() -> bool {
    std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_hostname_resolving_to_a_blocked_address_is_refused_at_connect_time() {
    if !is_root() || !can_unshare() {
        eprintln!(
            "SKIPPED: needs root and `unshare --mount` to give the daemon its own /etc/hosts"
        );
        return;
    }
    let env = Env::new();
    let rx = Receiver::start();
    let port = rx.addr().port();
    // `sneaky.test` resolves to 0.0.0.0, which on Linux reaches a listener on 127.0.0.1:
    // without the connect-time check the receiver would get the event.
    let hosts = env.tmp.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n0.0.0.0 sneaky.test\n169.254.169.254 metadata.test\n",
    )
    .unwrap();
    std::fs::create_dir_all(&env.pilot_home).unwrap();
    let script = format!(
        "mount --bind '{}' /etc/hosts && exec '{}' --webhook 'http://sneaky.test:{port}/events' --max-attempts 1",
        hosts.display(),
        env.daemon_bin().display()
    );
    let _daemon = Spawned(
        env.command(std::path::Path::new("unshare"))
            .args(["--mount", "sh", "-c", &script])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // `status --check` holds once the pid file is taken, before the socket answers: wait for
    // `info` itself.
    assert!(wait_until(WAIT, || env.ctl_json(&["info"]).code == 0));
    assert!(wait_until(WAIT, || env.info()["webhook"]["failed"] == 1));
    let w = env.info()["webhook"].clone();
    let err = w["last_error"].as_str().unwrap();
    assert!(
        err.contains("sneaky.test") && err.contains("0.0.0.0"),
        "{err}"
    );
    assert_eq!(rx.count(), 0, "the blocked address was reached");

    // The same for a hostname that points at the metadata address, set at runtime.
    env.ctl_json(&["set-webhook", &format!("http://metadata.test:{port}/x")])
        .data();
    env.emit("test.after_swap", None);
    assert!(wait_until(WAIT, || env.info()["webhook"]["failed"] == 2));
    let err = env.info()["webhook"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("169.254.169.254"), "{err}");
    assert_eq!(rx.count(), 0);
}

#[test]
fn another_users_process_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to run a client as another user (nobody)");
        return;
    }
    let env = Env::new();
    // A socket in a directory `nobody` can reach, opened up so only the peer check remains.
    let dir = tempfile::Builder::new()
        .prefix("pilot-sock-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("pilot.sock");
    env.start(&["--socket", socket.to_str().unwrap()]);
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();

    let other_home = tempfile::Builder::new()
        .prefix("pilot-nobody-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(other_home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new(env.pilotctl_bin())
        .env_clear()
        .env("HOME", other_home.path())
        .env("PILOT_HOME", other_home.path().join(".pilot"))
        .env("PILOT_SOCKET", &socket)
        .args(["--json", "info"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission_denied"), "{stderr}");
    // The owner still gets in.
    let run = env.ctl_json(&["--socket", socket.to_str().unwrap(), "info"]);
    run.data();
    env.ctl_json(&["--socket", socket.to_str().unwrap(), "daemon", "stop"])
        .data();
}

#[test]
fn every_file_in_the_home_is_owner_only_whatever_the_umask() {
    let env = Env::new();
    let rx = Receiver::start();
    // pilotctl (and the daemon it starts) under umask 000: modes must not depend on it.
    let ctl = |args: &[&str]| {
        let out = env
            .command(std::path::Path::new("sh"))
            .arg("-c")
            .arg("umask 000 && exec \"$0\" --json \"$@\"")
            .arg(env.pilotctl_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    ctl(&["set-webhook", &rx.url(), "--durable", "--generate-secret"]);
    ctl(&["daemon", "start"]);
    ctl(&["emit", "test.modes"]);
    assert!(wait_until(WAIT, || rx.count() >= 2));
    ctl(&["webhook", "secret", "rotate"]);

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.pilot_home), 0o700);
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&env.pilot_home).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(mode(&path), 0o600, "{name} is not owner-only");
        seen.push(name);
    }
    seen.sort();
    for want in [
        "config.json",
        "pilot.log",
        "pilot.pid",
        "pilot.sock",
        "webhook-spool.redb",
        "webhook_secret.json",
    ] {
        assert!(
            seen.iter().any(|n| n == want),
            "{want} missing from {seen:?}"
        );
    }
    env.stop();
}

#[test]
fn pilotctl_refuses_a_socket_served_by_another_user() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to run a fake daemon as another user (nobody)");
        return;
    }
    let env = Env::new();
    let dir = tempfile::Builder::new()
        .prefix("pilot-fake-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("pilot.sock");
    let got = dir.path().join("received");
    // A fake daemon run by `nobody`: it accepts and records whatever a client sends.
    let script = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(4)
c, _ = s.accept(); c.settimeout(2)
data = b""
try:
    while True:
        chunk = c.recv(65536)
        if not chunk: break
        data += chunk
except Exception:
    pass
open(sys.argv[2], "wb").write(data)
"#;
    let mut fake = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            socket.to_str().unwrap(),
            got.to_str().unwrap(),
        ])
        .uid(65534)
        .gid(65534)
        .spawn()
        .unwrap();
    assert!(wait_until(WAIT, || socket.exists()));
    let run = env.ctl_json(&["--socket", socket.to_str().unwrap(), "info"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.error_code(), "untrusted_daemon", "{run:?}");
    assert!(run.stderr.contains("uid 65534"), "{run:?}");
    let _ = fake.wait();
    let sent = std::fs::read(&got).unwrap_or_default();
    assert!(
        sent.is_empty(),
        "pilotctl sent {} bytes to a fake daemon",
        sent.len()
    );
}

#[test]
fn a_symlink_planted_at_the_socket_lock_is_refused_and_never_followed() {
    let env = Env::new();
    std::fs::create_dir_all(&env.pilot_home).unwrap();
    let outside = env.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.join("created-by-pilot");
    let lock = env.pilot_home.join("pilot.sock.lock");
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let run = env.ctl_json(&["daemon", "start"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("symbolic link"), "{run:?}");
    assert!(
        !target.exists(),
        "the daemon created a file outside the home"
    );
    assert!(!env.socket_path().exists());
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_directory_or_huge_file_named_as_auth_or_secret_file_is_refused_without_blocking() {
    let env = Env::new();
    let rx = Receiver::start();
    let fifo = env.tmp.path().join("token.fifo");
    mkfifo(&fifo);
    let big = env.tmp.path().join("big");
    std::fs::write(&big, vec![b'x'; 200_000]).unwrap();
    let dir = env.tmp.path().to_str().unwrap().to_string();
    let before = env.read_config();
    for (flag, path, want) in [
        ("--bearer-token-file", fifo.to_str().unwrap(), "is a FIFO"),
        ("--basic-auth-file", dir.as_str(), "is a directory"),
        ("--secret-file", fifo.to_str().unwrap(), "is a FIFO"),
        ("--bearer-token-file", big.to_str().unwrap(), "larger than"),
        ("--bearer-token-file", "/dev/zero", "is a device"),
    ] {
        let started = std::time::Instant::now();
        let run = env.ctl_json(&["set-webhook", &rx.url(), flag, path]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{flag} {path} blocked"
        );
        assert_eq!(
            run.error_code(),
            "invalid_argument",
            "{flag} {path}: {run:?}"
        );
        assert!(run.stderr.contains(want), "{flag} {path}: {run:?}");
        assert_eq!(env.read_config(), before, "{flag} {path} wrote config.json");
    }
    // A config written by hand that names a FIFO stops the start at once, naming the file.
    env.write_config(&format!(
        r#"{{"webhook": "{}", "webhook_settings": {{"bearer_token_file": "{}"}}}}"#,
        rx.url(),
        fifo.display()
    ));
    let started = std::time::Instant::now();
    let run = env.ctl_json(&["daemon", "start"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("FIFO"), "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_secret_file_readable_by_others_is_made_owner_only_with_a_warning() {
    let env = Env::new();
    let rx = Receiver::start();
    env.ctl_json(&["set-webhook", &rx.url(), "--generate-secret"])
        .data();
    std::fs::set_permissions(env.secret_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    env.start(&[]);
    let mode = std::fs::metadata(env.secret_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        wait_until(WAIT, || env
            .log()
            .contains("secret file was readable by others")),
        "{}",
        env.log()
    );
    // A --secret-file others can read is used, with a warning.
    let shared = env.tmp.path().join("shared-secret");
    std::fs::write(&shared, "whsec_c2hhcmVkIHNlY3JldCBmb3IgYSB0ZXN0IQ==\n").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = env.ctl_json(&[
        "set-webhook",
        &rx.url(),
        "--secret-file",
        shared.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("readable by others"), "{run:?}");
}
