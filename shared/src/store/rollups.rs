//! Keeps `stat_rollup` up to date from the raw stats tables (see migrations/0004_rollups.sql).
//!
//! Run by the collector (after each stats slot and by its maintenance), never by a request. Each run
//! recomputes, per server and source table, everything after `done_until - LOOKBACK`: rows that
//! arrive a little late are still picked up, and running it twice changes nothing. A watermark only
//! moves when that server's rows arrive, so a store outage delays rows without losing them; a row
//! written more than [`LOOKBACK`] after newer rows of the same server and table is not rolled up (it
//! stays in the raw table). The lookback is short because every run rewrites it: on the benchmark
//! (10 servers x 20 databases) a one-day lookback cost 4 s per run.
//!
//! Counter deltas follow the rules of [`crate::stats::rates`] written in SQL, with one difference: the
//! longest accepted interval is twice the shortest spacing seen in the window (the collector's
//! interval in practice), where readers use twice the configured interval.

use super::Result;
use crate::stats::rates::COUNTER_NAMES;
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};
use std::sync::LazyLock;

/// Coarser resolutions kept besides the per-slot rows, in seconds.
pub const TIERS: [i64; 2] = [3600, 43200];

/// How far back each run recomputes, so late rows are rolled up too.
pub const LOOKBACK: &str = "2 hours";

/// How far a lagging source may hold packing back. A chunk is packed into `stat_rollup_chunk` once
/// every source of the server (stats, sizes, disk, availability) has rolled up [`LOOKBACK`] past
/// its end, so sizes and disk (every 30 min) or a slow server still land before their chunk closes;
/// but never more than this behind the server's newest rolled-up slot, so a source that stopped
/// (SSH removed, a server down for the stats but probed for availability) does not stop packing.
/// Packing close behind the newest slot keeps the unpacked rows, which every read sends, few:
/// ~50 per database at 10 minutes instead of ~120 with a fixed 12 h margin.
pub const PACK_MARGIN: &str = "12 hours";

/// Resolutions that are packed, in seconds (0 = per slot).
pub const PACKED: [i64; 3] = [0, TIERS[0], TIERS[1]];

/// Length of a packed chunk of resolution `res`: each is a whole number of the largest tier, so a
/// rollup refresh that starts at or after every packed_until never rebuilds a bucket of any tier
/// from packed rows.
pub fn chunk_secs(res: i64) -> i64 {
    match res {
        0 => 43_200,
        3600 => 5 * 86_400,
        _ => 30 * 86_400,
    }
}

/// A source table and how its new slots become per-slot rollup rows (`$1` server, `$2` exclusive
/// lower bound, `$3` inclusive upper bound).
struct Source {
    name: &'static str,
    sql: &'static LazyLock<String>,
}

