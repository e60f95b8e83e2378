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
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

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
    Ok(authenticate(state, &bearer.token).await?)
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
///
/// The IP is the TCP peer's unless the peer is a trusted proxy (`api.trusted_proxies`, default
/// loopback: the original was deployed behind nginx on the same host). Then `X-Real-IP` names the
/// client, else the right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
/// An untrusted peer's forwarded headers are ignored: anybody can send them.
pub fn client_meta(req: &Request) -> (Option<std::net::IpAddr>, Option<String>) {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let trusted = |ip: &std::net::IpAddr| {
        req.data::<AppState>()
            .is_some_and(|s| s.trusted_proxies.iter().any(|n| n.contains(ip)))
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ip = match peer {
        Some(p) if trusted(&p) => header("x-real-ip")
            .and_then(|v| v.trim().parse().ok())
            .or_else(|| {
                header("x-forwarded-for").and_then(|v| {
                    let hops: Vec<std::net::IpAddr> =
                        v.split(',').filter_map(|h| h.trim().parse().ok()).collect();
                    hops.iter().rev().find(|h| !trusted(h)).or(hops.first()).copied()
                })
            })
            .or(Some(p)),
        other => other,
    };
    (ip, header("user-agent"))
}
