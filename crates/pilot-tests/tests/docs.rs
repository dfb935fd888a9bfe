//! The docs stay true: receiving.md includes the receivers the tests run, verbatim, and
//! cli.md documents every command and flag `pilotctl --help` lists.

use std::path::PathBuf;

use pilot_tests::Env;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(docs().join(rel)).unwrap_or_else(|e| panic!("docs/{rel}: {e}"))
}

#[test]
fn receiving_md_includes_both_receivers_verbatim() {
    let page = read("receiving.md");
    for (file, fence) in [
        ("receivers/receiver.py", "```python\n"),
        ("receivers/receiver.js", "```js\n"),
    ] {
        let code = read(file);
        let block = format!("{fence}{code}```");
        assert!(
            page.contains(&block),
            "docs/receiving.md must include docs/{file} verbatim in a {fence:?} block"
        );
    }
}

/// The long flags in a `--help` text.
fn flags(help: &str) -> Vec<String> {
    help.split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .to_string()
        })
        .filter(|w| w.len() > 2 && w != "--help" && w != "--version")
        .collect()
}

#[test]
fn cli_md_documents_every_command_and_flag() {
    let env = Env::new();
    let page = read("cli.md");
    let commands: &[&[&str]] = &[
        &["daemon", "start"],
        &["daemon", "stop"],
        &["daemon", "status"],
        &["set-webhook"],
        &["clear-webhook"],
        &["webhook", "secret", "show"],
        &["webhook", "secret", "rotate"],
        &["webhook", "deliveries"],
        &["webhook", "test"],
        &["webhook", "redeliver"],
        &["info"],
        &["emit"],
        &["events"],
        &["events", "catalog"],
        &["listen"],
        &["config"],
        &["completions"],
        &["man"],
        &["daemon", "install-service"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let run = env.ctl(&args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        let name = cmd.join(" ");
        assert!(
            page.contains(&format!("pilotctl {name}")),
            "docs/cli.md has no example of `pilotctl {name}`"
        );
        for flag in flags(&run.stdout) {
            assert!(
                page.contains(&format!("`{flag}")),
                "docs/cli.md does not document `{flag}` of `pilotctl {name}`"
            );
        }
    }
}
