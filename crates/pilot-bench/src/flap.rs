//! The soak's receiver: HTTP on 127.0.0.1 that can flap between up and down.
//!
//! Up, it accepts connections and answers every POST with 204 at once (hyper HTTP/1.1,
//! keep-alive). While flapping, every `up` it closes its listening socket and every open
//! connection (the daemon sees resets and then "connection refused"), stays down for `down`,
//! and binds the same port again. Each arrival is timestamped on the soak's monotonic clock and
//! compared with the send time the emitter put in the event's data (`t_us`), so a latency
//! covers the whole path from the emit to the receiver. Arrivals are kept per event id in a
//! bitmap, so duplicates (redeliveries) are told from first arrivals.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Where the latencies of arrivals are kept besides the per-sample window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Keep {
    Nowhere = 0,
    /// The undisturbed reference.
    Baseline = 1,
    /// After the flapping stopped and the endpoint had time to recover.
    Recovered = 2,
}

/// Latencies in microseconds.
#[derive(Default)]
struct Latencies {
    window: Vec<u64>,
    baseline: Vec<u64>,
    recovered: Vec<u64>,
}

/// Event ids seen, one bit each.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    unique: u64,
}

/// The receiver's state, shared with the soak.
pub struct Flapper {
    clock: Instant,
    flapping: AtomicBool,
    up: AtomicBool,
    keep: AtomicU8,
    flaps: AtomicU64,
    requests: AtomicU64,
    latencies: Mutex<Latencies>,
    seen: Mutex<Seen>,
}

/// What a body must hold to be counted.
#[derive(Deserialize)]
struct Body {
    event_id: u64,
    data: Option<SentAt>,
}

#[derive(Deserialize)]
struct SentAt {
    t_us: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain counters and vectors cannot be left half-updated by a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Flapper {
    /// A receiver whose latencies are measured against `clock`.
    pub fn new(clock: Instant) -> Arc<Self> {
        Arc::new(Self {
            clock,
            flapping: AtomicBool::new(false),
            up: AtomicBool::new(false),
            keep: AtomicU8::new(Keep::Nowhere as u8),
            flaps: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            latencies: Mutex::default(),
            seen: Mutex::default(),
        })
    }

    /// Microseconds since the clock's start: what the emitter writes as `t_us`.
    pub fn now_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    pub fn set_flapping(&self, on: bool) {
        self.flapping.store(on, Ordering::SeqCst);
    }

    pub fn set_keep(&self, keep: Keep) {
        self.keep.store(keep as u8, Ordering::SeqCst);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// How many times it went down.
    pub fn flaps(&self) -> u64 {
        self.flaps.load(Ordering::SeqCst)
    }

    /// Requests answered (duplicates included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Distinct event ids that arrived.
    pub fn unique(&self) -> u64 {
        lock(&self.seen).unique
    }

    /// The latencies since the last call.
    pub fn take_window(&self) -> Vec<u64> {
        std::mem::take(&mut lock(&self.latencies).window)
    }

    /// The baseline and recovered latencies.
    pub fn kept(&self) -> (Vec<u64>, Vec<u64>) {
        let l = lock(&self.latencies);
        (l.baseline.clone(), l.recovered.clone())
    }

    fn arrived(&self, body: &[u8]) {
        let at = self.now_us();
        let Ok(b) = serde_json::from_slice::<Body>(body) else {
            return;
        };
        {
            let mut seen = lock(&self.seen);
            let (word, bit) = ((b.event_id / 64) as usize, b.event_id % 64);
            if seen.bits.len() <= word {
                seen.bits.resize(word + 1, 0);
            }
            if seen.bits[word] & (1 << bit) == 0 {
                seen.bits[word] |= 1 << bit;
                seen.unique += 1;
            }
        }
        let Some(sent) = b.data.and_then(|d| d.t_us) else {
            return;
        };
        let us = at.saturating_sub(sent);
        let mut l = lock(&self.latencies);
        l.window.push(us);
        match self.keep.load(Ordering::SeqCst) {
            k if k == Keep::Baseline as u8 => l.baseline.push(us),
            k if k == Keep::Recovered as u8 => l.recovered.push(us),
            _ => {}
        }
    }
}

async fn answer(
    rx: Arc<Flapper>,
    req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    rx.requests.fetch_add(1, Ordering::SeqCst);
    rx.arrived(&body);
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// Starts the receiver on its own thread (it lives as long as the process) and returns its
/// address; it is up until [`Flapper::set_flapping`] turns flapping on.
pub fn start(rx: Arc<Flapper>, up: Duration, down: Duration) -> Result<SocketAddr> {
    let first = std::net::TcpListener::bind("127.0.0.1:0").context("bind the receiver")?;
    first.set_nonblocking(true)?;
    let addr = first.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("receiver runtime")?;
    std::thread::Builder::new()
        .name("flapper".into())
        .spawn(move || rt.block_on(serve(rx, first, addr, up, down)))
        .context("start the receiver thread")?;
    Ok(addr)
}

async fn serve(
    rx: Arc<Flapper>,
    first: std::net::TcpListener,
    addr: SocketAddr,
    up: Duration,
    down: Duration,
) {
    let mut next = TcpListener::from_std(first).ok();
    loop {
        let listener = match next.take() {
            Some(l) => l,
            // SO_REUSEADDR (tokio sets it) lets the port be bound again at once.
            None => match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        rx.up.store(true, Ordering::SeqCst);
        let mut conns = JoinSet::new();
        let up_until = rx
            .flapping
            .load(Ordering::SeqCst)
            .then(|| tokio::time::Instant::now() + up);
        loop {
            let wait = match up_until {
                Some(t) => t.saturating_duration_since(tokio::time::Instant::now()),
                None => Duration::from_millis(20),
            };
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((tcp, _)) = accepted {
                        let _ = tcp.set_nodelay(true);
                        let rx = rx.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req| answer(rx.clone(), req));
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), svc)
                                .await;
                        });
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    let go_down = match up_until {
                        Some(t) => tokio::time::Instant::now() >= t,
                        None => rx.flapping.load(Ordering::SeqCst),
                    };
                    if go_down {
                        break;
                    }
                }
            }
            while conns.try_join_next().is_some() {}
        }
        // Down: the port closes and every connection is cut.
        drop(listener);
        conns.abort_all();
        while conns.join_next().await.is_some() {}
        rx.up.store(false, Ordering::SeqCst);
        rx.flaps.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(down).await;
    }
}
