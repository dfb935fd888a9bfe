//! Fuzzing entry points for the control protocol: the frame decoder and the request parser.
//!
//! Each `pub fn` taking `&[u8]` is the whole body of one cargo-fuzz target in `fuzz/` and is
//! also run over the checked-in corpus by `cargo test` (`pilot-tests/tests/fuzz_corpus.rs`).
//! They panic when an invariant breaks, not only when the code under test panics: a chunked
//! decode equals a one-shot decode, errors are the typed ones, and decode(encode(x)) == x.
//! Compiled only with the `fuzzing` feature.

use std::str::FromStr;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use pilot_core::fuzzing::{check_event, check_settings, check_url};
use pilot_core::{Pattern, WebhookSettings};
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{self, FrameError, MAX_FRAME};
use crate::protocol::{ErrorCode, ErrorReply, Request, Response, REQUEST_TYPES, RESPONSE_TYPES};

/// What the codec made of a byte stream: the frames, then how the stream ended.
#[derive(Debug, PartialEq)]
struct Decoded {
    frames: Vec<Bytes>,
    /// `None`: every byte was in a frame. `Some`: the codec's error (oversized length prefix,
    /// or a frame cut off at the end of the stream).
    error: Option<String>,
}

/// Arbitrary bytes, cut into arbitrary chunks, through the frame codec as a connection reads
/// them: the frames and the error are those of a one-shot decode, each frame is exactly the
/// bytes its length prefix announced, and each body goes through [`request`].
///
/// Input: a count `k`, then `k` chunk sizes (each byte `c` is a chunk of `c + 1` bytes, cycled),
/// then the stream.
pub fn frames(data: &[u8]) {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let (cuts, stream) = rest.split_at(usize::from(k).min(rest.len()));
    let whole = decode_stream(stream, &[]);
    let chunked = decode_stream(stream, cuts);
    assert_eq!(chunked, whole, "chunks {cuts:?} decode differently");
    check_split(stream, &whole);
    for body in &whole.frames {
        request(body);
    }
}

/// Feeds `stream` to one codec in chunks of `cuts` (cycled, each 1 to 256 bytes; all at once
/// when empty), decoding whatever is complete after each chunk, then ends the stream.
fn decode_stream(stream: &[u8], cuts: &[u8]) -> Decoded {
    let mut codec = frame::codec();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut sizes = cuts.iter().map(|&c| usize::from(c) + 1).cycle();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f.freeze()),
                Ok(None) => break,
                Err(e) => {
                    let error = Some(e.to_string());
                    return Decoded { frames, error };
                }
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(f)) => frames.push(f.freeze()),
            Ok(None) => {
                return Decoded {
                    frames,
                    error: None,
                }
            }
            Err(e) => {
                let error = Some(e.to_string());
                return Decoded { frames, error };
            }
        }
    }
}

/// The frames are the stream's length-prefixed pieces in order; an error is where the next
/// prefix is over the limit or its frame is cut off.
fn check_split(stream: &[u8], d: &Decoded) {
    let prefix = |at: &[u8]| u32::from_be_bytes([at[0], at[1], at[2], at[3]]) as usize;
    let mut at = 0;
    for f in &d.frames {
        let len = prefix(&stream[at..]);
        assert!(len <= MAX_FRAME);
        assert_eq!(&stream[at + 4..at + 4 + len], &f[..]);
        at += 4 + len;
    }
    let rest = &stream[at..];
    match &d.error {
        // The codec consumes a length prefix as soon as it has it, so a stream that ends right
        // after a prefix ends cleanly (the peer hung up before sending the body: nothing to
        // answer); one that ends inside a body is an error.
        None => assert!(
            rest.is_empty() || (rest.len() == 4 && (1..=MAX_FRAME).contains(&prefix(rest))),
            "{} bytes left without an error",
            rest.len()
        ),
        Some(e) => assert!(
            rest.len() < 4 || prefix(rest) > MAX_FRAME || prefix(rest) > rest.len() - 4,
            "error {e} at a complete frame"
        ),
    }
}

/// One frame body as the daemon parses a request: a request, or the error that fits (not JSON,
/// a type this side does not know, or a known type with bad fields) whose reply the client
/// reads back; a request re-encodes to itself and goes through the daemon's argument checks.
pub fn request(body: &[u8]) {
    let json = serde_json::from_slice::<Value>(body);
    let json_type = json
        .as_ref()
        .ok()
        .and_then(|v| v.get("type"))
        .and_then(Value::as_str);
    match frame::decode::<Request>(body, REQUEST_TYPES) {
        Ok(req) => {
            if json.is_ok() {
                assert_eq!(json_type, Some(type_of(&req)));
            }
            let again = frame::decode::<Request>(&frame::encode(&req), REQUEST_TYPES)
                .expect("a decoded request re-encodes to a request");
            assert_eq!(frame::encode(&again), frame::encode(&req));
            serve(&req);
        }
        Err(e) => {
            match &e {
                FrameError::NotJson(_) => assert!(json.is_err(), "JSON refused as not JSON"),
                FrameError::UnknownType(t) => {
                    assert!(!REQUEST_TYPES.contains(&t.as_str()));
                    assert_eq!(json_type, Some(t.as_str()));
                }
                FrameError::Malformed(_) => {
                    assert!(json.is_ok());
                    assert!(json_type.is_none_or(|t| REQUEST_TYPES.contains(&t)));
                }
            }
            check_error_reply(&e.to_string());
        }
    }
}

