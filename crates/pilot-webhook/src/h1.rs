//! One HTTP/1.1 connection of the webhook client, driven by the task that sends on it: the
//! request written with one `write` (head and body in one buffer, the bytes hyper's HTTP/1
//! client writes for the same request: a test compares them), the response head parsed in the
//! connection's read buffer with `httparse` (the parser hyper uses), its body read and thrown
//! away in the same buffer. No connection task, no channel to one, no per-response allocation.
//!
//! Framing follows RFC 9112: 1xx responses are skipped, 204 and 304 have no body, then
//! `Transfer-Encoding: chunked`, `Content-Length`, or a body that ends when the server closes.
//! A connection is kept for the next request only when its response was read to its end, both
//! sides allow keep-alive (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
//! `Connection: keep-alive`), and nothing followed the response.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, StatusCode, Uri};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

/// The most response headers read (hyper's default).
const MAX_HEADERS: usize = 100;

/// The largest response head read (hyper's default read buffer limit).
const MAX_HEAD: usize = 8192 + 4096 * 100;

/// The read buffer a connection starts with.
const READ_BUF: usize = 4096;

/// A connection's byte stream: plain TCP read and written directly, or TLS (and anything else
/// the connector gives) through hyper's I/O traits.
pub(crate) enum Stream {
    Plain(TcpStream),
    Other(Box<TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>>),
}

