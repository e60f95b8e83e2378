//! Reads of collected statistics for the API: history series and database info.
//!
//! A history read takes the buckets `stat_rollup` already holds (up to each source's `done_until`)
//! and computes only the newer slots from the raw tables with [`crate::stats::rates`], all in one
//! statement (one snapshot).

use super::Result;
use super::chunk_cache::{ChunkCache, ChunkData};
use crate::stats::rates::{self, Acc, COUNTER_NAMES, COUNTERS, Sample, SlotDelta};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool, Row};
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
             OR EXISTS (SELECT 1 FROM stat_rollup WHERE server_id = $1 AND datname = $2)
             OR EXISTS (SELECT 1 FROM stat_database WHERE server_id = $1 AND datname = $2)",
    )
    .bind(server_id)
    .bind(name)
    .fetch_one(pool)
    .await?)
}

/// Row kinds of the history statement (0 was once rollup rows one by one).
const RAW: i32 = 1;
const SIZE: i32 = 2;
const DISK: i32 = 3;
const AVAIL: i32 = 4;
const MARK: i32 = 5;
const CHUNK: i32 = 6;
/// The rollup rows not packed yet, in the chunk record format.
const TAIL: i32 = 7;

/// The whole history read as one statement: one round trip, and one snapshot, so a concurrent rollup
/// refresh cannot make a slot count twice or not at all. Rows of every kind share one column layout
/// (`kind, t, datname, collected_at, datid, stats_reset, postmaster_start, numbackends, <counters>,
/// secs, backends_sum, backends_n, size_sum, size_n, disk_used_sum, disk_total_sum, disk_n, up_n,
/// avail_n`), NULL where a kind has no value.
///
/// Rollups are summed into buckets in Rust, not grouped in SQL: PostgreSQL's `sum(bigint)`
/// accumulates in numeric, which made a grouped query several times slower than the plain scan.
/// They come as `CHUNK` rows, one per packed chunk the reader does not hold already, and one `TAIL`
/// row holding the rows of stat_rollup not packed yet in the same record format (see
/// [`super::chunk`]), in a last column that is NULL in every other kind of row. The bucket filter
/// on packed chunks is applied in Rust.
///
/// `$1` server, `$2` database (`''` = server level), `$3` rollup resolution, `$4` first bucket,
/// `$5` end, `$6` earliest raw slot that may serve as a baseline, `$7` chunk length of `$3`, `$8`
/// starts of the chunks the reader holds (see [`super::chunk_cache`]).
fn history_sql(server_level: bool) -> String {
    let no_data = "NULL::bytea";
    let c = COUNTER_NAMES.join(", ");
    let nulls_c = ["NULL::int8"; COUNTERS].join(", ");
    let no_ident =
        "NULL::text, NULL::timestamptz, NULL::int8, NULL::timestamptz, NULL::timestamptz, NULL::int4";
    let no_gauge = "NULL::float8, NULL::int8, NULL::int4, NULL::float8, NULL::int4, NULL::float8, NULL::float8, \
                    NULL::int4, NULL::int4, NULL::int4";
    let db_filter = if server_level { "" } else { "AND datname = $2" };
    // Scalar subqueries (init plans), not a join: their values bound the index scans and prune
    // partitions at execution. Each raw table also gets a bound made of parameters alone, which
    // prunes at executor start-up, before the other partitions are opened: PostgreSQL initialises
    // every partition a start-up pruning keeps (a third of a 7-day read's store time with all of
    // them). A STABLE function instead of the subqueries would prune at start-up too, but then
    // PostgreSQL plans the statement again at every execution (custom plans, 1.3 ms each).
    let mark = |source: &str| {
        format!("(SELECT done_until FROM stat_rollup_state WHERE server_id = $1 AND source = '{source}')")
    };
    let (ws, wz, wd, wa) = (
        mark("stat_database"),
        mark("db_size"),
        mark("disk_usage"),
        mark("availability"),
    );
    let mut sql = format!(
        "        SELECT {CHUNK}, chunk_start, {no_ident}, {nulls_c}, {no_gauge}, data
        FROM stat_rollup_chunk
        WHERE server_id = $1 AND datname = $2 AND res = $3
          AND chunk_start > $4 - make_interval(secs => $7) AND chunk_start < $5
          AND chunk_start <> ALL($8)
        UNION ALL
        SELECT {TAIL}, min(bucket), {no_ident}, {nulls_c}, {no_gauge}, string_agg(rec, ''::bytea)
        FROM stat_rollup
        WHERE server_id = $1 AND datname = $2 AND res = $3 AND bucket >= $4 AND bucket < $5
        HAVING count(*) > 0
        UNION ALL
        SELECT {RAW}, slot, datname, collected_at, datid, stats_reset, postmaster_start, numbackends, {c}, {no_gauge},
               {no_data}
        FROM stat_database
        WHERE server_id = $1 {db_filter} AND slot >= greatest({ws}, $6) AND slot >= $6 AND slot < $5
        UNION ALL
        SELECT {SIZE}, slot, {no_ident}, {nulls_c}, NULL, NULL, NULL, sum(size_bytes)::float8, 1, NULL, NULL, NULL, NULL, NULL,
               {no_data}
        FROM db_size
        WHERE server_id = $1 {db_filter} AND slot > coalesce({wz}, '-infinity') AND slot >= $4 AND slot < $5
        GROUP BY slot
        UNION ALL
        SELECT {MARK}, done_until, source, {}, {nulls_c}, {no_gauge}, {no_data}
        FROM stat_rollup_state WHERE server_id = $1 AND source = 'stat_database'",
        "NULL::timestamptz, NULL::int8, NULL::timestamptz, NULL::timestamptz, NULL::int4"
    );
    if server_level {
        sql.push_str(&format!(
            "
        UNION ALL
        SELECT {DISK}, slot, {no_ident}, {nulls_c}, NULL, NULL, NULL, NULL, NULL,
               used_bytes::float8, total_bytes::float8, 1, NULL, NULL, {no_data}
        FROM disk_usage
        WHERE server_id = $1 AND slot > coalesce({wd}, '-infinity') AND slot >= $4 AND slot < $5
        UNION ALL
        SELECT {AVAIL}, slot, {no_ident}, {nulls_c}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, up::int4, 1,
               {no_data}
        FROM availability
        WHERE server_id = $1 AND slot > coalesce({wa}, '-infinity') AND slot >= $4 AND slot < $5"
        ));
    }
    sql
}

