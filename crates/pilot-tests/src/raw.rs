//! The control protocol spoken by hand over a plain `UnixStream` (4-byte big-endian length,
//! then JSON), independent of `pilot-ipc`: for tests that abuse the socket, and for clients
//! that must see exactly which requests were answered before a crash.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// Connects to `socket` with a read timeout of `timeout`.
pub fn connect(socket: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    Ok(s)
}

/// Sends one frame holding `v`.
pub fn send(s: &mut UnixStream, v: &Value) -> io::Result<()> {
    let body = serde_json::to_vec(v).expect("JSON");
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    s.write_all(&frame)
}

/// Reads one frame; `None` when the daemon closed the connection (or the read timed out).
pub fn recv(s: &mut UnixStream) -> Option<Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(serde_json::from_slice(&body).expect("the daemon sends JSON frames"))
}

/// Says hello; returns the daemon's answer (a `hello` on success).
pub fn hello(s: &mut UnixStream) -> Option<Value> {
    send(
        s,
        &json!({"type": "hello", "version": 1, "client": "pilot-tests"}),
    )
    .ok()?;
    recv(s)
}
