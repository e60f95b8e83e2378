//! Collected statistics: live status of a server, history series with rates, database info. Open to
//! every role.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::history_cache;
use crate::payload::SerdeJson;
use crate::state::AppState;
use chrono::{DateTime, TimeDelta, Utc};
use pgmon_shared::stats::rates::{self, Acc};
use pgmon_shared::store::servers::{self, ServerRow};
use pgmon_shared::store::stats_read::{self, Window};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod live {
    //! Asking a monitored server for its live status; failures become a `reachable: false` answer.

    use super::{Connections, DiskStatus, LiveStatus};
    use crate::remote_pools::session_opts;
    use crate::state::AppState;
    use chrono::Utc;
    use pgmon_shared::remote::{self, ErrorClass, RemoteError};
    use pgmon_shared::ssh;
    use pgmon_shared::store::servers::{self, ServerRow};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Whole SSH exchange (connect, login, `df`) deadline.
    const SSH_DEADLINE: Duration = Duration::from_secs(10);

    const STATUS_SQL: &str = "
        SELECT version(),
               current_setting('server_version_num')::int4,
               extract(epoch FROM now() - pg_postmaster_start_time())::float8,
               pg_is_in_recovery(),
               current_setting('max_connections')::int4,
               a.total, a.active, a.idle, a.idle_xact, a.waiting, a.longest_query, a.longest_xact,
               (SELECT count(*) FROM pg_database WHERE NOT datistemplate),
               (SELECT sum(pg_database_size(oid))::int8 FROM pg_database
                 WHERE datallowconn AND has_database_privilege(oid, 'CONNECT'))
        FROM (SELECT count(*) AS total,
                     count(*) FILTER (WHERE state = 'active') AS active,
                     count(*) FILTER (WHERE state = 'idle') AS idle,
                     count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_xact,
                     count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,
                     extract(epoch FROM max(now() - query_start) FILTER (WHERE state = 'active'))::float8
                         AS longest_query,
                     extract(epoch FROM max(now() - xact_start))::float8 AS longest_xact
              FROM pg_stat_activity
              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) a";

    fn down(name: &str, e: &RemoteError, latency_ms: Option<f64>) -> LiveStatus {
        LiveStatus {
            server: name.to_string(),
            reachable: false,
            error_class: Some(e.class.as_str().to_string()),
            error: Some(e.message.clone()),
            checked_at: Utc::now(),
            latency_ms,
            version: None,
            version_num: None,
            uptime_secs: None,
            in_recovery: None,
            max_connections: None,
            connections: None,
            databases: None,
            total_size_bytes: None,
            longest_query_secs: None,
            longest_transaction_secs: None,
            disk: None,
        }
    }

    pub async fn query(state: &AppState, server: &ServerRow) -> LiveStatus {
        let target = match servers::remote_target(&state.crypto, server) {
            Ok(t) => t,
            Err(_) => {
                let e = RemoteError::new(ErrorClass::Other, "the stored password cannot be decrypted");
                return down(&server.name, &e, None);
            }
        };
        let t = Instant::now();
        let row = async {
            let client = state
                .remote
                .get(server.id, &server.name, &server.pool, &target)
                .await?;
            let deadline = session_opts().call_deadline();
            let stmt = remote::call(deadline, client.prepare_cached(STATUS_SQL)).await?;
            remote::call(deadline, client.query_one(&stmt, &[])).await
        }
        .await;
        let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
        let row = match row {
            Ok(r) => r,
            Err(e) => return down(&server.name, &e, Some(latency_ms)),
        };
        let get = |i: usize| -> Result<_, RemoteError> {
            row.try_get::<_, Option<i64>>(i)
                .map_err(|e| RemoteError::from_pg(&e))
        };
        let parsed = (|| -> Result<LiveStatus, RemoteError> {
            let f = |e: tokio_postgres::Error| RemoteError::from_pg(&e);
            Ok(LiveStatus {
                server: server.name.clone(),
                reachable: true,
                error_class: None,
                error: None,
                checked_at: Utc::now(),
                latency_ms: Some(latency_ms),
                version: row.try_get(0).map_err(f)?,
                version_num: row.try_get(1).map_err(f)?,
                uptime_secs: row.try_get(2).map_err(f)?,
                in_recovery: row.try_get(3).map_err(f)?,
                max_connections: row.try_get(4).map_err(f)?,
                connections: Some(Connections {
                    total: get(5)?.unwrap_or(0),
                    active: get(6)?.unwrap_or(0),
                    idle: get(7)?.unwrap_or(0),
                    idle_in_transaction: get(8)?.unwrap_or(0),
                    waiting_on_lock: get(9)?.unwrap_or(0),
                }),
                longest_query_secs: row.try_get(10).map_err(f)?,
                longest_transaction_secs: row.try_get(11).map_err(f)?,
                databases: get(12)?,
                total_size_bytes: get(13)?,
                disk: None,
            })
        })();
        parsed.unwrap_or_else(|e| down(&server.name, &e, Some(latency_ms)))
    }

    /// Disk usage over SSH, cached for `ssh_cache_ttl_secs`; `None` without SSH settings.
    pub async fn disk(state: &AppState, server: &ServerRow) -> Option<DiskStatus> {
        let path = server.ssh_data_path.as_deref().filter(|p| !p.is_empty())?;
        if !server.ssh_enabled {
            return None;
        }
        let ttl = Duration::from_secs(state.cfg.api.ssh_cache_ttl_secs);
        let slot = state.remote.disk_slot(server.id);
        let mut cached = slot.lock().await;
        if let Some((at, v)) = &*cached
            && at.elapsed() < ttl
        {
            return Some((**v).clone());
        }
        let failed = |class: &str, msg: String| DiskStatus {
            ok: false,
            mount: None,
            total_bytes: None,
            used_bytes: None,
            available_bytes: None,
            error_class: Some(class.to_string()),
            error: Some(msg),
            checked_at: Utc::now(),
        };
        let v = match servers::ssh_target(&state.pool, &state.crypto, server).await {
            Ok(Some(target)) => match ssh::disk_usage(&target, path, SSH_DEADLINE).await {
                Ok(out) => {
                    if server.ssh_host_key_fingerprint.is_none() {
                        if let Err(e) =
                            servers::pin_host_key(&state.pool, server.id, &out.host_key_fingerprint).await
                        {
                            tracing::warn!(server = %server.name, error = %e, "cannot pin the SSH host key");
                        }
                        // A write inside a GET: the cached row without the pin must go now, not
                        // when the NOTIFY comes back.
                        state.cache.invalidate();
                    }
                    DiskStatus {
                        ok: true,
                        mount: Some(out.value.mount),
                        total_bytes: Some(out.value.total_bytes),
                        used_bytes: Some(out.value.used_bytes),
                        available_bytes: Some(out.value.available_bytes),
                        error_class: None,
                        error: None,
                        checked_at: Utc::now(),
                    }
                }
                Err(e) => failed(e.class.as_str(), e.message),
            },
            Ok(None) => return None,
            Err(e) => failed("other", e.to_string()),
        };
        *cached = Some((Instant::now(), Arc::new(v.clone())));
        Some(v)
    }
}

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

