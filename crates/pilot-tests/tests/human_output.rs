//! What people read: aligned tables, colour only on a terminal and never with NO_COLOR,
//! `--json` on every command, completion scripts and man pages generated from the CLI.

use std::process::Command;
use std::time::Duration;

use pilot_tests::{wait_until, Env, Receiver, Reply};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const ESC: char = '\x1b';

/// A daemon whose delivery log has a success and a failure with an error text.
fn daemon_with_deliveries() -> (Env, Receiver) {
    let env = Env::new();
    let rx = Receiver::start();
    env.start(&["--webhook", &rx.url(), "--max-attempts", "1"]);
    env.emit("ok.one", None);
    rx.wait_for(2, WAIT);
    rx.set_default(Reply::Status(500));
    env.emit(
        "handshake.received",
        Some(r#"{"peer_node_id":7,"justification":"want to collaborate"}"#),
    );
    rx.wait_for(3, WAIT);
    assert!(wait_until(WAIT, || env.info()["webhook"]["failed"] == 1));
    (env, rx)
}

/// Checks that every row of a table lines up with its header: a left-aligned column's cells
/// start where its header starts, a right-aligned one's end where its header ends.
fn assert_aligned(table: &str, right: &[&str]) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let mut columns = Vec::new();
    let mut start = None;
    for (i, c) in header.char_indices().chain([(header.len(), ' ')]) {
        match (c == ' ', start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                columns.push((&header[s..i], s, i));
                start = None;
            }
            _ => {}
        }
    }
    let rows: Vec<Vec<char>> = lines.map(|l| l.chars().collect()).collect();
    assert!(!rows.is_empty(), "no rows: {table}");
    let at = |row: &Vec<char>, i: usize| row.get(i).copied().unwrap_or(' ');
    for row in &rows {
        for &(name, s, e) in &columns {
            if right.contains(&name) {
                assert!(
                    at(row, e - 1) != ' ' && at(row, e) == ' ',
                    "{name} not right-aligned:\n{table}"
                );
            } else if row.len() > s {
                // (a row may end before an empty last column)
                assert!(
                    at(row, s) != ' ' && (s == 0 || at(row, s - 1) == ' '),
                    "{name} not left-aligned:\n{table}"
                );
            }
        }
    }
}

/// Runs `pilotctl ARGS` under a pseudo-terminal with `script` (util-linux), with or without
/// NO_COLOR; `None` when `script` is not installed.
fn on_a_terminal(env: &Env, args: &str, no_color: bool) -> Option<String> {
    let mut cmd = env.command(std::path::Path::new("script"));
    cmd.args([
        "-qec",
        &format!("{} {args}", env.pilotctl_bin().display()),
        "/dev/null",
    ])
    .env("TERM", "xterm-256color")
    .env_remove("NO_COLOR")
    .env_remove("CLICOLOR_FORCE");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    match cmd.output() {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")),
        Err(_) => {
            eprintln!("`script` is not installed: the terminal colour check is skipped");
            None
        }
    }
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let (env, _rx) = daemon_with_deliveries();
    for args in ["webhook deliveries", "info"] {
        if let Some(tty) = on_a_terminal(&env, args, false) {
            assert!(tty.contains(ESC), "{args}: a terminal gets colour:\n{tty}");
            let plain = on_a_terminal(&env, args, true).unwrap();
            assert!(
                !plain.contains(ESC),
                "{args}: NO_COLOR on a terminal:\n{plain}"
            );
            assert!(plain.contains("TIME") || plain.contains("webhook"));
        }
        // Piped (not a terminal), with and without NO_COLOR.
        let argv: Vec<&str> = args.split(' ').collect();
        let piped = env
            .command(&env.pilotctl_bin())
            .args(&argv)
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&piped.stdout);
        assert!(piped.status.success() && !text.is_empty());
        assert!(
            !text.contains(ESC),
            "{args}: piped output has no escape codes:\n{text}"
        );
        let run = env.ctl(&argv);
        assert!(!run.stdout.contains(ESC), "{args} with NO_COLOR: {run:?}");
    }
}

#[test]
fn tables_line_up() {
    let (env, _rx) = daemon_with_deliveries();
    let run = env.ctl(&["webhook", "deliveries"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout.lines().count(),
        4,
        "header and three attempts: {run:?}"
    );
    assert!(run.stdout.contains("HTTP 500"), "{run:?}");
    assert_aligned(&run.stdout, &["EVENT_ID", "ATTEMPT", "STATUS", "LATENCY"]);

    // A second subscriber, so the bus table has rows of different widths.
    let _events = env.spawn_ctl(&["events", "--filter", "handshake.*"]);
    assert!(wait_until(WAIT, || {
        env.info()["bus"]["subscribers"].as_array().unwrap().len() == 2
    }));
    let info = env.ctl(&["info"]).stdout;
    let table: String = info
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("ID "))
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    assert_eq!(table.lines().count(), 3, "{info}");
    assert_aligned(&table, &["ID", "BUFFERED", "QUEUED", "DROPPED"]);
    assert!(info.contains("circuit:       closed"), "{info}");
}

