//! Event-name patterns, shared by bus subscriptions and webhook filters, and the one place they
//! are checked.
//!
//! `*` matches every event, `prefix.*` matches every name under `prefix.` (at any depth), and
//! anything else matches exactly that name.
//!
//! Parsing refuses a pattern that can never match an event name (names follow
//! [`crate::event::validate_name`]: lowercase dotted words, at least two parts, at most
//! [`MAX_NAME_LEN`] bytes), so `Handshake.*` or `Bad..x` is an error that says why instead of a
//! filter that silently takes nothing. [`Pattern::parse_checked`] also compares a valid pattern
//! with the catalog: one that names no catalog event but is one edit away from one (a typo like
//! `handshake.recieved`) comes with a [`Suggestion`], a warning for the user, not an error
//! (names outside the catalog are allowed).

use std::fmt;
use std::str::FromStr;

use crate::catalog::CATALOG;
use crate::event::MAX_NAME_LEN;

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

/// A pattern that was refused, and why.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid event pattern {pattern:?}: {problem}")]
pub struct PatternError {
    /// The pattern as given (trimmed; cut to 64 characters).
    pub pattern: String,
    pub problem: PatternProblem,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PatternProblem {
    #[error("it is empty; use `*`, `prefix.*` or an exact event name")]
    Empty,
    #[error(
        "`*` stands alone or as the whole last part (`prefix.*`); use `*`, `prefix.*` or an \
         exact event name"
    )]
    MisplacedStar,
    #[error("it can never match: event names are lowercase (did you mean `{lowercase}`?)")]
    Uppercase { lowercase: String },
    #[error(
        "it can never match: event names hold only a-z, 0-9 and _ between their dots, not {0:?}"
    )]
    BadChar(char),
    #[error("it can never match: event names have no empty part (`..`, or a dot at an end)")]
    EmptyPart,
    #[error(
        "it can never match: event names have at least two dot-separated parts (did you mean \
         `{0}.*`?)"
    )]
    OnePart(String),
    #[error("it can never match: event names are at most {MAX_NAME_LEN} bytes")]
    TooLong,
}

/// A valid pattern that names no catalog event but is one edit away from one or more: most
/// likely a typo. A warning, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// The pattern as given.
    pub pattern: String,
    /// The catalog names or prefixes (as patterns: `handshake.received`, `handshake.*`) one
    /// edit away, in catalog order.
    pub did_you_mean: Vec<String>,
}

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.pattern.ends_with(".*") {
            "matches no catalog event"
        } else {
            "is not a catalog event"
        };
        write!(f, "event pattern `{}` {what}: did you mean ", self.pattern)?;
        for (i, s) in self.did_you_mean.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "`{s}`")?;
        }
        f.write_str("?")
    }
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

    /// Parses `s` (refusing a pattern that can never match) and compares it with the catalog:
    /// a [`Suggestion`] when it names no catalog event but is one edit away from one. Where a
    /// pattern is given by a person (`--events`, `--exclude`, `events --filter`), show the
    /// suggestion as a warning.
    pub fn parse_checked(s: &str) -> Result<(Pattern, Option<Suggestion>), PatternError> {
        let pattern: Pattern = s.parse()?;
        let suggestion = pattern.suggestion();
        Ok((pattern, suggestion))
    }

    /// When this pattern names no catalog event, the catalog names (for an exact name) or
    /// prefixes (for `prefix.*`) one edit away from it (an insertion, a deletion, a
    /// substitution or two adjacent characters swapped); `None` when it names a catalog event,
    /// or nothing in the catalog is that close.
    pub fn suggestion(&self) -> Option<Suggestion> {
        let did_you_mean: Vec<String> = match self {
            Pattern::All => return None,
            Pattern::Exact(name) => {
                if crate::catalog::lookup(name).is_some() {
                    return None;
                }
                CATALOG
                    .iter()
                    .filter(|e| !e.pattern && one_edit(name, e.name))
                    .map(|e| e.name.to_string())
                    .collect()
            }
            Pattern::Prefix(prefix) => {
                if CATALOG.iter().any(|e| e.may_start_with(prefix)) {
                    return None;
                }
                let mut near: Vec<String> = Vec::new();
                // A family's prefixes up to its first placeholder (`plugin.`).
                let known_prefixes = CATALOG
                    .iter()
                    .flat_map(|e| prefixes(e.name))
                    .filter(|p| !p.contains('<'));
                for known in known_prefixes {
                    let p = format!("{known}*");
                    if one_edit(prefix, known) && !near.contains(&p) {
                        near.push(p);
                    }
                }
                near
            }
        };
        (!did_you_mean.is_empty()).then(|| Suggestion {
            pattern: self.to_string(),
            did_you_mean,
        })
    }
}

