//! pilot-ipc: how `pilotctl`, or any other program on the node, talks to `pilot-daemon`:
//! publish events onto its bus, subscribe to them, inspect and steer the daemon.
//!
//! ```no_run
//! use pilot_ipc::Client;
//! use serde_json::{json, value::to_raw_value};
//!
//! # async fn demo() -> Result<(), pilot_ipc::ClientError> {
//! // The socket pilotctl uses: $PILOT_SOCKET, config `socket`, else ~/.pilot/pilot.sock.
//! let mut client = Client::connect_default().await?;
//! let data = to_raw_value(&json!({"peer_node_id": 7, "justification": "hi"})).ok();
//! let reply = client.emit("handshake.received", data).await?;
//! println!("published #{}", reply.event_id);
//!
//! // Another connection that receives every `handshake.*` event from now on.
//! let mut events = Client::connect_default().await?.subscribe("handshake.*").await?;
//! while let Some(event) = events.next().await {
//!     let event = event?;
//!     println!("#{} {}", event.event_id, event.event);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Runnable versions: `cargo run -p pilot-ipc --example publish` and `--example subscribe`;
//! `docs/embedding.md` shows the same from other languages.
//!
//! The transport is a local socket at a file path ([`transport`]; found with [`socket_path`]);
//! each message is a frame of a 4-byte big-endian length and a JSON body of at most 1 MiB
//! ([`frame`]); the messages and their replies are in [`protocol`]; [`Client`] is the async
//! client (tokio). `docs/ipc.md` describes the protocol for other implementations.

pub mod client;
pub mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod locate;
pub mod protocol;
pub mod transport;

pub use client::{Client, ClientError, EmitItem, EmitSummary, EventStream};
pub use locate::socket_path;
pub use protocol::{ErrorCode, Request, Response, PROTOCOL_VERSION};
