//! Test harness for the end-to-end tests: a temporary pilot home, the real binaries, real HTTP
//! receivers on 127.0.0.1 (a scripted Rust one, the documented Python and Node receivers, and
//! misbehaving raw-TCP ones), a scraper and strict parser of `/metrics`, and an independent
//! signature verifier.
//!
//! The binaries are looked up beside the test executable's `target/<profile>` directory, so
//! build them first (`cargo build --workspace --bins`, which `scripts/test` does).

pub mod accounting;
pub mod child;
pub mod env;
pub mod external;
pub mod faulty;
pub mod metrics;
pub mod mtls;
pub mod nats;
pub mod proxy;
pub mod raw;
pub mod receiver;
pub mod sig;

pub use child::LineChild;
pub use env::{Env, Run};
pub use external::{External, Kind};
pub use faulty::{Fault, FaultServer};
pub use receiver::{free_port, Received, Receiver, Reply};

use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Text with every run of spaces within a line made one space (for aligned output).
pub fn squeeze(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}
