//! Criterion benches of the in-process hot path: `Bus::publish` and the event's payload
//! encoding (issue 4's goals: publish <= 100 ns per event with one subscriber, <= 400 ns with
//! eight).
//!
//! Method: each measured event is one `Bus::publish` of `handshake.received` with a ~110-byte
//! data object, to subscribers whose pattern is `*` (every one of them gets it). The name and
//! data are built before the clock starts (in the daemon they come out of the IPC decode,
//! already owned). Subscribers are drained between chunks of [`CHUNK`] events, outside the
//! clock, so every publish finds room in every buffer, as in a daemon whose webhook keeps up;
//! the events are freed there too (the consumer frees them in the daemon).
//!
//! The benches use the daemon's global allocator (mimalloc), so allocation costs what it costs
//! in the daemon.
//!
//! Run: `cargo bench -p pilot-core --bench bus` (`-- --quick` for a fast look).

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Bencher, Criterion, Throughput};
use pilot_core::{Bus, Event, Pattern, Subscription};
use serde_json::value::RawValue;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events published between two drains of the subscribers (also their buffer capacity).
const CHUNK: usize = 512;
const NAME: &str = "handshake.received";
const DATA: &str = r#"{"peer_node_id":7,"justification":"want to collaborate","address":"0:0000.0000.0007","hostname":"node-7.example.org"}"#;

fn data() -> Box<RawValue> {
    RawValue::from_string(DATA.to_string()).expect("DATA is valid JSON")
}

/// Times `publish` alone of `iters` events to `n` subscribers (see the module docs).
fn publish_to(b: &mut Bencher<'_>, n: usize) {
    let all: Pattern = "*".parse().expect("`*` is a valid pattern");
    let bus = Bus::new(5);
    let mut subs: Vec<Subscription> = (0..n)
        .map(|i| bus.subscribe(format!("bench-{i}"), all.clone(), CHUNK))
        .collect();
    let data = data();
    let mut inputs: Vec<(String, Option<Box<RawValue>>)> = Vec::with_capacity(CHUNK);
    b.iter_custom(|iters| {
        let mut measured = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let k = left.min(CHUNK as u64);
            inputs.extend((0..k).map(|_| (NAME.to_string(), Some(data.clone()))));
            let start = Instant::now();
            for (name, data) in inputs.drain(..) {
                black_box(bus.publish(name, data));
            }
            measured += start.elapsed();
            for sub in &mut subs {
                while sub.try_recv().is_some() {}
            }
            left -= k;
        }
        measured
    });
    let dropped: u64 = subs
        .iter()
        .map(|s| s.counters().dropped.load(Ordering::Relaxed))
        .sum();
    assert_eq!(
        dropped, 0,
        "a subscriber dropped events: the bench is wrong"
    );
}

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("bus_publish");
    group.throughput(Throughput::Elements(1));
    for n in [1usize, 8] {
        group.bench_function(format!("{n}_subscribers"), |b| publish_to(b, n));
    }
    group.finish();
}

fn payload(c: &mut Criterion) {
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("payload", |b| {
        let data = data();
        let ts = jiff::Timestamp::now();
        b.iter_batched(
            || Event::new(42, NAME, 5, ts, Some(data.clone())),
            |event| black_box(event.payload()),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, publish, payload);
criterion_main!(benches);
