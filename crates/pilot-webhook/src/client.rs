//! The HTTP(S) client: hyper-util's pooled client (keep-alive) over rustls, with a resolver that
//! applies the SSRF policy at connect time.
//!
//! hyper connects to literal IP hosts without asking the resolver, so [`Target::new`] checks
//! those itself; hostnames go through [`GuardedResolver`], which refuses cloud-metadata names and
//! drops every resolved address that `check_ip` refuses (DNS rebinding). A host left with no
//! address is a [`DeliveryError::Blocked`], which is never retried.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::percent_decode_str;
use pilot_core::webhook_url::{check_hostname, check_ip, Url};
use tracing::{debug, warn};

use crate::error::{chain, redact, DeliveryError};
use crate::options::WebhookOptions;
use crate::retry::{honours_retry_after, parse_retry_after};
use crate::tls::{insecure_tls_config, root_store, tls_config};

/// At most this much of a response body is read (then the response is dropped).
pub(crate) const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Finds the addresses of a hostname (the system resolver, or a stand-in in tests).
pub(crate) type LookupFn = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> + Send + Sync,
>;

/// Why a hostname gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    /// A metadata hostname, or every address it resolves to is refused.
    #[error("{reason}")]
    Blocked { reason: String },
    #[error("cannot resolve {host}: {source}")]
    Lookup { host: String, source: io::Error },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
}

/// Resolves with the system resolver through tokio.
fn system_lookup() -> LookupFn {
    Arc::new(|host: String| {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    })
}

/// Resolves `host` and keeps only the addresses a webhook may reach (port 0: hyper sets it).
pub(crate) async fn resolve_checked(
    host: &str,
    lookup: &LookupFn,
) -> Result<Vec<SocketAddr>, ResolveError> {
    check_hostname(host).map_err(|reason| ResolveError::Blocked { reason })?;
    let ips = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => lookup(host.to_string())
            .await
            .map_err(|source| ResolveError::Lookup {
                host: host.into(),
                source,
            })?,
    };
    if ips.is_empty() {
        return Err(ResolveError::NoAddress { host: host.into() });
    }
    let mut allowed = Vec::with_capacity(ips.len());
    let mut refused = Vec::new();
    for ip in ips {
        match check_ip(ip) {
            Ok(()) => {
                let addr = SocketAddr::new(ip, 0);
                if !allowed.contains(&addr) {
                    allowed.push(addr);
                }
            }
            Err(reason) => {
                debug!(host, %ip, %reason, "webhook resolver dropped a blocked address");
                refused.push(reason);
            }
        }
    }
    if allowed.is_empty() {
        return Err(ResolveError::Blocked {
            reason: format!(
                "{host} resolves only to blocked addresses: {}",
                refused.join("; ")
            ),
        });
    }
    Ok(allowed)
}

/// The connector's resolver: [`resolve_checked`] as a `tower_service::Service<Name>`.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    lookup: LookupFn,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let lookup = self.lookup.clone();
        Box::pin(async move {
            resolve_checked(name.as_str(), &lookup)
                .await
                .map(Vec::into_iter)
        })
    }
}

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// The normal TLS configuration: the system's CA roots.
fn tls_config_default() -> rustls::ClientConfig {
    tls_config(root_store())
}

/// The shared HTTP client (cheap to clone; clones share the connection pool).
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    lookup: LookupFn,
    user_agent: HeaderValue,
    timeout: Duration,
}

impl HttpClient {
    /// A client with the system resolver and the system's CA roots.
    pub(crate) fn new(options: &WebhookOptions) -> Self {
        Self::with_parts(options, system_lookup(), tls_config_default())
    }

    /// A client with the given name lookup and TLS configuration.
    pub(crate) fn with_parts(
        options: &WebhookOptions,
        lookup: LookupFn,
        tls: rustls::ClientConfig,
    ) -> Self {
        let user_agent = HeaderValue::from_str(&options.user_agent).unwrap_or_else(|_| {
            warn!(
                user_agent = options.user_agent,
                "invalid webhook User-Agent; using the default"
            );
            HeaderValue::from_static(concat!("pilot-daemon/", env!("CARGO_PKG_VERSION")))
        });
        Self::build(lookup, tls, user_agent, options.timeout)
    }

    fn build(
        lookup: LookupFn,
        tls: rustls::ClientConfig,
        user_agent: HeaderValue,
        timeout: Duration,
    ) -> Self {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            lookup: lookup.clone(),
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(https);
        Self {
            client,
            lookup,
            user_agent,
            timeout,
        }
    }

