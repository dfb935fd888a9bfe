//! The SSRF guard at delivery time: literal addresses (mapped IPv6 included) and metadata
//! hostnames are refused before any connection, permanently (no retry). Hostnames resolving to
//! blocked addresses are covered by the resolver's unit tests (src/client.rs).

use std::time::Duration;

use pilot_core::Bus;
use pilot_webhook::{validate_url, Url, UrlError, WebhookPlugin};

use crate::receiver::Receiver;
use crate::support::{fast_options, settled, wait_stats};

async fn refused(url: &str) -> String {
    let url = Url::parse(url).unwrap();
    assert!(
        matches!(validate_url(url.as_str()), Err(UrlError::Blocked { .. })),
        "the URL policy also refuses {url}"
    );
    let bus = Bus::new(0);
    // The daemon validates first; the plugin must still refuse a URL that slipped through.
    let plugin = WebhookPlugin::start(bus.clone(), Some(url), fast_options());
    bus.publish("a.b", None);
    let stats = wait_stats(&plugin, "failure", |s| s.failed == 1).await;
    assert_eq!(stats.retries, 0, "a blocked address is not retried");
    settled(&plugin).await;
    stats.last_error.unwrap()
}

#[tokio::test]
async fn literal_blocked_addresses_are_refused() {
    let err = refused("http://[::ffff:169.254.169.254]/latest/meta-data/").await;
    assert!(err.contains("is blocked"), "{err}");
    assert!(err.contains("169.254.169.254"), "{err}");
    let err = refused("http://169.254.169.254/").await;
    assert!(err.contains("link-local"), "{err}");
    let err = refused("http://[fe80::1]:8080/").await;
    assert!(err.contains("fe80::1"), "{err}");
}

#[tokio::test]
async fn metadata_hostnames_are_refused_without_a_lookup() {
    let err = refused("http://METADATA.google.internal./computeMetadata/v1/").await;
    assert!(err.contains("cloud metadata host"), "{err}");
}

#[tokio::test]
async fn zero_address_never_reaches_a_local_listener() {
    // On Linux, connecting to 0.0.0.0 reaches local listeners: the guard must stop it first.
    let rx = Receiver::ok().await;
    let url = format!("http://0.0.0.0:{}/x", rx.addr().port());
    let err = refused(&url).await;
    assert!(err.contains("0.0.0.0"), "{err}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rx.count(), 0);
}

#[tokio::test]
async fn localhost_goes_through_the_system_resolver_and_is_allowed() {
    let rx = Receiver::ok().await;
    let url = validate_url(&format!("http://localhost:{}/events", rx.addr().port())).unwrap();
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(url), fast_options());
    bus.publish("a.b", None);
    rx.wait_for(1, Duration::from_secs(5)).await;
    let stats = settled(&plugin).await;
    assert_eq!(stats.delivered, 1);
}
