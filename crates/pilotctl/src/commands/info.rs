//! `info`: everything the running daemon knows of itself, as its JSON reply or a readable
//! summary (process, webhook URL, circuit, counters and options, bus and subscribers).

use anstyle::Style;
use pilot_ipc::protocol::{Accounting, InfoReply, SubscriberInfo, WebhookStatus};
use pilot_ipc::{Client, Request};
use serde_json::Value;

use crate::context::Context;
use crate::output::{aligned, format_uptime, paint, style, Align, CliError, Output, Table};

/// `info`.
pub async fn run(ctx: &Context) -> Result<Output, CliError> {
    let socket = ctx.socket()?;
    let mut client = Client::connect(&socket).await?;
    // The reply as sent, so fields of a newer daemon are shown too.
    let data: Value = client.call(&Request::Info).await?;
    let text = match serde_json::from_value::<InfoReply>(data.clone()) {
        Ok(info) => info_text(&info),
        Err(_) => serde_json::to_string_pretty(&data).unwrap_or_default(),
    };
    Ok(Output::Report { data, text })
}

/// The text form of an info reply.
pub fn info_text(info: &InfoReply) -> String {
    let mut process = vec![
        ("pid", info.pid.to_string()),
        ("version", info.version.clone()),
        ("node", info.node_id.to_string()),
        (
            "uptime",
            format!(
                "{} (since {})",
                format_uptime(info.uptime_secs),
                info.started_at
            ),
        ),
        ("socket", info.socket.clone()),
    ];
    // Only when lines were lost (a full disk), so the usual output stays as documented.
    if info.log_write_errors > 0 {
        process.push((
            "log write errors",
            format!("{} (log lines lost)", info.log_write_errors),
        ));
    }
    let mut out = aligned(&process, 0);
    out.push_str("\n\n");
    out.push_str(&webhook_text(&info.webhook));
    out.push_str("\n\n");
    let bus = &info.bus;
    out.push_str("bus\n");
    out.push_str(&aligned(
        &[
            ("published", bus.published.to_string()),
            ("last event id", bus.last_event_id.to_string()),
            ("subscribers", bus.subscribers.len().to_string()),
        ],
        2,
    ));
    if !bus.subscribers.is_empty() {
        out.push_str("\n\n");
        out.push_str(&indent(&subscribers_table(&bus.subscribers), 2));
    }
    out
}

/// The bus's subscribers as a table (dropped events in yellow).
fn subscribers_table(subscribers: &[SubscriberInfo]) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Right),
        ("LABEL", Align::Left),
        ("PATTERN", Align::Left),
        ("BUFFERED", Align::Right),
        ("QUEUED", Align::Right),
        ("DROPPED", Align::Right),
    ]);
    for s in subscribers {
        let plain = |v: String| (v, Style::new());
        let label = if s.label.is_empty() { "-" } else { &s.label };
        let dropped = if s.dropped > 0 {
            style::WARN
        } else {
            Style::new()
        };
        table.styled_row([
            plain(s.id.to_string()),
            plain(label.to_string()),
            plain(s.pattern.clone()),
            plain(format!("{}/{}", s.buffered, s.capacity)),
            plain(s.queued.to_string()),
            (s.dropped.to_string(), dropped),
        ]);
    }
    table.render()
}

/// Every line of `text` indented by `n` spaces.
fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{:n$}{l}", ""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The circuit state, coloured: closed green, half-open yellow, open red.
fn circuit(state: &str) -> String {
    let st = match state {
        "closed" => style::GOOD,
        "open" => style::BAD,
        _ => style::WARN,
    };
    paint(st, state)
}

