//! The docs stay true: receiving.md includes the receivers the tests run, verbatim, cli.md
//! documents every command and flag `pilotctl --help` lists, and every test reliability.md names
//! exists.

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
        &["webhook", "render"],
        &["webhook", "add"],
        &["webhook", "list"],
        &["webhook", "show"],
        &["webhook", "update"],
        &["webhook", "remove"],
        &["webhook", "pause"],
        &["webhook", "resume"],
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

/// Every `.rs` file under `dir`, with its path.
fn rust_files(dir: &std::path::Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
}

#[test]
fn every_test_reliability_md_names_exists() {
    let page = read("reliability.md");
    let mut sources = Vec::new();
    rust_files(&docs().join("../crates"), &mut sources);
    let mut checked = 0;
    // `file.rs::function` (the file by the end of its path), a bare `function_name` in a table
    // whose header names the file, or a fuzz target's name.
    for token in page.split('`').skip(1).step_by(2) {
        let (file, name) = match token.rsplit_once("::") {
            Some((file, name)) if file.ends_with(".rs") => (Some(file), name),
            Some(_) => continue,
            None => (None, token),
        };
        let is_fn_name = name.matches('_').count() >= 2
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !is_fn_name {
            continue;
        }
        let fuzz_target = docs().join(format!("../fuzz/fuzz_targets/{name}.rs"));
        let needle = format!("fn {name}(");
        let found = (file.is_none() && fuzz_target.exists())
            || sources.iter().any(|(path, text)| {
                file.is_none_or(|f| path.to_string_lossy().ends_with(f)) && text.contains(&needle)
            });
        assert!(
            found,
            "docs/reliability.md names `{token}`, which no test defines"
        );
        checked += 1;
    }
    assert!(
        checked >= 40,
        "only {checked} tests named in reliability.md"
    );
}
