//! The exposition: a `prometheus-client` registry whose one collector turns a fresh
//! [`Snapshot`] into metric families on every scrape.
//!
//! Counters end in `_total`; the latency histogram is in seconds. Only fixed words are label
//! values, plus the bus subscribers' labels (`webhook`, `ipc subscriber (pid N)`): no URL.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::snapshot::{CircuitState, Histogram, Snapshot, Source, WebhookSnapshot};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry `/metrics` is rendered from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Metrics that ask `source` for a snapshot on every render.
    pub fn new(source: impl Source) -> Metrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Collect(Arc::new(source))));
        Metrics { registry }
    }

    /// The exposition text of a fresh snapshot, ending in `# EOF`.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

struct Collect(Arc<dyn Source>);

impl fmt::Debug for Collect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Collect")
    }
}

impl Collector for Collect {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = self.0.snapshot();
        process(&mut e, &s)?;
        bus(&mut e, &s)?;
        webhook(&mut e, &s)
    }
}

fn process(e: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    let mut m = e.encode_descriptor(
        "pilot_build_info",
        "The daemon's version; always 1.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(1i64).encode(m.encode_family(&[("version", s.version.as_str())])?)?;
    gauge(
        e,
        "pilot_uptime_seconds",
        "Seconds since the daemon started.",
        s.uptime.as_secs_f64(),
    )?;
    counter(
        e,
        "pilot_log_write_errors",
        "Log lines lost: their write failed (a full disk) or the log writer was behind.",
        s.log_write_errors,
    )
}

fn bus(e: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    counter(
        e,
        "pilot_bus_events_published",
        "Events published on the bus.",
        s.bus.published,
    )?;
    // Subscribers with the same label are one series: the webhook's subscription keeps its
    // label when the URL is replaced.
    let mut by_label: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
    for sub in &s.bus.subscribers {
        let row = by_label.entry(sub.label.as_str()).or_default();
        for (sum, v) in row
            .iter_mut()
            .zip([sub.queued, sub.dropped, sub.buffered, sub.capacity])
        {
            *sum += v;
        }
    }
    let families: [(&str, &str, MetricType); 4] = [
        (
            "pilot_bus_subscriber_queued",
            "Events put into a live subscriber's buffer.",
            MetricType::Counter,
        ),
        (
            "pilot_bus_subscriber_dropped",
            "Events dropped for a live subscriber because its buffer was full.",
            MetricType::Counter,
        ),
        (
            "pilot_bus_subscriber_buffered",
            "Events waiting in a live subscriber's buffer.",
            MetricType::Gauge,
        ),
        (
            "pilot_bus_subscriber_capacity",
            "The size of a live subscriber's buffer.",
            MetricType::Gauge,
        ),
    ];
    for (i, (name, help, kind)) in families.into_iter().enumerate() {
        let mut m = e.encode_descriptor(name, help, None, kind)?;
        for (label, row) in &by_label {
            let labels = [("subscriber", *label)];
            let f = m.encode_family(&labels)?;
            match kind {
                MetricType::Counter => ConstCounter::new(row[i]).encode(f)?,
                _ => ConstGauge::new(row[i]).encode(f)?,
            }
        }
    }
    Ok(())
}

/// One endpoint's counters and gauges (the numbers `info` shows, then the queue and spool now).
fn values(w: &WebhookSnapshot) -> [(&'static str, &'static str, MetricType, u64); 30] {
    let spool = w.spool.clone().unwrap_or_default();
    [
        (
            "pilot_webhook_queued",
            "Events put into the webhook queue (durable mode: the spooler's buffer).",
            MetricType::Counter,
            w.queued,
        ),
        (
            "pilot_webhook_recovered",
            "Events found in the durable spool at start (accepted by an earlier run).",
            MetricType::Counter,
            w.recovered,
        ),
        (
            "pilot_webhook_delivered",
            "Events answered with a 2xx.",
            MetricType::Counter,
            w.delivered,
        ),
        (
            "pilot_webhook_failed",
            "Events that failed: every attempt failed, a 3xx/4xx, or a blocked address.",
            MetricType::Counter,
            w.failed,
        ),
        (
            "pilot_webhook_retries",
            "HTTP attempts after the first of an event or batch.",
            MetricType::Counter,
            w.retries,
        ),
        (
            "pilot_webhook_dropped",
            "Events dropped: queue full, cleared, drain timeout, shutdown, spool full or expired.",
            MetricType::Counter,
            w.dropped,
        ),
        (
            "pilot_webhook_dropped_queue_full",
            "The part of dropped that never entered the queue because it was full.",
            MetricType::Counter,
            w.dropped_queue_full,
        ),
        (
            "pilot_webhook_circuit_skips",
            "Events skipped without an attempt while the circuit was open.",
            MetricType::Counter,
            w.circuit_skips,
        ),
        (
            "pilot_webhook_task_failures",
            "Tasks of the endpoint (spooler, workers) that ended unexpectedly; the endpoint is failed until resumed.",
            MetricType::Counter,
            w.task_failures,
        ),
        (
            "pilot_webhook_filtered",
            "Events the webhook's events/exclude filters left out.",
            MetricType::Counter,
            w.filtered,
        ),
        (
            "pilot_webhook_queue_depth",
            "Events waiting in the queue (durable mode: in the spool), in flight excluded.",
            MetricType::Gauge,
            w.queue_depth,
        ),
        (
            "pilot_webhook_queue_capacity",
            "Capacity of the webhook queue (0 while no webhook is set).",
            MetricType::Gauge,
            w.queue_capacity,
        ),
        (
            "pilot_webhook_in_flight",
            "Events whose delivery is under way.",
            MetricType::Gauge,
            w.in_flight,
        ),
        (
            "pilot_webhook_spool_depth",
            "Records in the durable spool (0 while no spool is open).",
            MetricType::Gauge,
            spool.depth,
        ),
        (
            "pilot_webhook_spool_bytes",
            "Stored bytes of the durable spool's records (0 while no spool is open).",
            MetricType::Gauge,
            spool.bytes,
        ),
        (
            "pilot_webhook_spool_max_bytes",
            "The durable spool's size limit (0 while no spool is open).",
            MetricType::Gauge,
            spool.max_bytes,
        ),
        (
            "pilot_webhook_spool_dropped_full",
            "Spooled records dropped, oldest first, because the spool was full (part of dropped).",
            MetricType::Counter,
            spool.dropped_full,
        ),
        (
            "pilot_webhook_spool_expired",
            "Spooled records dropped because they were older than discard_after (part of dropped).",
            MetricType::Counter,
            spool.expired,
        ),
        (
            "pilot_webhook_dead_lettered",
            "Events given up on (failed, dropped, skipped) and handed to the dead-letter archive.",
            MetricType::Counter,
            w.dead_lettered,
        ),
        (
            "pilot_webhook_dead_letters",
            "Dead letters the archive holds for the endpoint.",
            MetricType::Gauge,
            w.dead_letters.count,
        ),
        (
            "pilot_webhook_dead_letter_bytes",
            "Stored bytes of the endpoint's dead letters.",
            MetricType::Gauge,
            w.dead_letters.bytes,
        ),
        (
            "pilot_webhook_dead_letters_evicted_size",
            "Dead letters dropped, oldest first, past --dead-letter-max-bytes.",
            MetricType::Counter,
            w.dead_letters.evicted_size,
        ),
        (
            "pilot_webhook_dead_letters_evicted_age",
            "Dead letters dropped because they were older than --dead-letter-retention.",
            MetricType::Counter,
            w.dead_letters.evicted_age,
        ),
        (
            "pilot_webhook_retained",
            "Delivered events the archive retains for replay (--retain).",
            MetricType::Gauge,
            w.retained.count,
        ),
        (
            "pilot_webhook_retained_bytes",
            "Stored bytes of the retained deliveries.",
            MetricType::Gauge,
            w.retained.bytes,
        ),
        (
            "pilot_webhook_retained_evicted_size",
            "Retained deliveries dropped, oldest first, past --retain-max-bytes.",
            MetricType::Counter,
            w.retained.evicted_size,
        ),
        (
            "pilot_webhook_retained_evicted_age",
            "Retained deliveries dropped because they were older than --retain.",
            MetricType::Counter,
            w.retained.evicted_age,
        ),
        (
            "pilot_webhook_replay_pending",
            "Replays queued for the endpoint, not settled yet.",
            MetricType::Gauge,
            w.replay_pending,
        ),
        (
            "pilot_webhook_replay_delivered",
            "Replayed events delivered.",
            MetricType::Counter,
            w.replay_delivered,
        ),
        (
            "pilot_webhook_replay_failed",
            "Replayed events that failed again (dead-lettered again).",
            MetricType::Counter,
            w.replay_failed,
        ),
    ]
}

/// Reads one yes/no state of an endpoint.
type Flag = fn(&WebhookSnapshot) -> bool;

/// Every endpoint's series, labelled `webhook="NAME"` (never the URL).
fn webhook(e: &mut DescriptorEncoder, s: &Snapshot) -> fmt::Result {
    let flags: [(&str, &str, Flag); 3] = [
        (
            "pilot_webhook_configured",
            "1 while the endpoint has a URL.",
            |w| w.configured,
        ),
        (
            "pilot_webhook_disabled",
            "1 while the endpoint is disabled (410 Gone, or disable_after).",
            |w| w.disabled,
        ),
        (
            "pilot_webhook_paused",
            "1 while the endpoint is paused.",
            |w| w.paused,
        ),
    ];
    for (name, help, get) in flags {
        let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for w in &s.webhooks {
            let labels = [("webhook", w.name.as_str())];
            let f = m.encode_family(&labels)?;
            ConstGauge::new(u64::from(get(w))).encode(f)?;
        }
    }
    let mut m = e.encode_descriptor(
        "pilot_webhook_circuit_state",
        "The circuit breaker's state: 1 for the state it is in, 0 for the others.",
        None,
        MetricType::Gauge,
    )?;
    for w in &s.webhooks {
        for state in CircuitState::ALL {
            let labels = [("webhook", w.name.as_str()), ("state", state.as_str())];
            let f = m.encode_family(&labels)?;
            ConstGauge::new(u64::from(state == w.circuit)).encode(f)?;
        }
    }
    let rows: Vec<_> = s
        .webhooks
        .iter()
        .map(|w| (w.name.as_str(), values(w)))
        .collect();
    let Some((_, first)) = rows.first() else {
        return Ok(());
    };
    for (i, (name, help, kind, _)) in first.iter().enumerate() {
        let mut m = e.encode_descriptor(name, help, None, *kind)?;
        for (webhook, row) in &rows {
            let labels = [("webhook", *webhook)];
            let f = m.encode_family(&labels)?;
            match kind {
                MetricType::Counter => ConstCounter::new(row[i].3).encode(f)?,
                _ => ConstGauge::new(row[i].3).encode(f)?,
            }
        }
    }
    let mut m = e.encode_descriptor(
        "pilot_webhook_rate_wait_seconds",
        "How long a send would wait now for the webhook's rate limit (0 without one).",
        None,
        MetricType::Gauge,
    )?;
    for w in &s.webhooks {
        let labels = [("webhook", w.name.as_str())];
        ConstGauge::new(w.rate_wait.as_secs_f64()).encode(m.encode_family(&labels)?)?;
    }
    let mut m = e.encode_descriptor(
        "pilot_webhook_attempt_duration_seconds",
        "Duration of each HTTP attempt of an endpoint, from the request's start to the \
         response status or the error; outcome success is a 2xx, failure anything else.",
        None,
        MetricType::Histogram,
    )?;
    for w in &s.webhooks {
        let name = w.name.as_str();
        histogram(
            m.encode_family(&[("webhook", name), ("outcome", "success")])?,
            &w.latency_success,
        )?;
        histogram(
            m.encode_family(&[("webhook", name), ("outcome", "failure")])?,
            &w.latency_failure,
        )?;
    }
    Ok(())
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge<N: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: N,
) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn histogram(mut m: MetricEncoder, h: &Histogram) -> fmt::Result {
    let mut buckets: Vec<(f64, u64)> = h
        .bounds
        .iter()
        .enumerate()
        .map(|(i, &bound)| (bound, h.counts.get(i).copied().unwrap_or(0)))
        .collect();
    let above: u64 = h.counts.iter().skip(h.bounds.len()).sum();
    buckets.push((f64::INFINITY, above));
    m.encode_histogram::<NoLabelSet>(h.sum, h.count(), &buckets, None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::snapshot::{BusSnapshot, SpoolSnapshot, SubscriberSnapshot};

    fn sample() -> Snapshot {
        Snapshot {
            version: "1.2.3".into(),
            uptime: Duration::from_millis(4500),
            log_write_errors: 3,
            bus: BusSnapshot {
                published: 42,
                subscribers: vec![
                    SubscriberSnapshot {
                        label: "webhook".into(),
                        queued: 40,
                        dropped: 2,
                        buffered: 3,
                        capacity: 1024,
                    },
                    SubscriberSnapshot {
                        label: "ipc \"x\"".into(),
                        queued: 5,
                        dropped: 1,
                        buffered: 0,
                        capacity: 256,
                    },
                    SubscriberSnapshot {
                        label: "ipc \"x\"".into(),
                        queued: 6,
                        dropped: 2,
                        buffered: 1,
                        capacity: 256,
                    },
                ],
            },
            webhooks: vec![WebhookSnapshot {
                name: "default".into(),
                configured: true,
                circuit: CircuitState::HalfOpen,
                queued: 40,
                delivered: 30,
                failed: 4,
                retries: 7,
                dropped: 3,
                dropped_queue_full: 2,
                circuit_skips: 1,
                filtered: 2,
                queue_depth: 1,
                queue_capacity: 1024,
                in_flight: 1,
                latency_success: Histogram {
                    bounds: vec![0.001, 0.5, 30.0],
                    counts: vec![3, 0, 1, 2],
                    sum: 65.25,
                },
                latency_failure: Histogram {
                    bounds: vec![0.001, 0.5, 30.0],
                    counts: vec![0, 1],
                    sum: 0.25,
                },
                ..WebhookSnapshot::default()
            }],
        }
    }

    fn render(s: Snapshot) -> String {
        Metrics::new(move || s.clone()).render().unwrap()
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }

    #[test]
    fn counters_and_gauges_carry_their_values_help_and_type() {
        let t = render(sample());
        for line in [
            "# HELP pilot_webhook_delivered Events answered with a 2xx.",
            "# TYPE pilot_webhook_delivered counter",
            "pilot_webhook_delivered_total{webhook=\"default\"} 30",
            "pilot_webhook_failed_total{webhook=\"default\"} 4",
            "pilot_webhook_retries_total{webhook=\"default\"} 7",
            "pilot_webhook_dropped_total{webhook=\"default\"} 3",
            "pilot_webhook_dropped_queue_full_total{webhook=\"default\"} 2",
            "pilot_webhook_circuit_skips_total{webhook=\"default\"} 1",
            "pilot_webhook_filtered_total{webhook=\"default\"} 2",
            "pilot_webhook_queued_total{webhook=\"default\"} 40",
            "pilot_webhook_recovered_total{webhook=\"default\"} 0",
            "# TYPE pilot_webhook_queue_depth gauge",
            "pilot_webhook_queue_depth{webhook=\"default\"} 1",
            "pilot_webhook_queue_capacity{webhook=\"default\"} 1024",
            "pilot_webhook_in_flight{webhook=\"default\"} 1",
            "pilot_webhook_configured{webhook=\"default\"} 1",
            "pilot_webhook_disabled{webhook=\"default\"} 0",
            "pilot_bus_events_published_total 42",
            "pilot_build_info{version=\"1.2.3\"} 1",
            "pilot_uptime_seconds 4.5",
            "# TYPE pilot_log_write_errors counter",
            "pilot_log_write_errors_total 3",
        ] {
            has(&t, line);
        }
        assert!(t.ends_with("# EOF\n"), "{t}");
    }

    #[test]
    fn the_circuit_state_is_one_hot() {
        let t = render(sample());
        has(&t, "# TYPE pilot_webhook_circuit_state gauge");
        has(
            &t,
            "pilot_webhook_circuit_state{webhook=\"default\",state=\"closed\"} 0",
        );
        has(
            &t,
            "pilot_webhook_circuit_state{webhook=\"default\",state=\"open\"} 0",
        );
        has(
            &t,
            "pilot_webhook_circuit_state{webhook=\"default\",state=\"half_open\"} 1",
        );
    }

    #[test]
    fn subscribers_with_one_label_are_summed_and_labels_escaped() {
        let t = render(sample());
        has(
            &t,
            "pilot_bus_subscriber_dropped_total{subscriber=\"webhook\"} 2",
        );
        has(
            &t,
            "pilot_bus_subscriber_dropped_total{subscriber=\"ipc \\\"x\\\"\"} 3",
        );
        has(
            &t,
            "pilot_bus_subscriber_queued_total{subscriber=\"ipc \\\"x\\\"\"} 11",
        );
        has(
            &t,
            "pilot_bus_subscriber_capacity{subscriber=\"ipc \\\"x\\\"\"} 512",
        );
        has(
            &t,
            "pilot_bus_subscriber_buffered{subscriber=\"webhook\"} 3",
        );
    }

    #[test]
    fn the_histogram_is_cumulative_with_inf_sum_and_count() {
        let t = render(sample());
        has(
            &t,
            "# TYPE pilot_webhook_attempt_duration_seconds histogram",
        );
        for line in [
            "pilot_webhook_attempt_duration_seconds_bucket{le=\"0.001\",webhook=\"default\",outcome=\"success\"} 3",
            "pilot_webhook_attempt_duration_seconds_bucket{le=\"0.5\",webhook=\"default\",outcome=\"success\"} 3",
            "pilot_webhook_attempt_duration_seconds_bucket{le=\"30.0\",webhook=\"default\",outcome=\"success\"} 4",
            "pilot_webhook_attempt_duration_seconds_bucket{le=\"+Inf\",webhook=\"default\",outcome=\"success\"} 6",
            "pilot_webhook_attempt_duration_seconds_count{webhook=\"default\",outcome=\"success\"} 6",
            "pilot_webhook_attempt_duration_seconds_sum{webhook=\"default\",outcome=\"success\"} 65.25",
            // Missing counts are zeros.
            "pilot_webhook_attempt_duration_seconds_bucket{le=\"0.5\",webhook=\"default\",outcome=\"failure\"} 1",
            "pilot_webhook_attempt_duration_seconds_bucket{le=\"+Inf\",webhook=\"default\",outcome=\"failure\"} 1",
            "pilot_webhook_attempt_duration_seconds_count{webhook=\"default\",outcome=\"failure\"} 1",
        ] {
            has(&t, line);
        }
    }

    #[test]
    fn the_spool_shows_zeros_until_one_is_open() {
        let t = render(sample());
        has(&t, "pilot_webhook_spool_depth{webhook=\"default\"} 0");
        has(&t, "pilot_webhook_spool_max_bytes{webhook=\"default\"} 0");
        let mut s = sample();
        s.webhooks[0].spool = Some(SpoolSnapshot {
            depth: 7,
            bytes: 900,
            max_bytes: 1 << 20,
            dropped_full: 2,
            expired: 1,
        });
        let t = render(s);
        has(&t, "pilot_webhook_spool_depth{webhook=\"default\"} 7");
        has(&t, "pilot_webhook_spool_bytes{webhook=\"default\"} 900");
        has(
            &t,
            "pilot_webhook_spool_max_bytes{webhook=\"default\"} 1048576",
        );
        has(
            &t,
            "pilot_webhook_spool_dropped_full_total{webhook=\"default\"} 2",
        );
        has(
            &t,
            "pilot_webhook_spool_expired_total{webhook=\"default\"} 1",
        );
    }

    #[test]
    fn every_sample_follows_its_family_help_and_type() {
        let t = render(sample());
        let mut family: Option<(String, String)> = None; // (name, type)
        let mut help_seen = None;
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                help_seen = rest.split(' ').next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(help_seen.as_deref(), Some(name), "HELP before TYPE: {line}");
                family = Some((name.to_string(), kind.to_string()));
            } else if line != "# EOF" {
                let (name, kind) = family.as_ref().expect("a TYPE before any sample");
                let sample = line.split(['{', ' ']).next().unwrap();
                let suffixes: &[&str] = match kind.as_str() {
                    "counter" => &["_total"],
                    "gauge" => &[""],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    other => panic!("unexpected type {other}"),
                };
                assert!(
                    suffixes.iter().any(|s| sample == format!("{name}{s}")),
                    "{sample} is not a sample of {name} ({kind})"
                );
            }
        }
    }

    #[test]
    fn a_fresh_snapshot_is_taken_on_every_render() {
        let n = std::sync::atomic::AtomicU64::new(0);
        let m = Metrics::new(move || {
            let mut s = Snapshot::default();
            s.bus.published = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s
        });
        assert!(m
            .render()
            .unwrap()
            .contains("pilot_bus_events_published_total 0\n"));
        assert!(m
            .render()
            .unwrap()
            .contains("pilot_bus_events_published_total 1\n"));
    }
}
