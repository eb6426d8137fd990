//! Where `tasker::http` may connect and how much it reads: [`HttpPolicy`], the address rule
//! ([`is_public`]), the resolver that applies it to every connection (redirects included), and
//! URL redaction for errors and logs.
//!
//! A template author chooses the URL, so without a rule a template could make Tasker's own
//! processes call the cloud metadata service, the database, or an admin port on loopback. The
//! rule is applied where the address is known: a host name is checked after DNS resolution, in
//! the resolver every connection goes through (a name that resolves to a public and a private
//! address connects to the public one only), and an IP literal is checked before the request
//! and at every redirect. With an HTTP proxy configured in the environment, the proxy resolves
//! names, so only IP literals are checked here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The default [`HttpPolicy::max_response_bytes`]: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The default [`HttpPolicy::max_redirects`].
pub const DEFAULT_MAX_REDIRECTS: usize = 10;

/// Where `tasker::http` may connect and how much it reads (`[http_handler]` in `tasker.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct HttpPolicy {
    /// Whether calls may reach loopback, private, link-local and other non-public addresses
    /// (for development, or services on the same private network). Off by default.
    pub allow_private_networks: bool,
    /// Hosts (names or IP literals, as written in URLs) that may be reached whatever their
    /// addresses: an internal service the rule would otherwise refuse.
    pub allowed_hosts: Vec<String>,
    /// Most bytes of a response body read; a larger body fails the attempt with the permanent
    /// `HTTP_BODY_TOO_LARGE`.
    pub max_response_bytes: usize,
    /// Most redirects followed before the attempt fails.
    pub max_redirects: usize,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            allowed_hosts: Vec::new(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_redirects: DEFAULT_MAX_REDIRECTS,
        }
    }
}

impl HttpPolicy {
    /// A policy that lets calls reach any address (tests and local development).
    pub fn allowing_private_networks() -> Self {
        Self {
            allow_private_networks: true,
            ..Self::default()
        }
    }

    /// Whether the policy lets a call connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private_networks || is_public(ip)
    }

    /// Whether `host` (a name, or an IP literal without brackets) is exempt from the rule.
    pub fn exempts(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|allowed| {
            allowed
                .trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(host)
        })
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared
/// (carrier-grade NAT), unspecified, broadcast, multicast, documentation, benchmarking or
/// reserved. IPv4 addresses embedded in IPv6 (mapped, and the NAT64 prefix) are judged as
/// IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [_, _, _, _, _, _, high, low] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// The error a connection or redirect to a refused address fails with; the handler finds it in
/// the error's source chain and fails the attempt permanently with `HTTP_ADDRESS_REFUSED`.
#[derive(Debug, thiserror::Error)]
#[error("{host} is not a public address; set http_handler.allow_private_networks to allow it")]
pub(crate) struct AddressRefused {
    /// The host as written in the URL (a name or an IP literal), never the whole URL.
    pub(crate) host: String,
}

/// Resolves host names with the system resolver and keeps only the addresses the policy
/// allows; a name left with none fails with [`AddressRefused`].
pub(crate) struct CheckedResolver {
    pub(crate) policy: Arc<HttpPolicy>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let exempt = policy.exempts(&host);
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| exempt || policy.allows(addr.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(AddressRefused { host }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal for a URL whose host is an IP literal the policy does not allow (names are
/// checked by [`CheckedResolver`] instead).
pub(crate) fn check_literal(policy: &HttpPolicy, url: &reqwest::Url) -> Result<(), AddressRefused> {
    let host = url.host_str().unwrap_or_default();
    // An IPv6 literal's host is written in brackets; a name never parses as an address.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(ip) if !policy.allows(ip) && !policy.exempts(literal) => Err(AddressRefused {
            host: host.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The redirect rule: at most `max_redirects`, and never to a refused IP literal.
pub(crate) fn redirect_policy(policy: Arc<HttpPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > policy.max_redirects {
            let error = format!("more than {} redirects", policy.max_redirects);
            return attempt.error(error);
        }
        match check_literal(&policy, attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

/// `url` without credentials, query string or fragment: what errors and logs may show.
pub fn redact(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn public_addresses_are_told_from_the_rest() {
        for public in [
            "93.184.215.14",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(public)), "{public} is public");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip(private)), "{private} is not public");
        }
    }

    #[test]
    fn the_policy_allows_private_addresses_only_when_told() {
        assert!(!HttpPolicy::default().allows(ip("127.0.0.1")));
        assert!(HttpPolicy::allowing_private_networks().allows(ip("127.0.0.1")));
        assert!(HttpPolicy::default().allows(ip("8.8.8.8")));
    }

    #[test]
    fn literal_hosts_are_checked_and_names_are_left_to_the_resolver() {
        let policy = HttpPolicy::default();
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        let refused = check_literal(&policy, &url("http://[::1]:8080/x")).unwrap_err();
        assert_eq!(refused.host, "[::1]");
        assert!(check_literal(&policy, &url("http://169.254.169.254/latest")).is_err());
        assert!(check_literal(&policy, &url("http://localhost/")).is_ok());
        assert!(check_literal(&policy, &url("https://8.8.8.8/")).is_ok());
        let exempting = HttpPolicy {
            allowed_hosts: vec!["10.0.0.7".into(), "[::1]".into()],
            ..HttpPolicy::default()
        };
        assert!(check_literal(&exempting, &url("http://10.0.0.7/")).is_ok());
        assert!(check_literal(&exempting, &url("http://[::1]/")).is_ok());
        assert!(check_literal(&exempting, &url("http://10.0.0.8/")).is_err());
    }

    #[test]
    fn redaction_keeps_scheme_host_port_and_path_only() {
        let url = reqwest::Url::parse("https://user:secret@api.example.com:8443/v1/x?token=t#frag")
            .unwrap();
        assert_eq!(redact(&url), "https://api.example.com:8443/v1/x");
    }
}
