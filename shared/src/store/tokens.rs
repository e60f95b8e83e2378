//! Refresh-token families and revoked access tokens. Kept in the store so that a logout holds across
//! restarts and across every API instance on the same store.

use super::Result;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Channel notified (payload: the login, when known) by every change that can refuse a token: logout, a
/// refresh-token reuse, a user changed or deleted. The API's cache of [`AuthState`] listens on it.
pub const AUTH_CHANNEL: &str = "pgmon_auth";

/// Sends [`AUTH_CHANNEL`] as part of the caller's transaction, so it is delivered on commit only.
pub async fn notify_auth(conn: &mut sqlx::PgConnection, login: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(AUTH_CHANNEL)
        .bind(login)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a user's request may do: read from the store, or from the API's cache of it that
/// [`AUTH_CHANNEL`] keeps current.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthState {
    pub role: String,
    pub disabled: bool,
    pub token_version: i32,
    pub revoked: bool,
}

/// The user's current state and whether the token (`jti`) or its family was revoked; `None` when the
/// user no longer exists.
pub async fn auth_state(pool: &PgPool, login: &str, jti: Uuid, family: Uuid) -> Result<Option<AuthState>> {
    Ok(sqlx::query_as(
        "SELECT u.role, u.disabled, u.token_version,
                EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $2)
                OR EXISTS (SELECT 1 FROM refresh_tokens WHERE family = $3 AND revoked_at IS NOT NULL) AS revoked
         FROM users u WHERE u.login = $1",
    )
    .bind(login)
    .bind(jti)
    .bind(family)
    .fetch_optional(pool)
    .await?)
}

pub async fn insert_refresh(
    pool: &PgPool,
    jti: Uuid,
    family: Uuid,
    login: &str,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("INSERT INTO refresh_tokens (jti, family, login, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(jti)
        .bind(family)
        .bind(login)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The family's current refresh token is now `jti`: the one just inserted, or the successor the
    /// same token got within the grace window.
    Rotated { jti: Uuid },
    /// The token had been used already, before the grace window: the whole family is now revoked.
    Reused { family: Uuid },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Marks `jti` used and records its successor `new_jti`, atomically: of two parallel rotations of
/// one token exactly one inserts a successor, and the other gets that same successor if it comes
/// within `grace` of the first (two browser tabs sharing the cookie); later, presenting the used
/// token is reuse and revokes the family.
pub async fn rotate_refresh(
    pool: &PgPool,
    jti: Uuid,
    new_jti: Uuid,
    expires_at: DateTime<Utc>,
    grace: std::time::Duration,
) -> Result<Rotation> {
    let mut tx = pool.begin().await?;
    let won: Option<(Uuid, String)> = sqlx::query_as(
        "UPDATE refresh_tokens SET used_at = now(), replaced_by = $2
         WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
         RETURNING family, login",
    )
    .bind(jti)
    .bind(new_jti)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((family, login)) = won {
        sqlx::query("INSERT INTO refresh_tokens (jti, family, login, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(new_jti)
            .bind(family)
            .bind(login)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(Rotation::Rotated { jti: new_jti });
    }
    // A separate statement: under READ COMMITTED it sees the rotation a concurrent caller committed.
    let used: Option<(Uuid, Option<Uuid>, bool)> = sqlx::query_as(
        "SELECT t.family, t.replaced_by,
                t.used_at > now() - make_interval(secs => $2) AND t.revoked_at IS NULL
                AND EXISTS (SELECT 1 FROM refresh_tokens s WHERE s.jti = t.replaced_by
                              AND s.revoked_at IS NULL AND s.expires_at > now())
         FROM refresh_tokens t WHERE t.jti = $1 AND t.used_at IS NOT NULL",
    )
    .bind(jti)
    .bind(grace.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((family, successor, in_grace)) = used else {
        return Ok(Rotation::Invalid);
    };
    if let (Some(next), true) = (successor, in_grace) {
        tx.commit().await?;
        return Ok(Rotation::Rotated { jti: next });
    }
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL")
        .bind(family)
        .execute(&mut *tx)
        .await?;
    notify_auth(&mut tx, "").await?;
    tx.commit().await?;
    Ok(Rotation::Reused { family })
}

/// Revokes a whole refresh family (logout with only a refresh cookie, or an expired access token).
pub async fn revoke_family(pool: &PgPool, family: Uuid) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL")
        .bind(family)
        .execute(&mut *tx)
        .await?;
    notify_auth(&mut tx, "").await?;
    tx.commit().await?;
    Ok(())
}

/// Logout: revokes the access token and its refresh family.
pub async fn revoke(
    pool: &PgPool,
    access_jti: Uuid,
    access_expires: DateTime<Utc>,
    family: Uuid,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(access_jti)
        .bind(access_expires)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL")
        .bind(family)
        .execute(&mut *tx)
        .await?;
    notify_auth(&mut tx, "").await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes revocation and refresh rows whose tokens have expired anyway. Returns the rows deleted.
pub async fn purge_expired(pool: &PgPool) -> Result<u64> {
    let a = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < now()")
        .execute(pool)
        .await?
        .rows_affected();
    // A family stays recorded while any of its tokens could still be presented.
    let b = sqlx::query(
        "DELETE FROM refresh_tokens r WHERE r.expires_at < now() - interval '1 day'
           AND NOT EXISTS (SELECT 1 FROM refresh_tokens n WHERE n.family = r.family AND n.expires_at >= now())",
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(a + b)
}
