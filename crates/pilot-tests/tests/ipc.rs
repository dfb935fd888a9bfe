//! The control socket under abuse: garbage, oversized and cut frames, silent clients, wrong
//! versions, many clients, and a subscriber that never reads.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use pilot_tests::env::Spawned;
use pilot_tests::{raw, wait_until, Env};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn connect(env: &Env) -> UnixStream {
    raw::connect(&env.socket_path(), Duration::from_secs(5)).unwrap()
}

fn send(s: &mut UnixStream, v: &Value) {
    raw::send(s, v).unwrap();
}

/// Reads one frame; `None` when the daemon closed the connection.
fn recv(s: &mut UnixStream) -> Option<Value> {
    raw::recv(s)
}

fn hello(s: &mut UnixStream) {
    let r = raw::hello(s).expect("a hello reply");
    assert_eq!(r["type"], "hello", "{r}");
    assert_eq!(r["version"], 1);
}

/// Starts the daemon binary directly with a short handshake timeout.
fn start(env: &Env) -> Spawned {
    start_with(env, &[])
}

/// [`start`] with more flags.
fn start_with(env: &Env, args: &[&str]) -> Spawned {
    std::fs::create_dir_all(&env.pilot_home).unwrap();
    let child = env
        .command(&env.daemon_bin())
        .args(["--handshake-timeout", "300ms"])
        .args(args)
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

    // Well-framed random bytes after the handshake: each is answered, the connection lives on.
    let mut s = connect(&env);
    hello(&mut s);
    for round in 0..50u32 {
        let len = 1 + (round * 37) % 300;
        let body: Vec<u8> = (0..len)
            .map(|i| (i.wrapping_add(round << 9).wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        s.write_all(&len.to_be_bytes()).unwrap();
        s.write_all(&body).unwrap();
        let r = recv(&mut s).unwrap();
        assert_eq!(r["code"], "malformed_request", "{r}");
    }
    send(&mut s, &json!({"type": "info"}));
    assert_eq!(recv(&mut s).unwrap()["type"], "ok");
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

/// Raises this process's soft open-file limit to at least `n` (within the hard limit); the
/// daemons the test spawns inherit it.
fn raise_nofile(n: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current.is_some_and(|c| c >= n) {
        return;
    }
    let want = lim.maximum.map_or(n, |max| max.min(n));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum: lim.maximum,
        },
    )
    .unwrap();
    assert!(
        want >= n,
        "the hard open-file limit ({want}) is below the {n} this test needs"
    );
}

#[test]
fn a_thousand_concurrent_clients_are_served() {
    const CLIENTS: usize = 1000;
    const THREADS: usize = 8;
    raise_nofile(4 * CLIENTS as u64);
    let env = Env::new();
    let _d = start(&env);
    // Every client is connected and has said hello before any of them emits: 1000 open
    // connections at once, driven from a few threads.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let path = env.socket_path();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<UnixStream> = (0..CLIENTS / THREADS)
                    .map(|_| {
                        let mut s = raw::connect(&path, Duration::from_secs(30)).unwrap();
                        hello(&mut s);
                        s
                    })
                    .collect();
                barrier.wait();
                for _ in 0..3 {
                    for s in &mut conns {
                        send(s, &json!({"type": "emit", "event": "load.test"}));
                    }
                    for s in &mut conns {
                        assert_eq!(recv(s).unwrap()["type"], "ok");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(env.info()["bus"]["last_event_id"], 1 + 3 * CLIENTS as u64);
}

/// CPU time (user + system, in clock ticks) process `pid` has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the comm: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Lowers process `pid`'s soft descriptor limit to what it has open now plus `spare`.
fn lower_fd_limit(pid: u32, spare: u64) {
    use rustix::process::{prlimit, Pid, Resource, Rlimit};
    let open_now = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    prlimit(
        Pid::from_raw(pid as i32),
        Resource::Nofile,
        Rlimit {
            current: Some(open_now + spare),
            // The daemon inherited our hard limit; only the soft one goes down.
            maximum: rustix::process::getrlimit(Resource::Nofile).maximum,
        },
    )
    .unwrap();
}

#[test]
fn running_out_of_file_descriptors_neither_kills_nor_spins_the_accept_loop() {
    let env = Env::new();
    let d = start(&env);
    let pid = d.0.id();
    lower_fd_limit(pid, 8);
    // More clients than the daemon has descriptors: it accepts some, then accept() fails
    // (EMFILE) while the rest wait in the backlog.
    let mut held: Vec<UnixStream> = (0..40).map(|_| connect(&env)).collect();
    for s in &mut held {
        send(
            s,
            &json!({"type": "hello", "version": 1, "client": "fd-hog"}),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // A loop retrying accept() without pause would burn (nearly) a whole core: ~200 ticks.
    assert!(
        used < 40,
        "the daemon used {used} ticks in 2 s while out of descriptors"
    );
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let answered = held.iter_mut().filter_map(recv).count();
    assert!(
        answered < held.len(),
        "every client got in: the limit did not bite"
    );
    // Descriptors come back: the accept loop is still there and serves everyone.
    drop(held);
    assert!(wait_until(WAIT, || {
        let Ok(mut s) = raw::connect(&env.socket_path(), Duration::from_secs(5)) else {
            return false;
        };
        raw::hello(&mut s).is_some_and(|r| r["type"] == "hello")
    }));
    responsive(&env);
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

#[test]
fn a_connection_idle_after_its_hello_is_closed_but_not_an_event_stream() {
    let env = Env::new();
    let _d = start_with(&env, &["--idle-timeout", "400ms"]);
    let mut idle = connect(&env);
    hello(&mut idle);
    let mut sub = connect(&env);
    hello(&mut sub);
    send(&mut sub, &json!({"type": "subscribe", "pattern": "late.*"}));
    assert_eq!(recv(&mut sub).unwrap()["type"], "ok");
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    assert!(recv(&mut idle).is_none(), "the idle connection was closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    // A busy client is not idle: one request every 200 ms keeps it open.
    let mut busy = connect(&env);
    hello(&mut busy);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(200));
        send(&mut busy, &json!({"type": "info"}));
        assert_eq!(recv(&mut busy).unwrap()["type"], "ok");
    }
    // The stream outlived the idle timeout and still delivers.
    send(&mut busy, &json!({"type": "emit", "event": "late.event"}));
    assert_eq!(recv(&mut busy).unwrap()["type"], "ok");
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ev = recv(&mut sub).expect("the stream is still open");
    assert_eq!(ev["event"]["event"], "late.event", "{ev}");
}

#[test]
fn clients_holding_every_descriptor_never_lock_out_info_and_stop() {
    let env = Env::new();
    let d = start(&env);
    let pid = d.0.id();
    lower_fd_limit(pid, 48);
    // Far more idle clients than the daemon has descriptors to spare.
    let mut held: Vec<UnixStream> = Vec::new();
    for _ in 0..120 {
        let mut s = connect(&env);
        send(
            &mut s,
            &json!({"type": "hello", "version": 1, "client": "fd-hog"}),
        );
        held.push(s);
    }
    // pilotctl still gets in, every time.
    for _ in 0..3 {
        let info = env.ctl_json(&["info"]);
        assert_eq!(info.code, 0, "{info:?}");
    }
    let stop = env.ctl_json(&["daemon", "stop"]);
    assert_eq!(stop.code, 0, "{stop:?}");
    assert!(pilot_tests::env::wait_gone(pid as i32, WAIT));
    drop(held);
}
