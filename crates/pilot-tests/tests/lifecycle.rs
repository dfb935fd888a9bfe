//! Starting, stopping and finding the daemon: pid file, socket, stale files, signals.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use pilot_tests::env::{alive, wait_gone};
use pilot_tests::{accounting, wait_until, Env, Receiver, Reply};

const WAIT: Duration = Duration::from_secs(10);

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn start_status_stop() {
    let env = Env::new();
    let started = env.start(&["--node-id", "42"]);
    let pid = started["pid"].as_i64().unwrap() as i32;
    assert_eq!(Some(pid), env.pid());
    assert_eq!(started["node_id"], 42);
    assert_eq!(started["webhook"], "");
    assert_eq!(started["socket"], env.socket_path().to_str().unwrap());
    assert_eq!(started["log_file"], env.log_path().to_str().unwrap());
    assert!(alive(pid));

    assert_eq!(mode(&env.pilot_home), 0o700);
    assert_eq!(mode(&env.socket_path()), 0o600);

    let status = env.ctl_json(&["daemon", "status"]).data();
    assert_eq!(status["running"], true);
    assert_eq!(status["responsive"], true);
    assert_eq!(status["pid"], pid);
    assert!(status["uptime_secs"].is_u64());
    let run = env.ctl(&["daemon", "status", "--check"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));

    let info = env.info();
    assert_eq!(info["pid"], pid);
    assert_eq!(info["node_id"], 42);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));

    let stopped = env.stop();
    assert_eq!(stopped["pid"], pid);
    assert_eq!(stopped["forced"], false);
    assert!(wait_gone(pid, WAIT));
    assert!(!env.pid_path().exists());
    assert!(!env.socket_path().exists());
    assert_eq!(
        env.ctl_json(&["daemon", "stop"]).error_code(),
        "not_running"
    );
}

#[test]
fn a_second_start_says_already_running() {
    let env = Env::new();
    let first = env.start(&[]);
    let run = env.ctl_json(&["daemon", "start"]);
    assert_eq!(run.error_code(), "already_running");
    assert_eq!(env.info()["pid"], first["pid"]);
}

/// The live `pilot-daemon` processes whose environment has `PILOT_HOME=home`.
fn daemons_of(home: &std::path::Path) -> usize {
    let want = format!("PILOT_HOME={}", home.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|p| alive(*p))
        .filter(|p| {
            let environ = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
            let cmd = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            cmd.trim() == "pilot-daemon"
                && environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes())
        })
        .count()
}

