//! `pilotctl daemon install-service`: the systemd user unit it prints and writes, and the daemon
//! run exactly as the unit's ExecStart= says. There is no systemd manager here, so the test
//! starts that command line itself (with the unit's Environment=), as systemd would: in the
//! foreground, logging to stderr, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pilot_tests::{Env, LineChild, Run};

const WAIT: Duration = Duration::from_secs(30);
const NEXT: &str =
    "next: systemctl --user daemon-reload && systemctl --user enable --now pilot-daemon";

fn xdg(env: &Env) -> PathBuf {
    env.tmp.path().join("xdg")
}

fn unit_file(env: &Env) -> PathBuf {
    xdg(env).join("systemd/user/pilot-daemon.service")
}

fn install(env: &Env, args: &[&str]) -> Run {
    let out = env
        .command(&env.pilotctl_bin())
        .env("XDG_CONFIG_HOME", xdg(env))
        .args(["daemon", "install-service"])
        .args(args)
        .output()
        .expect("run pilotctl");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The values of `Key=` lines, as systemd splits them into words (double quotes with C escapes,
/// `%%` and `$$` unescaped).
fn words(unit: &str, key: &str) -> Vec<Vec<String>> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|value| {
            let mut out = Vec::new();
            let mut cur = String::new();
            let (mut quoted, mut any) = (false, false);
            let mut chars = value.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => (quoted, any) = (!quoted, true),
                    '\\' if quoted => cur.extend(chars.next()),
                    ' ' if !quoted => {
                        if any {
                            out.push(std::mem::take(&mut cur));
                        }
                        any = false;
                    }
                    _ => {
                        cur.push(c);
                        any = true;
                    }
                }
            }
            if any {
                out.push(cur);
            }
            out.into_iter()
                .map(|w| w.replace("%%", "%").replace("$$", "$"))
                .collect()
        })
        .collect()
}

#[test]
fn print_shows_the_unit_and_writes_nothing() {
    let env = Env::new();
    let run = install(&env, &["--print"]);
    assert_eq!(run.code, 0, "{run:?}");
    let daemon = env.daemon_bin();
    assert!(
        run.stdout
            .contains(&format!("\nExecStart={}\n", daemon.display())),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!(
            "\nEnvironment=PILOT_HOME={}\n",
            env.pilot_home.display()
        )),
        "{run:?}"
    );
    for line in [
        "[Service]",
        "Type=exec",
        "Restart=on-failure",
        "WantedBy=default.target",
    ] {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "{line} missing: {run:?}"
        );
    }
    assert!(!unit_file(&env).exists());

    let data = install(&env, &["--print", "--json"]).data();
    assert_eq!(data["written"], false);
    assert_eq!(data["path"], unit_file(&env).display().to_string());
    assert_eq!(
        data["unit"].as_str().unwrap().trim_end(),
        run.stdout.trim_end()
    );
}

#[test]
fn an_existing_different_unit_is_kept_without_force() {
    let env = Env::new();
    let run = install(&env, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(NEXT), "{run:?}");
    let again = install(&env, &["--json"]).data();
    assert_eq!(again["written"], false, "the same unit is not rewritten");

    std::fs::write(unit_file(&env), "[Service]\nExecStart=/bin/true\n").unwrap();
    let run = install(&env, &["--json"]);
    assert_eq!(run.error_code(), "already_exists");
    assert_eq!(
        std::fs::read_to_string(unit_file(&env)).unwrap(),
        "[Service]\nExecStart=/bin/true\n"
    );
    assert_eq!(
        install(&env, &["--json", "--force"]).data()["written"],
        true
    );
    assert!(std::fs::read_to_string(unit_file(&env))
        .unwrap()
        .contains("Restart=on-failure"));
}

#[test]
fn the_unit_s_command_runs_the_daemon_in_the_foreground() {
    let env = Env::new();
    let run = install(&env, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let unit = std::fs::read_to_string(unit_file(&env)).unwrap();
    verify_with_systemd(&unit_file(&env));

    let exec = words(&unit, "ExecStart").pop().expect("one ExecStart=");
    assert_eq!(Path::new(&exec[0]), env.daemon_bin());
    // As systemd runs it: its own small environment plus the unit's Environment= lines.
    let mut cmd = Command::new(&exec[0]);
    cmd.args(&exec[1..])
        .env_clear()
        .env("HOME", &env.home)
        .env("PATH", "/usr/bin:/bin");
    for assignment in words(&unit, "Environment").concat() {
        let (k, v) = assignment.split_once('=').expect("VAR=value");
        cmd.env(k, v);
    }
    let mut daemon = LineChild::spawn(cmd);
    let up = pilot_tests::wait_until(WAIT, || env.ctl_json(&["info"]).code == 0);
    assert!(
        up,
        "the daemon did not answer; stderr: {:?}",
        daemon.stderr()
    );
    let info = env.info();
    assert_eq!(info["pid"], daemon.id());
    assert_eq!(info["socket"], env.socket_path().display().to_string());
    daemon.wait_stderr(" ready", WAIT); // "pilot-daemon 0.1.0 ready", on stderr
    assert!(daemon.stdout().is_empty(), "logs go to stderr");

    let pid = rustix::process::Pid::from_raw(daemon.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = daemon.wait_exit(WAIT).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr: {:?}", daemon.stderr());
    daemon.wait_stderr("pilot-daemon stopped", WAIT);
    assert!(!env.socket_path().exists() && !env.pid_path().exists());
}

/// `systemd-analyze verify` reads the unit as systemd would (skipped, with a note, when the
/// tool is missing). It exits non-zero here because the man page it links is not installed, so
/// the check is that it reports no line of the unit.
fn verify_with_systemd(unit: &Path) {
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
    else {
        eprintln!("systemd-analyze is not installed: unit syntax check skipped");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = unit.display().to_string();
    for line in stderr.lines() {
        let rest = line.strip_prefix(&format!("{name}:")).unwrap_or("");
        assert!(
            !rest.starts_with(|c: char| c.is_ascii_digit()),
            "systemd-analyze verify objects to the unit: {stderr}"
        );
    }
}
