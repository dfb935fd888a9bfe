//! Misbehaving webhook endpoints on 127.0.0.1, written on raw TCP (no HTTP library decides how
//! they fail): hang after accepting, reset in the middle of the response, read the request at
//! one byte a second, answer with an endless or huge body, never finish the response head or
//! trickle it, flap between up and down, or speak TLS with a self-signed certificate. Each
//! records what it saw (connections, requests, the event ids in their bodies, bytes it sent,
//! how long each connection lived) so a test can tell what the daemon did.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::rustls;

/// How a [`FaultServer`] answers each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A correct `200 OK` with an empty body (for flapping and TLS servers).
    Ok,
    /// Reads the request, then never answers (the connection stays open).
    Hang,
    /// Reads the request, sends the first bytes of a status line, then resets the connection
    /// (RST).
    ResetMidResponse,
    /// Reads the request one byte a second (with a small receive buffer, so the client's
    /// writes block), never answers.
    SlowReader,
    /// Answers `200` with a body of this many bytes (zeros), written as fast as the client
    /// reads.
    HugeBody(u64),
    /// Sends a status line, then nothing more: the head never ends.
    EndlessHead,
    /// Sends a status line, then one header byte per interval, forever.
    TrickleHead(Duration),
    /// Waits `head_after`, sends a complete head (`200`, a 1 GiB length), then one body byte
    /// per `every`, forever.
    TrickleBody {
        head_after: Duration,
        every: Duration,
    },
}

/// What the server saw.
#[derive(Debug, Default)]
struct Seen {
    connections: usize,
    /// Requests whose head (and, unless slow-reading, body) were read.
    requests: usize,
    /// `event_id`s in the bodies read in full (every event of a batch).
    event_ids: Vec<u64>,
    /// Bytes written to clients.
    sent: u64,
    /// Bytes read from clients.
    read: u64,
    /// For each connection that got a request: how long after the request it was closed by
    /// the client (found by a failed write or a read of EOF).
    lifetimes: Vec<Duration>,
}

/// A running misbehaving server; stops (closing every connection) when dropped.
pub struct FaultServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// How the server's listener behaves.
#[derive(Clone)]
enum Mode {
    Plain,
    Tls(tokio_rustls::TlsAcceptor),
    /// Up for the first duration, down (port closed: connections refused) for the second, again
    /// and again.
    Flapping(Duration, Duration),
}

impl FaultServer {
    /// A plain-TCP server answering every request with `fault`.
    pub fn start(fault: Fault) -> FaultServer {
        Self::run(fault, Mode::Plain)
    }

    /// A TLS server with a freshly made self-signed certificate for `127.0.0.1` and
    /// `localhost` (no client trusts it), answering `fault`.
    pub fn tls(fault: Fault) -> FaultServer {
        Self::run(fault, Mode::Tls(self_signed_acceptor()))
    }

    /// A server that answers `200` while up, and is up for `up` then down (nothing listening,
    /// every open connection closed) for `down`, alternately, on the same port.
    pub fn flapping(up: Duration, down: Duration) -> FaultServer {
        Self::run(Fault::Ok, Mode::Flapping(up, down))
    }

