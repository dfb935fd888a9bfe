//! pilot-daemon: parses its flags, sets up logging, and runs until asked to stop.
//!
//! Exit status: 0 after a clean shutdown; 1 when it cannot start (the reason is printed as one
//! `error: ...` line on stderr); 2 for bad flags. Logging goes through [`logging::LogSink`]: a
//! stderr that cannot be written (a full disk, `/dev/full`) loses lines, counted, and changes
//! nothing else.

mod archive;
mod cli;
mod conns;
mod endpoints;
mod logging;
mod metrics;
mod pidfile;
mod replies;
mod run;
mod secrets;
mod server;
mod settings;
mod socket;
mod state;

use clap::Parser;
use mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

use crate::cli::{Args, LogFormat};

/// Fast small allocations for the event path, and memory returned to the OS after a burst.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its index in `mi_option_t`, mimalloc.h; the bindings
/// have no name for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS this long after it was freed (mimalloc 3 waits a second,
/// and purges only on later allocator calls: a daemon that goes quiet right after a burst kept
/// its queue's peak, 14 to 19 MiB after 100k events instead of 11).
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Sets mimalloc's options (before the runtime's threads start).
fn tune_allocator() {
    // SAFETY: sets one integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// How long the daemon waits, before it exits, for its last log lines to be written.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn init_logging(args: &Args, config_level: Option<&str>) -> Result<logging::LogSink, String> {
    let filter = match (
        &args.run.log_level,
        std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()),
    ) {
        (Some(level), _) => {
            EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?
        }
        (None, Some(env)) => {
            EnvFilter::try_new(&env).map_err(|e| format!("RUST_LOG {env:?}: {e}"))?
        }
        (None, None) => {
            let level = config_level.unwrap_or("info");
            EnvFilter::try_new(level).map_err(|e| format!("config log_level {level:?}: {e}"))?
        }
    };
    let sink = logging::LogSink::spawn(std::io::stderr())
        .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink.clone())
        .log_internal_errors(false)
        .with_target(false);
    // Under systemd the journal stamps each line itself.
    let journal = is_journal(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        std::io::stderr(),
    );
    match (args.log_format, journal) {
        (LogFormat::Text, false) => builder.with_ansi(false).init(),
        (LogFormat::Text, true) => builder.with_ansi(false).without_time().init(),
        (LogFormat::Json, _) => builder.json().init(),
    }
    Ok(sink)
}

/// Prints `error: MSG` on stderr; a stderr that cannot be written is not an error more.
fn print_error(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "error: {msg}");
}

/// Whether `fd` is the journal stream systemd names in `$JOURNAL_STREAM` (`DEV:INODE`): set
/// for a service whose stderr goes to the journal, and inherited by its children, whose stderr
/// may be something else.
fn is_journal(journal_stream: Option<&str>, fd: impl std::os::fd::AsFd) -> bool {
    match (journal_stream, rustix::fs::fstat(fd)) {
        (Some(want), Ok(st)) => want.trim() == format!("{}:{}", st.st_dev, st.st_ino),
        _ => false,
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let args = Args::parse();
    let fail = |msg: String| {
        print_error(&msg);
        std::process::ExitCode::from(1)
    };
    let settings = match settings::Settings::resolve(&args) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let sink = match init_logging(&args, settings.log_level.as_deref()) {
        Ok(sink) => sink,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(run::run(args, settings));
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    sink.flush(LOG_FLUSH_TIMEOUT);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_mimallocs() {
        // SAFETY: reads one integer option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // mimalloc 3's default for this option, and no other's.
            assert!(matches!(get(), 1000 | super::PURGE_DELAY_MS), "{}", get());
        }
        super::tune_allocator();
        assert_eq!(get(), super::PURGE_DELAY_MS);
    }

    #[test]
    fn the_journal_is_recognised_by_device_and_inode() {
        let file = tempfile::tempfile().unwrap();
        let st = rustix::fs::fstat(&file).unwrap();
        let me = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(super::is_journal(Some(&me), &file));
        let other = format!("{}:{}", st.st_dev, st.st_ino + 1);
        assert!(!super::is_journal(Some(&other), &file));
        assert!(!super::is_journal(None, &file));
        assert!(!super::is_journal(Some("junk"), &file));
    }
}
