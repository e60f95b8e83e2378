//! The system log: operational events of both processes, for `GET /api/logs`. Written through
//! [`crate::journal::Journal`] (bounded, buffered while the store is down), or inside the changing
//! transaction where the event is part of a change (settings, server down/up).

use super::Result;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// The original's levels and sources; `GET /api/logs` filters on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

pub mod source {
    pub const COLLECTOR_STATS: &str = "collector_stats";
    pub const COLLECTOR_SIZES: &str = "collector_sizes";
    pub const COLLECTOR_DB_INFO: &str = "collector_db_info";
    pub const MAINTENANCE: &str = "maintenance";
    pub const SYSTEM: &str = "system";
    pub const ALL: [&str; 5] = [
        COLLECTOR_STATS,
        COLLECTOR_SIZES,
        COLLECTOR_DB_INFO,
        MAINTENANCE,
        SYSTEM,
    ];
}

/// Machine-readable kinds of the entries code looks for again.
pub mod event {
    pub const SERVER_DOWN: &str = "server_down";
    pub const SERVER_UP: &str = "server_up";
}

/// One entry as written. `at` is when it happened, which for an entry buffered through a store
/// outage is earlier than when it reached the store.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub at: DateTime<Utc>,
    pub level: Level,
    pub source: &'static str,
    pub message: String,
    pub details: Option<String>,
    pub server_id: Option<i64>,
    pub event: Option<&'static str>,
}

impl NewEntry {
    pub fn new(level: Level, source: &'static str, message: impl Into<String>) -> Self {
        Self {
            at: Utc::now(),
            level,
            source,
            message: message.into(),
            details: None,
            server_id: None,
            event: None,
        }
    }

    pub fn details(mut self, d: impl Into<String>) -> Self {
        let d: String = d.into();
        self.details = (!d.is_empty()).then_some(d);
        self
    }

    pub fn server(mut self, id: i64) -> Self {
        self.server_id = Some(id);
        self
    }

    pub fn event(mut self, e: &'static str) -> Self {
        self.event = Some(e);
        self
    }
}

/// Longest message and details kept (a list of failing servers can be long).
const MAX_MESSAGE: usize = 500;
const MAX_DETAILS: usize = 8000;

/// Writes entries of one process in one statement.
pub async fn insert(
    db: impl sqlx::PgExecutor<'_>,
    process: &str,
    instance: Option<Uuid>,
    entries: &[NewEntry],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut at = Vec::with_capacity(entries.len());
    let mut level = Vec::with_capacity(entries.len());
    let mut source = Vec::with_capacity(entries.len());
    let mut message = Vec::with_capacity(entries.len());
    let mut details = Vec::with_capacity(entries.len());
    let mut server = Vec::with_capacity(entries.len());
    let mut event = Vec::with_capacity(entries.len());
    for e in entries {
        at.push(e.at);
        level.push(e.level.as_str());
        source.push(e.source);
        message.push(e.message.chars().take(MAX_MESSAGE).collect::<String>());
        details.push(
            e.details
                .as_ref()
                .map(|d| d.chars().take(MAX_DETAILS).collect::<String>()),
        );
        server.push(e.server_id);
        event.push(e.event);
    }
    sqlx::query(
        "INSERT INTO system_log (at, level, source, message, details, server_id, event, process, instance)
         SELECT *, $8, $9 FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::bigint[], $7::text[])",
    )
    .bind(&at)
    .bind(&level)
    .bind(&source)
    .bind(&message)
    .bind(&details)
    .bind(&server)
    .bind(&event)
    .bind(process)
    .bind(instance)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LogRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub level: String,
    pub source: String,
    pub message: String,
    pub details: Option<String>,
    pub process: String,
    pub server_id: Option<i64>,
    pub event: Option<String>,
}

#[derive(Debug, Default)]
pub struct Filter {
    pub level: Option<String>,
    pub source: Option<String>,
    /// Part of the message or of the details, case-insensitive.
    pub search: Option<String>,
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

/// Newest first, with the total matching the filter.
pub async fn list(pool: &PgPool, f: &Filter) -> Result<(Vec<LogRow>, i64)> {
    const WHERE: &str = "($1::text IS NULL OR level = $1) AND ($2::text IS NULL OR source = $2)
        AND ($3::text IS NULL OR message ILIKE $3 OR details ILIKE $3)
        AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)";
    let search = f
        .search
        .as_deref()
        .map(|s| format!("%{}%", super::audit::like_escape(s)));
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, at, level, source, message, details, process, server_id, event FROM system_log
         WHERE {WHERE} ORDER BY at DESC, id DESC LIMIT $6 OFFSET $7"
    )))
    .bind(&f.level)
    .bind(&f.source)
    .bind(&search)
    .bind(f.from)
    .bind(f.to)
    .bind(f.limit)
    .bind(f.offset)
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM system_log WHERE {WHERE}"
    )))
    .bind(&f.level)
    .bind(&f.source)
    .bind(&search)
    .bind(f.from)
    .bind(f.to)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// The original's header counters; "today" starts at 00:00 UTC.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stats {
    pub total: i64,
    pub errors_today: i64,
    pub warnings_today: i64,
}

pub async fn stats(pool: &PgPool) -> Result<Stats> {
    Ok(sqlx::query_as(
        "SELECT count(*) AS total,
                count(*) FILTER (WHERE level = 'error' AND at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS errors_today,
                count(*) FILTER (WHERE level = 'warning' AND at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS warnings_today
         FROM system_log",
    )
    .fetch_one(pool)
    .await?)
}

pub async fn purge_older_than(pool: &PgPool, days: u32) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM system_log WHERE at < now() - make_interval(days => $1)")
            .bind(i32::try_from(days).unwrap_or(i32::MAX))
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// The newest down/up entry of each of `servers` (its event and time) and how many such entries
/// it got in the last `window`: what the writer compares a new availability sample with.
pub async fn last_transitions(
    conn: &mut sqlx::PgConnection,
    servers: &[i64],
    window: std::time::Duration,
) -> Result<Vec<(i64, String, DateTime<Utc>, i64)>> {
    Ok(sqlx::query_as(
        "SELECT s.id, l.event, l.at, w.n
         FROM unnest($1::bigint[]) AS s(id)
         CROSS JOIN LATERAL (
             SELECT event, at FROM system_log
             WHERE server_id = s.id AND event IN ('server_down', 'server_up')
             ORDER BY at DESC, id DESC LIMIT 1) AS l
         CROSS JOIN LATERAL (
             SELECT count(*) AS n FROM system_log
             WHERE server_id = s.id AND event IN ('server_down', 'server_up')
               AND at > now() - make_interval(secs => $2)) AS w",
    )
    .bind(servers)
    .bind(window.as_secs_f64())
    .fetch_all(conn)
    .await?)
}
