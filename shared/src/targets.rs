//! Where pgmon may connect (`servers.allowed_targets`).
//!
//! pgmon connects wherever an operator points it, with stored credentials: without a limit, a server
//! entry is a way to reach the cloud metadata service, link-local devices or internal ports from the
//! monitor's network position, and `test-connection` a port scanner. So every connection (collector,
//! API probes and pools, SSH) first resolves the host, checks EVERY address here, and then connects to
//! the checked address itself, never to the name again: a DNS answer that changes between the check
//! and the connect (rebinding) cannot redirect it. The host name stays for TLS (SNI, `verify-full`).
//!
//! A target is allowed when its host name matches one of the globs, or every address is inside an
//! allowed CIDR; it is never allowed when any address is in the deny list (link-local and the cloud
//! metadata addresses), unless the site lists an allowed CIDR inside that deny entry explicitly: the
//! default `0.0.0.0/0` covers 169.254.0.0/16 but does not lift it, `169.254.0.0/16` does, and the
//! metadata address needs its own `/32`. Globs match host names only, never IP literals, so a glob
//! cannot open an address range by accident.
//!
//! The policy is process-wide (installed once from the config at start-up, see [`install`]): every
//! connect in the process reaches it without being handed it, so no caller can forget it.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

/// The default of `servers.allowed_targets`: every address (the deny list still applies).
pub const DEFAULT_ALLOWED: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// Addresses refused unless a site allows them explicitly, with the reason a refusal names.
const DENY: [(&str, &str); 5] = [
    ("169.254.169.254/32", "a cloud metadata address"),
    ("fd00:ec2::254/128", "a cloud metadata address"),
    ("100.100.100.200/32", "a cloud metadata address"),
    ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"),
];

/// A target pgmon will not connect to; the text names the rule, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{host} ({addr}) is refused by servers.allowed_targets: {rule}")]
    Refused {
        host: String,
        addr: IpAddr,
        rule: String,
    },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
}

impl TargetError {
    pub fn is_refused(&self) -> bool {
        matches!(self, TargetError::Refused { .. })
    }
}

/// `servers.allowed_targets`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTargets {
    nets: Vec<IpNet>,
    /// Lower-case host-name patterns; `*` matches any run of characters (dots included).
    globs: Vec<String>,
}

impl Default for AllowedTargets {
    fn default() -> Self {
        Self::parse(&DEFAULT_ALLOWED).unwrap_or(Self {
            nets: Vec::new(),
            globs: Vec::new(),
        })
    }
}

fn deny_list() -> impl Iterator<Item = (IpNet, &'static str)> {
    DENY.iter()
        .filter_map(|(n, why)| n.parse::<IpNet>().ok().map(|n| (n, *why)))
}

