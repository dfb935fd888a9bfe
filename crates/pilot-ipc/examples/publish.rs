//! Publishes events onto the local pilot daemon's bus and prints the id of each.
//!
//! ```sh
//! cargo run -p pilot-ipc --example publish -- handshake.received '{"peer_node_id":7,"justification":"want to collaborate"}' 3
//! ```
//!
//! Arguments: EVENT (default `example.published`), DATA (a JSON object, default none), COUNT
//! (default 1). The daemon is found as `pilotctl` finds it: `$PILOT_SOCKET`, else config
//! `socket`, else `$PILOT_HOME/pilot.sock` (`~/.pilot/pilot.sock`).

use std::process::ExitCode;

use pilot_ipc::Client;
use serde_json::value::RawValue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let event = args.next().unwrap_or_else(|| "example.published".into());
    let data = args.next();
    let count: u64 = match args.next().map(|c| c.parse()) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(e)) => return fail(format!("COUNT: {e}")),
    };
    // Checked here for a clear message; the daemon checks it again.
    let data = match data.map(RawValue::from_string).transpose() {
        Ok(d) => d,
        Err(e) => return fail(format!("DATA is not JSON: {e}")),
    };
    let mut client = match Client::connect_default().await {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    for _ in 0..count {
        match client.emit(&event, data.clone()).await {
            Ok(reply) => println!("#{} {event}", reply.event_id),
            // `code()` is stable (`invalid_argument`, `not_running`, ...); the message is for people.
            Err(e) => return fail(format!("{} ({})", e, e.code())),
        }
    }
    ExitCode::SUCCESS
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
