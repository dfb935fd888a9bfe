//! A tiny signature verifier for the tests, written from the specifications (hmac + sha2),
//! sharing no code with the daemon's signer or pilotctl's verifier.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::receiver::Received;

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// The Standard Webhooks key of a secret: base64 after `whsec_`, else its bytes.
pub fn key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The `v1,<base64>` entry `secret` gives for this message.
pub fn standard_entry(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(
        &key(secret),
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

/// Pilot's `X-Pilot-Signature-256` for `body`: lowercase hex, keyed with the secret's text.
pub fn pilot_hex(secret: &str, body: &[u8]) -> String {
    hmac_sha256(secret.as_bytes(), &[body])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `v1,` entries of a request's `webhook-signature` header.
pub fn entries(r: &Received) -> Vec<String> {
    r.header("webhook-signature")
        .unwrap_or_default()
        .split(' ')
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect()
}

/// Whether one of the request's `webhook-signature` entries is `secret`'s.
pub fn standard_ok(r: &Received, secret: &str) -> bool {
    let (Some(id), Some(ts)) = (r.header("webhook-id"), r.header("webhook-timestamp")) else {
        return false;
    };
    let want = standard_entry(secret, id, ts, &r.body);
    entries(r).contains(&want)
}

/// Whether the request's `X-Pilot-Signature-256` is `secret`'s.
pub fn pilot_ok(r: &Received, secret: &str) -> bool {
    r.header("x-pilot-signature-256") == Some(pilot_hex(secret, &r.body).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specification_example() {
        assert_eq!(
            standard_entry(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
