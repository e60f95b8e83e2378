//! Monitored servers. Secrets (the PostgreSQL password, the SSH password) are stored as Fernet tokens
//! and only decrypted in memory by whoever connects. Every change sends `NOTIFY pgmon_servers, '<name>'`
//! inside the changing transaction, so collectors reload exactly when the change is visible.

use super::{Result, StoreError};
use crate::crypto::{Crypto, DecryptError};
use crate::remote;
use crate::ssh::{SshAuth, SshTarget};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// The channel collectors `LISTEN` on; the payload is the server name.
pub const NOTIFY_CHANNEL: &str = "pgmon_servers";

/// One row of `servers`. The `*_enc` fields are Fernet tokens; Debug leaves them out.
#[derive(Clone, sqlx::FromRow)]
pub struct ServerRow {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: i32,
    pub dbname: String,
    pub username: String,
    pub password_enc: Option<String>,
    pub sslmode: String,
    pub pool: String,
    pub enabled: bool,
    pub description: String,
    pub ssh_enabled: bool,
    pub ssh_host: Option<String>,
    pub ssh_port: Option<i32>,
    pub ssh_username: Option<String>,
    pub ssh_key_id: Option<Uuid>,
    pub ssh_password_enc: Option<String>,
    pub ssh_data_path: Option<String>,
    pub ssh_host_key_fingerprint: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for ServerRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("username", &self.username)
            .field("has_password", &self.password_enc.is_some())
            .field("sslmode", &self.sslmode)
            .field("pool", &self.pool)
            .field("enabled", &self.enabled)
            .field("ssh_enabled", &self.ssh_enabled)
            .field("ssh_host", &self.ssh_host)
            .field("ssh_port", &self.ssh_port)
            .field("ssh_username", &self.ssh_username)
            .field("ssh_key_id", &self.ssh_key_id)
            .field("ssh_has_password", &self.ssh_password_enc.is_some())
            .field("ssh_data_path", &self.ssh_data_path)
            .field("ssh_host_key_fingerprint", &self.ssh_host_key_fingerprint)
            .finish_non_exhaustive()
    }
}

const COLS: &str =
    "id, name, host, port, dbname, username, password_enc, sslmode, pool, enabled, description,
    ssh_enabled, ssh_host, ssh_port, ssh_username, ssh_key_id, ssh_password_enc, ssh_data_path,
    ssh_host_key_fingerprint, created_at, updated_at";

/// What a write does to a stored secret. `Set` carries the Fernet token, never the plain text.
#[derive(Clone, Default)]
pub enum SecretChange {
    #[default]
    Keep,
    Clear,
    Set(String),
}

impl std::fmt::Debug for SecretChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretChange::Keep => "Keep",
            SecretChange::Clear => "Clear",
            SecretChange::Set(_) => "Set(<token>)",
        })
    }
}

impl SecretChange {
    /// (keep the stored value?, new value) as bound to the SQL below.
    fn binds(&self) -> (bool, Option<&str>) {
        match self {
            SecretChange::Keep => (true, None),
            SecretChange::Clear => (false, None),
            SecretChange::Set(t) => (false, Some(t.as_str())),
        }
    }
}

/// SSH settings of a server, validated and defaulted by the caller.
#[derive(Debug, Clone)]
pub struct SshSpec {
    /// False: the settings are kept but SSH is off until a credential is given again (its credentials
    /// were forgotten because the SSH endpoint changed).
    pub enabled: bool,
    /// `None`: the server's `host`, following it when it changes.
    pub host: Option<String>,
    pub port: i32,
    pub username: String,
    pub key_id: Option<Uuid>,
    pub password: SecretChange,
    pub data_path: String,
}

/// A whole server as written by create and update, validated and defaulted by the caller.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub name: String,
    pub host: String,
    pub port: i32,
    pub dbname: String,
    pub username: String,
    pub password: SecretChange,
    pub sslmode: String,
    pub pool: String,
    pub enabled: bool,
    pub description: String,
    /// `None` turns SSH off and forgets its settings, password and pinned host key.
    pub ssh: Option<SshSpec>,
}

pub async fn list(pool: &PgPool) -> Result<Vec<ServerRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM servers ORDER BY name"
    )))
    .fetch_all(pool)
    .await?)
}

pub async fn list_enabled(pool: &PgPool) -> Result<Vec<ServerRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM servers WHERE enabled ORDER BY name"
    )))
    .fetch_all(pool)
    .await?)
}

