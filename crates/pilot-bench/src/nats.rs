//! NATS JetStream load (issue 12), against a local `nats-server -js`:
//!
//! - `nats-stream`: (re)creates the benchmark stream, empty.
//! - `nats-baseline`: a plain async-nats JetStream publisher: N messages with the daemon's
//!   exact body and headers, `--inflight` acknowledgements outstanding at most (a window),
//!   timed from the first publish to the last ack: the rate pilot is compared with.
//! - `nats-deliver`: N events emitted to the daemon (pipelined, like `deliver`), timed from the
//!   first emit until the stream holds them all.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::load::{connect, emit_all, rate};
use crate::{EventArgs, Feed};

fn duration(s: &str) -> Result<Duration, String> {
    pilot_core::duration::parse(s).map_err(|e| e.to_string())
}

/// The server and stream of a run.
#[derive(Debug, Args, Clone)]
pub struct Target {
    /// The server, `127.0.0.1:4222`.
    #[arg(long, value_name = "HOST:PORT")]
    server: String,
    /// The stream's name.
    #[arg(long, value_name = "NAME", default_value = "BENCH")]
    stream: String,
}

impl Target {
    async fn js(&self) -> Result<async_nats::jetstream::Context> {
        let client = async_nats::connect(self.server.as_str())
            .await
            .with_context(|| format!("connect to NATS at {}", self.server))?;
        Ok(async_nats::jetstream::new(client))
    }

    async fn messages(&self, js: &async_nats::jetstream::Context) -> Result<u64> {
        let mut stream = js
            .get_stream(&self.stream)
            .await
            .map_err(|e| anyhow!("stream {}: {e}", self.stream))?;
        let info = stream
            .info()
            .await
            .map_err(|e| anyhow!("stream info: {e}"))?;
        Ok(info.state.messages)
    }
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    #[command(flatten)]
    target: Target,
    /// The stream's subjects.
    #[arg(long, default_value = "pilot.>")]
    subjects: String,
}

/// `nats-stream`: the stream, new and empty.
pub async fn stream(args: &StreamArgs) -> Result<Value> {
    let js = args.target.js().await?;
    let _ = js.delete_stream(&args.target.stream).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: args.target.stream.clone(),
        subjects: vec![args.subjects.clone()],
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("create stream {}: {e}", args.target.stream))?;
    Ok(json!({"stream": args.target.stream, "subjects": args.subjects}))
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, value_name = "N")]
    count: u64,
    /// Acknowledgements outstanding at most.
    #[arg(long, value_name = "K", default_value_t = 1)]
    inflight: usize,
    /// The subject (the daemon's default template for node 0).
    #[arg(long, default_value = "pilot.0.handshake.received")]
    subject: String,
    #[command(flatten)]
    event: EventArgs,
}

/// `nats-baseline`: a plain JetStream publisher with a window of acks.
pub async fn baseline(args: &BaselineArgs) -> Result<Value> {
    let (name, data) = args.event.parsed()?;
    let body =
        pilot_core::Event::new(1, name.clone(), 0, jiff::Timestamp::now(), Some(data)).payload();
    let js = args.target.js().await?;
    let run = format!("{:x}", jiff::Timestamp::now().as_nanosecond());
    let window = args.inflight.max(1);
    let mut acks = VecDeque::with_capacity(window);
    let start = Instant::now();
    for i in 0..args.count {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("bench_{run}_{i}").as_str());
        headers.insert("Pilot-Event", name.as_str());
        headers.insert("Pilot-Event-Id", i.to_string().as_str());
        let ack = js
            .publish_with_headers(args.subject.clone(), headers, body.clone())
            .await
            .map_err(|e| anyhow!("publish: {e}"))?;
        acks.push_back(ack);
        if acks.len() >= window {
            if let Some(a) = acks.pop_front() {
                a.await.map_err(|e| anyhow!("ack: {e}"))?;
            }
        }
    }
    for a in acks {
        a.await.map_err(|e| anyhow!("ack: {e}"))?;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "count": args.count,
        "inflight": window,
        "seconds": secs,
        "events_per_sec": rate(args.count, secs),
    }))
}

#[derive(Debug, Args)]
pub struct DeliverArgs {
    #[command(flatten)]
    feed: Feed,
    #[command(flatten)]
    target: Target,
    /// Give up after this long (the figure is then what arrived).
    #[arg(long, value_parser = duration, default_value = "600s")]
    timeout: Duration,
}

/// `nats-deliver`: emit to the daemon, time until the stream has every event.
pub async fn deliver(args: &DeliverArgs) -> Result<Value> {
    let socket = args.feed.socket()?;
    let (name, data) = args.feed.event.parsed()?;
    let js = args.target.js().await?;
    let mut emitter = connect(&socket).await?;
    // Settle: the daemon's own events (daemon.started) have reached the stream.
    let mut base = args.target.messages(&js).await?;
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = args.target.messages(&js).await?;
        if now == base || Instant::now() > settle {
            base = now;
            break;
        }
        base = now;
    }
    let n = args.feed.count;
    let start = Instant::now();
    let feeder = tokio::spawn(async move { emit_all(&mut emitter, name, data, n).await });
    let deadline = start + args.timeout;
    let (arrived, timed_out) = loop {
        let arrived = args.target.messages(&js).await?.saturating_sub(base);
        if arrived >= n {
            break (arrived, false);
        }
        if Instant::now() >= deadline {
            break (arrived, true);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let secs = start.elapsed().as_secs_f64();
    if !timed_out {
        feeder.await.context("the emit task failed")??;
    } else {
        feeder.abort();
    }
    if arrived == 0 {
        bail!("nothing reached stream {}", args.target.stream);
    }
    Ok(json!({
        "count": n,
        "arrived": arrived,
        "timed_out": timed_out,
        "seconds": secs,
        "events_per_sec": rate(arrived, secs),
    }))
}
