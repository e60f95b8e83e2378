//! Collected statistics, open to every role: live status of a server, the original backend's server
//! and database pages (per-database timelines with its bucket rules), database info, and pgmon's
//! columnar series with reset-safe rates (`/servers/{name}/history`). The original's shapes and
//! pgmon's are adapters over the same reads (`store::stats_read`).

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::history_cache::{self, Shape};
use crate::live::{LiveStatus, SessionQuery};
use crate::payload::SerdeJson;
use crate::state::AppState;
use chrono::{DateTime, TimeDelta, Utc};
use pgmon_shared::redact::show_query;
use pgmon_shared::stats::rates::{self, Acc};
use pgmon_shared::store::servers::{self, ServerRow};
use pgmon_shared::store::stats_read::{self, Window};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};
use std::collections::BTreeMap;

#[derive(Tags)]
enum Tag {
    /// Live status and collected history.
    Stats,
}

/// Most points a caller may ask for.
pub const MAX_POINTS: i64 = 2000;
/// Most points a default step gives.
pub const DEFAULT_POINTS: i64 = 1000;
/// Steps a default is chosen from: round numbers a chart axis reads well.
const NICE_STEPS: [i64; 15] = [
    1, 5, 10, 30, 60, 300, 600, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

/// Time series, one value per step bucket; `null` where the bucket holds no data (a gap).
///
/// Sent with [`SerdeJson`]: the serde attributes mirror the `oai` ones.
#[derive(Debug, Object, serde::Serialize)]
pub struct Series {
    pub server: String,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Start of the first bucket.
    pub from: DateTime<Utc>,
    /// End of the last bucket.
    pub to: DateTime<Utc>,
    /// Bucket width in seconds.
    pub step: i64,
    /// Start of each bucket.
    #[serde(serialize_with = "rfc3339_times")]
    pub time: Vec<DateTime<Utc>>,
    /// Seconds of each bucket covered by trusted counter deltas (the denominator of its rates), so
    /// `rate * covered_secs` is the bucket's count. Less than the step where a reset or gap fell.
    pub covered_secs: Vec<f64>,
    /// Transactions (commits + rollbacks) per second.
    pub xact_per_sec: Vec<Option<f64>>,
    pub commits_per_sec: Vec<Option<f64>>,
    pub rollbacks_per_sec: Vec<Option<f64>>,
    pub blks_read_per_sec: Vec<Option<f64>>,
    pub blks_hit_per_sec: Vec<Option<f64>>,
    pub tup_returned_per_sec: Vec<Option<f64>>,
    pub tup_fetched_per_sec: Vec<Option<f64>>,
    pub tup_inserted_per_sec: Vec<Option<f64>>,
    pub tup_updated_per_sec: Vec<Option<f64>>,
    pub tup_deleted_per_sec: Vec<Option<f64>>,
    pub temp_bytes_per_sec: Vec<Option<f64>>,
    pub deadlocks_per_sec: Vec<Option<f64>>,
    pub conflicts_per_sec: Vec<Option<f64>>,
    /// blks_hit / (blks_hit + blks_read) over the bucket.
    pub cache_hit_ratio: Vec<Option<f64>>,
    /// Average connected backends.
    pub numbackends: Vec<Option<f64>>,
    /// Average database size (server level: the sum over its databases).
    pub size_bytes: Vec<Option<f64>>,
    /// Server level only: filesystem of the data directory, over SSH.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_used_bytes: Option<Vec<Option<f64>>>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_total_bytes: Option<Vec<Option<f64>>>,
    /// Server level only: share of probes that found the server up (0..1).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability: Option<Vec<Option<f64>>>,
}

impl crate::payload::JsonSizeHint for Series {
    /// ~24 columns of numbers of up to ~20 characters each, per bucket.
    fn json_size_hint(&self) -> usize {
        1024 + self.time.len() * 24 * 20
    }
}

/// Bucket starts as `2026-01-02T03:04:05Z`. chrono's formatter took a fifth of a year-long series'
/// serialization; buckets are whole seconds, so the digits are written directly.
fn rfc3339_times<S: serde::Serializer>(times: &[DateTime<Utc>], ser: S) -> Result<S::Ok, S::Error> {
    use chrono::{Datelike, Timelike};
    use serde::ser::SerializeSeq;
    let mut seq = ser.serialize_seq(Some(times.len()))?;
    for t in times {
        if t.nanosecond() != 0 || !(0..=9999).contains(&t.year()) {
            seq.serialize_element(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))?;
            continue;
        }
        let mut b = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, width: usize, v: u32| {
            let mut v = v;
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        // The naive parts once: every accessor of `DateTime<Utc>` applies the offset again.
        let (d, tm) = (t.naive_utc().date(), t.naive_utc().time());
        put(0, 4, d.year().unsigned_abs());
        put(5, 2, d.month());
        put(8, 2, d.day());
        put(11, 2, tm.hour());
        put(14, 2, tm.minute());
        put(17, 2, tm.second());
        seq.serialize_element(std::str::from_utf8(&b).unwrap_or_default())?;
    }
    seq.end()
}

/// One database: the original backend's four fields first, then what pgmon knows besides.
#[derive(Debug, Object)]
pub struct DbInfoOut {
    /// Latest size, MiB (0 when no size was collected yet).
    pub size_mb: f64,
    /// Connected backends at the latest snapshot.
    pub connections: i64,
    /// Cumulative `xact_commit` at the latest snapshot (since the last stats reset).
    pub commits: i64,
    /// When the latest snapshot was taken.
    pub last_update: Option<DateTime<Utc>>,
    pub server: String,
    pub database: String,
    pub oid: Option<i64>,
    pub owner: Option<String>,
    pub encoding: Option<String>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// When the collector found the database gone; `null` while it exists.
    pub dropped_at: Option<DateTime<Utc>>,
    /// age(datfrozenxid) at the last catalog check.
    pub frozen_xid_age: Option<i64>,
    pub size_bytes: Option<i64>,
    pub size_at: Option<DateTime<Utc>>,
    /// Bytes grown since 24 h / 7 d / 30 d before the latest size; `null` without a sample that old.
    pub growth_24h_bytes: Option<i64>,
    pub growth_7d_bytes: Option<i64>,
    pub growth_30d_bytes: Option<i64>,
    /// Time of the last pg_stat_database snapshot.
    pub last_snapshot: Option<DateTime<Utc>>,
    pub numbackends: Option<i32>,
    pub stats_reset: Option<DateTime<Utc>>,
    /// The latest cumulative counters of pg_stat_database.
    pub counters: BTreeMap<String, Option<i64>>,
}

/// Live status plus the sessions with a state (the original's `queries`).
#[derive(Debug, Object)]
pub struct LiveStatusOut {
    #[oai(flatten)]
    pub status: LiveStatus,
    /// Every `pg_stat_activity` row with a state (empty when the server is down).
    pub queries: Vec<SessionQuery>,
}

/// A database on the original's server page.
#[derive(Debug, Object, serde::Serialize)]
pub struct DbPresenceOut {
    pub name: String,
    /// False once the collector found it dropped.
    pub exists: bool,
    /// Creation time (`PG_VERSION`'s mtime where readable, else when pgmon first saw it).
    pub creation_time: Option<DateTime<Utc>>,
}

/// One database in one bucket.
#[derive(Debug, Object, serde::Serialize)]
pub struct TimelinePoint {
    /// Start of the bucket.
    pub ts: DateTime<Utc>,
    pub datname: String,
    /// Average connected backends over the bucket, rounded.
    pub connections: i64,
    /// Size, GiB: the bucket's average sample, else the latest before it (0 when none is known).
    pub size_gb: f64,
    /// pgmon's addition: transactions committed in the bucket (reset-safe).
    pub commits: i64,
}

/// The original backend's server page data: databases and their timelines.
#[derive(Debug, Object, serde::Serialize)]
pub struct ServerStatsOut {
    /// Time of the server's newest `pg_stat_database` snapshot.
    pub last_stat_update: Option<DateTime<Utc>>,
    /// Sum of the timeline's `connections`.
    pub total_connections: i64,
    /// Sum of the databases' latest sizes in the range, GiB.
    pub total_size_gb: f64,
    pub databases: Vec<DbPresenceOut>,
    pub connection_timeline: Vec<TimelinePoint>,
    /// `raw` (one bucket per collection) up to 2 days, `hour` up to 14, `4hour` up to 90, `day` beyond.
    pub aggregation: String,
    pub server: String,
    /// Start of the first bucket.
    pub from: DateTime<Utc>,
    /// End of the last bucket.
    pub to: DateTime<Utc>,
    /// Bucket width, seconds.
    pub step: i64,
}

impl crate::payload::JsonSizeHint for ServerStatsOut {
    fn json_size_hint(&self) -> usize {
        1024 + self.databases.len() * 120 + self.connection_timeline.len() * 130
    }
}

/// One bucket of a database.
#[derive(Debug, Object, serde::Serialize)]
pub struct DbPoint {
    pub ts: DateTime<Utc>,
    pub connections: i64,
    /// Size, MiB (as `size_gb` of the server page).
    pub size_mb: f64,
    /// Transactions committed in the bucket, reset-safe (the original summed cumulative counters).
    pub commits: i64,
    /// pgmon's addition: transactions rolled back in the bucket.
    pub rollbacks: i64,
}

/// The original backend's database page data.
#[derive(Debug, Object, serde::Serialize)]
pub struct DbStatsOut {
    pub last_stat_update: Option<DateTime<Utc>>,
    /// Sum of the timeline's `connections`.
    pub total_connections: i64,
    /// Transactions committed in the range.
    pub total_commits: i64,
    /// The latest size in the range, MiB.
    pub total_size_mb: f64,
    pub creation_time: Option<DateTime<Utc>>,
    /// Highest and lowest `connections` of the timeline.
    pub max_connections: i64,
    pub min_connections: i64,
    pub timeline: Vec<DbPoint>,
    pub aggregation: String,
    pub server: String,
    pub database: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step: i64,
}

impl crate::payload::JsonSizeHint for DbStatsOut {
    fn json_size_hint(&self) -> usize {
        1024 + self.timeline.len() * 120
    }
}

pub struct StatsApi;

#[OpenApi(tag = "Tag::Stats")]
impl StatsApi {
    /// Live status of a server, asked directly (cached for `server_status_cache_ttl_secs`, the SSH
    /// disk part for `ssh_cache_ttl_secs`), with its sessions. An unreachable server is a normal
    /// answer with `reachable: false`, given within the connect deadline.
    #[oai(path = "/server_stats/:name", method = "get")]
    async fn live(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<LiveStatusOut>> {
        let server = server_by_name(&state, &name).await?;
        let status = state.live.status(&state, &server).await;
        let disk = state.live.disk(&state, &server).await;
        let texts = super::activity::texts_for(&state, &auth);
        let queries = if status.reachable {
            state
                .live
                .queries(&state, &server)
                .await
                .iter()
                .map(|q| SessionQuery {
                    query: show_query(texts, q.query.as_deref()),
                    ..q.clone()
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Json(LiveStatusOut {
            status: LiveStatus {
                disk,
                ..(*status).clone()
            },
            queries,
        }))
    }

    /// The original's server page: each database's connections and size over time (`start_date`,
    /// `end_date`: ISO 8601, default the last 7 days; buckets by the range as the original chose them).
    #[oai(path = "/server/:name/stats", method = "get")]
    async fn server_stats(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
        /// ISO 8601, e.g. `2026-02-13T09:00:00.000Z`; default 7 days before `end_date`.
        start_date: Query<Option<String>>,
        /// ISO 8601; default now.
        end_date: Query<Option<String>>,
    ) -> ApiResult<SerdeJson<ServerStatsOut>> {
        let (w, aggregation) = original_window(
            collect_interval(&state).await,
            start_date.0.as_deref(),
            end_date.0.as_deref(),
        )?;
        let server = server_by_name(&state, &name).await?;
        let key = answer_key(Shape::OriginalServer, &server, None, &w);
        kept_or_computed(&state, key, server.id, || {
            original_server(&state, &server, &w, aggregation)
        })
        .await
    }

    /// The original's database page: connections, size and commits over time (parameters as the
    /// server page's).
    #[oai(path = "/server/:name/db/:db/stats", method = "get")]
    async fn db_stats(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
        db: Path<String>,
        start_date: Query<Option<String>>,
        end_date: Query<Option<String>>,
    ) -> ApiResult<SerdeJson<DbStatsOut>> {
        let (w, aggregation) = original_window(
            collect_interval(&state).await,
            start_date.0.as_deref(),
            end_date.0.as_deref(),
        )?;
        let server = server_by_name(&state, &name).await?;
        let key = answer_key(Shape::OriginalDatabase, &server, Some(&db), &w);
        kept_or_computed(&state, key, server.id, || {
            original_db(&state, &server, &db, &w, aggregation)
        })
        .await
    }

    /// One database: its latest size, connections and commits (the original's fields), when it was
    /// seen, its growth over 24 h / 7 d / 30 d, the latest counters and age(datfrozenxid).
    #[oai(path = "/server/:name/db/:db", method = "get")]
    async fn db_info(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
        db: Path<String>,
    ) -> ApiResult<Json<DbInfoOut>> {
        let server = server_by_name(&state, &name).await?;
        let info = stats_read::db_info(&state.pool, server.id, &db)
            .await?
            .ok_or_else(|| db_not_found(&name, &db))?;
        let commits = info
            .counters
            .iter()
            .find(|(n, _)| n == "xact_commit")
            .and_then(|(_, v)| *v);
        Ok(Json(DbInfoOut {
            size_mb: info.size_bytes.unwrap_or(0) as f64 / MIB,
            connections: info.numbackends.map(i64::from).unwrap_or(0),
            commits: commits.unwrap_or(0),
            last_update: info.last_snapshot,
            server: server.name,
            database: db.0,
            oid: info.oid,
            owner: info.owner,
            encoding: info.encoding,
            first_seen: info.first_seen,
            last_seen: info.last_seen,
            dropped_at: info.dropped_at,
            frozen_xid_age: info.frozen_xid_age,
            size_bytes: info.size_bytes,
            size_at: info.size_at,
            growth_24h_bytes: info.growth_24h,
            growth_7d_bytes: info.growth_7d,
            growth_30d_bytes: info.growth_30d,
            last_snapshot: info.last_snapshot,
            numbackends: info.numbackends,
            stats_reset: info.stats_reset,
            counters: info.counters.into_iter().collect(),
        }))
    }

    /// pgmon's series of a server: reset-safe rates and gauges summed over its databases,
    /// availability and disk, in columns.
    ///
    /// `from`/`to` are RFC 3339 (default: the last 24 h); `step` is in seconds (default: at most
    /// about 1,000 points; more than 2,000 points is refused).
    #[oai(path = "/servers/:name/history", method = "get")]
    async fn server_history(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        /// Bucket width in seconds, at most ten years.
        #[oai(validator(minimum(value = "1"), maximum(value = "315360000")))]
        step: Query<Option<i64>>,
    ) -> ApiResult<SerdeJson<Series>> {
        let w = window(collect_interval(&state).await, from.0, to.0, step.0)?;
        let server = server_by_name(&state, &name).await?;
        history_answer(&state, server, None, &w).await
    }

    /// pgmon's series of one database of a server (same parameters as the server's).
    #[oai(path = "/servers/:name/databases/:db/history", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per request parameter, as poem-openapi reads them
    async fn db_history(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
        db: Path<String>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "315360000")))] step: Query<Option<i64>>,
    ) -> ApiResult<SerdeJson<Series>> {
        let w = window(collect_interval(&state).await, from.0, to.0, step.0)?;
        let server = server_by_name(&state, &name).await?;
        history_answer(&state, server, Some(db.0), &w).await
    }
}

