//! The webhook URL policy (SSRF guard), in one place for the CLI, the daemon and the plugin.
//!
//! A webhook URL must be http or https with a host, or a NATS JetStream address:
//! `nats://HOST[:PORT]` (`tls://` for TLS), several servers comma-separated
//! (`nats://a:4222,b:4222`; stored as the first server with the others in the fragment,
//! `nats://a:4222#b:4222`, which [`redact`] shows comma-separated again; see
//! [`broker_servers`]). Every broker host passes the same address policy; a broker URL carries
//! no user, password, path or query (credentials come from files, never from config.json). [`UrlPolicy`] decides which hosts and
//! addresses it may reach; the same value is applied when a URL is given (parse time:
//! [`UrlPolicy::validate`]) and again to every address a hostname resolves to when the plugin
//! connects ([`UrlPolicy::check_ip`], [`UrlPolicy::check_hostname`]; DNS rebinding).
//!
//! Always refused, whatever the policy:
//! - cloud instance-metadata services: every address in [`METADATA_IPS`] (AWS, GCP, Azure,
//!   Oracle, Alibaba, DigitalOcean, Hetzner, OpenStack, Tencent, ...) and every name in
//!   [`METADATA_HOSTS`] (case-insensitive, trailing dot ignored);
//! - link-local addresses (169.254.0.0/16, fe80::/10), where most metadata services live;
//! - "this network" 0.0.0.0/8 and the unspecified `::` (Linux connects them to local
//!   listeners);
//! - multicast (224.0.0.0/4, ff00::/8), the limited broadcast 255.255.255.255 and the reserved
//!   240.0.0.0/4: a webhook is one TCP connection to one host, and none of these is one;
//! - the deprecated IPv6 site-local range fec0::/10 (RFC 3879): no current network uses it,
//!   so it is refused rather than guessed at.
//!
//! IPv6 addresses that embed an IPv4 address are judged by the IPv4 address inside:
//! IPv4-mapped (`::ffff:0:0/96`), IPv4-compatible (`::/96`, except `::` and `::1`), NAT64
//! well-known (`64:ff9b::/96`), 6to4 (`2002::/16`, bits 16..48) and Teredo (`2001::/32`, the
//! client address is the last 32 bits inverted). In the NAT64 local-use prefix
//! (`64:ff9b:1::/48`, RFC 8215) only the /96 form (`64:ff9b:1::a.b.c.d`) is judged by its
//! last 32 bits; any other address there is refused, since where its IPv4 address sits depends
//! on the translator's prefix length.
//!
//! Loopback (127.0.0.0/8, `::1`, `localhost`) and private ranges (10.0.0.0/8, 172.16.0.0/12,
//! 192.168.0.0/16, the shared 100.64.0.0/10, the benchmarking 198.18.0.0/15, unique-local
//! fc00::/7) stay allowed by default: receivers on the node and the LAN are the main use.
//! [`UrlPolicy::deny_private`] (the per-webhook `deny_private` setting, or the config key
//! `deny_private_networks` for every webhook) refuses them too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use url::Url;

/// Hostnames that serve cloud instance metadata (or resolve to it on the instance).
pub const METADATA_HOSTS: &[&str] = &[
    // GCP (`metadata` alone resolves through the instance's search domain).
    "metadata.google.internal",
    "metadata.google.com",
    "metadata.goog",
    "metadata",
    // AWS.
    "instance-data",
    "instance-data.ec2.internal",
    "ec2.internal",
    "instance-data-service.ec2.internal",
    // Azure.
    "metadata.azure.com",
    "metadata.azure.internal",
    // Tencent Cloud, Equinix Metal, Rancher.
    "metadata.tencentyun.com",
    "metadata.packet.net",
    "rancher-metadata",
];