/// An error reply carrying `message` (which may quote the peer's bytes) reads back on the
/// client side as that error.
fn check_error_reply(message: &str) {
    let reply = frame::encode(&ErrorReply::new(ErrorCode::MalformedRequest, message));
    match frame::decode::<Response>(&reply, RESPONSE_TYPES) {
        Ok(Response::Error { code, message: m }) => {
            assert_eq!(code, ErrorCode::MalformedRequest);
            assert_eq!(m, message);
        }
        other => panic!("an error reply read back as {other:?}"),
    }
}

/// The request's `type` tag.
fn type_of(req: &Request) -> &'static str {
    match req {
        Request::Hello { .. } => "hello",
        Request::Info => "info",
        Request::SetWebhook { .. } => "set_webhook",
        Request::ClearWebhook => "clear_webhook",
        Request::Emit { .. } => "emit",
        Request::Subscribe { .. } => "subscribe",
        Request::Shutdown { .. } => "shutdown",
        Request::ReloadSecrets { .. } => "reload_secrets",
        Request::Deliveries { .. } => "deliveries",
        Request::TestWebhook { .. } => "test_webhook",
        Request::Redeliver { .. } => "redeliver",
        Request::AddWebhook { .. } => "add_webhook",
        Request::UpdateWebhook { .. } => "update_webhook",
        Request::RemoveWebhook { .. } => "remove_webhook",
        Request::PauseWebhook { .. } => "pause_webhook",
        Request::ResumeWebhook { .. } => "resume_webhook",
        Request::DeadLetters { .. } => "dead_letters",
        Request::PurgeDeadLetters { .. } => "purge_dead_letters",
        Request::Replay { .. } => "replay",
    }
}

/// The checks the daemon runs on a request's arguments before acting on it.
fn serve(req: &Request) {
    match req {
        Request::AddWebhook {
            name,
            url,
            settings,
        }
        | Request::UpdateWebhook {
            name,
            url,
            settings,
        } => {
            let _ = pilot_core::endpoint::validate_name(name);
            check_url(url);
            check_settings(settings);
        }
        Request::SetWebhook { url, settings } => {
            check_url(url);
            check_settings(settings);
        }
        Request::Emit {
            event,
            data,
            severity,
        } => {
            check_event(event, data.as_deref());
            if let Some(s) = severity {
                if let Ok(level) = s.parse::<pilot_core::Severity>() {
                    assert_eq!(level.as_str(), s.trim().to_ascii_lowercase());
                }
            }
        }
        Request::Subscribe { pattern } => {
            if let Ok(p) = Pattern::from_str(pattern) {
                assert_eq!(Pattern::from_str(&p.to_string()).as_ref(), Ok(&p));
            }
        }
        _ => {}
    }
}

/// A structurally valid request, built from fuzzer bytes.
#[derive(Debug, Arbitrary)]
enum AnyRequest {
    Hello {
        version: u32,
        client: String,
    },
    Info,
    SetWebhook {
        url: String,
        settings: AnySettings,
    },
    ClearWebhook,
    Emit {
        event: String,
        data: Option<Vec<(String, AnyValue)>>,
    },
    Subscribe {
        pattern: String,
    },
    Shutdown {
        reason: Option<String>,
    },
    ReloadSecrets,
    Deliveries {
        failed_only: bool,
        limit: Option<usize>,
    },
    TestWebhook,
    Redeliver {
        event_id: u64,
    },
    AddWebhook {
        name: String,
        url: String,
        settings: AnySettings,
    },
    RemoveWebhook {
        name: String,
        force: bool,
    },
    PauseWebhook {
        name: String,
    },
}

#[derive(Debug, Arbitrary)]
enum AnyValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<u32>),
}

#[derive(Debug, Arbitrary)]
struct AnySettings {
    events: Vec<String>,
    exclude: Vec<String>,
    durable: bool,
    headers: Vec<String>,
    bearer_token_file: Option<String>,
    basic_auth_file: Option<String>,
    insecure_tls: bool,
    batch_max: Option<usize>,
    batch_wait: Option<Duration>,
    concurrency: Option<usize>,
    max_spool_bytes: Option<u64>,
    discard_after: Option<Duration>,
    max_backoff: Option<Duration>,
    dead_letter_max_bytes: Option<u64>,
    dead_letter_retention: Option<Duration>,
    retain: Option<Duration>,
    retain_max_bytes: Option<u64>,
}

