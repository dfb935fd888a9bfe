//! Subscribes to the local pilot daemon's bus and prints each matching event as one JSON line
//! (the webhook payload shape) until the daemon stops, or after COUNT events.
//!
//! ```sh
//! cargo run -p pilot-ipc --example subscribe -- 'handshake.*'
//! ```
//!
//! Arguments: PATTERN (`*`, `prefix.*` or an exact name; default `*`) and COUNT (default: no
//! limit). A line on stderr says when the subscription is in place: events published from then
//! on are printed.

use std::process::ExitCode;

use pilot_ipc::Client;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let pattern = args.next().unwrap_or_else(|| "*".into());
    let count: Option<u64> = match args.next().map(|c| c.parse()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(e)) => return fail(format!("COUNT: {e}")),
    };
    let client = match Client::connect_default().await {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let mut events = match client.subscribe(&pattern).await {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    eprintln!(
        "subscribed to {} (subscriber #{})",
        events.subscription().pattern,
        events.subscription().subscriber_id
    );
    let mut seen = 0;
    while count.is_none_or(|c| seen < c) {
        // `next()` decodes into `pilot_core::Event`; `next_raw()` keeps the JSON as sent.
        match events.next_raw().await {
            Some(Ok(event)) => println!("{}", event.get()),
            Some(Err(e)) => return fail(e.to_string()),
            None => break, // the daemon stopped
        }
        seen += 1;
    }
    ExitCode::SUCCESS
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
