//! One webhook's configuration, resolved and checked before it takes effect ([`Config`]): the
//! URL made ready for requests, the extra headers, the auth header read from its file, the
//! filter, batching, concurrency, the body template (loaded and checked against every sample
//! event here), and the HTTP client (the normal one, or the `insecure_tls` one).
//!
//! Everything that can be wrong is found here, so a configure that fails changes nothing. Auth
//! files are read once, here; their content and every extra header value are marked sensitive
//! and never logged or shown (errors name the file, never what is in it).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use pilot_core::webhook_settings::{is_reserved_header, parse_header, validate_target};
use pilot_core::webhook_url::{Url, UrlPolicy};
use pilot_core::WebhookSettings;
use tracing::warn;

use pilot_template::Template;

use crate::batch::Delivery;
use crate::client::{HttpClient, ProxyChoice, Target};
use crate::error::{redact, DeliveryError, WebhookError};
use crate::files::content_error;
use crate::filter::Filter;
use crate::nats::NatsTarget;
use crate::rate::RateLimiter;
use crate::tls::{with_client_identity, ClientIdentity};

/// How long a batch waits to fill up when `batch_wait` is not set.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_millis(100);

/// Batching: up to `max` events per request, waiting at most `wait` after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batching {
    pub(crate) max: usize,
    pub(crate) wait: Duration,
}

/// The HTTP clients: the normal one, and those accepting any certificate or refusing private
/// networks (`deny_private`), built when first needed.
#[derive(Clone)]
pub(crate) struct Clients {
    secure: HttpClient,
    /// Insecure; deny_private; insecure and deny_private.
    variants: Arc<[OnceLock<HttpClient>; 3]>,
}

impl Clients {
    pub(crate) fn new(secure: HttpClient) -> Self {
        Self {
            secure,
            variants: Default::default(),
        }
    }

    fn get(&self, insecure: bool, deny_private: bool) -> HttpClient {
        // A daemon-wide deny_private_networks is already in the normal client's policy.
        let deny = deny_private && !self.secure.policy().deny_private;
        let denying = || self.secure.with_policy(UrlPolicy::DENY_PRIVATE);
        match (insecure, deny) {
            (false, false) => &self.secure,
            (true, false) => self.variants[0].get_or_init(|| self.secure.insecure()),
            (false, true) => self.variants[1].get_or_init(denying),
            (true, true) => self.variants[2].get_or_init(|| denying().insecure()),
        }
        .clone()
    }
}

