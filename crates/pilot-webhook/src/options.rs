//! The plugin's tunables ([`WebhookOptions`]) and their Pilot defaults, and where the durable
//! spool lives (`spool_path`, or an already-open `spool`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pilot_spool::Spool;

/// How the webhook plugin queues, retries and guards delivery. Every field has the Pilot default.
///
/// Equality compares the spool by identity (the same open [`Spool`]).
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// The endpoint's name (default `default`): the label of its bus subscription
    /// ([`WebhookOptions::bus_label`]), in its logs and in `webhook.disabled`.
    pub name: String,
    /// Capacity of the webhook queue (the bus subscription buffer). Default 1024; 0 counts as 1.
    pub queue_size: usize,
    /// Bound for one attempt: connecting, sending the request, and reading the response head
    /// and its body (at most 64 KiB of it, the rest is not read). Default 5 s.
    pub timeout: Duration,
    /// Attempts per event, the first included. Default 3; 0 counts as 1.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles for each further retry and restarts per event
    /// (1 s, 2 s by default).
    pub backoff: Duration,
    /// Consecutive failed events that open the circuit. Default 5; 0 disables the breaker.
    pub circuit_threshold: u32,
    /// How long an open circuit skips events before it lets a probe through. Default 30 s.
    pub circuit_cooldown: Duration,
    /// Bound for draining a queue on a URL swap and on shutdown. Default 5 s.
    pub drain_timeout: Duration,
    /// The `User-Agent` header. Default `pilot-daemon/<version>`.
    pub user_agent: String,
    /// Where the durable spool lives (the daemon passes `<pilot home>/webhook-spool.redb`).
    /// The plugin creates and opens it on the first configure with `durable`, unless `spool`
    /// is given. Default `None`: a durable configure is then an error.
    pub spool_path: Option<PathBuf>,
    /// The spool, already open (see [`crate::open_existing_spool`]): the daemon opens an
    /// existing spool before it creates the bus, to start the bus after the spool's last event
    /// id. The plugin uses it for its whole life (`spool_path` is then not used). Default
    /// `None`.
    pub spool: Option<Arc<Spool>>,
    /// Refuse loopback and private addresses for every webhook, at connect time (config key
    /// `deny_private_networks`; a webhook's own `deny_private` refuses them for that one).
    /// Default false.
    pub deny_private_networks: bool,
    /// The daemon's archive of dead letters, retained deliveries and queued replays (shared by
    /// every endpoint; compared by identity). None: nothing is kept.
    pub archive: Option<Arc<pilot_spool::Archive>>,
}

impl PartialEq for WebhookOptions {
    fn eq(&self, other: &Self) -> bool {
        let same_spool = match (&self.spool, &other.spool) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_spool
            && self.queue_size == other.queue_size
            && self.timeout == other.timeout
            && self.max_attempts == other.max_attempts
            && self.backoff == other.backoff
            && self.circuit_threshold == other.circuit_threshold
            && self.circuit_cooldown == other.circuit_cooldown
            && self.drain_timeout == other.drain_timeout
            && self.user_agent == other.user_agent
            && self.spool_path == other.spool_path
            && self.name == other.name
            && self.deny_private_networks == other.deny_private_networks
            && match (&self.archive, &other.archive) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for WebhookOptions {}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            name: pilot_core::endpoint::DEFAULT.to_string(),
            queue_size: 1024,
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            backoff: Duration::from_secs(1),
            circuit_threshold: 5,
            circuit_cooldown: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            user_agent: format!("pilot-daemon/{}", pilot_core::VERSION),
            spool_path: None,
            spool: None,
            deny_private_networks: false,
            archive: None,
        }
    }
}

impl WebhookOptions {
    /// The options with out-of-range values brought into range (queue and attempts at least 1).
    pub fn normalized(mut self) -> Self {
        self.queue_size = self.queue_size.max(1);
        self.max_attempts = self.max_attempts.max(1);
        self
    }

    /// The label of the endpoint's bus subscription: `webhook` for the endpoint `default` (as
    /// before endpoints had names), `webhook:NAME` for the others.
    pub fn bus_label(&self) -> String {
        if self.name == pilot_core::endpoint::DEFAULT {
            crate::BUS_LABEL.to_string()
        } else {
            format!("{}:{}", crate::BUS_LABEL, self.name)
        }
    }

    /// The wait before attempt `attempt` (2, 3, ...): `backoff * 2^(attempt - 2)`, saturating.
    pub fn backoff_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2);
        self.backoff.saturating_mul(2u32.saturating_pow(doublings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_pilots() {
        let o = WebhookOptions::default();
        assert_eq!(o.queue_size, 1024);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.max_attempts, 3);
        assert_eq!(o.backoff, Duration::from_secs(1));
        assert_eq!(o.circuit_threshold, 5);
        assert_eq!(o.circuit_cooldown, Duration::from_secs(30));
        assert_eq!(o.drain_timeout, Duration::from_secs(5));
        assert_eq!(
            o.user_agent,
            format!("pilot-daemon/{}", pilot_core::VERSION)
        );
        assert_eq!((o.spool_path, o.spool.is_none()), (None, true));
    }

    #[test]
    fn equality_compares_the_spool_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(
            Spool::open(&dir.path().join("s.redb"), crate::SpoolLimits::default()).unwrap(),
        );
        let a = WebhookOptions {
            spool: Some(spool.clone()),
            ..Default::default()
        };
        assert_eq!(a, a.clone());
        assert_ne!(a, WebhookOptions::default());
        let other = Arc::new(
            Spool::open(&dir.path().join("t.redb"), crate::SpoolLimits::default()).unwrap(),
        );
        assert_ne!(
            a,
            WebhookOptions {
                spool: Some(other),
                ..Default::default()
            }
        );
    }

    #[test]
    fn backoff_doubles_per_retry_and_saturates() {
        let o = WebhookOptions::default();
        assert_eq!(o.backoff_before(2), Duration::from_secs(1));
        assert_eq!(o.backoff_before(3), Duration::from_secs(2));
        assert_eq!(o.backoff_before(4), Duration::from_secs(4));
        assert!(o.backoff_before(200) >= Duration::from_secs(u64::from(u32::MAX)));
    }

    #[test]
    fn normalized_keeps_at_least_one_slot_and_attempt() {
        let o = WebhookOptions {
            queue_size: 0,
            max_attempts: 0,
            ..Default::default()
        }
        .normalized();
        assert_eq!((o.queue_size, o.max_attempts), (1, 1));
    }
}