static HISTORY_DB_SQL: LazyLock<String> = LazyLock::new(|| history_sql(false));
static HISTORY_SERVER_SQL: LazyLock<String> = LazyLock::new(|| history_sql(true));

/// Column of the first counter; the gauge columns follow the counters, then the chunk data.
const C0: usize = 8;
const G0: usize = C0 + COUNTERS;
const A0: usize = G0 + 10;

/// The window's buckets, one slot per step: a read folds thousands of records and slots into them,
/// and indexing by integer time is several times cheaper than a map keyed by timestamps.
struct Grid {
    first_us: i64,
    step_us: i64,
    accs: Vec<Acc>,
    seen: Vec<bool>,
}

impl Grid {
    fn new(w: &Window) -> Self {
        let n = usize::try_from((w.end - w.first).num_seconds() / w.step_secs.max(1)).unwrap_or(0);
        Self {
            first_us: w.first.timestamp_micros(),
            step_us: w.step_secs.max(1) * 1_000_000,
            accs: vec![Acc::default(); n],
            seen: vec![false; n],
        }
    }

    /// The bucket holding `t_us` (microseconds since the Unix epoch); `None` outside the window.
    fn at(&mut self, t_us: i64) -> Option<&mut Acc> {
        let i = usize::try_from((t_us - self.first_us).div_euclid(self.step_us)).ok()?;
        *self.seen.get_mut(i)? = true;
        self.accs.get_mut(i)
    }

    fn add(&mut self, t: DateTime<Utc>, acc: &Acc) {
        if let Some(b) = self.at(t.timestamp_micros()) {
            b.merge(acc);
        }
    }

    /// Adds the records of chunk data (see [`super::chunk`]) that fall in the window.
    fn add_records(&mut self, data: &[u8]) -> Result<()> {
        super::chunk::decode(data, |t_us, acc| {
            if let Some(b) = self.at(t_us) {
                b.merge(&acc);
            }
        })
        .ok_or_else(|| {
            sqlx::Error::Decode("stat_rollup_chunk: data is not a whole number of records".into())
        })?;
        Ok(())
    }

    /// The buckets that received anything, in order.
    fn into_buckets(self, w: &Window) -> Buckets {
        self.accs
            .into_iter()
            .zip(self.seen)
            .enumerate()
            .filter(|(_, (_, seen))| *seen)
            .map(|(i, (acc, _))| (w.first + TimeDelta::seconds(w.step_secs * i as i64), acc))
            .collect()
    }
}

