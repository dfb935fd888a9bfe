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

/// Formats a duration the way [`parse`] reads it back (`1s 500ms`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
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
}