/// Cloud instance-metadata addresses outside the ranges refused anyway (the link-local ones,
/// 169.254.169.254 for most clouds, are listed for the record: link-local is refused whole).
pub const METADATA_IPS: &[(IpAddr, &str)] = &[
    (
        v4(169, 254, 169, 254),
        "AWS, GCP, Azure, Oracle, DigitalOcean, Hetzner, OpenStack",
    ),
    (v4(169, 254, 170, 2), "AWS ECS task metadata"),
    (v4(169, 254, 170, 23), "AWS EKS Pod Identity"),
    (v4(169, 254, 0, 23), "Tencent Cloud"),
    (v4(168, 63, 129, 16), "Azure WireServer"),
    (v4(192, 0, 0, 192), "Oracle Cloud"),
    (v4(100, 100, 100, 200), "Alibaba Cloud"),
    (v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]), "AWS (IPv6)"),
    (
        v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23]),
        "AWS EKS Pod Identity (IPv6)",
    ),
    (v6([0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254]), "GCP (IPv6)"),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0xa9fe, 0xa9fe]),
        "OpenStack (IPv6)",
    ),
];

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const fn v6(s: [u16; 8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
    ))
}

/// What a webhook URL may reach. The default allows loopback and private networks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Also refuse loopback, `localhost` and private ranges (see the module doc).
    pub deny_private: bool,
}

impl UrlPolicy {
    /// The default policy: private networks allowed.
    pub const DEFAULT: UrlPolicy = UrlPolicy {
        deny_private: false,
    };
    /// Private networks refused.
    pub const DENY_PRIVATE: UrlPolicy = UrlPolicy { deny_private: true };

    /// This policy, also refusing private networks when `deny_private` is true.
    pub fn or_deny_private(self, deny_private: bool) -> UrlPolicy {
        UrlPolicy {
            deny_private: self.deny_private || deny_private,
        }
    }

