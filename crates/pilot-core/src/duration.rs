//! Human durations (`500ms`, `5s`, `2m`, `24h`) for flags and config values.

use std::time::Duration;

/// A duration that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (examples: 500ms, 5s, 2m)")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

/// Parses `500ms`, `5s`, `1m 30s`, ...
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(input.trim()).map_err(|e| DurationError {
        input: input.into(),
        reason: e.to_string(),
    })
}

/// Formats a duration the way [`parse`] reads it back (`1s 500ms`, `24h`, `36h 30m`).
///
/// Hours are the largest unit, so a duration reads as the flags and the docs write it (`24h`,
/// not humantime's `1day`; `720h`, not `30days`): days, months and years vary in
/// length and in name, hours do not.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".into()
    } else {
        text.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse(" 2m ").unwrap(), Duration::from_secs(120));
        assert!(parse("fast").is_err());
        assert!(parse("").is_err());
        assert_eq!(
            parse(&format(Duration::from_millis(1500))).unwrap(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn formats_with_hours_as_the_largest_unit() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(86400), "24h"),
            (Duration::from_secs(36 * 3600 + 30 * 60), "36h 30m"),
            (Duration::from_secs(30 * 86400), "720h"),
            (Duration::new(1, 2_003_004), "1s 2ms 3us 4ns"),
        ];
        for (d, text) in cases {
            assert_eq!(format(d), text, "{d:?}");
            assert_eq!(parse(text).unwrap(), d, "{text}");
        }
        // What a user writes in days reads back in hours, the same duration.
        assert_eq!(format(parse("1d").unwrap()), "24h");
        assert_eq!(format(parse("2days").unwrap()), "48h");
    }
}
