//! `daemon start`, `daemon stop` and `daemon status`: the daemon's lifecycle seen from the CLI.

use std::path::Path;
use std::time::{Duration, Instant};

use pilot_ipc::{Client, ClientError};
use serde::Serialize;

use crate::cli::StartArgs;
use crate::context::{show, Context};
use crate::output::{aligned, code, format_uptime, CliError, Output};
use crate::process;

/// How long `daemon start` waits for the new daemon to answer.
const START_WAIT: Duration = Duration::from_secs(15);
/// How often `daemon start` tries to connect while it waits.
const START_POLL: Duration = Duration::from_millis(20);
/// How long `daemon stop` waits after the shutdown request, then after SIGTERM, then after SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(10);
const TERM_WAIT: Duration = Duration::from_secs(5);
const KILL_WAIT: Duration = Duration::from_secs(2);
/// Log lines quoted when the daemon fails to start.
const LOG_LINES: usize = 10;

#[derive(Debug, Serialize)]
struct Started {
    pid: u32,
    socket: String,
    log_file: String,
    webhook: String,
    node_id: u32,
}

/// `daemon start`.
pub async fn start(ctx: &Context, args: &StartArgs) -> Result<Output, CliError> {
    if let Some(url) = &args.run.webhook {
        pilot_core::webhook_url::validate(url)?;
    }
    // Checked here so a bad flag starts nothing; the daemon merges them over the config's.
    let overrides = crate::settings::from_flags(&args.run.settings)?;
    let env = ctx.env()?;
    if let Some(url) = args.run.webhook.as_deref().filter(|u| !u.trim().is_empty()) {
        overrides
            .url_policy(env.config.url_policy()?)
            .validate(url)?;
    }
    let node_id = match args.run.node_id {
        Some(n) => n,
        None => env.config.node_id()?.unwrap_or(0),
    };
    // As the daemon resolves it: the flag, else config.json, else the URL the Go daemon left
    // in `webhook_url` when the policy accepts it.
    let webhook = match args
        .run
        .webhook
        .as_deref()
        .map(str::trim)
        .or(env.config.webhook())
    {
        Some(url) => url.to_string(),
        None => {
            // (Config settings the daemon refuses stop its start, with their own error.)
            let base = pilot_core::endpoint::default_settings(&env.config).unwrap_or_default();
            let policy = args
                .run
                .settings
                .apply(base)
                .url_policy(env.config.url_policy()?);
            pilot_core::go_files::WebhookUrlFile::read(&env.home, &policy)
                .url()
                .map(|u| u.as_str().to_string())
                .unwrap_or_default()
        }
    };
    match Client::connect(&env.socket).await {
        Ok(c) => {
            return Err(CliError::new(
                code::ALREADY_RUNNING,
                format!(
                    "a daemon is already running (pid {}) on {}",
                    c.server().pid,
                    show(&env.socket)
                ),
            ))
        }
        Err(ClientError::NotRunning { .. }) => {}
        Err(e) => {
            return Err(CliError::from(e).context(format!(
                "something is listening on {} but does not answer as a daemon",
                show(&env.socket)
            )))
        }
    }
    env.home.ensure()?;
    crate::settings::warn_insecure(&overrides);
    let bin = process::locate_daemon().map_err(|m| CliError::new(code::START_FAILED, m))?;
    let daemon_args = process::daemon_args(args, &env.socket);

    if args.foreground {
        let err = process::exec_attached(&bin, &daemon_args);
        return Err(CliError::new(
            code::START_FAILED,
            format!("cannot run {}: {err}", bin.display()),
        ));
    }

    let log_path = env.home.log_file();
    let log = process::open_log(&log_path)
        .map_err(|e| CliError::io(format!("cannot open log file {}: {e}", show(&log_path))))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut child = process::spawn_detached(&bin, &daemon_args, &log).map_err(|e| {
        CliError::new(
            code::START_FAILED,
            format!("cannot run {}: {e}", bin.display()),
        )
    })?;
    drop(log);
    let pid = child.id();
    let deadline = Instant::now() + START_WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::new(
                code::START_FAILED,
                exited_message(status, &log_path, log_start),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok(c)) = tokio::time::timeout(left, Client::connect(&env.socket)).await {
            let answered = c.server().pid;
            // Another daemon answering is not ours; ours will exit on its lock or socket.
            if answered == pid || answered == 0 {
                break;
            }
        }
        if Instant::now() >= deadline {
            return Err(CliError::new(
                code::TIMEOUT,
                format!(
                    "pilot-daemon (pid {pid}) did not answer on {} within {}s; it may still be \
                     starting: see {}",
                    show(&env.socket),
                    START_WAIT.as_secs(),
                    show(&log_path)
                ),
            ));
        }
        tokio::time::sleep(START_POLL).await;
    }

    let started = Started {
        pid,
        socket: show(&env.socket),
        log_file: show(&log_path),
        webhook: pilot_core::webhook_url::redact_str(&webhook),
        node_id,
    };
    let text = format!(
        "daemon started (pid {pid})\n{}",
        aligned(
            &[
                ("socket", started.socket.clone()),
                ("log", started.log_file.clone()),
                ("webhook", or_none(&started.webhook)),
                ("node id", node_id.to_string()),
            ],
            2
        )
    );
    Ok(Output::report(&started, text))
}

