//! A real HTTP/1.1 webhook receiver on 127.0.0.1 for tests: records every request (method,
//! path, headers, body) and answers from a programmable script, then with a default reply (or
//! per request, with [`Reply::Decide`]). Counts the requests it is answering at once (the
//! highest count is kept). Optionally speaks TLS. Shared by the integration tests and the
//! crate's unit tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// This status at once (a 3xx comes with `Location: /elsewhere`).
    Status(u16),
    /// This status after a delay.
    Delay(Duration, u16),
    /// Never answer (the request is recorded first).
    Hang,
    /// 200 with a body of this many bytes.
    Big(usize),
    /// This status with one extra response header (name, value), like `Retry-After`.
    WithHeader(u16, &'static str, &'static str),
    /// Asks the function, given the request and how many earlier requests had the same body
    /// (0 for the first attempt). It must not answer `Decide` again (that is a 500).
    Decide(fn(&Recorded, usize) -> Reply),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Recorded {
    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }

    /// The `event_id` in the body.
    pub fn event_id(&self) -> u64 {
        self.json()["event_id"].as_u64().expect("event_id")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_string())
    }
}

struct Inner {
    script: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Recorded>,
}

/// The receiver; stops (closing every connection) when dropped.
pub struct Receiver {
    addr: SocketAddr,
    tls: bool,
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
    connections: Arc<AtomicUsize>,
    load: Arc<Load>,
    task: tokio::task::JoinHandle<()>,
}

/// Requests being answered now, and the most there ever were at once.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// One request being answered (until its response is ready or it is dropped).
struct Answering(Arc<Load>);

impl Answering {
    fn new(load: Arc<Load>) -> Self {
        let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
        load.max.fetch_max(now, Ordering::SeqCst);
        Answering(load)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Answers `script` in order, then `default` for ever.
    pub async fn start(script: impl IntoIterator<Item = Reply>, default: Reply) -> Receiver {
        Self::start_inner(script, default, None).await
    }

    /// Always 200.
    pub async fn ok() -> Receiver {
        Self::start([], Reply::Status(200)).await
    }

    /// Like [`Receiver::start`], over TLS with this acceptor.
    pub async fn start_tls(
        script: impl IntoIterator<Item = Reply>,
        default: Reply,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> Receiver {
        Self::start_inner(script, default, Some(acceptor)).await
    }

    async fn start_inner(
        script: impl IntoIterator<Item = Reply>,
        default: Reply,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Mutex::new(Inner {
            script: script.into_iter().collect(),
            default,
            requests: Vec::new(),
        }));
        let arrived = Arc::new(Notify::new());
        let connections = Arc::new(AtomicUsize::new(0));
        let load = Arc::new(Load::default());
        let tls = acceptor.is_some();
        let task = {
            let (inner, arrived, connections, load) = (
                inner.clone(),
                arrived.clone(),
                connections.clone(),
                load.clone(),
            );
            tokio::spawn(async move {
                let mut conns = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (inner, arrived, load) = (inner.clone(), arrived.clone(), load.clone());
                    let acceptor = acceptor.clone();
                    conns.spawn(async move {
                        let service = service_fn(move |req| {
                            handle(req, inner.clone(), arrived.clone(), load.clone())
                        });
                        let http = hyper::server::conn::http1::Builder::new();
                        match acceptor {
                            None => {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                            Some(acceptor) => {
                                if let Ok(tls) = acceptor.accept(stream).await {
                                    let _ = http.serve_connection(TokioIo::new(tls), service).await;
                                }
                            }
                        }
                    });
                    while conns.try_join_next().is_some() {}
                }
            })
        };
        Receiver {
            addr,
            tls,
            inner,
            arrived,
            connections,
            load,
            task,
        }
    }

    /// The receiver's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}` (https with TLS).
    pub fn url(&self, path: &str) -> url::Url {
        let scheme = if self.tls { "https" } else { "http" };
        url::Url::parse(&format!("{scheme}://{}{path}", self.addr)).expect("url")
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().expect("lock").requests.clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.inner.lock().expect("lock").requests.len()
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// How many requests are being answered now (arrived, response not yet sent).
    pub fn in_flight(&self) -> usize {
        self.load.now.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.load.max.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            if self.count() >= n {
                return self.requests();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "receiver got {} requests, wanted {n} within {within:?}",
                    self.count()
                );
            }
        }
    }
}

async fn handle(
    req: http::Request<Incoming>,
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
    load: Arc<Load>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _answering = Answering::new(load);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let reply = {
        let mut inner = inner.lock().expect("lock");
        let seen = inner.requests.iter().filter(|r| r.body == body).count();
        inner.requests.push(Recorded {
            method: parts.method,
            target: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers,
            body,
            at: Instant::now(),
        });
        let default = inner.default;
        match inner.script.pop_front().unwrap_or(default) {
            Reply::Decide(f) => match inner.requests.last() {
                Some(request) => f(request, seen),
                None => Reply::Status(500),
            },
            reply => reply,
        }
    };
    arrived.notify_waiters();
    let mut extra = None;
    let (status, body) = match reply {
        Reply::Status(code) => (code, Bytes::from_static(b"ok")),
        Reply::Delay(d, code) => {
            tokio::time::sleep(d).await;
            (code, Bytes::from_static(b"ok"))
        }
        Reply::Hang => std::future::pending().await,
        Reply::Big(n) => (200, Bytes::from(vec![b'x'; n])),
        Reply::WithHeader(code, name, value) => {
            extra = Some((name, value));
            (code, Bytes::from_static(b"ok"))
        }
        Reply::Decide(_) => (500, Bytes::from_static(b"Decide answered Decide")),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::from_u16(status).expect("status");
    if let Some((name, value)) = extra {
        response.headers_mut().insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        );
    }
    if response.status().is_redirection() {
        response.headers_mut().insert(
            http::header::LOCATION,
            http::HeaderValue::from_static("/elsewhere"),
        );
    }
    Ok(response)
}

/// An address on 127.0.0.1 where nothing listens (connection refused).
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}
