//! Throughput: events into the bus over one pipelined connection, and events delivered to the
//! receiver, timed from the first emit until the receiver has counted all of them. With
//! `--endpoints K` (fan-out: K webhooks on the same receiver) every event is delivered K times,
//! and with `--cpu-pid` the daemon's CPU time over the run is sampled from `/proc/PID/stat`.

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
    /// How many webhooks the daemon delivers each event to, all on this receiver (fan-out):
    /// the run waits for count x K deliveries, and the daemon's counters are its `totals`.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    endpoints: u64,
    /// The daemon's pid: its CPU time (utime + stime in `/proc/PID/stat`) is read just before
    /// the first emit and as soon as the last delivery is counted.
    #[arg(long, value_name = "PID")]
    cpu_pid: Option<u32>,
    /// The kernel's clock ticks per second, the unit of `/proc/PID/stat` (`getconf CLK_TCK`).
    #[arg(long, value_name = "HZ", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    clock_ticks: u64,
}

/// utime + stime of a process, in clock ticks: fields 14 and 15 of `/proc/PID/stat`, counted
/// after the `)` that ends the command name (which may hold spaces and parentheses). They
/// cover every thread of the process, including threads that have exited.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("read {path} (is the daemon on this machine?)"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("cannot read utime and stime in {path}"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The daemon's counters that `deliver` reads: every endpoint's accounting added up
/// (`totals`; with one endpoint, that endpoint's own).
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    delivered: u64,
    failed: u64,
    dropped: u64,
    pending: u64,
}

async fn counts(info: &mut Client) -> Result<Counts> {
    let t = info.info().await.context("info request")?.totals;
    Ok(Counts {
        delivered: t.delivered,
        failed: t.failed,
        dropped: t.dropped,
        pending: t.pending,
    })
}

/// `count` copies of the benchmark event.
fn items(name: String, data: Box<RawValue>, count: u64) -> impl Iterator<Item = EmitItem> {
    (0..count).map(move |_| EmitItem {
        event: name.clone(),
        data: Some(data.clone()),
        severity: None,
    })
}

pub(crate) async fn connect(socket: &std::path::Path) -> Result<Client> {
    Client::connect(socket)
        .await
        .with_context(|| format!("connect to the daemon at {}", socket.display()))
}

/// Emits every item; fails unless all of them were published.
pub(crate) async fn emit_all(
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

pub(crate) fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

async fn webhook(info: &mut Client) -> Result<WebhookStatus> {
    Ok(info.info().await.context("info request")?.webhook)
}

/// Both counters at once: nginx requests by others, and the daemon's totals.
async fn counters(status: &mut StatusClient, info: &mut Client) -> Result<(u64, Counts)> {
    Ok((status.others().await?, counts(info).await?))
}

/// `deliver`: N events, timed from the first emit until the receiver has all of them (N x K
/// deliveries with `--endpoints K`).
pub async fn deliver(args: &DeliverArgs) -> Result<Value> {
    let n = args.feed.count;
    let k = args.endpoints;
    let total = n
        .checked_mul(k)
        .ok_or_else(|| anyhow!("--count x --endpoints overflows"))?;
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
        if w1.pending == 0 && r0 == r1 && w0.delivered == w1.delivered {
            break (r1, w1);
        }
        if Instant::now() >= settle_deadline {
            bail!(
                "the daemon and the receiver did not settle before the run ({} pending)",
                w1.pending
            );
        }
    };

    let cpu_start = args.cpu_pid.map(cpu_ticks).transpose()?;
    let start = Instant::now();
    let mut feeder = Some(tokio::spawn(async move {
        let r = emit_all(&mut emitter, name, data, n).await;
        (r, start.elapsed())
    }));
    let mut fed = None;

    // On time-out the run ends with what arrived so far (`timed_out`), not an error: a slow
    // mode still gets a figure. In nginx mode nothing asks the daemon anything until the end,
    // so its CPU time is the events' alone.
    let deadline = start + args.timeout;
    let (elapsed, arrived, timed_out, cpu_end) = loop {
        let arrived = match args.count_by {
            CountBy::Nginx => status.others().await?.saturating_sub(base_requests),
            CountBy::Delivered => counts(&mut info)
                .await?
                .delivered
                .saturating_sub(base.delivered),
        };
        if arrived >= total {
            let elapsed = start.elapsed();
            let cpu = args.cpu_pid.map(cpu_ticks).transpose()?;
            break (elapsed, arrived, false, cpu);
        }
        // A feeder that failed ends the run at once.
        if let Some(f) = feeder.take_if(|f| f.is_finished()) {
            let (r, t) = f.await.context("the emit task failed")?;
            fed = Some((r?, t));
        }
        if Instant::now() >= deadline {
            let elapsed = start.elapsed();
            let cpu = args.cpu_pid.map(cpu_ticks).transpose()?;
            break (elapsed, arrived, true, cpu);
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
            || counted >= base.delivered + base.failed + base.dropped + total
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
    let what = if k == 1 {
        format!("{n} events")
    } else {
        format!("{n} events x {k} endpoints")
    };
    if timed_out {
        problems.push(format!(
            "timed out after {:?}: {arrived} of {what} arrived",
            args.timeout
        ));
    }
    if delivered != total {
        problems.push(format!(
            "the daemon counted {delivered} delivered of {what}"
        ));
    }
    if failed + dropped > 0 {
        problems.push(format!("{failed} failed, {dropped} dropped"));
    }
    if args.count_by == CountBy::Nginx && requests != total {
        problems.push(format!("nginx counted {requests} requests for {what}"));
    }
    let secs = elapsed.as_secs_f64();
    let emit_secs = emit_time.as_secs_f64();
    let arrived = arrived.min(total);
    let mut out = json!({
        "count": n,
        "endpoints": k,
        "deliveries_expected": total,
        "arrived": arrived,
        "timed_out": timed_out,
        "seconds": secs,
        "events_per_sec": rate(arrived, secs) / k as f64,
        "deliveries_per_sec": rate(arrived, secs),
        "emit_seconds": emit_secs,
        "emit_events_per_sec": rate(emitted, emit_secs),
        "requests": requests,
        "events_per_request": if requests > 0 { delivered as f64 / requests as f64 } else { 0.0 },
        "delivered": delivered,
        "failed": failed,
        "dropped": dropped,
        "ok": problems.is_empty(),
        "problems": problems,
    });
    if let (Some(a), Some(b)) = (cpu_start, cpu_end) {
        let ticks = b.saturating_sub(a);
        let cpu_secs = ticks as f64 / args.clock_ticks as f64;
        out["cpu"] = json!({
            "pid": args.cpu_pid,
            "ticks": ticks,
            "clock_ticks_per_sec": args.clock_ticks,
            "seconds": cpu_secs,
            // How many of the machine's cores the daemon kept busy over the run.
            "utilization": if secs > 0.0 { cpu_secs / secs } else { 0.0 },
            "us_per_delivery": if arrived > 0 { cpu_secs * 1e6 / arrived as f64 } else { 0.0 },
        });
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::parse_cpu_ticks;

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        // A command name with a space and a parenthesis, as the kernel prints it.
        let stat = "4242 (pilot d) mon) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 \
                    4 0 100 20000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }
}
