//! Processes: finding `pilot-daemon`, starting it detached or attached, and watching and
//! signalling a daemon by its pid.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::cli::StartArgs;

/// The daemon's file name.
pub const DAEMON_BIN: &str = "pilot-daemon";
/// The environment variable naming the daemon binary when it is not beside pilotctl.
pub const DAEMON_BIN_ENV: &str = "PILOT_DAEMON_BIN";

/// Finds `pilot-daemon`: in `exe_dir` (pilotctl's own directory), else `env_bin`
/// (`$PILOT_DAEMON_BIN`), else on `path_var` (`$PATH`).
pub fn find_daemon(
    exe_dir: Option<&Path>,
    env_bin: Option<&OsStr>,
    path_var: Option<&OsStr>,
) -> Option<PathBuf> {
    if let Some(dir) = exe_dir {
        let beside = dir.join(DAEMON_BIN);
        if is_executable(&beside) {
            return Some(beside);
        }
    }
    if let Some(bin) = env_bin.filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    std::env::split_paths(path_var?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(DAEMON_BIN))
        .find(|p| is_executable(p))
}

/// [`find_daemon`] with this process's directory and environment.
pub fn locate_daemon() -> Result<PathBuf, String> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let env_bin = std::env::var_os(DAEMON_BIN_ENV);
    let path_var = std::env::var_os("PATH");
    find_daemon(exe_dir.as_deref(), env_bin.as_deref(), path_var.as_deref()).ok_or_else(|| {
        format!(
            "cannot find {DAEMON_BIN}: it is not beside pilotctl{}, ${DAEMON_BIN_ENV} is not set, \
             and it is not on PATH",
            exe_dir
                .map(|d| format!(" (in {})", d.display()))
                .unwrap_or_default()
        )
    })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The `pilot-daemon` arguments for `daemon start` (the socket is always passed, resolved,
/// so the daemon listens where pilotctl waits for it).
pub fn daemon_args(args: &StartArgs, socket: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["--socket".into(), socket.into()];
    if let Some(v) = args.log_format {
        out.push("--log-format".into());
        out.push(v.as_str().into());
    }
    out.extend(args.run.to_args());
    out
}

/// Opens the daemon log for appending (created 0600).
pub fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Starts `bin` in its own session, stdin from /dev/null, stdout and stderr appended to `log`.
pub fn spawn_detached(bin: &Path, args: &[OsString], log: &File) -> io::Result<Child> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed. It makes one raw `setsid` system call (rustix does not allocate or
    // lock) and converts its errno; nothing else is touched.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// Replaces this process with `bin` (stdio inherited); returns only on failure.
pub fn exec_attached(bin: &Path, args: &[OsString]) -> io::Error {
    Command::new(bin).args(args).exec()
}

/// The last `max_lines` non-empty lines written to `path` from byte `from` on (at most the
/// last 16 KiB of them).
pub fn log_tail(path: &Path, from: u64, max_lines: usize) -> Vec<String> {
    const WINDOW: u64 = 16 * 1024;
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(WINDOW)).min(len);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err()
        || file.take(WINDOW).read_to_end(&mut bytes).is_err()
    {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    lines[lines.len().saturating_sub(max_lines)..].to_vec()
}

/// The pid in a pid file (`None` when missing or not a pid).
pub fn read_pid_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A pid we may signal: positive, and never init.
fn as_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|&p| p > 1)
        .and_then(Pid::from_raw)
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    let Some(p) = as_pid(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => !is_zombie(pid),
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Reads the state from `/proc/<pid>/stat` where there is one.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last `)`.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|s| s == "Z" || s == "X")
}

/// Sends `sig` to `pid`; `false` when there is no such process (or it may not be signalled).
pub fn signal(pid: u32, sig: Signal) -> bool {
    as_pid(pid).is_some_and(|p| rustix::process::kill_process(p, sig).is_ok())
}

pub const SIGTERM: Signal = Signal::TERM;
pub const SIGKILL: Signal = Signal::KILL;