    /// The same client (resolver, SSRF guard, timeout, User-Agent) that accepts any TLS
    /// certificate, with a pool of its own.
    pub(crate) fn insecure(&self) -> Self {
        Self::build(
            self.lookup.clone(),
            insecure_tls_config(),
            self.user_agent.clone(),
            self.timeout,
        )
    }

    /// POSTs `body` to `target` with `headers` added after the standard ones (replacing any of
    /// the same name): `Ok` with the status on a 2xx, else why not.
    pub(crate) async fn post(
        &self,
        target: &Target,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<StatusCode, DeliveryError> {
        let mut builder = Request::post(target.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, self.user_agent.clone());
        if let Some(auth) = &target.authorization {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let mut request = builder
            .body(Full::new(body))
            .map_err(|e| DeliveryError::BadUrl {
                url: target.shown.clone(),
                detail: e.to_string(),
            })?;
        request.headers_mut().extend(headers);
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await
        {
            Err(_elapsed) => return Err(DeliveryError::timeout(&target.shown, self.timeout)),
            Ok(Err(e)) => return Err(classify(&e, &target.shown)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let retry_after = if honours_retry_after(status) {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        discard_body(response.into_body(), self.timeout).await;
        if status.is_success() {
            Ok(status)
        } else {
            Err(DeliveryError::Status {
                url: target.shown.clone(),
                status,
                retry_after,
            })
        }
    }
}

/// Reads and throws away at most [`MAX_RESPONSE_BODY`] bytes of a body, within `within`.
async fn discard_body(mut body: Incoming, within: Duration) {
    let read = async {
        let mut seen = 0usize;
        while seen < MAX_RESPONSE_BODY {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
}

/// Turns a client error into a [`DeliveryError`], finding a blocked address among its causes.
fn classify(err: &hyper_util::client::legacy::Error, shown: &str) -> DeliveryError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(ResolveError::Blocked { reason }) = e.downcast_ref::<ResolveError>() {
            return DeliveryError::Blocked {
                url: shown.into(),
                reason: reason.clone(),
            };
        }
        cause = e.source();
    }
    let detail = chain(err, true);
    if err.is_connect() {
        DeliveryError::Connect {
            url: shown.into(),
            detail,
        }
    } else {
        DeliveryError::Request {
            url: shown.into(),
            detail,
        }
    }
}

/// A URL made ready for requests: its URI without userinfo or fragment, and Basic auth from
/// the userinfo (as Go's net/http does).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    uri: Uri,
    authorization: Option<HeaderValue>,
    shown: String,
}

impl Target {
    /// Prepares `url`, refusing other schemes and blocked literal addresses or metadata hosts.
    pub(crate) fn new(url: &Url) -> Result<Self, DeliveryError> {
        let shown = redact(url);
        let bad = |detail: String| DeliveryError::BadUrl {
            url: shown.clone(),
            detail,
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "scheme must be http or https, not {:?}",
                url.scheme()
            )));
        }
        let blocked = |reason: String| DeliveryError::Blocked {
            url: shown.clone(),
            reason,
        };
        match url.host() {
            None => return Err(bad("it has no host".into())),
            Some(url::Host::Domain(d)) => check_hostname(d).map_err(blocked)?,
            Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip)).map_err(blocked)?,
            Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip)).map_err(blocked)?,
        }
        let authorization = basic_auth(url);
        let mut bare = url.clone();
        // Neither can fail on an http(s) URL with a host, which `url` is by now.
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        bare.set_fragment(None);
        let uri = bare
            .as_str()
            .parse::<Uri>()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            uri,
            authorization,
            shown,
        })
    }
}

