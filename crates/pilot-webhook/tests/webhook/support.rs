//! Helpers shared by the integration tests: stats checks, an independent signature check (Python's
//! stdlib when python3 is installed, else the RustCrypto crates directly, never the code under
//! test), and a self-signed TLS server configuration.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::receiver::Recorded;

use pilot_webhook::{Stats, WebhookOptions, WebhookPlugin};
use tokio::time::Instant;

/// Short options so tests run in milliseconds.
pub fn fast_options() -> WebhookOptions {
    WebhookOptions {
        queue_size: 1024,
        timeout: Duration::from_millis(200),
        max_attempts: 3,
        backoff: Duration::from_millis(10),
        circuit_threshold: 5,
        circuit_cooldown: Duration::from_millis(300),
        drain_timeout: Duration::from_millis(300),
        ..WebhookOptions::default()
    }
}

/// Waits until `check` holds for the plugin's stats (panics after 5 s).
pub async fn wait_stats(
    plugin: &WebhookPlugin,
    what: &str,
    check: impl Fn(&Stats) -> bool,
) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = plugin.stats();
        if check(&stats) {
            return stats;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; stats: {stats:#?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until nothing is queued or in flight, then checks the accounting identity.
pub async fn settled(plugin: &WebhookPlugin) -> Stats {
    let stats = wait_stats(plugin, "the queue to settle", |s| {
        s.queue_depth == 0 && s.in_flight == 0 && s.is_balanced()
    })
    .await;
    assert_balanced(&stats);
    stats
}

/// queued + recovered = delivered + failed + circuit_skips + filtered + (dropped - queue-full
/// drops) + depth + in flight; and the snapshot's own accounting says the same.
pub fn assert_balanced(s: &Stats) {
    assert!(s.accounting.balanced, "accounting: {:#?}", s.accounting);
    assert_eq!(
        s.accounting.emitted,
        s.queued + s.dropped_queue_full + s.recovered,
        "{s:#?}"
    );
    assert_eq!(
        s.queued + s.recovered,
        s.delivered
            + s.failed
            + s.circuit_skips
            + s.filtered
            + (s.dropped - s.dropped_queue_full)
            + s.queue_depth
            + s.in_flight,
        "accounting does not balance: {s:#?}"
    );
}

/// What an independent verifier found in one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Indexes of the secrets with a matching `v1,` signature.
    pub matched: Vec<usize>,
    /// Whether `X-Pilot-Signature-256` is the hex HMAC of the body keyed with secrets[0].
    pub pilot: bool,
}

const VERIFY_PY: &str = r#"
import base64, hashlib, hmac, json, sys
out = []
for r in json.load(sys.stdin):
    body = base64.b64decode(r["body"])
    signed = (r["id"] + "." + r["ts"] + ".").encode() + body
    got = [s.split(",", 1)[1] for s in r["sig"].split(" ") if s.startswith("v1,")]
    matched = []
    for i, secret in enumerate(r["secrets"]):
        key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode()
        want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        if any(hmac.compare_digest(want, g) for g in got):
            matched.append(i)
    pilot = hmac.compare_digest(hmac.new(r["secrets"][0].encode(), body, hashlib.sha256).hexdigest(), r["pilot"])
    out.append({"matched": matched, "pilot": pilot})
print(json.dumps(out))
"#;

/// Verifies the signatures of `requests` against `secrets` (current first) independently.
pub fn verify(requests: &[Recorded], secrets: &[&str]) -> Vec<Verified> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let input: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            serde_json::json!({
                "secrets": secrets,
                "id": r.header("webhook-id").unwrap_or_default(),
                "ts": r.header("webhook-timestamp").unwrap_or_default(),
                "sig": r.header("webhook-signature").unwrap_or_default(),
                "pilot": r.header("x-pilot-signature-256").unwrap_or_default(),
                "body": b64.encode(&r.body),
            })
        })
        .collect();
    if let Some(out) = run_python(VERIFY_PY, &serde_json::to_vec(&input).unwrap()) {
        let out: Vec<serde_json::Value> = serde_json::from_slice(&out).expect("python output");
        return out
            .iter()
            .map(|v| Verified {
                matched: v["matched"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap() as usize)
                    .collect(),
                pilot: v["pilot"].as_bool().unwrap(),
            })
            .collect();
    }
    eprintln!("python3 not available: verifying with the hmac crate directly");
    requests
        .iter()
        .map(|r| verify_in_rust(r, secrets))
        .collect()
}

fn run_python(script: &str, stdin: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(stdin).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

fn verify_in_rust(r: &Recorded, secrets: &[&str]) -> Verified {
    use hmac::{Hmac, Mac};
    type H = Hmac<sha2::Sha256>;
    let b64 = base64::engine::general_purpose::STANDARD;
    let id = r.header("webhook-id").unwrap_or_default();
    let ts = r.header("webhook-timestamp").unwrap_or_default();
    let sig = r.header("webhook-signature").unwrap_or_default();
    let got: Vec<&str> = sig
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .collect();
    let mut matched = Vec::new();
    for (i, secret) in secrets.iter().enumerate() {
        let key = match secret.strip_prefix("whsec_") {
            Some(k) => b64.decode(k).unwrap(),
            None => secret.as_bytes().to_vec(),
        };
        let mut m = H::new_from_slice(&key).unwrap();
        m.update(format!("{id}.{ts}.").as_bytes());
        m.update(&r.body);
        let want = b64.encode(m.finalize().into_bytes());
        if got.contains(&want.as_str()) {
            matched.push(i);
        }
    }
    let mut m = H::new_from_slice(secrets[0].as_bytes()).unwrap();
    m.update(&r.body);
    let hex: String = m
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Verified {
        matched,
        pilot: r.header("x-pilot-signature-256").as_deref() == Some(hex.as_str()),
    }
}

/// A TLS acceptor with a fresh self-signed certificate for localhost and 127.0.0.1.
pub fn self_signed() -> tokio_rustls::TlsAcceptor {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(server))
}

/// Collects what a tracing subscriber writes, for "never logged" checks.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
