//! Event severity (Stalwart's `level`): how much an event matters to an operator, from `debug`
//! to `critical`, in that order.
//!
//! Every catalog event has one ([`crate::catalog::EventSpec::severity`]); an event outside the
//! catalog is [`Severity::Info`] unless its publisher says otherwise (`emit --severity`). The
//! severity travels with the event on the bus ([`crate::Event::severity`]) but is not part of
//! the webhook payload, whose bytes stay Pilot's. A webhook can leave out the events below a
//! level ([`crate::WebhookSettings::min_severity`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How much an event matters, ordered from `Debug` (least) to `Critical` (most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Severity {
    /// Fine-grained activity, useful when tracing a problem (every connection, datagram).
    Debug,
    /// Normal operation worth recording.
    #[default]
    Info,
    /// Normal but significant: a change an operator may want to know of.
    Notice,
    /// Something may be wrong: a refusal, a rate limit, a disabled endpoint.
    Warning,
    /// Needs attention now: a likely attack or a broken guarantee.
    Critical,
}

impl Severity {
    /// Every level, from the least to the most severe.
    pub const ALL: [Severity; 5] = [
        Severity::Debug,
        Severity::Info,
        Severity::Notice,
        Severity::Warning,
        Severity::Critical,
    ];

    /// The lowercase name (`--severity`, JSON, config).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown severity {given:?} (one of: {})",
    Severity::ALL.map(Severity::as_str).join(", ")
)]
pub struct UnknownSeverity {
    pub given: String,
}

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// A level's name, ignoring case and surrounding blanks.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Severity::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownSeverity {
                given: s.chars().take(40).collect(),
            })
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_from_debug_to_critical() {
        assert!(Severity::ALL.is_sorted());
        assert!(Severity::Debug < Severity::Info);
        assert!(Severity::Warning < Severity::Critical);
        assert_eq!(Severity::default(), Severity::Info);
    }

    #[test]
    fn names_round_trip_through_text_and_json() {
        for l in Severity::ALL {
            assert_eq!(l.to_string().parse::<Severity>(), Ok(l));
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(json, format!("\"{l}\""));
            assert_eq!(serde_json::from_str::<Severity>(&json).unwrap(), l);
        }
        assert_eq!(" Warning ".parse::<Severity>(), Ok(Severity::Warning));
        assert_eq!("CRITICAL".parse::<Severity>(), Ok(Severity::Critical));
    }

    #[test]
    fn an_unknown_level_lists_the_valid_ones() {
        let err = "warn".parse::<Severity>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown severity "warn" (one of: debug, info, notice, warning, critical)"#
        );
        let err = serde_json::from_str::<Severity>(r#""fatal""#).unwrap_err();
        assert!(err.to_string().contains("one of: debug, info"), "{err}");
        assert!(serde_json::from_str::<Severity>("3").is_err());
        assert!("".parse::<Severity>().is_err());
    }
}
