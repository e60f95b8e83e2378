//! The fleet's newest collected values, under postgres_exporter's names where it has the metric
//! (so its dashboards and the postgres mixin's alerts work with pgmon as the only target) and
//! `pgmon_*` names for the rest. Read from the store in a handful of statements per scrape.
//!
//! A server whose newest availability sample is down, or older than 2.5 collect intervals, is
//! `pg_up 0` and has no other series: a scrape never repeats stale values as current.

use super::text::{Kind, Text};
use pgmon_shared::store::Result;
use sqlx::{PgPool, Row};

/// postgres_exporter's `pg_stat_database` counters, as stored (times in ms, as the view gives them).
const STAT_DATABASE: [(&str, &str); 21] = [
    (
        "xact_commit",
        "Number of transactions in this database that have been committed",
    ),
    (
        "xact_rollback",
        "Number of transactions in this database that have been rolled back",
    ),
    ("blks_read", "Number of disk blocks read in this database"),
    (
        "blks_hit",
        "Number of times disk blocks were found already in the buffer cache",
    ),
    (
        "tup_returned",
        "Number of rows returned by queries in this database",
    ),
    (
        "tup_fetched",
        "Number of rows fetched by queries in this database",
    ),
    (
        "tup_inserted",
        "Number of rows inserted by queries in this database",
    ),
    (
        "tup_updated",
        "Number of rows updated by queries in this database",
    ),
    (
        "tup_deleted",
        "Number of rows deleted by queries in this database",
    ),
    (
        "conflicts",
        "Number of queries canceled due to conflicts with recovery in this database",
    ),
    (
        "temp_files",
        "Number of temporary files created by queries in this database",
    ),
    (
        "temp_bytes",
        "Total amount of data written to temporary files by queries in this database",
    ),
    ("deadlocks", "Number of deadlocks detected in this database"),
    (
        "checksum_failures",
        "Number of data page checksum failures detected in this database",
    ),
    (
        "blk_read_time",
        "Time spent reading data file blocks by backends in this database, in milliseconds",
    ),
    (
        "blk_write_time",
        "Time spent writing data file blocks by backends in this database, in milliseconds",
    ),
    (
        "session_time",
        "Time spent by database sessions in this database, in milliseconds",
    ),
    (
        "active_time",
        "Time spent executing SQL statements in this database, in milliseconds",
    ),
    (
        "sessions",
        "Total number of sessions established to this database",
    ),
    (
        "sessions_abandoned",
        "Number of database sessions that were terminated because connection to the client was lost",
    ),
    (
        "sessions_killed",
        "Number of database sessions to this database that were terminated by operator intervention",
    ),
];

struct Up {
    id: i64,
    name: String,
    slot: Option<chrono::DateTime<chrono::Utc>>,
}

fn f(row: &sqlx::postgres::PgRow, col: &str) -> Option<f64> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(col) {
        return v.map(|v| v as f64);
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(col) {
        return v.map(f64::from);
    }
    row.try_get::<Option<f64>, _>(col).ok().flatten()
}

fn ts(row: &sqlx::postgres::PgRow, col: &str) -> Option<f64> {
    row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(col)
        .ok()
        .flatten()
        .map(|t| t.timestamp_micros() as f64 / 1e6)
}

fn s(row: &sqlx::postgres::PgRow, col: &str) -> String {
    row.try_get::<Option<String>, _>(col)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The family `name` with one sample per server: column `col` of each of `rows`.
async fn per_server<'n>(
    t: &mut Text,
    rows: &[sqlx::postgres::PgRow],
    kind: Kind,
    name: &str,
    col: &str,
    help: &str,
    name_of: &impl Fn(i64) -> &'n str,
) -> Result<()> {
    t.family(name, kind, help).await;
    for r in rows {
        let id: i64 = r.try_get("server_id")?;
        t.maybe(&[("server", name_of(id))], f(r, col));
    }
    Ok(())
}

