//! Sessions: every `pg_stat_activity` row the monitoring role may see, with durations, the xmin
//! age and the pids blocking each one.

use super::{Remote, Version, col, is_pgmon, query};
use chrono::{DateTime, Utc};
use pgmon_shared::config::QueryTextView;
use pgmon_shared::redact::show_query;
use pgmon_shared::remote::RemoteError;
use poem_openapi::{Enum, Object};

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct Session {
    pub pid: i32,
    pub database: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    pub client_addr: Option<String>,
    pub client_port: Option<i32>,
    /// `client backend`, `autovacuum worker`, `walsender`, ...
    pub backend_type: Option<String>,
    /// `active`, `idle`, `idle in transaction`, `idle in transaction (aborted)`, `fastpath function
    /// call`, `disabled`; `null` for background processes.
    pub state: Option<String>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub backend_start: Option<DateTime<Utc>>,
    pub xact_start: Option<DateTime<Utc>>,
    pub query_start: Option<DateTime<Utc>>,
    pub state_change: Option<DateTime<Utc>>,
    /// Seconds since `backend_start`.
    pub backend_secs: Option<f64>,
    /// Seconds since the transaction began.
    pub xact_secs: Option<f64>,
    /// Seconds since the (last) query began.
    pub query_secs: Option<f64>,
    /// Seconds in the current state.
    pub state_secs: Option<f64>,
    pub backend_xid: Option<String>,
    pub backend_xmin: Option<String>,
    /// `age(backend_xmin)`: how far this session holds back the xmin horizon, in transactions.
    pub xmin_age: Option<i64>,
    /// `pg_blocking_pids`, for sessions waiting on a lock.
    pub blocked_by: Vec<i32>,
    /// Cut to `api.activity_query_chars` unless `full_query=true`; password literals redacted; for
    /// viewers as `api.viewer_query_text` says (constants replaced by default, or `null`).
    pub query: Option<String>,
    /// The full text's length in characters (`null` when the text is not shown).
    pub query_chars: Option<i32>,
    pub query_truncated: bool,
    /// The parallel leader of a parallel worker (PostgreSQL 13+).
    pub leader_pid: Option<i32>,
    /// PostgreSQL 14+ with `compute_query_id`.
    pub query_id: Option<i64>,
    /// A session of pgmon itself (pgmon-api, pgmon-collector).
    pub pgmon: bool,
}

/// Which duration to sort by (longest first unless `order=asc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
#[oai(rename_all = "lowercase")]
pub enum SortBy {
    #[default]
    Query,
    Xact,
    Backend,
    State,
    /// `age(backend_xmin)`.
    Xmin,
    Pid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
#[oai(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub database: Option<String>,
    pub user: Option<String>,
    /// Part of the application name, any case.
    pub application: Option<String>,
    pub state: Option<String>,
    pub backend_type: Option<String>,
    /// Sessions whose sort duration is at least this long.
    pub min_duration_secs: Option<f64>,
    pub sort: SortBy,
    pub order: Order,
    /// Characters of query text; `None`: the whole text.
    pub query_chars: Option<usize>,
    /// Leave pgmon's own sessions out.
    pub hide_pgmon: bool,
    /// How query texts are shown to the caller.
    pub texts: QueryTextView,
}

/// The query for a server version; columns it lacks read as NULL.
pub fn sql(v: Version) -> String {
    let leader = if v.has(13) { "a.leader_pid" } else { "NULL::int4" };
    let query_id = if v.has(14) { "a.query_id" } else { "NULL::int8" };
    format!(
        "SELECT a.pid, a.datname::text, a.usename::text, a.application_name, host(a.client_addr),
                a.client_port, a.backend_type, a.state, a.wait_event_type, a.wait_event,
                a.backend_start, a.xact_start, a.query_start, a.state_change,
                extract(epoch FROM now() - a.backend_start)::float8,
                extract(epoch FROM now() - a.xact_start)::float8,
                extract(epoch FROM now() - a.query_start)::float8,
                extract(epoch FROM now() - a.state_change)::float8,
                a.backend_xid::text, a.backend_xmin::text, age(a.backend_xmin)::int8,
                CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END,
                CASE WHEN $1 >= 0 THEN left(a.query, $1) ELSE a.query END, length(a.query)::int4,
                {leader}, {query_id}
         FROM pg_stat_activity a
         WHERE ($2::text IS NULL OR a.datname = $2) AND ($3::text IS NULL OR a.usename = $3)
           AND ($4::text IS NULL OR a.application_name ILIKE $4) AND ($5::text IS NULL OR a.state = $5)
           AND ($6::text IS NULL OR a.backend_type = $6)"
    )
}

