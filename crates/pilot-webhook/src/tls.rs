//! TLS client configurations (rustls on the ring provider): the normal one trusting the system's
//! CA roots (the bundled Mozilla roots when the system has none), and the one `insecure_tls`
//! asks for, which accepts any server certificate ([`DangerousAcceptAnyCertificate`]).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tracing::{debug, warn};

/// Trust anchors for HTTPS: the system's roots, or the bundled Mozilla roots if it has none.
pub(crate) fn root_store() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for err in &native.errors {
                debug!(error = %err, "could not load some system CA certificates");
            }
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                warn!(
                    "no system CA certificates found; HTTPS webhooks use the bundled Mozilla roots"
                );
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            Arc::new(roots)
        })
        .clone()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        // Cannot fail: ring's default provider has cipher suites for TLS 1.2 and 1.3, which is
        // all this check looks for.
        .expect("the ring provider supports the default TLS versions")
}

/// The normal TLS client configuration: the server's certificate checked against
/// [`root_store`], which is loaded on the first handshake ([`SystemRoots`]): a daemon with
/// only `http://` webhooks never reads or holds the CA bundle.
pub(crate) fn system_tls_config() -> rustls::ClientConfig {
    builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier(false))
        .with_no_client_auth()
}

/// The server-certificate check of a configuration: the system's roots, or none at all for
/// `insecure_tls`. Either way the handshake signatures are checked ([`Checked`]).
fn verifier(insecure: bool) -> Arc<dyn ServerCertVerifier> {
    let provider = provider();
    if insecure {
        Arc::new(Checked {
            provider,
            certificate: DangerousAcceptAnyCertificate,
        })
    } else {
        Arc::new(Checked {
            provider,
            certificate: SystemRoots(OnceLock::new()),
        })
    }
}

/// How a server's certificate is judged (the rest of [`ServerCertVerifier`] is [`Checked`]'s).
trait CertificateCheck: std::fmt::Debug + Send + Sync {
    fn verify(
        &self,
        provider: &Arc<CryptoProvider>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error>;
}

/// A verifier: `certificate` judges the server's certificate; the handshake signatures are
/// checked with the provider's algorithms, as rustls's own verifier does.
#[derive(Debug)]
struct Checked<C> {
    provider: Arc<CryptoProvider>,
    certificate: C,
}

impl<C: CertificateCheck> ServerCertVerifier for Checked<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.certificate.verify(
            &self.provider,
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The check `with_root_certificates(root_store())` makes (rustls's WebPKI verifier), built
/// when the first certificate is to be checked.
#[derive(Debug)]
struct SystemRoots(OnceLock<Result<Arc<WebPkiServerVerifier>, rustls::Error>>);

impl CertificateCheck for SystemRoots {
    fn verify(
        &self,
        provider: &Arc<CryptoProvider>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verifier = self
            .0
            .get_or_init(|| {
                WebPkiServerVerifier::builder_with_provider(root_store(), provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }
}

/// A TLS client configuration trusting `roots` (tests: their own CA).
#[cfg(test)]
pub(crate) fn tls_config(roots: Arc<rustls::RootCertStore>) -> rustls::ClientConfig {
    builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A client identity for mutual TLS: the certificate chain and its private key, parsed from
/// PEM (the files were checked by `pilot_core::client_identity`).
pub(crate) struct ClientIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Parses the PEM contents; the error says what is wrong (never the key itself).
    pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject as _;
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the certificate file does not parse as PEM: {e}"))?;
        if certs.is_empty() {
            return Err("the certificate file holds no certificate".into());
        }
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("the key file holds no usable private key: {e}"))?;
        Ok(Self { certs, key })
    }
}

/// `config` (from [`tls_config`] or [`insecure_tls_config`]'s builder) presenting `identity`.
pub(crate) fn with_client_identity(
    insecure: bool,
    identity: ClientIdentity,
) -> Result<rustls::ClientConfig, String> {
    builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier(insecure))
        .with_client_auth_cert(identity.certs, identity.key)
        .map_err(|e| format!("the certificate and key do not make a client identity: {e}"))
}

/// A TLS client configuration that accepts ANY server certificate (`insecure_tls`): the
/// connection is encrypted but the server is not authenticated.
pub(crate) fn insecure_tls_config() -> rustls::ClientConfig {
    builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier(true))
        .with_no_client_auth()
}

/// Accepts every server certificate, whoever issued it and whatever name it carries. The
/// handshake signatures are still checked (the server holds the key of the certificate it
/// shows), which stops nothing but a broken server. For `insecure_tls` only.
#[derive(Debug)]
struct DangerousAcceptAnyCertificate;

impl CertificateCheck for DangerousAcceptAnyCertificate {
    fn verify(
        &self,
        _provider: &Arc<CryptoProvider>,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}