fn exited_message(status: std::process::ExitStatus, log: &Path, from: u64) -> String {
    let how = match status.code() {
        Some(c) => format!("exited with status {c}"),
        None => format!("was killed ({status})"),
    };
    let tail = process::log_tail(log, from, LOG_LINES);
    if tail.is_empty() {
        format!(
            "pilot-daemon {how} before answering (nothing in {})",
            show(log)
        )
    } else {
        format!(
            "pilot-daemon {how} before answering; last lines of {}:\n  {}",
            show(log),
            tail.join("\n  ")
        )
    }
}

#[derive(Debug, Serialize)]
struct Stopped {
    pid: u32,
    forced: bool,
}

/// `daemon stop`.
pub async fn stop(ctx: &Context) -> Result<Output, CliError> {
    let env = ctx.env()?;
    let pid_file = env.home.pid_file();
    let file_pid = process::read_pid_file(&pid_file);
    let pid = match Client::connect(&env.socket).await {
        Ok(mut c) => {
            let hello_pid = c.server().pid;
            // The reply may be lost if the daemon closes first; the pid watch below decides.
            let reply = c.shutdown(Some("pilotctl daemon stop")).await;
            let pid = match reply {
                Ok(r) if r.pid != 0 => r.pid,
                _ if hello_pid != 0 => hello_pid,
                _ => file_pid.unwrap_or(0),
            };
            drop(c);
            if pid == 0 {
                // No pid to watch: wait for the socket to stop answering instead.
                wait_socket_gone(&env.socket, STOP_WAIT).await;
                return Ok(stopped(0, false));
            }
            if process::wait_exit(pid, STOP_WAIT).await {
                remove_stale_pid_file(&pid_file, pid);
                return Ok(stopped(pid, false));
            }
            pid
        }
        Err(ClientError::NotRunning { .. }) => {
            let message = match file_pid {
                Some(p) if process::pid_alive(p) => format!(
                    "no daemon answers on {} ({} names process {p}, which is alive but not \
                     listening there; leaving it alone)",
                    show(&env.socket),
                    show(&pid_file)
                ),
                Some(p) => {
                    remove_stale_pid_file(&pid_file, p);
                    format!(
                        "no daemon is running at {} (removed stale pid file {})",
                        show(&env.socket),
                        show(&pid_file)
                    )
                }
                None => format!("no daemon is running at {}", show(&env.socket)),
            };
            return Err(CliError::new(code::NOT_RUNNING, message));
        }
        // Something accepted the connection but did not answer: a wedged daemon, if the pid
        // file names a live process.
        Err(e) => match file_pid.filter(|&p| process::pid_alive(p)) {
            Some(p) => p,
            None => return Err(e.into()),
        },
    };
    process::signal(pid, process::SIGTERM);
    if !process::wait_exit(pid, TERM_WAIT).await {
        process::signal(pid, process::SIGKILL);
        process::wait_exit(pid, KILL_WAIT).await;
    }
    remove_stale_pid_file(&pid_file, pid);
    Ok(stopped(pid, true))
}

fn stopped(pid: u32, forced: bool) -> Output {
    let text = if forced {
        format!("daemon stopped (pid {pid}, forced)")
    } else if pid == 0 {
        "daemon stopped".to_string()
    } else {
        format!("daemon stopped (pid {pid})")
    };
    Output::report(&Stopped { pid, forced }, text)
}