    /// Parses and checks a webhook URL.
    pub fn validate(&self, input: &str) -> Result<Url, UrlError> {
        let trimmed = input.trim();
        if let Some((scheme, rest)) = trimmed.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if is_broker_scheme(&scheme) {
                return self.validate_broker(input, &scheme, rest);
            }
        }
        let url = Url::parse(trimmed).map_err(|e| UrlError::Parse {
            url: input.into(),
            reason: e.to_string(),
            suggestion: suggest(trimmed),
        })?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(UrlError::Scheme {
                    url: input.into(),
                    scheme: other.into(),
                    suggestion: suggest(trimmed),
                })
            }
        }
        let blocked = |reason: String| UrlError::Blocked {
            url: input.into(),
            reason,
        };
        match url.host() {
            None => return Err(UrlError::NoHost { url: input.into() }),
            Some(url::Host::Domain(d)) => {
                if d.is_empty() {
                    return Err(UrlError::NoHost { url: input.into() });
                }
                self.check_hostname(d).map_err(blocked)?;
            }
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map_err(blocked)?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map_err(blocked)?,
        }
        Ok(url)
    }

    /// A NATS URL: `rest` is `server[,server...]` (or the stored form `server#server,...`),
    /// each server `host[:port]`, every host checked like a webhook's.
    fn validate_broker(&self, input: &str, scheme: &str, rest: &str) -> Result<Url, UrlError> {
        let bad = |reason: &str| UrlError::Broker {
            url: input.into(),
            reason: reason.into(),
        };
        if rest.contains('@') {
            return Err(bad(
                "a NATS URL carries no user or password; give them in a file \
                 (--nats-user-file, --nats-token-file, --nats-nkey-file or --nats-creds)",
            ));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest).replace('#', ",");
        if rest.contains(['/', '?']) {
            return Err(bad(
                "a NATS URL has no path or query: nats://HOST:PORT[,HOST:PORT...]",
            ));
        }
        let mut servers = Vec::new();
        for server in rest.split(',').map(str::trim) {
            if server.is_empty() {
                return Err(UrlError::NoHost { url: input.into() });
            }
            let one = Url::parse(&format!("{scheme}://{server}")).map_err(|e| UrlError::Parse {
                url: input.into(),
                reason: format!("server {server:?}: {e}"),
                suggestion: None,
            })?;
            let blocked = |reason: String| UrlError::Blocked {
                url: input.into(),
                reason,
            };
            match one.host() {
                None => return Err(UrlError::NoHost { url: input.into() }),
                Some(url::Host::Domain(d)) => {
                    if d.is_empty() {
                        return Err(UrlError::NoHost { url: input.into() });
                    }
                    // A non-special scheme keeps an IPv4 literal as an opaque host.
                    match d.parse::<IpAddr>() {
                        Ok(ip) => self.check_ip(ip).map_err(blocked)?,
                        Err(_) => self.check_hostname(d).map_err(blocked)?,
                    }
                }
                Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map_err(blocked)?,
                Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map_err(blocked)?,
            }
            let host = one.host_str().unwrap_or_default();
            servers.push(match one.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            });
        }
        let (first, others) = servers
            .split_first()
            .ok_or_else(|| UrlError::NoHost { url: input.into() })?;
        let text = if others.is_empty() {
            format!("{scheme}://{first}")
        } else {
            format!("{scheme}://{first}#{}", others.join(","))
        };
        Url::parse(&text).map_err(|e| UrlError::Parse {
            url: input.into(),
            reason: e.to_string(),
            suggestion: None,
        })
    }

    /// Refuses cloud-metadata hostnames (case-insensitive, trailing dot ignored), and with
    /// `deny_private` `localhost` and `*.localhost`. Addresses a name resolves to are checked
    /// with [`UrlPolicy::check_ip`] at connect time.
    pub fn check_hostname(&self, host: &str) -> Result<(), String> {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        if METADATA_HOSTS.contains(&h.as_str()) {
            return Err(format!("{host} is a cloud metadata host"));
        }
        if self.deny_private && (h == "localhost" || h.ends_with(".localhost")) {
            return Err(format!(
                "{host} is loopback, and private networks are refused (deny_private)"
            ));
        }
        Ok(())
    }

    /// Refuses addresses a webhook must never reach; IPv6 forms that embed an IPv4 address
    /// are judged by the IPv4 address inside.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        let verdict = match ip {
            IpAddr::V4(v4) => self.v4_verdict(v4),
            IpAddr::V6(v6) => self.v6_verdict(v6),
        };
        match verdict {
            Verdict::Allowed => Ok(()),
            Verdict::Refused(r) => Err(format!("{ip} is {r}")),
            Verdict::Embeds {
                form,
                inner,
                reason,
            } => Err(format!(
                "{ip} is {form} embedding {inner}, which is {reason}"
            )),
        }
    }

    fn v4_verdict(&self, ip: Ipv4Addr) -> Verdict {
        match self.v4_reason(ip) {
            Some(r) => Verdict::Refused(r),
            None => Verdict::Allowed,
        }
    }

    fn v4_reason(&self, ip: Ipv4Addr) -> Option<String> {
        let o = ip.octets();
        let always = if o[0] == 169 && o[1] == 254 {
            Some("link-local (169.254.0.0/16, where cloud metadata lives)".to_string())
        } else if let Some(who) = metadata_of(IpAddr::V4(ip)) {
            Some(format!("a cloud metadata address ({who})"))
        } else if o[0] == 0 {
            Some("an unspecified address (0.0.0.0/8)".into())
        } else if ip.is_broadcast() {
            Some("the broadcast address".into())
        } else if o[0] >= 224 && o[0] < 240 {
            Some("multicast (224.0.0.0/4)".into())
        } else if o[0] >= 240 {
            Some("reserved (240.0.0.0/4)".into())
        } else {
            None
        };
        if always.is_some() || !self.deny_private {
            return always;
        }
        let private = if o[0] == 127 {
            Some("loopback (127.0.0.0/8)")
        } else if o[0] == 10 {
            Some("private (10.0.0.0/8)")
        } else if o[0] == 172 && (16..32).contains(&o[1]) {
            Some("private (172.16.0.0/12)")
        } else if o[0] == 192 && o[1] == 168 {
            Some("private (192.168.0.0/16)")
        } else if o[0] == 100 && (64..128).contains(&o[1]) {
            Some("shared address space (100.64.0.0/10)")
        } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
            Some("benchmarking (198.18.0.0/15)")
        } else {
            None
        };
        private.map(|p| format!("{p}, and private networks are refused (deny_private)"))
    }

    fn v6_verdict(&self, ip: Ipv6Addr) -> Verdict {
        let s = ip.segments();
        let o = ip.octets();
        let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
        let embedded = |form: &'static str, inner: Ipv4Addr| match self.v4_reason(inner) {
            Some(reason) => Verdict::Embeds {
                form,
                inner,
                reason,
            },
            None => Verdict::Allowed,
        };
        if ip.is_unspecified() {
            return Verdict::Refused("the unspecified address (::)".into());
        }
        if ip.is_loopback() {
            return if self.deny_private {
                Verdict::Refused(
                    "loopback (::1), and private networks are refused (deny_private)".into(),
                )
            } else {
                Verdict::Allowed
            };
        }
        if let Some(who) = metadata_of(IpAddr::V6(ip)) {
            return Verdict::Refused(format!("a cloud metadata address ({who})"));
        }
        if s[..5] == [0; 5] && s[5] == 0xffff {
            return embedded("IPv4-mapped (::ffff:0:0/96)", last32);
        }
        if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
            return embedded("IPv4-translated (::ffff:0:0:0/96)", last32);
        }
        if s[..6] == [0; 6] {
            return embedded("IPv4-compatible (::/96)", last32);
        }
        if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
            return embedded("NAT64 (64:ff9b::/96)", last32);
        }
        if s[..3] == [0x64, 0xff9b, 1] {
            if s[3..6] == [0; 3] {
                return embedded("local-use NAT64 (64:ff9b:1::/96)", last32);
            }
            return Verdict::Refused(
                "local-use NAT64 (64:ff9b:1::/48) outside its /96 form, whose IPv4 address \
                 cannot be known"
                    .into(),
            );
        }
        if s[0] == 0x2002 {
            return embedded("6to4 (2002::/16)", Ipv4Addr::new(o[2], o[3], o[4], o[5]));
        }
        if s[0] == 0x2001 && s[1] == 0 {
            let client = Ipv4Addr::from(u32::from(last32) ^ 0xffff_ffff);
            return embedded("Teredo (2001::/32)", client);
        }
        if s[0] & 0xffc0 == 0xfe80 {
            return Verdict::Refused("link-local (fe80::/10)".into());
        }
        if s[0] & 0xffc0 == 0xfec0 {
            return Verdict::Refused("site-local (fec0::/10, deprecated by RFC 3879)".into());
        }
        if s[0] & 0xff00 == 0xff00 {
            return Verdict::Refused("multicast (ff00::/8)".into());
        }
        if self.deny_private && s[0] & 0xfe00 == 0xfc00 {
            return Verdict::Refused(
                "unique-local (fc00::/7), and private networks are refused (deny_private)".into(),
            );
        }
        Verdict::Allowed
    }
}