/// Most daily buckets of the original's pages; longer ranges get buckets of several days.
const ORIGINAL_MAX_DAYS: f64 = 5000.0;
const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// The server, from the cache of [`crate::store_cache`] when it holds it.
pub(crate) async fn server_by_name(state: &AppState, name: &str) -> ApiResult<ServerRow> {
    if let Some(row) = state.cache.server(name) {
        return Ok(row);
    }
    let read_at = state.cache.generation();
    let row = servers::get_by_name(&state.pool, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("server {name} not found")))?;
    state.cache.put_server(row.clone(), read_at);
    Ok(row)
}

fn answer_key(shape: Shape, server: &ServerRow, database: Option<&str>, w: &Window) -> history_cache::Key {
    history_cache::Key {
        shape,
        server_id: server.id,
        server: server.name.clone(),
        database: database.map(str::to_string),
        first_us: w.first.timestamp_micros(),
        end_us: w.end.timestamp_micros(),
        step_secs: w.step_secs,
    }
}

/// An answer kept from an earlier request if the server's data has not changed since (see
/// [`crate::history_cache`]), else computed by `compute` and kept.
async fn kept_or_computed<T, F, Fut>(
    state: &AppState,
    key: history_cache::Key,
    server_id: i64,
    compute: F,
) -> ApiResult<SerdeJson<T>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ApiResult<SerdeJson<T>>>,
{
    if let Some(body) = state.cache.history(&key) {
        return Ok(SerdeJson::from_bytes(body));
    }
    // Requests for the same answer wait for the one computing it, then find it kept.
    let _computing = state.cache.history_computing(&key).await;
    if let Some(body) = state.cache.history(&key) {
        return Ok(SerdeJson::from_bytes(body));
    }
    let read_at = state.cache.history_generation(server_id);
    let out = compute().await?;
    state.cache.put_history(key, out.bytes().clone(), read_at);
    Ok(out)
}

