//! A durable endpoint whose spooler misbehaves: a spooler that dies fails the waiting and the
//! later emits closed (`not_durable`, never `ok`), is noticed, logged, counted and marks the
//! endpoint failed until it is resumed; an event the spooler takes and loses (acknowledged,
//! yet in no bucket) makes the accounting's `balanced` false. The faults are injected through
//! the spooler's test hook; the spool, the bus and the supervision are the real ones.

use std::path::Path;
use std::time::Duration;

use pilot_core::bus::{DurabilityError, SINK_ENDED};
use pilot_core::{Bus, WebhookSettings};
use pilot_webhook::{SpoolerFault, WebhookOptions, WebhookPlugin, SPOOL_FILE};

use crate::receiver::refused_addr;
use crate::support::{assert_balanced, fast_options, wait_stats};

const WAIT: Duration = Duration::from_secs(5);

fn options(path: &Path) -> WebhookOptions {
    WebhookOptions {
        spool_path: Some(path.to_path_buf()),
        ..fast_options()
    }
}

async fn durable_plugin(bus: &Bus, path: &Path) -> WebhookPlugin {
    let url = url::Url::parse(&format!("http://{}/down", refused_addr().await)).unwrap();
    let settings = WebhookSettings {
        durable: true,
        ..Default::default()
    };
    WebhookPlugin::start_with(bus.clone(), Some((url, settings)), options(path)).expect("starts")
}

async fn wait_durable(bus: &Bus, id: u64) -> Result<(), DurabilityError> {
    tokio::time::timeout(WAIT, bus.wait_durable(id))
        .await
        .expect("wait_durable settles")
}

#[tokio::test]
async fn a_spooler_that_dies_fails_emits_closed_and_marks_the_endpoint_failed() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(0);
    let plugin = durable_plugin(&bus, &dir.path().join(SPOOL_FILE)).await;
    let before = bus.publish("test.before", None).event_id;
    assert_eq!(wait_durable(&bus, before).await, Ok(()));

    plugin.inject_spooler_fault(SpoolerFault::Panic);
    let held = bus.publish("test.held", None).event_id;
    let ended = DurabilityError::Failed {
        sink: plugin.options().bus_label(),
        reason: SINK_ENDED.into(),
    };
    assert_eq!(
        wait_durable(&bus, held).await,
        Err(ended.clone()),
        "never ok"
    );
    let stats = wait_stats(&plugin, "the failure to be noticed", |s| {
        s.task_failures == 1
    })
    .await;
    let failure = stats.failure.expect("marked failed");
    assert!(failure.contains("spooler panicked") && failure.contains("injected fault"));
    assert_eq!(stats.last_error.as_deref(), Some(failure.as_str()));
    // Later emits are refused too, while the endpoint is failed.
    let later = bus.publish("test.later", None).event_id;
    assert_eq!(wait_durable(&bus, later).await, Err(ended));

    // A resume starts it again: the events in between were never persisted (lost), new ones
    // are durable again.
    plugin.resume().unwrap();
    assert_eq!(plugin.failure(), None);
    for id in [held, later] {
        assert!(matches!(
            wait_durable(&bus, id).await,
            Err(DurabilityError::Lost { event_id, .. }) if event_id == id
        ));
    }
    let after = bus.publish("test.after", None).event_id;
    assert_eq!(wait_durable(&bus, after).await, Ok(()));
    let spool = plugin.spool().unwrap();
    assert_eq!(
        spool.stats().depth,
        2,
        "before and after, nothing in between"
    );
    assert_eq!(plugin.stats().task_failures, 1, "counted once, kept");
    plugin.shutdown().await;
}

#[tokio::test]
async fn an_event_the_spooler_loses_unbalances_the_accounting() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new(0);
    let plugin = durable_plugin(&bus, &dir.path().join(SPOOL_FILE)).await;
    for _ in 0..3 {
        let id = bus.publish("test.kept", None).event_id;
        assert_eq!(wait_durable(&bus, id).await, Ok(()));
    }
    assert_balanced(&plugin.stats());

    // The spooler forgets one event: the publisher is told it is durable...
    plugin.inject_spooler_fault(SpoolerFault::LoseOne);
    let lost = bus.publish("test.lost", None).event_id;
    assert_eq!(wait_durable(&bus, lost).await, Ok(()));
    assert_eq!(plugin.spool().unwrap().stats().depth, 3, "not on disk");
    // ...and the accounting, whose sides are counted apart, says something is missing.
    let s = plugin.stats();
    assert_eq!(s.accounting.emitted, 4, "{:?}", s.accounting);
    assert_eq!(s.accounting.pending, 3, "{:?}", s.accounting);
    assert!(!s.accounting.balanced, "{:?}", s.accounting);
    plugin.shutdown().await;
}
