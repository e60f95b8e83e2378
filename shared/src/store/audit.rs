//! The session audit: who logged in, from where, and what they changed.

use super::Result;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Event names as stored and filtered on.
pub mod event {
    pub const LOGIN_SUCCESS: &str = "login_success";
    pub const LOGIN_FAILURE: &str = "login_failure";
    pub const LOGIN_RATE_LIMITED: &str = "login_rate_limited";
    pub const REFRESH: &str = "refresh";
    pub const REFRESH_REUSE: &str = "refresh_reuse";
    pub const LOGOUT: &str = "logout";
    pub const USER_CREATED: &str = "user_created";
    pub const USER_UPDATED: &str = "user_updated";
    pub const USER_DELETED: &str = "user_deleted";
}

/// Who did it and from where.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub login: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub event: String,
    pub login: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
}

pub async fn record(pool: &PgPool, event: &str, actor: &Actor, details: serde_json::Value) -> Result<()> {
    sqlx::query("INSERT INTO audit_sessions (event, login, client_ip, user_agent, details) VALUES ($1, $2, $3, $4, $5)")
        .bind(event)
        .bind(&actor.login)
        .bind(&actor.client_ip)
        .bind(actor.user_agent.as_deref().map(|u| u.chars().take(512).collect::<String>()))
        .bind(details)
        .execute(pool)
        .await?;
    Ok(())
}

#[derive(Debug, Default)]
pub struct Filter {
    pub login: Option<String>,
    pub event: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

/// Newest first.
pub async fn list(pool: &PgPool, f: &Filter) -> Result<(Vec<AuditRow>, i64)> {
    const WHERE: &str = "($1::text IS NULL OR login = $1) AND ($2::text IS NULL OR event = $2)
        AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)";
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, at, event, login, client_ip, user_agent, details FROM audit_sessions
         WHERE {WHERE} ORDER BY at DESC, id DESC LIMIT $5 OFFSET $6"
    )))
    .bind(&f.login)
    .bind(&f.event)
    .bind(f.from)
    .bind(f.to)
    .bind(f.limit)
    .bind(f.offset)
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM audit_sessions WHERE {WHERE}"
    )))
    .bind(&f.login)
    .bind(&f.event)
    .bind(f.from)
    .bind(f.to)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

#[derive(Debug, serde::Serialize)]
pub struct Counts {
    pub by_event: Vec<(String, i64)>,
    pub by_login: Vec<(String, i64)>,
    pub by_day: Vec<(chrono::NaiveDate, i64)>,
}

/// Counts over `[from, to)`: per event, per login, per UTC day.
pub async fn stats(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Counts> {
    let by_event = sqlx::query_as(
        "SELECT event, count(*) FROM audit_sessions WHERE at >= $1 AND at < $2 GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let by_login = sqlx::query_as(
        "SELECT coalesce(login, ''), count(*) FROM audit_sessions WHERE at >= $1 AND at < $2
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1000",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let by_day = sqlx::query_as(
        "SELECT (at AT TIME ZONE 'UTC')::date, count(*) FROM audit_sessions WHERE at >= $1 AND at < $2
         GROUP BY 1 ORDER BY 1",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(Counts {
        by_event,
        by_login,
        by_day,
    })
}

pub async fn purge_older_than(pool: &PgPool, days: u32) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM audit_sessions WHERE at < now() - make_interval(days => $1)")
            .bind(i32::try_from(days).unwrap_or(i32::MAX))
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
