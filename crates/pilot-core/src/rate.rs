//! A per-webhook rate limit as users write it: `N/s`, `N/m` or `N/h` (also `N/sec`, `N/min`,
//! `N/hour`), e.g. `10/s` or `600/m`. Stored in config.json in the same form.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// At most `count` sends per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

/// A rate limit that does not parse.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid rate limit {given:?}: use N/s, N/m or N/h with N at least 1, like 10/s or 600/m")]
pub struct RateLimitError {
    pub given: String,
}

impl RateLimit {
    /// The time between two sends at the limit.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RateLimitError { given: s.into() };
        let (n, unit) = s.trim().split_once('/').ok_or_else(err)?;
        let count: u32 = n.trim().parse().map_err(|_| err())?;
        if count == 0 {
            return Err(err());
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(err()),
        };
        Ok(RateLimit { count, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            60 => "m",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_forms_users_write() {
        let r: RateLimit = "10/s".parse().unwrap();
        assert_eq!(r.interval(), Duration::from_millis(100));
        assert_eq!(r.to_string(), "10/s");
        let r: RateLimit = " 600 / min ".parse().unwrap();
        assert_eq!((r.count, r.per), (600, Duration::from_secs(60)));
        assert_eq!(r.to_string(), "600/m");
        assert_eq!("2/h".parse::<RateLimit>().unwrap().to_string(), "2/h");
        for bad in ["", "10", "0/s", "-1/s", "10/d", "x/s", "10/"] {
            let e = bad.parse::<RateLimit>().unwrap_err().to_string();
            assert!(e.contains("N/s"), "{bad}: {e}");
        }
        let json = serde_json::to_string(&"5/m".parse::<RateLimit>().unwrap()).unwrap();
        assert_eq!(json, r#""5/m""#);
        assert!(serde_json::from_str::<RateLimit>(r#""5/x""#).is_err());
    }
}