/// Waits up to `limit` for `pid` to exit; `true` once it has.
pub async fn wait_exit(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !pid_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn make_exe(path: &Path) {
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_daemon_beside_pilotctl_wins_then_the_env_then_path() {
        let tmp = tempfile::tempdir().unwrap();
        let beside = tmp.path().join("bin");
        let on_path = tmp.path().join("path");
        fs::create_dir_all(&beside).unwrap();
        fs::create_dir_all(&on_path).unwrap();
        let path_var = std::env::join_paths([tmp.path().join("nothing"), on_path.clone()]).unwrap();
        let env = OsStr::new("/opt/pilot-daemon");

        assert_eq!(find_daemon(Some(&beside), None, Some(&path_var)), None);
        make_exe(&on_path.join(DAEMON_BIN));
        assert_eq!(
            find_daemon(Some(&beside), None, Some(&path_var)),
            Some(on_path.join(DAEMON_BIN))
        );
        assert_eq!(
            find_daemon(Some(&beside), Some(env), Some(&path_var)),
            Some(PathBuf::from("/opt/pilot-daemon"))
        );
        assert_eq!(
            find_daemon(Some(&beside), Some(OsStr::new("")), Some(&path_var)),
            Some(on_path.join(DAEMON_BIN))
        );
        make_exe(&beside.join(DAEMON_BIN));
        assert_eq!(
            find_daemon(Some(&beside), Some(env), Some(&path_var)),
            Some(beside.join(DAEMON_BIN))
        );
    }

    #[test]
    fn a_file_that_is_not_executable_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(DAEMON_BIN), "x").unwrap();
        assert_eq!(find_daemon(Some(tmp.path()), None, None), None);
        let path_var = tmp.path().as_os_str();
        assert_eq!(find_daemon(None, None, Some(path_var)), None);
    }

    #[test]
    fn daemon_args_pass_every_option_through() {
        let args = StartArgs {
            log_format: Some(crate::cli::LogFormat::Json),
            foreground: true,
            run: crate::cli::RunArgs {
                webhook: Some("http://localhost:8080/events".into()),
                node_id: Some(5),
                log_level: Some("debug".into()),
                queue_size: Some(8),
                webhook_timeout: Some(Duration::from_millis(500)),
                max_attempts: Some(2),
                backoff: Some(Duration::from_millis(1500)),
                circuit_threshold: Some(4),
                circuit_cooldown: Some(Duration::from_secs(30)),
                settings: crate::cli::SettingsArgs {
                    events: vec!["handshake.*".into(), "trust.*".into()],
                    exclude: vec!["data.datagram".into()],
                    durable: true,
                    max_spool_bytes: Some(1024),
                    discard_after: Some(Duration::from_secs(3600)),
                    max_backoff: Some(Duration::from_secs(60)),
                    dead_letter_max_bytes: Some(1 << 20),
                    dead_letter_retention: Some(Duration::from_secs(3 * 86400)),
                    retain: Some(Duration::from_secs(7200)),
                    retain_max_bytes: Some(4096),
                    headers: vec!["X-A: 1".into(), "X-B: 2".into()],
                    bearer_token_file: Some("/t/token".into()),
                    basic_auth_file: None,
                    insecure_tls: true,
                    deny_private: true,
                    batch_max: Some(10),
                    batch_wait: Some(Duration::from_millis(50)),
                    concurrency: Some(2),
                    ..Default::default()
                },
                metrics_addr: Some("127.0.0.1:9464".into()),
            },
        };
        let got: Vec<String> = daemon_args(&args, Path::new("/h/pilot.sock"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "--socket",
                "/h/pilot.sock",
                "--log-format",
                "json",
                "--webhook",
                "http://localhost:8080/events",
                "--node-id",
                "5",
                "--log-level",
                "debug",
                "--queue-size",
                "8",
                "--webhook-timeout",
                "500ms",
                "--max-attempts",
                "2",
                "--backoff",
                "1s 500ms",
                "--circuit-threshold",
                "4",
                "--circuit-cooldown",
                "30s",
                "--metrics-addr",
                "127.0.0.1:9464",
                "--events",
                "handshake.*,trust.*",
                "--exclude",
                "data.datagram",
                "--max-spool-bytes",
                "1024",
                "--discard-after",
                "1h",
                "--max-backoff",
                "1m",
                "--dead-letter-max-bytes",
                "1048576",
                "--dead-letter-retention",
                "72h",
                "--retain",
                "2h",
                "--retain-max-bytes",
                "4096",
                "--header",
                "X-A: 1",
                "--header",
                "X-B: 2",
                "--bearer-token-file",
                "/t/token",
                "--batch-max",
                "10",
                "--batch-wait",
                "50ms",
                "--concurrency",
                "2",
                "--durable",
                "--insecure-tls",
                "--deny-private",
            ]
        );
        for d in ["500ms", "1s 500ms", "30s"] {
            assert!(pilot_core::duration::parse(d).is_ok());
        }
        let bare = daemon_args(&StartArgs::default(), Path::new("/s"));
        assert_eq!(bare, [OsString::from("--socket"), OsString::from("/s")]);
    }

    #[test]
    fn log_tail_reads_only_new_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pilot.log");
        let mut f = open_log(&path).unwrap();
        writeln!(f, "old line").unwrap();
        let from = f.metadata().unwrap().len();
        writeln!(f, "one\n\ntwo\nthree").unwrap();
        assert_eq!(log_tail(&path, from, 2), ["two", "three"]);
        assert_eq!(log_tail(&path, from, 10), ["one", "two", "three"]);
        assert_eq!(log_tail(&path, 0, 10).len(), 4);
        assert!(log_tail(&tmp.path().join("none"), 0, 5).is_empty());
        assert!(log_tail(&path, 1 << 40, 5).is_empty());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn pids() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(1_u32 << 31));
        assert!(!signal(0, SIGTERM));
        let tmp = tempfile::tempdir().unwrap();
        let pid_file = tmp.path().join("pilot.pid");
        fs::write(&pid_file, "1234\n").unwrap();
        assert_eq!(read_pid_file(&pid_file), Some(1234));
        fs::write(&pid_file, "junk").unwrap();
        assert_eq!(read_pid_file(&pid_file), None);
    }

    #[test]
    fn an_exited_child_is_not_alive_even_before_it_is_reaped() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!pid_alive(pid), "a zombie counts as gone");
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