/// A columnar series answer.
async fn history_answer(
    state: &AppState,
    server: ServerRow,
    database: Option<String>,
    w: &Window,
) -> ApiResult<SerdeJson<Series>> {
    let key = answer_key(Shape::Series, &server, database.as_deref(), w);
    kept_or_computed(state, key, server.id, || async {
        let db = database.as_deref();
        // Data in the range proves the database exists; only an empty answer needs the check.
        let buckets = match stats_read::history(&state.pool, &state.chunks, server.id, db, w).await? {
            Some(b) => b,
            None => match db {
                Some(d) if !stats_read::database_known(&state.pool, server.id, d).await? => {
                    return Err(db_not_found(&server.name, d));
                }
                _ => Vec::new(),
            },
        };
        SerdeJson::new(&series(server.name.clone(), database.clone(), w, &buckets))
    })
    .await
}

/// `start_date`/`end_date` as the original read them (ISO 8601; `Z`, an offset, or none for UTC;
/// a bare date is its midnight UTC), and its bucket rule: one bucket per collection up to 2 days,
/// hours up to 14 days, 4 hours up to 90 days, days beyond.
fn original_window(
    interval: i64,
    start: Option<&str>,
    end: Option<&str>,
) -> ApiResult<(Window, &'static str)> {
    let end = match end {
        Some(e) => parse_original_date(e)?,
        None => Utc::now(),
    };
    let start = match start {
        Some(s) => parse_original_date(s)?,
        None => end - TimeDelta::days(7),
    };
    if start >= end {
        return Err(ApiError::bad_request("start_date must be before end_date"));
    }
    let (start, end) = clamp_range(start, end).map_err(ApiError::bad_request)?;
    let days = (end - start).as_seconds_f64() / 86_400.0;
    let (step, aggregation) = match days {
        d if d <= 2.0 => (interval, "raw"),
        d if d <= 14.0 => (3600, "hour"),
        d if d <= 90.0 => (14_400, "4hour"),
        // Beyond ~14 years, days of several days each: a bounded answer whatever the range.
        d => (86_400 * ((d / ORIGINAL_MAX_DAYS).ceil() as i64).max(1), "day"),
    };
    let first = rates::bucket_start(start, step);
    let last = rates::bucket_start(end - TimeDelta::microseconds(1), step) + TimeDelta::seconds(step);
    Ok((
        Window {
            first,
            end: last,
            step_secs: step,
            max_gap_secs: 2.0 * interval as f64,
        },
        aggregation,
    ))
}

