//! A durable NATS endpoint against a three-server JetStream cluster on loopback, a stream with
//! three replicas, 20,000 events while the test kills -9 one server, then the stream's leader,
//! and restarts each: every event is in the stream exactly once, in order, and `info`'s
//! counters settle (nothing failed or dropped, nothing pending).

use std::collections::HashSet;
use std::time::Duration;

use pilot_tests::nats::{Msg, NatsServer};
use pilot_tests::{accounting, wait_until, Env};

const WAIT: Duration = Duration::from_secs(180);
const BURST: usize = 5_000;

/// A running server of the cluster (the reader's way in).
fn live(servers: &[NatsServer]) -> &NatsServer {
    servers.iter().find(|s| s.running()).expect("a live server")
}

fn ticks(servers: &[NatsServer]) -> Vec<Msg> {
    live(servers)
        .messages("FLEET")
        .into_iter()
        .filter(|m| m.header("Pilot-Event") == Some("fleet.tick"))
        .collect()
}

#[test]
fn twenty_thousand_events_survive_killing_a_server_and_the_leader_exactly_once_in_order() {
    let mut servers = NatsServer::cluster(3);
    servers[0].create_replicated_stream("FLEET", &["pilot.>"], 3);
    let url = format!(
        "nats://{}",
        servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    );
    let env = Env::new();
    let run = env.ctl_json(&["set-webhook", &url, "--durable", "--batch-max", "200"]);
    assert_eq!(run.code, 0, "{run:?}");
    env.start(&[
        "--backoff",
        "50ms",
        "--circuit-cooldown",
        "200ms",
        "--webhook-timeout",
        "2s",
    ]);
    let mut ids = Vec::new();
    let mut burst = |env: &Env| {
        let (a, b) = env.burst("fleet.tick", BURST, 16);
        ids.extend(a..=b);
    };

    burst(&env);
    // A server that does not lead the stream.
    let leader = live(&servers).stream_leader("FLEET").unwrap_or_default();
    let follower = servers.iter().position(|s| s.name() != leader).unwrap();
    servers[follower].stop();
    burst(&env);
    servers[follower].start_again();
    // The leader now.
    std::thread::sleep(Duration::from_secs(1));
    let leader = live(&servers).stream_leader("FLEET").unwrap_or_default();
    let at = servers.iter().position(|s| s.name() == leader).unwrap_or(0);
    servers[at].stop();
    burst(&env);
    std::thread::sleep(Duration::from_secs(1));
    servers[at].start_again();
    burst(&env);

    assert!(
        wait_until(WAIT, || live(&servers).count("FLEET") >= ids.len() as u64),
        "{}\n{}",
        env.info(),
        env.log()
    );
    assert!(wait_until(WAIT, || ticks(&servers).len() >= ids.len()));
    let msgs = ticks(&servers);
    let got: Vec<u64> = msgs
        .iter()
        .map(|m| m.json()["event_id"].as_u64().unwrap())
        .collect();
    let distinct: HashSet<&str> = msgs
        .iter()
        .map(|m| m.header("Nats-Msg-Id").unwrap())
        .collect();
    assert_eq!(
        distinct.len(),
        msgs.len(),
        "a Nats-Msg-Id is in the stream twice"
    );
    assert_eq!(got.len(), ids.len(), "exactly once");
    assert_eq!(got, ids, "in order");
    // Accounting: it balances, nothing failed or dropped, nothing left pending.
    assert!(
        wait_until(WAIT, || env.info()["webhook"]["accounting"]["pending"] == 0),
        "{}",
        env.info()
    );
    let w = accounting::wait_balanced(&env, WAIT);
    let a = &w["accounting"];
    assert_eq!((&a["failed"], &a["dropped"]), (&0.into(), &0.into()), "{a}");
    assert!(w["delivered"].as_u64().unwrap() >= ids.len() as u64, "{w}");
}
