//! Which events a webhook delivers: include patterns (`settings.events`, empty = every event)
//! and exclude patterns (`settings.exclude`), with the bus's pattern rules (`*`, `prefix.*`,
//! exact), and the lowest severity it takes (`settings.min_severity`). The webhook still
//! subscribes to `*`: the worker skips what the filter refuses and counts it as `filtered`, so
//! the accounting sees every event.

use pilot_core::pattern::PatternError;
use pilot_core::{Pattern, Severity, WebhookSettings};

/// The parsed include and exclude patterns and the minimum severity of one webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    min_severity: Option<Severity>,
}

impl Filter {
    /// The filter of `settings`.
    pub(crate) fn new(settings: &WebhookSettings) -> Result<Self, PatternError> {
        let (include, exclude) = settings.filters()?;
        Ok(Self {
            include,
            exclude,
            min_severity: settings.min_severity,
        })
    }

    /// Whether an event named `name` of severity `severity` is delivered: it matches an
    /// include pattern (or there is none) and no exclude pattern, and is at least
    /// `min_severity`.
    pub(crate) fn allows(&self, name: &str, severity: Severity) -> bool {
        self.min_severity.is_none_or(|min| severity >= min)
            && (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && !self.exclude.iter().any(|p| p.matches(name))
    }

    /// [`Filter::allows`] for an event read back from the durable spool, which keeps the
    /// name and payload: its severity is the catalog's.
    pub(crate) fn allows_spooled(&self, name: &str) -> bool {
        let severity = match self.min_severity {
            Some(_) => pilot_core::catalog::severity(name),
            None => Severity::Info,
        };
        self.allows(name, severity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(events: &[&str], exclude: &[&str]) -> Filter {
        Filter::new(&WebhookSettings {
            events: events.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn no_patterns_allow_everything() {
        let f = Filter::default();
        assert!(f.allows("a.b", Severity::Info));
        assert!(f.allows("daemon.started", Severity::Info));
    }

    #[test]
    fn min_severity_leaves_out_what_is_below_it() {
        let f = Filter::new(&WebhookSettings {
            min_severity: Some(Severity::Warning),
            ..Default::default()
        })
        .unwrap();
        assert!(!f.allows("a.b", Severity::Info));
        assert!(f.allows("a.b", Severity::Warning));
        assert!(f.allows("a.b", Severity::Critical));
        assert!(f.allows_spooled("security.nonce_replay"));
        assert!(!f.allows_spooled("daemon.started"));
    }

    #[test]
    fn include_then_exclude() {
        let f = filter(&["handshake.*", "trust.*"], &["trust.revoked"]);
        assert!(f.allows("handshake.received", Severity::Info));
        assert!(f.allows("trust.changed", Severity::Info));
        assert!(!f.allows("trust.revoked", Severity::Info));
        assert!(!f.allows("data.datagram", Severity::Info));
        assert!(!f.allows("handshake", Severity::Info));
        let f = filter(&[], &["data.datagram", "pubsub.*"]);
        assert!(f.allows("handshake.received", Severity::Info));
        assert!(!f.allows("data.datagram", Severity::Info));
        assert!(!f.allows("pubsub.published", Severity::Info));
        let f = filter(&["*"], &["*"]);
        assert!(!f.allows("a.b", Severity::Info), "exclude wins");
    }

    #[test]
    fn bad_patterns_are_refused() {
        let s = WebhookSettings {
            exclude: vec!["a*".into()],
            ..Default::default()
        };
        assert!(Filter::new(&s).is_err());
    }
}
