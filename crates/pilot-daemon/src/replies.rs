//! The replies of one connection, held back until the events they acknowledge are durable.
//!
//! In durable mode an `emit` may be answered only once its event is in the webhook spool
//! ([`Bus::wait_durable`]). Waiting per request would cost one group commit per event on a
//! pipelined connection; instead the replies of a run of requests are queued in order, the
//! connection waits once for the newest event of the run (the spooler commits them together),
//! and then every reply goes out. An event that did not become durable gets an error reply in
//! its place (it was published, but is not on disk). Without a durable sink the wait resolves
//! at once.

use bytes::Bytes;
use futures_util::SinkExt;
use pilot_core::Bus;
use pilot_ipc::frame;
use pilot_ipc::protocol::{ErrorCode, ErrorReply};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use pilot_ipc::transport::Stream;

/// The `ok` reply to an `emit`, `{"type":"ok","data":{"event_id":N}}`, written by hand: the
/// same bytes as `frame::encode(&OkReply::new(&EmitReply { event_id }))` (a test checks it)
/// for about a tenth of serde's instructions, once per emitted event.
pub fn emit_ok(event_id: u64) -> Bytes {
    const HEAD: &[u8] = br#"{"type":"ok","data":{"event_id":"#;
    const TAIL: &[u8] = b"}}";
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(event_id).as_bytes();
    let mut out = Vec::with_capacity(HEAD.len() + digits.len() + TAIL.len());
    out.extend_from_slice(HEAD);
    out.extend_from_slice(digits);
    out.extend_from_slice(TAIL);
    Bytes::from(out)
}

/// How many replies are held at most before the connection waits and sends them.
pub const MAX_HELD: usize = 256;

/// The replies not yet sent, in request order.
#[derive(Default)]
pub struct Replies {
    held: Vec<(Bytes, Option<u64>)>,
}

impl Replies {
    /// Queues a reply; `event_id` when it acknowledges a published event.
    pub fn push(&mut self, reply: Bytes, event_id: Option<u64>) {
        self.held.push((reply, event_id));
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Waits until every acknowledged event is durable (or known not to be), then feeds the
    /// replies to `conn` in order (not flushed).
    pub async fn release(
        &mut self,
        conn: &mut Framed<Stream, LengthDelimitedCodec>,
        bus: &Bus,
    ) -> std::io::Result<()> {
        let newest = self.held.iter().filter_map(|(_, id)| *id).max();
        // One wait for the run; only on an error is each event asked (they resolve at once).
        let all_durable = match newest {
            Some(id) => bus.wait_durable(id).await.is_ok(),
            None => true,
        };
        for (reply, event_id) in self.held.drain(..) {
            let reply = match event_id {
                Some(id) if !all_durable => match bus.wait_durable(id).await {
                    Ok(()) => reply,
                    Err(e) => {
                        tracing::warn!(event_id = id, error = %e, "an emitted event is not durable");
                        let msg = format!(
                            "event {id} was published but is not in the webhook spool: {e}"
                        );
                        frame::encode(&ErrorReply::new(ErrorCode::NotDurable, &msg))
                    }
                },
                _ => reply,
            };
            conn.feed(reply).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use pilot_ipc::protocol::{EmitReply, OkReply};

    use super::*;

    #[test]
    fn the_emit_reply_is_the_bytes_serde_writes() {
        for event_id in [0, 1, 9, 10, 255, 123_456_789, u64::MAX] {
            let serde = frame::encode(&OkReply::new(&EmitReply { event_id }));
            assert_eq!(emit_ok(event_id), serde, "event_id {event_id}");
        }
    }
}
