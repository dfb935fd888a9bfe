//! pilot-core: what happened on this node, and where pilot keeps its files.
//!
//! The core knows nothing of HTTP, sockets or the command line. It offers the event envelope
//! ([`Event`]) with its [`Severity`], the in-process event bus ([`Bus`]) with its subscription
//! patterns ([`Pattern`]), the catalog of known events and their data ([`catalog`]), the files
//! under the pilot home ([`PilotHome`]) and the `config.json` store ([`ConfigFile`]).

pub mod accounting;
pub mod bus;
pub mod catalog;
pub mod client_identity;
pub mod config;
pub mod config_keys;
pub mod duration;
pub mod endpoint;
pub mod event;
pub mod fsutil;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod go_files;
pub mod log_level;
pub mod paths;
pub mod pattern;
pub mod rate;
pub mod secrets;
pub mod severity;
pub mod size;
pub mod small_file;
pub mod subject;
pub mod webhook_settings;
pub mod webhook_url;

pub use accounting::Accounting;
pub use bus::{
    Bus, DurabilityError, DurableSink, DurableSinkInfo, SubscriberCounters, SubscriberInfo,
    Subscription,
};
pub use config::{ConfigError, ConfigFile};
pub use event::{Event, EventError, MAX_DATA_BYTES, MAX_NAME_LEN};
pub use paths::PilotHome;
pub use pattern::{Pattern, Suggestion};
pub use secrets::SecretStore;
pub use severity::Severity;
pub use webhook_settings::WebhookSettings;

/// The version of every pilot crate and binary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
