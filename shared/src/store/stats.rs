//! Snapshot tables written by the collector: `stat_database`, `availability`, `db_size`, `disk_usage`.
//!
//! Every row is keyed by (server, [database,] slot) and inserted with `ON CONFLICT DO NOTHING`, so a
//! snapshot written twice (a restart, two collectors, a retry after the store came back) stays one
//! row. Rows go in as arrays through `unnest`, one statement per table for a whole batch: it is the
//! write path's whole cost, and it runs at a good fraction of `COPY`'s rate. Callers pass a connection
//! inside their transaction, so a batch lands whole or not at all.

use super::Result;

/// Channel the stats tables' triggers notify on commit, with the id of the server whose rows changed
/// (`*`: possibly every server's), see migration 0008.
pub const STATS_CHANNEL: &str = "pgmon_stats";
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::borrow::Borrow;

/// One row of `pg_stat_database`, counters raw. Columns the server's version lacks are `None`.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct StatDatabaseRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub datid: i64,
    pub datname: String,
    pub collected_at: DateTime<Utc>,
    pub postmaster_start: Option<DateTime<Utc>>,
    pub stats_reset: Option<DateTime<Utc>>,
    pub numbackends: Option<i32>,
    pub xact_commit: Option<i64>,
    pub xact_rollback: Option<i64>,
    pub blks_read: Option<i64>,
    pub blks_hit: Option<i64>,
    pub tup_returned: Option<i64>,
    pub tup_fetched: Option<i64>,
    pub tup_inserted: Option<i64>,
    pub tup_updated: Option<i64>,
    pub tup_deleted: Option<i64>,
    pub conflicts: Option<i64>,
    pub temp_files: Option<i64>,
    pub temp_bytes: Option<i64>,
    pub deadlocks: Option<i64>,
    pub checksum_failures: Option<i64>,
    pub blk_read_time: Option<f64>,
    pub blk_write_time: Option<f64>,
    pub session_time: Option<f64>,
    pub active_time: Option<f64>,
    pub idle_in_transaction_time: Option<f64>,
    pub sessions: Option<i64>,
    pub sessions_abandoned: Option<i64>,
    pub sessions_fatal: Option<i64>,
    pub sessions_killed: Option<i64>,
}

/// Whether a server answered in a stats slot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AvailabilityRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub collected_at: DateTime<Utc>,
    pub up: bool,
    pub latency_ms: Option<f64>,
    /// `remote::ErrorClass::as_str()` when down.
    pub error_class: Option<String>,
    /// `remote::RemoteError::message` when down.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DbSizeRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub datname: String,
    pub collected_at: DateTime<Utc>,
    pub size_bytes: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DiskUsageRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub collected_at: DateTime<Utc>,
    pub mount: String,
    pub total_bytes: i64,
    pub used_bytes: i64,
    pub available_bytes: i64,
}

/// The column list `COPY` and the insert share, in order (the benchmark's baseline uses it).
pub const STAT_DATABASE_COLUMNS: &str = "server_id, slot, datid, datname, collected_at, postmaster_start, \
    stats_reset, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, \
    tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks, checksum_failures, \
    blk_read_time, blk_write_time, session_time, active_time, idle_in_transaction_time, sessions, \
    sessions_abandoned, sessions_fatal, sessions_killed";

