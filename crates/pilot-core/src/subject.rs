//! NATS subjects of broker endpoints: the subject template (`--subject`, default
//! [`DEFAULT_SUBJECT`]) and the rules a published subject must follow.
//!
//! A template is literal text with placeholders: `{event}` (the event name, whose dots make
//! several tokens), `{node_id}` and `{category}` (the event name up to its first dot). It is
//! checked when it is given (`webhook add`, `set-webhook`, the daemon's start): an unknown
//! placeholder, an unclosed brace, or text that cannot make a subject is refused. A subject
//! is tokens separated by `.`: none empty, no whitespace or control characters, no wildcard
//! (`*`, `>`), and it may not start with `$` (the server's own subjects, `$JS.API...`).

use std::fmt;
use std::str::FromStr;

/// The subject template when none is given.
pub const DEFAULT_SUBJECT: &str = "pilot.{node_id}.{event}";

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Event,
    NodeId,
    Category,
}

/// A checked subject template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    text: String,
    parts: Vec<Part>,
}

/// Why a subject template or a subject was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SubjectError {
    #[error(
        "subject template {template:?}: unknown placeholder {{{name}}} (use {{event}}, \
         {{node_id}} or {{category}})"
    )]
    Placeholder { template: String, name: String },
    #[error("subject template {template:?}: a `{{` without its `}}`, or a `}}` without its `{{`")]
    Brace { template: String },
    #[error("subject template {template:?} cannot make a NATS subject: {reason}")]
    Template { template: String, reason: String },
    #[error("{subject:?} is not a NATS subject to publish to: {reason}")]
    Subject { subject: String, reason: String },
}

impl SubjectTemplate {
    /// The template as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The subject of event `event` from node `node_id`.
    pub fn render(&self, event: &str, node_id: u32) -> String {
        let mut out = String::with_capacity(self.text.len() + event.len());
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Event => out.push_str(event),
                Part::NodeId => out.push_str(&node_id.to_string()),
                Part::Category => out.push_str(event.split('.').next().unwrap_or(event)),
            }
        }
        out
    }

    /// The subject filter of a stream taking every subject this template makes: its leading
    /// tokens without a placeholder followed by `>` (`pilot.>` for the default), or the
    /// subject itself when the template has no placeholder. `None` when the first token has
    /// a placeholder (such a stream would take every subject of the account).
    pub fn stream_filter(&self) -> Option<String> {
        if !self.parts.iter().any(|p| !matches!(p, Part::Text(_))) {
            return Some(self.text.clone());
        }
        let mut fixed = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => fixed.push_str(t),
                _ => break,
            }
        }
        // The tokens that end before the first placeholder.
        let whole = match fixed.rfind('.') {
            Some(dot) => &fixed[..dot],
            None => return None,
        };
        Some(format!("{whole}.>"))
    }
}

impl FromStr for SubjectTemplate {
    type Err = SubjectError;

    fn from_str(text: &str) -> Result<Self, SubjectError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let brace = || SubjectError::Brace {
            template: text.into(),
        };
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_string()));
                    break;
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_string()));
                    }
                    if rest[i..].starts_with('}') {
                        return Err(brace());
                    }
                    let end = rest[i..].find('}').ok_or_else(brace)? + i;
                    let name = &rest[i + 1..end];
                    parts.push(match name {
                        "event" => Part::Event,
                        "node_id" => Part::NodeId,
                        "category" => Part::Category,
                        _ if name.contains('{') => return Err(brace()),
                        _ => {
                            return Err(SubjectError::Placeholder {
                                template: text.into(),
                                name: name.into(),
                            })
                        }
                    });
                    rest = &rest[end + 1..];
                }
            }
        }
        let template = SubjectTemplate {
            text: text.to_string(),
            parts,
        };
        // Placeholders never make an empty token or a wildcard: checking one rendering checks
        // the literal text around them.
        check_subject(&template.render("category.name", 1)).map_err(|e| match e {
            SubjectError::Subject { reason, .. } => SubjectError::Template {
                template: text.into(),
                reason,
            },
            other => other,
        })?;
        Ok(template)
    }
}

impl fmt::Display for SubjectTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks that `subject` can be published to (see the module doc).
pub fn check_subject(subject: &str) -> Result<(), SubjectError> {
    let bad = |reason: &str| SubjectError::Subject {
        subject: subject.into(),
        reason: reason.into(),
    };
    if subject.is_empty() {
        return Err(bad("it is empty"));
    }
    if subject.starts_with('$') {
        return Err(bad("subjects starting with `$` belong to the server"));
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it has whitespace or a control character"));
    }
    if subject.contains(['*', '>']) {
        return Err(bad("wildcards (`*`, `>`) cannot be published to"));
    }
    if subject.split('.').any(str::is_empty) {
        return Err(bad(
            "it has an empty token (a leading, trailing or double `.`)",
        ));
    }
    Ok(())
}

/// Checks a JetStream stream name (`--create-stream`): not empty, at most 255 characters, no
/// whitespace, `.`, `*`, `>`, path separators or control characters.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "stream name {name:?} must have 1 to 255 characters"
        ));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c))
    {
        return Err(format!(
            "stream name {name:?} may not hold whitespace, `.`, `*`, `>`, `/` or `\\`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_placeholder() {
        let t: SubjectTemplate = DEFAULT_SUBJECT.parse().unwrap();
        assert_eq!(
            t.render("handshake.received", 7),
            "pilot.7.handshake.received"
        );
        let t: SubjectTemplate = "fleet.{category}.n{node_id}.{event}".parse().unwrap();
        assert_eq!(t.render("trust.revoked", 3), "fleet.trust.n3.trust.revoked");
        assert_eq!(t.render("single", 3), "fleet.single.n3.single");
        assert_eq!(t.to_string(), "fleet.{category}.n{node_id}.{event}");
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let cases = [
            ("pilot.{evnt}", "unknown placeholder {evnt}"),
            ("pilot.{event", "without its"),
            ("pilot.event}", "without its"),
            ("pilot.{{event}}", "without its"),
            ("pilot..{event}", "empty token"),
            ("pilot.{event}.", "empty token"),
            (".{event}", "empty token"),
            ("pilot.*.{event}", "wildcards"),
            ("pilot.>", "wildcards"),
            ("pilot {event}", "whitespace"),
            ("$JS.{event}", "belong to the server"),
            ("", "empty"),
        ];
        for (template, want) in cases {
            let err = template.parse::<SubjectTemplate>().unwrap_err().to_string();
            assert!(err.contains(want), "{template:?}: {err}");
        }
    }

    #[test]
    fn stream_filters_cover_the_fixed_prefix() {
        let f = |t: &str| t.parse::<SubjectTemplate>().unwrap().stream_filter();
        assert_eq!(f(DEFAULT_SUBJECT).as_deref(), Some("pilot.>"));
        assert_eq!(f("a.b.{event}").as_deref(), Some("a.b.>"));
        assert_eq!(f("a.b{node_id}.{event}").as_deref(), Some("a.>"));
        assert_eq!(f("events.all").as_deref(), Some("events.all"));
        assert_eq!(f("{category}.x"), None);
        assert_eq!(f("n{node_id}.x"), None);
    }

    #[test]
    fn stream_names_are_checked() {
        assert!(check_stream_name("PILOT_EVENTS").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a/b", &"x".repeat(256)] {
            assert!(check_stream_name(bad).is_err(), "{bad:?}");
        }
    }
}
