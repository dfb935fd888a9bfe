//! Durable mode end to end: accepted events survive an endpoint outage and `kill -9` of the
//! daemon and arrive in order, at least once, with stable webhook-ids; the spool's limits drop
//! the oldest events and count them.

use std::collections::HashMap;
use std::time::Duration;

use pilot_tests::env::wait_gone;
use pilot_tests::{free_port, sig, wait_until, Env, Receiver};

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

fn kill_9(env: &Env) {
    let pid = env.pid().expect("daemon pid");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert!(wait_gone(pid, Duration::from_secs(10)));
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

    kill_9(&env);
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
    let mut first_arrival: Vec<u64> = Vec::new();
    let mut ids: HashMap<u64, String> = HashMap::new();
    for r in rx.received() {
        assert!(sig::standard_ok(&r, &secret), "signature does not verify");
        let webhook_id = r.header("webhook-id").expect("webhook-id").to_string();
        for e in r.events() {
            let id = e["event_id"].as_u64().unwrap();
            if e["event"] != "test.durable" {
                continue;
            }
            match ids.get(&id) {
                Some(prev) => assert_eq!(prev, &webhook_id, "a duplicate of {id} changed id"),
                None => {
                    ids.insert(id, webhook_id.clone());
                    first_arrival.push(id);
                }
            }
        }
    }
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