/// Every prefix of `name` that ends with a dot: `a.b.c` -> `a.`, `a.b.`.
fn prefixes(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[..=i])
}

/// Whether `a` and `b` differ by exactly one edit (OSA distance 1: an insertion, a deletion, a
/// substitution, or two adjacent characters swapped).
fn one_edit(a: &str, b: &str) -> bool {
    a.len().abs_diff(b.len()) <= 1 && strsim::osa_distance(a, b) == 1
}

/// Why `body` (an exact name, or a prefix without its `.*`) can never match an event name,
/// if it cannot. A prefix needs room for one more part after it.
fn never_matches(body: &str, prefix: bool, given: &str) -> Option<PatternProblem> {
    let shortest = if prefix { body.len() + 2 } else { body.len() };
    let mut parts = 0;
    let mut empty = false;
    let mut upper = false;
    let mut bad = None;
    for part in body.split('.') {
        parts += 1;
        empty |= part.is_empty();
        for c in part.chars() {
            if c.is_ascii_uppercase() {
                upper = true;
            } else if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                bad.get_or_insert(c);
            }
        }
    }
    if upper {
        let lowercase = given.to_ascii_lowercase();
        if lowercase.parse::<Pattern>().is_ok() {
            return Some(PatternProblem::Uppercase { lowercase });
        }
    }
    if let Some(c) = bad {
        return Some(PatternProblem::BadChar(c));
    }
    if empty {
        return Some(PatternProblem::EmptyPart);
    }
    if !prefix && parts < 2 {
        return Some(PatternProblem::OnePart(body.to_ascii_lowercase()));
    }
    if shortest > MAX_NAME_LEN {
        return Some(PatternProblem::TooLong);
    }
    // Not reached: an uppercase letter that lowercasing does not cure comes with one of the
    // problems above.
    body.chars()
        .find(char::is_ascii_uppercase)
        .map(PatternProblem::BadChar)
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let err = |problem| PatternError {
            pattern: s.chars().take(64).collect(),
            problem,
        };
        if s == "*" {
            return Ok(Pattern::All);
        }
        if s.is_empty() {
            return Err(err(PatternProblem::Empty));
        }
        let (body, prefix) = match s.strip_suffix(".*") {
            Some(body) => (body, true),
            None => (s, false),
        };
        if body.contains('*') {
            return Err(err(PatternProblem::MisplacedStar));
        }
        if prefix && body.is_empty() {
            return Err(err(PatternProblem::EmptyPart));
        }
        if let Some(problem) = never_matches(body, prefix, s) {
            return Err(err(problem));
        }
        Ok(if prefix {
            Pattern::Prefix(format!("{body}."))
        } else {
            Pattern::Exact(s.into())
        })
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

    fn problem(s: &str) -> PatternProblem {
        s.parse::<Pattern>().unwrap_err().problem
    }

    fn suggested(s: &str) -> Option<Vec<String>> {
        let (_, suggestion) = Pattern::parse_checked(s).unwrap();
        suggestion.map(|s| s.did_you_mean)
    }

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
        let deep: Pattern = "a.b.*".parse().unwrap();
        assert!(deep.matches("a.b.c") && !deep.matches("a.bc"));
    }

    #[test]
    fn anything_else_is_exact() {
        let p: Pattern = "trust.changed".parse().unwrap();
        assert!(p.matches("trust.changed"));
        assert!(!p.matches("trust.changed.more"));
        assert!(!p.matches("trust"));
        assert_eq!(" trust.changed ".parse::<Pattern>(), Ok(p));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "a*", "*.b", ".*", "a.*.*", "a b", "a..*", "**", "a.b*"] {
            assert!(bad.parse::<Pattern>().is_err(), "{bad}");
        }
        assert_eq!(problem("  "), PatternProblem::Empty);
        assert_eq!(problem("a*"), PatternProblem::MisplacedStar);
        assert_eq!(problem("a.*.*"), PatternProblem::MisplacedStar);
    }

    #[test]
    fn patterns_that_can_never_match_say_why() {
        assert_eq!(
            problem("Handshake.*"),
            PatternProblem::Uppercase {
                lowercase: "handshake.*".into()
            }
        );
        assert_eq!(
            "Handshake.*".parse::<Pattern>().unwrap_err().to_string(),
            "invalid event pattern \"Handshake.*\": it can never match: event names are \
             lowercase (did you mean `handshake.*`?)"
        );
        assert_eq!(
            problem("Trust.Changed"),
            PatternProblem::Uppercase {
                lowercase: "trust.changed".into()
            }
        );
        // Lowercasing does not save it: the other problem is named.
        assert_eq!(problem("Bad..x"), PatternProblem::EmptyPart);
        assert_eq!(problem("a..b"), PatternProblem::EmptyPart);
        assert_eq!(problem("a..*"), PatternProblem::EmptyPart);
        assert_eq!(problem(".a"), PatternProblem::EmptyPart);
        assert_eq!(problem("a."), PatternProblem::EmptyPart);
        assert_eq!(problem(".*"), PatternProblem::EmptyPart);
        assert_eq!(problem("a b.c"), PatternProblem::BadChar(' '));
        assert_eq!(problem("a-b.*"), PatternProblem::BadChar('-'));
        assert_eq!(problem("é.x"), PatternProblem::BadChar('é'));
        assert_eq!(problem("A-b.c"), PatternProblem::BadChar('-'));
        assert_eq!(
            problem("handshake"),
            PatternProblem::OnePart("handshake".into())
        );
        assert!(problem("handshake").to_string().contains("`handshake.*`"));
        assert_eq!(
            problem("Handshake"),
            PatternProblem::OnePart("handshake".into())
        );
        let long = format!("a.{}", "b".repeat(MAX_NAME_LEN));
        assert_eq!(problem(&long), PatternProblem::TooLong);
        // A prefix needs room for one more part: `p.x` must fit.
        let room = "a".repeat(MAX_NAME_LEN - 2);
        assert!(format!("{room}.*").parse::<Pattern>().is_ok());
        assert_eq!(problem(&format!("a{room}.*")), PatternProblem::TooLong);
        // The pattern shown in the message is cut.
        let err = format!("{}*", "x".repeat(500))
            .parse::<Pattern>()
            .unwrap_err();
        assert_eq!(err.pattern.chars().count(), 64);
    }

    #[test]
    fn every_valid_name_is_a_pattern_and_every_pattern_can_match() {
        for e in CATALOG {
            let name = e.example();
            assert_eq!(name.parse(), Ok(Pattern::Exact(name.to_string())));
            for p in prefixes(&name) {
                let pattern: Pattern = format!("{p}*").parse().unwrap();
                assert!(pattern.matches(&name));
                assert_eq!(pattern.suggestion(), None, "{pattern}");
            }
        }
        for ok in ["a.b", "a_1.b2", "x.*", "a.b.*", "0.0"] {
            let p: Pattern = ok.parse().unwrap();
            let name = match &p {
                Pattern::Prefix(p) => format!("{p}x"),
                other => other.to_string(),
            };
            crate::event::validate_name(&name).unwrap();
            assert!(p.matches(&name), "{ok}");
        }
    }

    #[test]
    fn a_typo_of_a_catalog_name_gets_a_suggestion() {
        // A swap, a missing, an extra and a wrong letter.
        assert_eq!(
            suggested("handshake.recieved").unwrap(),
            ["handshake.received"]
        );
        assert_eq!(suggested("trust.revoke").unwrap(), ["trust.revoked"]);
        assert_eq!(suggested("conn.fins").unwrap(), ["conn.fin"]);
        assert_eq!(suggested("conn.rsx").unwrap(), ["conn.rst"]);
        assert_eq!(suggested("handshak.*").unwrap(), ["handshake.*"]);
        assert_eq!(suggested("secuirty.*").unwrap(), ["security.*"]);
        let (_, s) = Pattern::parse_checked("handshake.recieved").unwrap();
        assert_eq!(
            s.unwrap().to_string(),
            "event pattern `handshake.recieved` is not a catalog event: did you mean \
             `handshake.received`?"
        );
        let (_, s) = Pattern::parse_checked("handshak.*").unwrap();
        assert_eq!(
            s.unwrap().to_string(),
            "event pattern `handshak.*` matches no catalog event: did you mean `handshake.*`?"
        );
    }

    #[test]
    fn several_near_names_are_all_offered() {
        // One letter from three catalog names: all of them, in catalog order.
        assert_eq!(
            suggested("node.eregistered").unwrap(),
            ["node.registered", "node.reregistered", "node.deregistered"]
        );
        let s = Suggestion {
            pattern: "a.b".into(),
            did_you_mean: vec!["a.c".into(), "a.d".into()],
        };
        assert_eq!(
            s.to_string(),
            "event pattern `a.b` is not a catalog event: did you mean `a.c` or `a.d`?"
        );
    }

    #[test]
    fn catalog_names_and_far_names_get_no_suggestion() {
        for quiet in [
            "*",
            "handshake.received",
            "handshake.*",
            "conn.*",
            "webhook.*",
            "myapp.started",
            "myapp.*",
            "a.b",
            "handshake.nothing_like_it",
            "handshake.received.*",
            // A family's events and prefixes.
            "plugin.webhook.panic",
            "plugin.tasks.unhealthy",
            "plugin.*",
            "plugin.webhook.*",
        ] {
            assert_eq!(suggested(quiet), None, "{quiet}");
        }
    }
}
