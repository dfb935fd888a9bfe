//! The webhook URL policy (SSRF guard), in one place for the CLI, the daemon and the plugin.
//!
//! A webhook URL must be http or https with a host. It must not point at link-local addresses
//! (169.254.0.0/16, fe80::/10), local multicast 224.0.0.0/24, 0.0.0.0/8 (or `::`), or a
//! cloud-metadata hostname (case-insensitive, trailing dot ignored). IPv4-mapped IPv6 addresses
//! are judged as their IPv4. localhost and private ranges stay allowed. The webhook plugin
//! applies [`check_ip`] again to every address a hostname resolves to, at connect time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use url::Url;

/// Hostnames that serve cloud instance metadata.
pub const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.google.com",
    "ec2.internal",
    "instance-data-service.ec2.internal",
    "metadata.azure.com",
];

/// Why a webhook URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("invalid webhook URL {url:?}: {reason}")]
    Parse { url: String, reason: String },
    #[error("invalid webhook URL {url:?}: scheme must be http or https, not {scheme:?}")]
    Scheme { url: String, scheme: String },
    #[error("invalid webhook URL {url:?}: it has no host")]
    NoHost { url: String },
    #[error("webhook URL {url:?} is blocked: {reason}")]
    Blocked { url: String, reason: String },
}

/// Parses and checks a webhook URL.
pub fn validate(input: &str) -> Result<Url, UrlError> {
    let trimmed = input.trim();
    let url = Url::parse(trimmed).map_err(|e| UrlError::Parse {
        url: input.into(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(UrlError::Scheme {
                url: input.into(),
                scheme: other.into(),
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
            check_hostname(d).map_err(blocked)?;
        }
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip)).map_err(blocked)?,
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip)).map_err(blocked)?,
    }
    Ok(url)
}

/// Refuses cloud-metadata hostnames (case-insensitive, trailing dot ignored).
pub fn check_hostname(host: &str) -> Result<(), String> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if METADATA_HOSTS.contains(&h.as_str()) {
        return Err(format!("{host} is a cloud metadata host"));
    }
    Ok(())
}

/// Refuses addresses a webhook must never reach. IPv4-mapped IPv6 is judged as IPv4.
pub fn check_ip(ip: IpAddr) -> Result<(), String> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    let reason = match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    };
    match reason {
        Some(r) => Err(format!("{ip} is {r}")),
        None => Ok(()),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if o[0] == 169 && o[1] == 254 {
        Some("link-local (169.254.0.0/16, where cloud metadata lives)")
    } else if o[0] == 224 && o[1] == 0 && o[2] == 0 {
        Some("local multicast (224.0.0.0/24)")
    } else if o[0] == 0 {
        Some("an unspecified address (0.0.0.0/8)")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some("link-local (fe80::/10)")
    } else if ip.is_unspecified() {
        Some("the unspecified address (::)")
    } else {
        None
    }
}

/// The URL as it may be shown: a password in it replaced by `***`.
pub fn redact(url: &Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Only fails for URLs that cannot have a password, and this one has one.
    if shown.set_password(Some("***")).is_err() {
        return "<webhook URL>".into();
    }
    shown.to_string()
}

/// A URL string as it may be shown (`redact` of the parsed URL; what does not parse is shown
/// as a placeholder, since it could hold anything).
pub fn redact_str(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(u) => redact(&u),
        Err(_) => "<webhook URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples_are_allowed() {
        for ok in [
            "http://localhost:8080/events",
            "https://hooks.example.com/x?y=1",
            "http://127.0.0.1:9/",
            "http://10.0.0.5/",
            "http://192.168.1.1/",
            "http://[::1]:8080/",
        ] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
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

    #[test]
    fn ssrf_targets_are_blocked() {
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://224.0.0.1/",
            "http://0.0.0.0:8080/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:0.0.0.1]/",
            "http://metadata.google.internal/",
            "http://METADATA.Google.Internal./computeMetadata",
            "http://ec2.internal/",
            "http://instance-data-service.ec2.internal/",
            "http://metadata.azure.com/",
            "http://metadata.google.com/",
            "http://[::]/",
        ] {
            assert!(
                matches!(validate(bad), Err(UrlError::Blocked { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn blocked_message_names_the_url() {
        let e = validate("http://169.254.169.254/").unwrap_err();
        assert!(e.to_string().contains("169.254.169.254"));
    }
}
