//! `stat_statements` and `statement_texts`: the top statements of each stats slot (what each spent
//! in it), and each statement's text once per server.

use super::super::Result;
use super::insert_rows;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// Longest text kept per statement.
pub const TEXT_BYTES: usize = 4096;

/// What one statement spent between two stats slots (times in ms).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatementRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub queryid: i64,
    pub dbid: i64,
    pub userid: i64,
    pub toplevel: bool,
    pub collected_at: DateTime<Utc>,
    /// Seconds since the previous slot's snapshot: what these figures cover.
    pub secs: f64,
    pub datname: Option<String>,
    pub usename: Option<String>,
    pub calls: i64,
    pub total_exec_time: f64,
    pub total_plan_time: f64,
    pub rows: i64,
    pub shared_blks_hit: i64,
    pub shared_blks_read: i64,
    pub shared_blks_dirtied: i64,
    pub shared_blks_written: i64,
    pub temp_blks_read: i64,
    pub temp_blks_written: i64,
    pub blk_read_time: f64,
    pub blk_write_time: f64,
    pub wal_bytes: Option<i64>,
}

/// A statement's text, cut to [`TEXT_BYTES`] on a character boundary.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextRow {
    pub server_id: i64,
    pub queryid: i64,
    pub query: String,
}

pub fn cut(text: &str) -> String {
    if text.len() <= TEXT_BYTES {
        return text.to_string();
    }
    let mut end = TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

pub async fn insert(conn: &mut PgConnection, rows: &[&StatementRow]) -> Result<u64> {
    insert_rows(
        conn,
        "stat_statements (server_id, slot, queryid, dbid, userid, toplevel, collected_at, secs, datname,
            usename, calls, total_exec_time, total_plan_time, rows, shared_blks_hit, shared_blks_read,
            shared_blks_dirtied, shared_blks_written, temp_blks_read, temp_blks_written, blk_read_time,
            blk_write_time, wal_bytes)",
        "ON CONFLICT DO NOTHING",
        rows,
        |b, r| {
            b.push_bind(r.server_id)
                .push_bind(r.slot)
                .push_bind(r.queryid)
                .push_bind(r.dbid)
                .push_bind(r.userid)
                .push_bind(r.toplevel)
                .push_bind(r.collected_at)
                .push_bind(r.secs)
                .push_bind(&r.datname)
                .push_bind(&r.usename)
                .push_bind(r.calls)
                .push_bind(r.total_exec_time)
                .push_bind(r.total_plan_time)
                .push_bind(r.rows)
                .push_bind(r.shared_blks_hit)
                .push_bind(r.shared_blks_read)
                .push_bind(r.shared_blks_dirtied)
                .push_bind(r.shared_blks_written)
                .push_bind(r.temp_blks_read)
                .push_bind(r.temp_blks_written)
                .push_bind(r.blk_read_time)
                .push_bind(r.blk_write_time)
                .push_bind(r.wal_bytes);
        },
    )
    .await?;
    // Texts stay as long as their statements are seen.
    let mut by_server: std::collections::BTreeMap<(i64, DateTime<Utc>), Vec<i64>> = Default::default();
    for r in rows {
        by_server
            .entry((r.server_id, r.collected_at))
            .or_default()
            .push(r.queryid);
    }
    for ((server, at), ids) in by_server {
        sqlx::query("UPDATE statement_texts SET last_seen = $3 WHERE server_id = $1 AND queryid = ANY($2) AND last_seen < $3")
            .bind(server)
            .bind(&ids)
            .bind(at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(rows.len() as u64)
}

pub async fn insert_texts(conn: &mut PgConnection, rows: &[&TextRow]) -> Result<u64> {
    insert_rows(
        conn,
        "statement_texts (server_id, queryid, query)",
        "ON CONFLICT (server_id, queryid) DO UPDATE SET last_seen = now()",
        rows,
        |b, r| {
            b.push_bind(r.server_id).push_bind(r.queryid).push_bind(&r.query);
        },
    )
    .await
}

/// The queryids whose text the store has for `server_id`.
pub async fn known_texts(pool: &PgPool, server_id: i64) -> Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar("SELECT queryid FROM statement_texts WHERE server_id = $1")
            .bind(server_id)
            .fetch_all(pool)
            .await?,
    )
}

/// Deletes the texts of statements not seen since `before`.
pub async fn purge_texts_before(pool: &PgPool, before: DateTime<Utc>) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM statement_texts WHERE last_seen < $1")
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected())
}

/// How the top list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    TotalTime,
    Calls,
    MeanTime,
    Rows,
    BlocksRead,
    Temp,
}