pub fn webhook_text(w: &WebhookStatus) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut rows = vec![("url", w.url.clone().unwrap_or_else(|| "(none)".into()))];
    if let Some(reason) = &w.disabled {
        let at = w
            .disabled_at
            .as_deref()
            .map(|t| format!(" (at {t})"))
            .unwrap_or_default();
        rows.push((
            "disabled",
            paint(
                style::BAD,
                &format!("{reason}{at}; `pilotctl set-webhook` enables it again"),
            ),
        ));
    }
    rows.push(("signing", yes_no(w.signing)));
    rows.push(("durable", yes_no(w.settings.durable)));
    let filters = match (w.settings.events.is_empty(), w.settings.exclude.is_empty()) {
        (true, true) => "(none: every event)".to_string(),
        _ => {
            let mut parts = Vec::new();
            if !w.settings.events.is_empty() {
                parts.push(format!("events={}", w.settings.events.join(",")));
            }
            if !w.settings.exclude.is_empty() {
                parts.push(format!("exclude={}", w.settings.exclude.join(",")));
            }
            parts.join(" ")
        }
    };
    rows.push(("filters", filters));
    let mut other = crate::commands::webhook::settings_rows(&w.settings);
    other.retain(|(k, _)| !matches!(*k, "events" | "exclude" | "durable"));
    rows.extend(other);
    rows.extend([
        ("circuit", circuit(&w.circuit)),
        ("queue", format!("{}/{}", w.queue_depth, w.queue_capacity)),
        ("in flight", w.in_flight.to_string()),
    ]);
    if let Some(sp) = &w.spool {
        rows.push((
            "spool",
            format!(
                "{} events, {}/{} bytes, {} dropped (full), {} expired ({})",
                sp.depth, sp.bytes, sp.max_bytes, sp.dropped_full, sp.expired, sp.path
            ),
        ));
    }
    rows.extend([
        ("queued", w.queued.to_string()),
        ("delivered", w.delivered.to_string()),
        ("failed", w.failed.to_string()),
        ("retries", w.retries.to_string()),
        ("dropped", w.dropped.to_string()),
        ("filtered", w.filtered.to_string()),
        ("circuit skips", w.circuit_skips.to_string()),
    ]);
    // A daemon too old to send the accounting sends none.
    if let Some(a) = &w.accounting {
        rows.push(("accounting", accounting_text(a)));
    }
    if let Some(d) = &w.dead_letters {
        rows.push(("dead letters", shelf_text(d)));
    }
    if let Some(r) = &w.retained {
        rows.push(("retained", shelf_text(r)));
    }
    let r = &w.replay;
    if r.pending + r.delivered + r.failed + r.filtered > 0 {
        rows.push((
            "replays",
            format!(
                "{} pending, {} delivered, {} failed again, {} filtered",
                r.pending, r.delivered, r.failed, r.filtered
            ),
        ));
    }
    if w.archive_write_errors > 0 {
        rows.push((
            "archive",
            paint(
                style::BAD,
                &format!(
                    "{} writes failed (their events are not kept)",
                    w.archive_write_errors
                ),
            ),
        ));
    }
    if let Some(e) = &w.last_error {
        let at = w
            .last_error_at
            .as_deref()
            .map(|t| format!(" (at {t})"))
            .unwrap_or_default();
        rows.push(("last error", paint(style::BAD, &format!("{e}{at}"))));
    }
    let o = &w.options;
    rows.push((
        "options",
        format!(
            "queue_size={} timeout={} max_attempts={} backoff={} circuit_threshold={} \
             circuit_cooldown={}",
            o.queue_size,
            o.timeout,
            o.max_attempts,
            o.backoff,
            o.circuit_threshold,
            o.circuit_cooldown
        ),
    ));
    format!("webhook\n{}", aligned(&rows, 2))
}

/// `12 events, 3.1 KiB of 64 MiB, kept 7d; 0 dropped (size), 0 dropped (age)`.
fn shelf_text(s: &pilot_ipc::protocol::ArchiveStatus) -> String {
    format!(
        "{} events, {} of {}, kept {}; {} dropped (size), {} dropped (age)",
        s.count,
        pilot_core::size::format(s.bytes),
        pilot_core::size::format(s.max_bytes),
        s.retention,
        s.evicted_size,
        s.evicted_age
    )
}

