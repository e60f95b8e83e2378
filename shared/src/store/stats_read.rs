//! Reads of collected statistics for the API: history series, database info, collector heartbeats.
//!
//! A history read takes the buckets `stat_rollup` already holds (up to each source's `done_until`)
//! and computes only the newer slots from the raw tables with [`crate::stats::rates`], all in one
//! REPEATABLE READ snapshot so a concurrent rollup refresh cannot make a slot count twice or not at all.

use super::Result;
use crate::stats::rates::{self, Acc, COUNTER_NAMES, COUNTERS, Sample, SlotDelta};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, Transaction};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// A history request, already validated: whole buckets `[first, end)` of `step_secs`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub first: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub step_secs: i64,
    /// Longest interval between two samples whose delta is still trusted.
    pub max_gap_secs: f64,
}

/// The rollup resolution a step is read from: the coarsest one that divides it.
pub fn tier_for(step_secs: i64) -> i64 {
    super::rollups::TIERS
        .iter()
        .rev()
        .copied()
        .find(|t| step_secs % t == 0)
        .unwrap_or(0)
}

/// Whether `name` is (or was) a database of the server, from the catalog snapshots or the stats.
pub async fn database_known(pool: &PgPool, server_id: i64, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM databases WHERE server_id = $1 AND name = $2)
             OR EXISTS (SELECT 1 FROM stat_database WHERE server_id = $1 AND datname = $2)",
    )
    .bind(server_id)
    .bind(name)
    .fetch_one(pool)
    .await?)
}

/// Rollup rows are fetched as they are and summed into buckets here: PostgreSQL's `sum(bigint)`
/// accumulates in numeric, which made the grouped query several times slower than the plain scan.
static ROLLUP_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT bucket, secs, {}, backends_sum, backends_n, size_sum, size_n,
                disk_used_sum, disk_total_sum, disk_n, up_n, avail_n
         FROM stat_rollup
         WHERE server_id = $1 AND datname = $2 AND res = $3 AND bucket >= $4 AND bucket < $5",
        COUNTER_NAMES.join(", ")
    )
});

static RAW_DB_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT datname, slot, collected_at, datid, stats_reset, postmaster_start, numbackends, {}
         FROM stat_database WHERE server_id = $1 AND datname = $2 AND slot >= $3 AND slot < $4
         ORDER BY datname, slot",
        COUNTER_NAMES.join(", ")
    )
});

static RAW_SERVER_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT datname, slot, collected_at, datid, stats_reset, postmaster_start, numbackends, {}
         FROM stat_database WHERE server_id = $1 AND slot >= $2 AND slot < $3
         ORDER BY datname, slot",
        COUNTER_NAMES.join(", ")
    )
});

fn acc_from_rollup(row: &PgRow) -> Result<Acc> {
    let mut acc = Acc {
        secs: row.try_get(1)?,
        ..Acc::default()
    };
    for i in 0..COUNTERS {
        acc.counters[i] = row.try_get(2 + i)?;
    }
    let b = 2 + COUNTERS;
    let int = |i: usize| row.try_get::<i32, _>(i).map(i64::from);
    acc.backends_sum = row.try_get(b)?;
    acc.backends_n = int(b + 1)?;
    acc.size_sum = row.try_get(b + 2)?;
    acc.size_n = int(b + 3)?;
    acc.disk_used_sum = row.try_get(b + 4)?;
    acc.disk_total_sum = row.try_get(b + 5)?;
    acc.disk_n = int(b + 6)?;
    acc.up_n = int(b + 7)?;
    acc.avail_n = int(b + 8)?;
    Ok(acc)
}

fn sample_from_row(row: &PgRow) -> Result<(String, Sample)> {
    let mut counters = [None; COUNTERS];
    for (i, c) in counters.iter_mut().enumerate() {
        *c = row.try_get(7 + i)?;
    }
    Ok((
        row.try_get(0)?,
        Sample {
            slot: row.try_get(1)?,
            collected_at: row.try_get(2)?,
            datid: row.try_get(3)?,
            stats_reset: row.try_get(4)?,
            postmaster_start: row.try_get(5)?,
            numbackends: row.try_get(6)?,
            counters,
        },
    ))
}

/// Buckets of one server (`datname = None`) or one of its databases, sorted; buckets without any
/// data are absent.
pub async fn history(
    pool: &PgPool,
    server_id: i64,
    datname: Option<&str>,
    w: &Window,
) -> Result<Vec<(DateTime<Utc>, Acc)>> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let marks: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT source, done_until FROM stat_rollup_state WHERE server_id = $1")
            .bind(server_id)
            .fetch_all(&mut *tx)
            .await?;
    let mut buckets: BTreeMap<DateTime<Utc>, Acc> = BTreeMap::new();

    let rows = sqlx::query(AssertSqlSafe(ROLLUP_SQL.as_str()))
        .bind(server_id)
        .bind(datname.unwrap_or(""))
        .bind(i32::try_from(tier_for(w.step_secs)).unwrap_or(0))
        .bind(w.first)
        .bind(w.end)
        .fetch_all(&mut *tx)
        .await?;
    for row in &rows {
        let b: DateTime<Utc> = row.try_get(0)?;
        buckets
            .entry(rates::bucket_start(b, w.step_secs))
            .or_default()
            .merge(&acc_from_rollup(row)?);
    }

    stats_tail(
        &mut tx,
        server_id,
        datname,
        w,
        mark(&marks, "stat_database"),
        &mut buckets,
    )
    .await?;
    gauge_tail(&mut tx, server_id, datname, w, &marks, &mut buckets).await?;
    tx.commit().await?;
    Ok(buckets.into_iter().collect())
}