/// A webhook's configuration, ready for requests.
pub(crate) struct Config {
    pub(crate) url: Url,
    pub(crate) settings: WebhookSettings,
    /// The URL as logs show it (shared with the delivery log's entries).
    pub(crate) shown: Arc<str>,
    /// The prepared URL, or why it cannot be used (then every attempt fails at once).
    pub(crate) target: Result<Target, DeliveryError>,
    /// Extra headers and the auth header, values marked sensitive.
    pub(crate) headers: HeaderMap,
    /// Every request's headers before its signatures: the standard ones and `headers`
    /// ([`HttpClient::request_headers`]), built once.
    pub(crate) request_headers: HeaderMap,
    pub(crate) filter: Filter,
    pub(crate) batch: Option<Batching>,
    /// Deliveries (events, or batches) in flight at once in memory mode: `settings.concurrency`,
    /// at least 1. Durable mode ignores it (one at a time, in order).
    pub(crate) concurrency: usize,
    pub(crate) client: HttpClient,
    /// `settings.rate_limit`: spaces the sends of every delivery of this configuration.
    pub(crate) rate: Option<Arc<RateLimiter>>,
    /// The body template (`settings.template`), loaded and checked.
    pub(crate) template: Option<Arc<Template>>,
    /// A NATS endpoint's target (`nats://`, `tls://` URLs); `None` for HTTP(S).
    pub(crate) nats: Option<NatsTarget>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.shown)
            .field("settings", &self.settings.redacted())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Checks `settings`, reads the auth file, prepares headers and picks the client.
    pub(crate) fn build(
        url: Url,
        settings: WebhookSettings,
        clients: &Clients,
    ) -> Result<Config, WebhookError> {
        let shown = redact(&url);
        validate_target(&url, &settings).map_err(|source| WebhookError::Settings {
            url: shown.clone(),
            source,
        })?;
        let filter = Filter::new(&settings).map_err(|e| WebhookError::Settings {
            url: shown.clone(),
            source: e.into(),
        })?;
        let client = clients.get(settings.insecure_tls, settings.deny_private);
        let client = match (&settings.client_cert, &settings.client_key) {
            (Some(cert), Some(key)) => {
                let identity_error = |reason: String| WebhookError::ClientIdentity {
                    url: shown.clone(),
                    reason,
                };
                let files = pilot_core::client_identity::read(cert, key)
                    .map_err(|e| identity_error(e.to_string()))?;
                let identity = ClientIdentity::from_pem(&files.cert_pem, &files.key_pem)
                    .map_err(identity_error)?;
                let tls = with_client_identity(settings.insecure_tls, identity)
                    .map_err(identity_error)?;
                client.with_tls(tls)
            }
            _ => client,
        };
        let client = match &settings.proxy {
            Some(proxy) => {
                let credentials = match &settings.proxy_auth_file {
                    Some(path) => {
                        let text = crate::files::read_credential(path, "a proxy auth file")?;
                        if !text.contains(':') {
                            return Err(content_error(path, "must hold user:password"));
                        }
                        Some(text)
                    }
                    None => None,
                };
                let choice =
                    ProxyChoice::from_setting(proxy, credentials.as_deref()).map_err(|reason| {
                        WebhookError::Settings {
                            url: shown.clone(),
                            source: pilot_core::webhook_settings::SettingsError::Proxy {
                                given: pilot_core::webhook_url::redact_str(proxy),
                                reason,
                            },
                        }
                    })?;
                client.with_proxy(choice)
            }
            None => client,
        };
        let nats = if pilot_core::webhook_url::is_broker(&url) {
            let shown: Arc<str> = shown.as_str().into();
            Some(NatsTarget::new(&url, &settings, shown, client.policy())?)
        } else {
            None
        };
        let target = Target::checked(&url, client.policy());
        let url_has_auth = !url.username().is_empty() || url.password().is_some();

        let mut headers = HeaderMap::new();
        for h in &settings.headers {
            let (name, value) = parse_header(h).map_err(|source| WebhookError::Settings {
                url: shown.clone(),
                source,
            })?;
            let bad = |reason: &str| WebhookError::Header {
                url: shown.clone(),
                name: name.clone(),
                reason: reason.into(),
            };
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("is not a valid header name"))?;
            if is_reserved_header(header_name.as_str()) {
                return Err(bad("is set by pilot itself and cannot be replaced"));
            }
            if header_name == AUTHORIZATION && url_has_auth {
                return Err(bad(
                    "conflicts with the user:password in the URL (keep one of them)",
                ));
            }
            let bad_value = || bad("has a value a header cannot carry (use visible ASCII)");
            if !value.is_ascii() {
                return Err(bad_value());
            }
            let mut header_value = HeaderValue::from_str(&value).map_err(|_| bad_value())?;
            header_value.set_sensitive(true);
            headers.append(header_name, header_value);
        }

        if let Some(auth) = auth_header(&settings)? {
            if url_has_auth || headers.contains_key(AUTHORIZATION) {
                return Err(WebhookError::Header {
                    url: shown,
                    name: "Authorization".into(),
                    reason: "is given twice: by an auth file and by the URL's user:password or \
                             a --header (keep one of them)"
                        .into(),
                });
            }
            headers.insert(AUTHORIZATION, auth);
        }

        let batch = settings.batch_max.map(|max| Batching {
            max: max.max(1),
            wait: settings.batch_wait.unwrap_or(DEFAULT_BATCH_WAIT),
        });
        let concurrency = settings.concurrency.unwrap_or(1).max(1);
        if settings.insecure_tls {
            warn!(
                url = %shown,
                "insecure_tls is on: the webhook's TLS certificate is NOT verified (anyone on the \
                 path can read and change deliveries); use it for testing only"
            );
        }
        let request_headers = client.request_headers(target.as_ref().ok(), &headers);
        let rate = settings
            .rate_limit
            .map(|limit| Arc::new(RateLimiter::new(limit, settings.rate_burst.unwrap_or(1))));
        let template = load_template(&settings, &shown)?;
        Ok(Config {
            rate,
            template,
            client,
            request_headers,
            url,
            settings,
            shown: shown.into(),
            target,
            headers,
            filter,
            batch,
            concurrency,
            nats,
        })
    }

    /// Whether `other` would deliver exactly like this one (same URL, settings and header
    /// values, auth file content included).
    pub(crate) fn same_as(&self, other: &Config) -> bool {
        self.url == other.url
            && self.settings == other.settings
            && self.headers == other.headers
            && self.template == other.template
    }

    /// `delivery` with its body rendered by the template, if there is one.
    pub(crate) fn render(&self, delivery: Delivery) -> Delivery {
        delivery.rendered(self.template.as_deref(), &self.settings.template_vars)
    }
}

