//! `/users`: accounts and roles (admin), and `/users/me` (any role).

use super::Message;
use super::auth::{actor as request_actor, record};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::payload::JsonBody;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::store::audit::event;
use pgmon_shared::store::users::{self, UserChange, UserRow};
use pgmon_shared::validate::{self, Role};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi, Tags};

#[derive(Tags)]
enum Tag {
    /// Accounts and roles.
    Users,
}

#[derive(Debug, Clone, Copy, Enum, PartialEq, Eq, serde::Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    Admin,
    Operator,
    Viewer,
}

impl From<ApiRole> for Role {
    fn from(r: ApiRole) -> Self {
        match r {
            ApiRole::Admin => Role::Admin,
            ApiRole::Operator => Role::Operator,
            ApiRole::Viewer => Role::Viewer,
        }
    }
}

/// A user as the original's clients read it.
#[derive(Debug, Object)]
pub struct UserOut {
    pub login: String,
    pub role: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
    /// False when the account is disabled: it cannot log in and its tokens are refused.
    pub is_active: bool,
}

impl From<UserRow> for UserOut {
    fn from(u: UserRow) -> Self {
        Self {
            login: u.login,
            role: u.role,
            email: u.email,
            created_at: u.created_at,
            last_login: u.last_login,
            is_active: !u.disabled,
        }
    }
}

#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    #[oai(validator(pattern = r"^[A-Za-z0-9_.@-]{1,64}$"))]
    pub login: String,
    #[oai(
        write_only,
        validator(min_length = 8, max_length = 1024, pattern = r"^[^\x00]*$")
    )]
    pub password: String,
    /// Default `viewer`.
    pub role: Option<ApiRole>,
    /// `null` or `""` for none.
    #[oai(validator(
        max_length = 254,
        pattern = r"^$|^[^\x00-\x1f\x7f-\x9f]*@[^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub email: Option<String>,
}

#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// A new password; revokes the user's tokens.
    #[oai(
        write_only,
        validator(min_length = 8, max_length = 1024, pattern = r"^[^\x00]*$")
    )]
    pub password: Option<String>,
    pub role: Option<ApiRole>,
    /// `null` keeps the stored address, `""` removes it.
    #[oai(validator(
        max_length = 254,
        pattern = r"^$|^[^\x00-\x1f\x7f-\x9f]*@[^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub email: Option<String>,
    /// `false` disables the account and revokes its tokens.
    pub is_active: Option<bool>,
}

fn check_email(email: Option<&str>) -> ApiResult<()> {
    match email {
        Some(e) if e.chars().count() > 254 || e.chars().any(char::is_control) => Err(ApiError::bad_request(
            "email must be at most 254 characters without control characters",
        )),
        Some(e) if !e.is_empty() && !e.contains('@') => Err(ApiError::bad_request(
            "email must be an address such as name@example.com",
        )),
        _ => Ok(()),
    }
}

/// What an update changed, for the audit (never the password itself).
fn update_details(login: &str, body: &UserUpdate, before: &UserRow) -> String {
    let mut parts = Vec::new();
    if let Some(r) = body.role.map(Role::from).filter(|r| r.as_str() != before.role) {
        parts.push(format!("role {} -> {}", before.role, r.as_str()));
    }
    if let Some(e) = body
        .email
        .as_deref()
        .filter(|e| Some(*e) != before.email.as_deref().or(Some("")))
    {
        parts.push(format!(
            "email {} -> {}",
            before.email.as_deref().unwrap_or("(none)"),
            if e.is_empty() { "(none)" } else { e }
        ));
    }
    if body.password.is_some() {
        parts.push("password changed".into());
    }
    if let Some(a) = body.is_active.filter(|a| *a == before.disabled) {
        parts.push(format!("active {} -> {a}", !a));
    }
    if parts.is_empty() {
        format!("user {login}: nothing changed")
    } else {
        format!("user {login}: {}", parts.join(", "))
    }
}

fn check_login(login: &str) -> ApiResult<()> {
    if validate::is_valid_login(login) {
        Ok(())
    } else {
        Err(ApiError::bad_request("login must match ^[A-Za-z0-9_.@-]{1,64}$"))
    }
}

fn not_found(login: &str) -> ApiError {
    ApiError::not_found(format!("user {login} not found"))
}

