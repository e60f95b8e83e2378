//! Authentication of API calls: the bearer access token is verified, then checked against the store
//! (revocation, the user's current role, `disabled` and `token_version`) on every request, so a logout
//! or a demotion takes effect at once on every API instance. The store's answer may come from
//! [`crate::store_cache`], which every such change empties.

use super::jwt::{Claims, TokenKind};
use crate::error::ApiError;
use crate::state::AppState;
use pgmon_shared::store::tokens;
use pgmon_shared::validate::Role;
use poem::Request;
use poem::http::{HeaderMap, HeaderName};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub login: String,
    pub role: Role,
    pub claims: Claims,
}

/// OAuth2 password flow, so Swagger UI's Authorize button logs in through `/token`.
#[derive(SecurityScheme)]
#[oai(
    ty = "oauth2",
    flows(password(token_url = "/token")),
    checker = "check_bearer"
)]
pub struct Auth(pub Principal);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let principal = authenticate(state, &bearer.token).await?;
    if let Some(mark) = req.extensions().get::<AuthenticatedMark>() {
        mark.0.store(true, Ordering::Release);
    }
    Ok(principal)
}

/// Put on a write request by the app's middleware and set once a bearer token is accepted: only an
/// authenticated caller's successful write empties the caches (see `app::invalidate_after_writes`).
#[derive(Clone, Default)]
pub struct AuthenticatedMark(Arc<AtomicBool>);

impl AuthenticatedMark {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let invalid = || ApiError::unauthorized("invalid or expired token");
    let claims = state.jwt.verify(token, TokenKind::Access).ok_or_else(invalid)?;
    let current = match state.cache.auth(claims.jti) {
        Some(c) => c,
        None => {
            let read_at = state.cache.generation();
            let c = tokens::auth_state(&state.pool, &claims.sub, claims.jti, claims.fam)
                .await?
                .ok_or_else(invalid)?;
            state.cache.put_auth(claims.jti, c.clone(), read_at);
            c
        }
    };
    if current.revoked || current.disabled || current.token_version != claims.ver {
        return Err(invalid());
    }
    let role = current.role.parse().map_err(ApiError::internal)?;
    Ok(Principal {
        login: claims.sub.clone(),
        role,
        claims,
    })
}

impl Auth {
    /// Refuses with 403 unless the caller has at least `min`.
    pub fn require(&self, min: Role) -> Result<&Principal, ApiError> {
        if self.0.role >= min {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!(
                "this operation needs the {} role",
                min.as_str()
            )))
        }
    }
    pub fn admin(&self) -> Result<&Principal, ApiError> {
        self.require(Role::Admin)
    }
    pub fn operator(&self) -> Result<&Principal, ApiError> {
        self.require(Role::Operator)
    }
}

