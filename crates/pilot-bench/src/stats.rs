//! Percentiles of a set of latencies (nearest rank: the smallest value with at least q of
//! the samples at or below it).

use std::time::Duration;

use serde::Serialize;

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub samples: usize,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// The nearest-rank `q` quantile (0 < q <= 1) of sorted, non-empty `v`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Summarises `samples`; `None` when there are none.
pub fn summarize(mut samples: Vec<Duration>) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    Some(Summary {
        samples: samples.len(),
        min_us: us(samples[0]),
        mean_us: us(total) / samples.len() as f64,
        p50_us: us(quantile(&samples, 0.50)),
        p90_us: us(quantile(&samples, 0.90)),
        p99_us: us(quantile(&samples, 0.99)),
        p999_us: us(quantile(&samples, 0.999)),
        max_us: us(samples[samples.len() - 1]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let s = summarize(v).expect("samples");
        assert_eq!(s.samples, 100);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.p50_us, 50.0);
        assert_eq!(s.p90_us, 90.0);
        assert_eq!(s.p99_us, 99.0);
        assert_eq!(s.p999_us, 100.0);
        assert_eq!(s.max_us, 100.0);
        assert!((s.mean_us - 50.5).abs() < 1e-9);
    }

    #[test]
    fn one_sample_and_none() {
        let s = summarize(vec![Duration::from_micros(7)]).expect("one");
        assert_eq!((s.p50_us, s.p99_us), (7.0, 7.0));
        assert!(summarize(Vec::new()).is_none());
    }
}
