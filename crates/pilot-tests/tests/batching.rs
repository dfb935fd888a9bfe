//! Batching end to end: `--batch-max 10` sends fewer requests than events, each body
//! `{"events":[...]}` with the events in order, signed as one body.

use std::time::Duration;

use pilot_tests::{sig, wait_until, Env, External, Kind, Receiver};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn batches_carry_events_in_order_and_their_signature_verifies() {
    let env = Env::new();
    let rx = Receiver::start();
    env.ctl_json(&[
        "set-webhook",
        &rx.url(),
        "--batch-max",
        "10",
        "--batch-wait",
        "200ms",
        "--secret",
        "batch-secret",
    ])
    .data();
    env.start(&[]);
    let file = env.tmp.path().join("events.jsonl");
    let lines: String = (0..25)
        .map(|i| format!("{{\"event\":\"batch.item\",\"data\":{{\"i\":{i}}}}}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    env.ctl_json(&["emit", "--file", file.to_str().unwrap()])
        .data();
    let total = || {
        rx.received()
            .iter()
            .map(|r| r.events().len())
            .sum::<usize>()
    };
    assert!(wait_until(WAIT, || total() >= 26), "got {}", total());
    let got = rx.received();
    assert!(got.len() < 26, "{} requests for 26 events", got.len());
    let mut ids = Vec::new();
    for r in &got {
        let body = r.json();
        let events = body["events"].as_array().expect("a batch body");
        assert!(!events.is_empty() && events.len() <= 10, "{body}");
        assert_eq!(body.as_object().unwrap().len(), 1, "only `events`: {body}");
        ids.extend(events.iter().map(|e| e["event_id"].as_u64().unwrap()));
        assert!(sig::standard_ok(r, "batch-secret"), "{:?}", r.headers);
        assert!(sig::pilot_ok(r, "batch-secret"));
    }
    assert_eq!(ids, (1..=26).collect::<Vec<u64>>(), "in order, once each");
    let items: Vec<i64> = got
        .iter()
        .flat_map(|r| r.events())
        .filter(|e| e["event"] == "batch.item")
        .map(|e| e["data"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(items, (0..25).collect::<Vec<i64>>());
    assert!(wait_until(WAIT, || env.info()["webhook"]["delivered"] == 26));

    // The documented Python receiver verifies batches too, and sees the events in order.
    let py = External::start(Kind::Python, "batch-secret");
    env.ctl_json(&[
        "set-webhook",
        py.url(),
        "--batch-max",
        "10",
        "--batch-wait",
        "200ms",
    ])
    .data();
    env.ctl_json(&["emit", "--file", file.to_str().unwrap()])
        .data();
    assert!(
        wait_until(WAIT, || py.verified_events().len() >= 25),
        "{:?}",
        py.reports()
    );
    let reports = py.reports();
    assert!(reports.len() < 25, "{} requests", reports.len());
    assert!(reports.iter().all(|r| r["verified"] == true), "{reports:?}");
    let ids: Vec<u64> = reports
        .iter()
        .flat_map(|r| r["events"].as_array().unwrap().clone())
        .map(|e| e["event_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (27..=51).collect::<Vec<u64>>());
}
