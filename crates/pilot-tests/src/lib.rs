//! Test harness for the end-to-end tests: a temporary pilot home, the real binaries, and real
//! HTTP receivers on 127.0.0.1.
//!
//! The binaries are looked up beside the test executable's `target/<profile>` directory, so
//! build them first (`cargo build --workspace --bins`, which `scripts/test` does).

pub mod env;
pub mod receiver;

pub use env::{Env, Run};
pub use receiver::{Received, Receiver, Reply};

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
