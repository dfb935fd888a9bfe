//! Throughput: events into the bus over one pipelined connection, and events delivered to the
//! receiver, timed from the first emit until the receiver has counted all of them.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use pilot_ipc::client::EmitSummary;
use pilot_ipc::protocol::WebhookStatus;
use pilot_ipc::{Client, EmitItem};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::nginx::StatusClient;
use crate::{duration, Feed};

/// How `deliver` counts arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CountBy {
    /// nginx's request count (one event per request: ordered, concurrent, durable).
    Nginx,
    /// The daemon's `delivered` counter (batched delivery: many events per request).
    Delivered,
}

#[derive(Debug, Args)]
pub struct DeliverArgs {
    #[command(flatten)]
    feed: Feed,
    /// The receiver's nginx stub_status URL, like http://127.0.0.1:8080/status.
    #[arg(long, value_name = "URL")]
    status: String,
    /// What counts an arrival.
    #[arg(long, value_enum, default_value = "nginx")]
    count_by: CountBy,
    /// How often to read the count while waiting.
    #[arg(long, value_parser = duration, default_value = "2ms")]
    poll: Duration,
    /// Give up after this long.
    #[arg(long, value_parser = duration, default_value = "10m")]
    timeout: Duration,
}

/// `count` copies of the benchmark event.
fn items(name: String, data: Box<RawValue>, count: u64) -> impl Iterator<Item = EmitItem> {
    (0..count).map(move |_| EmitItem {
        event: name.clone(),
        data: Some(data.clone()),
        severity: None,
    })
}

async fn connect(socket: &std::path::Path) -> Result<Client> {
    Client::connect(socket)
        .await
        .with_context(|| format!("connect to the daemon at {}", socket.display()))
}

/// Emits every item; fails unless all of them were published.
async fn emit_all(
    client: &mut Client,
    name: String,
    data: Box<RawValue>,
    count: u64,
) -> Result<EmitSummary> {
    let summary = client
        .emit_pipelined(items(name, data, count))
        .await
        .map_err(|f| anyhow!("emit stopped at event {}: {}", f.index, f.error))?;
    if summary.count != count {
        bail!("published {} events of {count}", summary.count);
    }
    Ok(summary)
}

/// `emit`: events/s into the bus from one persistent, pipelined connection.
pub async fn emit(feed: &Feed) -> Result<Value> {
    let socket = feed.socket()?;
    let (name, data) = feed.event.parsed()?;
    let mut client = connect(&socket).await?;
    let start = Instant::now();
    let summary = emit_all(&mut client, name, data, feed.count).await?;
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "count": summary.count,
        "seconds": secs,
        "events_per_sec": rate(summary.count, secs),
        "first_event_id": summary.first_event_id,
        "last_event_id": summary.last_event_id,
    }))
}

fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

async fn webhook(info: &mut Client) -> Result<WebhookStatus> {
    Ok(info.info().await.context("info request")?.webhook)
}

/// Both counters at once: nginx requests by others, and the daemon's webhook counters.
async fn counters(status: &mut StatusClient, info: &mut Client) -> Result<(u64, WebhookStatus)> {
    Ok((status.others().await?, webhook(info).await?))
}

