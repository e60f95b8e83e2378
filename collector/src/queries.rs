//! Everything the collector runs on a monitored server: read-only catalog and statistics queries,
//! each under a client-side deadline. Names and values read from a server are only ever bound as
//! parameters or returned as data, never pasted into SQL.
//!
//! A role with `pg_monitor` sees all of it; `pg_database_size` also needs CONNECT on the database or
//! `pg_read_all_stats` (part of `pg_monitor`).

use chrono::{DateTime, Utc};
use pgmon_shared::remote::{self, RemoteError, SessionOpts};
use pgmon_shared::store::collectors::DatabaseInfo;
use pgmon_shared::store::stats::StatDatabaseRow;
use tokio_postgres::Client;

/// What the server says about itself.
#[derive(Debug, Clone, Copy)]
pub struct ServerInfo {
    pub version_num: i32,
    pub postmaster_start: Option<DateTime<Utc>>,
}

pub async fn server_info(client: &Client, opts: &SessionOpts) -> Result<ServerInfo, RemoteError> {
    let row = remote::call(
        opts.call_deadline(),
        client.query_one(
            "SELECT current_setting('server_version_num')::int, pg_postmaster_start_time()",
            &[],
        ),
    )
    .await?;
    Ok(ServerInfo {
        version_num: row.try_get(0).map_err(|e| RemoteError::from_pg(&e))?,
        postmaster_start: row.try_get(1).map_err(|e| RemoteError::from_pg(&e))?,
    })
}

/// The `pg_stat_database` query for a server version: columns the version lacks read as NULL, so
/// PostgreSQL 12 to 17 (and older, with fewer columns) give the same row shape.
pub fn stat_database_sql(version_num: i32) -> String {
    let checksum = if version_num >= 120000 {
        "checksum_failures"
    } else {
        "NULL::bigint"
    };
    let sessions = if version_num >= 140000 {
        "session_time, active_time, idle_in_transaction_time, sessions, sessions_abandoned, \
         sessions_fatal, sessions_killed"
    } else {
        "NULL::float8, NULL::float8, NULL::float8, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint"
    };
    // The row of shared objects (datid 0, no name) is left out: it is no database.
    format!(
        "SELECT datid::bigint, datname::text, stats_reset, numbackends, xact_commit, xact_rollback,
                blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted,
                conflicts, temp_files, temp_bytes, deadlocks, {checksum}, blk_read_time, blk_write_time,
                {sessions}
         FROM pg_stat_database WHERE datname IS NOT NULL"
    )
}

/// One stats snapshot: a row per database, keyed by `server_id` and `slot`.
pub async fn stat_database(
    client: &Client,
    opts: &SessionOpts,
    server_id: i64,
    slot: DateTime<Utc>,
) -> Result<Vec<StatDatabaseRow>, RemoteError> {
    let info = server_info(client, opts).await?;
    let rows = remote::call(
        opts.call_deadline(),
        client.query(&stat_database_sql(info.version_num), &[]),
    )
    .await?;
    let collected_at = Utc::now();
    let get = |e: tokio_postgres::Error| RemoteError::from_pg(&e);
    rows.iter()
        .map(|r| {
            Ok(StatDatabaseRow {
                server_id,
                slot,
                datid: r.try_get(0).map_err(get)?,
                datname: r.try_get(1).map_err(get)?,
                collected_at,
                postmaster_start: info.postmaster_start,
                stats_reset: r.try_get(2).map_err(get)?,
                numbackends: r.try_get(3).map_err(get)?,
                xact_commit: r.try_get(4).map_err(get)?,
                xact_rollback: r.try_get(5).map_err(get)?,
                blks_read: r.try_get(6).map_err(get)?,
                blks_hit: r.try_get(7).map_err(get)?,
                tup_returned: r.try_get(8).map_err(get)?,
                tup_fetched: r.try_get(9).map_err(get)?,
                tup_inserted: r.try_get(10).map_err(get)?,
                tup_updated: r.try_get(11).map_err(get)?,
                tup_deleted: r.try_get(12).map_err(get)?,
                conflicts: r.try_get(13).map_err(get)?,
                temp_files: r.try_get(14).map_err(get)?,
                temp_bytes: r.try_get(15).map_err(get)?,
                deadlocks: r.try_get(16).map_err(get)?,
                checksum_failures: r.try_get(17).map_err(get)?,
                blk_read_time: r.try_get(18).map_err(get)?,
                blk_write_time: r.try_get(19).map_err(get)?,
                session_time: r.try_get(20).map_err(get)?,
                active_time: r.try_get(21).map_err(get)?,
                idle_in_transaction_time: r.try_get(22).map_err(get)?,
                sessions: r.try_get(23).map_err(get)?,
                sessions_abandoned: r.try_get(24).map_err(get)?,
                sessions_fatal: r.try_get(25).map_err(get)?,
                sessions_killed: r.try_get(26).map_err(get)?,
            })
        })
        .collect()
}