/// The original's date parameter; 400 with its own text when unreadable.
pub fn parse_original_date(s: &str) -> ApiResult<DateTime<Utc>> {
    let bad = || ApiError::bad_request(format!("Невалидный формат даты: {s}"));
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        })
        .map_err(|_| bad())?;
    Ok(naive.and_utc())
}

/// One bucket of one database with a `pg_stat_database` sample, as the original's pages chart it.
struct Point {
    ts: DateTime<Utc>,
    /// Average connected backends, rounded.
    connections: i64,
    /// The bucket's average size sample, else the latest one before it.
    size: Option<f64>,
    commits: i64,
    rollbacks: i64,
}

/// The buckets with a `pg_stat_database` sample; `size_before` seeds the carried size.
fn timeline_points(buckets: &[(DateTime<Utc>, Acc)], size_before: Option<f64>) -> Vec<Point> {
    let mut size = size_before;
    let mut out = Vec::with_capacity(buckets.len());
    for (t, acc) in buckets {
        if let Some(s) = acc.size_bytes() {
            size = Some(s);
        }
        if let Some(n) = acc.numbackends() {
            out.push(Point {
                ts: *t,
                connections: n.round() as i64,
                size,
                commits: acc.counters[rates::XACT_COMMIT],
                rollbacks: acc.counters[rates::XACT_ROLLBACK],
            });
        }
    }
    out
}

