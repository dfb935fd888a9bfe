//! Publish-to-receive latency at a fixed rate.
//!
//! Method: a receiver in this process (its own thread and runtime; hyper HTTP/1.1, keep-alive,
//! answers 204 at once) takes `Instant::now()` as soon as a request's body has been read, and
//! keys it by the body's `event_id`. The emitter points the daemon's webhook at that receiver
//! (an IPC `set-webhook`), then sends one `emit` every 1/rate seconds on one connection,
//! taking `Instant::now()` just before each send; the reply tells the event's id. Both sides
//! read the same monotonic clock, so latency = arrival - send covers the whole path: the IPC
//! request, the bus, the webhook queue and worker, the HTTP request and the body's arrival.
//! The first `--warmup` events (connection set-up, first allocations) are not counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pilot_ipc::Client;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{duration, socket_path, stats, EventArgs};

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// The daemon's control socket (default: the pilot home's pilot.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Events per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Events measured.
    #[arg(long, value_name = "N")]
    count: u64,
    /// Events sent first and not measured.
    #[arg(long, value_name = "N", default_value_t = 200)]
    warmup: u64,
    /// How long to wait for the last arrivals.
    #[arg(long, value_parser = duration, default_value = "30s")]
    drain_timeout: Duration,
    #[command(flatten)]
    event: EventArgs,
}

/// Arrival times by event id.
#[derive(Default)]
struct Arrivals(Mutex<HashMap<u64, Instant>>);

impl Arrivals {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Instant>> {
        // A map of plain values cannot be left half-updated by a panic.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Deserialize)]
struct EventId {
    event_id: u64,
}

async fn receive(
    arrivals: Arc<Arrivals>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let at = Instant::now();
    if let Ok(EventId { event_id }) = serde_json::from_slice(&body) {
        arrivals.lock().entry(event_id).or_insert(at);
    }
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// Starts the timestamping receiver on its own thread; it lives as long as the process.
fn start_receiver(arrivals: Arc<Arrivals>) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind the receiver")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("receiver runtime")?;
    std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("pilot-bench: receiver: {e}");
                        return;
                    }
                };
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let arrivals = arrivals.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| receive(arrivals.clone(), req));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc)
                            .await;
                    });
                }
            });
        })
        .context("start the receiver thread")?;
    Ok(addr)
}

/// `latency`: see the module docs.
pub async fn run(args: &LatencyArgs) -> Result<Value> {
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    let socket = socket_path(args.socket.as_ref())?;
    let (name, data) = args.event.parsed()?;
    let arrivals = Arc::new(Arrivals::default());
    let addr = start_receiver(arrivals.clone())?;
    let url = format!("http://{addr}/events");

    let mut client = Client::connect(&socket)
        .await
        .with_context(|| format!("connect to the daemon at {}", socket.display()))?;
    client
        .set_webhook(&url)
        .await
        .context("point the webhook at the receiver")?;

    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent: Vec<(u64, Instant)> = Vec::with_capacity(args.count as usize);
    let mut first_send = None;
    for i in 0..args.warmup + args.count {
        tick.tick().await;
        let t0 = Instant::now();
        let reply = client
            .emit(&name, Some(data.clone()))
            .await
            .with_context(|| format!("emit #{i}"))?;
        if i >= args.warmup {
            first_send.get_or_insert(t0);
            sent.push((reply.event_id, t0));
        }
    }
    let send_secs = first_send.map_or(0.0, |t| t.elapsed().as_secs_f64());

    let deadline = Instant::now() + args.drain_timeout;
    loop {
        let missing = {
            let got = arrivals.lock();
            sent.iter().filter(|(id, _)| !got.contains_key(id)).count()
        };
        if missing == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = client.clear_webhook().await;

    let got = arrivals.lock().clone();
    let latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, t0)| got.get(id).map(|at| at.saturating_duration_since(*t0)))
        .collect();
    let missing = sent.len() - latencies.len();
    let Some(summary) = stats::summarize(latencies) else {
        bail!("no event reached the receiver at {url}");
    };
    let mut out = json!({
        "count": sent.len(),
        "missing": missing,
        "rate_target": args.rate,
        "rate_actual": if send_secs > 0.0 { sent.len() as f64 / send_secs } else { 0.0 },
        "ok": missing == 0,
    });
    if let (Value::Object(o), Ok(Value::Object(s))) = (&mut out, serde_json::to_value(summary)) {
        o.extend(s);
    }
    Ok(out)
}
