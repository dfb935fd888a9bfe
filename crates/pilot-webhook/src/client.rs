//! The HTTP(S) client: HTTP/1.1 with keep-alive ([`crate::h1`]: each exchange driven in the
//! sending task itself), over rustls, with a resolver that applies the SSRF policy at connect
//! time.
//!
//! Connections are kept per [`Target`] (one per configured URL) in a small pool: a request
//! takes the most recently used idle connection (or opens one), and gives it back once its
//! response has been read to the end; so a webhook with `concurrency` N keeps up to N
//! connections, each used by one request at a time, and one in flight at a time reuses one.
//! Idle connections close after [`IDLE_TIMEOUT`]. A kept-alive connection that the server has
//! closed (seen when it is taken), or that fails before the request is written, is dropped and
//! the request goes out on another one. There is no connection task: the request is written,
//! and its response read, by the task that awaits the answer (no channel, no wakeup of
//! another task per request).
//!
//! hyper connects to literal IP hosts without asking the resolver, so [`Target::checked`] checks
//! those itself; hostnames go through [`GuardedResolver`], which refuses cloud-metadata names and
//! drops every resolved address that the client's [`UrlPolicy`] refuses (DNS rebinding). The
//! policy is the daemon's (`WebhookOptions::deny_private_networks`), and a webhook with
//! `deny_private` gets a client whose policy refuses private networks too. A host left with no
//! address is a [`DeliveryError::Blocked`], which is never retried.
//!
//! Requests may go through an HTTP proxy ([`ProxyChoice`]): the daemon's environment
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, read as curl reads them) or a proxy the
//! webhook names (`--proxy URL`, or `--proxy none` for none). Through a proxy every connection
//! is a CONNECT tunnel (hyper-util's `Tunnel`), so TLS runs end to end with the receiver. The
//! receiver's host is still judged by the URL policy, here, before the tunnel is asked for (the
//! proxy resolves it); the proxy's own address is the operator's choice and is not checked.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use pilot_core::webhook_url::{Url, UrlPolicy};
use tokio::time::Instant;
use tower_service::Service as _;
use tracing::{debug, warn};

use crate::error::{chain, redact, DeliveryError};
use crate::h1::{self, Conn, H1Error, Stream};
use crate::options::WebhookOptions;
use crate::retry::{honours_retry_after, parse_retry_after};
use crate::tls::{insecure_tls_config, system_tls_config};
#[cfg(test)]
use crate::tls::{root_store, tls_config};

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
    policy: UrlPolicy,
) -> Result<Vec<SocketAddr>, ResolveError> {
    policy
        .check_hostname(host)
        .map_err(|reason| ResolveError::Blocked { reason })?;
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
        match policy.check_ip(ip) {
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
    policy: UrlPolicy,
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
        let policy = self.policy;
        Box::pin(async move {
            resolve_checked(name.as_str(), &lookup, policy)
                .await
                .map(Vec::into_iter)
        })
    }
}

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// Whether and through which proxy a client connects.
#[derive(Clone, Debug)]
pub(crate) enum ProxyChoice {
    /// As the daemon's environment says (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
    /// `NO_PROXY`): per target.
    Env(Arc<hyper_util::client::proxy::matcher::Matcher>),
    /// Always this proxy, with this `Proxy-Authorization` (from the proxy URL's userinfo).
    Fixed(Uri, Option<HeaderValue>),
    /// Never a proxy.
    Direct,
}

impl ProxyChoice {
    /// The daemon's environment's proxies.
    pub(crate) fn from_env() -> Self {
        ProxyChoice::Env(Arc::new(
            hyper_util::client::proxy::matcher::Matcher::from_env(),
        ))
    }

