//! Event-name patterns, shared by bus subscriptions and webhook filters.
//!
//! `*` matches every event, `prefix.*` matches every name under `prefix.` (at any depth), and
//! anything else matches exactly that name.

use std::fmt;
use std::str::FromStr;

/// A parsed event-name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: every event.
    All,
    /// `prefix.*`: holds `prefix.` (with the dot).
    Prefix(String),
    /// Exactly this name.
    Exact(String),
}

/// A pattern that cannot match anything sensible.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid event pattern {pattern:?}: use `*`, `prefix.*` or an exact event name")]
pub struct PatternError {
    pub pattern: String,
}

impl Pattern {
    /// Whether `name` is matched.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Prefix(p) => name.starts_with(p.as_str()),
            Pattern::Exact(e) => name == e,
        }
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let err = || PatternError { pattern: s.into() };
        if s == "*" {
            return Ok(Pattern::All);
        }
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(err());
        }
        if let Some(prefix) = s.strip_suffix(".*") {
            if prefix.is_empty() || prefix.contains('*') || prefix.ends_with('.') {
                return Err(err());
            }
            return Ok(Pattern::Prefix(format!("{prefix}.")));
        }
        if s.contains('*') {
            return Err(err());
        }
        Ok(Pattern::Exact(s.into()))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::All => f.write_str("*"),
            Pattern::Prefix(p) => write!(f, "{p}*"),
            Pattern::Exact(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_everything() {
        let p: Pattern = "*".parse().unwrap();
        assert!(p.matches("a.b"));
        assert!(p.matches("daemon.started"));
    }

    #[test]
    fn prefix_matches_names_under_it_only() {
        let p: Pattern = "handshake.*".parse().unwrap();
        assert!(p.matches("handshake.received"));
        assert!(p.matches("handshake.x.y"));
        assert!(!p.matches("handshake"));
        assert!(!p.matches("handshakes.received"));
        assert!(!p.matches("trust.changed"));
        assert_eq!(p.to_string(), "handshake.*");
    }

    #[test]
    fn anything_else_is_exact() {
        let p: Pattern = "trust.changed".parse().unwrap();
        assert!(p.matches("trust.changed"));
        assert!(!p.matches("trust.changed.more"));
        assert!(!p.matches("trust"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "a*", "*.b", ".*", "a.*.*", "a b", "a..*"] {
            assert!(bad.parse::<Pattern>().is_err(), "{bad}");
        }
    }
}
