//! A small HTTP CONNECT proxy on 127.0.0.1 for the tests: it answers `CONNECT host:port`,
//! records the target (and the `Proxy-Authorization` it was given), and copies bytes both ways.
//! Anything else is answered 405. Stops when dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One CONNECT the proxy served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// `host:port` as asked.
    pub target: String,
    pub authorization: Option<String>,
}

/// A running proxy.
pub struct ConnectProxy {
    addr: SocketAddr,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let seen = tunnels.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind proxy");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let serve = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let seen = seen.clone();
                        tokio::spawn(async move {
                            let _ = serve_one(client, seen).await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        ConnectProxy {
            addr: addr_rx.recv().expect("proxy started"),
            tunnels,
            _stop: stop_tx,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every tunnel served so far.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }
}

async fn serve_one(
    mut client: tokio::net::TcpStream,
    seen: Arc<Mutex<Vec<Tunnel>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.lines();
    let request = lines.next().unwrap_or_default().to_string();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_string());
    let mut parts = request.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let target = target.to_string();
    let mut upstream = match tokio::net::TcpStream::connect(&target).await {
        Ok(s) => s,
        Err(_) => {
            client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    seen.lock().unwrap().push(Tunnel {
        target,
        authorization,
    });
    client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