impl AllowedTargets {
    /// Each entry is a CIDR block (`10.0.0.0/8`), a single address (a /32 or /128), or a host-name
    /// glob (`*.db.example.com`). `Err` says which entry is wrong and why.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut nets = Vec::new();
        let mut globs = Vec::new();
        for e in entries {
            let e = e.as_ref().trim();
            if let Ok(n) = e.parse::<IpNet>() {
                nets.push(n.trunc());
            } else if let Ok(a) = e.parse::<IpAddr>() {
                nets.push(IpNet::from(a.to_canonical()));
            } else if !e.is_empty()
                && e.len() <= 253
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*'))
                && e.chars().any(|c| c != '*' && c != '.')
            {
                globs.push(e.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!(
                    "{e:?} is neither a CIDR block, an IP address nor a host-name glob such as *.db.example.com"
                ));
            }
        }
        Ok(Self { nets, globs })
    }

    /// Whether `host` (a name, not an IP literal) matches one of the globs.
    fn name_allowed(&self, host: &str) -> bool {
        if host.parse::<IpAddr>().is_ok() {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.globs.iter().any(|g| glob_match(g, &host))
    }

    /// Checks the addresses `host` resolved to (all of them: a name with one good and one bad address
    /// is refused, as a resolver may hand out either).
    pub fn check(&self, host: &str, addrs: &[IpAddr]) -> Result<(), TargetError> {
        let refused = |addr: IpAddr, rule: String| TargetError::Refused {
            host: host.to_string(),
            addr,
            rule,
        };
        for addr in addrs.iter().map(|a| a.to_canonical()) {
            for (deny, why) in deny_list() {
                let lifted = self.nets.iter().any(|n| deny.contains(n) && n.contains(&addr));
                if deny.contains(&addr) && !lifted {
                    return Err(refused(
                        addr,
                        format!("{deny} is {why} (allow it only by listing it or a part of it)"),
                    ));
                }
            }
        }
        if self.name_allowed(host) {
            return Ok(());
        }
        for addr in addrs.iter().map(|a| a.to_canonical()) {
            if !self.nets.iter().any(|n| n.contains(&addr)) {
                return Err(refused(
                    addr,
                    format!("{addr} is in no allowed network or host name"),
                ));
            }
        }
        Ok(())
    }

    /// Resolves `host` (an IP literal is not looked up) and checks every address; the answer is what
    /// to connect to, in the resolver's order.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| TargetError::Resolve {
                    host: host.to_string(),
                    reason: resolver_text(&e),
                })?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(TargetError::Resolve {
                host: host.to_string(),
                reason: "no address".into(),
            });
        }
        let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        self.check(host, &ips)?;
        Ok(addrs)
    }
}

/// The resolver's failure in a few words of our own (its text names only the host).
fn resolver_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "host not found".into(),
        _ => "host name could not be resolved".into(),
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return text.is_empty(),
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

static POLICY: OnceLock<AllowedTargets> = OnceLock::new();

/// Makes `policy` the process's; called once at start-up, before anything connects. A second call
/// keeps the first policy and says so.
pub fn install(policy: AllowedTargets) {
    if POLICY.set(policy).is_err() {
        tracing::warn!("servers.allowed_targets was already installed; keeping the first");
    }
}

/// The process's policy: the installed one, else the default.
pub fn policy() -> &'static AllowedTargets {
    POLICY.get_or_init(AllowedTargets::default)
}

