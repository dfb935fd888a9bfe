//! `soak`: a long run at a steady rate against a receiver that flaps, sampling the daemon.
//!
//! The receiver ([`crate::flap`]) runs in this process; the webhook is pointed at it over IPC.
//! One connection emits at `--rate` events/s (pipelined, catching up when behind), each event
//! carrying its send time. The run has phases, as fractions of `--minutes`:
//!
//! | from | to   | phase      | receiver |
//! |------|------|------------|----------|
//! | 0    | 5%   | warmup     | up (not measured) |
//! | 5%   | 15%  | baseline   | up: the undisturbed latency |
//! | 15%  | 85%  | flapping   | up `--up`, down `--down`, repeatedly |
//! | 85%  | 92.5%| recovery   | up |
//! | 92.5%| 100% | recovered  | up: the latency after recovery |
//!
//! Then the emitter stops and the daemon drains. Every `--sample` it reads the daemon's RSS
//! (`/proc/PID/status` VmRSS), its open descriptors (`/proc/PID/fd`), the `info` counters and
//! the latencies of the arrivals since the last sample, and prints a row on stderr. At the end
//! it prints one JSON object (stdout) with the samples and these checks:
//!
//! - `rss_flat`: the highest RSS of the last quarter of the run is at most the highest of the
//!   first quarter (after the warmup) plus the larger of 10% and 4 MiB;
//! - `fds_flat`: the same for open descriptors, with the larger of 10% and 8;
//! - `balanced`: once drained (nothing queued or in flight), `info`'s accounting adds up
//!   exactly (emitted = delivered + failed + dropped + skipped + filtered + pending); every event
//!   published since the webhook was set was offered to it; and every `delivered` event arrived
//!   at the receiver;
//! - `latency_recovered`: the p50 latency of the recovered phase is at most 2x the baseline's;
//! - `rate_held`: the emitter sent at least 95% of `--rate` on average.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use pilot_ipc::protocol::InfoReply;
use pilot_ipc::{Client, EmitItem};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::flap::{self, Flapper, Keep};
use crate::{duration, socket_path, stats};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// The daemon's control socket (default: the pilot home's pilot.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// How long to emit, in minutes (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Events per second.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// How often to sample the daemon.
    #[arg(long, value_parser = duration, default_value = "5s")]
    sample: Duration,
    /// How long the receiver stays up between two outages while flapping.
    #[arg(long, value_parser = duration, default_value = "300ms")]
    up: Duration,
    /// How long each outage lasts.
    #[arg(long, value_parser = duration, default_value = "300ms")]
    down: Duration,
    /// How long the daemon may take to drain after the last emit.
    #[arg(long, value_parser = duration, default_value = "2m")]
    drain_timeout: Duration,
    /// The event name.
    #[arg(
        long = "event",
        value_name = "NAME",
        default_value = "handshake.received"
    )]
    name: String,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    Warmup,
    Baseline,
    Flapping,
    Recovery,
    Recovered,
    Drained,
}