fn mark(marks: &[(String, DateTime<Utc>)], source: &str) -> Option<DateTime<Utc>> {
    marks.iter().find(|(n, _)| n == source).map(|(_, d)| *d)
}

/// Counter deltas of the slots newer than the rollup watermark `done`, computed from raw rows.
async fn stats_tail(
    tx: &mut Transaction<'_, Postgres>,
    server_id: i64,
    datname: Option<&str>,
    w: &Window,
    done: Option<DateTime<Utc>>,
    buckets: &mut BTreeMap<DateTime<Utc>, Acc>,
) -> Result<()> {
    // The baseline of the first new slot is the last rolled-up one (or one gap before the window).
    let baseline = w.first - TimeDelta::milliseconds((w.max_gap_secs * 1000.0) as i64);
    let from = done.map_or(baseline, |d| d.max(baseline));
    if from >= w.end {
        return Ok(());
    }
    let query = match datname {
        Some(d) => sqlx::query(AssertSqlSafe(RAW_DB_SQL.as_str()))
            .bind(server_id)
            .bind(d),
        None => sqlx::query(AssertSqlSafe(RAW_SERVER_SQL.as_str())).bind(server_id),
    };
    let rows = query.bind(from).bind(w.end).fetch_all(&mut **tx).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut per_db: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for row in &rows {
        let (name, s) = sample_from_row(row)?;
        per_db.entry(name).or_default().push(s);
    }
    let keep = |slot: DateTime<Utc>| slot >= w.first && done.is_none_or(|d| slot > d);
    let deltas: Vec<Vec<SlotDelta>> = per_db
        .values()
        .map(|s| rates::series_deltas(s, w.max_gap_secs))
        .collect();
    if datname.is_some() {
        for d in deltas.iter().flatten().filter(|d| keep(d.slot)) {
            buckets
                .entry(rates::bucket_start(d.slot, w.step_secs))
                .or_default()
                .merge(&rates::db_slot(d));
        }
    } else {
        let mut by_slot: BTreeMap<DateTime<Utc>, Vec<&SlotDelta>> = BTreeMap::new();
        for d in deltas.iter().flatten().filter(|d| keep(d.slot)) {
            by_slot.entry(d.slot).or_default().push(d);
        }
        for (slot, ds) in by_slot {
            buckets
                .entry(rates::bucket_start(slot, w.step_secs))
                .or_default()
                .merge(&rates::server_slot(&ds));
        }
    }
    Ok(())
}

/// Sizes, disk usage and availability newer than their rollup watermarks.
async fn gauge_tail(
    tx: &mut Transaction<'_, Postgres>,
    server_id: i64,
    datname: Option<&str>,
    w: &Window,
    marks: &[(String, DateTime<Utc>)],
    buckets: &mut BTreeMap<DateTime<Utc>, Acc>,
) -> Result<()> {
    let after = |m: Option<DateTime<Utc>>| m.map_or(w.first, |d| d.max(w.first));
    let size_from = after(mark(marks, "db_size"));
    let sizes: Vec<(DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT slot, sum(size_bytes)::float8 FROM db_size
         WHERE server_id = $1 AND ($2::text IS NULL OR datname = $2) AND slot >= $3 AND slot < $4
           AND ($5::timestamptz IS NULL OR slot > $5)
         GROUP BY slot",
    )
    .bind(server_id)
    .bind(datname)
    .bind(size_from)
    .bind(w.end)
    .bind(mark(marks, "db_size"))
    .fetch_all(&mut **tx)
    .await?;
    for (slot, v) in sizes {
        let a = buckets.entry(rates::bucket_start(slot, w.step_secs)).or_default();
        a.size_sum += v;
        a.size_n += 1;
    }
    if datname.is_some() {
        return Ok(());
    }
    let disk: Vec<(DateTime<Utc>, f64, f64)> = sqlx::query_as(
        "SELECT slot, used_bytes::float8, total_bytes::float8 FROM disk_usage
         WHERE server_id = $1 AND slot >= $2 AND slot < $3 AND ($4::timestamptz IS NULL OR slot > $4)",
    )
    .bind(server_id)
    .bind(after(mark(marks, "disk_usage")))
    .bind(w.end)
    .bind(mark(marks, "disk_usage"))
    .fetch_all(&mut **tx)
    .await?;
    for (slot, used, total) in disk {
        let a = buckets.entry(rates::bucket_start(slot, w.step_secs)).or_default();
        a.disk_used_sum += used;
        a.disk_total_sum += total;
        a.disk_n += 1;
    }
    let avail: Vec<(DateTime<Utc>, bool)> = sqlx::query_as(
        "SELECT slot, up FROM availability
         WHERE server_id = $1 AND slot >= $2 AND slot < $3 AND ($4::timestamptz IS NULL OR slot > $4)",
    )
    .bind(server_id)
    .bind(after(mark(marks, "availability")))
    .bind(w.end)
    .bind(mark(marks, "availability"))
    .fetch_all(&mut **tx)
    .await?;
    for (slot, up) in avail {
        let a = buckets.entry(rates::bucket_start(slot, w.step_secs)).or_default();
        a.up_n += i64::from(up);
        a.avail_n += 1;
    }
    Ok(())
}