/// `emitted N = delivered + failed + dropped + skipped + filtered + pending (balanced)`.
fn accounting_text(a: &Accounting) -> String {
    let settled = [
        a.delivered,
        a.failed,
        a.dropped,
        a.skipped,
        a.filtered,
        a.pending,
    ]
    .iter()
    .fold(0u64, |sum, n| sum.saturating_add(*n));
    let verdict = if a.balanced {
        "balanced".to_string()
    } else {
        format!(
            "NOT balanced: the right side is {settled}, off by {}",
            i128::from(settled) - i128::from(a.emitted)
        )
    };
    let kept = if a.dead_lettered > 0 {
        format!(
            "; {} of the failed, dropped and skipped kept as dead letters",
            a.dead_lettered
        )
    } else {
        String::new()
    };
    format!(
        "emitted {} = delivered {} + failed {} + dropped {} + skipped {} + filtered {} + \
         pending {} ({verdict}){kept}",
        a.emitted, a.delivered, a.failed, a.dropped, a.skipped, a.filtered, a.pending
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reads_well() {
        let info: InfoReply = serde_json::from_value(serde_json::json!({
            "pid": 42, "version": "0.1.0", "node_id": 5, "socket": "/h/pilot.sock",
            "started_at": "2026-01-15T12:00:00Z", "uptime_secs": 3725,
            "webhook": {
                "url": "http://localhost:8080/events", "circuit": "closed",
                "queue_depth": 1, "queue_capacity": 1024, "queued": 10, "delivered": 8,
                "failed": 1, "retries": 2, "dropped": 0, "circuit_skips": 0,
                "last_error": "HTTP 500", "last_error_at": "2026-01-15T12:01:00Z",
                "settings": {"events": ["handshake.*", "trust.*"], "exclude": ["data.datagram"],
                             "durable": true, "headers": ["X-Team: ***"], "batch_max": 10},
                "accounting": {"emitted": 15, "delivered": 8, "failed": 1, "dropped": 0,
                               "skipped": 0, "filtered": 4, "pending": 2, "balanced": true},
                "signing": true, "disabled": "HTTP 410 Gone from http://localhost:8080/events",
                "disabled_at": "2026-01-15T12:02:00Z", "filtered": 4, "in_flight": 1,
                "spool": {"path": "/h/webhook-spool.redb", "depth": 3, "bytes": 300,
                          "max_bytes": 1000, "dropped_full": 0, "expired": 0},
                "options": {"queue_size": 1024, "timeout": "5s", "max_attempts": 3,
                            "backoff": "1s", "circuit_threshold": 5, "circuit_cooldown": "30s"}
            },
            "bus": {"published": 10, "last_event_id": 10, "subscribers": [
                {"id": 1, "label": "webhook", "pattern": "*", "capacity": 1024,
                 "buffered": 0, "queued": 10, "dropped": 3}
            ]}
        }))
        .unwrap();
        let text = anstream::adapter::strip_str(&info_text(&info)).to_string();
        let expected = "\
pid:     42
version: 0.1.0
node:    5
uptime:  1h 2m 5s (since 2026-01-15T12:00:00Z)
socket:  /h/pilot.sock

webhook
  url:           http://localhost:8080/events
  disabled:      HTTP 410 Gone from http://localhost:8080/events (at 2026-01-15T12:02:00Z); `pilotctl set-webhook` enables it again
  signing:       yes
  durable:       yes
  filters:       events=handshake.*,trust.* exclude=data.datagram
  header:        X-Team: ***
  batch max:     10
  circuit:       closed
  queue:         1/1024
  in flight:     1
  spool:         3 events, 300/1000 bytes, 0 dropped (full), 0 expired (/h/webhook-spool.redb)
  queued:        10
  delivered:     8
  failed:        1
  retries:       2
  dropped:       0
  filtered:      4
  circuit skips: 0
  accounting:    emitted 15 = delivered 8 + failed 1 + dropped 0 + skipped 0 + filtered 4 + pending 2 (balanced)
  last error:    HTTP 500 (at 2026-01-15T12:01:00Z)
  options:       queue_size=1024 timeout=5s max_attempts=3 backoff=1s circuit_threshold=5 circuit_cooldown=30s

bus
  published:     10
  last event id: 10
  subscribers:   1

  ID  LABEL    PATTERN  BUFFERED  QUEUED  DROPPED
   1  webhook  *          0/1024      10        3";
        assert_eq!(text, expected);
    }

    #[test]
    fn no_webhook_says_none() {
        let text = webhook_text(&WebhookStatus::default());
        assert!(text.contains("url:           (none)"), "{text}");
        assert!(text.contains("signing:       no"), "{text}");
        assert!(
            text.contains("filters:       (none: every event)"),
            "{text}"
        );
        assert!(!text.contains("disabled"), "{text}");
        assert!(!text.contains("last error"));
        assert!(!text.contains("accounting"), "an old daemon sends none");
    }

    #[test]
    fn an_unbalanced_accounting_says_by_how_much() {
        let a = Accounting {
            emitted: 10,
            delivered: 7,
            pending: 2,
            balanced: false,
            ..Accounting::default()
        };
        assert_eq!(
            accounting_text(&a),
            "emitted 10 = delivered 7 + failed 0 + dropped 0 + skipped 0 + filtered 0 + \
             pending 2 (NOT balanced: the right side is 9, off by -1)"
        );
    }
}
