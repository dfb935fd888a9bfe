//! What one request carries (`Delivery`): one event's payload, or a batch
//! `{"events":[<payload>,...]}` built by concatenating the already-encoded payloads (never
//! re-serialized), with its `webhook-id`.
//!
//! Ids are `msg_<instance>_<event_id>` for one event and `msg_<instance>_<first>-<last>` for a
//! batch body (even a batch of one, so a single body and a batch body never share an id).
//! `<instance>` is a random 64-bit hex id chosen when the plugin starts, so ids never repeat
//! across daemon restarts, while the retries of one delivery keep theirs. The id is a field of
//! the delivery: a durable store can give back the id an event was first sent with. Durable
//! mode's ids are `msg_<node_id>_<event_id>` ([`durable_webhook_id`]), stored with each record.
//!
//! With a template ([`Delivery::rendered`]) the body is the template's rendering of the event,
//! made once here when the delivery is built (so the rendered bytes are what is signed, sent
//! and retried), with its `Content-Type` and headers ([`Head`]); an event the template cannot
//! render makes a delivery that is never sent ([`Rendering::Failed`]).

use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use pilot_core::{Event, Severity};
use pilot_template::{Template, Vars};

/// A new random instance id: 16 lowercase hex digits.
pub fn new_instance_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The `webhook-id` of a single-event body.
pub fn single_id(instance: &str, event_id: u64) -> String {
    with_id(instance, event_id, None, str::to_string)
}

/// The `webhook-id` of a batch body.
pub fn batch_id(instance: &str, first: u64, last: u64) -> String {
    with_id(instance, first, Some(last), str::to_string)
}

/// `msg_<instance>_<first>[-<last>]`, handed to `f`. Built by hand on the stack (every id of
/// a 16-digit instance fits): `format!` costs several times more, and an `Arc<str>` made from
/// the stack copy is one allocation where `String` then `Arc` would be two.
fn with_id<R>(instance: &str, first: u64, last: Option<u64>, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 64];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let end = len + bytes.len();
        if let Some(dst) = buf.get_mut(len..end) {
            dst.copy_from_slice(bytes);
        }
        len = end;
    };
    put(b"msg_");
    put(instance.as_bytes());
    put(b"_");
    put(decimal(first).as_ref());
    if let Some(last) = last {
        put(b"-");
        put(decimal(last).as_ref());
    }
    match buf.get(..len).map(std::str::from_utf8) {
        // A whole `&str` and ASCII: always UTF-8 when it fits.
        Some(Ok(id)) => f(id),
        _ => {
            let last = last.map(|l| format!("-{l}")).unwrap_or_default();
            f(&format!("msg_{instance}_{first}{last}"))
        }
    }
}

/// An id as shared text.
fn shared(id: &str) -> Arc<str> {
    Arc::from(id)
}

