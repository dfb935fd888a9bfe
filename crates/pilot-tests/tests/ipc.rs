//! The control socket under abuse: garbage, oversized and cut frames, silent clients, wrong
//! versions, many clients, and a subscriber that never reads.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use pilot_tests::env::Spawned;
use pilot_tests::{wait_until, Env};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn connect(env: &Env) -> UnixStream {
    let s = UnixStream::connect(env.socket_path()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn send(s: &mut UnixStream, v: &Value) {
    let body = serde_json::to_vec(v).unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
}

/// Reads one frame; `None` when the daemon closed the connection.
fn recv(s: &mut UnixStream) -> Option<Value> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(serde_json::from_slice(&body).unwrap())
}

fn hello(s: &mut UnixStream) {
    send(s, &json!({"type": "hello", "version": 1, "client": "test"}));
    let r = recv(s).unwrap();
    assert_eq!(r["type"], "hello", "{r}");
    assert_eq!(r["version"], 1);
}

/// Starts the daemon binary directly with a short handshake timeout.
fn start(env: &Env) -> Spawned {
    std::fs::create_dir_all(&env.pilot_home).unwrap();
    let child = env
        .command(&env.daemon_bin())
        .args(["--handshake-timeout", "300ms"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(WAIT, || UnixStream::connect(env.socket_path()).is_ok()));
    Spawned(child)
}

fn responsive(env: &Env) {
    let mut s = connect(env);
    hello(&mut s);
    send(&mut s, &json!({"type": "info"}));
    let r = recv(&mut s).unwrap();
    assert_eq!(r["type"], "ok", "{r}");
}

#[test]
fn the_protocol_as_documented() {
    let env = Env::new();
    let _d = start(&env);
    let mut s = connect(&env);
    hello(&mut s);
    send(
        &mut s,
        &json!({"type": "emit", "event": "a.b", "data": {"k": 1}}),
    );
    assert_eq!(
        recv(&mut s).unwrap(),
        json!({"type": "ok", "data": {"event_id": 2}})
    );
    send(&mut s, &json!({"type": "emit", "event": "Bad"}));
    let r = recv(&mut s).unwrap();
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("invalid_argument"))
    );
    send(
        &mut s,
        &json!({"type": "emit", "event": "a.b", "data": [1]}),
    );
    assert_eq!(recv(&mut s).unwrap()["code"], "invalid_argument");
    send(
        &mut s,
        &json!({"type": "set_webhook", "url": "http://169.254.169.254/"}),
    );
    assert_eq!(recv(&mut s).unwrap()["code"], "invalid_argument");
    // A newer client's request type: a clear error, and the connection stays usable.
    send(&mut s, &json!({"type": "teleport"}));
    assert_eq!(recv(&mut s).unwrap()["code"], "unknown_request");
    send(&mut s, &json!({"no_type": true}));
    assert_eq!(recv(&mut s).unwrap()["code"], "malformed_request");
    send(&mut s, &json!({"type": "info"}));
    assert_eq!(recv(&mut s).unwrap()["data"]["bus"]["last_event_id"], 2);
}

#[test]
fn version_mismatch_and_missing_hello_are_refused() {
    let env = Env::new();
    let _d = start(&env);
    let mut s = connect(&env);
    send(
        &mut s,
        &json!({"type": "hello", "version": 999, "client": "future"}),
    );
    let r = recv(&mut s).unwrap();
    assert_eq!(r["code"], "version_mismatch", "{r}");
    assert!(r["message"].as_str().unwrap().contains("999"));
    assert!(recv(&mut s).is_none(), "closed after the error");

    let mut s = connect(&env);
    send(&mut s, &json!({"type": "info"}));
    assert_eq!(recv(&mut s).unwrap()["code"], "handshake_required");
    responsive(&env);
}

#[test]
fn garbage_oversized_and_cut_frames_cost_only_their_connection() {
    let env = Env::new();
    let _d = start(&env);

    let mut s = connect(&env);
    s.write_all(b"\x00\x00\x00\x10garbage-garbage!").unwrap();
    let r = recv(&mut s).unwrap();
    assert_eq!(r["code"], "malformed_request", "{r}");
    responsive(&env);

    let mut s = connect(&env);
    hello(&mut s);
    // One write: the daemon may refuse the length and hang up before a second one.
    let mut frame = u32::MAX.to_be_bytes().to_vec();
    frame.extend_from_slice(b"xxxx");
    s.write_all(&frame).unwrap();
    let r = recv(&mut s).unwrap();
    assert_eq!(r["code"], "frame_too_large", "{r}");
    assert!(recv(&mut s).is_none());
    responsive(&env);

    let mut s = connect(&env);
    hello(&mut s);
    s.write_all(b"\x00\x00\x01\x00{\"type\":").unwrap();
    drop(s);
    responsive(&env);

    let mut s = connect(&env);
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&noise);
    drop(s);
    responsive(&env);
}

#[test]
fn a_silent_client_is_timed_out_without_wedging_others() {
    let env = Env::new();
    let _d = start(&env);
    let mut silent = connect(&env);
    responsive(&env);
    let r = recv(&mut silent).unwrap();
    assert_eq!(r["code"], "handshake_timeout");
    assert!(recv(&mut silent).is_none());
}

#[test]
fn many_concurrent_clients_are_served() {
    let env = Env::new();
    let _d = start(&env);
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let path = env.socket_path();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(path).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                hello(&mut s);
                for _ in 0..10 {
                    send(&mut s, &json!({"type": "emit", "event": "load.test"}));
                    assert_eq!(recv(&mut s).unwrap()["type"], "ok");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(env.info()["bus"]["last_event_id"], 1001);
}

#[test]
fn a_subscriber_that_never_reads_is_dropped_for_and_counted() {
    let env = Env::new();
    let _d = start(&env);
    let mut sub = connect(&env);
    hello(&mut sub);
    send(&mut sub, &json!({"type": "subscribe", "pattern": "*"}));
    assert_eq!(recv(&mut sub).unwrap()["type"], "ok");
    // Never read again: the socket buffer fills, then the bus buffer, then the bus drops.
    let file = env.tmp.path().join("flood.jsonl");
    let line = format!(
        "{{\"event\":\"flood.x\",\"data\":{{\"pad\":\"{}\"}}}}\n",
        "x".repeat(500)
    );
    std::fs::write(&file, line.repeat(20_000)).unwrap();
    let out = env
        .ctl_json(&["emit", "--file", file.to_str().unwrap()])
        .data();
    assert_eq!(out["count"], 20_000);
    let info = env.info();
    let subs = info["bus"]["subscribers"].as_array().unwrap().clone();
    let s = subs
        .iter()
        .find(|s| s["pattern"] == "*")
        .expect("subscriber listed");
    assert!(s["dropped"].as_u64().unwrap() > 0, "{s}");
    responsive(&env);
    drop(sub);
}
