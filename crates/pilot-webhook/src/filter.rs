//! Which events a webhook delivers: include patterns (`settings.events`, empty = every event)
//! and exclude patterns (`settings.exclude`), with the bus's pattern rules (`*`, `prefix.*`,
//! exact). The webhook still subscribes to `*`: the worker skips what the filter refuses and
//! counts it as `filtered`, so the accounting sees every event.

use pilot_core::pattern::PatternError;
use pilot_core::{Pattern, WebhookSettings};

/// The parsed include and exclude patterns of one webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
}

impl Filter {
    /// The filter of `settings`.
    pub(crate) fn new(settings: &WebhookSettings) -> Result<Self, PatternError> {
        let (include, exclude) = settings.filters()?;
        Ok(Self { include, exclude })
    }

    /// Whether an event named `name` is delivered: it matches an include pattern (or there is
    /// none) and no exclude pattern.
    pub(crate) fn allows(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && !self.exclude.iter().any(|p| p.matches(name))
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
        assert!(f.allows("a.b"));
        assert!(f.allows("daemon.started"));
    }

    #[test]
    fn include_then_exclude() {
        let f = filter(&["handshake.*", "trust.*"], &["trust.revoked"]);
        assert!(f.allows("handshake.received"));
        assert!(f.allows("trust.changed"));
        assert!(!f.allows("trust.revoked"));
        assert!(!f.allows("data.datagram"));
        assert!(!f.allows("handshake"));
        let f = filter(&[], &["data.datagram", "pubsub.*"]);
        assert!(f.allows("handshake.received"));
        assert!(!f.allows("data.datagram"));
        assert!(!f.allows("pubsub.published"));
        let f = filter(&["*"], &["*"]);
        assert!(!f.allows("a.b"), "exclude wins");
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