/// `n` in decimal: the digits, in a buffer that derefs to them.
fn decimal(mut n: u64) -> Decimal {
    let mut d = Decimal {
        digits: [0; 20],
        start: 20,
    };
    loop {
        d.start -= 1;
        d.digits[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl AsRef<[u8]> for Decimal {
    fn as_ref(&self) -> &[u8] {
        &self.digits[self.start..]
    }
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
    /// The event's name (shared with the delivery log's entries).
    pub(crate) event: Arc<str>,
    pub(crate) payload: Bytes,
    /// The severity it was published with, when known (memory mode); else the catalog's.
    pub(crate) severity: Option<Severity>,
    /// When the bus published it (durable mode: accepted it), unix milliseconds.
    pub(crate) at_ms: u64,
}

impl Item {
    /// The item of a bus event (its payload is encoded once and shared).
    pub(crate) fn of(event: &Event) -> Self {
        Self {
            event_id: event.event_id,
            event: Arc::from(event.event.as_str()),
            payload: event.payload(),
            severity: Some(event.severity),
            at_ms: u64::try_from(event.timestamp.as_millisecond()).unwrap_or(0),
        }
    }

    /// The item of a spooled record (its name read from its payload, which the spooler wrote:
    /// it always has one).
    pub(crate) fn of_record(record: pilot_spool::SpoolRecord) -> Self {
        #[derive(serde::Deserialize)]
        struct EventName {
            event: String,
        }
        let event = serde_json::from_slice::<EventName>(&record.payload)
            .map(|n| n.event)
            .unwrap_or_default();
        Self {
            event_id: record.event_id,
            event: event.into(),
            payload: record.payload,
            severity: None,
            at_ms: record.accepted_at_ms,
        }
    }

    /// The event back from its payload (with its severity when known).
    fn event(&self) -> Result<Event, String> {
        let mut event: Event = serde_json::from_slice(&self.payload)
            .map_err(|e| format!("the event's payload cannot be read: {e}"))?;
        if let Some(s) = self.severity {
            event.severity = s;
        }
        Ok(event)
    }
}

/// What a template made of a delivery.
#[derive(Debug, Clone)]
pub(crate) enum Rendering {
    /// The body is the rendering; these go with it.
    Head(Arc<Head>),
    /// The template could not render the event: the delivery is failed, never sent.
    Failed(Arc<str>),
}

/// The `Content-Type` and extra headers a template set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) content_type: HeaderValue,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Head {
    fn of(r: &pilot_template::Rendered) -> Result<Head, String> {
        let content_type = HeaderValue::from_str(&r.content_type)
            .map_err(|_| format!("Content-Type {:?} is not a header value", r.content_type))?;
        let headers = r
            .headers
            .iter()
            .map(|(name, value)| {
                let bad = || format!("header {name:?} cannot be sent");
                let mut value = HeaderValue::from_str(value).map_err(|_| bad())?;
                value.set_sensitive(true);
                Ok((
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?,
                    value,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Head {
            content_type,
            headers,
        })
    }
}

/// One request's worth of events, in publish order, with its body and id.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// At least one event.
    pub(crate) items: Vec<Item>,
    /// The request body.
    pub(crate) body: Bytes,
    /// Stable across the retries of this delivery (shared with the delivery log's entries).
    pub(crate) webhook_id: Arc<str>,
    /// Whether the body is a batch (`{"events":[...]}`).
    pub(crate) batched: bool,
    /// What a template made of it (none: pilot's own body).
    pub(crate) rendering: Option<Rendering>,
}

impl Delivery {
    /// One event: its payload as the body, or a batch body of one when `batched`.
    pub(crate) fn one(item: Item, batched: bool, instance: &str) -> Self {
        let (body, webhook_id) = if batched {
            (
                batch_body(std::slice::from_ref(&item.payload)),
                with_id(instance, item.event_id, Some(item.event_id), shared),
            )
        } else {
            (
                item.payload.clone(),
                with_id(instance, item.event_id, None, shared),
            )
        };
        Self {
            items: vec![item],
            body,
            webhook_id,
            batched,
            rendering: None,
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
            webhook_id: with_id(instance, first, Some(last), shared),
            items,
            batched: true,
            rendering: None,
        })
    }

    /// This delivery with its body rendered by `template` with `vars` (no template: as it
    /// is). Rendered once, here: retries send the same bytes. A template renders one event per
    /// request (settings refuse batching with one), so a delivery of several events, like an
    /// event the template fails for, is [`Rendering::Failed`], never sent.
    pub(crate) fn rendered(mut self, template: Option<&Template>, vars: &Vars) -> Self {
        let Some(template) = template else {
            return self;
        };
        let result = match self.items.as_slice() {
            [item] => item.event().and_then(|event| {
                let r = template
                    .render(&event, &self.webhook_id, vars)
                    .map_err(|e| e.to_string())?;
                Ok((Head::of(&r)?, r.body))
            }),
            _ => Err("a template renders one event per request, not a batch".to_string()),
        };
        self.rendering = Some(match result {
            Ok((head, body)) => {
                self.body = Bytes::from(body);
                Rendering::Head(Arc::new(head))
            }
            Err(e) => Rendering::Failed(format!("template {}: {e}", template.name()).into()),
        });
        self
    }

    /// Why the template could not render this delivery, if it could not.
    pub(crate) fn render_error(&self) -> Option<&Arc<str>> {
        match &self.rendering {
            Some(Rendering::Failed(e)) => Some(e),
            _ => None,
        }
    }

    /// The template's `Content-Type` and headers, if a template rendered it.
    pub(crate) fn head(&self) -> Option<&Head> {
        match &self.rendering {
            Some(Rendering::Head(h)) => Some(h),
            _ => None,
        }
    }

    /// How many events the body carries.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

/// The `webhook-id` of an event in durable mode: `msg_<node_id>_<event_id>`. Stable across
/// retries and restarts (it is stored with the record), and unique because a durable daemon's
/// event ids never repeat (its bus starts after `Spool::last_event_id`).
pub fn durable_webhook_id(event: &Event) -> String {
    format!("msg_{}_{}", event.node_id, event.event_id)
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
    fn ids_are_msg_instance_and_event_ids() {
        for n in [0, 1, 9, 10, 99, 12345, u64::MAX] {
            assert_eq!(single_id("00ff", n), format!("msg_00ff_{n}"));
            assert_eq!(batch_id("ab", n, 7), format!("msg_ab_{n}-7"));
        }
        assert_eq!(single_id("", 5), "msg__5");
        let long = "x".repeat(50);
        assert_eq!(
            batch_id(&long, 1, 2),
            format!("msg_{long}_1-2"),
            "too long for the stack"
        );
        assert_eq!(single_id("é", 3), "msg_é_3");
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
        assert_eq!(&*d.webhook_id, "msg_00ff_7");
        assert_eq!(d.len(), 1);
        assert!(Delivery::new(vec![], false, "x").is_none());
    }

    #[test]
    fn a_batch_concatenates_payloads_in_order() {
        let events = vec![ev(4, "a.one"), ev(5, "a.two"), ev(9, "a.three")];
        let d = Delivery::new(events.clone(), false, "abcd").unwrap();
        assert_eq!(&*d.webhook_id, "msg_abcd_4-9");
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
        assert_eq!(&*one.webhook_id, "msg_abcd_1-1");
        assert!(one.body.starts_with(b"{\"events\":[{"));
        assert_eq!(&batch_body(&[])[..], b"{\"events\":[]}");
    }

    #[test]
    fn a_template_renders_the_body_once_with_its_head() {
        let t = Template::from_source(
            "t",
            r#"{% set headers = {"X-Sev": severity} %}{"id": {{ webhook_id | tojson }}, "k": {{ data.k | tojson }}}"#,
        )
        .unwrap();
        let mut item = ev(4, "a.one");
        item.severity = Some(Severity::Critical);
        let d = Delivery::new(vec![item], false, "ab").unwrap();
        let d = d.rendered(Some(&t), &Vars::new());
        assert_eq!(&d.body[..], br#"{"id": "msg_ab_4", "k": "v"}"#);
        let head = d.head().unwrap();
        assert_eq!(head.content_type, "application/json");
        assert_eq!(head.headers[0].0, "x-sev");
        assert_eq!(
            head.headers[0].1, "critical",
            "the severity it was published with"
        );
        assert!(d.render_error().is_none());

        let plain = Delivery::new(vec![ev(5, "a.b")], false, "ab").unwrap();
        let same = plain.clone().rendered(None, &Vars::new());
        assert_eq!(same.body, plain.body);
        assert!(same.rendering.is_none());
    }

    #[test]
    fn an_event_the_template_fails_for_is_a_failed_rendering() {
        let t = Template::from_source("mine", r#"{"k": {{ fail("no k here") }}}"#).unwrap();
        let d = Delivery::new(vec![ev(4, "a.one")], false, "ab")
            .unwrap()
            .rendered(Some(&t), &Vars::new());
        let err = d.render_error().unwrap();
        assert!(err.starts_with("template mine: "), "{err}");
        assert!(err.contains("no k here"), "{err}");
        assert!(d.head().is_none());
        let ok = Template::from_source("t", "{}").unwrap();
        let batch = Delivery::new(vec![ev(1, "a.b"), ev(2, "a.c")], false, "ab")
            .unwrap()
            .rendered(Some(&ok), &Vars::new());
        assert!(batch
            .render_error()
            .unwrap()
            .contains("one event per request"));
    }
}
