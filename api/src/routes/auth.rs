//! `/token`, `/refresh`, `/logout`: the original's paths and token response shape.
//!
//! As the original's clients expect: `/logout` needs no valid token (a client whose session is lost
//! still logs out, and must not get a 401 that sends it to `/refresh` again), and two refreshes of
//! one refresh token within `api.refresh_reuse_grace_secs` (two tabs sharing the cookie) both succeed.

use crate::auth::guard::client_meta;
use crate::auth::jwt::{Claims, TokenKind};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{Duration, Utc};
use pgmon_shared::store::audit::{self, Actor, event};
use pgmon_shared::store::{tokens, users};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Cookie;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use uuid::Uuid;

/// The cookie that carries the refresh token.
pub const REFRESH_COOKIE: &str = "refresh_token";

#[derive(Tags)]
enum Tag {
    /// Log in, refresh and log out.
    Auth,
}

/// OAuth2 password grant, as Swagger UI and the original's clients send it.
#[derive(Debug, Object, serde::Deserialize)]
pub struct TokenForm {
    pub username: String,
    pub password: String,
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

#[derive(Debug, Object)]
pub struct TokenBody {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

#[derive(Debug, Object)]
pub struct Detail {
    pub detail: String,
}

#[derive(ApiResponse)]
pub enum TokenResponse {
    /// The access token; the refresh token is set as an HttpOnly cookie.
    #[oai(status = 200)]
    Ok(
        Json<TokenBody>,
        #[oai(header = "Set-Cookie")] String,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
pub enum LogoutResponse {
    /// Tokens revoked and the refresh cookie cleared.
    #[oai(status = 200)]
    Ok(Json<Detail>, #[oai(header = "Set-Cookie")] String),
}

pub struct AuthApi;

struct Issued {
    access: String,
    access_jti: Uuid,
    refresh: String,
    expires_in: i64,
}

fn issue(
    state: &AppState,
    login: &str,
    role: &str,
    ver: i32,
    family: Uuid,
    refresh_jti: Uuid,
) -> ApiResult<Issued> {
    let now = Utc::now();
    let access_ttl = Duration::minutes(i64::from(state.cfg.api.token_expiration_minutes));
    let refresh_ttl = Duration::days(i64::from(state.cfg.api.refresh_token_expiration_days));
    let mk = |kind, jti, ttl: Duration| Claims {
        sub: login.to_string(),
        role: role.to_string(),
        iat: now.timestamp(),
        exp: (now + ttl).timestamp(),
        jti,
        kind,
        fam: family,
        ver,
    };
    let access_jti = Uuid::new_v4();
    let access = state
        .jwt
        .issue(&mk(TokenKind::Access, access_jti, access_ttl))
        .map_err(ApiError::internal)?;
    let refresh = state
        .jwt
        .issue(&mk(TokenKind::Refresh, refresh_jti, refresh_ttl))
        .map_err(ApiError::internal)?;
    Ok(Issued {
        access,
        access_jti,
        refresh,
        expires_in: access_ttl.num_seconds(),
    })
}

fn refresh_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let secure = if state.cfg.api.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!("{REFRESH_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

fn respond(state: &AppState, t: Issued) -> TokenResponse {
    let max_age = i64::from(state.cfg.api.refresh_token_expiration_days) * 86_400;
    TokenResponse::Ok(
        Json(TokenBody {
            access_token: t.access,
            token_type: "bearer".into(),
            expires_in: t.expires_in,
        }),
        refresh_cookie(state, &t.refresh, max_age),
        "no-store".into(),
    )
}

pub(crate) fn actor(req: &Request, login: Option<&str>) -> Actor {
    let (ip, ua) = client_meta(req);
    Actor {
        login: login.map(|l| l.chars().take(128).collect()),
        client_ip: ip.map(|i| i.to_string()),
        user_agent: ua,
    }
}

/// Audit writes never fail the request they describe; a failure is logged.
pub async fn record(state: &AppState, ev: &str, who: &Actor, details: Option<&str>) {
    record_jti(state, ev, who, details, None).await
}

/// [`record`] with the id of the access token the event issued or revoked.
pub async fn record_jti(state: &AppState, ev: &str, who: &Actor, details: Option<&str>, jti: Option<Uuid>) {
    let jti = jti.map(|j| j.to_string());
    if let Err(e) = audit::record(&state.pool, ev, who, details, jti.as_deref()).await {
        tracing::warn!(event = ev, error = %e, "audit write failed");
    }
}

#[OpenApi(tag = "Tag::Auth")]
impl AuthApi {
    /// Log in (OAuth2 password grant).
    ///
    /// Unknown logins and wrong passwords get the same answer. Attempts are limited per (login,
    /// client IP) and per client IP (`api.login_attempts_per_minute`, `_per_ip`); a login's recent
    /// failures only slow its next attempts down (at most 2 s), so nobody can lock a user out.
    #[oai(path = "/token", method = "post")]
    async fn token(
        &self,
        state: Data<&AppState>,
        req: &Request,
        form: Form<TokenForm>,
    ) -> ApiResult<TokenResponse> {
        let Form(form) = form;
        let who = actor(req, Some(&form.username));
        let (ip, ua) = client_meta(req);
        if let Err(wait) = state.limiter.check(&form.username, ip) {
            state
                .limiter
                .refusals
                .record(&state.pool, ip, &form.username, ua)
                .await;
            return Err(ApiError::too_many(wait));
        }
        let delay = state.limiter.delay(&form.username);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let user = if pgmon_shared::validate::is_valid_login(&form.username) {
            users::get(&state.pool, &form.username).await?
        } else {
            None
        };
        let usable = user.as_ref().filter(|u| !u.disabled);
        let ok = state
            .hasher
            .verify(form.password, usable.map(|u| u.password_hash.clone()))
            .await;
        let Some(user) = usable.filter(|_| ok) else {
            let reason = match &user {
                None => "unknown login",
                Some(u) if u.disabled => "disabled",
                Some(_) => "wrong password",
            };
            state.limiter.failed(&form.username);
            record(&state, event::LOGIN_FAILED, &who, Some(reason)).await;
            // The original's text: its clients compare `detail` with it.
            return Err(ApiError::unauthorized("Invalid credentials"));
        };
        let family = Uuid::new_v4();
        let refresh_jti = Uuid::new_v4();
        let issued = issue(
            &state,
            &user.login,
            &user.role,
            user.token_version,
            family,
            refresh_jti,
        )?;
        let expires = Utc::now() + Duration::days(i64::from(state.cfg.api.refresh_token_expiration_days));
        tokens::insert_refresh(&state.pool, refresh_jti, family, &user.login, expires).await?;
        users::record_login(&state.pool, &user.login).await?;
        record_jti(&state, event::LOGIN_SUCCESS, &who, None, Some(issued.access_jti)).await;
        Ok(respond(&state, issued))
    }

    /// New access token from the refresh cookie; the refresh token is rotated.
    ///
    /// Presenting a refresh token that was already used revokes its whole family.
    #[oai(path = "/refresh", method = "post")]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        req: &Request,
        #[oai(name = "refresh_token")] cookie: Cookie<Option<String>>,
    ) -> ApiResult<TokenResponse> {
        let invalid = || ApiError::unauthorized("invalid or expired refresh token");
        let token = cookie
            .0
            .ok_or_else(|| ApiError::unauthorized("no refresh token cookie"))?;
        let claims = state.jwt.verify(&token, TokenKind::Refresh).ok_or_else(invalid)?;
        let who = actor(req, Some(&claims.sub));
        let user = users::get(&state.pool, &claims.sub).await?.ok_or_else(invalid)?;
        if user.disabled || user.token_version != claims.ver {
            return Err(invalid());
        }
        let new_jti = Uuid::new_v4();
        let expires = Utc::now() + Duration::days(i64::from(state.cfg.api.refresh_token_expiration_days));
        let grace = std::time::Duration::from_secs(u64::from(state.cfg.api.refresh_reuse_grace_secs));
        match tokens::rotate_refresh(&state.pool, claims.jti, new_jti, expires, grace).await? {
            tokens::Rotation::Rotated { jti } => {
                let issued = issue(
                    &state,
                    &user.login,
                    &user.role,
                    user.token_version,
                    claims.fam,
                    jti,
                )?;
                record_jti(&state, event::REFRESH, &who, None, Some(issued.access_jti)).await;
                Ok(respond(&state, issued))
            }
            tokens::Rotation::Reused { family } => {
                // Revoked tokens of this family may be cached: drop them before answering.
                state.cache.invalidate();
                let details = format!("refresh token reused; family {family} revoked");
                record(&state, event::REFRESH_REUSE, &who, Some(&details)).await;
                Err(invalid())
            }
            tokens::Rotation::Invalid => Err(invalid()),
        }
    }

    /// Revokes what the request carries (the bearer access token and the refresh cookie, with their
    /// refresh families, expired or not) and clears the cookie. Always 200: a client whose session
    /// is already gone still logs out cleanly.
    #[oai(path = "/logout", method = "post")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        req: &Request,
        #[oai(name = "refresh_token")] cookie: Cookie<Option<String>>,
    ) -> ApiResult<LogoutResponse> {
        let bearer = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .and_then(|t| state.jwt.verify_any_time(t.trim(), TokenKind::Access));
        let refresh = cookie
            .0
            .as_deref()
            .and_then(|t| state.jwt.verify_any_time(t, TokenKind::Refresh));
        let mut login = None;
        if let Some(c) = &bearer {
            if c.expires_at() > Utc::now() {
                tokens::revoke(&state.pool, c.jti, c.expires_at(), c.fam).await?;
            } else {
                tokens::revoke_family(&state.pool, c.fam).await?;
            }
            login = Some(c.sub.clone());
        }
        if let Some(c) = refresh
            .as_ref()
            .filter(|r| bearer.as_ref().is_none_or(|b| b.fam != r.fam))
        {
            tokens::revoke_family(&state.pool, c.fam).await?;
            login = login.or(Some(c.sub.clone()));
        }
        if let Some(l) = &login {
            // The revoked tokens may be cached: drop them before the client's next request.
            state.cache.invalidate();
            record_jti(
                &state,
                event::LOGOUT,
                &actor(req, Some(l)),
                None,
                bearer.map(|b| b.jti),
            )
            .await;
        }
        Ok(LogoutResponse::Ok(
            Json(Detail {
                detail: "Logged out".into(),
            }),
            refresh_cookie(&state, "", 0),
        ))
    }
}