pub struct UsersApi;

#[OpenApi(tag = "Tag::Users")]
impl UsersApi {
    /// All users (admin).
    #[oai(path = "/users", method = "get")]
    async fn list(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<Vec<UserOut>>> {
        auth.admin()?;
        Ok(Json(
            users::list(&state.pool)
                .await?
                .into_iter()
                .map(UserOut::from)
                .collect(),
        ))
    }

    /// Create a user (admin). 409 if the login is taken.
    #[oai(path = "/users", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: JsonBody<UserCreate>,
    ) -> ApiResult<Json<UserOut>> {
        let me = auth.admin()?;
        let JsonBody(body) = body;
        check_login(&body.login)?;
        validate::check_password(&body.password).map_err(ApiError::bad_request)?;
        check_email(body.email.as_deref())?;
        let hash = state
            .hasher
            .hash(body.password)
            .await
            .map_err(ApiError::internal)?;
        let role = body.role.unwrap_or(ApiRole::Viewer).into();
        let user = users::create(&state.pool, &body.login, &hash, role, body.email.as_deref()).await?;
        let details = format!("user {} ({})", user.login, user.role);
        record(
            &state,
            event::USER_CREATE,
            &request_actor(req, Some(&me.login)),
            Some(&details),
        )
        .await;
        Ok(Json(user.into()))
    }

    /// The caller's own account (any role).
    #[oai(path = "/users/me", method = "get")]
    async fn me(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<UserOut>> {
        let user = users::get(&state.pool, &auth.0.login)
            .await?
            .ok_or_else(|| not_found(&auth.0.login))?;
        Ok(Json(user.into()))
    }

    /// One user (admin).
    #[oai(path = "/users/:login", method = "get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth, login: Path<String>) -> ApiResult<Json<UserOut>> {
        auth.admin()?;
        let user = users::get(&state.pool, &login)
            .await?
            .ok_or_else(|| not_found(&login))?;
        Ok(Json(user.into()))
    }

    /// Change a user's password, role, e-mail or `is_active` (admin). Fields left out or `null` keep
    /// their stored values.
    ///
    /// A new password, disabling or a role change revokes the user's tokens. The last active admin
    /// cannot be disabled or demoted (409).
    #[oai(path = "/users/:login", method = "put")]
    async fn update(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        login: Path<String>,
        body: JsonBody<UserUpdate>,
    ) -> ApiResult<Json<UserOut>> {
        let me = auth.admin()?;
        let JsonBody(body) = body;
        check_email(body.email.as_deref())?;
        let before = users::get(&state.pool, &login)
            .await?
            .ok_or_else(|| not_found(&login))?;
        let details = update_details(&login, &body, &before);
        let password_hash = match &body.password {
            Some(p) => {
                validate::check_password(p).map_err(ApiError::bad_request)?;
                Some(state.hasher.hash(p.clone()).await.map_err(ApiError::internal)?)
            }
            None => None,
        };
        let change = UserChange {
            password_hash,
            role: body.role.map(Role::from),
            disabled: body.is_active.map(|a| !a),
            email: body.email,
        };
        let user = users::update(&state.pool, &login, change)
            .await
            .map_err(|e| match e {
                pgmon_shared::store::StoreError::NotFound => not_found(&login),
                e => e.into(),
            })?;
        record(
            &state,
            event::USER_UPDATE,
            &request_actor(req, Some(&me.login)),
            Some(&details),
        )
        .await;
        Ok(Json(user.into()))
    }

    /// Delete a user (admin). Nobody deletes their own account, and the last active admin cannot be
    /// deleted (409).
    #[oai(path = "/users/:login", method = "delete")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        login: Path<String>,
    ) -> ApiResult<Json<Message>> {
        let me = auth.admin()?;
        if me.login == login.0 {
            return Err(ApiError::conflict("you cannot delete your own account"));
        }
        users::delete(&state.pool, &login).await.map_err(|e| match e {
            pgmon_shared::store::StoreError::NotFound => not_found(&login),
            e => e.into(),
        })?;
        let details = format!("user {}", login.0);
        record(
            &state,
            event::USER_DELETE,
            &request_actor(req, Some(&me.login)),
            Some(&details),
        )
        .await;
        Ok(Json(Message {
            message: format!("user {} deleted", login.0),
        }))
    }
}
