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

/// The servers of a batch and their bounds: `$1` ids, `$2` exclusive lower bounds, `$3` inclusive
/// upper bounds.
const BATCH: &str =
    "b AS (SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS b(server_id, lo, hi))";

static STATS_DB_SQL: LazyLock<String> = LazyLock::new(|| {
    let c = COUNTER_NAMES;
    let cols = c.iter().map(|n| format!("t.{n}")).collect::<Vec<_>>().join(", ");
    let plain = c.join(", ");
    let lags = c
        .iter()
        .map(|n| format!("lag(t.{n}) OVER w AS p_{n}"))
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
        "WITH {BATCH}, raw AS (
            SELECT t.server_id, b.lo, t.datname, t.slot, t.collected_at, t.datid, t.stats_reset,
                   t.postmaster_start, t.numbackends, {cols},
                   lag(t.slot) OVER w AS p_slot, lag(t.collected_at) OVER w AS p_at,
                   lag(t.datid) OVER w AS p_datid, lag(t.stats_reset) OVER w AS p_reset,
                   lag(t.postmaster_start) OVER w AS p_pm, {lags}
            FROM stat_database t JOIN b ON t.server_id = b.server_id
             AND t.slot > b.lo - interval '{LOOKBACK}' AND t.slot <= b.hi
            WINDOW w AS (PARTITION BY t.server_id, t.datname ORDER BY t.slot)
        ), spaced AS (
            SELECT *, min(slot - p_slot) OVER (PARTITION BY server_id, datname) AS nominal,
                   extract(epoch FROM collected_at - p_at)::float8 AS secs
            FROM raw
        ), judged AS (
            SELECT *, coalesce(p_slot IS NOT NULL AND (
                       secs <= 0 OR datid <> p_datid
                       OR postmaster_start IS DISTINCT FROM p_pm OR stats_reset IS DISTINCT FROM p_reset
                       OR slot - p_slot > 2 * nominal OR {down}), false) AS refused
            FROM spaced
        ), valid AS (
            SELECT *, p_slot IS NOT NULL AND NOT refused AS ok FROM judged WHERE slot > lo
        )
        INSERT INTO stat_rollup (server_id, datname, res, bucket, secs, broken, {plain}, backends_sum, backends_n)
        SELECT server_id, datname, 0, slot, CASE WHEN ok THEN secs ELSE 0 END, refused, {deltas},
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
        "WITH {BATCH}
        INSERT INTO stat_rollup (server_id, datname, res, bucket, secs, broken, {cols}, backends_sum, backends_n)
        SELECT r.server_id, '', 0, bucket, CASE WHEN bool_or(broken) THEN 0 ELSE max(secs) END, bool_or(broken),
               {sums}, sum(backends_sum)::bigint, max(backends_n)
        FROM stat_rollup r JOIN b ON r.server_id = b.server_id AND r.bucket > b.lo AND r.bucket <= b.hi
        WHERE r.res = 0 AND r.datname <> ''
        GROUP BY r.server_id, bucket
        ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
            secs = excluded.secs, broken = excluded.broken, {upd},
            backends_sum = excluded.backends_sum, backends_n = excluded.backends_n"
    )
});

static SIZE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {BATCH}
         INSERT INTO stat_rollup (server_id, datname, res, bucket, size_sum, size_n)
         SELECT t.server_id, datname, 0, slot, size_bytes::float8, 1
         FROM db_size t JOIN b ON t.server_id = b.server_id AND t.slot > b.lo AND t.slot <= b.hi
         UNION ALL
         SELECT t.server_id, '', 0, slot, sum(size_bytes)::float8, 1
         FROM db_size t JOIN b ON t.server_id = b.server_id AND t.slot > b.lo AND t.slot <= b.hi
         GROUP BY t.server_id, slot
         ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
             size_sum = excluded.size_sum, size_n = excluded.size_n"
    )
});

static DISK_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {BATCH}
         INSERT INTO stat_rollup (server_id, datname, res, bucket, disk_used_sum, disk_total_sum, disk_n)
         SELECT t.server_id, '', 0, slot, used_bytes::float8, total_bytes::float8, 1
         FROM disk_usage t JOIN b ON t.server_id = b.server_id AND t.slot > b.lo AND t.slot <= b.hi
         ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
             disk_used_sum = excluded.disk_used_sum, disk_total_sum = excluded.disk_total_sum,
             disk_n = excluded.disk_n"
    )
});

