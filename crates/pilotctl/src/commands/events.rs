//! `events`: subscribe to the bus and print each event as one JSON line (the webhook payload
//! shape) until `--count` events, `--timeout`, Ctrl-C, or the daemon hangs up.
//!
//! `--filter` is checked first: a pattern that can never match an event name is an error at
//! once (not a stream that stays silent forever), and one that names no catalog event but is
//! one edit away from one gets a warning on stderr.

use std::io;

use pilot_core::Pattern;
use pilot_ipc::Client;

use crate::cli::EventsArgs;
use crate::context::Context;
use crate::output::{one_line, print_line, warn, CliError, Output};

/// `events`.
pub async fn run(ctx: &Context, args: &EventsArgs) -> Result<Output, CliError> {
    let (_, suggestion) = Pattern::parse_checked(&args.filter)
        .map_err(|e| CliError::invalid_argument(e.to_string()))?;
    if let Some(s) = suggestion {
        warn(&s);
    }
    let client = Client::connect(&ctx.socket()?).await?;
    let mut stream = client.subscribe(args.filter.trim()).await?;
    if args.count == Some(0) {
        return Ok(Output::Streamed);
    }
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut seen: u64 = 0;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = sleep_until(deadline) => break,
            next = stream.next_raw() => match next {
                None => break,
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(raw)) => {
                    match print_line(&one_line(raw.get())) {
                        Ok(()) => {}
                        // The reader went away (`| head -1`): done.
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                        Err(e) => return Err(CliError::io(format!("cannot write to stdout: {e}"))),
                    }
                    seen += 1;
                    if args.count == Some(seen) {
                        break;
                    }
                }
            },
        }
    }
    Ok(Output::Streamed)
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
