//! Logging never panics and never blocks: a daemon whose stderr cannot be written (`/dev/full`,
//! or its log file on a full filesystem) starts, delivers, answers and stops with exit 0, and
//! counts the lines it lost (`info` `log_write_errors`, `/metrics`
//! `pilot_log_write_errors_total`).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pilot_tests::{free_port, wait_until, Env, Receiver};

const WAIT: Duration = Duration::from_secs(20);

/// Runs pilot-daemon with stdout and stderr going to `sink`, then checks it works, counts
/// lost lines, and stops with exit 0.
fn runs_with_stderr_to(env: &Env, sink: &Path) {
    let rx = Receiver::start();
    let metrics = format!("127.0.0.1:{}", free_port());
    let out = File::options().append(true).open(sink).unwrap();
    let mut child: Child = env
        .command(&env.daemon_bin())
        .args(["--webhook", &rx.url(), "--metrics-addr", &metrics])
        .args(["--log-level", "debug"])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let up = wait_until(WAIT, || env.ctl_json(&["info"]).code == 0);
    if !up {
        let _ = child.kill();
        panic!("the daemon never answered: {:?}", child.wait());
    }
    let id = env.emit("a.b", Some(r#"{"k":1}"#));
    let got = rx.wait_for(2, WAIT);
    assert_eq!(got[1].event(), "a.b");
    assert!(wait_until(WAIT, || env.info()["webhook"]["delivered"] == 2));
    let info = env.info();
    let lost = info["log_write_errors"].as_u64().unwrap();
    assert!(lost > 0, "lines were lost and counted: {info}");
    let text = env.ctl(&["info"]);
    assert!(text.stdout.contains("log write errors"), "{text:?}");
    let body = ureq_get(&format!("http://{metrics}/metrics"));
    let line = body
        .lines()
        .find(|l| l.starts_with("pilot_log_write_errors_total "))
        .unwrap_or_else(|| panic!("no counter in {body}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= lost, "{line}");
    assert!(id >= 2);
    env.ctl_json(&["daemon", "stop"]).data();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
}

/// GET over plain TCP (the metrics endpoint), returning the body.
fn ureq_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn a_daemon_whose_stderr_is_dev_full_starts_delivers_and_stops_with_exit_0() {
    let env = Env::new();
    runs_with_stderr_to(&env, Path::new("/dev/full"));
}

#[test]
fn a_daemon_whose_log_file_is_on_a_full_filesystem_starts_delivers_and_stops_with_exit_0() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: mounting a full tmpfs for the log file needs root");
        return;
    }
    let env = Env::new();
    let dir = env.tmp.path().join("logfs");
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=64k",
            "tmpfs",
            dir.to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&dir);
    let log = dir.join("pilot.log");
    File::create(&log).unwrap();
    {
        use std::io::Write;
        let mut filler = File::create(dir.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while filler.write_all(&chunk).is_ok() {}
    }
    runs_with_stderr_to(&env, &log);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 0, "nothing fit");
}

#[test]
fn an_unknown_log_level_is_refused_at_start_and_in_the_config() {
    let env = Env::new();
    let run = env.ctl(&["daemon", "start", "--log-level", "loud"]);
    assert!(matches!(run.code, 1 | 2), "a usage error: {run:?}");
    assert!(run.stderr.contains("\"loud\" is not a level"), "{run:?}");
    assert!(!env.pid_path().exists(), "nothing started");
    let out = env
        .command(&env.daemon_bin())
        .args(["--log-level", "info,loud"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"loud\" is not a level"));

    let run = env.ctl_json(&["config", "--set", "log_level=loud"]);
    assert_eq!(run.error_code(), "invalid_argument");
    assert!(!env.config_path().exists(), "nothing written");

    // A config written by hand: the start fails, naming the file and the key.
    env.write_config(r#"{"log_level":"pilot_webhook"}"#);
    let run = env.ctl(&["daemon", "start"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("config.json"), "{run:?}");
    assert!(run.stderr.contains("log_level"), "{run:?}");
    assert!(!env.pid_path().exists(), "nothing started");

    // Directives that name their level are fine.
    env.write_config(r#"{"log_level":"pilot_webhook=debug,warn"}"#);
    env.start(&[]);
    env.stop();
    env.start(&["--log-level", "pilot_daemon=debug,info"]);
    // Lines reach the file through the log writer thread: wait for it.
    assert!(
        pilot_tests::wait_until(std::time::Duration::from_secs(10), || env
            .log()
            .contains("ready")),
        "{}",
        env.log()
    );
    env.stop();
}