/// `Authorization: Basic ...` from the URL's userinfo, if it has any.
fn basic_auth(url: &Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let user = percent_decode_str(url.username()).decode_utf8_lossy();
    let pass = url
        .password()
        .map(|p| percent_decode_str(p).decode_utf8_lossy())
        .unwrap_or_default();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use pilot_core::Bus;

    use super::*;
    use crate::test_receiver::{Receiver, Reply};
    use crate::{WebhookOptions, WebhookPlugin};

    const WAIT: Duration = Duration::from_secs(5);

    impl HttpClient {
        /// A POST without extra headers.
        async fn post_plain(
            &self,
            target: &Target,
            body: Bytes,
        ) -> Result<StatusCode, DeliveryError> {
            self.post(target, HeaderMap::new(), body).await
        }
    }

    /// A lookup answering from a table (an unknown name is an error), counting its calls.
    fn table(entries: &[(&str, &[&str])], calls: Arc<AtomicUsize>) -> LookupFn {
        let map: HashMap<String, Vec<IpAddr>> = entries
            .iter()
            .map(|(h, ips)| {
                (
                    h.to_string(),
                    ips.iter().map(|ip| ip.parse().unwrap()).collect(),
                )
            })
            .collect();
        let map = Arc::new(map);
        Arc::new(move |host: String| {
            calls.fetch_add(1, Ordering::SeqCst);
            let map = map.clone();
            Box::pin(async move {
                map.get(&host)
                    .cloned()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
            })
        })
    }

    fn options() -> WebhookOptions {
        WebhookOptions {
            timeout: Duration::from_millis(500),
            backoff: Duration::from_millis(10),
            ..WebhookOptions::default()
        }
    }

    #[tokio::test]
    async fn resolver_drops_blocked_addresses_and_keeps_the_rest() {
        let calls = Arc::new(AtomicUsize::new(0));
        let lookup = table(
            &[(
                "mixed.test",
                &[
                    "169.254.169.254",
                    "127.0.0.1",
                    "::ffff:169.254.169.254",
                    "10.0.0.1",
                    "127.0.0.1",
                ],
            )],
            calls.clone(),
        );
        let addrs = resolve_checked("mixed.test", &lookup).await.unwrap();
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:0".parse().unwrap(),
            "10.0.0.1:0".parse().unwrap(),
        ];
        assert_eq!(addrs, want);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn resolver_refuses_a_host_with_only_blocked_addresses() {
        let calls = Arc::new(AtomicUsize::new(0));
        let lookup = table(
            &[
                ("rebind.test", &["169.254.169.254", "0.0.0.0"]),
                ("mapped.test", &["::ffff:169.254.169.254"]),
                ("v6.test", &["fe80::1", "::"]),
            ],
            calls,
        );
        let err = resolve_checked("rebind.test", &lookup).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ResolveError::Blocked { .. }));
        assert!(
            msg.starts_with("rebind.test resolves only to blocked addresses: "),
            "{msg}"
        );
        assert!(msg.contains("169.254.169.254 is link-local"), "{msg}");
        assert!(msg.contains("0.0.0.0 is an unspecified address"), "{msg}");
        let msg = resolve_checked("mapped.test", &lookup)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("169.254.169.254"),
            "mapped IPv6 is judged as IPv4: {msg}"
        );
        let msg = resolve_checked("v6.test", &lookup)
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains("fe80::1") && msg.contains("::"), "{msg}");
    }

    #[tokio::test]
    async fn resolver_refuses_metadata_names_before_looking_them_up() {
        let calls = Arc::new(AtomicUsize::new(0));
        let lookup = table(
            &[("metadata.google.internal", &["127.0.0.1"])],
            calls.clone(),
        );
        for host in [
            "metadata.google.internal",
            "Metadata.Google.Internal.",
            "ec2.internal",
        ] {
            let err = resolve_checked(host, &lookup).await.unwrap_err();
            assert!(err.to_string().contains("cloud metadata host"), "{err}");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "no lookup for a metadata name"
        );
    }

    #[tokio::test]
    async fn resolver_reports_lookup_failures_and_empty_answers() {
        let lookup = table(&[("empty.test", &[])], Arc::default());
        let err = resolve_checked("nowhere.test", &lookup).await.unwrap_err();
        assert!(matches!(err, ResolveError::Lookup { .. }));
        assert!(err.to_string().starts_with("cannot resolve nowhere.test: "));
        let err = resolve_checked("empty.test", &lookup).await.unwrap_err();
        assert_eq!(err.to_string(), "empty.test resolves to no address");
        // Literal addresses are judged without a lookup.
        assert!(resolve_checked("169.254.1.1", &lookup).await.is_err());
        assert!(resolve_checked("127.0.0.1", &lookup).await.is_ok());
    }

    #[tokio::test]
    async fn connect_time_check_uses_the_resolver_for_every_attempt() {
        let rx = Receiver::ok().await;
        let port = rx.addr().port();
        let calls = Arc::new(AtomicUsize::new(0));
        // 0.0.0.0 reaches local listeners on Linux: if the guard let it through, `rx` would see it.
        let lookup = table(
            &[
                ("hook.test", &["127.0.0.1"]),
                ("mixed.test", &["0.0.0.0", "127.0.0.1"]),
                ("rebind.test", &["0.0.0.0"]),
            ],
            calls.clone(),
        );
        let client = HttpClient::with_parts(&options(), lookup, tls_config(root_store()));
        let target = |host: &str| {
            Target::new(&Url::parse(&format!("http://{host}:{port}/x")).unwrap()).unwrap()
        };

        let status = client
            .post_plain(&target("hook.test"), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        let status = client
            .post_plain(&target("mixed.test"), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        let reqs = rx.wait_for(2, WAIT).await;
        assert_eq!(reqs[0].header("host"), Some(format!("hook.test:{port}")));

        let err = client
            .post_plain(&target("rebind.test"), Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("http://rebind.test:{port}/x is blocked: rebind.test resolves only to blocked addresses: 0.0.0.0")),
            "{msg}"
        );
        assert_eq!(rx.count(), 2, "the blocked host never reached the listener");
        assert!(calls.load(Ordering::SeqCst) >= 3);
    }

    #[tokio::test]
    async fn a_host_that_resolves_to_a_blocked_address_fails_once_through_the_plugin() {
        let rx = Receiver::ok().await;
        let port = rx.addr().port();
        let lookup = table(
            &[("rebind.test", &["0.0.0.0", "169.254.169.254"])],
            Arc::default(),
        );
        let opts = options();
        let client = HttpClient::with_parts(&opts, lookup, tls_config(root_store()));
        let url = crate::validate_url(&format!("http://rebind.test:{port}/x")).unwrap();
        let bus = Bus::new(0);
        let plugin = WebhookPlugin::start_with_client(bus.clone(), Some(url), opts, client);
        bus.publish("a.b", None);
        let deadline = tokio::time::Instant::now() + WAIT;
        while plugin.stats().failed == 0 {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stats = plugin.stats();
        assert_eq!((stats.failed, stats.retries, stats.delivered), (1, 0, 0));
        let err = stats.last_error.clone().unwrap();
        assert!(
            err.contains("rebind.test") && err.contains("0.0.0.0"),
            "{err}"
        );
        assert!(stats.is_balanced());
        assert_eq!(rx.count(), 0);
    }

    fn self_signed() -> (tokio_rustls::TlsAcceptor, Arc<rustls::RootCertStore>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        (
            tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            Arc::new(roots),
        )
    }

    #[tokio::test]
    async fn https_delivers_to_a_trusted_certificate_and_refuses_an_unknown_one() {
        let (acceptor, roots) = self_signed();
        let rx = Receiver::start_tls([], Reply::Status(200), acceptor).await;
        let opts = options();
        let trusting = HttpClient::with_parts(&opts, system_lookup(), tls_config(roots));
        for host in ["localhost", "127.0.0.1"] {
            let url = Url::parse(&format!("https://{host}:{}/secure", rx.addr().port())).unwrap();
            let status = trusting
                .post_plain(
                    &Target::new(&url).unwrap(),
                    Bytes::from_static(b"{\"a\":1}"),
                )
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK, "{host}");
        }
        let reqs = rx.wait_for(2, WAIT).await;
        assert_eq!(&reqs[0].body[..], b"{\"a\":1}");
        assert_eq!(reqs[0].target, "/secure");

        // The system roots do not trust a self-signed certificate.
        let default = HttpClient::new(&opts);
        let err = default
            .post_plain(
                &Target::new(&rx.url("/secure")).unwrap(),
                Bytes::from_static(b"{}"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, DeliveryError::Connect { .. }), "{err}");
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_plugin_delivers_over_https() {
        let (acceptor, roots) = self_signed();
        let rx = Receiver::start_tls([], Reply::Status(204), acceptor).await;
        let opts = options();
        let client = HttpClient::with_parts(&opts, system_lookup(), tls_config(roots));
        let url =
            crate::validate_url(&format!("https://localhost:{}/h", rx.addr().port())).unwrap();
        let bus = Bus::new(0);
        let plugin = WebhookPlugin::start_with_client(bus.clone(), Some(url), opts, client);
        let ev = bus.publish("a.b", None);
        let reqs = rx.wait_for(1, WAIT).await;
        assert_eq!(reqs[0].body, ev.payload());
        plugin.shutdown().await;
        let stats = plugin.stats();
        assert_eq!((stats.delivered, stats.failed), (1, 0));
        assert!(stats.is_balanced());
    }

    #[test]
    fn targets_strip_userinfo_and_fragment_and_refuse_bad_urls() {
        let t = Target::new(&Url::parse("http://u:p@h.test:81/a/b?c=1#frag").unwrap()).unwrap();
        assert_eq!(t.uri.to_string(), "http://h.test:81/a/b?c=1");
        assert_eq!(t.shown, "http://u:***@h.test:81/a/b?c=1#frag");
        assert!(t.authorization.is_some());
        assert!(t.authorization.as_ref().unwrap().is_sensitive());
        let t = Target::new(&Url::parse("https://h.test/").unwrap()).unwrap();
        assert!(t.authorization.is_none());
        let e = Target::new(&Url::parse("ftp://h.test/").unwrap()).unwrap_err();
        assert!(matches!(e, DeliveryError::BadUrl { .. }), "{e}");
        let e = Target::new(&Url::parse("http://[::ffff:a9fe:a9fe]/").unwrap()).unwrap_err();
        assert!(matches!(e, DeliveryError::Blocked { .. }), "{e}");
    }
}