/// How an address was judged.
enum Verdict {
    Allowed,
    Refused(String),
    Embeds {
        form: &'static str,
        inner: Ipv4Addr,
        reason: String,
    },
}

/// Which cloud's metadata service lives at `ip`, if any.
fn metadata_of(ip: IpAddr) -> Option<&'static str> {
    METADATA_IPS
        .iter()
        .find(|(a, _)| *a == ip)
        .map(|(_, who)| *who)
}

/// Why a webhook URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error(
        "invalid webhook URL {:?}: {reason}{}",
        masked(url),
        did_you_mean(suggestion)
    )]
    Parse {
        url: String,
        reason: String,
        /// The URL with `http://` in front, when the input lacks a scheme and that works.
        suggestion: Option<String>,
    },
    #[error(
        "invalid webhook URL {:?}: scheme must be http or https, not {scheme:?}{}",
        masked(url),
        did_you_mean(suggestion)
    )]
    Scheme {
        url: String,
        scheme: String,
        suggestion: Option<String>,
    },
    #[error("invalid NATS URL {:?}: {reason}", masked(url))]
    Broker { url: String, reason: String },
    #[error("invalid webhook URL {:?}: it has no host", masked(url))]
    NoHost { url: String },
    #[error("webhook URL {:?} is blocked: {reason}", masked(url))]
    Blocked { url: String, reason: String },
}

/// The URL as given, unless it has a password or query values to hide (error messages reach
/// pilot.log): then [`redact`]ed.
fn masked(given: &str) -> String {
    if let Some((scheme, rest)) = given.trim().split_once("://") {
        if is_broker_scheme(&scheme.to_ascii_lowercase()) {
            // A user:password in a NATS URL is refused; never echoed.
            return match rest.rsplit_once('@') {
                Some((_, hosts)) => format!("{scheme}://***@{hosts}"),
                None => given.to_string(),
            };
        }
    }
    match Url::parse(given.trim()) {
        Ok(u) if u.password().is_some() || u.query().is_some_and(|q| q.contains('=')) => redact(&u),
        _ => given.to_string(),
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean {s}?"),
        None => String::new(),
    }
}

