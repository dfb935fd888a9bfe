//! A child process whose stdout (and stderr) lines are collected as they come, for receivers
//! and `pilotctl listen` that report on their output. Killed and reaped when dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running child with its output lines so far.
pub struct LineChild {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

impl LineChild {
    /// Spawns `cmd` with stdout and stderr piped.
    pub fn spawn(mut cmd: Command) -> LineChild {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = Arc::default();
        let stderr = Arc::default();
        collect(child.stdout.take().expect("stdout"), Arc::clone(&stdout));
        collect(child.stderr.take().expect("stderr"), Arc::clone(&stderr));
        LineChild {
            child,
            stdout,
            stderr,
        }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until at least `n` stdout lines came; returns them all.
    pub fn wait_stdout(&self, n: usize, timeout: Duration) -> Vec<String> {
        let ok = crate::wait_until(timeout, || self.stdout.lock().unwrap().len() >= n);
        assert!(
            ok,
            "expected {n} lines within {timeout:?}; stdout: {:?}; stderr: {:?}",
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> String {
        let mut found = None;
        let ok = crate::wait_until(timeout, || {
            found = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            found.is_some()
        });
        assert!(
            ok,
            "no stderr line with {needle:?} within {timeout:?}; stderr: {:?}",
            self.stderr()
        );
        found.unwrap_or_default()
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the child to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        crate::wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
