//! Endpoint faults: the real daemon delivers to receivers on 127.0.0.1 that misbehave on
//! purpose (refuse, hang, reset, 500 storm, read slowly, answer with a huge body, never finish
//! or trickle the response, flap, present a certificate nobody trusts). In each, the daemon
//! keeps answering `info` quickly, its memory stays bounded, its accounting balances in every
//! reply, and once nothing is pending every emitted event is settled exactly.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pilot_tests::env::{open_fds, rss_kib};
use pilot_tests::{free_port, wait_until, Env, Fault, FaultServer, Receiver, Reply};
use serde_json::Value;

/// How long a fault may take to settle.
const WAIT: Duration = Duration::from_secs(60);
/// `pilotctl info` must answer within this during a fault (it takes milliseconds; the machine
/// is shared and loaded, so the bound is generous).
const INFO_BOUND: Duration = Duration::from_secs(5);
/// The daemon's resident memory must stay under this (a debug build idles at ~10 MiB).
const RSS_BOUND_KIB: u64 = 128 * 1024;

/// Starts a daemon delivering to `url` with a short timeout and `extra` flags; unless `extra`
/// says otherwise: 2 attempts, 20 ms backoff, and a circuit that does not open.
fn daemon(url: &str, timeout: &str, extra: &[&str]) -> Env {
    let env = Env::new();
    let mut args = vec!["--webhook", url, "--webhook-timeout", timeout];
    for (flag, value) in [
        ("--max-attempts", "2"),
        ("--backoff", "20ms"),
        ("--circuit-threshold", "1000000"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    env.start(&args);
    env
}

fn pid(env: &Env) -> i32 {
    env.pid().expect("the daemon's pid")
}

/// `info` during the fault: answers within [`INFO_BOUND`], the accounting balances, and the
/// daemon's memory is under [`RSS_BOUND_KIB`]. Returns the webhook part.
fn check(env: &Env) -> Value {
    let asked = Instant::now();
    let run = env.ctl_json(&["info"]);
    let took = asked.elapsed();
    assert!(took < INFO_BOUND, "info took {took:?} during the fault");
    let w = run.data()["webhook"].clone();
    assert_eq!(
        w["accounting"]["balanced"], true,
        "the accounting must balance in every reply: {w}"
    );
    let rss = rss_kib(pid(env)).expect("the daemon's VmRSS");
    assert!(rss < RSS_BOUND_KIB, "the daemon uses {rss} KiB");
    w
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

/// Waits (checking all along) until nothing is pending, then checks that `emitted` events were
/// emitted and every one is settled: returns the webhook part of `info`.
fn settled(env: &Env, emitted: u64) -> Value {
    let mut last = Value::Null;
    let done = wait_until(WAIT, || {
        last = check(env);
        num(&last["accounting"], "pending") == 0
    });
    assert!(done, "still pending after {WAIT:?}: {last}");
    let a = &last["accounting"];
    assert_eq!(num(a, "emitted"), emitted, "{last}");
    let settled = ["delivered", "failed", "dropped", "skipped", "filtered"]
        .iter()
        .map(|k| num(a, k))
        .sum::<u64>();
    assert_eq!(settled, emitted, "every emitted event is settled: {last}");
    last
}

/// Samples the daemon's VmRSS every 20 ms in the background; the peak, once stopped.
struct RssPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: i32) -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssPeak {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the sampler");
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// The daemon closed every connection it opened: its open descriptors are back near where
/// they were before the fault.
fn assert_no_fd_leak(env: &Env, before: usize) {
    let ok = wait_until(Duration::from_secs(10), || {
        open_fds(pid(env)).is_some_and(|n| n <= before + 4)
    });
    assert!(
        ok,
        "open descriptors: {:?} now, {before} before the fault",
        open_fds(pid(env))
    );
}

/// Each connection was closed by the daemon within `bound` of its request.
fn assert_cut_within(server: &FaultServer, conns: usize, bound: Duration) {
    assert!(
        wait_until(Duration::from_secs(10), || server.lifetimes().len()
            >= conns),
        "{} of {conns} connections closed: {:?}",
        server.lifetimes().len(),
        server.lifetimes()
    );
    for life in server.lifetimes() {
        assert!(
            life < bound,
            "a connection lived {life:?} after its request"
        );
    }
}

#[test]
fn connection_refused_fails_every_event_fast() {
    let url = format!("http://127.0.0.1:{}/events", free_port());
    let env = daemon(&url, "1s", &[]);
    env.burst("test.refused", 20, 0);
    check(&env);
    let w = settled(&env, 21);
    assert_eq!(num(&w["accounting"], "failed"), 21, "{w}");
    assert_eq!(num(&w, "retries"), 21, "one retry each");
    let err = w["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("connect"), "{err}");
}

#[test]
fn a_server_that_accepts_then_hangs_is_cut_at_the_timeout() {
    let server = FaultServer::start(Fault::Hang);
    let env = daemon(&server.url(), "300ms", &[]);
    assert!(wait_until(WAIT, || server.requests() >= 1));
    let fds = open_fds(pid(&env)).expect("fds");
    env.burst("test.hang", 4, 0);
    // While a request hangs, the daemon answers.
    assert_eq!(check(&env)["url"], server.url());
    let w = settled(&env, 5);
    assert_eq!(num(&w["accounting"], "failed"), 5, "{w}");
    assert_eq!(server.requests(), 10, "2 attempts per event");
    assert_cut_within(&server, 10, Duration::from_secs(3));
    let err = w["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "{err}"
    );
    assert_no_fd_leak(&env, fds);
}

#[test]
fn a_reset_in_the_middle_of_the_response_is_retried_then_failed() {
    let server = FaultServer::start(Fault::ResetMidResponse);
    let env = daemon(&server.url(), "2s", &["--max-attempts", "3"]);
    env.burst("test.reset", 5, 0);
    check(&env);
    let w = settled(&env, 6);
    assert_eq!(num(&w["accounting"], "failed"), 6, "{w}");
    assert_eq!(num(&w, "retries"), 12);
    assert_eq!(server.requests(), 18, "3 attempts per event");
}

#[test]
fn a_500_storm_opens_the_circuit_and_delivery_recovers_after_it() {
    let rx = Receiver::with_default(Reply::Status(500));
    let env = daemon(
        &rx.url(),
        "1s",
        &[
            "--backoff",
            "5ms",
            "--circuit-threshold",
            "5",
            "--circuit-cooldown",
            "300ms",
        ],
    );
    env.burst("test.storm", 300, 100);
    check(&env);
    let w = settled(&env, 301);
    let a = &w["accounting"];
    assert_eq!(num(a, "delivered"), 0);
    assert!(num(a, "failed") >= 5, "{a}");
    assert!(num(a, "skipped") > 0, "the circuit opened: {a}");
    assert_eq!(num(a, "failed") + num(a, "skipped"), 301, "{a}");

    // The storm ends: after the cooldown the next event probes, and delivery goes on.
    rx.set_default(Reply::Status(200));
    assert!(wait_until(WAIT, || check(&env)["circuit"] != "open"));
    env.burst("test.after", 10, 0);
    let w = settled(&env, 311);
    assert_eq!(num(&w["accounting"], "delivered"), 10, "{w}");
    assert_eq!(w["circuit"], "closed");
}

#[test]
fn a_reader_that_takes_one_byte_a_second_is_cut_at_the_timeout() {
    let server = FaultServer::start(Fault::SlowReader);
    let env = daemon(&server.url(), "1s", &["--max-attempts", "1"]);
    let fds = open_fds(pid(&env)).expect("fds");
    // Bodies far larger than the socket buffers: the daemon's writes block on the reader.
    env.burst("test.slow", 4, 60_000);
    assert!(wait_until(WAIT, || server.requests() >= 2));
    check(&env);
    let w = settled(&env, 5);
    assert_eq!(num(&w["accounting"], "failed"), 5, "{w}");
    assert!(
        server.read() < 4 * 60_000,
        "the reader read {} bytes",
        server.read()
    );
    assert_no_fd_leak(&env, fds);
}

#[test]
fn a_huge_response_body_is_neither_buffered_nor_read_to_its_end() {
    const GIB: u64 = 1 << 30;
    let server = FaultServer::start(Fault::HugeBody(GIB));
    let env = daemon(&server.url(), "10s", &[]);
    let peak = RssPeak::start(pid(&env));
    env.burst("test.huge", 5, 0);
    check(&env);
    let w = settled(&env, 6);
    let peak = peak.finish();
    // A 2xx head came: the events are delivered; the body is dropped after 64 KiB.
    assert_eq!(num(&w["accounting"], "delivered"), 6, "{w}");
    assert!(peak < RSS_BOUND_KIB, "peak VmRSS {peak} KiB");
    assert_eq!(
        server.connections(),
        6,
        "no connection is reused after a cut body"
    );
    assert_cut_within(&server, 6, Duration::from_secs(5));
    // Each connection took at most the 64 KiB read plus what the socket buffers held.
    let sent = server.sent();
    eprintln!("huge body: peak VmRSS {peak} KiB, {sent} bytes sent over 6 connections");
    assert!(
        sent < 6 * 16 * 1024 * 1024,
        "the server got {sent} bytes out"
    );
}

#[test]
fn a_response_head_that_never_ends_is_cut_at_the_timeout() {
    let server = FaultServer::start(Fault::EndlessHead);
    let env = daemon(&server.url(), "500ms", &["--max-attempts", "1"]);
    env.burst("test.endless", 3, 0);
    check(&env);
    let w = settled(&env, 4);
    assert_eq!(num(&w["accounting"], "failed"), 4, "{w}");
    assert_cut_within(&server, 4, Duration::from_secs(3));
}

#[test]
fn a_trickled_response_head_is_cut_at_the_timeout() {
    let server = FaultServer::start(Fault::TrickleHead(Duration::from_millis(50)));
    let env = daemon(&server.url(), "2s", &["--max-attempts", "1"]);
    env.burst("test.trickle", 2, 0);
    check(&env);
    let w = settled(&env, 3);
    assert_eq!(num(&w["accounting"], "failed"), 3, "{w}");
    assert_cut_within(&server, 3, Duration::from_millis(3500));
    for life in server.lifetimes() {
        assert!(life > Duration::from_millis(1500), "cut too soon: {life:?}");
    }
}

#[test]
fn the_timeout_covers_the_response_body_too() {
    // The head comes 2.5 s into a 3 s timeout, then the body trickles: the attempt ends at
    // 3 s, not 2.5 s plus another timeout for the body.
    let server = FaultServer::start(Fault::TrickleBody {
        head_after: Duration::from_millis(2500),
        every: Duration::from_millis(50),
    });
    let env = daemon(&server.url(), "3s", &["--max-attempts", "1"]);
    env.emit("test.trickle", None);
    check(&env);
    let w = settled(&env, 2);
    // The 200 head came in time: delivered; the rest of the body is not waited for.
    assert_eq!(num(&w["accounting"], "delivered"), 2, "{w}");
    assert_cut_within(&server, 2, Duration::from_millis(4500));
    for life in server.lifetimes() {
        assert!(life > Duration::from_millis(2500), "cut too soon: {life:?}");
    }
}

/// Emits `n` events one at a time, `every` apart, checking the daemon as it goes.
fn emit_slowly(env: &Env, n: usize, every: Duration) {
    for i in 0..n {
        env.emit("test.flap", Some(&format!("{{\"i\":{i}}}")));
        if i % 5 == 0 {
            check(env);
        }
        std::thread::sleep(every);
    }
}

#[test]
fn an_endpoint_flapping_every_300ms_settles_every_event() {
    let server = FaultServer::flapping(Duration::from_millis(300), Duration::from_millis(300));
    let env = daemon(
        &server.url(),
        "500ms",
        &["--max-attempts", "4", "--backoff", "100ms"],
    );
    emit_slowly(&env, 30, Duration::from_millis(40));
    let w = settled(&env, 31);
    let a = &w["accounting"];
    assert_eq!(num(a, "delivered") + num(a, "failed"), 31, "{w}");
    assert!(num(a, "delivered") > 0, "{w}");
    let seen: BTreeSet<u64> = server.event_ids().into_iter().collect();
    assert!(seen.len() as u64 >= num(a, "delivered"), "{w}");
}

#[test]
fn a_durable_webhook_delivers_every_event_through_the_flapping() {
    let server = FaultServer::flapping(Duration::from_millis(300), Duration::from_millis(300));
    let env = daemon(
        &server.url(),
        "500ms",
        &["--durable", "--max-backoff", "200ms", "--backoff", "50ms"],
    );
    emit_slowly(&env, 30, Duration::from_millis(40));
    let w = settled(&env, 31);
    assert_eq!(num(&w["accounting"], "delivered"), 31, "at least once: {w}");
    assert_eq!(w["spool"]["depth"], 0, "{w}");
    let seen: BTreeSet<u64> = server.event_ids().into_iter().collect();
    assert_eq!(seen, (1..=31).collect(), "every event arrived");
}

#[test]
fn a_self_signed_certificate_fails_unless_insecure_tls() {
    let server = FaultServer::tls(Fault::Ok);
    let url = server.https_url();
    let env = daemon(&url, "2s", &["--max-attempts", "1"]);
    env.burst("test.tls", 2, 0);
    let w = settled(&env, 3);
    assert_eq!(num(&w["accounting"], "failed"), 3, "{w}");
    let err = w["last_error"].as_str().unwrap_or_default().to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(
        server.requests(),
        0,
        "no request went over the untrusted connection"
    );

    env.ctl_json(&["set-webhook", &url, "--insecure-tls"])
        .data();
    env.burst("test.tls_insecure", 2, 0);
    let w = settled(&env, 5);
    assert_eq!(num(&w["accounting"], "delivered"), 2, "{w}");
    assert_eq!(server.requests(), 2);
}