/// `http://INPUT`, when `input` has no scheme and that makes a URL with a host (the usual
/// slip: `localhost:8080/x`).
fn suggest(input: &str) -> Option<String> {
    let input = input.trim();
    if input.contains("://") || input.is_empty() {
        return None;
    }
    let url = Url::parse(&format!("http://{input}")).ok()?;
    url.host_str().filter(|h| !h.is_empty())?;
    Some(url.to_string())
}

/// The URL as logs and `info` show it: a password replaced by `***`, and every query value by
/// `***` (tokens are often passed as `?token=...`). The config file keeps the URL as given.
pub fn redact(url: &Url) -> String {
    if is_broker(url) {
        // Broker URLs carry no password or query; the other servers are shown comma-separated.
        return url.as_str().replacen('#', ",", 1);
    }
    let mut shown = url.clone();
    if shown.password().is_some() && shown.set_password(Some("***")).is_err() {
        return "<webhook URL>".into();
    }
    if let Some(query) = url.query() {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if !value.is_empty() => format!("{name}=***"),
                _ => pair.to_string(),
            })
            .collect();
        shown.set_query(Some(&masked.join("&")));
    }
    shown.to_string()
}

/// [`redact`] on text: text that is not an http(s) URL is shown as `<webhook URL>` (it could
/// hold anything: `user:pw@host` parses as scheme `user`).
pub fn redact_str(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") || is_broker(&u) => redact(&u),
        Ok(_) => "<webhook URL>".into(),
        Err(_) if url.is_empty() => String::new(),
        Err(_) => "<webhook URL>".into(),
    }
}

/// Whether `scheme` names a NATS JetStream endpoint (`nats`, or `tls` for NATS over TLS).
pub fn is_broker_scheme(scheme: &str) -> bool {
    matches!(scheme, "nats" | "tls")
}

/// Whether `url` is a NATS JetStream endpoint rather than an HTTP(S) webhook.
pub fn is_broker(url: &Url) -> bool {
    is_broker_scheme(url.scheme())
}

/// The servers of a NATS URL, each `scheme://host[:port]` (the first from the URL's host, the
/// others from its fragment, as [`UrlPolicy::validate`] stores them); empty for other URLs.
pub fn broker_servers(url: &Url) -> Vec<String> {
    if !is_broker(url) {
        return Vec::new();
    }
    let scheme = url.scheme();
    let mut first = url.host_str().unwrap_or_default().to_string();
    if let Some(port) = url.port() {
        first = format!("{first}:{port}");
    }
    std::iter::once(first)
        .chain(
            url.fragment()
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        )
        .map(|s| format!("{scheme}://{s}"))
        .collect()
}

/// Parses and checks a webhook URL with the default policy ([`UrlPolicy::validate`]).
pub fn validate(input: &str) -> Result<Url, UrlError> {
    UrlPolicy::DEFAULT.validate(input)
}

/// [`UrlPolicy::check_hostname`] with the default policy.
pub fn check_hostname(host: &str) -> Result<(), String> {
    UrlPolicy::DEFAULT.check_hostname(host)
}