fn sample_from_row(row: &PgRow) -> Result<(String, Sample)> {
    let mut counters = [None; COUNTERS];
    for (i, c) in counters.iter_mut().enumerate() {
        *c = row.try_get(C0 + i)?;
    }
    Ok((
        row.try_get(2)?,
        Sample {
            slot: row.try_get(1)?,
            collected_at: row.try_get(3)?,
            datid: row.try_get(4)?,
            stats_reset: row.try_get(5)?,
            postmaster_start: row.try_get(6)?,
            numbackends: row.try_get(7)?,
            counters,
        },
    ))
}

/// Buckets of one server (`datname = None`) or one of its databases, sorted; buckets without any
/// data are absent. `None` when nothing at all was found (the caller tells an unknown database from
/// an empty range). Packed chunks come from `cache` when it holds them, and join it when read.
pub async fn history(
    pool: &PgPool,
    cache: &ChunkCache,
    server_id: i64,
    datname: Option<&str>,
    w: &Window,
) -> Result<Option<Buckets>> {
    let res = tier_for(w.step_secs);
    let name = datname.unwrap_or("");
    let reach = w.first - TimeDelta::seconds(super::rollups::chunk_secs(res));
    let held = cache.get(server_id, name, res, reach, w.end);
    let skip: Vec<DateTime<Utc>> = held.iter().map(|(start, _)| *start).collect();
    let rows = history_rows(pool, server_id, datname, w, &skip).await?;
    for row in &rows {
        if row.try_get::<i32, _>(0)? == CHUNK {
            let data: &[u8] = row.try_get(A0)?;
            cache.put(server_id, name, res, row.try_get(1)?, data.into());
        }
    }
    fold_history(&rows, &held, datname.is_none(), w)
}

/// The history statement's rows, as the store returns them: what [`history`] reads before any
/// computation (the benchmark's plain-SQL baseline).
pub async fn history_rows(
    pool: &PgPool,
    server_id: i64,
    datname: Option<&str>,
    w: &Window,
    skip_chunks: &[DateTime<Utc>],
) -> Result<Vec<PgRow>> {
    let sql = if datname.is_some() {
        &HISTORY_DB_SQL
    } else {
        &HISTORY_SERVER_SQL
    };
    // The first new raw slot needs the last rolled-up one (or one a gap before the window) as baseline.
    let baseline = w.first - TimeDelta::milliseconds((w.max_gap_secs * 1000.0) as i64);
    let tier = tier_for(w.step_secs);
    let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
        .bind(server_id)
        .bind(datname.unwrap_or(""))
        .bind(i32::try_from(tier).unwrap_or(0))
        .bind(w.first)
        .bind(w.end)
        .bind(baseline)
        .bind(super::rollups::chunk_secs(tier) as f64)
        .bind(skip_chunks)
        .fetch_all(pool)
        .await?;
    Ok(rows)
}

/// A series's buckets with data, in time order.
pub type Buckets = Vec<(DateTime<Utc>, Acc)>;

fn fold_history(
    rows: &[PgRow],
    held: &[(DateTime<Utc>, ChunkData)],
    server_level: bool,
    w: &Window,
) -> Result<Option<Buckets>> {
    let mut grid = Grid::new(w);
    let mut per_db: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    let mut done: Option<DateTime<Utc>> = None;
    let mut found = !held.is_empty();
    for (_, data) in held {
        grid.add_records(data)?;
    }
    for row in rows {
        let kind: i32 = row.try_get(0)?;
        let t: DateTime<Utc> = row.try_get(1)?;
        if kind == MARK {
            done = Some(t);
            continue;
        }
        found = true;
        if kind == CHUNK || kind == TAIL {
            grid.add_records(row.try_get(A0)?)?;
            continue;
        }
        if kind == RAW {
            let (name, s) = sample_from_row(row)?;
            per_db.entry(name).or_default().push(s);
            continue;
        }
        let Some(acc) = grid.at(t.timestamp_micros()) else {
            continue;
        };
        match kind {
            SIZE => {
                acc.size_sum += row.try_get::<f64, _>(G0 + 3)?;
                acc.size_n += 1;
            }
            DISK => {
                acc.disk_used_sum += row.try_get::<f64, _>(G0 + 5)?;
                acc.disk_total_sum += row.try_get::<f64, _>(G0 + 6)?;
                acc.disk_n += 1;
            }
            AVAIL => {
                acc.up_n += i64::from(row.try_get::<i32, _>(G0 + 8)?);
                acc.avail_n += 1;
            }
            _ => {}
        }
    }
    if !found {
        return Ok(None);
    }
    add_raw_deltas(per_db, server_level, w, done, &mut grid);
    Ok(Some(grid.into_buckets(w)))
}

