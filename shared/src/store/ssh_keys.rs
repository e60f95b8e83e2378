//! SSH keys used to reach monitored hosts. The private key is a Fernet token of the unencrypted
//! OpenSSH text; [`SshKeyRow`] does not carry it, so no listing can leak it by accident.

use super::{Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// One stored key without its private part.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SshKeyRow {
    pub id: Uuid,
    pub name: String,
    pub key_type: String,
    pub bits: Option<i32>,
    pub fingerprint: String,
    pub public_key: String,
    pub comment: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    /// Servers that log in with this key.
    pub servers_count: i64,
}

const COLS: &str = "id, name, key_type, bits, fingerprint, public_key, comment, description, created_at,
    created_by, (SELECT count(*) FROM servers s WHERE s.ssh_key_id = ssh_keys.id) AS servers_count";

/// A key to insert; `private_key_enc` is already a Fernet token.
pub struct NewSshKey {
    /// `None`: a new random id (an import keeps the original's, which its servers reference).
    pub id: Option<Uuid>,
    /// `None`: now.
    pub created_at: Option<DateTime<Utc>>,
    pub name: String,
    pub key_type: String,
    pub bits: Option<i32>,
    pub fingerprint: String,
    pub public_key: String,
    pub private_key_enc: String,
    pub comment: String,
    pub description: Option<String>,
    pub created_by: Option<String>,
}

impl std::fmt::Debug for NewSshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSshKey")
            .field("name", &self.name)
            .field("key_type", &self.key_type)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn name_clash(e: sqlx::Error, name: &str) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("an SSH key named {name} already exists")),
        other => other,
    }
}

pub async fn list(pool: &PgPool) -> Result<Vec<SshKeyRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM ssh_keys ORDER BY name"
    )))
    .fetch_all(pool)
    .await?)
}

/// The key whose fingerprint is `fingerprint`, if one is stored.
pub async fn by_fingerprint(pool: &PgPool, fingerprint: &str) -> Result<Option<SshKeyRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM ssh_keys WHERE fingerprint = $1 ORDER BY created_at LIMIT 1"
    )))
    .bind(fingerprint)
    .fetch_optional(pool)
    .await?)
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<SshKeyRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM ssh_keys WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// The Fernet token of the private key, for connecting only.
pub async fn private_key_enc(pool: &PgPool, id: Uuid) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT private_key_enc FROM ssh_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn create(pool: &PgPool, key: &NewSshKey) -> Result<SshKeyRow> {
    let mut conn = pool.acquire().await?;
    create_in(&mut conn, key).await
}

/// Inserts `key` on `conn` (the caller's transaction, for an import that is all or nothing).
pub async fn create_in(conn: &mut sqlx::PgConnection, key: &NewSshKey) -> Result<SshKeyRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ssh_keys (id, name, key_type, bits, fingerprint, public_key, private_key_enc, comment,
             created_by, description, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11, now())) RETURNING {COLS}"
    )))
    .bind(key.id.unwrap_or_else(Uuid::new_v4))
    .bind(&key.name)
    .bind(&key.key_type)
    .bind(key.bits)
    .bind(&key.fingerprint)
    .bind(&key.public_key)
    .bind(&key.private_key_enc)
    .bind(&key.comment)
    .bind(&key.created_by)
    .bind(&key.description)
    .bind(key.created_at)
    .fetch_one(conn)
    .await
    .map_err(|e| name_clash(e, &key.name))
}

/// Renames the key or changes its description; `None` keeps the stored value, `Some("")` clears the
/// description. The public key line keeps the comment it was created with: it is what was installed
/// on hosts.
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<SshKeyRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE ssh_keys SET name = coalesce($2, name),
             description = CASE WHEN $3::text IS NULL THEN description ELSE nullif($3, '') END
         WHERE id = $1 RETURNING {COLS}"
    )))
    .bind(id)
    .bind(name)
    .bind(description)
    .fetch_optional(pool)
    .await
    .map_err(|e| name_clash(e, name.unwrap_or_default()))?
    .ok_or(StoreError::NotFound)
}

/// Deletes the key unless a server uses it (the foreign key refuses; the message names the servers).
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<()> {
    let mut tx = pool.begin().await?;
    let users: Vec<String> =
        sqlx::query_scalar("SELECT name FROM servers WHERE ssh_key_id = $1 ORDER BY name FOR UPDATE")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    if !users.is_empty() {
        return Err(StoreError::Conflict(format!(
            "the key is used by server(s): {}",
            users.join(", ")
        )));
    }
    let n = sqlx::query("DELETE FROM ssh_keys WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict("the key is used by a server".into()),
            other => other,
        })?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    tx.commit().await?;
    Ok(())
}