static AVAIL_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {BATCH}
         INSERT INTO stat_rollup (server_id, datname, res, bucket, up_n, avail_n)
         SELECT t.server_id, '', 0, slot, up::int, 1
         FROM availability t JOIN b ON t.server_id = b.server_id AND t.slot > b.lo AND t.slot <= b.hi
         ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
             up_n = excluded.up_n, avail_n = excluded.avail_n"
    )
});

/// Rebuilds the coarser buckets (`$4` seconds wide) that hold rows of resolution `$5` in `[lo, hi]` of
/// each server of the batch: hours from slots, 12 hours from hours (twelve rows instead of 72 slots;
/// sums add up either way, and a 12-hour bucket being rebuilt is never in a packed hour chunk,
/// whose boundaries are multiples of 12 hours and lie behind the lookback).
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
        "WITH {BATCH}
        INSERT INTO stat_rollup (server_id, datname, res, bucket, secs, broken, {cols}, backends_sum, backends_n,
                                  size_sum, size_n, disk_used_sum, disk_total_sum, disk_n, up_n, avail_n)
        SELECT r.server_id, datname, $4::int, date_bin(make_interval(secs => $4), bucket, 'epoch'::timestamptz),
               sum(secs), bool_or(broken), {sums}, sum(backends_sum)::bigint, sum(backends_n)::int,
               sum(size_sum), sum(size_n)::int, sum(disk_used_sum), sum(disk_total_sum), sum(disk_n)::int,
               sum(up_n)::int, sum(avail_n)::int
        FROM stat_rollup r JOIN b ON r.server_id = b.server_id
         AND r.bucket >= date_bin(make_interval(secs => $4), b.lo, 'epoch'::timestamptz) AND r.bucket <= b.hi
        WHERE r.res = $5
        GROUP BY r.server_id, datname, 4
        ON CONFLICT (server_id, datname, res, bucket) DO UPDATE SET
            secs = excluded.secs, broken = excluded.broken, {upd},
            backends_sum = excluded.backends_sum, backends_n = excluded.backends_n,
            size_sum = excluded.size_sum, size_n = excluded.size_n,
            disk_used_sum = excluded.disk_used_sum, disk_total_sum = excluded.disk_total_sum,
            disk_n = excluded.disk_n, up_n = excluded.up_n, avail_n = excluded.avail_n"
    )
});

/// Moves the stat_rollup rows of resolution `$2` in `[old, new)` of each server of the batch (`$1`
/// ids, `$3` olds, `$4` news) into chunks of `$5` seconds (record format: [`super::chunk`]). A chunk
/// that already exists (only if packed_until was lost) is extended rather than refused.
const PACK_SQL: &str = "WITH b AS (SELECT * FROM unnest($1::bigint[], $3::timestamptz[], $4::timestamptz[]) AS b(server_id, old, new)),
        moved AS (
            DELETE FROM stat_rollup r USING b
            WHERE r.server_id = b.server_id AND r.res = $2 AND r.bucket >= b.old AND r.bucket < b.new
            RETURNING r.server_id, r.datname, r.bucket, r.rec
        )
        INSERT INTO stat_rollup_chunk (server_id, datname, res, chunk_start, buckets, data)
        SELECT server_id, datname, $2, date_bin(make_interval(secs => $5), bucket, 'epoch'::timestamptz), count(*),
               string_agg(rec, ''::bytea ORDER BY bucket)
        FROM moved
        GROUP BY server_id, datname, 4
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

/// Servers rolled up together, in one transaction: each source's rows of the whole batch go in
/// one statement, so a refresh costs a few statements per batch instead of per server.
const BATCH_SERVERS: usize = 500;

/// Rolls up every server's rows from [`LOOKBACK`] before its watermark on (so rows that arrived late
/// are rolled up too) and drops rollups older than the oldest raw partition: what maintenance runs.
/// Returns the number of rollup rows written or deleted. Safe to run from several collectors at
/// once: a server another run is busy with is skipped.
pub async fn refresh_rollups(pool: &PgPool) -> Result<u64> {
    let mut rows = refresh_all(pool, true).await?;
    rows += purge_expired(pool).await?;
    Ok(rows)
}

