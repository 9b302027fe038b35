//! Where a webhook may point. A URL must be `https` (`http` only where the
//! operator allows it), and must not reach loopback, private, link-local or
//! other internal addresses (cloud metadata lives at 169.254.169.254) unless
//! the operator allows private targets. The address check runs at
//! registration and again on every delivery, inside the HTTP client's own
//! resolver, so a name that later resolves elsewhere is still refused.
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::TargetPolicy;

/// The longest URL accepted.
pub const MAX_URL_CHARS: usize = 2000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("must be an absolute URL of at most 2000 characters")]
    NotUrl,
    #[error("must use https")]
    Scheme,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("resolves to {0}, a loopback, private or link-local address")]
    Private(IpAddr),
    #[error("the host cannot be resolved: {0}")]
    Unresolvable(String),
}

/// The URL's syntax and scheme.
pub fn parse(raw: &str, policy: TargetPolicy) -> Result<Url, TargetError> {
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(TargetError::NotUrl);
    }
    let url = Url::parse(raw).map_err(|_| TargetError::NotUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(TargetError::Scheme),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NotUrl);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    Ok(url)
}

/// Resolves the URL's host and refuses internal addresses (unless allowed).
pub async fn check(url: &Url, policy: TargetPolicy) -> Result<(), TargetError> {
    if policy.allow_private {
        return Ok(());
    }
    let host = url.host_str().ok_or(TargetError::NotUrl)?;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TargetError::Unresolvable(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable("no address".into()));
    }
    match addrs.iter().find(|a| is_internal(a.ip())) {
        Some(internal) => Err(TargetError::Private(internal.ip())),
        None => Ok(()),
    }
}

/// Whether `ip` is not a public internet address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10
                || nat64(v6).is_some_and(is_internal_v4)
        }
    }
}

/// The IPv4 address inside a NAT64 address (64:ff9b::/96).
fn nat64(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0])
        .then(|| Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, _, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// The delivery client's resolver: resolves as usual and refuses internal
/// addresses, so the check and the connection use the same answer.
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if let Some(internal) = addrs.iter().find(|a| is_internal(a.ip())) {
                let error: Box<dyn std::error::Error + Send + Sync> =
                    TargetError::Private(internal.ip()).to_string().into();
                return Err(error);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_private: false,
        allow_http: false,
    };

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn only_https_without_credentials_is_accepted_by_default() {
        assert!(parse("https://example.com/hook", STRICT).is_ok());
        assert_eq!(
            parse("http://example.com/hook", STRICT),
            Err(TargetError::Scheme)
        );
        assert_eq!(
            parse("ftp://example.com/", STRICT),
            Err(TargetError::Scheme)
        );
        assert_eq!(parse("not a url", STRICT), Err(TargetError::NotUrl));
        assert_eq!(
            parse("https://u:p@example.com/", STRICT),
            Err(TargetError::Credentials)
        );
        let lax = TargetPolicy {
            allow_http: true,
            ..STRICT
        };
        assert!(parse("http://example.com/hook", lax).is_ok());
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_private_targets_are_allowed() {
        let url = parse("https://127.0.0.1:9/hook", STRICT).unwrap();
        assert!(matches!(
            check(&url, STRICT).await,
            Err(TargetError::Private(_))
        ));
        let url = parse("https://[::1]:9/hook", STRICT).unwrap();
        assert!(matches!(
            check(&url, STRICT).await,
            Err(TargetError::Private(_))
        ));
        let allowed = TargetPolicy {
            allow_private: true,
            ..STRICT
        };
        assert_eq!(check(&url, allowed).await, Ok(()));
    }
}
