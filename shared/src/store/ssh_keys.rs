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
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

const COLS: &str = "id, name, key_type, bits, fingerprint, public_key, comment, created_at, created_by";

/// A key to insert; `private_key_enc` is already a Fernet token.
pub struct NewSshKey {
    pub name: String,
    pub key_type: String,
    pub bits: Option<i32>,
    pub fingerprint: String,
    pub public_key: String,
    pub private_key_enc: String,
    pub comment: String,
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
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ssh_keys (id, name, key_type, bits, fingerprint, public_key, private_key_enc, comment,
             created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLS}"
    )))
    .bind(Uuid::new_v4())
    .bind(&key.name)
    .bind(&key.key_type)
    .bind(key.bits)
    .bind(&key.fingerprint)
    .bind(&key.public_key)
    .bind(&key.private_key_enc)
    .bind(&key.comment)
    .bind(&key.created_by)
    .fetch_one(pool)
    .await
    .map_err(|e| name_clash(e, &key.name))
}

/// Renames the key or changes its comment; `None` keeps the stored value. The public key line keeps
/// the comment it was created with: it is what was installed on hosts.
pub async fn update(pool: &PgPool, id: Uuid, name: Option<&str>, comment: Option<&str>) -> Result<SshKeyRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE ssh_keys SET name = coalesce($2, name), comment = coalesce($3, comment) WHERE id = $1
         RETURNING {COLS}"
    )))
    .bind(id)
    .bind(name)
    .bind(comment)
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