impl From<MaybeHttpsStream<TokioIo<TcpStream>>> for Stream {
    fn from(io: MaybeHttpsStream<TokioIo<TcpStream>>) -> Self {
        match io {
            MaybeHttpsStream::Http(tcp) => Stream::Plain(tcp.into_inner()),
            other => Stream::Other(Box::new(TokioIo::new(other))),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Other(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Other(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Other(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Other(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H1Error {
    /// Writing the request failed: nothing usable reached the server.
    #[error("error writing the request: {0}")]
    Write(#[source] io::Error),
    #[error("error reading the response: {0}")]
    Read(#[source] io::Error),
    #[error("the connection closed before the response was complete")]
    Closed,
    #[error("invalid HTTP response: {0}")]
    Parse(#[from] httparse::Error),
    #[error("invalid HTTP response: {0}")]
    Invalid(&'static str),
}

/// A response's head, as far as the client needs it.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    /// The `Retry-After` value, when there is one (and it is text).
    pub(crate) retry_after: Option<String>,
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Read until the server closes.
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes to go.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// One HTTP/1.1 connection: its stream and its buffers (kept across requests).
pub(crate) struct Conn {
    io: Stream,
    /// The request being written.
    wbuf: Vec<u8>,
    /// Bytes read: `rbuf[..filled]`.
    rbuf: Vec<u8>,
    filled: usize,
    /// The current response's framing, and whether the connection may carry another request.
    framing: Framing,
    keep_alive: bool,
}

impl Conn {
    pub(crate) fn new(io: Stream) -> Self {
        Self {
            io,
            wbuf: Vec::new(),
            rbuf: vec![0; READ_BUF],
            filled: 0,
            framing: Framing::Empty,
            keep_alive: true,
        }
    }

    /// Whether the server closed this idle connection (or wrote to it unasked, or it failed):
    /// one read that does not wait.
    pub(crate) fn is_closed(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        !matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }

    /// Writes a POST of `body` to `origin` with `headers` in one buffer (`Content-Length`
    /// added; the framing headers `content-length`, `transfer-encoding` and `connection` are
    /// pilot's own and never come from `headers`).
    pub(crate) async fn send(
        &mut self,
        origin: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), H1Error> {
        encode(&mut self.wbuf, origin, headers, body);
        let written = async {
            self.io.write_all(&self.wbuf).await?;
            self.io.flush().await
        };
        let result = written.await.map_err(H1Error::Write);
        if self.wbuf.capacity() > 64 * 1024 {
            // A batch's buffer is not kept for the small requests after it.
            self.wbuf = Vec::new();
        }
        result
    }

    /// Reads the response's head (skipping 1xx responses).
    pub(crate) async fn head(&mut self) -> Result<Head, H1Error> {
        loop {
            if self.filled > 0 {
                if let Some((head, used)) = self.parse()? {
                    self.consume(used);
                    if head.status.is_informational() {
                        if head.status == StatusCode::SWITCHING_PROTOCOLS {
                            return Err(H1Error::Invalid("101 without an upgrade request"));
                        }
                        continue;
                    }
                    return Ok(head);
                }
                if self.filled == self.rbuf.len() {
                    if self.rbuf.len() >= MAX_HEAD {
                        return Err(H1Error::Invalid("response head too large"));
                    }
                    let grown = (self.rbuf.len() * 2).min(MAX_HEAD);
                    self.rbuf.resize(grown, 0);
                }
            }
            if self.fill().await? == 0 {
                return Err(H1Error::Closed);
            }
        }
    }

    /// Reads into the free part of the buffer: how many bytes came (0: end of stream).
    async fn fill(&mut self) -> Result<usize, H1Error> {
        let n = self
            .io
            .read(&mut self.rbuf[self.filled..])
            .await
            .map_err(H1Error::Read)?;
        self.filled += n;
        Ok(n)
    }

    /// Drops the first `n` bytes read.
    fn consume(&mut self, n: usize) {
        self.rbuf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// Parses a complete head at the start of the buffer: it and its length, or `None` when
    /// more bytes are needed. Sets the framing and keep-alive of its body.
    fn parse(&mut self) -> Result<Option<(Head, usize)>, H1Error> {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let used = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            &self.rbuf[..self.filled],
            &mut slots,
        )? {
            httparse::Status::Partial => return Ok(None),
            httparse::Status::Complete(used) => used,
        };
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| H1Error::Invalid("status code"))?;
        let http11 = response.version == Some(1);
        let mut keep_alive = http11;
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut encoded = false;
        let mut retry_after = None;
        for h in response.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(H1Error::Invalid("content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(H1Error::Invalid("content-length"));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                encoded = true;
                // Only the last coding decides: chunked or not.
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if !http11 && token.eq_ignore_ascii_case(b"keep-alive") {
                        keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("retry-after") {
                retry_after = std::str::from_utf8(h.value).ok().map(str::to_string);
            }
        }
        let framing = if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Empty
        } else if encoded {
            if chunked {
                Framing::Chunked
            } else {
                Framing::Close
            }
        } else {
            match length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            }
        };
        if framing == Framing::Close {
            keep_alive = false;
        }
        self.framing = framing;
        self.keep_alive = keep_alive;
        Ok(Some((
            Head {
                status,
                retry_after,
            },
            used,
        )))
    }

    /// Reads the body of the response whose head [`Conn::head`] returned and throws it away,
    /// at most `limit` bytes of it: whether the connection can carry another request (the body
    /// was read to its end within the limit, nothing followed it, and both sides keep alive).
    pub(crate) async fn discard_body(&mut self, limit: u64) -> bool {
        let ended = match self.framing {
            Framing::Empty => true,
            Framing::Length(n) => n <= limit && self.skip(n).await,
            Framing::Chunked => self.skip_chunked(limit).await,
            Framing::Close => {
                self.skip_to_end(limit).await;
                false
            }
        };
        // Bytes after the response (nothing was asked for): the stream cannot be trusted.
        ended && self.keep_alive && self.filled == 0
    }

    /// Skips `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> bool {
        loop {
            let here = n.min(self.filled as u64);
            self.consume(here as usize);
            n -= here;
            if n == 0 {
                return true;
            }
            if !matches!(self.fill().await, Ok(1..)) {
                return false;
            }
        }
    }

    /// Reads until the end of the stream or `limit` bytes.
    async fn skip_to_end(&mut self, limit: u64) {
        let mut seen = self.filled as u64;
        self.filled = 0;
        while seen <= limit {
            match self.fill().await {
                Ok(1..) => {
                    seen += self.filled as u64;
                    self.filled = 0;
                }
                _ => return,
            }
        }
    }

    /// Decodes a chunked body (up to `limit` bytes of data) and throws it away: whether it
    /// ended.
    async fn skip_chunked(&mut self, limit: u64) -> bool {
        let mut state = Chunk::Size;
        let mut data = 0u64;
        loop {
            match self.step_chunked(&mut state, &mut data) {
                Err(_) => return false,
                Ok(true) => return true,
                Ok(false) => {}
            }
            if data > limit {
                return false;
            }
            if self.filled == self.rbuf.len() {
                // A line longer than the buffer.
                if self.rbuf.len() >= MAX_HEAD {
                    return false;
                }
                let grown = (self.rbuf.len() * 2).min(MAX_HEAD);
                self.rbuf.resize(grown, 0);
            }
            if !matches!(self.fill().await, Ok(1..)) {
                return false;
            }
        }
    }

    /// Decodes what the buffer holds of a chunked body: `Ok(true)` at its end, `Ok(false)`
    /// when more bytes are needed.
    fn step_chunked(&mut self, state: &mut Chunk, data: &mut u64) -> Result<bool, H1Error> {
        loop {
            match *state {
                Chunk::Size => match httparse::parse_chunk_size(&self.rbuf[..self.filled]) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        self.consume(used);
                        *state = Chunk::Trailers;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.consume(used);
                        *data = data.saturating_add(size);
                        *state = Chunk::Data(size);
                    }
                    Ok(httparse::Status::Partial) => return Ok(false),
                    Err(_) => return Err(H1Error::Invalid("chunk size")),
                },
                Chunk::Data(n) => {
                    let here = n.min(self.filled as u64);
                    self.consume(here as usize);
                    *state = if here == n {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(n - here)
                    };
                    if here < n {
                        return Ok(false);
                    }
                }
                Chunk::DataEnd => {
                    if self.filled < 2 {
                        return Ok(false);
                    }
                    if &self.rbuf[..2] != b"\r\n" {
                        return Err(H1Error::Invalid("chunk end"));
                    }
                    self.consume(2);
                    *state = Chunk::Size;
                }
                Chunk::Trailers => {
                    let Some(end) = self.rbuf[..self.filled].iter().position(|&b| b == b'\n')
                    else {
                        return Ok(false);
                    };
                    let empty = self.rbuf[..end].iter().all(|&b| b == b'\r');
                    self.consume(end + 1);
                    if empty {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

/// The bytes of a POST of `body` to `origin` with `headers`, as hyper's HTTP/1 client writes
/// them: the request line, each header as `name: value` in the map's order, `content-length`
/// last (none for an empty body), an empty line, the body.
pub(crate) fn encode(out: &mut Vec<u8>, origin: &Uri, headers: &HeaderMap, body: &[u8]) {
    out.clear();
    let target = origin.path_and_query().map_or("/", |pq| pq.as_str());
    out.reserve(target.len() + headers.len() * 32 + body.len() + 64);
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() {
        // hyper sends an empty body as no body: no length.
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
    use http::{HeaderValue, Method, Request};
    use http_body_util::{BodyExt as _, Full};
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    use super::*;

    /// A server that records what each connection sent until it closes, and answers nothing.
    async fn recorder() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let _ = s.read_to_end(&mut got).await;
                    let _ = tx.send(got);
                });
            }
        });
        (addr, rx)
    }

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("hook.test:8080"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(USER_AGENT, HeaderValue::from_static("pilot-daemon/0.1.0"));
        let mut auth = HeaderValue::from_static("Basic dTpw");
        auth.set_sensitive(true);
        h.insert(AUTHORIZATION, auth);
        h.append("x-team", HeaderValue::from_static("blue"));
        h.append("x-team", HeaderValue::from_static("red"));
        h.insert("webhook-id", HeaderValue::from_static("msg_7_1"));
        h.insert("webhook-timestamp", HeaderValue::from_static("1700000000"));
        h.insert(
            "webhook-signature",
            HeaderValue::from_static("v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="),
        );
        h
    }

    /// What hyper's HTTP/1 client (as the client configured it before: flattened writes)
    /// writes for the request.
    async fn hyper_bytes(origin: &Uri, headers: &HeaderMap, body: &'static [u8]) -> Vec<u8> {
        let (addr, mut rx) = recorder().await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut h1 = hyper::client::conn::http1::Builder::new();
        h1.writev(false);
        let (mut sender, conn) = h1.handshake(TokioIo::new(tcp)).await.unwrap();
        let task = tokio::spawn(conn);
        let mut request = Request::new(Full::new(Bytes::from_static(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = origin.clone();
        *request.headers_mut() = headers.clone();
        let sent = tokio::spawn(async move {
            let _ = sender.send_request(request).await;
        });
        // No answer comes: the bytes are there once the request is written.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        sent.abort();
        task.abort();
        let _ = task.await;
        rx.recv().await.unwrap()
    }

    async fn our_bytes(origin: &Uri, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
        let (addr, mut rx) = recorder().await;
        let mut conn = Conn::new(Stream::Plain(TcpStream::connect(addr).await.unwrap()));
        conn.send(origin, headers, body).await.unwrap();
        drop(conn);
        rx.recv().await.unwrap()
    }

    #[tokio::test]
    async fn requests_are_the_bytes_hyper_writes() {
        let body: &'static [u8] = br#"{"event":"handshake.received","data":{"a":1}}"#;
        for origin in ["/events", "/a/b?c=1&d=%20", "/"] {
            let origin: Uri = origin.parse().unwrap();
            for (h, b) in [
                (headers(), body),
                (HeaderMap::new(), &b""[..]),
                (headers(), &[b'x'; 70_000][..]),
            ] {
                let theirs = hyper_bytes(&origin, &h, b).await;
                let ours = our_bytes(&origin, &h, b).await;
                assert_eq!(
                    String::from_utf8_lossy(&ours[..ours.len().min(600)]),
                    String::from_utf8_lossy(&theirs[..theirs.len().min(600)]),
                );
                assert_eq!(ours, theirs, "{origin}");
            }
        }
    }

    /// A server that answers the first request on each connection with `reply` (in pieces
    /// when it has several) and keeps the connection open.
    async fn answering(reply: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    for piece in reply {
                        let _ = s.write_all(piece).await;
                        let _ = s.flush().await;
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest).await;
                });
            }
        });
        addr
    }

    /// What our connection makes of a response: the status, `Retry-After`, and whether the
    /// connection is kept.
    async fn ours(reply: Vec<&'static [u8]>) -> Result<(u16, Option<String>, bool), String> {
        let addr = answering(reply).await;
        let mut conn = Conn::new(Stream::Plain(TcpStream::connect(addr).await.unwrap()));
        conn.send(&Uri::from_static("/"), &HeaderMap::new(), b"{}")
            .await
            .unwrap();
        let head = tokio::time::timeout(std::time::Duration::from_secs(2), conn.head())
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| e.to_string())?;
        let kept = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            conn.discard_body(64 * 1024),
        )
        .await
        .unwrap_or(false);
        Ok((head.status.as_u16(), head.retry_after, kept))
    }

    /// What hyper's client makes of it: the status, `Retry-After`, and whether the body ended
    /// (within 500 ms).
    async fn theirs(reply: Vec<&'static [u8]>) -> Result<(u16, Option<String>, bool), String> {
        let addr = answering(reply).await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::post("/")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            sender.send_request(request),
        )
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let ended = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            response.into_body().collect(),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        Ok((status, retry, ended))
    }

    #[tokio::test]
    async fn responses_are_read_as_hyper_reads_them() {
        let cases: Vec<(Vec<&'static [u8]>, bool)> = vec![
            (vec![b"HTTP/1.1 204 No Content\r\n\r\n"], true),
            (
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"],
                true,
            ),
            (
                vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe", b"llo"],
                true,
            ),
            (
                vec![
                    b"HTTP/1.1 100 Continue\r\n\r\n",
                    b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
                ],
                true,
            ),
            (
                vec![
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n",
                    b"3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n",
                ],
                true,
            ),
            (
                vec![b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\ncontent-length: 0\r\n\r\n"],
                true,
            ),
            (
                vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"],
                false,
            ),
            (
                vec![b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"],
                false,
            ),
            (
                vec![b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"],
                true,
            ),
            // No length: the body ends when the server closes (it does not here).
            (vec![b"HTTP/1.1 200 OK\r\n\r\nstream"], false),
            // Longer than it says it is, still coming.
            (
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"],
                false,
            ),
            (vec![b"HTTP/1.1 2000 Huh\r\n\r\n"], false),
            (vec![b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"], false),
            (vec![b"garbage\r\n\r\n"], false),
        ];
        for (reply, kept) in cases {
            let shown = String::from_utf8_lossy(&reply.concat()).to_string();
            let a = ours(reply.clone()).await;
            let b = theirs(reply).await;
            match (&a, &b) {
                (Ok((sa, ra, ka)), Ok((sb, rb, _))) => {
                    assert_eq!((sa, ra), (sb, rb), "{shown}");
                    assert_eq!(*ka, kept, "{shown}");
                }
                (Err(_), Err(_)) => {}
                _ => panic!("{shown}: ours {a:?}, hyper's {b:?}"),
            }
            if let Ok((_, _, true)) = a {
                // A body hyper also read to its end.
                assert!(matches!(b, Ok((_, _, true))), "{shown}");
            }
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_closes_the_connection() {
        let big: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: 70000\r\n\r\n{}",
                "x".repeat(70_000)
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        assert_eq!(ours(vec![big]).await.unwrap(), (200, None, false));
        let chunked: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n11170\r\n{}\r\n0\r\n\r\n",
                "x".repeat(70_000)
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        assert_eq!(ours(vec![chunked]).await.unwrap(), (200, None, false));
    }
}
