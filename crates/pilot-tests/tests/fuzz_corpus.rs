//! The fuzz corpus and every crash input kept as a regression, through the same functions the
//! cargo-fuzz targets call, so they run on stable in `cargo test` without a fuzzer.
//!
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` hold one input per file; each
//! target's body is a `fuzzing` function of pilot-ipc or pilot-core that panics when an
//! invariant breaks. `scripts/fuzz` runs the fuzzer itself.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A target in fuzz/fuzz_targets.
struct Target {
    name: &'static str,
    /// The function its `fuzz_target!` calls, as written there.
    call: &'static str,
    /// That function.
    body: fn(&[u8]),
}

const TARGETS: &[Target] = &[
    Target {
        name: "ipc_frame",
        call: "pilot_ipc::fuzzing::frames",
        body: pilot_ipc::fuzzing::frames,
    },
    Target {
        name: "ipc_request",
        call: "pilot_ipc::fuzzing::request",
        body: pilot_ipc::fuzzing::request,
    },
    Target {
        name: "ipc_request_round_trip",
        call: "pilot_ipc::fuzzing::request_round_trip",
        body: pilot_ipc::fuzzing::request_round_trip,
    },
    Target {
        name: "config",
        call: "pilot_core::fuzzing::config",
        body: pilot_core::fuzzing::config,
    },
    Target {
        name: "webhook_url",
        call: "pilot_core::fuzzing::webhook_url",
        body: pilot_core::fuzzing::webhook_url,
    },
    Target {
        name: "event",
        call: "pilot_core::fuzzing::event",
        body: pilot_core::fuzzing::event,
    },
];

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The names in `dir` (files or directories), sorted; none when it does not exist.
fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .map(|e| {
            e.expect("read_dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// Runs every file of `<kind>/<target>/` through its target; returns how many ran.
fn replay(kind: &str) -> usize {
    let mut failures = Vec::new();
    let mut ran = 0;
    for Target {
        name: target, body, ..
    } in TARGETS
    {
        let dir = fuzz_dir().join(kind).join(target);
        for name in names(&dir) {
            let path = dir.join(&name);
            let input = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            ran += 1;
            if catch_unwind(AssertUnwindSafe(|| body(&input))).is_err() {
                failures.push(format!("fuzz/{kind}/{target}/{name}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that break an invariant (the panic messages are above): {failures:#?}"
    );
    ran
}

#[test]
fn every_corpus_input_holds_the_invariants() {
    let ran = replay("corpus");
    for Target { name: target, .. } in TARGETS {
        let n = names(&fuzz_dir().join("corpus").join(target)).len();
        assert!(n > 0, "fuzz/corpus/{target} is empty");
    }
    assert!(ran >= TARGETS.len());
}

#[test]
fn every_regression_input_holds_the_invariants() {
    replay("regressions");
}

#[test]
fn the_targets_here_are_the_fuzz_crates_targets() {
    let known: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    let mut declared: Vec<String> = names(&fuzz_dir().join("fuzz_targets"))
        .into_iter()
        .filter_map(|n| n.strip_suffix(".rs").map(String::from))
        .collect();
    declared.sort();
    let mut expected: Vec<String> = known.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(declared, expected, "fuzz/fuzz_targets and TARGETS differ");
    for kind in ["corpus", "regressions"] {
        for dir in names(&fuzz_dir().join(kind)) {
            assert!(
                known.contains(&dir.as_str()),
                "fuzz/{kind}/{dir} is not a target's directory"
            );
        }
    }
    for Target {
        name: target, call, ..
    } in TARGETS
    {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        let src = fs::read_to_string(&file).expect("target source");
        assert!(
            src.contains(&format!("{call}(data)")),
            "{} must call {call}",
            file.display()
        );
    }
}