async fn original_server(
    state: &AppState,
    server: &ServerRow,
    w: &Window,
    aggregation: &str,
) -> ApiResult<SerdeJson<ServerStatsOut>> {
    let (per_db, sizes, last) = futures::try_join!(
        stats_read::history_per_database(&state.pool, &state.chunks, server.id, w),
        stats_read::sizes_before(&state.pool, server.id, w.first),
        stats_read::last_collected(&state.pool, server.id, None),
    )?;
    let mut databases = Vec::with_capacity(per_db.len());
    let mut timeline = Vec::new();
    let mut total_size = 0.0;
    for (db, buckets) in &per_db {
        let points = timeline_points(buckets, sizes.get(&db.name).map(|s| *s as f64));
        if points.is_empty() {
            continue;
        }
        total_size += points.iter().rev().find_map(|p| p.size).unwrap_or(0.0);
        timeline.extend(points.into_iter().map(|p| TimelinePoint {
            ts: p.ts,
            datname: db.name.clone(),
            connections: p.connections,
            size_gb: p.size.unwrap_or(0.0) / GIB,
            commits: p.commits,
        }));
        databases.push(DbPresenceOut {
            name: db.name.clone(),
            exists: db.exists,
            creation_time: db.creation_time,
        });
    }
    timeline.sort_by(|a, b| (a.ts, &a.datname).cmp(&(b.ts, &b.datname)));
    SerdeJson::new(&ServerStatsOut {
        last_stat_update: last,
        total_connections: timeline.iter().map(|p| p.connections).sum(),
        total_size_gb: total_size / GIB,
        databases,
        connection_timeline: timeline,
        aggregation: aggregation.to_string(),
        server: server.name.clone(),
        from: w.first,
        to: w.end,
        step: w.step_secs,
    })
}