/// Counter deltas of the raw slots newer than the rollup watermark `done`.
fn add_raw_deltas(
    mut per_db: BTreeMap<String, Vec<Sample>>,
    server_level: bool,
    w: &Window,
    done: Option<DateTime<Utc>>,
    grid: &mut Grid,
) {
    let keep = |slot: DateTime<Utc>| slot >= w.first && done.is_none_or(|d| slot > d);
    let deltas: Vec<Vec<SlotDelta>> = per_db
        .values_mut()
        .map(|s| {
            s.sort_by_key(|x| x.slot);
            rates::series_deltas(s, w.max_gap_secs)
        })
        .collect();
    if !server_level {
        for d in deltas.iter().flatten().filter(|d| keep(d.slot)) {
            grid.add(d.slot, &rates::db_slot(d));
        }
        return;
    }
    let mut by_slot: BTreeMap<DateTime<Utc>, Vec<&SlotDelta>> = BTreeMap::new();
    for d in deltas.iter().flatten().filter(|d| keep(d.slot)) {
        by_slot.entry(d.slot).or_default().push(d);
    }
    for (slot, ds) in by_slot {
        grid.add(slot, &rates::server_slot(&ds));
    }
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

/// A database as the original backend's server page lists it: whether it still exists and when it
/// was created, from what the collector recorded (never by asking the monitored server).
#[derive(Debug, Clone, PartialEq)]
pub struct DbPresence {
    pub name: String,
    /// False once the collector found it dropped; true when the catalog task never saw it (its
    /// statistics are the only evidence, and they say it existed).
    pub exists: bool,
    /// `PG_VERSION`'s modification time where the collector may read it, else when pgmon first saw it.
    pub creation_time: Option<DateTime<Utc>>,
    /// A template database (`template0`, `template1`, ...), as the catalog task saw it.
    pub template: bool,
}

/// The databases of a server with collected statistics in `[w.first, w.end)`, by name.
pub async fn databases_in_window(pool: &PgPool, server_id: i64, w: &Window) -> Result<Vec<DbPresence>> {
    let res = tier_for(w.step_secs);
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM stat_rollup_chunk
          WHERE server_id = $1 AND res = $2 AND datname <> ''
            AND chunk_start > $3 - make_interval(secs => $5) AND chunk_start < $4
         UNION
         SELECT datname FROM stat_rollup
          WHERE server_id = $1 AND res = $2 AND datname <> '' AND bucket >= $3 AND bucket < $4
         UNION
         SELECT datname FROM stat_database
          WHERE server_id = $1 AND slot >= $3 AND slot < $4
            AND slot > coalesce((SELECT done_until FROM stat_rollup_state
                                  WHERE server_id = $1 AND source = 'stat_database'), '-infinity')
         ORDER BY 1",
    )
    .bind(server_id)
    .bind(i32::try_from(res).unwrap_or(0))
    .bind(w.first)
    .bind(w.end)
    .bind(super::rollups::chunk_secs(res) as f64)
    .fetch_all(pool)
    .await?;
    let catalog: Vec<(String, bool, Option<DateTime<Utc>>, bool)> = sqlx::query_as(
        "SELECT DISTINCT ON (name) name, dropped_at IS NULL, coalesce(created_at, first_seen),
                coalesce(datistemplate, false)
         FROM databases WHERE server_id = $1 AND name = ANY($2)
         ORDER BY name, last_seen DESC, id DESC",
    )
    .bind(server_id)
    .bind(&names)
    .fetch_all(pool)
    .await?;
    let known: BTreeMap<String, (bool, Option<DateTime<Utc>>, bool)> =
        catalog.into_iter().map(|(n, e, c, t)| (n, (e, c, t))).collect();
    Ok(names
        .into_iter()
        .map(|name| {
            let (exists, creation_time, template) = known.get(&name).copied().unwrap_or((true, None, false));
            DbPresence {
                name,
                exists,
                creation_time,
                template,
            }
        })
        .collect())
}