/// Writes every fleet family into `t`. `collect_secs` and `activity_secs` decide what is fresh.
pub async fn write(pool: &PgPool, t: &mut Text, collect_secs: f64, activity_secs: f64) -> Result<()> {
    let servers = sqlx::query(
        "SELECT s.id, s.name, a.slot, a.up, a.latency_ms, extract(epoch FROM now() - a.collected_at)::float8 AS age
         FROM servers s LEFT JOIN LATERAL (
             SELECT slot, up, latency_ms, collected_at FROM availability WHERE server_id = s.id
             ORDER BY slot DESC LIMIT 1) a ON true
         WHERE s.enabled ORDER BY s.name",
    )
    .fetch_all(pool)
    .await?;
    let fresh = 2.5 * collect_secs;
    let mut up: Vec<Up> = Vec::new();
    t.family("pg_up", Kind::Gauge, "Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).").await;
    for r in &servers {
        let name = s(r, "name");
        let ok = r.try_get::<Option<bool>, _>("up").ok().flatten().unwrap_or(false)
            && f(r, "age").is_some_and(|a| a <= fresh);
        t.sample(&[("server", &name)], if ok { 1.0 } else { 0.0 });
        if ok {
            up.push(Up {
                id: r.try_get("id")?,
                name,
                slot: r.try_get("slot")?,
            });
        }
    }
    t.family(
        "pgmon_collect_latency_seconds",
        Kind::Gauge,
        "Connect latency of the newest statistics sample.",
    )
    .await;
    for r in &servers {
        t.maybe(
            &[("server", &s(r, "name"))],
            f(r, "latency_ms").map(|v| v / 1000.0),
        );
    }
    t.family(
        "pgmon_data_age_seconds",
        Kind::Gauge,
        "Seconds since the newest statistics sample of the server (up or down).",
    )
    .await;
    for r in &servers {
        t.maybe(&[("server", &s(r, "name"))], f(r, "age"));
    }
    let ids: Vec<i64> = up.iter().map(|u| u.id).collect();
    let slots: Vec<chrono::DateTime<chrono::Utc>> = up.iter().filter_map(|u| u.slot).collect();
    // Looked up once per sample: a map, not a scan of the fleet.
    let names: std::collections::HashMap<i64, &str> = up.iter().map(|u| (u.id, u.name.as_str())).collect();
    let name_of = |id: i64| names.get(&id).copied().unwrap_or("");
    if ids.is_empty() || ids.len() != slots.len() {
        return Ok(());
    }

    // pg_stat_database at each server's newest statistics slot.
    let rows = sqlx::query(
        "SELECT t.* FROM stat_database t JOIN unnest($1::bigint[], $2::timestamptz[]) AS u(server_id, slot)
         ON t.server_id = u.server_id AND t.slot = u.slot ORDER BY t.server_id, t.datname",
    )
    .bind(&ids)
    .bind(&slots)
    .fetch_all(pool)
    .await?;
    let labels = |r: &sqlx::postgres::PgRow| -> (String, String, String) {
        let id: i64 = r.try_get("server_id").unwrap_or(0);
        let datid: i64 = r.try_get("datid").unwrap_or(0);
        (name_of(id).to_string(), datid.to_string(), s(r, "datname"))
    };
    let ls: Vec<(String, String, String)> = rows.iter().map(labels).collect();
    t.family(
        "pg_stat_database_numbackends",
        Kind::Gauge,
        "Number of backends currently connected to this database",
    )
    .await;
    for (r, (srv, datid, db)) in rows.iter().zip(&ls) {
        t.maybe(
            &[("server", srv), ("datid", datid), ("datname", db)],
            f(r, "numbackends"),
        );
    }
    for (col, help) in STAT_DATABASE {
        t.family(&format!("pg_stat_database_{col}"), Kind::Counter, help)
            .await;
        for (r, (srv, datid, db)) in rows.iter().zip(&ls) {
            t.maybe(&[("server", srv), ("datid", datid), ("datname", db)], f(r, col));
        }
    }
    t.family(
        "pg_stat_database_stats_reset",
        Kind::Gauge,
        "Time at which these statistics were last reset",
    )
    .await;
    for (r, (srv, datid, db)) in rows.iter().zip(&ls) {
        t.maybe(
            &[("server", srv), ("datid", datid), ("datname", db)],
            ts(r, "stats_reset"),
        );
    }
    t.family(
        "pg_postmaster_start_time_seconds",
        Kind::Gauge,
        "Time at which postmaster started",
    )
    .await;
    let mut seen = std::collections::HashSet::new();
    for (r, (srv, _, _)) in rows.iter().zip(&ls) {
        if seen.insert(srv.clone()) {
            t.maybe(&[("server", srv)], ts(r, "postmaster_start"));
        }
    }

    // Sizes and disk: their own, slower schedule; the newest of each server.
    let sizes = sqlx::query(
        "SELECT d.server_id, d.datname, d.size_bytes FROM unnest($1::bigint[]) AS u(id)
         JOIN LATERAL (SELECT max(slot) AS slot FROM db_size WHERE server_id = u.id) m ON true
         JOIN db_size d ON d.server_id = u.id AND d.slot = m.slot ORDER BY d.server_id, d.datname",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    t.family(
        "pg_database_size_bytes",
        Kind::Gauge,
        "Disk space used by the database",
    )
    .await;
    for r in &sizes {
        let id: i64 = r.try_get("server_id")?;
        t.maybe(
            &[("server", name_of(id)), ("datname", &s(r, "datname"))],
            f(r, "size_bytes"),
        );
    }
    let disks = sqlx::query(
        "SELECT d.* FROM unnest($1::bigint[]) AS u(id)
         JOIN LATERAL (SELECT * FROM disk_usage WHERE server_id = u.id ORDER BY slot DESC LIMIT 1) d ON true",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    for (col, help) in [
        (
            "total_bytes",
            "Size of the file system of the data directory (over SSH).",
        ),
        (
            "used_bytes",
            "Used space of the file system of the data directory (over SSH).",
        ),
        (
            "available_bytes",
            "Available space of the file system of the data directory (over SSH).",
        ),
    ] {
        t.family(&format!("pgmon_disk_{col}"), Kind::Gauge, help).await;
        for r in &disks {
            let id: i64 = r.try_get("server_id")?;
            t.maybe(&[("server", name_of(id)), ("mount", &s(r, "mount"))], f(r, col));
        }
    }

    // Server-wide counters at each server's newest statistics slot.
    let latest = |table: &str| {
        format!(
            "SELECT x.* FROM {table} x JOIN unnest($1::bigint[], $2::timestamptz[]) AS u(server_id, slot)
             ON x.server_id = u.server_id AND x.slot = u.slot ORDER BY x.server_id"
        )
    };
    let cp = sqlx::query(sqlx::AssertSqlSafe(latest("stat_checkpointer")))
        .bind(&ids)
        .bind(&slots)
        .fetch_all(pool)
        .await?;
    for (name, col, help) in [
        (
            "pg_stat_bgwriter_checkpoints_timed_total",
            "checkpoints_timed",
            "Number of scheduled checkpoints that have been performed",
        ),
        (
            "pg_stat_bgwriter_checkpoints_req_total",
            "checkpoints_req",
            "Number of requested checkpoints that have been performed",
        ),
        (
            "pg_stat_bgwriter_checkpoint_write_time_total",
            "write_time",
            "Total amount of time that has been spent in the portion of checkpoint processing where files are written to disk, in milliseconds",
        ),
        (
            "pg_stat_bgwriter_checkpoint_sync_time_total",
            "sync_time",
            "Total amount of time that has been spent in the portion of checkpoint processing where files are synchronized to disk, in milliseconds",
        ),
        (
            "pg_stat_bgwriter_buffers_checkpoint_total",
            "buffers_written",
            "Number of buffers written during checkpoints",
        ),
        (
            "pg_stat_bgwriter_buffers_clean_total",
            "buffers_clean",
            "Number of buffers written by the background writer",
        ),
        (
            "pg_stat_bgwriter_maxwritten_clean_total",
            "maxwritten_clean",
            "Number of times the background writer stopped a cleaning scan because it had written too many buffers",
        ),
        (
            "pg_stat_bgwriter_buffers_backend_total",
            "buffers_backend",
            "Number of buffers written directly by a backend (before PostgreSQL 17)",
        ),
        (
            "pg_stat_bgwriter_buffers_backend_fsync_total",
            "buffers_backend_fsync",
            "Number of times a backend had to execute its own fsync call (before PostgreSQL 17)",
        ),
        (
            "pg_stat_bgwriter_buffers_alloc_total",
            "buffers_alloc",
            "Number of buffers allocated",
        ),
        (
            "pgmon_checkpointer_restartpoints_done_total",
            "restartpoints_done",
            "Restartpoints done (PostgreSQL 17+)",
        ),
    ] {
        per_server(t, &cp, Kind::Counter, name, col, help, &name_of).await?;
    }
    let wal = sqlx::query(sqlx::AssertSqlSafe(latest("stat_wal")))
        .bind(&ids)
        .bind(&slots)
        .fetch_all(pool)
        .await?;
    for (name, col, help) in [
        (
            "pgmon_wal_position_bytes_total",
            "wal_position",
            "WAL position in bytes (inserted on a primary, replayed on a standby)",
        ),
        (
            "pg_stat_wal_records_total",
            "wal_records",
            "Number of WAL records generated (PostgreSQL 14+)",
        ),
        (
            "pg_stat_wal_fpi_total",
            "wal_fpi",
            "Number of WAL full page images generated (PostgreSQL 14+)",
        ),
        (
            "pg_stat_wal_bytes_total",
            "wal_bytes",
            "Total amount of WAL generated in bytes (PostgreSQL 14+)",
        ),
        (
            "pg_stat_wal_buffers_full_total",
            "wal_buffers_full",
            "Number of times WAL data was written to disk because WAL buffers became full (PostgreSQL 14+)",
        ),
    ] {
        per_server(t, &wal, Kind::Counter, name, col, help, &name_of).await?;
    }
    let arch = sqlx::query(sqlx::AssertSqlSafe(latest("stat_archiver")))
        .bind(&ids)
        .bind(&slots)
        .fetch_all(pool)
        .await?;
    for (name, col, help) in [
        (
            "pg_stat_archiver_archived_count",
            "archived_count",
            "Number of WAL files that have been successfully archived",
        ),
        (
            "pg_stat_archiver_failed_count",
            "failed_count",
            "Number of failed attempts for archiving WAL files",
        ),
    ] {
        per_server(t, &arch, Kind::Counter, name, col, help, &name_of).await?;
    }
    t.family(
        "pg_stat_archiver_last_archive_age",
        Kind::Gauge,
        "Time in seconds since last WAL segment was successfully archived",
    )
    .await;
    for r in &arch {
        let id: i64 = r.try_get("server_id")?;
        let at = ts(r, "collected_at");
        t.maybe(
            &[("server", name_of(id))],
            ts(r, "last_archived_time").zip(at).map(|(a, now)| now - a),
        );
    }

    // Activity, replication and slots: the newest sample of the activity schedule, if fresh.
    let act = sqlx::query(
        "SELECT x.* FROM unnest($1::bigint[]) AS u(id)
         JOIN LATERAL (SELECT * FROM activity_sample WHERE server_id = u.id ORDER BY slot DESC LIMIT 1) x ON true
         WHERE x.collected_at > now() - make_interval(secs => $2)",
    )
    .bind(&ids)
    .bind(2.5 * activity_secs)
    .fetch_all(pool)
    .await?;
    t.family(
        "pg_stat_activity_count",
        Kind::Gauge,
        "Number of client connections by state",
    )
    .await;
    for r in &act {
        let id: i64 = r.try_get("server_id")?;
        for (state, col) in [
            ("active", "active"),
            ("idle", "idle"),
            ("idle in transaction", "idle_in_xact"),
            ("idle in transaction (aborted)", "idle_in_xact_aborted"),
        ] {
            t.maybe(&[("server", name_of(id)), ("state", state)], f(r, col));
        }
    }
    t.family(
        "pg_stat_activity_max_tx_duration",
        Kind::Gauge,
        "Max duration in seconds any active transaction has been running",
    )
    .await;
    for r in &act {
        let id: i64 = r.try_get("server_id")?;
        t.sample(
            &[("server", name_of(id))],
            f(r, "longest_xact_secs").unwrap_or(0.0),
        );
    }
    t.family(
        "pg_replication_is_replica",
        Kind::Gauge,
        "Indicates if the server is a replica",
    )
    .await;
    for r in &act {
        let id: i64 = r.try_get("server_id")?;
        let rep = r.try_get::<Option<bool>, _>("in_recovery").ok().flatten();
        t.maybe(&[("server", name_of(id))], rep.map(|b| if b { 1.0 } else { 0.0 }));
    }
    t.family(
        "pg_replication_lag_seconds",
        Kind::Gauge,
        "Replication lag behind master in seconds (on a standby)",
    )
    .await;
    for r in &act {
        let id: i64 = r.try_get("server_id")?;
        if r.try_get::<Option<bool>, _>("in_recovery").ok().flatten() == Some(true) {
            t.maybe(&[("server", name_of(id))], f(r, "replay_delay_secs"));
        }
    }
    for (name, col, help) in [
        (
            "pgmon_sessions_waiting_on_locks",
            "waiting_lock",
            "Sessions waiting on a heavyweight lock",
        ),
        (
            "pgmon_longest_query_seconds",
            "longest_query_secs",
            "Age of the longest running query",
        ),
        (
            "pgmon_oldest_xmin_age",
            "oldest_xmin_age",
            "Transactions since the oldest xmin held (sessions, prepared transactions, slots, standbys)",
        ),
        (
            "pgmon_max_xid_age",
            "max_xid_age",
            "The largest age(datfrozenxid) of the server's databases",
        ),
        (
            "pgmon_max_mxid_age",
            "max_mxid_age",
            "The largest mxid_age(datminmxid) of the server's databases",
        ),
    ] {
        per_server(t, &act, Kind::Gauge, name, col, help, &name_of).await?;
    }
    t.family(
        "pgmon_wraparound_used_ratio",
        Kind::Gauge,
        "Share of the 2^31 transaction ID limit used by the oldest database (0 to 1)",
    )
    .await;
    for r in &act {
        let id: i64 = r.try_get("server_id")?;
        t.maybe(
            &[("server", name_of(id))],
            f(r, "max_xid_age").map(|a| a / 2_147_483_648.0),
        );
    }
    let standbys = sqlx::query(
        "SELECT x.* FROM unnest($1::bigint[]) AS u(id)
         JOIN LATERAL (SELECT max(slot) AS slot FROM replication_sample WHERE server_id = u.id) m ON true
         JOIN replication_sample x ON x.server_id = u.id AND x.slot = m.slot
         WHERE x.collected_at > now() - make_interval(secs => $2) ORDER BY x.server_id, x.standby",
    )
    .bind(&ids)
    .bind(2.5 * activity_secs)
    .fetch_all(pool)
    .await?;
    t.family(
        "pg_stat_replication_pg_wal_lsn_diff",
        Kind::Gauge,
        "Lag in bytes between master and slave (replayed)",
    )
    .await;
    for r in &standbys {
        let id: i64 = r.try_get("server_id")?;
        let (app, addr, st, sync) = (
            s(r, "standby"),
            s(r, "client_addr"),
            s(r, "state"),
            s(r, "sync_state"),
        );
        t.maybe(
            &[
                ("server", name_of(id)),
                ("application_name", &app),
                ("client_addr", &addr),
                ("state", &st),
                ("sync_state", &sync),
            ],
            f(r, "replay_lag_bytes"),
        );
    }
    t.family(
        "pgmon_standby_replay_lag_seconds",
        Kind::Gauge,
        "Replay lag of each standby in seconds (0 once caught up)",
    )
    .await;
    for r in &standbys {
        let id: i64 = r.try_get("server_id")?;
        t.maybe(
            &[("server", name_of(id)), ("application_name", &s(r, "standby"))],
            f(r, "replay_lag_secs"),
        );
    }
    let slots_rows = sqlx::query(
        "SELECT x.* FROM unnest($1::bigint[]) AS u(id)
         JOIN LATERAL (SELECT max(slot) AS slot FROM slot_sample WHERE server_id = u.id) m ON true
         JOIN slot_sample x ON x.server_id = u.id AND x.slot = m.slot
         WHERE x.collected_at > now() - make_interval(secs => $2) ORDER BY x.server_id, x.slot_name",
    )
    .bind(&ids)
    .bind(2.5 * activity_secs)
    .fetch_all(pool)
    .await?;
    t.family(
        "pg_replication_slot_slot_is_active",
        Kind::Gauge,
        "Whether the replication slot is active or not",
    )
    .await;
    for r in &slots_rows {
        let id: i64 = r.try_get("server_id")?;
        let active = r.try_get::<Option<bool>, _>("active").ok().flatten();
        t.maybe(
            &[
                ("server", name_of(id)),
                ("slot_name", &s(r, "slot_name")),
                ("slot_type", &s(r, "slot_type")),
            ],
            active.map(|a| if a { 1.0 } else { 0.0 }),
        );
    }
    t.family("pg_replication_slot_safe_wal_size_bytes", Kind::Gauge, "Number of bytes that can be written to WAL such that this slot is not in danger of getting in state lost").await;
    for r in &slots_rows {
        let id: i64 = r.try_get("server_id")?;
        t.maybe(
            &[
                ("server", name_of(id)),
                ("slot_name", &s(r, "slot_name")),
                ("slot_type", &s(r, "slot_type")),
            ],
            f(r, "safe_wal_size"),
        );
    }
    t.family(
        "pgmon_replication_slot_retained_bytes",
        Kind::Gauge,
        "WAL the slot keeps from being removed, in bytes",
    )
    .await;
    for r in &slots_rows {
        let id: i64 = r.try_get("server_id")?;
        t.maybe(
            &[
                ("server", name_of(id)),
                ("slot_name", &s(r, "slot_name")),
                ("slot_type", &s(r, "slot_type")),
            ],
            f(r, "retained_bytes"),
        );
    }
    Ok(())
}
