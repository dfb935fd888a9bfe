//! A temporary pilot home (`HOME` and `PILOT_HOME` in a temp dir) and the real binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The directory that holds `pilotctl` and `pilot-daemon` (target/<profile>).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    for bin in ["pilotctl", "pilot-daemon"] {
        assert!(
            dir.join(bin).exists(),
            "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
            dir.join(bin).display()
        );
    }
    dir
}

/// The result of one `pilotctl` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The `data` of a `--json` success, asserting it succeeded.
    pub fn data(&self) -> Value {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        let v: Value = serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"));
        assert_eq!(v["status"], "ok", "{self:?}");
        v["data"].clone()
    }

    /// The `code` of a `--json` error, asserting it failed with exit 1.
    pub fn error_code(&self) -> String {
        assert_eq!(self.code, 1, "expected exit 1: {self:?}");
        let v: Value = serde_json::from_str(self.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {self:?}"));
        assert_eq!(v["status"], "error", "{self:?}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
        v["code"].as_str().unwrap_or_default().to_string()
    }
}

/// A private pilot home; kills any daemon it started when dropped.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub pilot_home: PathBuf,
    bins: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("pilot-e2e-")
            .tempdir()
            .expect("temp dir");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).expect("create HOME");
        let pilot_home = home.join(".pilot");
        Env {
            tmp,
            home,
            pilot_home,
            bins: bin_dir(),
        }
    }

    pub fn pilotctl_bin(&self) -> PathBuf {
        self.bins.join("pilotctl")
    }

    pub fn daemon_bin(&self) -> PathBuf {
        self.bins.join("pilot-daemon")
    }

    pub fn config_path(&self) -> PathBuf {
        self.pilot_home.join("config.json")
    }
    pub fn socket_path(&self) -> PathBuf {
        self.pilot_home.join("pilot.sock")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.pilot_home.join("pilot.pid")
    }
    pub fn log_path(&self) -> PathBuf {
        self.pilot_home.join("pilot.log")
    }
    pub fn secret_path(&self) -> PathBuf {
        self.pilot_home.join("webhook_secret.json")
    }

    /// A command with this env's HOME and PILOT_HOME, and nothing inherited that could leak in.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("HOME", &self.home)
            .env("PILOT_HOME", &self.pilot_home)
            .env_remove("PILOT_SOCKET")
            .env_remove("PILOT_DAEMON_BIN")
            .env_remove("RUST_LOG")
            // The tests choose their proxies themselves.
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Runs `pilotctl ARGS` to completion.
    pub fn ctl(&self, args: &[&str]) -> Run {
        let out = self
            .command(&self.pilotctl_bin())
            .args(args)
            .output()
            .expect("run pilotctl");
        Run::from(out)
    }

    /// Runs `pilotctl --json ARGS`.
    pub fn ctl_json(&self, args: &[&str]) -> Run {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.ctl(&all)
    }

    /// Starts `pilotctl ARGS` in the background with its output lines collected.
    pub fn spawn_ctl(&self, args: &[&str]) -> crate::LineChild {
        let mut cmd = self.command(&self.pilotctl_bin());
        cmd.args(args);
        crate::LineChild::spawn(cmd)
    }

    /// The current signing secret (`webhook secret show`).
    pub fn secret(&self) -> String {
        let d = self.ctl_json(&["webhook", "secret", "show"]).data();
        d["current"]["secret"]
            .as_str()
            .expect("a current secret")
            .to_string()
    }

    /// `pilotctl --json daemon start ARGS`, asserting success; returns its data.
    pub fn start(&self, args: &[&str]) -> Value {
        let mut all = vec!["daemon", "start"];
        all.extend_from_slice(args);
        let run = self.ctl_json(&all);
        if run.code != 0 {
            panic!("daemon start failed: {run:?}\nlog:\n{}", self.log());
        }
        run.data()
    }

    /// `pilotctl --json daemon stop`, asserting success; returns its data.
    pub fn stop(&self) -> Value {
        self.ctl_json(&["daemon", "stop"]).data()
    }

    /// Emits one event and returns its id.
    pub fn emit(&self, name: &str, data: Option<&str>) -> u64 {
        let mut args = vec!["emit", name];
        if let Some(d) = data {
            args.extend(["--data", d]);
        }
        let d = self.ctl_json(&args).data();
        d["event_id"].as_u64().expect("event_id")
    }

    /// Emits `n` events named `name` with `{"i":N,"pad":"xxx..."}` (`pad` bytes of padding)
    /// in one `emit --file`; returns the first and last event ids.
    pub fn burst(&self, name: &str, n: usize, pad: usize) -> (u64, u64) {
        let file = self.tmp.path().join(format!("{name}.jsonl"));
        let lines: String = (0..n)
            .map(|i| {
                format!(
                    "{{\"event\":\"{name}\",\"data\":{{\"i\":{i},\"pad\":\"{}\"}}}}\n",
                    "x".repeat(pad)
                )
            })
            .collect();
        std::fs::write(&file, lines).expect("write the events file");
        let path = file.to_str().expect("a UTF-8 temp path");
        let out = self.ctl_json(&["emit", "--file", path]).data();
        assert_eq!(out["count"], n as u64, "{out}");
        (
            out["first_event_id"].as_u64().expect("first_event_id"),
            out["last_event_id"].as_u64().expect("last_event_id"),
        )
    }

    /// `pilotctl --json info` data.
    pub fn info(&self) -> Value {
        self.ctl_json(&["info"]).data()
    }

    /// The daemon log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The pid in the pid file, if any.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Sends `signal` to the daemon named by the pid file; returns its pid.
    pub fn signal_daemon(&self, signal: rustix::process::Signal) -> i32 {
        let pid = self.pid().expect("daemon pid");
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).expect("a valid pid"),
            signal,
        )
        .expect("signal the daemon");
        pid
    }

    /// `kill -9` of the daemon; returns once it is gone.
    pub fn kill_9(&self) {
        let pid = self.signal_daemon(rustix::process::Signal::KILL);
        assert!(
            wait_gone(pid, Duration::from_secs(10)),
            "daemon {pid} survived SIGKILL"
        );
        // Its main thread can be a zombie while the others still exit holding the socket.
        assert!(
            crate::wait_until(Duration::from_secs(10), || {
                std::os::unix::net::UnixStream::connect(self.socket_path()).is_err()
            }),
            "the socket of daemon {pid} still accepts after SIGKILL"
        );
    }

    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(&self.pilot_home).expect("create pilot home");
        std::fs::write(self.config_path(), text).expect("write config");
    }

    pub fn read_config(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap_or_default()
    }

    pub fn config(&self) -> Value {
        serde_json::from_str(&self.read_config()).expect("config.json is valid JSON")
    }
}

/// A process the test spawned itself; killed and reaped when dropped.
pub struct Spawned(pub std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether process `pid` exists and is not a zombie waiting to be reaped.
pub fn alive(pid: i32) -> bool {
    let exists = rustix::process::Pid::from_raw(pid)
        .map(|p| rustix::process::test_kill_process(p).is_ok())
        .unwrap_or(false);
    if !exists {
        return false;
    }
    // /proc/<pid>/stat: "pid (comm) STATE ..."; comm may hold spaces, so split after the ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// The resident memory of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// How many file descriptors process `pid` has open.
pub fn open_fds(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Waits up to `timeout` for `pid` to exit.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    crate::wait_until(timeout, || !alive(pid))
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                wait_gone(pid, Duration::from_secs(2));
            }
        }
    }
}