/// One database as the collector has seen it.
#[derive(Debug, Object)]
pub struct DbInfoOut {
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

/// Connections on the server by state (client backends only, this API's own session excluded).
#[derive(Debug, Clone, Object)]
pub struct Connections {
    pub total: i64,
    pub active: i64,
    pub idle: i64,
    pub idle_in_transaction: i64,
    /// Sessions waiting on a heavyweight lock.
    pub waiting_on_lock: i64,
}

/// Disk usage of the data directory's file system, read over SSH.
#[derive(Debug, Clone, Object)]
pub struct DiskStatus {
    pub ok: bool,
    pub mount: Option<String>,
    pub total_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
}

/// The server as it answers right now (or within the cache TTL).
#[derive(Debug, Clone, Object)]
pub struct LiveStatus {
    pub server: String,
    pub reachable: bool,
    /// `auth_failed`, `timeout`, `unreachable`, `tls` or `other` when not reachable.
    pub error_class: Option<String>,
    pub error: Option<String>,
    /// When the server was asked; older than the request by up to the cache TTL.
    pub checked_at: DateTime<Utc>,
    pub latency_ms: Option<f64>,
    pub version: Option<String>,
    pub version_num: Option<i32>,
    pub uptime_secs: Option<f64>,
    pub in_recovery: Option<bool>,
    pub max_connections: Option<i32>,
    pub connections: Option<Connections>,
    /// Databases other than templates.
    pub databases: Option<i64>,
    /// Sum of the sizes of the databases this role may connect to.
    pub total_size_bytes: Option<i64>,
    /// Age of the longest running query, seconds.
    pub longest_query_secs: Option<f64>,
    /// Age of the oldest open transaction, seconds.
    pub longest_transaction_secs: Option<f64>,
    /// `null` when SSH is not configured for the server.
    pub disk: Option<DiskStatus>,
}

pub struct StatsApi;

#[OpenApi(tag = "Tag::Stats")]
impl StatsApi {
    /// Live status of a server, asked directly (cached for `server_status_cache_ttl_secs`, the SSH
    /// disk part for `ssh_cache_ttl_secs`). An unreachable server is a normal answer with
    /// `reachable: false`, given within the connect deadline.
    #[oai(path = "/server_stats/:name", method = "get")]
    async fn live(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<LiveStatus>> {
        let server = server_by_name(&state, &name).await?;
        let ttl = Duration::from_secs(state.cfg.api.server_status_cache_ttl_secs);
        let slot = state.remote.status_slot(server.id);
        let status = {
            let mut cached = slot.lock().await;
            match &*cached {
                Some((at, v)) if at.elapsed() < ttl => v.clone(),
                _ => {
                    let v = Arc::new(live::query(&state, &server).await);
                    *cached = Some((Instant::now(), v.clone()));
                    v
                }
            }
        };
        let disk = live::disk(&state, &server).await;
        Ok(Json(LiveStatus {
            disk,
            ..(*status).clone()
        }))
    }

    /// History of a server: rates and gauges summed over its databases, availability and disk.
    ///
    /// `from`/`to` are RFC 3339 (default: the last 24 h); `step` is in seconds (default: at most
    /// about 1,000 points; more than 2,000 points is refused).
    #[oai(path = "/server/:name/stats", method = "get")]
    async fn server_history(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        step: Query<Option<i64>>,
    ) -> ApiResult<SerdeJson<Series>> {
        let w = window(&state, from.0, to.0, step.0)?;
        let server = server_by_name(&state, &name).await?;
        history_answer(&state, server, None, &w).await
    }

    /// History of one database of a server (same parameters as the server's).
    #[oai(path = "/server/:name/db/:db/stats", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per request parameter, as poem-openapi reads them
    async fn db_history(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
        db: Path<String>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        step: Query<Option<i64>>,
    ) -> ApiResult<SerdeJson<Series>> {
        let w = window(&state, from.0, to.0, step.0)?;
        let server = server_by_name(&state, &name).await?;
        history_answer(&state, server, Some(db.0), &w).await
    }

    /// One database: when it was seen, its size and growth, the latest counters, age(datfrozenxid).
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
        Ok(Json(DbInfoOut {
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
}

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

/// A history answer: kept from an earlier request if the server's data has not changed since (see
/// [`crate::history_cache`]), else computed and kept.
async fn history_answer(
    state: &AppState,
    server: ServerRow,
    database: Option<String>,
    w: &Window,
) -> ApiResult<SerdeJson<Series>> {
    let key = history_cache::Key {
        server_id: server.id,
        server: server.name.clone(),
        database: database.clone(),
        first_us: w.first.timestamp_micros(),
        end_us: w.end.timestamp_micros(),
        step_secs: w.step_secs,
    };
    if let Some(body) = state.cache.history(&key) {
        return Ok(SerdeJson::from_bytes(body));
    }
    // Requests for the same answer wait for the one computing it, then find it kept.
    let _computing = state.cache.history_computing(&key).await;
    if let Some(body) = state.cache.history(&key) {
        return Ok(SerdeJson::from_bytes(body));
    }
    let read_at = state.cache.history_generation(server.id);
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
    let out = SerdeJson::new(&series(server.name, database, w, &buckets))?;
    state.cache.put_history(key, out.bytes().clone(), read_at);
    Ok(out)
}

fn db_not_found(server: &str, db: &str) -> ApiError {
    ApiError::not_found(format!("database {db} not found on server {server}"))
}

/// Validates the range and picks the step; every error is a 400 that says what is wrong.
fn window(
    state: &AppState,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    step: Option<i64>,
) -> ApiResult<Window> {
    let interval = i64::try_from(state.cfg.collector.collect_interval_secs).unwrap_or(600);
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
}
