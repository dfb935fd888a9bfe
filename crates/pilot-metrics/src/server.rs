//! The HTTP endpoint: `GET /metrics` (and `HEAD`) over HTTP/1.1 on one TCP address; any other
//! path is 404 and any other method 405. It binds at once ([`MetricsServer::bind`]), so a busy
//! or forbidden address fails the daemon's start, and it stops with its owner's
//! `CancellationToken`, every connection tracked by its owner's `TaskTracker`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::encode::Metrics;

/// The one path served.
const PATH: &str = "/metrics";
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an open connection may take to finish once the server stops.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The whole reason is in the message (the I/O error is not a separate `source`, so a
    /// report of the error chain does not repeat it).
    #[error("cannot serve metrics on {addr}: {error}")]
    Bind { addr: SocketAddr, error: io::Error },
}

/// A bound, not yet serving, metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port). An address outside loopback is allowed and
    /// logged as a warning: whoever reaches it can read the counters (never URLs or events).
    pub async fn bind(addr: SocketAddr) -> Result<MetricsServer, MetricsError> {
        let bind_err = |error| MetricsError::Bind { addr, error };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        if !addr.ip().is_loopback() {
            warn!(
                %addr,
                "metrics endpoint listens beyond loopback: anyone who can reach it can read the counters"
            );
        }
        Ok(MetricsServer { listener, addr })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `metrics` until `stop` is cancelled; the accept loop and every connection are
    /// spawned on `tracker`.
    pub fn spawn(self, metrics: Metrics, stop: CancellationToken, tracker: &TaskTracker) {
        tracker.spawn(accept_loop(
            self.listener,
            Arc::new(metrics),
            stop,
            tracker.clone(),
        ));
    }
}

async fn accept_loop(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tracker.spawn(connection(stream, metrics.clone(), stop.clone()));
    }
}

async fn connection(stream: TcpStream, metrics: Arc<Metrics>, stop: CancellationToken) {
    let service = service_fn(move |req| {
        let response = respond(&metrics, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "metrics connection ended with an error");
    }
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return text(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match metrics.render() {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::encode::CONTENT_TYPE),
            );
            r
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::snapshot::Snapshot;

    /// One HTTP/1.1 request over a fresh TCP connection; the whole response as text.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn serving() -> (SocketAddr, CancellationToken, TaskTracker) {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let metrics = Metrics::new(|| Snapshot {
            version: "9.9.9".into(),
            ..Snapshot::default()
        });
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        server.spawn(metrics, stop.clone(), &tracker);
        (addr, stop, tracker)
    }

    #[tokio::test]
    async fn get_metrics_answers_with_the_exposition() {
        let (addr, stop, tracker) = serving().await;
        let r = request(addr, "GET", "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let lower = r.to_ascii_lowercase();
        assert!(
            lower.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
            ),
            "{r}"
        );
        assert!(r.contains("pilot_build_info{version=\"9.9.9\"} 1\n"), "{r}");
        assert!(r.ends_with("# EOF\n"), "{r}");
        let head = request(addr, "HEAD", "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(!head.contains("# EOF"), "no body for HEAD: {head}");
        stop.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test]
    async fn other_paths_are_404_and_other_methods_405() {
        let (addr, stop, tracker) = serving().await;
        for path in ["/", "/metrics/", "/metricsx", "/other"] {
            let r = request(addr, "GET", path).await;
            assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{path}: {r}");
        }
        let r = request(addr, "POST", "/metrics").await;
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(
            r.to_ascii_lowercase().contains("allow: get, head\r\n"),
            "{r}"
        );
        let q = request(addr, "GET", "/metrics?x=1").await;
        assert!(
            q.starts_with("HTTP/1.1 200 OK\r\n"),
            "a query is ignored: {q}"
        );
        stop.cancel();
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test]
    async fn a_busy_address_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = MetricsServer::bind(addr).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot serve metrics on {addr}: ")),
            "{msg}"
        );
        assert!(msg.to_lowercase().contains("in use"), "{msg}");
    }

    #[tokio::test]
    async fn cancelling_stops_the_server_and_open_connections() {
        let (addr, stop, tracker) = serving().await;
        // An idle keep-alive connection that never sends a request must not hold the stop up.
        let idle = TcpStream::connect(addr).await.unwrap();
        assert!(request(addr, "GET", "/metrics").await.contains("200 OK"));
        stop.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .expect("every task ends after the stop");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
        drop(idle);
    }
}
