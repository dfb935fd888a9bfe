//! A real HTTP/1.1 webhook receiver on 127.0.0.1 that records what it gets and answers as
//! scripted: a status, a status with `Retry-After`, a delay, or never (hang).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Answer at once with this status.
    Status(u16),
    /// Answer with this status and `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Wait, then answer with this status.
    Delay(Duration, u16),
    /// Never answer (the connection stays open until the client gives up).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The event name in the body (of its first event, for a batch).
    pub fn event(&self) -> String {
        let v = self.json();
        let first = match v.get("events") {
            Some(events) => events[0].clone(),
            None => v,
        };
        first["event"].as_str().unwrap_or_default().to_string()
    }

    /// The events in the body: one, or every event of a batch `{"events":[...]}`.
    pub fn events(&self) -> Vec<Value> {
        let v = self.json();
        match v.get("events").and_then(Value::as_array) {
            Some(events) => events.clone(),
            None => vec![v],
        }
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    received: Vec<Received>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A port on 127.0.0.1 that nothing listens on (now): connections to it are refused.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Receiver {
    /// A receiver that answers 200 to everything.
    pub fn start() -> Receiver {
        Self::with_default(Reply::Status(200))
    }

    /// A receiver that answers `reply` to everything (after any script).
    pub fn with_default(reply: Reply) -> Receiver {
        Self::bind(0, reply)
    }

    /// A receiver on 127.0.0.1:`port` (0: any free port), answering 200.
    pub fn on_port(port: u16) -> Receiver {
        Self::bind(port, Reply::Status(200))
    }

    fn bind(port: u16, reply: Reply) -> Receiver {
        let state = Arc::new(Mutex::new(State {
            default: Some(reply),
            ..State::default()
        }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind receiver");
                addr_tx
                    .send(listener.local_addr().expect("receiver addr"))
                    .expect("send addr");
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let st = st.clone();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| handle(st.clone(), req));
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), svc)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("receiver started");
        Receiver {
            addr,
            state,
            _stop: stop_tx,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/events`.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// Answers these replies to the next requests, in order, then the default.
    pub fn script(&self, replies: &[Reply]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(replies.iter().copied());
    }

    /// Changes the answer given once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let ok = crate::wait_until(timeout, || self.count() >= n);
        let got = self.received();
        assert!(
            ok,
            "expected {n} requests within {timeout:?}, got {}: {:?}",
            got.len(),
            got.iter().map(|r| r.event()).collect::<Vec<_>>()
        );
        got
    }

    /// The event names received, in order.
    pub fn events(&self) -> Vec<String> {
        self.received().iter().map(Received::event).collect()
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = {
        let mut st = state.lock().unwrap();
        st.received.push(Received {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
        });
        let next = st.script.pop_front();
        next.or(st.default).unwrap_or(Reply::Status(200))
    };
    let mut retry_after = None;
    let status = match reply {
        Reply::Status(s) => s,
        Reply::RetryAfter(s, secs) => {
            retry_after = Some(secs);
            s
        }
        Reply::Delay(d, s) => {
            tokio::time::sleep(d).await;
            s
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            500
        }
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, secs.into());
    }
    Ok(resp)
}