impl Sort {
    fn column(self) -> &'static str {
        match self {
            Sort::TotalTime => "total_exec_time",
            Sort::Calls => "calls",
            Sort::MeanTime => "mean_time",
            Sort::Rows => "rows",
            Sort::BlocksRead => "shared_blks_read",
            Sort::Temp => "temp_blks",
        }
    }
}

/// One statement's figures summed over a window.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TopRow {
    pub queryid: i64,
    pub datname: Option<String>,
    pub usename: Option<String>,
    pub toplevel: bool,
    pub calls: i64,
    pub total_exec_time: f64,
    pub total_plan_time: f64,
    pub mean_time: Option<f64>,
    pub rows: i64,
    pub shared_blks_hit: i64,
    pub shared_blks_read: i64,
    pub shared_blks_dirtied: i64,
    pub shared_blks_written: i64,
    pub temp_blks: i64,
    pub blk_read_time: f64,
    pub blk_write_time: f64,
    pub wal_bytes: Option<i64>,
    /// Share of the execution time of all the statements kept in the window.
    pub time_share: Option<f64>,
    pub query: Option<String>,
}

/// The top statements of `server_id` over `[from, to)` (optionally of one database).
pub async fn top(
    pool: &PgPool,
    server_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    database: Option<&str>,
    sort: Sort,
    limit: i64,
) -> Result<Vec<TopRow>> {
    let sql = format!(
        "WITH s AS (
            SELECT queryid, datname, usename, toplevel,
                   sum(calls)::int8 AS calls, sum(total_exec_time) AS total_exec_time,
                   sum(total_plan_time) AS total_plan_time,
                   sum(total_exec_time) / nullif(sum(calls), 0) AS mean_time,
                   sum(rows)::int8 AS rows, sum(shared_blks_hit)::int8 AS shared_blks_hit,
                   sum(shared_blks_read)::int8 AS shared_blks_read,
                   sum(shared_blks_dirtied)::int8 AS shared_blks_dirtied,
                   sum(shared_blks_written)::int8 AS shared_blks_written,
                   (sum(temp_blks_read) + sum(temp_blks_written))::int8 AS temp_blks,
                   sum(blk_read_time) AS blk_read_time, sum(blk_write_time) AS blk_write_time,
                   sum(wal_bytes)::int8 AS wal_bytes
            FROM stat_statements
            WHERE server_id = $1 AND slot >= $2 AND slot < $3 AND ($4::text IS NULL OR datname = $4)
            GROUP BY queryid, datname, usename, toplevel
        )
        SELECT s.*, s.total_exec_time / nullif(sum(s.total_exec_time) OVER (), 0) AS time_share, t.query
        FROM s LEFT JOIN statement_texts t ON t.server_id = $1 AND t.queryid = s.queryid
        ORDER BY s.{} DESC NULLS LAST, s.queryid LIMIT $5",
        sort.column()
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(server_id)
        .bind(from)
        .bind(to)
        .bind(database)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

/// A statement's text and when it was first and last seen.
pub async fn text(
    pool: &PgPool,
    server_id: i64,
    queryid: i64,
) -> Result<Option<(String, DateTime<Utc>, DateTime<Utc>)>> {
    Ok(sqlx::query_as(
        "SELECT query, first_seen, last_seen FROM statement_texts WHERE server_id = $1 AND queryid = $2",
    )
    .bind(server_id)
    .bind(queryid)
    .fetch_optional(pool)
    .await?)
}

/// One statement's figures per bucket of `step_secs` over `[from, to)`: (bucket, calls, exec ms,
/// rows, shared blocks read, covered seconds), over every database and user it ran as.
pub async fn series(
    pool: &PgPool,
    server_id: i64,
    queryid: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step_secs: i64,
) -> Result<Vec<(DateTime<Utc>, i64, f64, i64, i64, f64)>> {
    Ok(sqlx::query_as(
        "SELECT date_bin(make_interval(secs => $5), slot, 'epoch'::timestamptz) AS bucket,
                sum(calls)::int8, sum(exec), sum(rows)::int8, sum(blks_read)::int8, sum(secs)
         FROM (SELECT slot, sum(calls) AS calls, sum(total_exec_time) AS exec, sum(rows) AS rows,
                      sum(shared_blks_read) AS blks_read, max(secs) AS secs
               FROM stat_statements
               WHERE server_id = $1 AND queryid = $2 AND slot >= $3 AND slot < $4
               GROUP BY slot) per_slot
         GROUP BY 1 ORDER BY 1",
    )
    .bind(server_id)
    .bind(queryid)
    .bind(from)
    .bind(to)
    .bind(step_secs as f64)
    .fetch_all(pool)
    .await?)
}
