//! Per-webhook settings through `configure` / `start_with`: extra headers, Bearer and Basic auth
//! read from files, `insecure_tls`, validation before anything changes, and hot swap of
//! settings with the same split as a URL swap.

use std::time::Duration;

use pilot_core::{Bus, WebhookSettings};
use pilot_webhook::{WebhookError, WebhookPlugin};

use crate::receiver::{Receiver, Reply};
use crate::support::{fast_options, self_signed, settled, wait_stats};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn extra_headers_and_a_bearer_token_from_a_file_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        headers: vec!["X-Team: blue".into(), "User-Agent: my-agent/1".into()],
        bearer_token_file: Some(token.clone()),
        ..Default::default()
    };
    let plugin =
        WebhookPlugin::start_with(bus.clone(), Some((rx.url("/x"), settings)), fast_options())
            .unwrap();
    bus.publish("a.b", None);
    let req = &rx.wait_for(1, WAIT).await[0];
    assert_eq!(req.header("x-team").as_deref(), Some("blue"));
    assert_eq!(
        req.header("authorization").as_deref(),
        Some("Bearer tok-123")
    );
    assert_eq!(req.header("user-agent").as_deref(), Some("my-agent/1"));
    assert_eq!(
        req.header("content-type").as_deref(),
        Some("application/json")
    );
    let stats = settled(&plugin).await;
    let shown = stats.settings.unwrap();
    assert_eq!(shown.headers, ["X-Team: ***", "User-Agent: ***"]);
    assert_eq!(shown.bearer_token_file, Some(token));

    // The file is read at configure time: a new token needs a configure.
    std::fs::write(dir.path().join("token"), "tok-456").unwrap();
    bus.publish("a.c", None);
    let reqs = rx.wait_for(2, WAIT).await;
    assert_eq!(
        reqs[1].header("authorization").as_deref(),
        Some("Bearer tok-123")
    );
    let settings = plugin.settings().unwrap();
    plugin.configure(Some((rx.url("/x"), settings))).unwrap();
    bus.publish("a.d", None);
    let reqs = rx.wait_for(3, WAIT).await;
    assert_eq!(
        reqs[2].header("authorization").as_deref(),
        Some("Bearer tok-456")
    );
    settled(&plugin).await;
}

#[tokio::test]
async fn basic_auth_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let basic = dir.path().join("basic");
    std::fs::write(&basic, "bob:p@ss:word\n").unwrap();
    let rx = Receiver::ok().await;
    let bus = Bus::new(0);
    let settings = WebhookSettings {
        basic_auth_file: Some(basic),
        ..Default::default()
    };
    let plugin =
        WebhookPlugin::start_with(bus.clone(), Some((rx.url("/x"), settings)), fast_options())
            .unwrap();
    bus.publish("a.b", None);
    let req = &rx.wait_for(1, WAIT).await[0];
    assert_eq!(
        req.header("authorization").as_deref(),
        Some("Basic Ym9iOnBAc3M6d29yZA==")
    );
    settled(&plugin).await;
}

#[tokio::test]
async fn a_failed_configure_changes_nothing() {
    let a = Receiver::ok().await;
    let b = Receiver::ok().await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(a.url("/a")), fast_options());
    let sub_before = bus.subscribers()[0].id;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let bad = [
        WebhookSettings {
            bearer_token_file: Some(missing.clone()),
            ..Default::default()
        },
        WebhookSettings {
            headers: vec!["Bad Header: x".into()],
            ..Default::default()
        },
        WebhookSettings {
            headers: vec!["Content-Length: 3".into()],
            ..Default::default()
        },
        WebhookSettings {
            events: vec!["a*".into()],
            ..Default::default()
        },
    ];
    for settings in bad {
        let err = plugin.configure(Some((b.url("/b"), settings))).unwrap_err();
        let msg = err.to_string();
        match err {
            WebhookError::AuthFile { .. } => {
                assert!(msg.contains(&missing.display().to_string()), "{msg}")
            }
            _ => assert!(msg.contains(b.url("/b").as_str()), "{msg}"),
        }
    }
    assert_eq!(plugin.url(), Some(a.url("/a")));
    assert_eq!(bus.subscribers()[0].id, sub_before, "same worker");
    bus.publish("a.b", None);
    a.wait_for(1, WAIT).await;
    let stats = settled(&plugin).await;
    assert_eq!(stats.settings, Some(WebhookSettings::default()));
    assert_eq!(b.count(), 0);

    // start_with refuses the same way, starting nothing.
    let bus2 = Bus::new(0);
    let err = WebhookPlugin::start_with(
        bus2.clone(),
        Some((
            b.url("/b"),
            WebhookSettings {
                batch_max: Some(0),
                ..Default::default()
            },
        )),
        fast_options(),
    )
    .unwrap_err();
    assert!(matches!(err, WebhookError::Settings { .. }), "{err}");
    assert!(bus2.subscribers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_settings_splits_the_stream_like_a_url_swap() {
    let rx = Receiver::start([], Reply::Delay(Duration::from_millis(10), 200)).await;
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(rx.url("/x")), fast_options());
    for _ in 0..3 {
        bus.publish("a.before", None);
    }
    let settings = WebhookSettings {
        headers: vec!["X-Version: 2".into()],
        ..Default::default()
    };
    let started = tokio::time::Instant::now();
    plugin
        .configure(Some((rx.url("/x"), settings.clone())))
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(50));
    for _ in 0..3 {
        bus.publish("a.after", None);
    }
    let reqs = rx.wait_for(6, WAIT).await;
    for r in &reqs {
        let want = if r.event_id() <= 3 { None } else { Some("2") };
        assert_eq!(
            r.header("x-version").as_deref(),
            want,
            "event {}",
            r.event_id()
        );
    }
    // The same settings again change nothing (same subscription).
    let id = bus.subscribers()[0].id;
    plugin.configure(Some((rx.url("/x"), settings))).unwrap();
    assert_eq!(bus.subscribers()[0].id, id);
    let stats = settled(&plugin).await;
    assert_eq!((stats.queued, stats.delivered), (6, 6));
}

#[tokio::test]
async fn insecure_tls_accepts_a_self_signed_certificate_and_the_default_does_not() {
    let rx = Receiver::start_tls([], Reply::Status(200), self_signed()).await;
    let url = rx.url("/secure");
    let bus = Bus::new(0);
    let plugin = WebhookPlugin::start(bus.clone(), Some(url.clone()), fast_options());
    bus.publish("a.refused", None);
    let stats = wait_stats(&plugin, "certificate failure", |s| s.failed == 1).await;
    let err = stats.last_error.unwrap().to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(rx.count(), 0);

    let settings = WebhookSettings {
        insecure_tls: true,
        ..Default::default()
    };
    plugin.configure(Some((url, settings))).unwrap();
    let ev = bus.publish("a.accepted", None);
    let reqs = rx.wait_for(1, WAIT).await;
    assert_eq!(reqs[0].body, ev.payload());
    let stats = settled(&plugin).await;
    assert_eq!((stats.delivered, stats.failed), (1, 1));
    assert!(stats.settings.unwrap().insecure_tls);
}
