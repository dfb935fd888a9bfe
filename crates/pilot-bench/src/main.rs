//! pilot-bench: the load client behind `scripts/bench`.
//!
//! Every subcommand prints one JSON object on stdout (the script reads it with `jq`) and
//! errors on stderr with exit status 1:
//!
//! - `emit`: N events from one persistent IPC connection with `Client::emit_pipelined`, timed
//!   from the first send to the last reply: events/s into the bus.
//! - `deliver`: N events the same way, timed from the first emit until the receiver has them
//!   all (nginx `stub_status` request count, or the daemon's `delivered` counter for batched
//!   delivery where one request carries many events).
//! - `drain`: the time until the daemon's `delivered` counter reaches a total: how fast the
//!   dispatcher alone empties a backlog queued while the receiver was paused.
//! - `latency`: publish-to-receive latency at a fixed rate, against a receiver in this process
//!   that timestamps every arrival on the same monotonic clock as the emits.
//! - `payload`: the exact POST body the daemon sends for the benchmark event (for `wrk`).
//! - `status`: one read of nginx `stub_status` (exactly one request), once nginx answers.
//! - `free-port`: a free TCP port on 127.0.0.1.
//! - `nats-stream`, `nats-baseline`, `nats-deliver`: NATS JetStream endpoints against a local
//!   server, and a plain async-nats publisher as their baseline (see `nats.rs`).
//! - `soak`: minutes at a steady rate against a receiver that flaps, sampling the daemon's RSS,
//!   descriptors, counters and latency (`scripts/soak`).

mod flap;
mod latency;
mod load;
mod nats;
mod nginx;
mod soak;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::value::RawValue;

/// The benchmark event's data: a realistic ~110-byte object, so the POST body is ~200 bytes.
pub const DEFAULT_DATA: &str = r#"{"peer_node_id":7,"justification":"want to collaborate","address":"0:0000.0000.0007","hostname":"node-7.example.org"}"#;

fn duration(s: &str) -> Result<Duration, String> {
    pilot_core::duration::parse(s).map_err(|e| e.to_string())
}

/// pilot-bench: load and timing for scripts/bench.
#[derive(Debug, Parser)]
#[command(name = "pilot-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Emit N events over one pipelined connection; report events/s into the bus.
    Emit {
        #[command(flatten)]
        feed: Feed,
    },
    /// Emit N events and time them until the receiver has counted all of them.
    Deliver(load::DeliverArgs),
    /// Time the daemon's `delivered` counter until it reaches a total (a backlog's drain).
    Drain(load::DrainArgs),
    /// Publish-to-receive latency at a fixed rate, with a timestamping receiver in-process.
    Latency(latency::LatencyArgs),
    /// Print the POST body the daemon sends for the benchmark event.
    Payload {
        #[command(flatten)]
        event: EventArgs,
        /// The node id stamped on it.
        #[arg(long, default_value_t = 0)]
        node_id: u32,
    },
    /// Read nginx stub_status once nginx answers.
    Status {
        /// The stub_status URL, like http://127.0.0.1:8080/status.
        #[arg(long)]
        url: String,
        /// How long to wait for nginx to answer.
        #[arg(long, value_parser = duration, default_value = "5s")]
        wait: Duration,
    },
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Emit at a steady rate against a flapping receiver; sample RSS, fds, counters, latency.
    Soak(soak::SoakArgs),
    /// (Re)create the benchmark stream, empty.
    NatsStream(nats::StreamArgs),
    /// A plain async-nats JetStream publisher with a window of acks: the baseline.
    NatsBaseline(nats::BaselineArgs),
    /// Emit N events and time until the stream holds them all.
    NatsDeliver(nats::DeliverArgs),
}

/// Which daemon, and the event sent.
#[derive(Debug, Args, Clone)]
pub struct Feed {
    /// The daemon's control socket (default: the pilot home's pilot.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// How many events.
    #[arg(long, value_name = "N")]
    count: u64,
    #[command(flatten)]
    event: EventArgs,
}

/// The benchmark event.
#[derive(Debug, Args, Clone)]
pub struct EventArgs {
    /// The event name.
    #[arg(
        long = "event",
        value_name = "NAME",
        default_value = "handshake.received"
    )]
    name: String,
    /// The event data (a JSON object).
    #[arg(long, value_name = "JSON", default_value = DEFAULT_DATA)]
    data: String,
}

impl EventArgs {
    /// The checked name and data.
    pub fn parsed(&self) -> Result<(String, Box<RawValue>)> {
        pilot_core::event::validate_name(&self.name)
            .with_context(|| format!("--event {:?}", self.name))?;
        let data = pilot_core::event::parse_data(&self.data).context("--data")?;
        Ok((self.name.clone(), data))
    }
}

impl Feed {
    /// The socket to use: `--socket`, else `$PILOT_SOCKET`, else the pilot home's default.
    pub fn socket(&self) -> Result<PathBuf> {
        socket_path(self.socket.as_ref())
    }
}

/// `--socket`, else `$PILOT_SOCKET`, else `<pilot home>/pilot.sock`.
pub fn socket_path(flag: Option<&PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("PILOT_SOCKET").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = pilot_core::PilotHome::resolve().context("cannot find the pilot home")?;
    Ok(home.default_socket())
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pilot-bench: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(out) => println!("{out}"),
        Err(e) => {
            eprintln!("pilot-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(command: Command) -> Result<serde_json::Value> {
    match command {
        Command::Emit { feed } => load::emit(&feed).await,
        Command::Deliver(args) => load::deliver(&args).await,
        Command::Drain(args) => load::drain(&args).await,
        Command::Latency(args) => latency::run(&args).await,
        Command::Payload { event, node_id } => {
            let (name, data) = event.parsed()?;
            let ev = pilot_core::Event::new(1, name, node_id, jiff_now(), Some(data));
            let body = String::from_utf8(ev.payload().to_vec()).context("payload is not UTF-8")?;
            Ok(serde_json::json!({ "body": body, "bytes": body.len() }))
        }
        Command::Status { url, wait } => {
            let (_, s) = nginx::StatusClient::connect_waiting(&url, wait).await?;
            Ok(serde_json::json!({
                "active": s.active,
                "accepts": s.accepts,
                "handled": s.handled,
                "requests": s.requests,
            }))
        }
        Command::Soak(args) => soak::run(&args).await,
        Command::NatsStream(args) => nats::stream(&args).await,
        Command::NatsBaseline(args) => nats::baseline(&args).await,
        Command::NatsDeliver(args) => nats::deliver(&args).await,
        Command::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
            Ok(serde_json::json!({ "port": l.local_addr()?.port() }))
        }
    }
}

/// Now, as the bus stamps events.
fn jiff_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}