async fn original_db(
    state: &AppState,
    server: &ServerRow,
    db: &str,
    w: &Window,
    aggregation: &str,
) -> ApiResult<SerdeJson<DbStatsOut>> {
    let (buckets, sizes, last, info) = futures::try_join!(
        stats_read::history(&state.pool, &state.chunks, server.id, Some(db), w),
        stats_read::sizes_before(&state.pool, server.id, w.first),
        stats_read::last_collected(&state.pool, server.id, Some(db)),
        stats_read::db_presence(&state.pool, server.id, db),
    )?;
    if buckets.is_none() && info.is_none() && last.is_none() {
        return Err(db_not_found(&server.name, db));
    }
    let points = timeline_points(&buckets.unwrap_or_default(), sizes.get(db).map(|s| *s as f64));
    let timeline: Vec<DbPoint> = points
        .iter()
        .map(|p| DbPoint {
            ts: p.ts,
            connections: p.connections,
            size_mb: p.size.unwrap_or(0.0) / MIB,
            commits: p.commits,
            rollbacks: p.rollbacks,
        })
        .collect();
    SerdeJson::new(&DbStatsOut {
        last_stat_update: last,
        total_connections: timeline.iter().map(|p| p.connections).sum(),
        total_commits: timeline.iter().map(|p| p.commits).sum(),
        total_size_mb: points.iter().rev().find_map(|p| p.size).unwrap_or(0.0) / MIB,
        creation_time: info.and_then(|i| i.creation_time),
        max_connections: timeline.iter().map(|p| p.connections).max().unwrap_or(0),
        min_connections: timeline.iter().map(|p| p.connections).min().unwrap_or(0),
        timeline,
        aggregation: aggregation.to_string(),
        server: server.name.clone(),
        database: db.to_string(),
        from: w.first,
        to: w.end,
        step: w.step_secs,
    })
}