impl Session {
    fn key(&self, by: SortBy) -> Option<f64> {
        match by {
            SortBy::Query => self.query_secs,
            SortBy::Xact => self.xact_secs,
            SortBy::Backend => self.backend_secs,
            SortBy::State => self.state_secs,
            SortBy::Xmin => self.xmin_age.map(|a| a as f64),
            SortBy::Pid => Some(f64::from(self.pid)),
        }
    }
}

/// The sessions matching `f`, sorted; sessions without the sort value come last either way.
pub async fn list(r: &Remote, f: &Filter) -> Result<Vec<Session>, RemoteError> {
    let chars: i32 = f
        .query_chars
        .map(|c| i32::try_from(c).unwrap_or(i32::MAX))
        .unwrap_or(-1);
    let app = f
        .application
        .as_deref()
        .map(|a| format!("%{}%", pgmon_shared::store::audit::like_escape(a)));
    let rows = query(
        r,
        &sql(r.version),
        &[&chars, &f.database, &f.user, &app, &f.state, &f.backend_type],
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let application: Option<String> = col(row, 3)?;
        let raw: Option<String> = col(row, 22)?;
        let mut query_chars: Option<i32> = col(row, 23)?;
        // Whether the server's text was cut is told from the text before redaction changes its length.
        let shown = raw.as_ref().map(|q| q.chars().count()).unwrap_or(0);
        let mut query_truncated = query_chars.is_some_and(|n| usize::try_from(n).unwrap_or(0) > shown);
        let query = show_query(f.texts, raw.as_deref());
        if query.is_none() {
            (query_chars, query_truncated) = (None, false);
        }
        out.push(Session {
            pid: col(row, 0)?,
            database: col(row, 1)?,
            user: col(row, 2)?,
            pgmon: is_pgmon(application.as_deref()),
            application,
            client_addr: col(row, 4)?,
            client_port: col(row, 5)?,
            backend_type: col(row, 6)?,
            state: col(row, 7)?,
            wait_event_type: col(row, 8)?,
            wait_event: col(row, 9)?,
            backend_start: col(row, 10)?,
            xact_start: col(row, 11)?,
            query_start: col(row, 12)?,
            state_change: col(row, 13)?,
            backend_secs: col(row, 14)?,
            xact_secs: col(row, 15)?,
            query_secs: col(row, 16)?,
            state_secs: col(row, 17)?,
            backend_xid: col(row, 18)?,
            backend_xmin: col(row, 19)?,
            xmin_age: col(row, 20)?,
            blocked_by: col::<Option<Vec<i32>>>(row, 21)?.unwrap_or_default(),
            query_truncated,
            query,
            query_chars,
            leader_pid: col(row, 24)?,
            query_id: col(row, 25)?,
        });
    }
    out.retain(|s| !(f.hide_pgmon && s.pgmon));
    if let Some(min) = f.min_duration_secs {
        out.retain(|s| s.key(f.sort).is_some_and(|d| d >= min));
    }
    out.sort_by(|a, b| {
        let (ka, kb) = (a.key(f.sort), b.key(f.sort));
        match (ka, kb) {
            (Some(x), Some(y)) => {
                let o = x.total_cmp(&y);
                if f.order == Order::Desc { o.reverse() } else { o }
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.pid.cmp(&b.pid),
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_the_version() {
        assert!(sql(Version(120000)).contains("NULL::int4, NULL::int8"));
        assert!(sql(Version(130000)).contains("a.leader_pid, NULL::int8"));
        assert!(sql(Version(180000)).contains("a.leader_pid, a.query_id"));
        assert_eq!(sql(Version(190000)), sql(Version(120000)));
    }
}
