//! Users and roles.

use super::{Result, StoreError};
use crate::validate::Role;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub login: String,
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub token_version: i32,
    pub created_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
    pub email: Option<String>,
}

const COLS: &str = "login, password_hash, role, disabled, token_version, created_at, last_login, email";

/// What `update` may change; `None` keeps the stored value.
#[derive(Debug, Default)]
pub struct UserChange {
    pub password_hash: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// `Some("")` removes the address.
    pub email: Option<String>,
}

pub async fn get(pool: &PgPool, login: &str) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM users WHERE login = $1"
    )))
    .bind(login)
    .fetch_optional(pool)
    .await?)
}

pub async fn list(pool: &PgPool) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM users ORDER BY login"
    )))
    .fetch_all(pool)
    .await?)
}

pub async fn count(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await?)
}

/// A new account; an existing login is a conflict.
pub async fn create(
    pool: &PgPool,
    login: &str,
    password_hash: &str,
    role: Role,
    email: Option<&str>,
) -> Result<UserRow> {
    let mut conn = pool.acquire().await?;
    let new = NewUser {
        login,
        password_hash,
        role,
        email,
        disabled: false,
        created_at: None,
    };
    create_in(&mut conn, &new).await
}

/// A user to insert: [`create`]'s fields, plus what an import carries over.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub login: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub email: Option<&'a str>,
    pub disabled: bool,
    /// `None`: now.
    pub created_at: Option<DateTime<Utc>>,
}

/// Inserts `u` on `conn` (the caller's transaction, for an import that is all or nothing).
pub async fn create_in(conn: &mut sqlx::PgConnection, u: &NewUser<'_>) -> Result<UserRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (login, password_hash, role, email, disabled, created_at)
         VALUES ($1, $2, $3, nullif($4, ''), $5, coalesce($6, now()))
         RETURNING {COLS}"
    )))
    .bind(u.login)
    .bind(u.password_hash)
    .bind(u.role.as_str())
    .bind(u.email)
    .bind(u.disabled)
    .bind(u.created_at)
    .fetch_one(conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("user {} already exists", u.login)),
        other => other,
    })
}

const LAST_ADMIN: &str = "this is the last enabled admin: it cannot be deleted, disabled or demoted";

/// Locks every enabled admin row, so that two concurrent changes cannot both remove "the other" admin.
async fn enabled_admins(tx: &mut sqlx::PgConnection) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT login FROM users WHERE role = 'admin' AND NOT disabled FOR UPDATE")
            .fetch_all(tx)
            .await?,
    )
}

/// Applies `change`. A new password, disabling or a role change bumps `token_version`, which revokes
/// the user's tokens, and revokes their refresh families.
pub async fn update(pool: &PgPool, login: &str, change: UserChange) -> Result<UserRow> {
    let mut tx = pool.begin().await?;
    let admins = enabled_admins(&mut tx).await?;
    let current: UserRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM users WHERE login = $1 FOR UPDATE"
    )))
    .bind(login)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    let loses_admin = current.role == "admin"
        && !current.disabled
        && (change.disabled == Some(true) || change.role.is_some_and(|r| r != Role::Admin));
    if loses_admin && admins.len() <= 1 {
        return Err(StoreError::Conflict(LAST_ADMIN.into()));
    }
    let revoke = change.password_hash.is_some()
        || change.disabled == Some(true)
        || change.role.is_some_and(|r| r.as_str() != current.role);
    let row: UserRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE users SET password_hash = coalesce($2, password_hash), role = coalesce($3, role),
                disabled = coalesce($4, disabled), token_version = token_version + $5::int,
                email = CASE WHEN $6::text IS NULL THEN email ELSE nullif($6, '') END,
                updated_at = now()
         WHERE login = $1 RETURNING {COLS}"
    )))
    .bind(login)
    .bind(change.password_hash)
    .bind(change.role.map(Role::as_str))
    .bind(change.disabled)
    .bind(i32::from(revoke))
    .bind(change.email)
    .fetch_one(&mut *tx)
    .await?;
    if revoke {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE login = $1 AND revoked_at IS NULL")
            .bind(login)
            .execute(&mut *tx)
            .await?;
    }
    super::tokens::notify_auth(&mut tx, login).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn delete(pool: &PgPool, login: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    let admins = enabled_admins(&mut tx).await?;
    if admins.len() <= 1 && admins.iter().any(|a| a == login) {
        return Err(StoreError::Conflict(LAST_ADMIN.into()));
    }
    let n = sqlx::query("DELETE FROM users WHERE login = $1")
        .bind(login)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    super::tokens::notify_auth(&mut tx, login).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn record_login(pool: &PgPool, login: &str) -> Result<()> {
    sqlx::query("UPDATE users SET last_login = now() WHERE login = $1")
        .bind(login)
        .execute(pool)
        .await?;
    Ok(())
}