/// Inserts the rows that are not there yet; returns how many were new. Must run inside a transaction.
///
/// The rows go in with `COPY` (the fast path: a snapshot is nearly always new); if the key already
/// exists (a slot written again after a restart, a retry, two collectors), `COPY` fails as a whole,
/// the savepoint undoes it and the rows are re-sent as `INSERT ... ON CONFLICT DO NOTHING`.
pub async fn insert_stat_database<R>(conn: &mut PgConnection, rows: &[R]) -> Result<u64>
where
    R: Borrow<StatDatabaseRow> + Sync,
{
    if rows.is_empty() {
        return Ok(0);
    }
    sqlx::query("SAVEPOINT pgmon_stat_copy")
        .execute(&mut *conn)
        .await?;
    let copied = async {
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY stat_database ({STAT_DATABASE_COLUMNS}) FROM STDIN"
            ))
            .await?;
        let mut buf = Vec::with_capacity(64 * 1024);
        for r in rows {
            copy_line(&mut buf, r.borrow());
            if buf.len() >= 60 * 1024 {
                copy.send(buf.as_slice()).await?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            copy.send(buf.as_slice()).await?;
        }
        copy.finish().await
    }
    .await
    .map_err(super::StoreError::from);
    match copied {
        Ok(n) => {
            sqlx::query("RELEASE SAVEPOINT pgmon_stat_copy")
                .execute(&mut *conn)
                .await?;
            Ok(n)
        }
        Err(super::StoreError::Conflict(_)) => {
            sqlx::query("ROLLBACK TO SAVEPOINT pgmon_stat_copy")
                .execute(&mut *conn)
                .await?;
            insert_stat_database_on_conflict(conn, rows).await
        }
        Err(e) => Err(e),
    }
}

/// One row in COPY's text format. Text is escaped (a database name may hold tabs, newlines or
/// backslashes); timestamps are UTC; NULL is `\N`.
fn copy_line(buf: &mut Vec<u8>, r: &StatDatabaseRow) {
    use std::io::Write;
    fn int<T: std::fmt::Display>(buf: &mut Vec<u8>, v: Option<T>) {
        match v {
            Some(v) => {
                let _ = write!(buf, "{v}");
            }
            None => buf.extend_from_slice(b"\\N"),
        }
    }
    fn float(buf: &mut Vec<u8>, v: Option<f64>) {
        match v {
            Some(v) if v.is_nan() => buf.extend_from_slice(b"NaN"),
            Some(v) if v.is_infinite() => {
                buf.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" })
            }
            other => int(buf, other),
        }
    }
    fn ts(buf: &mut Vec<u8>, v: Option<DateTime<Utc>>) {
        match v {
            Some(t) => {
                let _ = write!(buf, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f+00"));
            }
            None => buf.extend_from_slice(b"\\N"),
        }
    }
    fn text(buf: &mut Vec<u8>, v: &str) {
        for b in v.bytes() {
            match b {
                b'\\' => buf.extend_from_slice(b"\\\\"),
                b'\n' => buf.extend_from_slice(b"\\n"),
                b'\r' => buf.extend_from_slice(b"\\r"),
                b'\t' => buf.extend_from_slice(b"\\t"),
                _ => buf.push(b),
            }
        }
    }
    let tab = |buf: &mut Vec<u8>| buf.push(b'\t');
    int(buf, Some(r.server_id));
    tab(buf);
    ts(buf, Some(r.slot));
    tab(buf);
    int(buf, Some(r.datid));
    tab(buf);
    text(buf, &r.datname);
    tab(buf);
    ts(buf, Some(r.collected_at));
    tab(buf);
    ts(buf, r.postmaster_start);
    tab(buf);
    ts(buf, r.stats_reset);
    tab(buf);
    int(buf, r.numbackends);
    for v in [
        r.xact_commit,
        r.xact_rollback,
        r.blks_read,
        r.blks_hit,
        r.tup_returned,
        r.tup_fetched,
        r.tup_inserted,
        r.tup_updated,
        r.tup_deleted,
        r.conflicts,
        r.temp_files,
        r.temp_bytes,
        r.deadlocks,
        r.checksum_failures,
    ] {
        tab(buf);
        int(buf, v);
    }
    for v in [
        r.blk_read_time,
        r.blk_write_time,
        r.session_time,
        r.active_time,
        r.idle_in_transaction_time,
    ] {
        tab(buf);
        float(buf, v);
    }
    for v in [
        r.sessions,
        r.sessions_abandoned,
        r.sessions_fatal,
        r.sessions_killed,
    ] {
        tab(buf);
        int(buf, v);
    }
    buf.push(b'\n');
}

/// The slow path of [`insert_stat_database`]: rows as arrays through `unnest`, existing keys skipped.
async fn insert_stat_database_on_conflict<R>(conn: &mut PgConnection, rows: &[R]) -> Result<u64>
where
    R: Borrow<StatDatabaseRow> + Sync,
{
    macro_rules! col {
        ($f:ident) => {
            rows.iter()
                .map(|r| r.borrow().$f.clone())
                .collect::<Vec<_>>()
        };
    }
    let sql = format!(
        "INSERT INTO stat_database ({STAT_DATABASE_COLUMNS})
         SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::text[], $5::timestamptz[],
             $6::timestamptz[], $7::timestamptz[], $8::int[], $9::bigint[], $10::bigint[], $11::bigint[],
             $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],
             $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[], $23::float8[],
             $24::float8[], $25::float8[], $26::float8[], $27::float8[], $28::bigint[], $29::bigint[],
             $30::bigint[], $31::bigint[])
         ON CONFLICT DO NOTHING"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(col!(server_id))
        .bind(col!(slot))
        .bind(col!(datid))
        .bind(col!(datname))
        .bind(col!(collected_at))
        .bind(col!(postmaster_start))
        .bind(col!(stats_reset))
        .bind(col!(numbackends))
        .bind(col!(xact_commit))
        .bind(col!(xact_rollback))
        .bind(col!(blks_read))
        .bind(col!(blks_hit))
        .bind(col!(tup_returned))
        .bind(col!(tup_fetched))
        .bind(col!(tup_inserted))
        .bind(col!(tup_updated))
        .bind(col!(tup_deleted))
        .bind(col!(conflicts))
        .bind(col!(temp_files))
        .bind(col!(temp_bytes))
        .bind(col!(deadlocks))
        .bind(col!(checksum_failures))
        .bind(col!(blk_read_time))
        .bind(col!(blk_write_time))
        .bind(col!(session_time))
        .bind(col!(active_time))
        .bind(col!(idle_in_transaction_time))
        .bind(col!(sessions))
        .bind(col!(sessions_abandoned))
        .bind(col!(sessions_fatal))
        .bind(col!(sessions_killed))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Writes the samples not yet stored; returns the (server, slot) keys of those it wrote.
pub async fn insert_availability(
    conn: &mut PgConnection,
    rows: &[AvailabilityRow],
) -> Result<Vec<(i64, DateTime<Utc>)>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let done = sqlx::query_as(
        "INSERT INTO availability (server_id, slot, collected_at, up, latency_ms, error_class, error)
         SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::bool[],
             $5::float8[], $6::text[], $7::text[])
         ON CONFLICT DO NOTHING
         RETURNING server_id, slot",
    )
    .bind(rows.iter().map(|r| r.server_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.slot).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.collected_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.up).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.latency_ms).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.error_class.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    Ok(done)
}

