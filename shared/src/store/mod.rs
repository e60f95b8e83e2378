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
    /// The store refused this attempt but the same work may succeed on a retry: a deadlock
    /// (40P01), a serialization failure (40001), a statement or lock timeout (57014, 55P03).
    #[error("store busy: {0}")]
    Transient(String),
    /// A row's time has no partition yet (SQLSTATE 23514 without a named constraint): create it and
    /// retry. Recognised by its code, never by the server's (translatable) message.
    #[error("missing partition: {0}")]
    MissingPartition(String),
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
            sqlx::Error::Database(db) => {
                match classify_sqlstate(db.code().as_deref().unwrap_or(""), db.constraint().is_some()) {
                    SqlStateClass::Unavailable => StoreError::Unavailable(e.to_string()),
                    SqlStateClass::Transient => StoreError::Transient(e.to_string()),
                    SqlStateClass::MissingPartition => StoreError::MissingPartition(e.to_string()),
                    SqlStateClass::Other => StoreError::Other(e.to_string()),
                }
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// What an SQLSTATE from the store means for the caller, see [`classify_sqlstate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlStateClass {
    Unavailable,
    Transient,
    MissingPartition,
    Other,
}

/// Sorts an SQLSTATE (and whether the error names a constraint): the store refusing work rather
/// than the query being wrong is `Unavailable` (connection exceptions 08, insufficient resources
/// such as too many clients 53, shutting down or starting up 57P01-57P03; a 503 tells a client to
/// retry, a 500 would blame pgmon); a conflict with other sessions or a timeout is `Transient`;
/// "no partition of relation ... found for row" is 23514 (check_violation) without a constraint,
/// where a real CHECK constraint always names itself.
pub fn classify_sqlstate(code: &str, names_constraint: bool) -> SqlStateClass {
    match code {
        c if c.starts_with("08") || c.starts_with("53") => SqlStateClass::Unavailable,
        "57P01" | "57P02" | "57P03" => SqlStateClass::Unavailable,
        "40P01" | "40001" | "57014" | "55P03" | "25P03" => SqlStateClass::Transient,
        "23514" if !names_constraint => SqlStateClass::MissingPartition,
        _ => SqlStateClass::Other,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Runs one store call with a client-side deadline: past `limit` the call is abandoned (its
/// connection is dropped by the pool) and the store counts as unavailable. The store's own
/// `statement_timeout` cannot end a call whose connection went half-open, and nothing else would.
pub async fn deadline<T>(limit: Duration, call: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "the store did not answer within {} s",
            limit.as_secs_f64()
        ))),
    }
}

/// Opens a pool on the store. The connection is lazy, so a process can start while the store is down
/// and recover when it returns; `application_name` tells the processes apart in pg_stat_activity.
///
/// Every session gets the store-side limits of `store.statement_timeout_secs` (set after connecting
/// rather than as startup `options`, which poolers such as PgBouncer refuse), so a locked or slow
/// store answers with an error. sqlx offers no TCP keepalive: callers bound their waits with
/// [`deadline`]; the server still learns of a dead client from its own `tcp_keepalives_*`, which are
/// set here too.
pub fn connect_lazy(cfg: &StoreConfig, application_name: &str) -> Result<PgPool, StoreError> {
    let opts = connect_options(cfg, application_name)?;
    let limits = session_limits(cfg);
    Ok(pool_options(cfg)
        .after_connect(move |conn, _| {
            let limits = limits.clone();
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(limits)).execute(conn).await?;
                Ok(())
            })
        })
        .connect_lazy_with(opts))
}

/// Like [`connect_lazy`] without the store-side statement limits: for migrations and imports, whose
/// single statements may rightly run for minutes. Only the command-line tools use it.
pub fn connect_unbounded(cfg: &StoreConfig, application_name: &str) -> Result<PgPool, StoreError> {
    Ok(pool_options(cfg).connect_lazy_with(connect_options(cfg, application_name)?))
}

/// The `SET`s every store session starts with.
fn session_limits(cfg: &StoreConfig) -> String {
    let st = cfg.statement_timeout_secs;
    let lock = if st == 0 { 0 } else { (st / 3).max(1) };
    let idle_tx = cfg.call_timeout_secs.saturating_mul(2).max(60);
    format!(
        "SET statement_timeout = '{st}s'; SET lock_timeout = '{lock}s'; \
         SET idle_in_transaction_session_timeout = '{idle_tx}s'; \
         SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"
    )
}

fn connect_options(cfg: &StoreConfig, application_name: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(&cfg.url)
        .map_err(|_| StoreError::Other(format!("store.url is not a valid URL: {}", redact_url(&cfg.url))))?
        .application_name(application_name))
}

fn pool_options(cfg: &StoreConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        // sqlx pings every idle connection before handing it out: one more round trip per query,
        // which on the history read path cost as much as the query. Without it, the first query on
        // a connection broken by a store restart fails (503 for that request, a retry for the
        // collector's writes) and the connection is dropped.
        .test_before_acquire(false)
}

/// Applies pending migrations; several processes may call this at once. The session's statement
/// limits are lifted for them (a migration may rewrite a big table) on a connection of its own,
/// closed afterwards so the lifted limits never serve another query.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::raw_sql(
        "SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0",
    )
    .execute(&mut conn)
    .await?;
    let out = MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|e| StoreError::Other(format!("migration failed: {e}")));
    let _ = sqlx::Connection::close(conn).await;
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_sorted_by_what_a_retry_can_do() {
        use SqlStateClass::*;
        for (code, constraint, want) in [
            ("08006", false, Unavailable),
            ("53300", false, Unavailable),
            ("57P01", false, Unavailable),
            ("40P01", false, Transient),
            ("40001", false, Transient),
            ("57014", false, Transient),
            ("55P03", false, Transient),
            ("23514", false, MissingPartition),
            ("23514", true, Other),
            ("23505", true, Other),
            ("42P01", false, Other),
            ("", false, Other),
        ] {
            assert_eq!(classify_sqlstate(code, constraint), want, "{code} {constraint}");
        }
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_unavailable() {
        let r: Result<()> = deadline(Duration::from_millis(20), std::future::pending()).await;
        assert!(matches!(r, Err(StoreError::Unavailable(m)) if m.contains("did not answer")));
        let r = deadline(Duration::from_secs(5), async { Ok(7) }).await;
        assert_eq!(r.ok(), Some(7));
    }
}
