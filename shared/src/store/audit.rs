//! The session and admin-action audit: who logged in, from where, and what they changed.
//!
//! Events carry the original backend's names (its clients filter and label by them) and a readable
//! `details` text, never a secret.

use super::Result;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Event names as stored and filtered on: the original's, then pgmon's own.
pub mod event {
    pub const LOGIN_SUCCESS: &str = "login_success";
    pub const LOGIN_FAILED: &str = "login_failed";
    pub const REFRESH: &str = "refresh";
    pub const LOGOUT: &str = "logout";
    pub const USER_CREATE: &str = "user_create";
    pub const USER_UPDATE: &str = "user_update";
    pub const USER_DELETE: &str = "user_delete";
    pub const SERVER_CREATE: &str = "server_create";
    pub const SERVER_UPDATE: &str = "server_update";
    pub const SERVER_DELETE: &str = "server_delete";
    pub const SSH_KEY_CREATE: &str = "ssh_key_create";
    pub const SSH_KEY_UPDATE: &str = "ssh_key_update";
    pub const SSH_KEY_DELETE: &str = "ssh_key_delete";
    pub const SETTINGS_UPDATE: &str = "settings_update";
    /// pgmon's own: a login refused by the throttle before any password check.
    pub const LOGIN_RATE_LIMITED: &str = "login_rate_limited";
    /// pgmon's own: a used refresh token presented again; its family was revoked.
    pub const REFRESH_REUSE: &str = "refresh_reuse";
    pub const SSH_HOST_KEY_PINNED: &str = "ssh_host_key_pinned";
    pub const SSH_HOST_KEY_CLEARED: &str = "ssh_host_key_cleared";
    /// pgmon's own: an operator's cancel / terminate of a backend on a monitored server, whatever
    /// its outcome (refused ones included).
    pub const BACKEND_CANCEL: &str = "backend_cancel";
    pub const BACKEND_TERMINATE: &str = "backend_terminate";

    /// Events that are not administrative actions (the original's `actions_today` leaves them out).
    pub const SESSION_EVENTS: [&str; 6] = [
        LOGIN_SUCCESS,
        LOGIN_FAILED,
        REFRESH,
        LOGOUT,
        LOGIN_RATE_LIMITED,
        REFRESH_REUSE,
    ];
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
    pub jti: Option<String>,
    pub details: Option<String>,
}

/// One event. `details` is free text for people (at most 2,000 characters are kept).
pub async fn record(
    db: impl sqlx::PgExecutor<'_>,
    event: &str,
    actor: &Actor,
    details: Option<&str>,
    jti: Option<&str>,
) -> Result<()> {
    insert(db, event, actor, details, jti).await?;
    Ok(())
}

/// [`record`] without a token id, returning the row's id: for a row that is updated as more of
/// the same events come (refused logins, counted per client IP and minute).
pub async fn record_returning_id(
    db: impl sqlx::PgExecutor<'_>,
    event: &str,
    actor: &Actor,
    details: Option<&str>,
) -> Result<i64> {
    insert(db, event, actor, details, None).await
}

/// The one INSERT of an audit row: the user agent and details are cut to what the table is for.
async fn insert(
    db: impl sqlx::PgExecutor<'_>,
    event: &str,
    actor: &Actor,
    details: Option<&str>,
    jti: Option<&str>,
) -> Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO audit_sessions (event, login, client_ip, user_agent, details, jti)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(event)
    .bind(&actor.login)
    .bind(&actor.client_ip)
    .bind(
        actor
            .user_agent
            .as_deref()
            .map(|u| u.chars().take(512).collect::<String>()),
    )
    .bind(details.map(|d| d.chars().take(2000).collect::<String>()))
    .bind(jti)
    .fetch_one(db)
    .await?;
    Ok(id)
}

/// Replaces the details of a row written by [`record_returning_id`].
pub async fn update_details(db: impl sqlx::PgExecutor<'_>, id: i64, details: &str) -> Result<()> {
    sqlx::query("UPDATE audit_sessions SET details = $2 WHERE id = $1")
        .bind(id)
        .bind(details.chars().take(2000).collect::<String>())
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Debug, Default)]
pub struct Filter {
    /// Part of the login or of the client IP, case-insensitive (as the original's later versions).
    pub who: Option<String>,
    pub event: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

/// `%`, `_` and `\` taken literally in an ILIKE pattern.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Newest first, with the total matching the filter.
pub async fn list(pool: &PgPool, f: &Filter) -> Result<(Vec<AuditRow>, i64)> {
    const WHERE: &str = "($1::text IS NULL OR login ILIKE $1 OR client_ip ILIKE $1)
        AND ($2::text IS NULL OR event = $2)
        AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)";
    let who = f.who.as_deref().map(|w| format!("%{}%", like_escape(w)));
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, at, event, login, client_ip, user_agent, jti, details FROM audit_sessions
         WHERE {WHERE} ORDER BY at DESC, id DESC LIMIT $5 OFFSET $6"
    )))
    .bind(&who)
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
    .bind(&who)
    .bind(&f.event)
    .bind(f.from)
    .bind(f.to)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

/// The original's five counters plus `actions_today`; "today" starts at 00:00 UTC and the week is
/// the last 7 days.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Summary {
    pub total_events: i64,
    pub logins_today: i64,
    pub unique_users_week: i64,
    pub failed_today: i64,
    pub failed_total: i64,
    pub actions_today: i64,
}

pub async fn summary(pool: &PgPool) -> Result<Summary> {
    Ok(sqlx::query_as(
        "SELECT count(*) AS total_events,
                count(*) FILTER (WHERE event = $1 AND at >= $4) AS logins_today,
                count(DISTINCT login) FILTER (WHERE event = $1 AND at >= now() - interval '7 days')
                    AS unique_users_week,
                count(*) FILTER (WHERE event = $2 AND at >= $4) AS failed_today,
                count(*) FILTER (WHERE event = $2) AS failed_total,
                count(*) FILTER (WHERE at >= $4 AND event <> ALL($3)) AS actions_today
         FROM audit_sessions",
    )
    .bind(event::LOGIN_SUCCESS)
    .bind(event::LOGIN_FAILED)
    .bind(&event::SESSION_EVENTS[..])
    .bind(today_utc())
    .fetch_one(pool)
    .await?)
}

fn today_utc() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or_else(Utc::now)
}

#[derive(Debug, serde::Serialize)]
pub struct Counts {
    pub by_event: Vec<(String, i64)>,
    pub by_login: Vec<(String, i64)>,
    pub by_day: Vec<(chrono::NaiveDate, i64)>,
}

/// Counts over `[from, to)`: per event, per login, per UTC day.
pub async fn counts(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Counts> {
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
