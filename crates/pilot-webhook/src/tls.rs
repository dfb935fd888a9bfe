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
    let provider = provider();
    builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SystemRoots {
            provider,
            verifier: OnceLock::new(),
        }))
        .with_no_client_auth()
}

/// The verifier `with_root_certificates(root_store())` makes (rustls's WebPKI verifier),
/// built when the first certificate is to be checked.
#[derive(Debug)]
struct SystemRoots {
    provider: Arc<CryptoProvider>,
    verifier: OnceLock<Result<Arc<WebPkiServerVerifier>, rustls::Error>>,
}

impl SystemRoots {
    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                WebPkiServerVerifier::builder_with_provider(root_store(), self.provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
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
    let built = if insecure {
        builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerousAcceptAnyCertificate {
                provider: provider(),
            }))
            .with_client_auth_cert(identity.certs, identity.key)
    } else {
        builder()
            .with_root_certificates(root_store())
            .with_client_auth_cert(identity.certs, identity.key)
    };
    built.map_err(|e| format!("the certificate and key do not make a client identity: {e}"))
}

/// A TLS client configuration that accepts ANY server certificate (`insecure_tls`): the
/// connection is encrypted but the server is not authenticated.
pub(crate) fn insecure_tls_config() -> rustls::ClientConfig {
    builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DangerousAcceptAnyCertificate {
            provider: provider(),
        }))
        .with_no_client_auth()
}

/// Accepts every server certificate, whoever issued it and whatever name it carries. The
/// handshake signatures are still checked (the server holds the key of the certificate it
/// shows), which stops nothing but a broken server. For `insecure_tls` only.
#[derive(Debug)]
pub(crate) struct DangerousAcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for DangerousAcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