    /// A webhook's `--proxy` value: `none`, or an `http://[user:password@]host:port` URL
    /// (checked by `WebhookSettings::validate`).
    pub(crate) fn from_setting(value: &str, credentials: Option<&str>) -> Result<Self, String> {
        if value.trim().eq_ignore_ascii_case("none") {
            return Ok(ProxyChoice::Direct);
        }
        let url = Url::parse(value.trim()).map_err(|e| format!("proxy URL: {e}"))?;
        let auth = match credentials {
            Some(user_password) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
                let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|_| "the proxy credentials hold characters a header cannot carry")?;
                value.set_sensitive(true);
                Some(value)
            }
            None => basic_auth(&url),
        };
        let mut bare = url.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let uri = bare
            .as_str()
            .parse::<Uri>()
            .map_err(|e| format!("proxy URL: {e}"))?;
        Ok(ProxyChoice::Fixed(uri, auth))
    }

    /// The proxy (and its authorization) for `target`, if any.
    fn for_target(&self, target: &Uri) -> Option<(Uri, Option<HeaderValue>)> {
        match self {
            ProxyChoice::Env(m) => m
                .intercept(target)
                .map(|i| (i.uri().clone(), i.basic_auth().cloned())),
            ProxyChoice::Fixed(uri, auth) => Some((uri.clone(), auth.clone())),
            ProxyChoice::Direct => None,
        }
    }
}

/// How long an unused kept-alive connection stays open.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The normal TLS configuration: the system's CA roots (loaded on the first handshake).
fn tls_config_default() -> rustls::ClientConfig {
    system_tls_config()
}

/// The HTTP client: how to connect (resolver, SSRF guard, TLS), the timeout and the
/// User-Agent. Cheap to clone. The connections themselves are kept by each [`Target`].
#[derive(Clone)]
pub(crate) struct HttpClient {
    connector: Connector,
    /// The TLS configuration, for connections through a proxy.
    tls: rustls::ClientConfig,
    proxy: ProxyChoice,
    lookup: LookupFn,
    user_agent: HeaderValue,
    timeout: Duration,
    policy: UrlPolicy,
}

impl HttpClient {
    /// A client with the system resolver and the system's CA roots.
    pub(crate) fn new(options: &WebhookOptions) -> Self {
        Self::with_parts(options, system_lookup(), tls_config_default())
            .with_proxy(ProxyChoice::from_env())
    }

    /// The same client through another proxy (or none).
    pub(crate) fn with_proxy(&self, proxy: ProxyChoice) -> Self {
        Self {
            proxy,
            ..self.clone()
        }
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
        let policy = UrlPolicy {
            deny_private: options.deny_private_networks,
        };
        Self::build(lookup, tls, user_agent, options.timeout, policy)
    }

    fn build(
        lookup: LookupFn,
        tls: rustls::ClientConfig,
        user_agent: HeaderValue,
        timeout: Duration,
        policy: UrlPolicy,
    ) -> Self {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            lookup: lookup.clone(),
            policy,
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self {
            connector,
            tls,
            proxy: ProxyChoice::Direct,
            lookup,
            user_agent,
            timeout,
            policy,
        }
    }

    /// The URL policy this client's resolver applies.
    pub(crate) fn policy(&self) -> UrlPolicy {
        self.policy
    }

    /// The same client with the normal TLS configuration and another URL policy.
    pub(crate) fn with_policy(&self, policy: UrlPolicy) -> Self {
        Self::build(
            self.lookup.clone(),
            tls_config_default(),
            self.user_agent.clone(),
            self.timeout,
            policy,
        )
        .with_proxy(self.proxy.clone())
    }

    /// The same client (resolver, SSRF guard, timeout, User-Agent) with another TLS
    /// configuration (a client identity for mutual TLS).
    pub(crate) fn with_tls(&self, tls: rustls::ClientConfig) -> Self {
        Self::build(
            self.lookup.clone(),
            tls,
            self.user_agent.clone(),
            self.timeout,
            self.policy,
        )
        .with_proxy(self.proxy.clone())
    }

    /// The same client (resolver, SSRF guard, timeout, User-Agent) that accepts any TLS
    /// certificate.
    pub(crate) fn insecure(&self) -> Self {
        Self::build(
            self.lookup.clone(),
            insecure_tls_config(),
            self.user_agent.clone(),
            self.timeout,
            self.policy,
        )
        .with_proxy(self.proxy.clone())
    }

