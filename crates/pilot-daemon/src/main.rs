//! pilot-daemon: parses its flags, sets up logging, and runs until asked to stop.
//!
//! Exit status: 0 after a clean shutdown; 1 when it cannot start (the reason is printed as one
//! `error: ...` line on stderr); 2 for bad flags.

mod cli;
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

fn init_logging(args: &Args, config_level: Option<&str>) -> Result<(), String> {
    let filter = match (
        &args.log_level,
        std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()),
    ) {
        (Some(level), _) => {
            EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?
        }
        (None, Some(env)) => {
            EnvFilter::try_new(&env).map_err(|e| format!("RUST_LOG {env:?}: {e}"))?
        }
        (None, None) => EnvFilter::try_new(config_level.unwrap_or("info"))
            .unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let fail = |msg: String| {
        eprintln!("error: {msg}");
        std::process::ExitCode::from(1)
    };
    let settings = match settings::Settings::resolve(&args) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    if let Err(e) = init_logging(&args, settings.log_level.as_deref()) {
        return fail(e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run::run(args, settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            fail(format!("{e:#}"))
        }
    }
}