pub async fn get_by_name(pool: &PgPool, name: &str) -> Result<Option<ServerRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM servers WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(pool)
    .await?)
}

pub async fn get_by_id(pool: &PgPool, id: i64) -> Result<Option<ServerRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM servers WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Names of the servers that use SSH key `key_id`.
pub async fn names_using_key(pool: &PgPool, key_id: Uuid) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM servers WHERE ssh_key_id = $1 ORDER BY name")
            .bind(key_id)
            .fetch_all(pool)
            .await?,
    )
}

async fn notify(conn: &mut sqlx::PgConnection, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

fn map_write_error(e: sqlx::Error, name: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_foreign_key_violation() {
            return StoreError::Conflict("ssh.key_id names no stored SSH key".into());
        }
        if db.is_unique_violation() {
            return StoreError::Conflict(format!("server {name} already exists"));
        }
    }
    StoreError::from(e)
}

pub async fn create(pool: &PgPool, spec: &ServerSpec) -> Result<ServerRow> {
    let mut tx = pool.begin().await?;
    let row = create_in(&mut tx, spec).await?;
    tx.commit().await?;
    Ok(row)
}

/// Inserts `spec` and notifies collectors, on `conn`: the notification is delivered when the
/// caller's transaction commits (an import registers many servers, all or none).
pub async fn create_in(conn: &mut sqlx::PgConnection, spec: &ServerSpec) -> Result<ServerRow> {
    let ssh = spec.ssh.as_ref();
    let row: ServerRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO servers (name, host, port, dbname, username, password_enc, sslmode, pool, enabled,
             description, ssh_enabled, ssh_host, ssh_port, ssh_username, ssh_key_id, ssh_password_enc,
             ssh_data_path)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         RETURNING {COLS}"
    )))
    .bind(&spec.name)
    .bind(&spec.host)
    .bind(spec.port)
    .bind(&spec.dbname)
    .bind(&spec.username)
    .bind(spec.password.binds().1)
    .bind(&spec.sslmode)
    .bind(&spec.pool)
    .bind(spec.enabled)
    .bind(&spec.description)
    .bind(ssh.is_some_and(|s| s.enabled))
    .bind(ssh.and_then(|s| s.host.as_deref()))
    .bind(ssh.map(|s| s.port))
    .bind(ssh.map(|s| &s.username))
    .bind(ssh.and_then(|s| s.key_id))
    .bind(ssh.and_then(|s| s.password.binds().1))
    .bind(ssh.map(|s| &s.data_path))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| map_write_error(e, &spec.name))?;
    notify(conn, &row.name).await?;
    Ok(row)
}

/// Replaces server `name` with `spec` (a different `spec.name` renames it; both names are notified).
/// Secrets follow their [`SecretChange`] (the caller decides what a changed target forgets). The
/// pinned host key is forgotten when the SSH endpoint (`ssh_host`, else `host`, and `ssh_port`)
/// changes or SSH is turned off: it belonged to the old one.
pub async fn update(pool: &PgPool, name: &str, spec: &ServerSpec) -> Result<ServerRow> {
    let mut tx = pool.begin().await?;
    let ssh = spec.ssh.as_ref();
    let (keep_pw, pw) = spec.password.binds();
    let (keep_ssh_pw, ssh_pw) = match ssh {
        Some(s) => s.password.binds(),
        None => (false, None),
    };
    let row: ServerRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE servers SET name = $2, host = $3, port = $4, dbname = $5, username = $6,
             password_enc = CASE WHEN $7 THEN password_enc ELSE $8 END,
             sslmode = $9, pool = $10, enabled = $11, description = $12,
             ssh_enabled = $13, ssh_host = $14, ssh_port = $15, ssh_username = $16, ssh_key_id = $17,
             ssh_password_enc = CASE WHEN $18 THEN ssh_password_enc ELSE $19 END,
             ssh_data_path = $20,
             ssh_host_key_fingerprint = CASE
                 WHEN NOT $13 OR coalesce(ssh_host, host) IS DISTINCT FROM coalesce($14, $3)
                      OR ssh_port IS DISTINCT FROM $15 THEN NULL
                 ELSE ssh_host_key_fingerprint END,
             updated_at = now()
         WHERE name = $1 RETURNING {COLS}"
    )))
    .bind(name)
    .bind(&spec.name)
    .bind(&spec.host)
    .bind(spec.port)
    .bind(&spec.dbname)
    .bind(&spec.username)
    .bind(keep_pw)
    .bind(pw)
    .bind(&spec.sslmode)
    .bind(&spec.pool)
    .bind(spec.enabled)
    .bind(&spec.description)
    .bind(ssh.is_some_and(|s| s.enabled))
    .bind(ssh.and_then(|s| s.host.as_deref()))
    .bind(ssh.map(|s| s.port))
    .bind(ssh.map(|s| &s.username))
    .bind(ssh.and_then(|s| s.key_id))
    .bind(keep_ssh_pw)
    .bind(ssh_pw)
    .bind(ssh.map(|s| &s.data_path))
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| map_write_error(e, &spec.name))?
    .ok_or(StoreError::NotFound)?;
    notify(&mut tx, name).await?;
    if row.name != name {
        notify(&mut tx, &row.name).await?;
    }
    tx.commit().await?;
    Ok(row)
}