    /// The headers of every request to `target` (none when the URL cannot be used): `Host`,
    /// `Content-Type`, `User-Agent`, Basic auth from the URL's userinfo, then `extra` (the
    /// webhook's own headers and auth, replacing any of the same name). Built once per
    /// configuration: each attempt clones it and adds its signatures.
    pub(crate) fn request_headers(&self, target: Option<&Target>, extra: &HeaderMap) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(extra.len() + 8);
        if let Some(host) = target.and_then(|t| t.host.clone()) {
            headers.insert(HOST, host);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, self.user_agent.clone());
        if let Some(auth) = target.and_then(|t| t.authorization.clone()) {
            headers.insert(AUTHORIZATION, auth);
        }
        headers.extend(extra.clone());
        headers
    }

    /// POSTs `body` to `target` with `headers` (from [`HttpClient::request_headers`], plus
    /// this attempt's signatures), on a kept-alive connection when there is one: `Ok` with the
    /// status on a 2xx, else why not. The exchange runs in the caller's task (see
    /// [`crate::h1`]); the connection goes back to the target's pool once the response (and
    /// its body) is read in full.
    pub(crate) async fn post(
        &self,
        target: &Target,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<StatusCode, DeliveryError> {
        // One deadline for the whole exchange: connecting, sending, the response head and
        // (up to MAX_RESPONSE_BODY of) its body; a server that trickles any of them is cut off.
        let deadline = Instant::now()
            .checked_add(self.timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        let (head, mut conn) =
            match tokio::time::timeout_at(deadline, self.exchange(target, &headers, &body)).await {
                Err(_elapsed) => return Err(DeliveryError::timeout(&target.shown, self.timeout)),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(done)) => done,
            };
        let status = head.status;
        let retry_after = if honours_retry_after(status) {
            head.retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        let kept = tokio::time::timeout_at(deadline, conn.discard_body(MAX_RESPONSE_BODY as u64))
            .await
            .unwrap_or(false);
        if kept {
            target.pool.put(conn);
        }
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

    /// Sends the request on an idle connection to `target` (the most recently used first), or
    /// on a new one: the response's head and the connection. A kept-alive connection that the
    /// server closed, or that fails before the request is written, is dropped and the request
    /// goes on another one (as hyper-util's pooled client did); on a new connection any
    /// failure is the answer.
    async fn exchange(
        &self,
        target: &Target,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(h1::Head, Conn), DeliveryError> {
        loop {
            let (mut conn, reused) = match target.pool.take() {
                Some(conn) => (conn, true),
                // Boxed: connecting is rare, and its future (TLS stream, handshake) would
                // otherwise more than double the size of every request's future.
                None => (Box::pin(self.connect(target)).await?, false),
            };
            let request_failed = |e: &H1Error| DeliveryError::Request {
                url: target.shown.clone(),
                detail: chain(e, false),
            };
            match conn.send(&target.origin, headers, body).await {
                Ok(()) => {}
                Err(_) if reused => continue,
                Err(e) => return Err(request_failed(&e)),
            }
            return match conn.head().await {
                Ok(head) => Ok((head, conn)),
                Err(e) => Err(request_failed(&e)),
            };
        }
    }

    /// A new connection to `target` (resolved through the SSRF guard, TLS for https).
    async fn connect(&self, target: &Target) -> Result<Conn, DeliveryError> {
        let io = match self.proxy.for_target(&target.uri) {
            None => {
                let mut connector = self.connector.clone();
                let connecting = async {
                    std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
                    connector.call(target.uri.clone()).await
                };
                connecting
                    .await
                    .map_err(|e| connect_error(&*e, &target.shown))?
            }
            Some((proxy, auth)) => self.tunnel(target, proxy, auth).await?,
        };
        Ok(Conn::new(Stream::from(io)))
    }
}

impl HttpClient {
    /// A connection to `target` through a CONNECT tunnel of `proxy` (TLS inside it for
    /// https). The receiver's host is judged by the URL policy first: the proxy resolves it.
    async fn tunnel(
        &self,
        target: &Target,
        proxy: Uri,
        auth: Option<HeaderValue>,
    ) -> Result<MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>, DeliveryError> {
        let host = target
            .uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if let Err(e) = resolve_checked(host, &self.lookup, self.policy).await {
            return Err(connect_error(&e, &target.shown));
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let mut tunnel = hyper_util::client::legacy::connect::proxy::Tunnel::new(proxy, http);
        if let Some(auth) = auth {
            tunnel = tunnel.with_auth(auth);
        }
        let mut connector = HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tunnel);
        // The tunnel asks for host:port: the port spelled out (443 is its default).
        let dst = with_port(&target.uri);
        let connecting = async {
            std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
            connector.call(dst).await
        };
        connecting.await.map_err(|e| DeliveryError::Connect {
            url: target.shown.clone(),
            detail: format!("through the proxy: {}", chain(&*e, false)),
        })
    }
}

/// `uri` with its port spelled out (the scheme's default when it has none).
fn with_port(uri: &Uri) -> Uri {
    if uri.port().is_some() {
        return uri.clone();
    }
    let port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let host = uri.host().unwrap_or_default();
    let mut parts = uri.clone().into_parts();
    parts.authority = format!("{host}:{port}").parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// Turns a connect error into a [`DeliveryError`], finding a blocked address among its causes.
fn connect_error(err: &(dyn std::error::Error + 'static), shown: &str) -> DeliveryError {
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
    DeliveryError::Connect {
        url: shown.into(),
        detail: chain(err, false),
    }
}

/// The kept-alive connections of one [`Target`], the most recently used last. Connections go
/// back here after a complete exchange and leave when taken; so there are never more than were
/// in use at once (one per request in flight, up to `concurrency`). A reaper task, running
/// while there are idle connections, closes those unused for [`IDLE_TIMEOUT`].
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Idle>>,
    /// Whether a reaper is running.
    reaping: AtomicBool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.lock().len())
            .finish()
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        // Pushes, pops and retains only: a poisoned lock still guards a valid list.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used connection still open (a connection is dropped, so closed,
    /// once it has been idle for [`IDLE_TIMEOUT`], or when the server closed it).
    fn take(&self) -> Option<Conn> {
        let mut idle = self.lock();
        let now = Instant::now();
        while let Some(mut i) = idle.pop() {
            if now.duration_since(i.since) < IDLE_TIMEOUT && !i.conn.is_closed() {
                return Some(i.conn);
            }
        }
        None
    }

    /// Keeps a connection for the next request.
    fn put(self: &Arc<Self>, conn: Conn) {
        self.lock().push(Idle {
            conn,
            since: Instant::now(),
        });
        if !self.reaping.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }

    /// How many connections are idle.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.lock().len()
    }
}

/// Closes the connections of `pool` left unused for [`IDLE_TIMEOUT`]; ends with the pool, or
/// when no connection is idle.
async fn reap(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 4).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.lock();
        let now = Instant::now();
        idle.retain_mut(|i| now.duration_since(i.since) < IDLE_TIMEOUT && !i.conn.is_closed());
        if idle.is_empty() {
            pool.reaping.store(false, Ordering::Release);
            return;
        }
    }
}