fn db_not_found(server: &str, db: &str) -> ApiError {
    ApiError::not_found(format!("database {db} not found on server {server}"))
}

/// The effective statistics interval (a runtime setting), in seconds.
pub(crate) async fn collect_interval(state: &AppState) -> i64 {
    i64::try_from(state.settings().await.collect_interval().as_secs()).unwrap_or(600)
}

/// Validates the range and picks the step; every error is a 400 that says what is wrong.
pub(crate) fn window(
    interval: i64,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    step: Option<i64>,
) -> ApiResult<Window> {
    plan_window(from, to, step, interval, Utc::now()).map_err(ApiError::bad_request)
}

/// The pure part of [`window`], separated for unit tests.
pub fn plan_window(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    step: Option<i64>,
    collect_interval_secs: i64,
    now: DateTime<Utc>,
) -> Result<Window, String> {
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - TimeDelta::hours(24));
    if from >= to {
        return Err("`from` must be before `to`".into());
    }
    let (from, to) = clamp_range(from, to)?;
    let span = (to - from).num_seconds().max(1);
    let step = match step {
        Some(s) if s < 1 => return Err("`step` must be a positive number of seconds".into()),
        Some(s) => s,
        None => NICE_STEPS
            .iter()
            .copied()
            .filter(|s| *s >= collect_interval_secs.min(86400))
            .find(|s| ceil_div(span, *s) <= DEFAULT_POINTS)
            .unwrap_or_else(|| ceil_div(ceil_div(span, DEFAULT_POINTS), 86400) * 86400),
    };
    let first = rates::bucket_start(from, step);
    let end = rates::bucket_start(to - TimeDelta::microseconds(1), step) + TimeDelta::seconds(step);
    let points = (end - first).num_seconds() / step;
    if points > MAX_POINTS {
        return Err(format!(
            "the range with step {step} s gives {points} points; at most {MAX_POINTS} are allowed: \
             use a larger step or a shorter range"
        ));
    }
    Ok(Window {
        first,
        end,
        step_secs: step,
        max_gap_secs: 2.0 * collect_interval_secs as f64,
    })
}

/// A range cut to the years pgmon can hold data for, 1970 to 9000: buckets are aligned to the epoch,
/// and a bucket aligned before year 1 or past 9999 has no RFC 3339 form to answer with.
fn clamp_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let floor = DateTime::<Utc>::UNIX_EPOCH;
    let ceiling = DateTime::<Utc>::from_timestamp(221_845_392_000, 0).unwrap_or(to); // 9000-01-01
    let (from, to) = (from.max(floor), to.min(ceiling));
    if from >= to {
        return Err("the range holds no time between 1970 and 9000, where pgmon's data can be".into());
    }
    Ok((from, to))
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