/// [`AllowedTargets::resolve`] under the process's policy.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
    policy().resolve(host, port).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn allowed(p: &AllowedTargets, host: &str, addrs: &[&str]) -> Result<(), TargetError> {
        let a: Vec<IpAddr> = addrs.iter().map(|s| ip(s)).collect();
        p.check(host, &a)
    }

    #[test]
    fn default_allows_everything_but_link_local_and_metadata() {
        let p = AllowedTargets::default();
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "8.8.8.8",
            "::1",
            "2001:db8::1",
            "100.100.100.199",
        ] {
            assert_eq!(allowed(&p, a, &[a]), Ok(()), "{a}");
        }
        for (a, why) in [
            ("169.254.169.254", "metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fd00:ec2::254", "metadata"),
            ("100.100.100.200", "metadata"),
            // An IPv4-mapped IPv6 address is the IPv4 address.
            ("::ffff:169.254.169.254", "metadata"),
        ] {
            let e = allowed(&p, a, &[a]).expect_err(a);
            assert!(e.is_refused(), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("servers.allowed_targets") && text.contains(why),
                "{text}"
            );
        }
        let e = allowed(&p, "169.254.1.1", &["169.254.1.1"]).expect_err("link-local");
        assert!(e.to_string().contains("169.254.0.0/16 is link-local"), "{e}");
    }

    #[test]
    fn cidrs_narrow_and_every_address_must_be_allowed() {
        let p = AllowedTargets::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]).expect("parse");
        assert_eq!(allowed(&p, "10.9.8.7", &["10.9.8.7"]), Ok(()));
        assert_eq!(allowed(&p, "192.0.2.7", &["192.0.2.7"]), Ok(()));
        assert_eq!(allowed(&p, "2001:db8::5", &["2001:db8::5"]), Ok(()));
        assert!(allowed(&p, "192.0.2.8", &["192.0.2.8"]).is_err());
        assert!(allowed(&p, "localhost", &["127.0.0.1", "::1"]).is_err());
        assert!(allowed(&p, "2001:db9::1", &["2001:db9::1"]).is_err());
        // One bad address among good ones refuses the name.
        let e = allowed(&p, "db.example.com", &["10.0.0.1", "11.0.0.1"]).expect_err("mixed");
        assert!(e.to_string().contains("11.0.0.1"), "{e}");
        assert!(AllowedTargets::parse(&["10.0.0.0/33"]).is_err());
        assert!(AllowedTargets::parse(&["db host"]).is_err());
        assert!(AllowedTargets::parse(&["*"]).is_err());
    }

    #[test]
    fn globs_match_names_not_addresses() {
        let p = AllowedTargets::parse(&["*.db.example.com", "exact.example.org"]).expect("parse");
        assert_eq!(allowed(&p, "pg1.db.example.com", &["203.0.113.5"]), Ok(()));
        assert_eq!(allowed(&p, "a.b.DB.Example.com.", &["203.0.113.5"]), Ok(()));
        assert_eq!(allowed(&p, "exact.example.org", &["203.0.113.6"]), Ok(()));
        assert!(
            allowed(&p, "db.example.com", &["203.0.113.5"]).is_err(),
            "*. needs a label"
        );
        assert!(allowed(&p, "evil-db.example.com", &["203.0.113.5"]).is_err());
        assert!(allowed(&p, "pg1.db.example.com.evil.net", &["203.0.113.5"]).is_err());
        assert!(allowed(&p, "x.exact.example.org", &["203.0.113.6"]).is_err());
        // A glob never admits an IP literal, even one that looks like it matches.
        let any_digits = AllowedTargets::parse(&["*.5"]).expect("parse");
        assert!(allowed(&any_digits, "203.0.113.5", &["203.0.113.5"]).is_err());
        assert!(glob_match("a*b*c", "axxbyyc") && !glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("*", "") && glob_match("ab*", "ab") && !glob_match("ab*ba", "aba"));
    }

    #[test]
    fn the_deny_list_wins_over_globs_and_broad_nets_unless_listed_explicitly() {
        let p = AllowedTargets::parse(&["*.internal", "0.0.0.0/0"]).expect("parse");
        let e = allowed(&p, "meta.internal", &["169.254.169.254"]).expect_err("glob");
        assert!(e.to_string().contains("metadata"), "{e}");
        assert!(allowed(&p, "x.internal", &["10.0.0.1", "fe80::1"]).is_err());

        let link_local = AllowedTargets::parse(&["169.254.0.0/16"]).expect("parse");
        assert_eq!(allowed(&link_local, "169.254.3.4", &["169.254.3.4"]), Ok(()));
        assert!(
            allowed(&link_local, "169.254.169.254", &["169.254.169.254"]).is_err(),
            "the metadata address needs its own entry"
        );
        let metadata = AllowedTargets::parse(&["169.254.169.254", "fe80::/64"]).expect("parse");
        assert_eq!(
            allowed(&metadata, "169.254.169.254", &["169.254.169.254"]),
            Ok(())
        );
        assert_eq!(allowed(&metadata, "fe80::1", &["fe80::1"]), Ok(()));
        assert!(allowed(&metadata, "169.254.3.4", &["169.254.3.4"]).is_err());
    }

    #[tokio::test]
    async fn resolve_checks_after_dns() {
        let narrow = AllowedTargets::parse(&["10.0.0.0/8"]).expect("parse");
        let e = narrow.resolve("localhost", 5432).await.expect_err("localhost");
        assert!(e.is_refused(), "{e}");
        let open = AllowedTargets::default();
        let addrs = open.resolve("localhost", 5432).await.expect("localhost");
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 5432),
            "{addrs:?}"
        );
        let e = open.resolve("169.254.169.254", 80).await.expect_err("metadata");
        assert!(e.is_refused());
    }
}