#[test]
fn five_starts_at_once_leave_exactly_one_daemon() {
    let env = Env::new();
    let starts: Vec<_> = (0..5)
        .map(|_| {
            env.command(&env.pilotctl_bin())
                .args(["--json", "daemon", "start"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = starts
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let oks = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(oks, 1, "exactly one start succeeds: {outs:?}");
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("already_running") || err.contains("already running"),
            "a losing start says why: {err}"
        );
    }
    let pid = env.pid().unwrap();
    assert_eq!(env.info()["pid"], pid);
    assert!(env.socket_path().exists());
    assert_eq!(daemons_of(&env.pilot_home), 1);
}

#[test]
fn daemons_racing_for_one_socket_never_remove_the_winners() {
    // Five homes, one socket path with a stale socket file on it: every daemon sees it stale
    // at first, and only one may end up owning the path, still bound to it.
    let homes: Vec<Env> = (0..5).map(|_| Env::new()).collect();
    let dir = tempfile::Builder::new()
        .prefix("pilot-sock-")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("shared.sock");
    for round in 0..5 {
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let daemons: Vec<_> = homes
            .iter()
            .map(|env| {
                std::fs::create_dir_all(&env.pilot_home).unwrap();
                env.command(&env.daemon_bin())
                    .arg("--socket")
                    .arg(&socket)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // The losers exit at once with a clear error; the winner keeps running.
        let mut daemons: Vec<Option<std::process::Child>> = daemons.into_iter().map(Some).collect();
        let mut exited = Vec::new();
        wait_until(WAIT, || {
            for slot in daemons.iter_mut() {
                if let Some(d) = slot {
                    if matches!(d.try_wait(), Ok(Some(_))) {
                        exited.push(slot.take().unwrap());
                    }
                }
            }
            exited.len() >= homes.len() - 1
        });
        for d in exited {
            let out = d.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "round {round}: {err}");
            assert!(err.contains("already listening"), "round {round}: {err}");
        }
        let mut survivors: Vec<_> = daemons.into_iter().flatten().collect();
        assert_eq!(
            survivors.len(),
            1,
            "round {round}: one daemon keeps the socket"
        );
        let winner = survivors.pop().unwrap();
        let out = homes[0]
            .command(&homes[0].pilotctl_bin())
            .args(["--json", "--socket"])
            .arg(&socket)
            .arg("info")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: the winner's socket is gone: {out:?}"
        );
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["data"]["pid"], winner.id(), "round {round}");
        let winner = pilot_tests::env::Spawned(winner);
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(winner.0.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        assert!(wait_until(WAIT, || !socket.exists()), "round {round}");
    }
}

#[test]
fn stale_pid_file_and_socket_are_cleaned_up() {
    let env = Env::new();
    std::fs::create_dir_all(&env.pilot_home).unwrap();
    std::fs::write(env.pid_path(), "999999\n").unwrap();
    drop(std::os::unix::net::UnixListener::bind(env.socket_path()).unwrap());
    assert!(env.socket_path().exists());
    let status = env.ctl_json(&["daemon", "status"]).data();
    assert_eq!(status["running"], false);
    let started = env.start(&[]);
    assert_eq!(env.info()["pid"], started["pid"]);
}

#[test]
fn a_live_daemons_socket_is_never_taken() {
    let env = Env::new();
    let started = env.start(&[]);
    // The same home: the pid lock refuses.
    let out = env.command(&env.daemon_bin()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
    // Another home, same socket path: the live socket refuses.
    let other = Env::new();
    let out = other
        .command(&other.daemon_bin())
        .arg("--socket")
        .arg(env.socket_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already listening"), "{err}");
    assert!(env.socket_path().exists());
    assert_eq!(env.info()["pid"], started["pid"]);
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url()]);
    let pid = env.pid().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let got = rx.wait_for(2, WAIT);
    assert_eq!(got[1].event(), "daemon.shutting_down");
    assert_eq!(got[1].json()["data"]["reason"], "SIGTERM");
    assert!(wait_gone(pid, WAIT));
    assert!(wait_until(WAIT, || !env.pid_path().exists()));
    assert!(!env.socket_path().exists());
}

#[test]
fn sigterm_with_a_full_queue_exits_within_the_drain_bound_and_counts_the_rest() {
    let env = Env::new();
    // Each request takes a second: the queue cannot drain in the 5 s bound.
    let rx = Receiver::with_default(Reply::Delay(Duration::from_secs(1), 200));
    env.start(&["--webhook", &rx.url(), "--queue-size", "100"]);
    let file = env.tmp.path().join("burst.jsonl");
    std::fs::write(&file, "{\"event\":\"test.backlog\"}\n".repeat(150)).unwrap();
    env.ctl_json(&["emit", "--file", file.to_str().unwrap()])
        .data();
    let before = env.info()["webhook"].clone();
    assert!(before["queue_depth"].as_u64().unwrap() > 50, "{before}");
    assert!(
        before["dropped_queue_full"].as_u64().unwrap() > 0,
        "{before}"
    );

    let sent = Instant::now();
    let pid = env.signal_daemon(rustix::process::Signal::TERM);
    assert!(wait_gone(pid, WAIT), "still running after {WAIT:?}");
    let took = sent.elapsed();
    // The drain is bounded by 5 s; the rest (connections, files) takes well under a second.
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    assert!(wait_until(WAIT, || !env.pid_path().exists()));

    let log = env.log();
    let last = accounting::from_stop_line(&log)
        .unwrap_or_else(|| panic!("no `pilot-daemon stopped` line in the log:\n{log}"));
    accounting::check(&last).unwrap_or_else(|e| panic!("{e}\nlog:\n{log}"));
    let n = |k: &str| last[k].as_u64().unwrap();
    assert_eq!(n("queue_depth") + n("in_flight"), 0, "left pending: {last}");
    assert!(
        n("dropped") > n("dropped_queue_full"),
        "the leftovers were not counted as dropped: {last}"
    );
    assert!(n("delivered") < 20, "{last}");
    eprintln!(
        "SIGTERM with {} queued: exited in {took:?}; {last}",
        before["queue_depth"]
    );
}

#[test]
fn socket_path_precedence_flag_env_config() {
    let env = Env::new();
    let from_config = env.tmp.path().join("cfg.sock");
    env.write_config(&format!("{{\"socket\": \"{}\"}}", from_config.display()));
    let started = env.start(&[]);
    assert_eq!(started["socket"], from_config.to_str().unwrap());
    assert!(from_config.exists());
    env.info();
    env.stop();

    let from_flag = env.tmp.path().join("flag.sock");
    let started = env.start(&["--socket", from_flag.to_str().unwrap()]);
    assert_eq!(started["socket"], from_flag.to_str().unwrap());
    let run = env.ctl_json(&["--socket", from_flag.to_str().unwrap(), "info"]);
    assert_eq!(run.data()["socket"], from_flag.to_str().unwrap());
    let stop = env.ctl_json(&["--socket", from_flag.to_str().unwrap(), "daemon", "stop"]);
    stop.data();

    let from_env = env.tmp.path().join("env.sock");
    let out = env
        .command(&env.pilotctl_bin())
        .env("PILOT_SOCKET", &from_env)
        .args(["--json", "daemon", "start"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(from_env.exists());
    let out = env
        .command(&env.pilotctl_bin())
        .env("PILOT_SOCKET", &from_env)
        .args(["--json", "daemon", "stop"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn foreground_runs_attached_and_exits_zero_on_stop() {
    let env = Env::new();
    let mut child = env
        .command(&env.pilotctl_bin())
        .args(["daemon", "start", "--foreground"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `status --check` holds once the pid file is taken, before the socket answers.
    assert!(wait_until(WAIT, || env.ctl_json(&["info"]).code == 0));
    env.stop();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