impl From<AnyValue> for Value {
    fn from(v: AnyValue) -> Value {
        match v {
            AnyValue::Null => Value::Null,
            AnyValue::Bool(b) => b.into(),
            AnyValue::Int(i) => i.into(),
            AnyValue::Float(f) => f.into(),
            AnyValue::Str(s) => s.into(),
            AnyValue::List(l) => l.into(),
        }
    }
}

impl From<AnySettings> for WebhookSettings {
    fn from(s: AnySettings) -> WebhookSettings {
        WebhookSettings {
            events: s.events,
            exclude: s.exclude,
            min_severity: None,
            durable: s.durable,
            headers: s.headers,
            bearer_token_file: s.bearer_token_file.map(Into::into),
            basic_auth_file: s.basic_auth_file.map(Into::into),
            insecure_tls: s.insecure_tls,
            batch_max: s.batch_max,
            batch_wait: s.batch_wait,
            concurrency: s.concurrency,
            max_spool_bytes: s.max_spool_bytes,
            discard_after: s.discard_after,
            max_backoff: s.max_backoff,
            dead_letter_max_bytes: s.dead_letter_max_bytes,
            dead_letter_retention: s.dead_letter_retention,
            retain: s.retain,
            retain_max_bytes: s.retain_max_bytes,
            ..WebhookSettings::default()
        }
    }
}

impl From<AnyRequest> for Request {
    fn from(r: AnyRequest) -> Request {
        match r {
            AnyRequest::Hello { version, client } => Request::Hello { version, client },
            AnyRequest::Info => Request::Info,
            AnyRequest::SetWebhook { url, settings } => Request::SetWebhook {
                url,
                settings: Box::new(settings.into()),
            },
            AnyRequest::ClearWebhook => Request::ClearWebhook,
            AnyRequest::Emit { event, data } => Request::Emit {
                event,
                // Not drawn from the fuzzer's bytes, so the corpus keeps its meaning.
                severity: None,
                data: data.map(|fields| {
                    let map: serde_json::Map<String, Value> =
                        fields.into_iter().map(|(k, v)| (k, v.into())).collect();
                    serde_json::value::to_raw_value(&map).expect("a map of plain values")
                }),
            },
            AnyRequest::Subscribe { pattern } => Request::Subscribe { pattern },
            AnyRequest::Shutdown { reason } => Request::Shutdown { reason },
            AnyRequest::ReloadSecrets => Request::ReloadSecrets { name: None },
            AnyRequest::Deliveries { failed_only, limit } => Request::Deliveries {
                failed_only,
                limit,
                name: None,
            },
            AnyRequest::TestWebhook => Request::TestWebhook { name: None },
            AnyRequest::Redeliver { event_id } => Request::Redeliver {
                event_id,
                name: None,
            },
            AnyRequest::AddWebhook {
                name,
                url,
                settings,
            } => Request::AddWebhook {
                name,
                url,
                settings: Box::new(settings.into()),
            },
            AnyRequest::RemoveWebhook { name, force } => Request::RemoveWebhook { name, force },
            AnyRequest::PauseWebhook { name } => Request::PauseWebhook { name },
        }
    }
}

/// A structurally valid request, encoded, framed, decoded: the same request (every field),
/// and it goes through the daemon's argument checks.
pub fn request_round_trip(data: &[u8]) {
    let Ok(any) = AnyRequest::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let req = Request::from(any);
    let encoded = frame::encode(&req);
    let mut wire = BytesMut::new();
    frame::codec()
        .encode(encoded.clone(), &mut wire)
        .expect("a small request fits in a frame");
    let body = frame::codec()
        .decode(&mut wire)
        .expect("our own frame decodes")
        .expect("our own frame is complete");
    assert!(wire.is_empty());
    let back = frame::decode::<Request>(&body, REQUEST_TYPES)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", String::from_utf8_lossy(&body)));
    assert_eq!(frame::encode(&back), encoded);
    match (&req, &back) {
        (
            Request::SetWebhook { url, settings },
            Request::SetWebhook {
                url: u2,
                settings: s2,
            },
        ) => assert_eq!((url, settings), (u2, s2)),
        (
            Request::Emit {
                event,
                data,
                severity,
            },
            Request::Emit {
                event: e2,
                data: d2,
                severity: s2,
            },
        ) => {
            assert_eq!((event, severity), (e2, s2));
            assert_eq!(data.as_ref().map(|d| d.get()), d2.as_ref().map(|d| d.get()));
        }
        (a, b) => assert_eq!(type_of(a), type_of(b)),
    }
    serve(&back);
}
