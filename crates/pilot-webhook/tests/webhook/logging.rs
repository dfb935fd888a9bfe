//! Secrets never reach the logs: every tracing event the plugin emits (at TRACE level) while it
//! signs, authenticates with a token, a Basic password and a secret header, retries, fails,
//! rotates, tests and redelivers is captured, and none holds a secret. Stats and `Debug` output
//! neither.

use std::time::Duration;

use pilot_core::{Bus, WebhookSettings};
use pilot_webhook::WebhookPlugin;

use crate::receiver::{Receiver, Reply};
use crate::support::{fast_options, self_signed, settled, wait_stats, LogCapture};

const WAIT: Duration = Duration::from_secs(5);
const SECRETS: [&str; 2] = [
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "plain-signing-SECRET-41",
];
const TOKEN: &str = "bearer-SECRET-42";
const PASSWORD: &str = "basic-SECRET-43";
const HEADER_VALUE: &str = "header-SECRET-44";

#[tokio::test]
async fn secrets_tokens_and_passwords_are_never_logged() {
    let capture = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Another test's thread may have cached a callsite as uninteresting before this scoped
    // subscriber existed: ask every callsite again.
    tracing::callsite::rebuild_interest_cache();

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let basic = dir.path().join("basic");
    std::fs::write(&basic, format!("bob:{PASSWORD}")).unwrap();

    let rx = Receiver::start([Reply::Status(500), Reply::Status(410)], Reply::Status(200)).await;
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        headers: vec![format!("X-Api-Key: {HEADER_VALUE}")],
        bearer_token_file: Some(token),
        ..Default::default()
    };
    let plugin =
        WebhookPlugin::start_with(bus.clone(), Some((rx.url("/x"), settings)), fast_options())
            .unwrap();
    plugin.set_secrets(SECRETS.iter().map(|s| s.to_string()).collect());
    bus.publish("a.b", None);
    // 500, then 410: disabled.
    wait_stats(&plugin, "disabled", |s| s.disabled.is_some()).await;
    let settings = WebhookSettings {
        basic_auth_file: Some(basic),
        insecure_tls: true,
        ..Default::default()
    };
    plugin.configure(Some((rx.url("/x"), settings))).unwrap();
    let c = bus.publish("a.c", None);
    rx.wait_for(3, WAIT).await;
    plugin.test().await.unwrap();
    plugin.redeliver(c.event_id).await.unwrap();
    // A failed configure whose file holds a secret but is malformed.
    let bad = dir.path().join("bad");
    std::fs::write(&bad, PASSWORD).unwrap();
    let err = plugin
        .configure(Some((
            rx.url("/x"),
            WebhookSettings {
                basic_auth_file: Some(bad),
                ..Default::default()
            },
        )))
        .unwrap_err();
    tracing::info!(error = %err, "a caller logs the error");
    // An HTTPS endpoint with a self-signed certificate, accepted insecurely.
    let tls = Receiver::start_tls([], Reply::Status(200), self_signed()).await;
    let settings = WebhookSettings {
        insecure_tls: true,
        headers: vec![format!("X-Api-Key: {HEADER_VALUE}")],
        ..Default::default()
    };
    plugin.configure(Some((tls.url("/s"), settings))).unwrap();
    bus.publish("a.d", None);
    tls.wait_for(1, WAIT).await;
    let stats = settled(&plugin).await;
    tracing::info!(stats = ?stats, plugin = ?plugin, "a caller logs the stats");
    let json = serde_json::to_string(&stats).unwrap();
    plugin.shutdown().await;

    let logs = capture.text();
    assert!(logs.contains("webhook delivering"), "capture works: {logs}");
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "{logs}");
    assert!(logs.contains("insecure_tls is on"), "{logs}");
    assert!(logs.contains("webhook disabled"), "{logs}");
    let forbidden = [
        SECRETS[0],
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        SECRETS[1],
        TOKEN,
        PASSWORD,
        HEADER_VALUE,
        // base64("bob:basic-SECRET-43"), the Basic header value.
        "Ym9iOmJhc2ljLVNFQ1JFVC00Mw",
    ];
    for secret in forbidden {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
        assert!(!json.contains(secret), "{secret:?} leaked into stats");
        assert!(!err.to_string().contains(secret), "{secret:?} in an error");
    }
}
