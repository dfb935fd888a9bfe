//! Durable mode end to end: accepted events survive an endpoint outage and `kill -9` of the
//! daemon and arrive in order, at least once, with stable webhook-ids; the spool's limits drop
//! the oldest events and count them.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pilot_tests::{accounting, free_port, raw, sig, wait_until, Env, Receiver, Reply};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Fast retries, so a test's outage ends soon after its receiver comes up.
const FAST: [&str; 4] = ["--backoff", "20ms", "--circuit-cooldown", "200ms"];

/// A daemon whose durable webhook points at a port nothing listens on yet (`set-webhook URL
/// --durable FLAGS`, then `daemon start` with [`FAST`]); returns the port for the receiver.
fn durable_daemon(flags: &[&str]) -> (Env, u16) {
    let env = Env::new();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    let mut args = vec!["set-webhook", url.as_str(), "--durable"];
    args.extend_from_slice(flags);
    env.ctl_json(&args).data();
    env.start(&FAST);
    (env, port)
}

/// The event ids of every `name` event the receiver got, in arrival order.
fn ids_of(rx: &Receiver, name: &str) -> Vec<u64> {
    rx.received()
        .iter()
        .flat_map(|r| r.events())
        .filter(|e| e["event"] == name)
        .map(|e| e["event_id"].as_u64().unwrap())
        .collect()
}

/// The ids of the `name` events the receiver got, in order of first arrival, asserting that
/// every duplicate came with the `webhook-id` of its first arrival.
fn first_arrivals(rx: &Receiver, name: &str) -> Vec<u64> {
    let mut order = Vec::new();
    let mut webhook_ids: HashMap<u64, String> = HashMap::new();
    for r in rx.received() {
        let webhook_id = r
            .header("webhook-id")
            .unwrap_or_else(|| panic!("no webhook-id: {:?} {:?}", r.headers, r.body))
            .to_string();
        for e in r.events().iter().filter(|e| e["event"] == name) {
            let id = e["event_id"].as_u64().unwrap();
            match webhook_ids.get(&id) {
                Some(prev) => assert_eq!(prev, &webhook_id, "a duplicate of {id} changed id"),
                None => {
                    webhook_ids.insert(id, webhook_id.clone());
                    order.push(id);
                }
            }
        }
    }
    order
}

/// Emits `name` events over the raw protocol, one at a time, until `stop`, reconnecting
/// whenever the daemon goes away; returns the ids of the emits the daemon acknowledged (in
/// durable mode: the events it said are on disk).
fn emit_until(socket: PathBuf, name: &'static str, stop: Arc<AtomicBool>) -> JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut s) = raw::connect(&socket, Duration::from_secs(20)) else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            if raw::hello(&mut s).is_none_or(|r| r["type"] != "hello") {
                continue;
            }
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let emit = json!({"type": "emit", "event": name, "data": {"seq": seq}});
                if raw::send(&mut s, &emit).is_err() {
                    break;
                }
                match raw::recv(&mut s) {
                    Some(r) if r["type"] == "ok" => {
                        acked.push(r["data"]["event_id"].as_u64().expect("event_id"))
                    }
                    // Refused (shutting down, not durable): not acknowledged.
                    Some(_) => {}
                    None => break,
                }
            }
        }
        acked
    })
}

/// A small xorshift generator: the delays of a crash test, reproducible from the seed it
/// prints (set `PILOT_TEST_SEED` to replay one).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("PILOT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            .max(1);
        eprintln!("PILOT_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing_accepted() {
    const ROUNDS: usize = 20;
    // Signed, so every request carries a webhook-id.
    let (env, port) = durable_daemon(&["--max-backoff", "100ms", "--generate-secret"]);
    let rx = Receiver::on_port(port);
    // A little latency, so a backlog builds up and crashes land mid-delivery too.
    rx.set_default(Reply::Delay(Duration::from_millis(2), 200));
    let stop = Arc::new(AtomicBool::new(false));
    let emitter = emit_until(env.socket_path(), "test.crash", stop.clone());
    let secret = env.secret();
    let mut rng = Rng::new();
    let spool_file = env.pilot_home.join("webhook-spool.redb");
    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
        env.kill_9();
        // The spool opens cleanly: the daemon starts and shows it.
        env.start(&FAST);
        let spool = env.info()["webhook"]["spool"].clone();
        assert_eq!(
            spool["path"],
            spool_file.to_str().unwrap(),
            "round {round}: no spool after restart: {spool}\nlog:\n{}",
            env.log()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let acked = emitter.join().unwrap();
    assert!(
        acked.len() > ROUNDS,
        "too few emits were acknowledged to test anything: {}",
        acked.len()
    );

    let delivered = || first_arrivals(&rx, "test.crash");
    let all_there = wait_until(WAIT, || {
        let got: HashSet<u64> = delivered().into_iter().collect();
        acked.iter().all(|id| got.contains(id))
    });
    let order = delivered();
    let got: HashSet<u64> = order.iter().copied().collect();
    let lost: Vec<u64> = acked
        .iter()
        .filter(|id| !got.contains(id))
        .copied()
        .collect();
    assert!(
        all_there,
        "{} acknowledged events were never delivered: {lost:?}; info: {}",
        lost.len(),
        env.info()
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "first deliveries out of order: {order:?}"
    );
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "ids repeated: {acked:?}"
    );
    // Signed from the first request after each restart on (recovered events included).
    for r in rx.received() {
        assert!(
            sig::standard_ok(&r, &secret),
            "unsigned or badly signed: {r:?}"
        );
    }
    let duplicates = rx
        .received()
        .iter()
        .flat_map(|r| r.events())
        .filter(|e| e["event"] == "test.crash")
        .count()
        - order.len();
    eprintln!(
        "{ROUNDS} kills: {} emits acknowledged, {} delivered, {duplicates} duplicates",
        acked.len(),
        order.len()
    );
    assert!(wait_until(WAIT, || env.info()["webhook"]["queue_depth"] == 0));
    accounting::wait_balanced(&env, WAIT);
}

