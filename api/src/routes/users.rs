//! `/users`: accounts and roles (admin), and `/users/me` (any role).

use super::auth::{actor as request_actor, record};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::store::audit::event;
use pgmon_shared::store::users::{self, UserChange, UserRow};
use pgmon_shared::validate::{self, Role};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use serde_json::json;

#[derive(Tags)]
enum Tag {
    /// Accounts and roles.
    Users,
}

#[derive(Debug, Clone, Copy, Enum, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
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

#[derive(Debug, Object)]
pub struct UserOut {
    pub login: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

impl From<UserRow> for UserOut {
    fn from(u: UserRow) -> Self {
        Self {
            login: u.login,
            role: u.role,
            disabled: u.disabled,
            created_at: u.created_at,
            last_login: u.last_login,
        }
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct UserCreate {
    /// `^[A-Za-z0-9_.@-]{1,64}$`
    pub login: String,
    /// 8 to 72 bytes.
    #[oai(write_only)]
    pub password: String,
    pub role: ApiRole,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct UserUpdate {
    #[oai(write_only)]
    pub password: Option<String>,
    pub role: Option<ApiRole>,
    pub disabled: Option<bool>,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Json<UserOut>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Deleted,
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

    /// Create a user (admin).
    #[oai(path = "/users", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: Json<UserCreate>,
    ) -> ApiResult<Created> {
        let me = auth.admin()?;
        let Json(body) = body;
        check_login(&body.login)?;
        validate::check_password(&body.password).map_err(ApiError::bad_request)?;
        let hash = state
            .hasher
            .hash(body.password)
            .await
            .map_err(ApiError::internal)?;
        let user = users::create(&state.pool, &body.login, &hash, body.role.into()).await?;
        record(
            &state,
            event::USER_CREATED,
            &request_actor(req, Some(&me.login)),
            json!({ "target": user.login, "role": user.role }),
        )
        .await;
        Ok(Created::Created(Json(user.into())))
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

    /// Change a user's password, role or disabled flag (admin).
    ///
    /// A new password, disabling or a role change revokes the user's tokens. The last enabled admin
    /// cannot be disabled or demoted (409).
    #[oai(path = "/users/:login", method = "put")]
    async fn update(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        login: Path<String>,
        body: Json<UserUpdate>,
    ) -> ApiResult<Json<UserOut>> {
        let me = auth.admin()?;
        let Json(body) = body;
        let password_hash = match body.password {
            Some(p) => {
                validate::check_password(&p).map_err(ApiError::bad_request)?;
                Some(state.hasher.hash(p).await.map_err(ApiError::internal)?)
            }
            None => None,
        };
        let changed: Vec<&str> = [
            password_hash.as_ref().map(|_| "password"),
            body.role.map(|_| "role"),
            body.disabled.map(|_| "disabled"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let change = UserChange {
            password_hash,
            role: body.role.map(Role::from),
            disabled: body.disabled,
        };
        let user = users::update(&state.pool, &login, change)
            .await
            .map_err(|e| match e {
                pgmon_shared::store::StoreError::NotFound => not_found(&login),
                e => e.into(),
            })?;
        record(
            &state,
            event::USER_UPDATED,
            &request_actor(req, Some(&me.login)),
            json!({ "target": user.login, "changed": changed, "role": user.role, "disabled": user.disabled }),
        )
        .await;
        Ok(Json(user.into()))
    }

    /// Delete a user (admin). The last enabled admin cannot be deleted (409).
    #[oai(path = "/users/:login", method = "delete")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        login: Path<String>,
    ) -> ApiResult<Deleted> {
        let me = auth.admin()?;
        users::delete(&state.pool, &login).await.map_err(|e| match e {
            pgmon_shared::store::StoreError::NotFound => not_found(&login),
            e => e.into(),
        })?;
        record(
            &state,
            event::USER_DELETED,
            &request_actor(req, Some(&me.login)),
            json!({ "target": login.0 }),
        )
        .await;
        Ok(Deleted::Deleted)
    }
}
