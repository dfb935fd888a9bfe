//! Signature verification for `pilotctl listen --secret`, written from the specifications and
//! independent of the daemon's signer (pilot-webhook), so each checks the other.
//!
//! * Standard Webhooks: `webhook-signature` holds space-separated `v1,<base64>` entries; one
//!   must equal HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"), where key is the
//!   base64-decoded part after `whsec_`, else the secret's raw bytes. `webhook-timestamp` must
//!   be within [`TOLERANCE_SECS`] of now (replay protection).
//! * Pilot: `X-Pilot-Signature-256` is the lowercase hex HMAC-SHA256 of the body keyed with
//!   the secret string as configured.
//!
//! A delivery verifies when either scheme verifies (during a rotation a receiver holding the
//! previous secret matches only a Standard Webhooks entry). Comparisons are constant-time
//! (`Mac::verify_slice`).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far `webhook-timestamp` may be from now, in seconds (the Standard Webhooks default).
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The signature headers of one request, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signed<'a> {
    pub webhook_id: Option<&'a str>,
    pub webhook_timestamp: Option<&'a str>,
    pub webhook_signature: Option<&'a str>,
    pub pilot_signature: Option<&'a str>,
}

/// The outcome of checking one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A signature matched; `scheme` says which (`standard` or `pilot`).
    Verified { scheme: &'static str },
    /// No signature matched; why.
    Invalid(String),
}

impl Verdict {
    pub fn is_verified(&self) -> bool {
        matches!(self, Verdict::Verified { .. })
    }
}

/// Checks requests against one secret.
#[derive(Clone)]
pub struct Verifier {
    raw: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(***)")
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

impl Verifier {
    /// A verifier for `secret` (`whsec_<base64>` or any other text).
    pub fn new(secret: &str) -> Verifier {
        let key = secret
            .strip_prefix("whsec_")
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .unwrap_or_else(|| secret.as_bytes().to_vec());
        Verifier {
            raw: secret.as_bytes().to_vec(),
            key,
        }
    }

    /// Checks one request at unix time `now`.
    pub fn verify(&self, h: &Signed<'_>, body: &[u8], now: i64) -> Verdict {
        let mut reasons = Vec::new();
        if let Some(sigs) = h.webhook_signature {
            match self.standard(h, sigs, body, now) {
                Ok(()) => return Verdict::Verified { scheme: "standard" },
                Err(r) => reasons.push(r),
            }
        }
        if let Some(sig) = h.pilot_signature {
            match self.pilot(sig, body) {
                Ok(()) => return Verdict::Verified { scheme: "pilot" },
                Err(r) => reasons.push(r),
            }
        }
        if reasons.is_empty() {
            reasons.push("the request is not signed".into());
        }
        Verdict::Invalid(reasons.join("; "))
    }

    fn standard(&self, h: &Signed<'_>, sigs: &str, body: &[u8], now: i64) -> Result<(), String> {
        let id = h.webhook_id.ok_or("webhook-id is missing")?;
        let ts_text = h.webhook_timestamp.ok_or("webhook-timestamp is missing")?;
        let ts: i64 = ts_text
            .trim()
            .parse()
            .map_err(|_| "webhook-timestamp is not a number".to_string())?;
        if (now - ts).abs() > TOLERANCE_SECS {
            return Err(format!(
                "webhook-timestamp {ts} is more than {TOLERANCE_SECS}s from now"
            ));
        }
        let mut m = mac(&self.key);
        m.update(id.as_bytes());
        m.update(b".");
        m.update(ts_text.trim().as_bytes());
        m.update(b".");
        m.update(body);
        for entry in sigs.split(' ').filter(|e| !e.is_empty()) {
            let Some(b64) = entry.strip_prefix("v1,") else {
                continue;
            };
            let Ok(given) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                continue;
            };
            if m.clone().verify_slice(&given).is_ok() {
                return Ok(());
            }
        }
        Err("no webhook-signature entry matches".into())
    }

    fn pilot(&self, sig: &str, body: &[u8]) -> Result<(), String> {
        let given = hex_decode(sig.trim()).ok_or("X-Pilot-Signature-256 is not hex")?;
        let mut m = mac(&self.raw);
        m.update(body);
        m.verify_slice(&given)
            .map_err(|_| "X-Pilot-Signature-256 does not match".to_string())
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference libraries.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: &str = "1614265330";
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn signed<'a>(sig: &'a str, ts: &'a str) -> Signed<'a> {
        Signed {
            webhook_id: Some(SPEC_ID),
            webhook_timestamp: Some(ts),
            webhook_signature: Some(sig),
            pilot_signature: None,
        }
    }

    #[test]
    fn the_specification_example_verifies() {
        let v = Verifier::new(SPEC_SECRET);
        let now = 1614265330;
        assert_eq!(
            v.verify(&signed(SPEC_SIG, SPEC_TS), SPEC_BODY, now),
            Verdict::Verified { scheme: "standard" }
        );
        // One of several entries (a rotation) is enough; unknown versions are skipped.
        let several = format!("v1,bm9wZQ== v2,xyz {SPEC_SIG}");
        assert!(v
            .verify(&signed(&several, SPEC_TS), SPEC_BODY, now)
            .is_verified());
    }

    #[test]
    fn tampering_and_old_timestamps_are_refused() {
        let v = Verifier::new(SPEC_SECRET);
        let now = 1614265330;
        assert!(!v
            .verify(&signed(SPEC_SIG, SPEC_TS), br#"{"test": 1}"#, now)
            .is_verified());
        assert!(!v
            .verify(&signed(SPEC_SIG, SPEC_TS), SPEC_BODY, now + 301)
            .is_verified());
        assert!(!Verifier::new("whsec_AAAA")
            .verify(&signed(SPEC_SIG, SPEC_TS), SPEC_BODY, now)
            .is_verified());
        let Verdict::Invalid(why) = v.verify(&Signed::default(), SPEC_BODY, now) else {
            panic!()
        };
        assert!(why.contains("not signed"), "{why}");
    }

    #[test]
    fn pilot_signature_is_hex_hmac_of_the_body_keyed_with_the_secret_text() {
        // RFC 4231 test case 2: key "Jefe".
        let body = b"what do ya want for nothing?";
        let hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let v = Verifier::new("Jefe");
        let h = Signed {
            pilot_signature: Some(hex),
            ..Signed::default()
        };
        assert_eq!(v.verify(&h, body, 0), Verdict::Verified { scheme: "pilot" });
        let h = Signed {
            pilot_signature: Some("00"),
            ..Signed::default()
        };
        assert!(!v.verify(&h, body, 0).is_verified());
        assert!(!Verifier::new("jefe").verify(&h, body, 0).is_verified());
    }

    #[test]
    fn a_raw_secret_keys_the_standard_scheme_with_its_bytes() {
        let secret = "plain-secret";
        let mut m = mac(secret.as_bytes());
        m.update(b"msg_1.100.{}");
        let sig = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
        );
        let h = Signed {
            webhook_id: Some("msg_1"),
            webhook_timestamp: Some("100"),
            webhook_signature: Some(&sig),
            pilot_signature: None,
        };
        assert!(Verifier::new(secret).verify(&h, b"{}", 100).is_verified());
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(hex_decode("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("é1"), None);
    }
}