pub async fn insert_db_size(conn: &mut PgConnection, rows: &[DbSizeRow]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "INSERT INTO db_size (server_id, slot, datname, collected_at, size_bytes)
         SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::timestamptz[], $5::bigint[])
         ON CONFLICT DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.server_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.slot).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.datname.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.collected_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.size_bytes).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

pub async fn insert_disk_usage(conn: &mut PgConnection, rows: &[DiskUsageRow]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "INSERT INTO disk_usage (server_id, slot, collected_at, mount, total_bytes, used_bytes, available_bytes)
         SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::bigint[],
             $6::bigint[], $7::bigint[])
         ON CONFLICT DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.server_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.slot).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.collected_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.mount.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.total_bytes).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.used_bytes).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.available_bytes).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Creates the monthly partitions covering `[from, to]`; returns how many were created.
pub async fn ensure_partitions(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<i32> {
    Ok(sqlx::query_scalar("SELECT pgmon_ensure_partitions($1, $2)")
        .bind(from)
        .bind(to)
        .fetch_one(pool)
        .await?)
}

/// Drops the monthly partitions that end at or before `before`; returns how many were dropped.
pub async fn drop_partitions_before(pool: &PgPool, before: DateTime<Utc>) -> Result<i32> {
    Ok(sqlx::query_scalar("SELECT pgmon_drop_partitions_before($1)")
        .bind(before)
        .fetch_one(pool)
        .await?)
}

/// Whether an insert failed because no partition covers a row's slot (SQLSTATE 23514 from routing).
pub fn is_missing_partition(e: &super::StoreError) -> bool {
    matches!(e, super::StoreError::MissingPartition(_))
}
