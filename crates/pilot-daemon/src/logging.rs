//! The daemon's log sink: writing a log line never panics and never blocks the daemon.
//!
//! tracing's formatter hands each line to [`LogSink`], which queues it (bounded, without
//! waiting) for one writer thread; that thread writes it to stderr, whatever stderr is
//! (`pilot.log`, the journal, a terminal, a pipe). A line is dropped and counted in
//! [`write_errors`] when its write fails (a full disk, `/dev/full`, a closed pipe) or when the
//! queue is full because the writer is stuck or behind; the count is shown by `info`
//! (`log_write_errors`) and `/metrics` (`pilot_log_write_errors_total`). tracing's own
//! "unable to write" message is turned off: it goes to stderr with `eprintln!`, which panics
//! when stderr cannot be written.
//!
//! [`LogSink::flush`] (called before the daemon exits) waits, boundedly, until the lines
//! queued so far are written, so the last lines (the accounting at shutdown) are not lost on a
//! working stderr.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Lines waiting for the writer thread at most; past it lines are dropped and counted.
pub const QUEUE_LINES: usize = 4096;

/// Log lines lost since the daemon started (write failed, or the queue was full).
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Log lines lost since the daemon started: their write failed, or the writer was so far
/// behind that the queue had no room.
pub fn write_errors() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}

fn count_lost() {
    WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
}

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line queued before it has been written (or dropped).
    Flush(mpsc::Sender<()>),
}

/// Where the daemon's log lines go: a bounded queue to the writer thread.
#[derive(Clone)]
pub struct LogSink {
    tx: SyncSender<Msg>,
}

impl LogSink {
    /// A sink writing to `out` on its own thread.
    pub fn spawn(out: impl Write + Send + 'static) -> io::Result<LogSink> {
        Self::spawn_with_capacity(out, QUEUE_LINES)
    }

    fn spawn_with_capacity(
        out: impl Write + Send + 'static,
        capacity: usize,
    ) -> io::Result<LogSink> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        std::thread::Builder::new()
            .name("pilot-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(LogSink { tx })
    }

    /// Waits at most `timeout` for the lines queued so far to be written. Returns whether
    /// they were.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done_tx, done_rx) = mpsc::channel();
        let mut msg = Msg::Flush(done_tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        done_rx.recv_timeout(left).is_ok()
    }
}

fn write_lines(rx: Receiver<Msg>, mut out: impl Write) {
    for msg in rx {
        match msg {
            Msg::Line(line) => {
                if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                    count_lost();
                }
            }
            Msg::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// One formatted line on its way to the queue: what is written to it is queued as one line
/// when it is dropped (tracing drops it right after writing the event).
pub struct LineWriter<'a> {
    sink: &'a LogSink,
    buf: Vec<u8>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        // Always "written": an error here would make tracing report it on stderr.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        if self.sink.tx.try_send(Msg::Line(line)).is_err() {
            count_lost();
        }
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            sink: self,
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that fails every write.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that blocks until released, then records.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<Mutex<bool>>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            while !*self.open.lock().unwrap() {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    // One test: the counter is process-wide, so checks of it must not run in parallel.
    #[test]
    fn failed_writes_and_a_stuck_writer_are_counted_never_fatal_and_never_waited_for() {
        let before = write_errors();
        let sink = LogSink::spawn(Full).unwrap();
        for _ in 0..3 {
            let mut w = sink.make_writer();
            assert_eq!(w.write(b"li").unwrap(), 2);
            assert_eq!(w.write(b"ne\n").unwrap(), 3);
        }
        assert!(sink.flush(Duration::from_secs(5)));
        assert_eq!(write_errors() - before, 3);

        // A stuck writer: the queue fills, lines past it are dropped at once, counted.
        let gate = Gate::default();
        let sink = LogSink::spawn_with_capacity(gate.clone(), 2).unwrap();
        let before = write_errors();
        let start = Instant::now();
        for i in 0..10 {
            writeln!(sink.make_writer(), "line {i}").unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(1), "never blocks");
        let lost = write_errors() - before;
        assert!((7..=8).contains(&lost), "{lost} lost");
        assert!(!sink.flush(Duration::from_millis(50)), "still stuck");
        *gate.open.lock().unwrap() = true;
        assert!(sink.flush(Duration::from_secs(5)));
        let got = String::from_utf8(gate.got.lock().unwrap().clone()).unwrap();
        assert!(got.starts_with("line 0\nline 1\n"), "{got}");
        assert_eq!(write_errors() - before, lost, "the rest was written");
    }
}
