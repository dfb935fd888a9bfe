//! Request signatures: the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`) and Pilot's `X-Pilot-Signature-256`.
//!
//! * `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, one
//!   space-separated `v1,` entry per secret still valid (the current one first, then those in a
//!   rotation's grace period). The key is [`pilot_core::secrets::signing_key`]: the base64-decoded
//!   part after `whsec_`, or the raw bytes of a secret without that prefix.
//! * `X-Pilot-Signature-256: <lowercase hex HMAC-SHA256(secret, body)>`, keyed with the current
//!   secret's text exactly as configured.
//!
//! [`Secrets`] never shows a secret in `Debug` output; nothing here logs.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `webhook-id`.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// `webhook-timestamp`.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// `webhook-signature`.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
/// `x-pilot-signature-256`.
pub const PILOT_SIGNATURE: HeaderName = HeaderName::from_static("x-pilot-signature-256");

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long keys are hashed, short ones padded), so this
    // constructor cannot fail; `new_from_slice` only returns a Result for other MACs.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// The Standard Webhooks signature (base64, without the `v1,` prefix) of one message.
pub fn standard_signature(key: &[u8], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(webhook_id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// Pilot's signature: lowercase hex HMAC-SHA256 of `body` keyed with `secret`'s bytes.
pub fn pilot_signature(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    let digest = m.finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

struct Key {
    /// The secret as configured (Pilot's signature uses these bytes).
    raw: Vec<u8>,
    /// [`pilot_core::secrets::signing_key`] of it (Standard Webhooks).
    key: Vec<u8>,
}

/// The secrets requests are signed with, current first. Empty: requests are unsigned.
/// Cheap to clone; `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct Secrets(Arc<[Key]>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

/// The signature headers of one request, in the order they are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub webhook_id: String,
    pub timestamp: i64,
    /// `v1,<sig>[ v1,<sig>...]`.
    pub signature: String,
    /// Lowercase hex.
    pub pilot: String,
}

impl SignatureHeaders {
    /// The headers as (name, value) pairs; `None` if a value is not a valid header (it always is:
    /// ids are built from ASCII, signatures are base64 and hex).
    pub fn pairs(&self) -> Option<[(HeaderName, HeaderValue); 4]> {
        let v = |s: &str| HeaderValue::from_str(s).ok();
        Some([
            (WEBHOOK_ID, v(&self.webhook_id)?),
            (WEBHOOK_TIMESTAMP, HeaderValue::from(self.timestamp)),
            (WEBHOOK_SIGNATURE, v(&self.signature)?),
            (PILOT_SIGNATURE, v(&self.pilot)?),
        ])
    }
}

impl Secrets {
    /// Secrets in order (current first); empty strings are ignored.
    pub fn new(secrets: Vec<String>) -> Self {
        let keys: Vec<Key> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| Key {
                key: pilot_core::secrets::signing_key(&s),
                raw: s.into_bytes(),
            })
            .collect();
        Secrets(keys.into())
    }

    /// How many secrets sign each request.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether requests go unsigned.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The signature headers for `body` sent as `webhook_id` at `timestamp` (unix seconds);
    /// `None` without secrets.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> Option<SignatureHeaders> {
        let current = self.0.first()?;
        let signature = self
            .0
            .iter()
            .map(|k| {
                format!(
                    "v1,{}",
                    standard_signature(&k.key, webhook_id, timestamp, body)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        Some(SignatureHeaders {
            webhook_id: webhook_id.to_string(),
            timestamp,
            signature,
            pilot: pilot_signature(&current.raw, body),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn matches_the_standard_webhooks_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = standard_signature(
            &pilot_core::secrets::signing_key(secret),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(sig, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    /// Vectors computed with Python's hmac module:
    /// `hmac.new(b"plain-secret", b'{"a":1}', hashlib.sha256).hexdigest()`.
    #[test]
    fn pilot_signature_is_lowercase_hex_of_the_raw_secret() {
        assert_eq!(
            pilot_signature(b"plain-secret", br#"{"a":1}"#),
            "9e0c6ff4bcd0c2a9fa77d9c0f50ee5e05cc1d1b2814ee5fdf7ec9e8ed28aa55d"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            pilot_signature(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn one_v1_entry_per_secret_current_first_and_pilot_uses_the_current_text() {
        let secrets = Secrets::new(vec![
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            String::new(),
            "old-secret".into(),
        ]);
        assert_eq!(secrets.len(), 2);
        let h = secrets
            .sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#,
            )
            .unwrap();
        let parts: Vec<&str> = h.signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            parts[1],
            format!(
                "v1,{}",
                standard_signature(
                    b"old-secret",
                    "msg_p5jXN8AQM9LWM0D4loKWxJek",
                    1614265330,
                    br#"{"test": 2432232314}"#
                )
            )
        );
        // Pilot's signature is keyed with the configured text, prefix included.
        assert_eq!(
            h.pilot,
            pilot_signature(
                b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                br#"{"test": 2432232314}"#
            )
        );
        let pairs = h.pairs().unwrap();
        assert_eq!(pairs[1].1, "1614265330");
        assert!(Secrets::default().sign("msg_x", 1, b"{}").is_none());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let s = Secrets::new(vec!["hunter2-secret".into()]);
        let shown = format!("{s:?}");
        assert_eq!(shown, "Secrets(1 hidden)");
    }

    /// Checks against Python's hmac module when python3 is installed (skipped otherwise).
    #[test]
    fn agrees_with_python_for_random_inputs() {
        use rand::RngCore as _;
        let mut rng = rand::rng();
        for _ in 0..3 {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            let secret = format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(key)
            );
            let body = format!("{{\"n\":{},\"s\":\"é\\u00e9\"}}", rng.next_u64());
            let id = format!("msg_{:016x}_7", rng.next_u64());
            let ts = 1_700_000_000 + i64::from(rng.next_u32() % 1000);
            let script = r#"
import base64, hashlib, hmac, sys
secret, wid, ts, body = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].encode()
key = base64.b64decode(secret[len("whsec_"):])
std = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
pilot = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
print(std, pilot)
"#;
            let out = match std::process::Command::new("python3")
                .args(["-c", script, &secret, &id, &ts.to_string(), &body])
                .output()
            {
                Ok(out) if out.status.success() => out,
                _ => {
                    eprintln!("python3 not available; skipping the cross-check");
                    return;
                }
            };
            let text = String::from_utf8(out.stdout).unwrap();
            let mut it = text.split_whitespace();
            let (std_sig, pilot) = (it.next().unwrap(), it.next().unwrap());
            let h = Secrets::new(vec![secret.clone()])
                .sign(&id, ts, body.as_bytes())
                .unwrap();
            assert_eq!(h.signature, format!("v1,{std_sig}"));
            assert_eq!(h.pilot, pilot);
        }
    }
}