/// `deliver`: N events, timed from the first emit until the receiver has all of them.
pub async fn deliver(args: &DeliverArgs) -> Result<Value> {
    let n = args.feed.count;
    let socket = args.feed.socket()?;
    let (name, data) = args.feed.event.parsed()?;
    let (mut status, _) =
        StatusClient::connect_waiting(&args.status, Duration::from_secs(5)).await?;
    let mut info = connect(&socket).await?;
    let mut emitter = connect(&socket).await?;

    // Wait until nothing is in flight (the daemon's own `daemon.started`, a previous run).
    let settle_deadline = Instant::now() + Duration::from_secs(30);
    let (base_requests, base) = loop {
        let (r0, w0) = counters(&mut status, &mut info).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (r1, w1) = counters(&mut status, &mut info).await?;
        let idle = w1.queue_depth == 0 && w1.in_flight == 0;
        if idle && r0 == r1 && w0.delivered == w1.delivered {
            break (r1, w1);
        }
        if Instant::now() >= settle_deadline {
            bail!("the daemon and the receiver did not settle before the run (queue {}, in flight {})", w1.queue_depth, w1.in_flight);
        }
    };

    let start = Instant::now();
    let mut feeder = Some(tokio::spawn(async move {
        let r = emit_all(&mut emitter, name, data, n).await;
        (r, start.elapsed())
    }));
    let mut fed = None;

    // On time-out the run ends with what arrived so far (`timed_out`), not an error: a slow
    // mode still gets a figure.
    let deadline = start + args.timeout;
    let (elapsed, arrived, timed_out) = loop {
        let arrived = match args.count_by {
            CountBy::Nginx => status.others().await?.saturating_sub(base_requests),
            CountBy::Delivered => webhook(&mut info)
                .await?
                .delivered
                .saturating_sub(base.delivered),
        };
        if arrived >= n {
            break (start.elapsed(), arrived, false);
        }
        // A feeder that failed ends the run at once.
        if let Some(f) = feeder.take_if(|f| f.is_finished()) {
            let (r, t) = f.await.context("the emit task failed")?;
            fed = Some((r?, t));
        }
        if Instant::now() >= deadline {
            break (start.elapsed(), arrived, true);
        }
        tokio::time::sleep(args.poll).await;
    };
    if let Some(f) = feeder.take() {
        if timed_out && !f.is_finished() {
            f.abort();
        } else {
            let (r, t) = f.await.context("the emit task failed")?;
            fed = Some((r?, t));
        }
    }
    let (emitted, emit_time) = match fed {
        Some((summary, t)) => (summary.count, t),
        None => (0, Duration::ZERO),
    };

    // In nginx mode the daemon's counter may trail the receiver's by the last response.
    let settle_deadline = Instant::now() + Duration::from_secs(5);
    let (requests, after) = loop {
        let (r, w) = counters(&mut status, &mut info).await?;
        let counted = w.delivered + w.failed + w.dropped;
        if timed_out
            || counted >= base.delivered + base.failed + base.dropped + n
            || Instant::now() >= settle_deadline
        {
            break (r.saturating_sub(base_requests), w);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let delivered = after.delivered.saturating_sub(base.delivered);
    let failed = after.failed.saturating_sub(base.failed);
    let dropped = after.dropped.saturating_sub(base.dropped);
    let mut problems = Vec::new();
    if timed_out {
        problems.push(format!(
            "timed out after {:?}: {arrived} of {n} events arrived",
            args.timeout
        ));
    }
    if delivered != n {
        problems.push(format!("the daemon counted {delivered} delivered of {n}"));
    }
    if failed + dropped > 0 {
        problems.push(format!("{failed} failed, {dropped} dropped"));
    }
    if args.count_by == CountBy::Nginx && requests != n {
        problems.push(format!("nginx counted {requests} requests for {n} events"));
    }
    let secs = elapsed.as_secs_f64();
    let emit_secs = emit_time.as_secs_f64();
    Ok(json!({
        "count": n,
        "arrived": arrived.min(n),
        "timed_out": timed_out,
        "seconds": secs,
        "events_per_sec": rate(arrived.min(n), secs),
        "emit_seconds": emit_secs,
        "emit_events_per_sec": rate(emitted, emit_secs),
        "requests": requests,
        "events_per_request": if requests > 0 { delivered as f64 / requests as f64 } else { 0.0 },
        "delivered": delivered,
        "failed": failed,
        "dropped": dropped,
        "ok": problems.is_empty(),
        "problems": problems,
    }))
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The daemon's control socket (default: the pilot home's pilot.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<std::path::PathBuf>,
    /// Wait until the daemon's `delivered` counter reaches this total.
    #[arg(long, value_name = "TOTAL")]
    delivered: u64,
    /// How often to read the counter.
    #[arg(long, value_parser = duration, default_value = "2ms")]
    poll: Duration,
    /// Give up after this long.
    #[arg(long, value_parser = duration, default_value = "10m")]
    timeout: Duration,
}

/// `drain`: times the daemon's `delivered` counter from now until it reaches a total: the
/// dispatcher alone emptying a backlog that was queued while the receiver was paused.
pub async fn drain(args: &DrainArgs) -> Result<Value> {
    let socket = crate::socket_path(args.socket.as_ref())?;
    let mut info = connect(&socket).await?;
    let start = Instant::now();
    let first = webhook(&mut info).await?.delivered;
    loop {
        let w = webhook(&mut info).await?;
        if w.delivered >= args.delivered {
            let secs = start.elapsed().as_secs_f64();
            let drained = w.delivered - first;
            return Ok(json!({
                "seconds": secs,
                "delivered_at_start": first,
                "delivered": w.delivered,
                "drained": drained,
                "events_per_sec": rate(drained, secs),
                "failed": w.failed,
                "dropped": w.dropped,
            }));
        }
        if start.elapsed() >= args.timeout {
            bail!(
                "timed out after {:?}: delivered {} of {}",
                args.timeout,
                w.delivered,
                args.delivered
            );
        }
        tokio::time::sleep(args.poll).await;
    }
}