/// A URL made ready for requests: its URI without userinfo or fragment, and Basic auth from
/// the userinfo (as Go's net/http does).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Where to connect (absolute).
    uri: Uri,
    /// What the request line carries: the path and query (origin-form).
    origin: Uri,
    /// The kept-alive connections to this URL (shared by the clones of this target).
    pool: Arc<Pool>,
    /// The `Host` header, as hyper would make it for `uri` (host, and the port unless it is
    /// the scheme's default), made once instead of per request.
    host: Option<HeaderValue>,
    authorization: Option<HeaderValue>,
    shown: String,
}

impl Target {
    /// [`Target::checked`] with the default policy.
    #[cfg(test)]
    pub(crate) fn new(url: &Url) -> Result<Self, DeliveryError> {
        Self::checked(url, UrlPolicy::DEFAULT)
    }

    /// Prepares `url`, refusing other schemes and the literal addresses or hostnames `policy`
    /// refuses.
    pub(crate) fn checked(url: &Url, policy: UrlPolicy) -> Result<Self, DeliveryError> {
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
            Some(url::Host::Domain(d)) => policy.check_hostname(d).map_err(blocked)?,
            Some(url::Host::Ipv4(ip)) => policy.check_ip(IpAddr::V4(ip)).map_err(blocked)?,
            Some(url::Host::Ipv6(ip)) => policy.check_ip(IpAddr::V6(ip)).map_err(blocked)?,
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
        let origin = match uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
        Ok(Self {
            host: host_header(&uri),
            origin,
            pool: Arc::default(),
            uri,
            authorization,
            shown,
        })
    }
}

