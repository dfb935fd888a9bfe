//! An HTTPS receiver on 127.0.0.1 that demands a client certificate issued by its own test CA
//! (mutual TLS), and a client identity (certificate and 0600 key files) that it accepts. It
//! counts the requests it answered and the TLS handshakes it refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_rustls::rustls;

/// A running mutual-TLS receiver; stops when dropped.
pub struct MtlsReceiver {
    addr: SocketAddr,
    /// Requests answered (each from a client that showed an accepted certificate).
    pub answered: Arc<AtomicUsize>,
    /// TLS handshakes refused (no certificate, or one the CA did not issue).
    pub refused: Arc<AtomicUsize>,
    client_cert_pem: String,
    client_key_pem: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl MtlsReceiver {
    /// Starts one on a free port.
    pub fn start() -> MtlsReceiver {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let client_key = KeyPair::generate().expect("client key");
        let client = CertificateParams::new(vec!["pilot-client".to_string()])
            .expect("client params")
            .signed_by(&client_key, &ca)
            .expect("client certificate");
        let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
            .expect("server certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("CA root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(server.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server.cert.der().clone()], key)
            .expect("TLS server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let answered = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (a, r) = (answered.clone(), refused.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, a, r) = (acceptor.clone(), a.clone(), r.clone());
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                r.fetch_add(1, Ordering::SeqCst);
                                return;
                            };
                            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                                a.fetch_add(1, Ordering::SeqCst);
                                async {
                                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                        Bytes::new(),
                                    )))
                                }
                            });
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(tls), svc)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        MtlsReceiver {
            addr: addr_rx.recv().expect("receiver started"),
            answered,
            refused,
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            _stop: stop_tx,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/events", self.addr)
    }

    /// Writes the accepted client identity into `dir`: `client.pem` and `client.key` (0600).
    pub fn write_client_identity(&self, dir: &Path) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let cert = dir.join("client.pem");
        let key = dir.join("client.key");
        std::fs::write(&cert, &self.client_cert_pem).expect("write cert");
        std::fs::write(&key, &self.client_key_pem).expect("write key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        (cert, key)
    }
}