/// What the store knows about one database of a server.
#[derive(Debug, Clone, Default)]
pub struct DbInfo {
    pub oid: Option<i64>,
    pub owner: Option<String>,
    pub encoding: Option<String>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub dropped_at: Option<DateTime<Utc>>,
    pub frozen_xid_age: Option<i64>,
    pub size_bytes: Option<i64>,
    pub size_at: Option<DateTime<Utc>>,
    /// Size now minus size 24 h, 7 d and 30 d before the latest size sample; `None` without a sample
    /// that old.
    pub growth_24h: Option<i64>,
    pub growth_7d: Option<i64>,
    pub growth_30d: Option<i64>,
    pub last_snapshot: Option<DateTime<Utc>>,
    pub numbackends: Option<i32>,
    pub stats_reset: Option<DateTime<Utc>>,
    /// The latest cumulative counters, in [`COUNTER_NAMES`] order.
    pub counters: Vec<(String, Option<i64>)>,
}

type CatalogRow = (
    i64,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<i64>,
);

/// `None` when the server has never had a database of that name.
pub async fn db_info(pool: &PgPool, server_id: i64, name: &str) -> Result<Option<DbInfo>> {
    // A database dropped and re-created has several rows; the newest describes it, the oldest says
    // when the name was first seen.
    let catalog: Option<CatalogRow> = sqlx::query_as(
        "SELECT oid, owner, encoding, min(first_seen) OVER (), last_seen, dropped_at, frozen_xid_age
         FROM databases WHERE server_id = $1 AND name = $2 ORDER BY last_seen DESC, id DESC LIMIT 1",
    )
    .bind(server_id)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    let mut info = DbInfo::default();
    if let Some((oid, owner, encoding, first, last, dropped, frozen)) = catalog {
        info.oid = Some(oid);
        info.owner = owner;
        info.encoding = encoding;
        info.first_seen = Some(first);
        info.last_seen = Some(last);
        info.dropped_at = dropped;
        info.frozen_xid_age = frozen;
    }
    let latest: Option<(DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT slot, size_bytes FROM db_size WHERE server_id = $1 AND datname = $2 ORDER BY slot DESC LIMIT 1",
    )
    .bind(server_id)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    if let Some((at, size)) = latest {
        info.size_at = Some(at);
        info.size_bytes = Some(size);
        let before = |days: i64| {
            sqlx::query_scalar::<_, i64>(
                "SELECT size_bytes FROM db_size WHERE server_id = $1 AND datname = $2 AND slot <= $3
                 ORDER BY slot DESC LIMIT 1",
            )
            .bind(server_id)
            .bind(name)
            .bind(at - TimeDelta::days(days))
            .fetch_optional(pool)
        };
        info.growth_24h = before(1).await?.map(|old| size - old);
        info.growth_7d = before(7).await?.map(|old| size - old);
        info.growth_30d = before(30).await?.map(|old| size - old);
    }
    let snap = sqlx::query(AssertSqlSafe(format!(
        "SELECT collected_at, numbackends, stats_reset, {} FROM stat_database
         WHERE server_id = $1 AND datname = $2 ORDER BY slot DESC LIMIT 1",
        COUNTER_NAMES.join(", ")
    )))
    .bind(server_id)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = snap {
        info.last_snapshot = Some(row.try_get(0)?);
        info.numbackends = row.try_get(1)?;
        info.stats_reset = row.try_get(2)?;
        for (i, n) in COUNTER_NAMES.iter().enumerate() {
            info.counters.push((n.to_string(), row.try_get(3 + i)?));
        }
    }
    if info.first_seen.is_none() && info.last_snapshot.is_none() {
        return Ok(None);
    }
    Ok(Some(info))
}

/// One collector process as it last reported itself.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Heartbeat {
    pub instance_id: uuid::Uuid,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub tasks: serde_json::Value,
}

/// Collectors that are running or stopped within the last day, newest first.
pub async fn heartbeats(pool: &PgPool) -> Result<Vec<Heartbeat>> {
    Ok(sqlx::query_as(
        "SELECT instance_id, host, pid, version, started_at, last_seen_at, stopped_at, tasks
         FROM collector_instances
         WHERE stopped_at IS NULL OR stopped_at > now() - interval '1 day'
         ORDER BY last_seen_at DESC LIMIT 100",
    )
    .fetch_all(pool)
    .await?)
}