/// The `data` of a `--json` success line.
fn data(env: &Env, args: &[&str]) -> Value {
    env.ctl_json(args).data()
}

#[test]
fn every_command_speaks_json() {
    let (env, rx) = daemon_with_deliveries();
    let dir = env.tmp.path().join("man");
    let dir_arg = dir.display().to_string();
    let url = rx.url();
    rx.set_default(Reply::Status(200));
    let events = env.tmp.path().join("events.jsonl");
    std::fs::write(&events, "{\"event\":\"a.b\"}\n").unwrap();
    let events_arg = events.display().to_string();
    let commands: &[&[&str]] = &[
        &["daemon", "status"],
        &["info"],
        &["emit", "a.b", "--data", "{}"],
        &["emit", "--file", &events_arg],
        &["set-webhook", &url],
        &["webhook", "secret", "rotate", "--grace", "1s"],
        &["webhook", "secret", "show"],
        &["webhook", "deliveries", "--limit", "2"],
        &["webhook", "test"],
        &["webhook", "redeliver", "1"],
        &["config"],
        &["config", "--set", "hostname=n1"],
        &["completions", "bash"],
        &["man"],
        &["man", "--dir", &dir_arg],
        &["daemon", "install-service", "--print"],
        &["clear-webhook"],
        &["daemon", "stop"],
    ];
    for args in commands {
        let d = data(&env, args);
        assert!(d.is_object(), "{args:?}: {d}");
    }
    // Streams are JSON lines with or without --json; errors are one JSON line on stderr.
    env.start(&[]);
    let mut watch = env.spawn_ctl(&["--json", "events", "--count", "1"]);
    assert!(wait_until(WAIT, || {
        env.info()["bus"]["subscribers"].as_array().unwrap().len() == 1
    }));
    env.emit("x.y", None);
    let line = watch.wait_stdout(1, WAIT)[0].clone();
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["event"], "x.y");
    assert!(watch.wait_exit(WAIT).is_some_and(|s| s.success()));
    env.stop();
    assert_eq!(env.ctl_json(&["info"]).error_code(), "not_running");
}

#[test]
fn completion_scripts_name_the_commands() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = env.ctl(&["completions", shell]);
        assert_eq!(run.code, 0, "{run:?}");
        for sub in [
            "daemon",
            "set-webhook",
            "webhook",
            "emit",
            "config",
            "install-service",
        ] {
            assert!(run.stdout.contains(sub), "{shell} script lacks {sub}");
        }
        let path = env.tmp.path().join(format!("pilotctl.{shell}"));
        std::fs::write(&path, &run.stdout).unwrap();
        // Each shell checks its script's syntax, where it is installed.
        match Command::new(shell).arg("-n").arg(&path).output() {
            Ok(out) => assert!(out.status.success(), "{shell} -n: {out:?}"),
            Err(_) => eprintln!("{shell} is not installed: its syntax check is skipped"),
        }
    }
    assert_eq!(
        env.ctl_json(&["completions", "tcsh"]).error_code(),
        "invalid_argument"
    );
}

#[test]
fn man_pages_are_valid_roff() {
    let env = Env::new();
    let run = env.ctl(&["man"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with(".ie \\n(.g .ds Aq \\(aq\n"),
        "{}",
        &run.stdout[..40]
    );
    assert!(run.stdout.contains("\n.TH pilotctl 1 "), "a .TH header");
    assert!(run.stdout.contains("install-service") || run.stdout.contains("daemon"));

    let dir = env.tmp.path().join("man1");
    let data = env
        .ctl_json(&["man", "--dir", &dir.display().to_string()])
        .data();
    let files: Vec<&str> = data["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files[0].ends_with("/pilotctl.1"), "{files:?}");
    assert!(files
        .iter()
        .any(|f| f.ends_with("/pilotctl-daemon-install-service.1")));
    assert!(files.iter().any(|f| f.ends_with("/pilotctl-config.1")));
    for f in &files {
        assert!(std::path::Path::new(f).is_file(), "{f}");
    }
    let rendered = Command::new("man")
        .arg("-l")
        .arg(dir.join("pilotctl-config.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output();
    match rendered {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("SYNOPSIS") && text.contains("--unset"),
                "{text}"
            );
        }
        Ok(out) => panic!("man -l failed: {out:?}"),
        Err(_) => eprintln!("man is not installed: rendering check skipped"),
    }
}