/// [`UrlPolicy::check_ip`] with the default policy.
pub fn check_ip(ip: IpAddr) -> Result<(), String> {
    UrlPolicy::DEFAULT.check_ip(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_pass_the_same_policy_and_keep_every_server() {
        let u = validate("nats://127.0.0.1:4222").unwrap();
        assert_eq!(broker_servers(&u), ["nats://127.0.0.1:4222"]);
        assert_eq!(redact(&u), "nats://127.0.0.1:4222");
        let u = validate(" NATS://10.0.0.5:4222,10.0.0.6:4223 ,[::1]:4224/").unwrap();
        assert_eq!(u.as_str(), "nats://10.0.0.5:4222#10.0.0.6:4223,[::1]:4224");
        assert_eq!(
            broker_servers(&u),
            [
                "nats://10.0.0.5:4222",
                "nats://10.0.0.6:4223",
                "nats://[::1]:4224"
            ]
        );
        assert_eq!(redact(&u), "nats://10.0.0.5:4222,10.0.0.6:4223,[::1]:4224");
        assert_eq!(
            validate(u.as_str()),
            Ok(u.clone()),
            "the stored form round-trips"
        );
        assert_eq!(redact_str(u.as_str()), redact(&u));
        let t = validate("tls://nats.example.com").unwrap();
        assert_eq!(broker_servers(&t), ["tls://nats.example.com"]);
        for (bad, want) in [
            ("nats://169.254.169.254:4222", "blocked"),
            ("nats://a:4222,metadata.google.internal:4222", "blocked"),
            ("nats://bob:pw@a:4222", "no user or password"),
            ("nats://a:4222/subject", "no path"),
            ("nats://a:4222,,b:1", "no host"),
            ("nats://a:99999", "invalid"),
        ] {
            let err = validate(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
        let deny = UrlPolicy::DENY_PRIVATE;
        assert!(deny.validate("nats://127.0.0.1:4222").is_err());
        assert!(deny.validate("nats://localhost:4222").is_err());
    }

    /// The verdict on a URL: allowed, blocked by the SSRF policy, or not a webhook URL.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum V {
        Allow,
        Block,
        Invalid,
    }
    use V::{Allow as A, Block as B, Invalid as I};

    fn verdict(policy: UrlPolicy, url: &str) -> V {
        match policy.validate(url) {
            Ok(_) => A,
            Err(UrlError::Blocked { .. }) => B,
            Err(_) => I,
        }
    }

    /// Every URL with its verdict under the default policy and under `deny_private`.
    const TABLE: &[(&str, V, V)] = &[
        // Public hosts and addresses.
        ("https://hooks.example.com/x?y=1", A, A),
        ("http://93.184.216.34/", A, A),
        ("http://8.8.8.8:8080/h", A, A),
        ("http://[2606:4700::1111]/", A, A),
        ("http://[2001:db8::1]/", A, A),
        ("https://metadata.example.com/", A, A),
        ("http://metadata-google-internal.example/", A, A),
        // Loopback and private: allowed unless deny_private.
        ("http://localhost:8080/events", A, B),
        ("http://LOCALHOST./x", A, B),
        ("http://api.localhost/x", A, B),
        ("http://127.0.0.1:9/", A, B),
        ("http://127.1.2.3/", A, B),
        ("http://[::1]:8080/", A, B),
        ("http://10.0.0.5/", A, B),
        ("http://172.16.0.1/", A, B),
        ("http://172.31.255.255/", A, B),
        ("http://172.32.0.1/", A, A),
        ("http://192.168.1.1/", A, B),
        ("http://100.64.0.1/", A, B),
        ("http://198.18.0.1/", A, B),
        ("http://[fd12:3456::1]/", A, B),
        ("http://[fc00::1]/", A, B),
        ("http://[::ffff:127.0.0.1]/", A, B),
        ("http://[::ffff:10.1.2.3]/", A, B),
        ("http://[64:ff9b::192.168.0.1]/", A, B),
        ("http://[2002:c0a8:101::1]/", A, B),
        // Cloud metadata services, by address.
        ("http://169.254.169.254/latest/meta-data/", B, B),
        ("http://169.254.170.2/v2/credentials", B, B),
        ("http://169.254.0.23/", B, B),
        ("http://[fd00:ec2::254]/latest/meta-data/", B, B),
        ("http://[fd00:ec2::23]/", B, B),
        ("http://[fd20:ce::254]/computeMetadata/v1/", B, B),
        ("http://[fe80::a9fe:a9fe]/openstack", B, B),
        ("http://168.63.129.16/machine", B, B),
        ("http://192.0.0.192/latest/", B, B),
        ("http://100.100.100.200/latest/meta-data/", B, B),
        // The same, spelled as decimal, hex or octal numbers (the URL parser normalises them).
        ("http://2852039166/", B, B),
        ("http://0xa9fea9fe/", B, B),
        ("http://0251.0376.0251.0376/", B, B),
        ("http://169.254.43518/", B, B),
        // Cloud metadata services, by name.
        ("http://metadata.google.internal/computeMetadata/v1/", B, B),
        ("http://METADATA.Google.Internal./computeMetadata", B, B),
        ("http://metadata.goog/", B, B),
        ("http://metadata/computeMetadata/v1/", B, B),
        ("http://metadata.google.com/", B, B),
        ("http://instance-data/latest/", B, B),
        ("http://instance-data.ec2.internal/", B, B),
        ("http://ec2.internal/", B, B),
        ("http://instance-data-service.ec2.internal/", B, B),
        ("http://metadata.azure.com/", B, B),
        ("http://metadata.tencentyun.com/", B, B),
        // Link-local, unspecified, broadcast, multicast, reserved, site-local.
        ("http://169.254.1.1/", B, B),
        ("http://[fe80::1]/", B, B),
        ("http://[fe80::1%25eth0]/", I, I),
        ("http://[febf::1]/", B, B),
        ("http://0.0.0.0:8080/", B, B),
        ("http://0/", B, B),
        ("http://0.1.2.3/", B, B),
        ("http://[::]/", B, B),
        ("http://255.255.255.255/", B, B),
        ("http://224.0.0.1/", B, B),
        ("http://239.255.255.250:1900/", B, B),
        ("http://240.0.0.1/", B, B),
        ("http://[ff02::1]/", B, B),
        ("http://[ff05::1:3]/", B, B),
        ("http://[fec0::1]/", B, B),
        // IPv6 forms embedding a blocked IPv4 address.
        ("http://[::ffff:169.254.169.254]/", B, B),
        ("http://[::ffff:a9fe:a9fe]/", B, B),
        ("http://[::ffff:0.0.0.1]/", B, B),
        ("http://[::ffff:100.100.100.200]/", B, B),
        ("http://[::ffff:0:169.254.169.254]/", B, B),
        ("http://[::169.254.169.254]/", B, B),
        ("http://[::0.0.0.2]/", B, B),
        ("http://[64:ff9b::169.254.169.254]/", B, B),
        ("http://[64:ff9b::a9fe:a9fe]/", B, B),
        ("http://[64:ff9b::168.63.129.16]/", B, B),
        ("http://[64:ff9b:1::169.254.169.254]/", B, B),
        ("http://[64:ff9b:1:a9fe:a9:fe00::]/", B, B),
        ("http://[2002:a9fe:a9fe::1]/", B, B),
        ("http://[2002:6464:64c8::]/", B, B),
        ("http://[2001:0:4136:e378:8000:63bf:5601:5601]/", B, B),
        // ... and embedding an allowed one.
        ("http://[::ffff:8.8.8.8]/", A, A),
        ("http://[64:ff9b::8.8.8.8]/", A, A),
        ("http://[64:ff9b:1::8.8.8.8]/", A, A),
        ("http://[2002:808:808::1]/", A, A),
        ("http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/", A, A),
        // Not webhook URLs at all.
        ("ftp://example.com/", I, I),
        ("file:///etc/passwd", I, I),
        ("gopher://127.0.0.1:70/", I, I),
        ("localhost:8080/x", I, I),
        ("not a url", I, I),
        ("http://", I, I),
        ("http://[::1/", I, I),
    ];

    #[test]
    fn the_ssrf_table() {
        assert!(TABLE.len() >= 60, "{} URLs", TABLE.len());
        let mut wrong = Vec::new();
        for &(url, default, deny) in TABLE {
            for (policy, want) in [
                (UrlPolicy::DEFAULT, default),
                (UrlPolicy::DENY_PRIVATE, deny),
            ] {
                let got = verdict(policy, url);
                if got != want {
                    wrong.push(format!(
                        "{url} ({policy:?}): {got:?}, want {want:?}: {:?}",
                        policy.validate(url)
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn connect_time_checks_agree_with_parse_time() {
        // Every literal address in the table is judged the same by check_ip (what the
        // resolver applies to each resolved address) as by validate.
        for &(url, default, deny) in TABLE {
            let Ok(parsed) = Url::parse(url) else {
                continue;
            };
            let ip: IpAddr = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.into(),
                Some(url::Host::Ipv6(ip)) => ip.into(),
                _ => continue,
            };
            if !matches!(parsed.scheme(), "http" | "https") {
                continue;
            }
            assert_eq!(
                UrlPolicy::DEFAULT.check_ip(ip).is_ok(),
                default == A,
                "{url}"
            );
            assert_eq!(
                UrlPolicy::DENY_PRIVATE.check_ip(ip).is_ok(),
                deny == A,
                "{url}"
            );
        }
        for ip in METADATA_IPS.iter().map(|(ip, _)| *ip) {
            assert!(check_ip(ip).is_err(), "{ip}");
        }
        for host in METADATA_HOSTS {
            assert!(check_hostname(host).is_err(), "{host}");
            assert!(
                check_hostname(&format!("{}.", host.to_uppercase())).is_err(),
                "{host}"
            );
        }
    }

    #[test]
    fn reasons_name_the_address_and_what_it_embeds() {
        let e = validate("http://169.254.169.254/").unwrap_err().to_string();
        assert!(
            e.contains("169.254.169.254") && e.contains("link-local"),
            "{e}"
        );
        let e = check_ip("64:ff9b::a9fe:a9fe".parse().unwrap()).unwrap_err();
        assert!(
            e.contains("NAT64") && e.contains("embedding 169.254.169.254"),
            "{e}"
        );
        let e = check_ip("2001:0:4136:e378:8000:63bf:5601:5601".parse().unwrap()).unwrap_err();
        assert!(e.contains("Teredo") && e.contains("169.254.169.254"), "{e}");
        let e = check_ip("100.100.100.200".parse().unwrap()).unwrap_err();
        assert!(e.contains("Alibaba"), "{e}");
        let e = UrlPolicy::DENY_PRIVATE
            .check_ip("10.0.0.1".parse().unwrap())
            .unwrap_err();
        assert!(e.contains("deny_private"), "{e}");
        assert_eq!(
            UrlPolicy::DEFAULT.or_deny_private(true),
            UrlPolicy::DENY_PRIVATE
        );
        assert_eq!(
            UrlPolicy::DENY_PRIVATE.or_deny_private(false),
            UrlPolicy::DENY_PRIVATE
        );
    }

    #[test]
    fn a_url_without_a_scheme_gets_a_suggestion() {
        for (given, want) in [
            ("localhost:8080/x", "http://localhost:8080/x"),
            ("hooks.example.com/x", "http://hooks.example.com/x"),
            ("127.0.0.1:9000", "http://127.0.0.1:9000/"),
        ] {
            let msg = validate(given).unwrap_err().to_string();
            assert!(msg.ends_with(&format!("; did you mean {want}?")), "{msg}");
        }
        for none in ["ftp://x/", "http://", "not a url"] {
            let msg = validate(none).unwrap_err().to_string();
            assert!(!msg.contains("did you mean"), "{msg}");
        }
    }

    #[test]
    fn refusals_hide_passwords_and_query_values() {
        let e = validate("http://u:pw@169.254.169.254/?token=t0k").unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("pw@") && !msg.contains("t0k"), "{msg}");
        assert!(msg.contains("u:***@169.254.169.254/?token=***"), "{msg}");
        assert!(matches!(e, UrlError::Blocked { url, .. } if url.contains("t0k")));
        let msg = validate("ftp://x/").unwrap_err().to_string();
        assert!(msg.contains("\"ftp://x/\""), "{msg}");
    }

    #[test]
    fn redaction_hides_passwords_and_query_values() {
        let r = |s: &str| redact(&Url::parse(s).unwrap());
        assert_eq!(
            r("https://bob:s3cret@hooks.example.com/x?y=1"),
            "https://bob:***@hooks.example.com/x?y=***"
        );
        assert_eq!(
            r("http://h/x?token=abc&flag&empty=&b=2#frag"),
            "http://h/x?token=***&flag&empty=&b=***#frag"
        );
        assert_eq!(
            r("http://bob@localhost:8080/e"),
            "http://bob@localhost:8080/e"
        );
        assert_eq!(r("http://localhost:8080/e"), "http://localhost:8080/e");
        assert_eq!(redact_str("http://u:p@h/?k=v"), "http://u:***@h/?k=***");
        assert_eq!(redact_str("user:pw@host"), "<webhook URL>");
        assert_eq!(redact_str(""), "");
    }

    #[test]
    fn bad_schemes_and_shapes_are_invalid() {
        assert!(matches!(validate("ftp://x/"), Err(UrlError::Scheme { .. })));
        assert!(matches!(
            validate("file:///etc/passwd"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(validate("not a url"), Err(UrlError::Parse { .. })));
        assert!(matches!(
            validate("localhost:8080"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(validate("http://"), Err(UrlError::Parse { .. })));
    }
}