/// Rolls up only the slots newer than each server's watermark: what runs after every stats slot,
/// so that its cost follows the slot's rows, not the lookback's. Late rows wait for
/// [`refresh_rollups`] (maintenance).
pub async fn refresh_new(pool: &PgPool) -> Result<u64> {
    refresh_all(pool, false).await
}

async fn refresh_all(pool: &PgPool, lookback: bool) -> Result<u64> {
    let servers: Vec<i64> = sqlx::query_scalar("SELECT id FROM servers ORDER BY id")
        .fetch_all(pool)
        .await?;
    let mut rows = 0;
    for batch in servers.chunks(BATCH_SERVERS) {
        rows += refresh_batch(pool, batch, lookback).await?;
    }
    Ok(rows)
}

/// Rolls up one server's rows (with the lookback).
pub async fn refresh_server(pool: &PgPool, server_id: i64) -> Result<u64> {
    refresh_batch(pool, &[server_id], true).await
}

/// Rolls up the rows of `ids` in one transaction, so readers see rollups and watermarks agree: from
/// [`LOOKBACK`] before each watermark with `lookback`, else only newer slots (the lookback's rows
/// are still read, for the previous sample of each database).
pub async fn refresh_batch(pool: &PgPool, ids: &[i64], lookback: bool) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM unnest($1::bigint[]) AS id
         WHERE pg_try_advisory_xact_lock(hashtext('pgmon_rollup'), (id % 2147483647)::int)",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let mut rows = 0;
    let mut span: std::collections::BTreeMap<i64, (DateTime<Utc>, DateTime<Utc>)> = Default::default();
    for src in &SOURCES {
        // Packed buckets are final: nothing before the newest packed_until is rewritten.
        let bounds: Vec<(i64, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH lo AS (
                SELECT id AS server_id,
                       greatest(coalesce((SELECT done_until FROM stat_rollup_state s
                                          WHERE s.server_id = id AND s.source = $2) - interval '{back}',
                                         'epoch'::timestamptz),
                                (SELECT max(packed_until) FROM stat_rollup_packed p WHERE p.server_id = id),
                                'epoch'::timestamptz) AS lo
                FROM unnest($1::bigint[]) AS id)
             SELECT server_id, lo, (SELECT max(slot) FROM {} t WHERE t.server_id = lo.server_id AND t.slot > lo.lo)
             FROM lo",
            src.name,
            back = if lookback { LOOKBACK } else { "0 seconds" },
        )))
        .bind(&ids)
        .bind(src.name)
        .fetch_all(&mut *tx)
        .await?;
        let due: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = bounds
            .into_iter()
            .filter_map(|(id, lo, hi)| hi.map(|hi| (id, lo, hi)))
            .collect();
        if due.is_empty() {
            continue;
        }
        let (bid, blo, bhi) = split(&due);
        rows += run(&mut tx, src.sql.as_str(), &bid, &blo, &bhi).await?;
        if src.name == "stat_database" {
            rows += run(&mut tx, STATS_SERVER_SQL.as_str(), &bid, &blo, &bhi).await?;
        }
        sqlx::query(
            "INSERT INTO stat_rollup_state (server_id, source, done_until)
             SELECT id, $2, hi FROM unnest($1::bigint[], $3::timestamptz[]) AS u(id, hi)
             ON CONFLICT (server_id, source) DO UPDATE SET done_until = excluded.done_until, refreshed_at = now()",
        )
        .bind(&bid)
        .bind(src.name)
        .bind(&bhi)
        .execute(&mut *tx)
        .await?;
        for (id, lo, hi) in due {
            span.entry(id)
                .and_modify(|(a, b)| {
                    *a = (*a).min(lo);
                    *b = (*b).max(hi);
                })
                .or_insert((lo, hi));
        }
    }
    if !span.is_empty() {
        let spans: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> =
            span.into_iter().map(|(id, (a, b))| (id, a, b)).collect();
        let (bid, blo, bhi) = split(&spans);
        let mut from_res = 0;
        for res in TIERS {
            rows += sqlx::query(AssertSqlSafe(TIER_SQL.as_str()))
                .bind(&bid)
                .bind(&blo)
                .bind(&bhi)
                .bind(res as f64)
                .bind(from_res as i32)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            from_res = res;
        }
    }
    rows += pack(&mut tx, &ids).await?;
    tx.commit().await?;
    Ok(rows)
}