/// `xact_commit = excluded.xact_commit, ...` for every counter: the upserts' update list.
fn counters_from_excluded() -> String {
    COUNTER_NAMES
        .iter()
        .map(|n| format!("{n} = excluded.{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

static STATS_DB_SQL: LazyLock<String> = LazyLock::new(|| {
    let c = COUNTER_NAMES;
    let cols = c.join(", ");
    let lags = c
        .iter()
        .map(|n| format!("lag({n}) OVER w AS p_{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let down = c
        .iter()
        .map(|n| format!("coalesce({n} < p_{n}, false)"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let deltas = c
        .iter()
        .map(|n| format!("CASE WHEN ok THEN coalesce({n} - p_{n}, 0) ELSE 0 END"))
        .collect::<Vec<_>>()
        .join(", ");
    let upd = counters_from_excluded();
    format!(
        "WITH raw AS (
            SELECT datname, slot, collected_at, datid, stats_reset, postmaster_start, numbackends, {cols},
                   lag(slot) OVER w AS p_slot, lag(collected_at) OVER w AS p_at, lag(datid) OVER w AS p_datid,
                   lag(stats_reset) OVER w AS p_reset, lag(postmaster_start) OVER w AS p_pm, {lags}
            FROM stat_database
            WHERE server_id = $1 AND slot > $2::timestamptz - interval '{LOOKBACK}' AND slot <= $3
            WINDOW w AS (PARTITION BY datname ORDER BY slot)
        ), spaced AS (
            SELECT *, min(slot - p_slot) OVER (PARTITION BY datname) AS nominal,
                   extract(epoch FROM collected_at - p_at)::float8 AS secs
            FROM raw
        ), judged AS (
            SELECT *, coalesce(p_slot IS NOT NULL AND (
                       secs <= 0 OR datid <> p_datid
                       OR postmaster_start IS DISTINCT FROM p_pm OR stats_reset IS DISTINCT FROM p_reset
                       OR slot - p_slot > 2 * nominal OR {down}), false) AS refused
            FROM spaced
        ), valid AS (
            SELECT *, p_slot IS NOT NULL AND NOT refused AS ok FROM judged WHERE slot > $2
        )
        INSERT INTO stat_rollup (server_id, datname, res, bucket, secs, broken, {cols}, backends_sum, backends_n)
        SELECT $1, datname, 0, slot, CASE WHEN ok THEN secs ELSE 0 END, refused, {deltas},
               coalesce(numbackends, 0), (numbackends IS NOT NULL)::int
        FROM valid
        ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
            secs = excluded.secs, broken = excluded.broken, {upd},
            backends_sum = excluded.backends_sum, backends_n = excluded.backends_n"
    )
});

/// Server totals per slot from the per-database rows just written. A slot where any database refused
/// its delta is left uncovered (see `rates::server_slot`).
static STATS_SERVER_SQL: LazyLock<String> = LazyLock::new(|| {
    let c = COUNTER_NAMES;
    let cols = c.join(", ");
    let sums = c
        .iter()
        .map(|n| format!("CASE WHEN bool_or(broken) THEN 0 ELSE sum({n})::bigint END"))
        .collect::<Vec<_>>()
        .join(", ");
    let upd = counters_from_excluded();
    format!(
        "INSERT INTO stat_rollup (server_id, datname, res, bucket, secs, broken, {cols}, backends_sum, backends_n)
        SELECT $1, '', 0, bucket, CASE WHEN bool_or(broken) THEN 0 ELSE max(secs) END, bool_or(broken), {sums},
               sum(backends_sum)::bigint, max(backends_n)
        FROM stat_rollup
        WHERE server_id = $1 AND res = 0 AND datname <> '' AND bucket > $2 AND bucket <= $3
        GROUP BY bucket
        ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
            secs = excluded.secs, broken = excluded.broken, {upd},
            backends_sum = excluded.backends_sum, backends_n = excluded.backends_n"
    )
});

static SIZE_SQL: LazyLock<String> = LazyLock::new(|| {
    "INSERT INTO stat_rollup (server_id, datname, res, bucket, size_sum, size_n)
     SELECT $1, datname, 0, slot, size_bytes::float8, 1 FROM db_size
     WHERE server_id = $1 AND slot > $2 AND slot <= $3
     UNION ALL
     SELECT $1, '', 0, slot, sum(size_bytes)::float8, 1 FROM db_size
     WHERE server_id = $1 AND slot > $2 AND slot <= $3 GROUP BY slot
     ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
         size_sum = excluded.size_sum, size_n = excluded.size_n"
        .to_string()
});

static DISK_SQL: LazyLock<String> = LazyLock::new(|| {
    "INSERT INTO stat_rollup (server_id, datname, res, bucket, disk_used_sum, disk_total_sum, disk_n)
     SELECT $1, '', 0, slot, used_bytes::float8, total_bytes::float8, 1 FROM disk_usage
     WHERE server_id = $1 AND slot > $2 AND slot <= $3
     ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
         disk_used_sum = excluded.disk_used_sum, disk_total_sum = excluded.disk_total_sum,
         disk_n = excluded.disk_n"
        .to_string()
});

static AVAIL_SQL: LazyLock<String> = LazyLock::new(|| {
    "INSERT INTO stat_rollup (server_id, datname, res, bucket, up_n, avail_n)
     SELECT $1, '', 0, slot, up::int, 1 FROM availability
     WHERE server_id = $1 AND slot > $2 AND slot <= $3
     ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
         up_n = excluded.up_n, avail_n = excluded.avail_n"
        .to_string()
});

/// Rebuilds the coarser buckets (`$4` seconds wide) that hold per-slot rows in `[$2, $3]`.
static TIER_SQL: LazyLock<String> = LazyLock::new(|| {
    let c = COUNTER_NAMES;
    let cols = c.join(", ");
    let sums = c
        .iter()
        .map(|n| format!("sum({n})::bigint"))
        .collect::<Vec<_>>()
        .join(", ");
    let upd = counters_from_excluded();
    format!(
        "INSERT INTO stat_rollup (server_id, datname, res, bucket, secs, broken, {cols}, backends_sum, backends_n,
                                  size_sum, size_n, disk_used_sum, disk_total_sum, disk_n, up_n, avail_n)
        SELECT $1, datname, $4::int, date_bin(make_interval(secs => $4), bucket, 'epoch'::timestamptz),
               sum(secs), bool_or(broken), {sums}, sum(backends_sum)::bigint, sum(backends_n)::int,
               sum(size_sum), sum(size_n)::int, sum(disk_used_sum), sum(disk_total_sum), sum(disk_n)::int,
               sum(up_n)::int, sum(avail_n)::int
        FROM stat_rollup
        WHERE server_id = $1 AND res = 0
          AND bucket >= date_bin(make_interval(secs => $4), $2, 'epoch'::timestamptz) AND bucket <= $3
        GROUP BY datname, 4
        ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
            secs = excluded.secs, broken = excluded.broken, {upd},
            backends_sum = excluded.backends_sum, backends_n = excluded.backends_n,
            size_sum = excluded.size_sum, size_n = excluded.size_n,
            disk_used_sum = excluded.disk_used_sum, disk_total_sum = excluded.disk_total_sum,
            disk_n = excluded.disk_n, up_n = excluded.up_n, avail_n = excluded.avail_n"
    )
});

/// Moves the stat_rollup rows of one server and resolution in `[$3, $4)` into chunks of `$5` seconds
/// (record format: [`super::chunk`]). A chunk that already exists (only if packed_until was lost) is
/// extended rather than refused.
const PACK_SQL: &str = "WITH moved AS (
            DELETE FROM stat_rollup
            WHERE server_id = $1 AND res = $2 AND bucket >= $3 AND bucket < $4
            RETURNING *
        )
        INSERT INTO stat_rollup_chunk (server_id, datname, res, chunk_start, buckets, data)
        SELECT $1, datname, $2, date_bin(make_interval(secs => $5), bucket, 'epoch'::timestamptz), count(*),
               string_agg(rec, ''::bytea ORDER BY bucket)
        FROM moved
        GROUP BY datname, 4
        ON CONFLICT (server_id, datname, res, chunk_start) DO UPDATE SET
            buckets = stat_rollup_chunk.buckets + excluded.buckets,
            data = stat_rollup_chunk.data || excluded.data";

const SOURCES: [Source; 4] = [
    Source {
        name: "stat_database",
        sql: &STATS_DB_SQL,
    },
    Source {
        name: "db_size",
        sql: &SIZE_SQL,
    },
    Source {
        name: "disk_usage",
        sql: &DISK_SQL,
    },
    Source {
        name: "availability",
        sql: &AVAIL_SQL,
    },
];

/// Rolls up every server's new rows and drops rollups older than the oldest raw partition. Returns
/// the number of rollup rows written or deleted. Safe to run from several collectors at once: a
/// server another run is busy with is skipped.
pub async fn refresh_rollups(pool: &PgPool) -> Result<u64> {
    let servers: Vec<i64> = sqlx::query_scalar("SELECT id FROM servers ORDER BY id")
        .fetch_all(pool)
        .await?;
    let mut rows = 0;
    for id in servers {
        rows += refresh_server(pool, id).await?;
    }
    rows += purge_expired(pool).await?;
    Ok(rows)
}

/// Rolls up one server's new rows in one transaction, so readers see rollups and watermarks agree.
pub async fn refresh_server(pool: &PgPool, server_id: i64) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('pgmon_rollup'), $1::int)")
            .bind(i32::try_from(server_id % i64::from(i32::MAX)).unwrap_or(0))
            .fetch_one(&mut *tx)
            .await?;
    if !locked {
        return Ok(0);
    }
    let mut rows = 0;
    let mut span: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for src in &SOURCES {
        let done: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT done_until FROM stat_rollup_state WHERE server_id = $1 AND source = $2",
        )
        .bind(server_id)
        .bind(src.name)
        .fetch_optional(&mut *tx)
        .await?;
        // Packed buckets are final: nothing before the newest packed_until is rewritten.
        let lo: DateTime<Utc> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT greatest(coalesce($1::timestamptz - interval '{LOOKBACK}', 'epoch'::timestamptz),
                             (SELECT max(packed_until) FROM stat_rollup_packed WHERE server_id = $2))"
        )))
        .bind(done)
        .bind(server_id)
        .fetch_one(&mut *tx)
        .await?;
        let hi: Option<DateTime<Utc>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT max(slot) FROM {} WHERE server_id = $1 AND slot > $2",
            src.name
        )))
        .bind(server_id)
        .bind(lo)
        .fetch_one(&mut *tx)
        .await?;
        let Some(hi) = hi else { continue };
        rows += run(&mut tx, src.sql.as_str(), server_id, lo, hi).await?;
        if src.name == "stat_database" {
            rows += run(&mut tx, STATS_SERVER_SQL.as_str(), server_id, lo, hi).await?;
        }
        sqlx::query(
            "INSERT INTO stat_rollup_state (server_id, source, done_until) VALUES ($1, $2, $3)
             ON CONFLICT (server_id, source) DO UPDATE SET done_until = excluded.done_until, refreshed_at = now()",
        )
        .bind(server_id)
        .bind(src.name)
        .bind(hi)
        .execute(&mut *tx)
        .await?;
        span = Some(match span {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }
    if let Some((lo, hi)) = span {
        for res in TIERS {
            rows += sqlx::query(AssertSqlSafe(TIER_SQL.as_str()))
                .bind(server_id)
                .bind(lo)
                .bind(hi)
                .bind(res as f64)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
    }
    rows += pack(&mut tx, server_id).await?;
    tx.commit().await?;
    Ok(rows)
}

/// Packs every whole chunk that ended [`LOOKBACK`] before the least advanced source of the server,
/// or [`LOOKBACK`] + [`PACK_MARGIN`] before its newest rolled-up slot if that is later, for each
/// resolution.
async fn pack(tx: &mut Transaction<'_, Postgres>, server_id: i64) -> Result<u64> {
    let mut rows = 0;
    for res in PACKED {
        let len = chunk_secs(res);
        let (old, new): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT (SELECT packed_until FROM stat_rollup_packed WHERE server_id = $1 AND res = $2),
                    date_bin(make_interval(secs => $3),
                             greatest(min(done_until), max(done_until) - interval '{PACK_MARGIN}')
                                 - interval '{LOOKBACK}',
                             'epoch'::timestamptz)
             FROM stat_rollup_state WHERE server_id = $1"
            )))
            .bind(server_id)
            .bind(res as i32)
            .bind(len as f64)
            .fetch_one(&mut **tx)
            .await?;
        let Some(new) = new else { continue };
        if old.is_some_and(|o| o >= new) {
            continue;
        }
        rows += sqlx::query(PACK_SQL)
            .bind(server_id)
            .bind(res as i32)
            .bind(old.unwrap_or(DateTime::UNIX_EPOCH))
            .bind(new)
            .bind(len as f64)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        sqlx::query(
            "INSERT INTO stat_rollup_packed (server_id, res, packed_until) VALUES ($1, $2, $3)
             ON CONFLICT (server_id, res) DO UPDATE SET packed_until = excluded.packed_until",
        )
        .bind(server_id)
        .bind(res as i32)
        .bind(new)
        .execute(&mut **tx)
        .await?;
    }
    Ok(rows)
}