/// Removes `pid_file` if it still names `pid` and that process is gone.
fn remove_stale_pid_file(pid_file: &Path, pid: u32) {
    if process::read_pid_file(pid_file) == Some(pid) && !process::pid_alive(pid) {
        let _ = std::fs::remove_file(pid_file);
    }
}

async fn wait_socket_gone(socket: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && Client::connect(socket).await.is_ok() {
        tokio::time::sleep(START_POLL).await;
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Status {
    pub running: bool,
    pub pid: Option<u32>,
    pub pid_file: String,
    pub socket: String,
    pub responsive: bool,
    pub uptime_secs: Option<u64>,
    pub webhook: String,
}

/// `daemon status [--check]`.
pub async fn status(ctx: &Context, check: bool) -> Result<Output, CliError> {
    let env = ctx.env()?;
    let pid_file = env.home.pid_file();
    let file_pid = process::read_pid_file(&pid_file).filter(|&p| process::pid_alive(p));
    let mut st = Status {
        running: false,
        pid: file_pid,
        pid_file: show(&pid_file),
        socket: show(&env.socket),
        responsive: false,
        uptime_secs: None,
        webhook: env.config.webhook().unwrap_or_default().to_string(),
    };
    match Client::connect(&env.socket).await {
        Ok(mut c) => {
            st.running = true;
            if c.server().pid != 0 {
                st.pid = Some(c.server().pid);
            }
            if let Ok(info) = c.info().await {
                st.responsive = true;
                st.pid = Some(info.pid);
                st.uptime_secs = Some(info.uptime_secs);
                st.webhook = info.webhook.url.unwrap_or_default();
            }
        }
        Err(_) => st.running = file_pid.is_some(),
    }
    if check {
        return Ok(Output::Exit(if st.running { 0 } else { 1 }));
    }
    let text = status_text(&st);
    Ok(Output::report(&st, text))
}

fn status_text(st: &Status) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut rows = vec![(
        "running",
        match (st.running, st.pid) {
            (true, Some(p)) => format!("yes (pid {p})"),
            (r, _) => yes_no(r),
        },
    )];
    if st.running {
        rows.push(("responsive", yes_no(st.responsive)));
    }
    if let Some(u) = st.uptime_secs {
        rows.push(("uptime", format_uptime(u)));
    }
    rows.push(("socket", st.socket.clone()));
    rows.push(("pid file", st.pid_file.clone()));
    rows.push(("webhook", or_none(&st.webhook)));
    aligned(&rows, 0)
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "(none)".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_and_json() {
        let st = Status {
            running: true,
            pid: Some(42),
            pid_file: "/h/pilot.pid".into(),
            socket: "/h/pilot.sock".into(),
            responsive: true,
            uptime_secs: Some(61),
            webhook: String::new(),
        };
        assert_eq!(
            status_text(&st),
            "running:    yes (pid 42)\nresponsive: yes\nuptime:     1m 1s\nsocket:     /h/pilot.sock\n\
             pid file:   /h/pilot.pid\nwebhook:    (none)"
        );
        let Output::Report { data, .. } = Output::report(&st, "") else {
            panic!()
        };
        assert_eq!(
            data.to_string(),
            r#"{"running":true,"pid":42,"pid_file":"/h/pilot.pid","socket":"/h/pilot.sock","responsive":true,"uptime_secs":61,"webhook":""}"#
        );
        let down = Status {
            running: false,
            pid: None,
            responsive: false,
            uptime_secs: None,
            webhook: "http://localhost:8080/events".into(),
            ..st
        };
        assert_eq!(
            status_text(&down),
            "running:  no\nsocket:   /h/pilot.sock\npid file: /h/pilot.pid\n\
             webhook:  http://localhost:8080/events"
        );
    }

    #[test]
    fn a_daemon_that_dies_at_once_is_reported_with_its_log() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("pilot.log");
        std::fs::write(
            &log,
            "earlier run\nerror: another pilot-daemon is running\n",
        )
        .unwrap();
        let status = std::process::Command::new("false").status().unwrap();
        let msg = exited_message(status, &log, "earlier run\n".len() as u64);
        assert!(msg.contains("exited with status 1"), "{msg}");
        assert!(
            msg.contains("error: another pilot-daemon is running"),
            "{msg}"
        );
        assert!(!msg.contains("earlier run"), "{msg}");
    }
}