/// The `Host` header hyper-util's client would add to a request for `uri`: the host, with
/// `:port` unless the port is the scheme's default (80 for http, 443 for https).
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let secure = uri.scheme_str() == Some("https");
    let port = uri
        .port_u16()
        .filter(|&p| !matches!((p, secure), (443, true) | (80, false)));
    let value = match port {
        Some(port) => HeaderValue::from_str(&format!("{host}:{port}")),
        None => HeaderValue::from_str(host),
    };
    value.ok()
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
            let headers = self.request_headers(Some(target), &HeaderMap::new());
            self.post(target, headers, body).await
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
        let addrs = resolve_checked("mixed.test", &lookup, UrlPolicy::DEFAULT)
            .await
            .unwrap();
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
        let err = resolve_checked("rebind.test", &lookup, UrlPolicy::DEFAULT)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ResolveError::Blocked { .. }));
        assert!(
            msg.starts_with("rebind.test resolves only to blocked addresses: "),
            "{msg}"
        );
        assert!(msg.contains("169.254.169.254 is link-local"), "{msg}");
        assert!(msg.contains("0.0.0.0 is an unspecified address"), "{msg}");
        let msg = resolve_checked("mapped.test", &lookup, UrlPolicy::DEFAULT)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("169.254.169.254"),
            "mapped IPv6 is judged as IPv4: {msg}"
        );
        let msg = resolve_checked("v6.test", &lookup, UrlPolicy::DEFAULT)
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
            let err = resolve_checked(host, &lookup, UrlPolicy::DEFAULT)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("cloud metadata host"), "{err}");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "no lookup for a metadata name"
        );
    }

    #[tokio::test]
    async fn deny_private_refuses_private_addresses_at_connect_time() {
        let lookup = table(
            &[
                ("lan.test", &["10.0.0.7", "192.168.1.2"]),
                ("mixed.test", &["127.0.0.1", "93.184.216.34"]),
                ("nat64.test", &["64:ff9b::a9fe:a9fe"]),
            ],
            Arc::default(),
        );
        let deny = UrlPolicy::DENY_PRIVATE;
        assert!(resolve_checked("lan.test", &lookup, UrlPolicy::DEFAULT)
            .await
            .is_ok());
        let err = resolve_checked("lan.test", &lookup, deny)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("deny_private"), "{err}");
        let kept = resolve_checked("mixed.test", &lookup, deny).await.unwrap();
        assert_eq!(kept, ["93.184.216.34:0".parse::<SocketAddr>().unwrap()]);
        let err = resolve_checked("localhost", &lookup, deny)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        // An IPv6 spelling of the metadata address is refused whatever the policy.
        let err = resolve_checked("nat64.test", &lookup, UrlPolicy::DEFAULT)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("169.254.169.254"), "{err}");
        // Literal addresses, checked when the target is prepared.
        let url = Url::parse("http://10.1.2.3:8080/x").unwrap();
        assert!(Target::checked(&url, UrlPolicy::DEFAULT).is_ok());
        let err = Target::checked(&url, deny).unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("10.1.2.3"), "{err}");
        // The client's policy: the daemon-wide option, kept by its variants.
        let wide = WebhookOptions {
            deny_private_networks: true,
            ..options()
        };
        let client = HttpClient::with_parts(&wide, lookup.clone(), tls_config(root_store()));
        assert_eq!(client.policy(), deny);
        assert_eq!(client.insecure().policy(), deny);
        let client = HttpClient::with_parts(&options(), lookup, tls_config(root_store()));
        assert_eq!(client.policy(), UrlPolicy::DEFAULT);
        assert_eq!(client.with_policy(deny).policy(), deny);
    }

    #[tokio::test]
    async fn resolver_reports_lookup_failures_and_empty_answers() {
        let lookup = table(&[("empty.test", &[])], Arc::default());
        let err = resolve_checked("nowhere.test", &lookup, UrlPolicy::DEFAULT)
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveError::Lookup { .. }));
        assert!(err.to_string().starts_with("cannot resolve nowhere.test: "));
        let err = resolve_checked("empty.test", &lookup, UrlPolicy::DEFAULT)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "empty.test resolves to no address");
        // Literal addresses are judged without a lookup.
        assert!(resolve_checked("169.254.1.1", &lookup, UrlPolicy::DEFAULT)
            .await
            .is_err());
        assert!(resolve_checked("127.0.0.1", &lookup, UrlPolicy::DEFAULT)
            .await
            .is_ok());
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

    #[tokio::test]
    async fn connections_are_kept_alive_per_target_unless_a_body_is_left_unread() {
        let rx = Receiver::start(
            [Reply::Status(204), Reply::Status(200), Reply::Big(4 << 20)],
            Reply::Big(100),
        )
        .await;
        let client = HttpClient::new(&options());
        let target = Target::new(&rx.url("/x")).unwrap();
        for _ in 0..2 {
            let status = client.post_plain(&target, Bytes::from_static(b"{}")).await;
            assert!(status.is_ok());
            assert_eq!(target.pool.idle(), 1);
        }
        assert_eq!(rx.connections(), 1, "204 and 200 reuse one connection");
        // A body too large to read in full: the connection is closed, not kept.
        client
            .post_plain(&target, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(target.pool.idle(), 0);
        for _ in 0..2 {
            client
                .post_plain(&target, Bytes::from_static(b"{}"))
                .await
                .unwrap();
        }
        assert_eq!((rx.connections(), target.pool.idle()), (2, 1));
        let reqs = rx.wait_for(5, WAIT).await;
        assert!(reqs
            .iter()
            .all(|r| r.target == "/x" && r.header("host").is_some()));
        // Another target (even for the same URL) has connections of its own.
        let other = Target::new(&rx.url("/x")).unwrap();
        client
            .post_plain(&other, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(rx.connections(), 3);
        // Clones share them.
        let same = target.clone();
        client
            .post_plain(&same, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(rx.connections(), 3);
    }

    /// A server that answers every request `200` with an empty body, then closes the connection
    /// without saying so (as a keep-alive timeout on the server does); how many it accepted.
    async fn closing_server() -> (SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_used_again() {
        let (addr, accepted) = closing_server().await;
        let client = HttpClient::new(&options());
        let target = Target::new(&Url::parse(&format!("http://{addr}/x")).unwrap()).unwrap();
        for i in 1..=3 {
            let status = client
                .post_plain(&target, Bytes::from_static(b"{}"))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(accepted.load(Ordering::SeqCst), i);
            // Give the close time to arrive (seen when the connection is taken next).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[test]
    fn the_host_header_is_made_like_hypers() {
        let host = |url: &str| {
            let t = Target::new(&Url::parse(url).unwrap()).unwrap();
            t.host.unwrap().to_str().unwrap().to_string()
        };
        assert_eq!(host("http://h.test/x"), "h.test");
        assert_eq!(host("http://h.test:80/x"), "h.test");
        assert_eq!(host("http://h.test:443/x"), "h.test:443");
        assert_eq!(host("https://h.test:443/x"), "h.test");
        assert_eq!(host("https://h.test:80/x"), "h.test:80");
        assert_eq!(host("http://u:p@h.test:8080/x?y#z"), "h.test:8080");
        assert_eq!(host("http://[2001:db8::1]:8080/"), "[2001:db8::1]:8080");
        assert_eq!(host("https://[2001:db8::1]/"), "[2001:db8::1]");
        let client = HttpClient::new(&options());
        let t = Target::new(&Url::parse("http://u:p@h.test:81/").unwrap()).unwrap();
        let mut extra = HeaderMap::new();
        extra.insert(USER_AGENT, HeaderValue::from_static("mine"));
        extra.append("x-a", HeaderValue::from_static("1"));
        extra.append("x-a", HeaderValue::from_static("2"));
        let h = client.request_headers(Some(&t), &extra);
        assert_eq!(h[HOST], "h.test:81");
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(
            h[USER_AGENT], "mine",
            "extra headers replace the standard ones"
        );
        assert_eq!(h.get_all(USER_AGENT).iter().count(), 1);
        assert_eq!(h.get_all("x-a").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert!(h[AUTHORIZATION].is_sensitive());
        let none = client.request_headers(None, &HeaderMap::new());
        assert_eq!((none.len(), none.contains_key(HOST)), (2, false));
    }

    #[test]
    fn targets_strip_userinfo_and_fragment_and_refuse_bad_urls() {
        let t = Target::new(&Url::parse("http://u:p@h.test:81/a/b?c=1#frag").unwrap()).unwrap();
        assert_eq!(t.uri.to_string(), "http://h.test:81/a/b?c=1");
        assert_eq!(t.origin.to_string(), "/a/b?c=1");
        let root = Target::new(&Url::parse("https://h.test").unwrap()).unwrap();
        assert_eq!(root.origin.to_string(), "/");
        assert_eq!(t.shown, "http://u:***@h.test:81/a/b?c=***#frag");
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