#[test]
fn accepted_events_survive_an_outage_and_kill_9_in_order() {
    let (env, port) = durable_daemon(&["--max-backoff", "200ms", "--generate-secret"]);
    let secret = env.secret();

    // The receiver is down: every emit is acknowledged once its event is on disk.
    let (first, last) = env.burst("test.durable", 1000, 0);
    assert_eq!(last - first, 999);
    let spool = env.info()["webhook"]["spool"].clone();
    assert!(spool["depth"].as_u64().unwrap() >= 1000, "{spool}");

    env.kill_9();
    let restarted = env.start(&FAST);
    assert!(restarted["pid"].is_u64());
    let rx = Receiver::on_port(port);

    let done = wait_until(WAIT, || {
        let mut seen = ids_of(&rx, "test.durable");
        seen.sort_unstable();
        seen.dedup();
        seen.len() == 1000
    });
    assert!(
        done,
        "not every accepted event arrived; info: {}",
        env.info()
    );

    // In order (first arrivals), at least once, duplicates with the same webhook-id, all signed.
    for r in rx.received() {
        assert!(sig::standard_ok(&r, &secret), "signature does not verify");
    }
    let first_arrival = first_arrivals(&rx, "test.durable");
    assert_eq!(first_arrival, (first..=last).collect::<Vec<u64>>());

    // Ids never repeat across the restart.
    let started = ids_of(&rx, "daemon.started");
    assert!(started.iter().any(|id| *id > last), "{started:?}");
}

#[test]
fn a_stopped_daemon_delivers_its_backlog_after_restart() {
    let (env, port) = durable_daemon(&["--max-backoff", "100ms"]);
    let (first, last) = env.burst("test.backlog", 50, 0);
    env.stop();
    env.start(&FAST);
    let rx = Receiver::on_port(port);
    assert!(wait_until(WAIT, || ids_of(&rx, "test.backlog").len() >= 50));
    let ids = ids_of(&rx, "test.backlog");
    assert_eq!(ids, (first..=last).collect::<Vec<u64>>());
    assert!(wait_until(WAIT, || env.info()["webhook"]["spool"]["depth"] == 0));
}

#[test]
fn spool_limits_drop_the_oldest_and_count_them() {
    let (env, port) = durable_daemon(&["--max-spool-bytes", "40000", "--max-backoff", "100ms"]);
    let (first, last) = env.burst("test.limit", 400, 200);
    let spool = env.info()["webhook"]["spool"].clone();
    let dropped = spool["dropped_full"].as_u64().unwrap();
    assert!(dropped > 0, "{spool}");
    assert!(spool["bytes"].as_u64().unwrap() <= 40_000, "{spool}");
    assert!(env.info()["webhook"]["dropped"].as_u64().unwrap() >= dropped);

    let rx = Receiver::on_port(port);
    assert!(wait_until(WAIT, || env.info()["webhook"]["spool"]["depth"] == 0));
    let ids = ids_of(&rx, "test.limit");
    // The newest survived, in order; the oldest were the ones dropped.
    assert_eq!(ids.last(), Some(&last));
    assert!(
        ids[0] > first,
        "the oldest should have been dropped: {ids:?}"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn events_older_than_discard_after_are_dropped_and_counted() {
    let (env, port) = durable_daemon(&["--discard-after", "300ms", "--max-backoff", "100ms"]);
    env.burst("test.stale", 20, 0);
    assert!(wait_until(WAIT, || {
        env.info()["webhook"]["spool"]["expired"]
            .as_u64()
            .unwrap_or(0)
            >= 20
    }));
    let rx = Receiver::on_port(port);
    env.emit("test.fresh", None);
    assert!(wait_until(WAIT, || rx
        .events()
        .contains(&"test.fresh".to_string())));
    assert!(!rx.events().contains(&"test.stale".to_string()));
}