    fn run(fault: Fault, mode: Mode) -> FaultServer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let st = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fault server runtime");
            rt.block_on(async move {
                let listener = listen(0, fault).expect("bind fault server");
                let addr = listener.local_addr().expect("fault server addr");
                addr_tx.send(addr).expect("send addr");
                let serve = serve(listener, addr, fault, mode, st);
                tokio::select! {
                    () = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("fault server started");
        FaultServer {
            addr,
            seen,
            _stop: stop_tx,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/events` (`https://` for a TLS server).
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// `https://127.0.0.1:PORT/events`.
    pub fn https_url(&self) -> String {
        format!("https://{}/events", self.addr)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.seen().connections
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.seen().requests
    }

    /// The event ids of every request body read in full, in arrival order.
    pub fn event_ids(&self) -> Vec<u64> {
        self.seen().event_ids.clone()
    }

    /// Bytes written to clients so far.
    pub fn sent(&self) -> u64 {
        self.seen().sent
    }

    /// Bytes read from clients so far.
    pub fn read(&self) -> u64 {
        self.seen().read
    }

    /// How long after its request each finished connection was closed by the client.
    pub fn lifetimes(&self) -> Vec<Duration> {
        self.seen().lifetimes.clone()
    }
}

/// A listener on 127.0.0.1:`port` (address reuse on, so a flapping server gets its port back;
/// a small receive buffer for the slow reader).
fn listen(port: u16, fault: Fault) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    if fault == Fault::SlowReader {
        socket.set_recv_buffer_size(4096)?;
    }
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(128)
}

async fn serve(
    mut listener: TcpListener,
    addr: SocketAddr,
    fault: Fault,
    mode: Mode,
    seen: Arc<Mutex<Seen>>,
) {
    match mode {
        Mode::Plain => accept_loop(&listener, fault, None, &seen).await,
        Mode::Tls(acceptor) => accept_loop(&listener, fault, Some(acceptor), &seen).await,
        Mode::Flapping(up, down) => loop {
            // Up: serve (each connection a task of this scope), then close everything.
            let _ = tokio::time::timeout(up, accept_loop(&listener, fault, None, &seen)).await;
            drop(listener);
            tokio::time::sleep(down).await;
            listener = loop {
                match listen(addr.port(), fault) {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
        },
    }
}

/// Accepts and handles connections until the future is dropped (which closes them all).
async fn accept_loop(
    listener: &TcpListener,
    fault: Fault,
    tls: Option<tokio_rustls::TlsAcceptor>,
    seen: &Arc<Mutex<Seen>>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                lock(seen).connections += 1;
                let seen = seen.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    match tls {
                        None => connection(tcp, fault, &seen).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                connection(stream, fault, &seen).await;
                            }
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves one connection: requests one after another (keep-alive) while the fault answers
/// them properly.
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + SetLinger>(
    mut stream: S,
    fault: Fault,
    seen: &Arc<Mutex<Seen>>,
) {
    loop {
        if fault == Fault::SlowReader {
            slow_read(&mut stream, seen).await;
            return;
        }
        let Some(body) = read_request(&mut stream, seen).await else {
            return;
        };
        {
            let mut s = lock(seen);
            s.requests += 1;
            s.event_ids.extend(event_ids(&body));
        }
        let asked = Instant::now();
        let closed = match fault {
            Fault::Ok => {
                if write(
                    &mut stream,
                    seen,
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                )
                .await
                {
                    continue;
                }
                false
            }
            Fault::Hang => wait_for_close(&mut stream, seen).await,
            Fault::ResetMidResponse => {
                let _ = write(&mut stream, seen, b"HTTP/1.1 20").await;
                stream.reset();
                return;
            }
            Fault::SlowReader => unreachable!("handled above"),
            Fault::HugeBody(n) => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
                write(&mut stream, seen, head.as_bytes()).await
                    && stream_zeros(&mut stream, seen, n).await
            }
            Fault::EndlessHead => {
                write(&mut stream, seen, b"HTTP/1.1 200 OK\r\n").await
                    && wait_for_close(&mut stream, seen).await
            }
            Fault::TrickleHead(every) => {
                write(&mut stream, seen, b"HTTP/1.1 200 OK\r\nx-trickle: ").await
                    && trickle(&mut stream, seen, every).await
            }
            Fault::TrickleBody { head_after, every } => {
                tokio::time::sleep(head_after).await;
                write(
                    &mut stream,
                    seen,
                    b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n",
                )
                .await
                    && trickle(&mut stream, seen, every).await
            }
        };
        if closed {
            lock(seen).lifetimes.push(asked.elapsed());
        }
        return;
    }
}

/// Reads one request: the head up to its blank line, then `content-length` bytes of body.
/// `None` when the client closed first.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S, seen: &Mutex<Seen>) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        lock(seen).read += n as u64;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        lock(seen).read += n as u64;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}

/// The event ids in a body: `{"event_id":N,...}` or `{"events":[...]}`.
fn event_ids(body: &[u8]) -> Vec<u64> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let events = match v.get("events").and_then(|e| e.as_array()) {
        Some(events) => events.clone(),
        None => vec![v],
    };
    events
        .iter()
        .filter_map(|e| e["event_id"].as_u64())
        .collect()
}

/// Writes `bytes`; whether it worked.
async fn write<S: AsyncWrite + Unpin>(stream: &mut S, seen: &Mutex<Seen>, bytes: &[u8]) -> bool {
    let ok = stream.write_all(bytes).await.is_ok() && stream.flush().await.is_ok();
    if ok {
        lock(seen).sent += bytes.len() as u64;
    }
    ok
}

/// Waits until the client closes the connection (reading and discarding anything it sends);
/// `true` then.
async fn wait_for_close<S: AsyncRead + Unpin>(stream: &mut S, seen: &Mutex<Seen>) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => lock(seen).read += n as u64,
        }
    }
}

/// Writes `n` zero bytes in 64 KiB writes, as fast as the client takes them; `true` when the
/// client closed before the end.
async fn stream_zeros<S: AsyncWrite + Unpin>(stream: &mut S, seen: &Mutex<Seen>, n: u64) -> bool {
    let zeros = vec![0u8; 64 * 1024];
    let mut left = n;
    while left > 0 {
        let len = zeros.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if !write(stream, seen, &zeros[..len]).await {
            return true;
        }
        left -= len as u64;
    }
    false
}

/// Writes one `a` per `every` until the client closes the connection; `true` then.
async fn trickle<S: AsyncWrite + Unpin>(
    stream: &mut S,
    seen: &Mutex<Seen>,
    every: Duration,
) -> bool {
    loop {
        tokio::time::sleep(every).await;
        if !write(stream, seen, b"a").await {
            return true;
        }
    }
}

/// Reads one byte a second until the client closes the connection; counts a request once
/// the first byte is read.
async fn slow_read<S: AsyncRead + Unpin>(stream: &mut S, seen: &Mutex<Seen>) {
    let mut byte = [0u8; 1];
    let mut first = true;
    let mut asked = Instant::now();
    loop {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut s = lock(seen);
                s.read += n as u64;
                if first {
                    s.requests += 1;
                    first = false;
                    asked = Instant::now();
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !first {
        lock(seen).lifetimes.push(asked.elapsed());
    }
}

/// Closing a connection with a reset (RST) instead of a FIN, where the stream allows it.
trait SetLinger {
    /// Makes the coming close a reset.
    fn reset(&mut self);
}

impl SetLinger for TcpStream {
    fn reset(&mut self) {
        let _ = self.set_zero_linger();
    }
}

impl SetLinger for tokio_rustls::server::TlsStream<TcpStream> {
    fn reset(&mut self) {
        let _ = self.get_ref().0.set_zero_linger();
    }
}

/// A TLS acceptor with a new self-signed certificate for `localhost` and `127.0.0.1`.
fn self_signed_acceptor() -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .expect("TLS server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
