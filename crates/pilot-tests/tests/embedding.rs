//! docs/embedding.md stays true: the pilot-ipc example programs and the Python snippet publish
//! to a real daemon, and what they publish reaches a subscriber and the webhook receiver.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pilot_tests::{Env, LineChild, Receiver};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds pilot-ipc's examples into the target dir the binaries under test come from, and
/// returns that dir's `examples/`.
fn examples() -> PathBuf {
    let bins = pilot_tests::env::bin_dir();
    let target = bins.parent().expect("target dir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo())
        .args([
            "build",
            "--quiet",
            "-p",
            "pilot-ipc",
            "--examples",
            "--target-dir",
        ])
        .arg(target);
    if bins.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build -p pilot-ipc --examples failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bins.join("examples")
}

fn ids(lines: &[String], name: &str) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            let (id, event) = l.split_once(' ').unwrap_or_else(|| panic!("line {l:?}"));
            assert_eq!(event, name, "{l:?}");
            id.trim_start_matches('#').parse().expect("an event id")
        })
        .collect()
}

#[test]
fn the_example_programs_publish_and_subscribe() {
    let examples = examples();
    let env = Env::new();
    let receiver = Receiver::start();
    env.start(&["--webhook", &receiver.url()]);

    let mut sub = env.command(&examples.join("subscribe"));
    sub.args(["demo.*", "3"]);
    let mut sub = LineChild::spawn(sub);
    sub.wait_stderr("subscribed to demo.*", WAIT);

    let out = env
        .command(&examples.join("publish"))
        .args(["demo.published", r#"{"n":1}"#, "3"])
        .output()
        .expect("run publish");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "publish: {out:?}");
    let lines: Vec<String> = stdout.lines().map(String::from).collect();
    let published = ids(&lines, "demo.published");
    assert_eq!(published.len(), 3, "{stdout}");

    let got: Vec<Value> = sub
        .wait_stdout(3, WAIT)
        .iter()
        .map(|l| serde_json::from_str(l).expect("subscribe prints JSON lines"))
        .collect();
    let seen: Vec<u64> = got
        .iter()
        .map(|e| e["event_id"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, published);
    assert!(got
        .iter()
        .all(|e| e["event"] == "demo.published" && e["data"]["n"] == 1));
    assert_eq!(
        sub.wait_exit(WAIT).map(|s| s.code()),
        Some(Some(0)),
        "exits after COUNT"
    );

    let delivered = receiver.wait_for(4, WAIT); // daemon.started, then the three
    let at_receiver: Vec<u64> = delivered
        .iter()
        .filter(|r| r.event() == "demo.published")
        .map(|r| r.json()["event_id"].as_u64().unwrap())
        .collect();
    assert_eq!(at_receiver, published);

    // Without a daemon the example says so and fails.
    env.stop();
    let out = env
        .command(&examples.join("publish"))
        .output()
        .expect("run publish");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no daemon is running"));
}

fn doc(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn embedding_md_includes_the_programs_it_shows_verbatim() {
    let page = doc("docs/embedding.md");
    for (file, fence) in [
        ("docs/embedding/emit.py", "```python\n"),
        ("crates/pilot-ipc/examples/publish.rs", "```rust\n"),
    ] {
        let block = format!("{fence}{}```", doc(file));
        assert!(
            page.contains(&block),
            "docs/embedding.md must include {file} verbatim"
        );
    }
}

#[test]
fn the_python_snippet_emits_through_the_raw_protocol() {
    let env = Env::new();
    let receiver = Receiver::start();
    env.start(&["--webhook", &receiver.url()]);
    let script = repo().join("docs/embedding/emit.py");
    let run = |args: &[&str]| {
        env.command(Path::new("python3"))
            .arg(&script)
            .args(args)
            .output()
            .expect("run python3")
    };
    let out = run(&[
        "handshake.received",
        r#"{"peer_node_id":7,"justification":"hi"}"#,
    ]);
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let id = ids(&[line], "handshake.received")[0];
    let delivered = receiver.wait_for(2, WAIT);
    let body = delivered
        .iter()
        .map(|r| r.json())
        .find(|b| b["event"] == "handshake.received")
        .expect("the event reached the receiver");
    assert_eq!(body["event_id"], id);
    assert_eq!(body["data"]["peer_node_id"], 7);

    // A refused event is the daemon's error, on stderr, exit 1.
    let out = run(&["Bad"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_argument"));
}
