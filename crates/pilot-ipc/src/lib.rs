//! pilot-ipc: how `pilotctl` (or any program on the node) talks to `pilot-daemon`.
//!
//! The transport is a local socket at a file path ([`transport`]); each message is a frame of a
//! 4-byte big-endian length and a JSON body of at most 1 MiB ([`frame`]); the messages and their
//! replies are in [`protocol`]; [`Client`] is the async client the CLI uses. `docs/ipc.md`
//! describes the protocol for other implementations.

pub mod client;
pub mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod protocol;
pub mod transport;

pub use client::{Client, ClientError, EmitItem, EventStream};
pub use protocol::{ErrorCode, Request, Response, PROTOCOL_VERSION};