async fn run(
    tx: &mut Transaction<'_, Postgres>,
    sql: &str,
    server_id: i64,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> Result<u64> {
    Ok(sqlx::query(AssertSqlSafe(sql.to_string()))
        .bind(server_id)
        .bind(lo)
        .bind(hi)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Deletes rollups older than the oldest monthly partition of `stat_database` (past retention) and
/// those of deleted servers.
async fn purge_expired(pool: &PgPool) -> Result<u64> {
    let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(make_timestamptz(substr(right(c.relname, 6), 1, 4)::int, right(c.relname, 2)::int,
                                     1, 0, 0, 0, 'UTC'))
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'stat_database'::regclass AND c.relname ~ '_[0-9]{6}$'",
    )
    .fetch_one(pool)
    .await?;
    let live: Vec<i64> = sqlx::query_scalar("SELECT id FROM servers")
        .fetch_all(pool)
        .await?;
    let tracked: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT server_id FROM stat_rollup_state")
        .fetch_all(pool)
        .await?;
    let mut rows = 0;
    for id in tracked {
        if !live.contains(&id) {
            // A deleted server's history is no longer reachable by name: its rollups go at once.
            let mut tx = pool.begin().await?;
            for table in ["stat_rollup", "stat_rollup_chunk"] {
                rows += sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE server_id = $1")))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            for table in ["stat_rollup_state", "stat_rollup_packed"] {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE server_id = $1")))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            continue;
        }
        let Some(oldest) = oldest else { continue };
        // Every bucket with data has a server-level 12-hour row, packed or not, and every 12 hours
        // with data a server-level chunk of slots: two index probes say whether anything expired, so
        // the deletes (scans of the server's rows) run about once a month. A chunk goes once all of
        // it is past retention.
        let expired: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM stat_rollup
                            WHERE server_id = $1 AND datname = '' AND res = 43200 AND bucket < $2)
                 OR EXISTS (SELECT 1 FROM stat_rollup_chunk
                            WHERE server_id = $1 AND datname = '' AND res = 0
                              AND chunk_start < $2 - interval '12 hours')",
        )
        .bind(id)
        .bind(oldest)
        .fetch_one(pool)
        .await?;
        if expired {
            rows += sqlx::query("DELETE FROM stat_rollup WHERE server_id = $1 AND bucket < $2")
                .bind(id)
                .bind(oldest)
                .execute(pool)
                .await?
                .rows_affected();
            for res in PACKED {
                rows += sqlx::query(
                    "DELETE FROM stat_rollup_chunk
                     WHERE server_id = $1 AND res = $2 AND chunk_start + make_interval(secs => $3) <= $4",
                )
                .bind(id)
                .bind(res as i32)
                .bind(chunk_secs(res) as f64)
                .bind(oldest)
                .execute(pool)
                .await?
                .rows_affected();
            }
        }
    }
    Ok(rows)
}