/// Client IP and user agent for the audit and the login throttle.
pub fn client_meta(req: &Request) -> (Option<IpAddr>, Option<String>) {
    let ua = req
        .headers()
        .get(poem::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (client_ip(req), ua)
}

/// The client's IP: the one function behind login limits, audit IPs, `metrics.allow` and logs.
///
/// The TCP peer's, unless the peer is in `api.trusted_proxies` (default: none). Then only
/// `api.client_ip_header` is read, because it is the one header the proxy overwrites or appends
/// to: any other forwarded header still holds what the client chose. See [`resolve_client_ip`].
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`: compare them as IPv4.
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip().to_canonical());
    let state = req.data::<AppState>()?;
    resolve_client_ip(
        peer,
        req.headers(),
        &state.client_ip_header,
        &state.trusted_proxies,
    )
}

/// [`client_ip`] on its parts.
///
/// `X-Forwarded-For` is a list each proxy appends its peer to, so only its right end is written by
/// proxies we trust: walking from the right, the first address that is not a trusted proxy is the
/// client (everything left of it came from that client). If that entry is not an address (`unknown`,
/// garbage), the peer is kept rather than walking further into client-chosen text. If every entry is
/// a trusted proxy, the left-most is the client. Any other header (`X-Real-IP`) is one value the
/// proxy sets: its right-most item is used, else the peer.
pub fn resolve_client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    header: &HeaderName,
    trusted_proxies: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    let Some(p) = peer.filter(|p| trusted(p)) else {
        return peer;
    };
    // Several header lines are one list, in order (RFC 9110 5.3).
    let items: Vec<&str> = headers
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if *header == poem::http::header::HeaderName::from_static("x-forwarded-for") {
        for item in items.iter().rev() {
            match parse_hop(item) {
                Some(ip) if trusted(&ip) => continue,
                Some(ip) => return Some(ip),
                None => return Some(p),
            }
        }
        return items.first().and_then(|i| parse_hop(i)).or(Some(p));
    }
    items.last().and_then(|i| parse_hop(i)).or(Some(p))
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]:443`, `192.0.2.1:80`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn resolve(peer: &str, header: &str, sent: &[(&str, &str)], trusted: &[&str]) -> IpAddr {
        let mut h = HeaderMap::new();
        for (k, v) in sent {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let nets: Vec<ipnet::IpNet> = trusted.iter().map(|t| t.parse().expect("net")).collect();
        let name = HeaderName::from_bytes(header.as_bytes()).expect("name");
        resolve_client_ip(Some(ip(peer)), &h, &name, &nets).expect("an address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let sent = [("x-forwarded-for", "203.0.113.9"), ("x-real-ip", "203.0.113.8")];
        assert_eq!(
            resolve("127.0.0.1", "X-Forwarded-For", &sent, &[]),
            ip("127.0.0.1")
        );
        assert_eq!(
            resolve("192.0.2.7", "X-Real-IP", &sent, &["10.0.0.0/8"]),
            ip("192.0.2.7")
        );
    }

    #[test]
    fn forwarded_for_is_walked_from_the_right_past_trusted_proxies() {
        let t = ["127.0.0.0/8", "10.0.0.0/8"];
        let xff = |v: &'static str| [("x-forwarded-for", v), ("x-real-ip", "203.0.113.8")];
        let r = |v| resolve("127.0.0.1", "X-Forwarded-For", &xff(v), &t);
        assert_eq!(r("1.2.3.4, 198.51.100.4, 10.1.1.1"), ip("198.51.100.4"));
        assert_eq!(r("198.51.100.4"), ip("198.51.100.4"));
        assert_eq!(
            r("10.2.2.2, 10.1.1.1"),
            ip("10.2.2.2"),
            "all trusted: the left-most"
        );
        assert_eq!(
            r("198.51.100.4, unknown, 10.1.1.1"),
            ip("127.0.0.1"),
            "no walking past junk"
        );
        assert_eq!(r("[2001:db8::1]:443"), ip("2001:db8::1"));
        // Two header lines are one list.
        let two = [
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-for", "198.51.100.5, 10.0.0.1"),
        ];
        assert_eq!(
            resolve("127.0.0.1", "x-forwarded-for", &two, &t),
            ip("198.51.100.5")
        );
        // No header: the peer.
        assert_eq!(
            resolve(
                "127.0.0.1",
                "X-Forwarded-For",
                &[("x-real-ip", "203.0.113.8")],
                &t
            ),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn another_header_is_read_only_when_configured() {
        let sent = [("x-forwarded-for", "198.51.100.4"), ("x-real-ip", "203.0.113.8")];
        assert_eq!(
            resolve("127.0.0.1", "X-Real-IP", &sent, &["127.0.0.1/32"]),
            ip("203.0.113.8")
        );
        let junk = [("x-client", "not an ip")];
        assert_eq!(
            resolve("127.0.0.1", "X-Client", &junk, &["127.0.0.1/32"]),
            ip("127.0.0.1")
        );
    }
}
