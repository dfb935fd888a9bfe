//! What one request carries (`Delivery`): one event's payload, or a batch
//! `{"events":[<payload>,...]}` built by concatenating the already-encoded payloads (never
//! re-serialized), with its `webhook-id`.
//!
//! Ids are `msg_<instance>_<event_id>` for one event and `msg_<instance>_<first>-<last>` for a
//! batch body (even a batch of one, so a single body and a batch body never share an id).
//! `<instance>` is a random 64-bit hex id chosen when the plugin starts, so ids never repeat
//! across daemon restarts, while the retries of one delivery keep theirs. The id is a field of
//! the delivery: a durable store can give back the id an event was first sent with.

use bytes::{BufMut as _, Bytes, BytesMut};
use pilot_core::Event;

/// A new random instance id: 16 lowercase hex digits.
pub fn new_instance_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The `webhook-id` of a single-event body.
pub fn single_id(instance: &str, event_id: u64) -> String {
    format!("msg_{instance}_{event_id}")
}

/// The `webhook-id` of a batch body.
pub fn batch_id(instance: &str, first: u64, last: u64) -> String {
    format!("msg_{instance}_{first}-{last}")
}

/// `{"events":[p1,p2,...]}` from encoded payloads, in order.
pub fn batch_body(payloads: &[Bytes]) -> Bytes {
    let len = payloads.iter().map(Bytes::len).sum::<usize>() + payloads.len() + 12;
    let mut body = BytesMut::with_capacity(len);
    body.put_slice(b"{\"events\":[");
    for (i, p) in payloads.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(p);
    }
    body.put_slice(b"]}");
    body.freeze()
}

/// One event as a delivery carries it: its id, name and encoded payload (shared bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) event_id: u64,
    pub(crate) event: String,
    pub(crate) payload: Bytes,
}

impl Item {
    /// The item of a bus event (its payload is encoded once and shared).
    pub(crate) fn of(event: &Event) -> Self {
        Self {
            event_id: event.event_id,
            event: event.event.clone(),
            payload: event.payload(),
        }
    }
}

/// One request's worth of events, in publish order, with its body and id.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// At least one event.
    pub(crate) items: Vec<Item>,
    /// The request body.
    pub(crate) body: Bytes,
    /// Stable across the retries of this delivery.
    pub(crate) webhook_id: String,
    /// Whether the body is a batch (`{"events":[...]}`).
    pub(crate) batched: bool,
}

impl Delivery {
    /// One event: its payload as the body, or a batch body of one when `batched`.
    pub(crate) fn one(item: Item, batched: bool, instance: &str) -> Self {
        let (body, webhook_id) = if batched {
            (
                batch_body(std::slice::from_ref(&item.payload)),
                batch_id(instance, item.event_id, item.event_id),
            )
        } else {
            (item.payload.clone(), single_id(instance, item.event_id))
        };
        Self {
            items: vec![item],
            body,
            webhook_id,
            batched,
        }
    }

    /// `items` as one body: a batch body when `batched` or when there are several, else the
    /// single event's payload. `None` for no items.
    pub(crate) fn new(mut items: Vec<Item>, batched: bool, instance: &str) -> Option<Self> {
        if items.len() <= 1 {
            return items.pop().map(|item| Self::one(item, batched, instance));
        }
        let first = items.first()?.event_id;
        let last = items.last()?.event_id;
        let payloads: Vec<Bytes> = items.iter().map(|i| i.payload.clone()).collect();
        Some(Self {
            body: batch_body(&payloads),
            webhook_id: batch_id(instance, first, last),
            items,
            batched: true,
        })
    }

    /// How many events the body carries.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, name: &str) -> Item {
        Item::of(&Event::new(
            id,
            name,
            3,
            "2026-01-15T12:34:56.789Z".parse().unwrap(),
            Some(pilot_core::event::parse_data(r#"{"k":"v"}"#).unwrap()),
        ))
    }

    #[test]
    fn instance_ids_are_sixteen_hex_digits_and_differ() {
        let a = new_instance_id();
        assert_eq!(a.len(), 16);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, new_instance_id());
    }

    #[test]
    fn a_single_delivery_is_the_payload_itself() {
        let event = Event::new(7, "a.b", 0, jiff::Timestamp::UNIX_EPOCH, None);
        let d = Delivery::new(vec![Item::of(&event)], false, "00ff").unwrap();
        assert_eq!(d.body, event.payload());
        assert_eq!(
            d.body.as_ptr(),
            event.payload().as_ptr(),
            "shared, not copied"
        );
        assert_eq!(d.webhook_id, "msg_00ff_7");
        assert_eq!(d.len(), 1);
        assert!(Delivery::new(vec![], false, "x").is_none());
    }

    #[test]
    fn a_batch_concatenates_payloads_in_order() {
        let events = vec![ev(4, "a.one"), ev(5, "a.two"), ev(9, "a.three")];
        let d = Delivery::new(events.clone(), false, "abcd").unwrap();
        assert_eq!(d.webhook_id, "msg_abcd_4-9");
        assert!(d.batched, "several events always make a batch body");
        let want = format!(
            "{{\"events\":[{},{},{}]}}",
            std::str::from_utf8(&events[0].payload).unwrap(),
            std::str::from_utf8(&events[1].payload).unwrap(),
            std::str::from_utf8(&events[2].payload).unwrap()
        );
        assert_eq!(std::str::from_utf8(&d.body).unwrap(), want);
        let parsed: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(parsed["events"][2]["event_id"], 9);
        let one = Delivery::new(vec![ev(1, "a.b")], true, "abcd").unwrap();
        assert_eq!(one.webhook_id, "msg_abcd_1-1");
        assert!(one.body.starts_with(b"{\"events\":[{"));
        assert_eq!(&batch_body(&[])[..], b"{\"events\":[]}");
    }
}