/// Each database's newest size sample in the two days before `at`: what a size series carries into
/// a window whose first buckets have no sample of their own (sizes are taken every 30 minutes).
pub async fn sizes_before(pool: &PgPool, server_id: i64, at: DateTime<Utc>) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT DISTINCT ON (datname) datname, size_bytes FROM db_size
         WHERE server_id = $1 AND slot < $2 AND slot >= $2 - interval '2 days'
         ORDER BY datname, slot DESC",
    )
    .bind(server_id)
    .bind(at)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// When the newest `pg_stat_database` snapshot of the server (or of one of its databases) was taken.
pub async fn last_collected(
    pool: &PgPool,
    server_id: i64,
    datname: Option<&str>,
) -> Result<Option<DateTime<Utc>>> {
    let q = match datname {
        Some(d) => sqlx::query_scalar(
            "SELECT collected_at FROM stat_database WHERE server_id = $1 AND datname = $2
             ORDER BY slot DESC LIMIT 1",
        )
        .bind(server_id)
        .bind(d),
        None => sqlx::query_scalar(
            "SELECT collected_at FROM stat_database WHERE server_id = $1 ORDER BY slot DESC LIMIT 1",
        )
        .bind(server_id),
    };
    Ok(q.fetch_optional(pool).await?)
}

/// The buckets of every database of a server with statistics in the window, templates left out (as
/// the original backend collected them), each as [`history`] reads one database (packed chunks from
/// `cache`), four databases at a time.
pub async fn history_per_database(
    pool: &PgPool,
    cache: &ChunkCache,
    server_id: i64,
    w: &Window,
) -> Result<Vec<(DbPresence, Buckets)>> {
    use futures::StreamExt;
    let dbs = databases_in_window(pool, server_id, w)
        .await?
        .into_iter()
        .filter(|d| !d.template);
    let reads = dbs.map(|db| async move {
        let buckets = history(pool, cache, server_id, Some(&db.name), w).await?;
        Ok::<_, super::StoreError>((db, buckets.unwrap_or_default()))
    });
    futures::stream::iter(reads)
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// What the catalog task recorded of database `name`; `None` when it never saw it.
pub async fn db_presence(pool: &PgPool, server_id: i64, name: &str) -> Result<Option<DbPresence>> {
    let row: Option<(bool, Option<DateTime<Utc>>, bool)> = sqlx::query_as(
        "SELECT dropped_at IS NULL, coalesce(created_at, first_seen), coalesce(datistemplate, false)
         FROM databases WHERE server_id = $1 AND name = $2 ORDER BY last_seen DESC, id DESC LIMIT 1",
    )
    .bind(server_id)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(exists, creation_time, template)| DbPresence {
        name: name.to_string(),
        exists,
        creation_time,
        template,
    }))
}

/// What the collector last recorded of a server: its newest availability sample and disk reading
/// of the last day.
#[derive(Debug, Clone, Default)]
pub struct LastSeen {
    pub collected_at: Option<DateTime<Utc>>,
    pub up: Option<bool>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub disk_total_bytes: Option<i64>,
    pub disk_available_bytes: Option<i64>,
    pub disk_collected_at: Option<DateTime<Utc>>,
}

/// (server, collected_at, up, error_class, error) of an availability sample.
type AvailabilityRow = (i64, DateTime<Utc>, bool, Option<String>, Option<String>);

/// [`LastSeen`] of each server in `ids` that has anything recorded.
pub async fn last_seen(pool: &PgPool, ids: &[i64]) -> Result<BTreeMap<i64, LastSeen>> {
    let avail: Vec<AvailabilityRow> = sqlx::query_as(
        "SELECT DISTINCT ON (server_id) server_id, collected_at, up, error_class, error FROM availability
         WHERE server_id = ANY($1) AND slot > now() - interval '1 day' ORDER BY server_id, slot DESC",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let disk: Vec<(i64, DateTime<Utc>, i64, i64)> = sqlx::query_as(
        "SELECT DISTINCT ON (server_id) server_id, collected_at, total_bytes, available_bytes FROM disk_usage
         WHERE server_id = ANY($1) AND slot > now() - interval '1 day' ORDER BY server_id, slot DESC",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut out: BTreeMap<i64, LastSeen> = BTreeMap::new();
    for (id, at, up, class, error) in avail {
        let e = out.entry(id).or_default();
        e.collected_at = Some(at);
        e.up = Some(up);
        e.error_class = class;
        e.error = error;
    }
    for (id, at, total, available) in disk {
        let e = out.entry(id).or_default();
        e.disk_collected_at = Some(at);
        e.disk_total_bytes = Some(total);
        e.disk_available_bytes = Some(available);
    }
    Ok(out)
}
