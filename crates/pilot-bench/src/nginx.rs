//! Reads nginx `stub_status` over one keep-alive connection.
//!
//! nginx counts every request, the status reads too. The client counts its own reads, so
//! [`StatusClient::others`] is the number of requests everyone else made: the deliveries.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::Uri;
use hyper_util::rt::TokioIo;

/// One `stub_status` page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub active: u64,
    pub accepts: u64,
    pub handled: u64,
    pub requests: u64,
}

/// A keep-alive connection to nginx's `stub_status` location.
pub struct StatusClient {
    sender: SendRequest<Empty<Bytes>>,
    authority: String,
    path: String,
    /// Status requests this client has made (each one is in nginx's count).
    reads: u64,
}

impl StatusClient {
    /// Connects to `url` (`http://host:port/path`).
    pub async fn connect(url: &str) -> Result<StatusClient> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("bad status URL {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("status URL {url:?}: only http:// is supported");
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("status URL {url:?} has no host"))?
            .to_string();
        let host = uri.host().unwrap_or("127.0.0.1");
        let port = uri.port_u16().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .with_context(|| format!("connect to {authority}"))?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .context("HTTP handshake with nginx")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(StatusClient {
            sender,
            authority,
            path: uri.path().to_string(),
            reads: 0,
        })
    }

    /// Connects, retrying until nginx answers or `wait` has passed; returns the first read.
    pub async fn connect_waiting(url: &str, wait: Duration) -> Result<(StatusClient, Status)> {
        let deadline = Instant::now() + wait;
        loop {
            let attempt = async {
                let mut c = Self::connect(url).await?;
                let s = c.read().await?;
                Ok::<_, anyhow::Error>((c, s))
            };
            match attempt.await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(format!("nginx did not answer at {url} within {wait:?}")))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Reads the status page.
    pub async fn read(&mut self) -> Result<Status> {
        let req = hyper::Request::get(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .body(Empty::<Bytes>::new())
            .context("build status request")?;
        self.sender
            .ready()
            .await
            .context("nginx status connection")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .context("nginx status request")?;
        self.reads += 1;
        let code = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !code.is_success() {
            bail!("nginx status answered {code}");
        }
        parse(&String::from_utf8_lossy(&body))
    }

    /// Requests made by everyone but this client, so far.
    pub async fn others(&mut self) -> Result<u64> {
        let s = self.read().await?;
        Ok(s.requests.saturating_sub(self.reads))
    }
}

/// Parses
/// ```text
/// Active connections: 2
/// server accepts handled requests
///  1 1 15
/// Reading: 0 Writing: 1 Waiting: 1
/// ```
pub fn parse(text: &str) -> Result<Status> {
    let bad = || anyhow!("not an nginx stub_status page: {text:?}");
    let mut lines = text.lines();
    let active = lines
        .next()
        .and_then(|l| l.strip_prefix("Active connections:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(bad)?;
    let _header = lines.next().ok_or_else(bad)?;
    let nums: Vec<u64> = lines
        .next()
        .ok_or_else(bad)?
        .split_whitespace()
        .map(|n| n.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let [accepts, handled, requests] = nums[..] else {
        return Err(bad());
    };
    Ok(Status {
        active,
        accepts,
        handled,
        requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_status_page() {
        let s = parse(
            "Active connections: 2 \nserver accepts handled requests\n 3 3 15 \nReading: 0 Writing: 1 Waiting: 1 \n",
        )
        .expect("parses");
        assert_eq!(
            s,
            Status {
                active: 2,
                accepts: 3,
                handled: 3,
                requests: 15
            }
        );
    }

    #[test]
    fn refuses_other_pages() {
        assert!(parse("<html>404</html>").is_err());
        assert!(parse("Active connections: 1\nx\n 1 2\n").is_err());
    }
}