/// Every database of the server with its attributes. Its creation time is the modification time of
/// `base/<oid>/PG_VERSION` (what the original backend showed), read only where the monitoring role
/// may call `pg_stat_file` (a superuser, or an explicit GRANT); otherwise it stays unknown.
pub async fn databases(client: &Client, opts: &SessionOpts) -> Result<Vec<DatabaseInfo>, RemoteError> {
    let rows = remote::call(
        opts.call_deadline(),
        client.query(
            "SELECT d.oid::bigint, d.datname::text, pg_get_userbyid(d.datdba)::text,
                    pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datallowconn,
                    d.datistemplate, age(d.datfrozenxid)::bigint,
                    CASE WHEN has_function_privilege('pg_catalog.pg_stat_file(text, boolean)', 'EXECUTE')
                         THEN (pg_stat_file('base/' || d.oid || '/PG_VERSION', true)).modification END
             FROM pg_database d ORDER BY d.oid",
            &[],
        ),
    )
    .await?;
    let get = |e: tokio_postgres::Error| RemoteError::from_pg(&e);
    rows.iter()
        .map(|r| {
            Ok(DatabaseInfo {
                oid: r.try_get(0).map_err(get)?,
                name: r.try_get(1).map_err(get)?,
                owner: r.try_get(2).map_err(get)?,
                encoding: r.try_get(3).map_err(get)?,
                datcollate: r.try_get(4).map_err(get)?,
                datallowconn: r.try_get(5).map_err(get)?,
                datistemplate: r.try_get(6).map_err(get)?,
                frozen_xid_age: r.try_get(7).map_err(get)?,
                created_at: r.try_get(8).map_err(get)?,
            })
        })
        .collect()
}

/// The databases whose size can be read (connectable), as (oid, name).
pub async fn sizable_databases(
    client: &Client,
    opts: &SessionOpts,
) -> Result<Vec<(i64, String)>, RemoteError> {
    let rows = remote::call(
        opts.call_deadline(),
        client.query(
            "SELECT oid::bigint, datname::text FROM pg_database WHERE datallowconn ORDER BY oid",
            &[],
        ),
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(|e| RemoteError::from_pg(&e))?,
                r.try_get(1).map_err(|e| RemoteError::from_pg(&e))?,
            ))
        })
        .collect()
}

/// `pg_database_size` of one database, by oid. One statement per database: on a cluster with many
/// objects one slow database then costs only its own statement, not the others'.
pub async fn database_size(client: &Client, opts: &SessionOpts, oid: i64) -> Result<i64, RemoteError> {
    let row = remote::call(
        opts.call_deadline(),
        client.query_one("SELECT pg_database_size($1::bigint::oid)", &[&oid]),
    )
    .await?;
    row.try_get(0).map_err(|e| RemoteError::from_pg(&e))
}

#[cfg(test)]
mod tests {
    use super::stat_database_sql;

    #[test]
    fn columns_follow_the_server_version() {
        let v11 = stat_database_sql(110000);
        assert!(!v11.contains("checksum_failures") && !v11.contains("session_time"));
        let v12 = stat_database_sql(120000);
        assert!(v12.contains("checksum_failures") && !v12.contains("session_time"));
        for v in [140000, 150004, 170002] {
            let sql = stat_database_sql(v);
            assert!(
                sql.contains("checksum_failures") && sql.contains("sessions_killed"),
                "{v}"
            );
        }
        // Same shape whatever the version: 27 columns.
        for v in [110000, 120000, 170000] {
            let select = stat_database_sql(v);
            let cols = select
                .split("FROM")
                .next()
                .unwrap_or_default()
                .matches(',')
                .count()
                + 1;
            assert_eq!(cols, 27, "{v}");
        }
    }
}
