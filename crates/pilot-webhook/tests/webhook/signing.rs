//! Signatures end to end, checked by an independent implementation (Python's hmac, or the
//! RustCrypto crates directly): Standard Webhooks headers and `X-Pilot-Signature-256`, stable
//! ids across retries, fresh timestamps per attempt, rotation with two secrets, unique ids per
//! plugin instance, and no signature headers without a secret.

use std::time::Duration;

use pilot_core::Bus;
use pilot_webhook::WebhookPlugin;

use crate::receiver::{Receiver, Reply};
use crate::support::{fast_options, settled, verify, wait_stats, Verified};

const WAIT: Duration = Duration::from_secs(5);
const CURRENT: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD: &str = "an-old-plain-secret";

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test]
async fn requests_carry_standard_webhooks_and_pilot_signatures() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    plugin.set_secrets(vec![CURRENT.into()]);
    let a = bus.publish("a.one", None);
    let b = bus.publish(
        "a.two",
        Some(pilot_core::event::parse_data(r#"{"k":"é ü \" \\"}"#).unwrap()),
    );
    let reqs = rx.wait_for(2, WAIT).await;
    let checks = verify(&reqs, &[CURRENT]);
    for (req, (check, ev)) in reqs.iter().zip(checks.iter().zip([&a, &b])) {
        assert_eq!(
            check,
            &Verified {
                matched: vec![0],
                pilot: true
            },
            "{req:?}"
        );
        assert_eq!(req.body, ev.payload());
        let id = req.header("webhook-id").unwrap();
        assert_eq!(id, format!("msg_{}_{}", plugin.instance_id(), ev.event_id));
        assert_eq!(id, plugin.webhook_id_for(ev.event_id));
        let ts: i64 = req.header("webhook-timestamp").unwrap().parse().unwrap();
        assert!((ts - now_secs()).abs() <= 5, "timestamp {ts} is now");
        let sig = req.header("webhook-signature").unwrap();
        assert!(sig.starts_with("v1,") && !sig.contains(' '), "{sig}");
        let pilot = req.header("x-pilot-signature-256").unwrap();
        assert_eq!(pilot.len(), 64);
        assert!(pilot
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }
    let stats = settled(&plugin).await;
    assert!(stats.signing);
    assert_eq!(stats.signatures, 1);
    let shown = serde_json::to_string(&stats).unwrap();
    assert!(!shown.contains("MfKQ9r8"), "stats never show a secret");
}

#[tokio::test]
async fn retries_keep_the_id_and_sign_a_fresh_timestamp() {
    let rx = Receiver::start([Reply::Status(500)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    plugin.set_secrets(vec![CURRENT.into()]);
    bus.publish("a.b", None);
    let reqs = rx.wait_for(2, WAIT).await;
    assert_eq!(reqs[0].header("webhook-id"), reqs[1].header("webhook-id"));
    let t0: i64 = reqs[0]
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let t1: i64 = reqs[1]
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!(t1 >= t0);
    for check in verify(&reqs, &[CURRENT]) {
        assert_eq!(check.matched, [0]);
        assert!(check.pilot);
    }
    let stats = settled(&plugin).await;
    assert_eq!((stats.delivered, stats.retries), (1, 1));
}

#[tokio::test]
async fn during_a_rotation_each_secret_signs_and_either_verifies() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    plugin.set_secrets(vec![OLD.into()]);
    bus.publish("a.before", None);
    rx.wait_for(1, WAIT).await;
    // Rotate: the new secret is current, the old one still signs during the grace period.
    plugin.set_secrets(vec![CURRENT.into(), OLD.into()]);
    bus.publish("a.during", None);
    rx.wait_for(2, WAIT).await;
    // The grace period ends.
    plugin.set_secrets(vec![CURRENT.into()]);
    bus.publish("a.after", None);
    let reqs = rx.wait_for(3, WAIT).await;

    let sigs: Vec<usize> = reqs
        .iter()
        .map(|r| r.header("webhook-signature").unwrap().split(' ').count())
        .collect();
    assert_eq!(sigs, [1, 2, 1]);
    // A receiver that only knows the old secret verifies the first two, one that knows only the
    // new one verifies the last two.
    let old_only: Vec<bool> = verify(&reqs, &[OLD])
        .iter()
        .map(|v| v.matched == [0])
        .collect();
    assert_eq!(old_only, [true, true, false]);
    let new_only: Vec<bool> = verify(&reqs, &[CURRENT])
        .iter()
        .map(|v| v.matched == [0])
        .collect();
    assert_eq!(new_only, [false, true, true]);
    let both = verify(&reqs[1..2], &[CURRENT, OLD]);
    assert_eq!(both[0].matched, [0, 1]);
    assert!(
        both[0].pilot,
        "X-Pilot-Signature-256 uses the current secret"
    );
    assert_eq!(plugin.stats().signatures, 1);
    settled(&plugin).await;
}

#[tokio::test]
async fn ids_differ_between_plugin_instances_and_nothing_is_signed_without_secrets() {
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let first = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    first.set_secrets(vec![CURRENT.into()]);
    bus.publish("a.b", None);
    rx.wait_for(1, WAIT).await;
    first.shutdown().await;

    // A "restarted daemon": a new bus whose ids start again at 1, a new plugin.
    let bus = Bus::new(0);
    let second = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    second.set_secrets(vec![CURRENT.into()]);
    bus.publish("a.b", None);
    let reqs = rx.wait_for(2, WAIT).await;
    assert_eq!(reqs[0].event_id(), reqs[1].event_id());
    assert_ne!(reqs[0].header("webhook-id"), reqs[1].header("webhook-id"));
    assert_ne!(first.instance_id(), second.instance_id());

    second.set_secrets(Vec::new());
    bus.publish("a.unsigned", None);
    let reqs = rx.wait_for(3, WAIT).await;
    for h in [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-pilot-signature-256",
    ] {
        assert_eq!(reqs[2].header(h), None, "{h} without a secret");
    }
    let stats = wait_stats(&second, "settled", |s| s.delivered == 2).await;
    assert!(!stats.signing);
    settled(&second).await;
}