/// The template `settings` name, loaded (a file is read now) and rendered against every
/// sample event with the settings' variables: one that fails is refused.
fn load_template(
    settings: &WebhookSettings,
    shown: &str,
) -> Result<Option<Arc<Template>>, WebhookError> {
    let Some(spec) = &settings.template else {
        return Ok(None);
    };
    let refused = |e: pilot_template::TemplateError| WebhookError::Template {
        url: shown.to_string(),
        reason: e.to_string(),
    };
    let template = Template::load(spec).map_err(refused)?;
    template.check(&settings.template_vars).map_err(refused)?;
    Ok(Some(Arc::new(template)))
}

/// The `Authorization` header from the bearer token file or the basic auth file, if either.
fn auth_header(settings: &WebhookSettings) -> Result<Option<HeaderValue>, WebhookError> {
    let value = if let Some(path) = &settings.bearer_token_file {
        let token = crate::files::read_credential(path, "a webhook auth file")?;
        if token.chars().any(char::is_whitespace) {
            return Err(content_error(path, "must hold one token without spaces"));
        }
        format!("Bearer {token}")
    } else if let Some(path) = &settings.basic_auth_file {
        let credentials = crate::files::read_credential(path, "a webhook auth file")?;
        if !credentials.contains(':') {
            return Err(content_error(path, "must hold user:password"));
        }
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    } else {
        return Ok(None);
    };
    let path = settings
        .bearer_token_file
        .as_deref()
        .or(settings.basic_auth_file.as_deref())
        .unwrap_or(Path::new(""));
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| content_error(path, "holds characters a header cannot carry"))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::WebhookOptions;

    fn clients() -> Clients {
        Clients::new(HttpClient::new(&WebhookOptions::default()))
    }

    fn url() -> Url {
        Url::parse("http://127.0.0.1:9/x").unwrap()
    }

    fn build(settings: WebhookSettings) -> Result<Config, WebhookError> {
        Config::build(url(), settings, &clients())
    }

    #[tokio::test]
    async fn deny_private_picks_a_client_that_refuses_private_networks() {
        // url() is 127.0.0.1: fine by default, blocked (never retried) with deny_private.
        let c = build(WebhookSettings::default()).unwrap();
        assert!(c.target.is_ok());
        assert!(!c.client.policy().deny_private);
        let c = build(WebhookSettings {
            deny_private: true,
            ..Default::default()
        })
        .unwrap();
        assert!(c.client.policy().deny_private);
        let err = c.target.unwrap_err();
        assert!(matches!(err, DeliveryError::Blocked { .. }), "{err}");
        let c = build(WebhookSettings {
            deny_private: true,
            insecure_tls: true,
            ..Default::default()
        })
        .unwrap();
        assert!(c.client.policy().deny_private);
        // The daemon-wide option: every webhook's client refuses them.
        let wide = Clients::new(HttpClient::new(&WebhookOptions {
            deny_private_networks: true,
            ..Default::default()
        }));
        let c = Config::build(url(), WebhookSettings::default(), &wide).unwrap();
        assert!(c.client.policy().deny_private && c.target.is_err());
    }

    #[tokio::test]
    async fn headers_and_auth_are_prepared_and_sensitive() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "  tok-123\n").unwrap();
        let c = build(WebhookSettings {
            headers: vec!["X-Team: blue".into(), "X-Team: green".into()],
            bearer_token_file: Some(token),
            batch_max: Some(10),
            ..Default::default()
        })
        .unwrap();
        let teams: Vec<_> = c.headers.get_all("x-team").iter().collect();
        assert_eq!(teams, ["blue", "green"]);
        let auth = c.headers.get(AUTHORIZATION).unwrap();
        assert_eq!(auth, "Bearer tok-123");
        assert!(auth.is_sensitive());
        assert!(c.headers.get("x-team").unwrap().is_sensitive());
        assert_eq!(
            c.batch,
            Some(Batching {
                max: 10,
                wait: DEFAULT_BATCH_WAIT
            })
        );
        assert!(!format!("{c:?}").contains("tok-123"));
        assert!(!format!("{c:?}").contains("blue"));

        let basic = dir.path().join("basic");
        std::fs::write(&basic, "bob:p@ss:word\n").unwrap();
        let c = build(WebhookSettings {
            basic_auth_file: Some(basic),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.headers.get(AUTHORIZATION).unwrap(),
            "Basic Ym9iOnBAc3M6d29yZA=="
        );
    }

    #[tokio::test]
    async fn bad_auth_files_are_errors_naming_the_file_not_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = build(WebhookSettings {
            bearer_token_file: Some(missing.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, WebhookError::AuthFile { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let cases: &[(&str, bool, &str)] = &[
            ("   \n", false, "is empty"),
            ("two words", false, "without spaces"),
            ("nocolon-secret", true, "user:password"),
            ("tok\u{7}en", false, "cannot carry"),
        ];
        for (content, basic, want) in cases {
            let p = dir.path().join("f");
            std::fs::write(&p, content).unwrap();
            let mut s = WebhookSettings::default();
            if *basic {
                s.basic_auth_file = Some(p.clone());
            } else {
                s.bearer_token_file = Some(p.clone());
            }
            let err = build(s).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert!(err.contains(&p.display().to_string()), "{err}");
            assert!(!err.contains("secret") && !err.contains("words"), "{err}");
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 70_000]).unwrap();
        let err = build(WebhookSettings {
            bearer_token_file: Some(big),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("64 KiB"), "{err}");
        let dir_as_file = build(WebhookSettings {
            bearer_token_file: Some(dir.path().to_path_buf()),
            ..Default::default()
        });
        assert!(dir_as_file.is_err());
    }

    #[tokio::test]
    async fn bad_headers_and_settings_are_refused() {
        let err = build(WebhookSettings {
            headers: vec!["Content-Type: text/plain".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, WebhookError::Settings { .. }), "{err}");
        assert!(err.to_string().contains("Content-Type"), "{err}");
        assert!(err.to_string().contains("http://127.0.0.1:9/x"), "{err}");
        for reserved in [
            "webhook-signature: x",
            "Host: a",
            "X-Pilot-Signature-256: y",
        ] {
            assert!(
                build(WebhookSettings {
                    headers: vec![reserved.into()],
                    ..Default::default()
                })
                .is_err(),
                "{reserved}"
            );
        }
        let err = build(WebhookSettings {
            headers: vec!["X-Name: caf\u{e9}".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("visible ASCII"), "{err}");
        let err = build(WebhookSettings {
            events: vec!["bad*".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, WebhookError::Settings { .. }), "{err}");
        let err = build(WebhookSettings {
            batch_max: Some(0),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("batch max"), "{err}");

        // Two sources of Authorization.
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t");
        std::fs::write(&token, "abc").unwrap();
        let err = build(WebhookSettings {
            headers: vec!["Authorization: Bearer x".into()],
            bearer_token_file: Some(token.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        let with_userinfo = Url::parse("http://u:p@127.0.0.1:9/x").unwrap();
        let err = Config::build(
            with_userinfo,
            WebhookSettings {
                bearer_token_file: Some(token),
                ..Default::default()
            },
            &clients(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("u:***@"), "{err}");
    }

    #[tokio::test]
    async fn same_as_sees_setting_and_auth_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("t");
        std::fs::write(&token, "one").unwrap();
        let s = WebhookSettings {
            bearer_token_file: Some(token.clone()),
            ..Default::default()
        };
        let a = build(s.clone()).unwrap();
        assert!(a.same_as(&build(s.clone()).unwrap()));
        std::fs::write(&token, "two").unwrap();
        assert!(!a.same_as(&build(s.clone()).unwrap()), "new token content");
        let other = WebhookSettings {
            exclude: vec!["a.b".into()],
            ..s
        };
        assert!(!a.same_as(&build(other).unwrap()));
    }
}
