//! The documented receivers, `docs/receivers/receiver.py` (python3) and `receiver.js` (node),
//! run as real processes on 127.0.0.1: independent implementations of signature verification
//! that report each request as a JSON line on stdout.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::child::LineChild;

/// Which receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Python,
    Node,
}

/// A running documented receiver.
pub struct External {
    child: LineChild,
    url: String,
}

/// `docs/receivers/` in this workspace.
pub fn receivers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/receivers")
}

impl External {
    /// Starts the receiver with `secret` on a free port and waits until it listens.
    pub fn start(kind: Kind, secret: &str) -> External {
        let (program, file) = match kind {
            Kind::Python => ("python3", "receiver.py"),
            Kind::Node => ("node", "receiver.js"),
        };
        let probe = Command::new(program).arg("--version").output();
        assert!(
            probe.is_ok_and(|o| o.status.success()),
            "{program} is needed by this test (it runs docs/receivers/{file}): install it"
        );
        let mut cmd = Command::new(program);
        cmd.arg(receivers_dir().join(file))
            .env("WEBHOOK_SECRET", secret)
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("PYTHONUNBUFFERED", "1");
        let child = LineChild::spawn(cmd);
        let first = child.wait_stdout(1, Duration::from_secs(10));
        let v: Value = serde_json::from_str(&first[0]).expect("listening line is JSON");
        let base = v["listening"].as_str().expect("listening URL").to_string();
        External {
            child,
            url: format!("{base}events"),
        }
    }

    /// The URL to give `set-webhook`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The per-request reports so far.
    pub fn reports(&self) -> Vec<Value> {
        self.child
            .stdout()
            .iter()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }

    /// Waits until at least `n` requests were reported; returns every report.
    pub fn wait_reports(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.child.wait_stdout(n + 1, timeout);
        self.reports()
    }

    /// The names of the events of every verified, non-duplicate report, in order.
    pub fn verified_events(&self) -> Vec<String> {
        self.reports()
            .iter()
            .filter(|r| r["verified"] == true && r["duplicate"] == false)
            .flat_map(|r| r["events"].as_array().cloned().unwrap_or_default())
            .map(|e| e["event"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}
