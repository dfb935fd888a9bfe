//! Every command example of the docs runs, and its output is the documented one.
//!
//! An example is a `$ command` line in a ```` ```sh ```` block of README.md or docs/*.md, with the
//! lines after it (up to the next `$`) as its documented output (stdout and stderr, in order).
//! Each one runs with bash against the real binaries in a private home, by default in its own
//! fresh home with a daemon started as `pilotctl daemon start --webhook
//! http://localhost:PORT/events --node-id 5` (PORT: a real receiver on 127.0.0.1, written `8080`
//! in the docs). The HTML comment on the line before a block changes that:
//!
//! - `<!-- not run: REASON -->`: the block is not run (external URLs, systemd, an interactive
//!   pager, a stream that needs another process); the reason is printed, and must be given.
//! - `<!-- docs-test: ITEM; ITEM -->` with items `fresh` (no daemon), `seq` (the examples run in
//!   order in one home, each seeing what the ones before it did), `wait=DURATION` (stop each
//!   command after this long and compare what it printed: for streams) and `before=COMMAND` (run
//!   first, output not compared; repeatable).
//!
//! Outputs are compared line by line after normalising what legitimately varies: the home path
//! (`/home/me`), the receiver's port (`8080`), timestamps, pids, `whsec_` secrets, latencies and
//! uptimes, and runs of spaces (aligned tables). `...` in a documented line matches any text, a
//! line that is only `...` any number of lines. A command documented with no output must
//! succeed; one documented with an `error:` line (or a JSON error) must fail. `$ cat FILE` of a
//! file that does not exist creates it with the documented contents (the example's input).
//! Event ids are compared as written: a fresh daemon's first event is #1 `daemon.started`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use pilot_tests::{Env, Receiver};
use regex::Regex;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and every docs/*.md, by their path in the repository.
fn pages() -> Vec<String> {
    let mut pages: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    pages.sort();
    pages.insert(0, "README.md".into());
    pages
}

#[derive(Debug, Default, Clone)]
struct Plan {
    fresh: bool,
    seq: bool,
    wait: Option<Duration>,
    before: Vec<String>,
}

#[derive(Debug)]
enum How {
    Skip(String),
    Run(Plan),
}

#[derive(Debug)]
struct Example {
    line: usize,
    cmd: String,
    expected: Vec<String>,
}

#[derive(Debug)]
struct Block {
    page: String,
    line: usize,
    how: How,
    examples: Vec<Example>,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.page, self.line)
    }
}

fn parse_annotation(page: &str, line: usize, comment: Option<&str>) -> How {
    let Some(c) = comment
        .and_then(|c| c.strip_prefix("<!--"))
        .and_then(|c| c.strip_suffix("-->"))
        .map(str::trim)
    else {
        return How::Run(Plan::default());
    };
    if let Some(reason) = c.strip_prefix("not run:") {
        assert!(
            !reason.trim().is_empty(),
            "{page}:{line}: `not run:` needs a reason"
        );
        return How::Skip(reason.trim().to_string());
    }
    let Some(items) = c.strip_prefix("docs-test:") else {
        return How::Run(Plan::default());
    };
    let mut plan = Plan::default();
    for item in items.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        match item {
            "fresh" => plan.fresh = true,
            "seq" => plan.seq = true,
            _ => {
                if let Some(d) = item.strip_prefix("wait=") {
                    plan.wait = Some(pilot_core::duration::parse(d).unwrap());
                } else if let Some(cmd) = item.strip_prefix("before=") {
                    plan.before.push(cmd.to_string());
                } else {
                    panic!("{page}:{line}: unknown docs-test item {item:?}");
                }
            }
        }
    }
    How::Run(plan)
}

/// The blocks of `page` that hold `$` examples.
fn blocks(page: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo().join(page)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let comment = lines[..start]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .filter(|l| l.trim_start().starts_with("<!--"))
            .map(|l| l.trim());
        i += 1;
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].starts_with("```") {
            body.push((i + 1, lines[i]));
            i += 1;
        }
        i += 1;
        let has_examples = body.iter().any(|(_, l)| l.starts_with("$ "));
        if !has_examples {
            continue;
        }
        assert_eq!(
            lang.trim(),
            "sh",
            "{page}:{}: a block with `$` examples must be ```sh (so it is run)",
            start + 1
        );
        let mut examples: Vec<Example> = Vec::new();
        let mut j = 0;
        while j < body.len() {
            let (n, l) = body[j];
            if let Some(cmd) = l.strip_prefix("$ ") {
                let mut cmd = cmd.to_string();
                while cmd.ends_with('\\') && j + 1 < body.len() {
                    j += 1;
                    cmd.push('\n');
                    cmd.push_str(body[j].1);
                }
                examples.push(Example {
                    line: n,
                    cmd,
                    expected: Vec::new(),
                });
            } else {
                let ex = examples
                    .last_mut()
                    .unwrap_or_else(|| panic!("{page}:{n}: output before the first `$` example"));
                ex.expected.push(l.to_string());
            }
            j += 1;
        }
        out.push(Block {
            page: page.to_string(),
            line: start + 1,
            how: parse_annotation(page, start + 1, comment),
            examples,
        });
    }
    out
}

struct Replace(Regex, &'static str);

static NORMALISE: LazyLock<Vec<Replace>> = LazyLock::new(|| {
    let r = |re: &str, to: &'static str| Replace(Regex::new(re).unwrap(), to);
    vec![
        r(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "<time>"),
        r(r"whsec_[A-Za-z0-9+/=]+(\.\.\.)?", "whsec_<secret>"),
        r(r#"(pid\W{1,8})\d+"#, "${1}<pid>"),
        r(r"\bin \d+(\.\d+)?ms\b", "in <latency>"),
        r(r#""latency_ms":[\d.]+"#, r#""latency_ms":<latency>"#),
        r(r"(uptime:\s+)(\d+[a-z]+ ?)+", "${1}<uptime> "),
        r(r#""(uptime_secs|uptime_seconds)":\d+"#, r#""$1":<n>"#),
    ]
});

fn normalise(line: &str) -> String {
    let mut s = line.to_string();
    for Replace(re, to) in NORMALISE.iter() {
        s = re.replace_all(&s, *to).into_owned();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether the actual lines match the documented ones (both normalised).
fn matches(doc: &[String], actual: &[String]) -> bool {
    match doc.split_first() {
        None => actual.is_empty(),
        Some((d, rest)) if d == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((d, rest)) => match actual.split_first() {
            None => false,
            Some((a, arest)) => line_matches(d, a) && matches(rest, arest),
        },
    }
}

fn line_matches(doc: &str, actual: &str) -> bool {
    if !doc.contains("...") {
        return doc == actual;
    }
    let pattern: Vec<String> = doc.split("...").map(regex::escape).collect();
    Regex::new(&format!("^{}$", pattern.join(".*")))
        .unwrap()
        .is_match(actual)
}

/// One place the examples run: a private home, a receiver, maybe a daemon.
struct Stage {
    env: Env,
    port: u16,
    _receiver: Receiver,
    scratch: PathBuf,
}

impl Stage {
    fn new(plan: &Plan, scratch: &Path) -> Stage {
        let env = Env::new();
        let receiver = Receiver::start();
        let port = receiver.addr().port();
        let stage = Stage {
            env,
            port,
            _receiver: receiver,
            scratch: scratch.to_path_buf(),
        };
        if !plan.fresh {
            let url = format!("http://localhost:{port}/events");
            stage.env.start(&["--webhook", &url, "--node-id", "5"]);
        }
        for cmd in &plan.before {
            let (code, out) = stage.bash(cmd, None);
            assert_eq!(code, Some(0), "before={cmd}: {out}");
        }
        stage
    }

    /// The docs' text with this stage's receiver port.
    fn subst(&self, text: &str) -> String {
        text.replace(":8080", &format!(":{}", self.port))
    }

    /// The output as the docs would show it.
    fn unsubst(&self, text: &str) -> String {
        text.replace(self.env.home.to_str().unwrap(), "/home/me")
            .replace(&format!(":{}", self.port), ":8080")
    }

    /// Runs `cmd` with bash; its exit code (None when it was stopped after `wait`) and its
    /// stdout and stderr, interleaved as written.
    fn bash(&self, cmd: &str, wait: Option<Duration>) -> (Option<i32>, String) {
        let out_path = self.scratch.join(".output");
        let out = std::fs::File::create(&out_path).unwrap();
        let bins = self.env.pilotctl_bin().parent().unwrap().to_path_buf();
        let path = format!(
            "{}:{}",
            bins.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = self
            .env
            .command(Path::new("bash"))
            .arg("-c")
            .arg(self.subst(cmd))
            .env("PATH", path)
            .current_dir(&self.scratch)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .process_group(0)
            .spawn()
            .expect("run bash");
        let limit = wait.unwrap_or(Duration::from_secs(20));
        let deadline = Instant::now() + limit;
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                let pgid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                let _ = child.wait();
                if wait.is_none() {
                    break Some(-999);
                }
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (code, std::fs::read_to_string(&out_path).unwrap_or_default())
    }

    /// Runs one example; a description of the drift, if any.
    fn example(&self, ex: &Example, plan: &Plan) -> Option<String> {
        static CAT: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^cat (\S+)\s*(#.*)?$").unwrap());
        if let Some(c) = CAT.captures(&ex.cmd) {
            let name = &c[1];
            let file = match name.strip_prefix("~/") {
                Some(rest) => self.env.home.join(rest),
                None => self.scratch.join(name),
            };
            if !file.exists() {
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                let mut text = self.subst(&ex.expected.join("\n"));
                text.push('\n');
                std::fs::write(&file, text).unwrap();
                return None;
            }
        }
        let (code, out) = self.bash(&ex.cmd, plan.wait);
        let actual: Vec<String> = self
            .unsubst(&out)
            .lines()
            .map(normalise)
            .filter(|l| !l.is_empty())
            .collect();
        let doc: Vec<String> = ex
            .expected
            .iter()
            .map(|l| normalise(l))
            .filter(|l| !l.is_empty())
            .collect();
        let expect_failure = ex
            .expected
            .iter()
            .any(|l| l.starts_with("error:") || l.starts_with(r#"{"status":"error""#));
        let mut problems = Vec::new();
        match code {
            Some(-999) => problems.push("did not finish within 20 s".to_string()),
            Some(0) if expect_failure => problems.push("succeeded; the docs show an error".into()),
            Some(c) if c != 0 && !expect_failure => {
                problems.push(format!("exited {c}; the docs show no error"))
            }
            _ => {}
        }
        if !doc.is_empty() && !matches(&doc, &actual) {
            problems.push("its output differs from the docs".into());
        }
        if problems.is_empty() {
            return None;
        }
        Some(format!(
            "{}\n  documented (normalised):\n    {}\n  actual (normalised):\n    {}",
            problems.join("; "),
            doc.join("\n    "),
            actual.join("\n    ")
        ))
    }
}

#[test]
fn every_command_example_of_the_docs_runs_as_documented() {
    let started = Instant::now();
    let all: Vec<Block> = pages().iter().flat_map(|p| blocks(p)).collect();
    assert!(all.len() >= 20, "only {} example blocks found", all.len());
    let mut failures = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for block in &all {
        let plan = match &block.how {
            How::Skip(reason) => {
                eprintln!(
                    "not run: {} ({} examples): {reason}",
                    block.at(),
                    block.examples.len()
                );
                skipped += block.examples.len();
                continue;
            }
            How::Run(plan) => plan,
        };
        let scratch = tempfile::Builder::new()
            .prefix("pilot-docs-")
            .tempdir()
            .unwrap();
        std::os::unix::fs::symlink(repo().join("docs"), scratch.path().join("docs")).unwrap();
        let groups: Vec<&[Example]> = if plan.seq {
            vec![&block.examples[..]]
        } else {
            block.examples.chunks(1).collect()
        };
        for group in groups {
            let stage = Stage::new(plan, scratch.path());
            for ex in group {
                ran += 1;
                if let Some(why) = stage.example(ex, plan) {
                    let log = stage.env.log();
                    let log = match log.is_empty() {
                        true => String::new(),
                        false => format!("\n  daemon log (last lines):\n{}", tail(&log, 15)),
                    };
                    failures.push(format!(
                        "{}:{}: `$ {}`: {why}{log}",
                        block.page, ex.line, ex.cmd
                    ));
                }
            }
        }
    }
    eprintln!(
        "{ran} examples run, {skipped} not run, in {:.1?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} examples drifted from the docs:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The last `n` lines of `text`, indented.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