type MaybeAt = Option<DateTime<Utc>>;

fn split(v: &[(i64, DateTime<Utc>, DateTime<Utc>)]) -> (Vec<i64>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    (
        v.iter().map(|x| x.0).collect(),
        v.iter().map(|x| x.1).collect(),
        v.iter().map(|x| x.2).collect(),
    )
}

/// Packs every whole chunk that ended [`LOOKBACK`] before the least advanced source of each server,
/// or [`LOOKBACK`] + [`PACK_MARGIN`] before its newest rolled-up slot if that is later, for each
/// resolution.
async fn pack(tx: &mut Transaction<'_, Postgres>, ids: &[i64]) -> Result<u64> {
    let mut rows = 0;
    for res in PACKED {
        let len = chunk_secs(res);
        let bounds: Vec<(i64, MaybeAt, MaybeAt)> =
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT s.server_id,
                        (SELECT packed_until FROM stat_rollup_packed p WHERE p.server_id = s.server_id AND p.res = $2),
                        date_bin(make_interval(secs => $3),
                                 greatest(min(done_until), max(done_until) - interval '{PACK_MARGIN}')
                                     - interval '{LOOKBACK}',
                                 'epoch'::timestamptz)
                 FROM stat_rollup_state s WHERE s.server_id = ANY($1) GROUP BY s.server_id"
            )))
            .bind(ids)
            .bind(res as i32)
            .bind(len as f64)
            .fetch_all(&mut **tx)
            .await?;
        let due: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = bounds
            .into_iter()
            .filter_map(|(id, old, new)| {
                let new = new?;
                let old = old.unwrap_or(DateTime::UNIX_EPOCH);
                (old < new).then_some((id, old, new))
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        let (bid, bold, bnew) = split(&due);
        rows += sqlx::query(PACK_SQL)
            .bind(&bid)
            .bind(res as i32)
            .bind(&bold)
            .bind(&bnew)
            .bind(len as f64)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        sqlx::query(
            "INSERT INTO stat_rollup_packed (server_id, res, packed_until)
             SELECT id, $2, new FROM unnest($1::bigint[], $3::timestamptz[]) AS u(id, new)
             ON CONFLICT (server_id, res) DO UPDATE SET packed_until = excluded.packed_until",
        )
        .bind(&bid)
        .bind(res as i32)
        .bind(&bnew)
        .execute(&mut **tx)
        .await?;
    }
    Ok(rows)
}

async fn run(
    tx: &mut Transaction<'_, Postgres>,
    sql: &str,
    ids: &[i64],
    lo: &[DateTime<Utc>],
    hi: &[DateTime<Utc>],
) -> Result<u64> {
    Ok(sqlx::query(AssertSqlSafe(sql.to_string()))
        .bind(ids)
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
    // A deleted server's history is no longer reachable by name: its rollups go at once.
    let gone: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT server_id FROM stat_rollup_state WHERE server_id NOT IN (SELECT id FROM servers)",
    )
    .fetch_all(pool)
    .await?;
    let mut rows = 0;
    for id in gone {
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
    }
    let Some(oldest) = oldest else {
        return Ok(rows);
    };
    // Every bucket with data has a server-level 12-hour row, packed or not, and every 12 hours with
    // data a server-level chunk of slots: two index probes per server, in one statement, say whose
    // history expired, so the deletes (scans of a server's rows) run about once a month. A chunk goes
    // once all of it is past retention.
    let expired: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM servers s(id) WHERE
             EXISTS (SELECT 1 FROM stat_rollup WHERE server_id = s.id AND datname = '' AND res = 43200 AND bucket < $1)
          OR EXISTS (SELECT 1 FROM stat_rollup_chunk
                     WHERE server_id = s.id AND datname = '' AND res = 0 AND chunk_start < $1 - interval '12 hours')",
    )
    .bind(oldest)
    .fetch_all(pool)
    .await?;
    for id in expired {
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
    Ok(rows)
}
