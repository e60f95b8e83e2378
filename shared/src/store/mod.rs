//! The `pam_stats` store: the single source of truth for users, tokens, audit, servers, SSH keys and
//! stats. SQL lives beside the function that runs it, one module per table family.

pub mod audit;
pub mod chunk;
pub mod chunk_cache;
pub mod collectors;
pub mod family_series;
pub mod fleet;
pub mod history;
pub mod rollups;
pub mod servers;
pub mod settings;
pub mod ssh_keys;
pub mod stats;
pub mod stats_read;
pub mod system_log;
pub mod tokens;
pub mod users;

use crate::config::{StoreConfig, redact_url};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, migrate::Migrator};
use std::str::FromStr;
use std::time::Duration;

/// The migrations in `migrations/`, embedded at compile time. sqlx takes an advisory lock while
/// applying them, so concurrent starts of several processes are safe.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique or foreign-key constraint refused the change; the text names what clashed.
    #[error("{0}")]
    Conflict(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(format!(
                "already exists ({})",
                db.constraint().unwrap_or("unique")
            )),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Conflict(format!(
                "still referenced ({})",
                db.constraint().unwrap_or("foreign key")
            )),
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(e.to_string())
            }
            // The store refusing work rather than the query being wrong: connection exceptions
            // (08), insufficient resources such as too many clients (53), shutting down or starting
            // up (57P01-57P03). A 503 tells the client to retry; a 500 would blame pgmon.
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    c.starts_with("08")
                        || c.starts_with("53")
                        || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
                }) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens a pool on the store. The connection is lazy, so a process can start while the store is down
/// and recover when it returns; `application_name` tells the processes apart in pg_stat_activity.
pub fn connect_lazy(cfg: &StoreConfig, application_name: &str) -> Result<PgPool, StoreError> {
    let opts = PgConnectOptions::from_str(&cfg.url)
        .map_err(|_| StoreError::Other(format!("store.url is not a valid URL: {}", redact_url(&cfg.url))))?
        .application_name(application_name);
    Ok(PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        // sqlx pings every idle connection before handing it out: one more round trip per query,
        // which on the history read path cost as much as the query. Without it, the first query on
        // a connection broken by a store restart fails (503 for that request, a retry for the
        // collector's writes) and the connection is dropped.
        .test_before_acquire(false)
        .connect_lazy_with(opts))
}

/// Applies pending migrations; several processes may call this at once.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| StoreError::Other(format!("migration failed: {e}")))
}

/// The newest applied migration version, for `/api/health`.
pub async fn schema_version(pool: &PgPool) -> Result<i64> {
    let v: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?;
    Ok(v.unwrap_or(0))
}

/// The version the binary expects, i.e. its newest embedded migration.
pub fn expected_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}
