//! Criterion benches of the catalog check `emit` applies to every event (in pilotctl and in the
//! daemon's IPC handler): what it adds to the emit hot path.
//!
//! Method: `catalog::check` on an already-parsed name and data, as the daemon has them after
//! the IPC decode: a name outside the catalog (one binary search), and `handshake.received`
//! with the ~110-byte data object scripts/bench emits (one scan of the data).
//!
//! Run: `cargo bench -p pilot-core --bench catalog` (`-- --quick` for a fast look).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pilot_core::catalog;
use serde_json::value::RawValue;

const DATA: &str = r#"{"peer_node_id":7,"justification":"want to collaborate","address":"0:0000.0000.0007","hostname":"node-7.example.org"}"#;

fn bench(c: &mut Criterion) {
    let data = RawValue::from_string(DATA.to_string()).expect("DATA is valid JSON");
    let mut g = c.benchmark_group("catalog_check");
    g.bench_function("outside_the_catalog", |b| {
        b.iter(|| catalog::check(black_box("load.test"), Some(black_box(&data))))
    });
    g.bench_function("handshake_received", |b| {
        b.iter(|| catalog::check(black_box("handshake.received"), Some(black_box(&data))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