impl Phase {
    /// The phase at `frac` of the run.
    fn at(frac: f64) -> Phase {
        match frac {
            f if f < 0.05 => Phase::Warmup,
            f if f < 0.15 => Phase::Baseline,
            f if f < 0.85 => Phase::Flapping,
            f if f < 0.925 => Phase::Recovery,
            _ => Phase::Recovered,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Baseline => "baseline",
            Phase::Flapping => "flapping",
            Phase::Recovery => "recovery",
            Phase::Recovered => "recovered",
            Phase::Drained => "drained",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    t_s: f64,
    phase: Phase,
    rss_kib: u64,
    fds: u64,
    emitted: u64,
    published: u64,
    queued: u64,
    delivered: u64,
    failed: u64,
    retries: u64,
    dropped: u64,
    circuit_skips: u64,
    queue_depth: u64,
    in_flight: u64,
    circuit: String,
    receiver_up: bool,
    arrivals: usize,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// The daemon's resident set, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status (is the daemon on this machine?)"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// The daemon's open file descriptors.
fn fds(pid: u32) -> Result<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("read /proc/{pid}/fd"))?;
    Ok(dir.count() as u64)
}

fn ms(us: f64) -> f64 {
    (us / 10.0).round() / 100.0
}

/// p50 and p99 of latencies in microseconds, in ms.
fn percentiles(us: &[u64]) -> (Option<f64>, Option<f64>) {
    let d = us.iter().map(|&u| Duration::from_micros(u)).collect();
    match stats::summarize(d) {
        Some(s) => (Some(ms(s.p50_us)), Some(ms(s.p99_us))),
        None => (None, None),
    }
}

fn p50_us(us: &[u64]) -> Option<f64> {
    let d = us.iter().map(|&u| Duration::from_micros(u)).collect();
    stats::summarize(d).map(|s| s.p50_us)
}

struct Sampler {
    pid: u32,
    client: Client,
    rx: Arc<Flapper>,
    emitted: Arc<AtomicU64>,
    start: Instant,
}

impl Sampler {
    async fn take(&mut self, phase: Phase) -> Result<(Sample, InfoReply)> {
        let info = self.client.info().await.context("info")?;
        let window = self.rx.take_window();
        let (p50_ms, p99_ms) = percentiles(&window);
        let w = &info.webhook;
        let s = Sample {
            t_s: (self.start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            phase,
            rss_kib: rss_kib(self.pid)?,
            fds: fds(self.pid)?,
            emitted: self.emitted.load(Ordering::SeqCst),
            published: info.bus.published,
            queued: w.queued,
            delivered: w.delivered,
            failed: w.failed,
            retries: w.retries,
            dropped: w.dropped,
            circuit_skips: w.circuit_skips,
            queue_depth: w.queue_depth,
            in_flight: w.in_flight,
            circuit: w.circuit.clone(),
            receiver_up: self.rx.is_up(),
            arrivals: window.len(),
            p50_ms,
            p99_ms,
        };
        print_row(&s);
        Ok((s, info))
    }
}

fn print_header() {
    eprintln!(
        "{:>7} {:<9} {:>8} {:>4} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>5} {:>9} {:>4} {:>8} {:>8}",
        "t_s", "phase", "rss_mib", "fds", "emitted", "delivered", "failed", "retries", "dropped",
        "skipped", "queue", "infl", "circuit", "rx", "p50_ms", "p99_ms"
    );
}

fn print_row(s: &Sample) {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    eprintln!(
        "{:>7.1} {:<9} {:>8.1} {:>4} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>5} {:>9} {:>4} {:>8} {:>8}",
        s.t_s,
        s.phase.name(),
        s.rss_kib as f64 / 1024.0,
        s.fds,
        s.emitted,
        s.delivered,
        s.failed,
        s.retries,
        s.dropped,
        s.circuit_skips,
        s.queue_depth,
        s.in_flight,
        s.circuit,
        if s.receiver_up { "up" } else { "down" },
        opt(s.p50_ms),
        opt(s.p99_ms),
    );
}

/// Emits at `rate` until `until`; returns how many the daemon accepted.
async fn emit_at_rate(
    mut client: Client,
    name: String,
    rate: u32,
    until: Instant,
    rx: Arc<Flapper>,
    emitted: Arc<AtomicU64>,
) -> Result<u64> {
    let start = Instant::now();
    let burst = u64::from(rate / 20).max(1);
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        if now >= until {
            return Ok(sent);
        }
        let due = ((now - start).as_secs_f64() * f64::from(rate)) as u64;
        let n = due.saturating_sub(sent).min(burst);
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let t_us = rx.now_us();
        let data = RawValue::from_string(format!(
            r#"{{"t_us":{t_us},"peer_node_id":7,"justification":"want to collaborate"}}"#
        ))?;
        let items = (0..n).map(|_| EmitItem {
            event: name.clone(),
            data: Some(data.clone()),
            severity: None,
        });
        let summary = client.emit_pipelined(items).await.map_err(|f| {
            anyhow!(
                "emit refused after {} events: {}",
                sent + f.summary.count,
                f.error
            )
        })?;
        sent += summary.count;
        emitted.store(sent, Ordering::SeqCst);
    }
}

/// The largest value of `f` over the samples with `t_s` in `(from, to]`.
fn max_in(samples: &[Sample], from: f64, to: f64, f: impl Fn(&Sample) -> u64) -> Option<u64> {
    samples
        .iter()
        .filter(|s| s.phase != Phase::Drained && s.t_s > from && s.t_s <= to)
        .map(f)
        .max()
}

/// Flat: the last quarter's maximum is at most the first quarter's plus the larger of 10% and
/// `slack`.
fn flat(first: u64, last: u64, slack: u64) -> bool {
    last <= first + (first / 10).max(slack)
}

/// `soak`: see the module docs.
pub async fn run(args: &SoakArgs) -> Result<Value> {
    if args.rate == 0 || !args.minutes.is_finite() || args.minutes <= 0.0 {
        bail!("--rate and --minutes must be above 0");
    }
    pilot_core::event::validate_name(&args.name).context("--event")?;
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let socket = socket_path(args.socket.as_ref())?;
    let start = Instant::now();
    let rx = Flapper::new(start);
    let addr = flap::start(rx.clone(), args.up, args.down)?;
    let url = format!("http://{addr}/events");

    let connect = || async {
        Client::connect(&socket)
            .await
            .with_context(|| format!("connect to the daemon at {}", socket.display()))
    };
    let mut ctl = connect().await?;
    let before = ctl.info().await.context("info")?;
    ctl.set_webhook(&url)
        .await
        .context("point the webhook at the receiver")?;
    let emitted = Arc::new(AtomicU64::new(0));
    let mut sampler = Sampler {
        pid: before.pid,
        client: ctl,
        rx: rx.clone(),
        emitted: emitted.clone(),
        start,
    };
    let emitter = tokio::spawn(emit_at_rate(
        connect().await?,
        args.name.clone(),
        args.rate,
        start + total,
        rx.clone(),
        emitted.clone(),
    ));

    print_header();
    let mut samples = Vec::new();
    let mut next_sample = start + args.sample;
    loop {
        let now = Instant::now();
        let elapsed = now - start;
        if elapsed >= total {
            break;
        }
        let phase = Phase::at(elapsed.as_secs_f64() / total.as_secs_f64());
        rx.set_flapping(phase == Phase::Flapping);
        rx.set_keep(match phase {
            Phase::Baseline => Keep::Baseline,
            Phase::Recovered => Keep::Recovered,
            _ => Keep::Nowhere,
        });
        if now >= next_sample {
            samples.push(sampler.take(phase).await?.0);
            next_sample += args.sample;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rx.set_keep(Keep::Nowhere);
    let sent = emitter.await.context("the emitter")??;
    let emit_secs = total.as_secs_f64();

    // Drain: nothing queued or in flight, and the counters stopped moving.
    let drain_start = Instant::now();
    let mut last: Option<InfoReply> = None;
    let (drained, info) = loop {
        let info = sampler.client.info().await.context("info")?;
        let w = &info.webhook;
        let still = w.queue_depth == 0
            && w.in_flight == 0
            && last.as_ref().is_some_and(|l| l.webhook == info.webhook);
        if still {
            break (true, info);
        }
        if drain_start.elapsed() >= args.drain_timeout {
            break (false, info);
        }
        last = Some(info);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (final_sample, _) = sampler.take(Phase::Drained).await?;
    samples.push(final_sample);

    let w = &info.webhook;
    let a = w.accounting.unwrap_or_default();
    let settled = a.delivered + a.failed + a.dropped + a.skipped + a.filtered + a.pending;
    let published = info.bus.published - before.bus.published;
    let unique = rx.unique();
    let balanced = drained
        && a.emitted == settled
        && published == a.emitted - w.recovered
        && unique >= a.delivered;

    let secs = total.as_secs_f64();
    let warm = secs * 0.05;
    let rss = |s: &Sample| s.rss_kib;
    let fd = |s: &Sample| s.fds;
    let quarters = |f: &dyn Fn(&Sample) -> u64| {
        (
            max_in(&samples, warm, secs / 4.0, f),
            max_in(&samples, secs * 0.75, secs, f),
        )
    };
    let (rss_first, rss_last) = quarters(&rss);
    let (fds_first, fds_last) = quarters(&fd);
    let (Some(rss_first), Some(rss_last), Some(fds_first), Some(fds_last)) =
        (rss_first, rss_last, fds_first, fds_last)
    else {
        bail!("too few samples for the first and last quarters: use a longer run or a shorter --sample");
    };
    let rss_flat = flat(rss_first, rss_last, 4096);
    let fds_flat = flat(fds_first, fds_last, 8);

    let (baseline, recovered) = rx.kept();
    let baseline_p50 = p50_us(&baseline);
    let recovered_p50 = p50_us(&recovered);
    let latency_recovered = match (baseline_p50, recovered_p50) {
        (Some(b), Some(r)) => r <= 2.0 * b,
        _ => false,
    };
    let rate_actual = sent as f64 / emit_secs;
    let rate_held = rate_actual >= 0.95 * f64::from(args.rate);
    let ok = rss_flat && fds_flat && balanced && latency_recovered && rate_held;

    Ok(json!({
        "ok": ok,
        "checks": {
            "rss_flat": rss_flat,
            "fds_flat": fds_flat,
            "balanced": balanced,
            "latency_recovered": latency_recovered,
            "rate_held": rate_held,
        },
        "minutes": args.minutes,
        "rate_target": args.rate,
        "rate_actual": rate_actual.round(),
        "emitted": sent,
        "flaps": rx.flaps(),
        "receiver_requests": rx.requests(),
        "receiver_unique_events": unique,
        "rss_kib": { "first_quarter_max": rss_first, "last_quarter_max": rss_last },
        "fds": { "first_quarter_max": fds_first, "last_quarter_max": fds_last },
        "latency_p50_ms": {
            "baseline": baseline_p50.map(ms),
            "recovered": recovered_p50.map(ms),
            "baseline_samples": baseline.len(),
            "recovered_samples": recovered.len(),
        },
        "drained": drained,
        "drain_secs": (drain_start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "published_since_set": published,
        "webhook": {
            "queued": w.queued,
            "recovered": w.recovered,
            "delivered": w.delivered,
            "failed": w.failed,
            "retries": w.retries,
            "circuit_skips": w.circuit_skips,
            "filtered": w.filtered,
            "dropped": w.dropped,
            "dropped_queue_full": w.dropped_queue_full,
            "queue_depth": w.queue_depth,
            "in_flight": w.in_flight,
        },
        "samples": samples,
    }))
}