fn series(server: String, database: Option<String>, w: &Window, buckets: &[(DateTime<Utc>, Acc)]) -> Series {
    let n = usize::try_from((w.end - w.first).num_seconds() / w.step_secs).unwrap_or(0);
    let empty = Acc::default();
    let mut accs: Vec<&Acc> = Vec::with_capacity(n);
    let mut time = Vec::with_capacity(n);
    let mut it = buckets.iter().peekable();
    for i in 0..n {
        let t = w.first + TimeDelta::seconds(w.step_secs * i as i64);
        time.push(t);
        while it.peek().is_some_and(|(b, _)| *b < t) {
            it.next();
        }
        match it.peek() {
            Some((b, a)) if *b == t => accs.push(a),
            _ => accs.push(&empty),
        }
    }
    let col = |f: &dyn Fn(&Acc) -> Option<f64>| accs.iter().map(|a| f(a)).collect::<Vec<_>>();
    let rate = |i: usize| col(&|a: &Acc| a.rate(i));
    let server_level = database.is_none();
    Series {
        server,
        database,
        from: w.first,
        to: w.end,
        step: w.step_secs,
        covered_secs: accs.iter().map(|a| a.secs).collect(),
        xact_per_sec: col(&Acc::xact_rate),
        commits_per_sec: rate(0),
        rollbacks_per_sec: rate(1),
        blks_read_per_sec: rate(2),
        blks_hit_per_sec: rate(3),
        tup_returned_per_sec: rate(4),
        tup_fetched_per_sec: rate(5),
        tup_inserted_per_sec: rate(6),
        tup_updated_per_sec: rate(7),
        tup_deleted_per_sec: rate(8),
        temp_bytes_per_sec: rate(9),
        deadlocks_per_sec: rate(10),
        conflicts_per_sec: rate(11),
        cache_hit_ratio: col(&Acc::cache_hit_ratio),
        numbackends: col(&Acc::numbackends),
        size_bytes: col(&Acc::size_bytes),
        disk_used_bytes: server_level.then(|| col(&Acc::disk_used_bytes)),
        disk_total_bytes: server_level.then(|| col(&Acc::disk_total_bytes)),
        availability: server_level.then(|| col(&Acc::availability)),
        time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn default_step_keeps_about_a_thousand_points() {
        let now = Utc.timestamp_opt(1_800_000_000, 0).single().unwrap_or_default();
        let w = plan_window(None, None, None, 600, now).expect("24h");
        assert_eq!(w.step_secs, 600);
        assert_eq!((w.end - w.first).num_seconds() / 600, 144);
        let week = plan_window(Some(now - TimeDelta::days(7)), Some(now), None, 600, now).expect("7d");
        assert_eq!(week.step_secs, 1200);
        let year = plan_window(Some(now - TimeDelta::days(365)), Some(now), None, 600, now).expect("1y");
        assert_eq!(year.step_secs, 43200);
    }

    #[test]
    fn bucket_times_are_rfc3339_and_parse_back() {
        let times = vec![
            at("2026-01-02T03:04:05Z"),
            at("0999-12-31T23:59:59Z"),
            at("2026-01-02T03:04:05.250Z"),
        ];
        let mut out = Vec::new();
        rfc3339_times(&times, &mut serde_json::Serializer::new(&mut out)).expect("serialize");
        let text = String::from_utf8(out).unwrap_or_default();
        assert_eq!(
            text,
            r#"["2026-01-02T03:04:05Z","0999-12-31T23:59:59Z","2026-01-02T03:04:05.250Z"]"#
        );
        let back: Vec<DateTime<Utc>> = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, times);
    }

    #[test]
    fn bad_ranges_and_steps_are_refused() {
        let a = at("2026-01-02T00:00:00Z");
        let b = at("2026-01-01T00:00:00Z");
        assert!(plan_window(Some(a), Some(b), None, 600, a).is_err());
        assert!(plan_window(Some(b), Some(a), Some(0), 600, a).is_err());
        assert!(plan_window(Some(b), Some(a), Some(43), 600, a).is_err());
        assert!(plan_window(Some(b), Some(a), Some(44), 600, a).is_ok());
    }

    #[test]
    fn ranges_reaching_past_the_representable_years_are_cut() {
        // Schemathesis found `from` answered as "-0001-10-13T00:00:00Z", which is no date-time.
        let w = plan_window(
            Some(at("0001-01-05T04:00:05Z")),
            Some(at("8016-01-26T00:31:00Z")),
            None,
            600,
            at("2026-01-01T00:00:00Z"),
        )
        .expect("cut, not refused");
        assert!(w.first >= DateTime::<Utc>::UNIX_EPOCH, "{}", w.first);
        let (o, _) = original_window(600, Some("0001-01-05T04:00:05Z"), Some("9999-01-26T00:31:00Z"))
            .expect("original");
        assert!(
            o.first >= DateTime::<Utc>::UNIX_EPOCH && o.end.format("%Y").to_string().len() == 4,
            "{} {}",
            o.first,
            o.end
        );
        // Entirely before 1970: nothing pgmon can hold, refused with a reason.
        assert!(
            plan_window(
                Some(at("1900-01-01T00:00:00Z")),
                Some(at("1901-01-01T00:00:00Z")),
                None,
                600,
                at("2026-01-01T00:00:00Z")
            )
            .is_err()
        );
    }
}