/// Deletes the server row only: its collected stats stay (referenced by id, no foreign key) until
/// retention drops their partitions.
pub async fn delete(pool: &PgPool, name: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query("DELETE FROM servers WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    notify(&mut tx, name).await?;
    tx.commit().await?;
    Ok(())
}

/// Trust on first use: records `fingerprint` only while none is pinned. Returns whether the pinned
/// value now equals `fingerprint` (false: another key is pinned, or the server is gone).
pub async fn pin_host_key(pool: &PgPool, server_id: i64, fingerprint: &str) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let pinned_now: Option<String> = sqlx::query_scalar(
        "UPDATE servers SET ssh_host_key_fingerprint = $2
         WHERE id = $1 AND ssh_host_key_fingerprint IS NULL RETURNING name",
    )
    .bind(server_id)
    .bind(fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(name) = pinned_now {
        notify(&mut tx, &name).await?;
        tx.commit().await?;
        return Ok(true);
    }
    // A separate statement: under READ COMMITTED it sees a pin a concurrent caller just committed.
    let stored: Option<Option<String>> =
        sqlx::query_scalar("SELECT ssh_host_key_fingerprint FROM servers WHERE id = $1")
            .bind(server_id)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(stored.flatten().as_deref() == Some(fingerprint))
}

/// Forgets the pinned host key, so that the next successful connection pins the key it sees.
pub async fn clear_host_key(pool: &PgPool, name: &str) -> Result<ServerRow> {
    let mut tx = pool.begin().await?;
    let row: ServerRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE servers SET ssh_host_key_fingerprint = NULL, updated_at = now() WHERE name = $1
         RETURNING {COLS}"
    )))
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    notify(&mut tx, name).await?;
    tx.commit().await?;
    Ok(row)
}

/// How to connect to `server` as a PostgreSQL client, with its password decrypted in memory.
pub fn remote_target(crypto: &Crypto, server: &ServerRow) -> Result<remote::Target, DecryptError> {
    let password = server
        .password_enc
        .as_deref()
        .map(|t| crypto.decrypt(t))
        .transpose()?;
    Ok(remote::Target {
        host: server.host.clone(),
        port: u16::try_from(server.port).unwrap_or(5432),
        dbname: server.dbname.clone(),
        user: server.username.clone(),
        password,
        // The table's CHECK admits only valid values; the strictest mode is the safe fallback.
        sslmode: server.sslmode.parse().unwrap_or(remote::SslMode::VerifyFull),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SshTargetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    #[error("SSH is enabled but neither a key nor a password is configured")]
    NoCredentials,
}

/// How to reach `server`'s host over SSH, with its key or password decrypted in memory; `None` when
/// the server has no SSH settings.
pub async fn ssh_target(
    pool: &PgPool,
    crypto: &Crypto,
    server: &ServerRow,
) -> Result<Option<SshTarget>, SshTargetError> {
    if !server.ssh_enabled {
        return Ok(None);
    }
    let auth = if let Some(key_id) = server.ssh_key_id {
        let token = super::ssh_keys::private_key_enc(pool, key_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        SshAuth::Key(crypto.decrypt(&token)?)
    } else if let Some(token) = &server.ssh_password_enc {
        SshAuth::Password(crypto.decrypt(token)?)
    } else {
        return Err(SshTargetError::NoCredentials);
    };
    Ok(Some(SshTarget {
        host: server.ssh_host.clone().unwrap_or_else(|| server.host.clone()),
        port: server.ssh_port.and_then(|p| u16::try_from(p).ok()).unwrap_or(22),
        username: server.ssh_username.clone().unwrap_or_else(|| "postgres".into()),
        auth,
        expected_fingerprint: server.ssh_host_key_fingerprint.clone(),
    }))
}
