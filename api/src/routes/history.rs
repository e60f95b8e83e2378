//! `/servers/{name}/series/{family}` and `/servers/{name}/statements[/{queryid}]`: the history of
//! the families beyond `pg_stat_database`, with the same `from`/`to`/`step` rules, gaps and reset
//! handling as the database series.

use super::stats::{collect_interval, server_by_name, window};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::payload::SerdeJson;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::redact::show_query;
use pgmon_shared::store::family_series::{self, Columns, Spec};
use pgmon_shared::store::history::{activity, archiver, checkpointer, io, replication, statements, wal};
use pgmon_shared::store::stats_read::Window;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi, Tags};
use std::collections::BTreeMap;

#[derive(Tags)]
enum Tag {
    /// History of activity, replication, checkpoints, WAL, archiving, I/O and statements.
    History,
}

/// A family of series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum FamilyName {
    /// Sessions by state, waits, the longest query and transaction, the oldest xmin, wraparound age,
    /// the worst replication lag and slot retention (every `collector.activity_interval_secs`).
    Activity,
    /// Checkpoints and the background writer (per-second rates).
    Checkpointer,
    /// WAL generated (every version) and `pg_stat_wal` (14+).
    Wal,
    /// `pg_stat_io` (16+), summed; `by` per backend type, object and context.
    Io,
    /// WAL archiving.
    Archiver,
    /// Lag of each standby (`by`: per standby; `series`: the worst of them).
    Replication,
    /// WAL retained by each replication slot (`by`: per slot; `series`: the most of them).
    Slots,
}

impl FamilyName {
    fn spec(self) -> &'static Spec {
        match self {
            FamilyName::Activity => &activity::SPEC,
            FamilyName::Checkpointer => &checkpointer::SPEC,
            FamilyName::Wal => &wal::SPEC,
            FamilyName::Io => &io::SPEC,
            FamilyName::Archiver => &archiver::SPEC,
            FamilyName::Replication => &replication::STANDBYS,
            FamilyName::Slots => &replication::SLOTS,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            FamilyName::Activity => "activity",
            FamilyName::Checkpointer => "checkpointer",
            FamilyName::Wal => "wal",
            FamilyName::Io => "io",
            FamilyName::Archiver => "archiver",
            FamilyName::Replication => "replication",
            FamilyName::Slots => "slots",
        }
    }

    /// Families whose series are per standby, slot or I/O kind.
    fn keyed(self) -> bool {
        matches!(self, FamilyName::Replication | FamilyName::Slots | FamilyName::Io)
    }
}

/// Series of one family, one value per bucket (`null`: no data, or no trusted delta). Rates are per
/// second; `*_ms_per_sec` are milliseconds spent per second.
#[derive(Debug, Object, serde::Serialize)]
pub struct FamilySeries {
    pub server: String,
    pub family: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step: i64,
    pub time: Vec<DateTime<Utc>>,
    /// Totals over the family's keys (for replication and slots: the worst standby or slot).
    pub series: BTreeMap<String, Vec<Option<f64>>>,
    /// Per standby, slot or I/O kind (`backend_type/object/context`), for the keyed families.
    pub by: BTreeMap<String, BTreeMap<String, Vec<Option<f64>>>>,
}

impl crate::payload::JsonSizeHint for FamilySeries {
    fn json_size_hint(&self) -> usize {
        let cols: usize = self.series.len() + self.by.values().map(BTreeMap::len).sum::<usize>();
        512 + self.time.len() * (24 + cols * 12)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
#[oai(rename_all = "snake_case")]
pub enum StatementSort {
    #[default]
    TotalTime,
    Calls,
    MeanTime,
    Rows,
    BlocksRead,
    Temp,
}

impl From<StatementSort> for statements::Sort {
    fn from(s: StatementSort) -> Self {
        match s {
            StatementSort::TotalTime => statements::Sort::TotalTime,
            StatementSort::Calls => statements::Sort::Calls,
            StatementSort::MeanTime => statements::Sort::MeanTime,
            StatementSort::Rows => statements::Sort::Rows,
            StatementSort::BlocksRead => statements::Sort::BlocksRead,
            StatementSort::Temp => statements::Sort::Temp,
        }
    }
}

/// One statement over the window (times in ms).
#[derive(Debug, Object)]
pub struct TopStatement {
    pub queryid: i64,
    /// `queryid` in decimal: JavaScript's numbers keep only 53 bits, and queryids use all 64.
    pub queryid_text: String,
    pub database: Option<String>,
    pub user: Option<String>,
    pub toplevel: bool,
    pub calls: i64,
    pub total_exec_time_ms: f64,
    pub total_plan_time_ms: f64,
    pub mean_time_ms: Option<f64>,
    pub rows: i64,
    pub shared_blks_hit: i64,
    pub shared_blks_read: i64,
    pub shared_blks_dirtied: i64,
    pub shared_blks_written: i64,
    /// Temporary blocks read and written.
    pub temp_blks: i64,
    pub blk_read_time_ms: f64,
    pub blk_write_time_ms: f64,
    pub wal_bytes: Option<i64>,
    /// Share of the execution time of the statements kept in the window.
    pub time_share: Option<f64>,
    /// The normalized text, at most 4 KiB, password literals redacted; for viewers as
    /// `api.viewer_query_text` says.
    pub query: Option<String>,
}

#[derive(Debug, Object)]
pub struct TopStatements {
    pub server: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub statements: Vec<TopStatement>,
}

/// One statement's text and its figures per bucket.
#[derive(Debug, Object)]
pub struct StatementDetail {
    pub server: String,
    pub queryid: i64,
    /// Password literals redacted; for viewers as `api.viewer_query_text` says (`""`: no text).
    pub query: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step: i64,
    pub time: Vec<DateTime<Utc>>,
    pub calls_per_sec: Vec<Option<f64>>,
    /// Execution milliseconds per second: the statement's share of the server's time.
    pub exec_ms_per_sec: Vec<Option<f64>>,
    pub mean_time_ms: Vec<Option<f64>>,
    pub rows_per_sec: Vec<Option<f64>>,
    pub shared_blks_read_per_sec: Vec<Option<f64>>,
}

fn columns_of(mut all: BTreeMap<String, Columns>, keyed: bool) -> (Columns, BTreeMap<String, Columns>) {
    if !keyed {
        return (all.remove("").unwrap_or_default(), BTreeMap::new());
    }
    // Totals over keys: rates add up; for lags and retention the worst key is the headline.
    let mut total: Columns = BTreeMap::new();
    for cols in all.values() {
        for (name, values) in cols {
            let t = total
                .entry(name.clone())
                .or_insert_with(|| vec![None; values.len()]);
            for (i, v) in values.iter().enumerate() {
                if let Some(v) = v {
                    t[i] = Some(match t[i] {
                        Some(acc) if name.contains("per_sec") => acc + v,
                        Some(acc) => acc.max(*v),
                        None => *v,
                    });
                }
            }
        }
    }
    (total, all)
}

pub struct HistoryApi;

#[OpenApi(tag = "Tag::History")]
impl HistoryApi {
    /// A family's series over `from`..`to` (RFC 3339, default the last 24 h) in buckets of `step`
    /// seconds (default: at most about 1,000 points).
    #[oai(path = "/servers/:name/series/:family", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per request parameter, as poem-openapi reads them
    async fn series(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
        family: Path<FamilyName>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "315360000")))] step: Query<Option<i64>>,
    ) -> ApiResult<SerdeJson<FamilySeries>> {
        let interval = collect_interval(&state).await;
        let gap_interval = if matches!(
            family.0,
            FamilyName::Activity | FamilyName::Replication | FamilyName::Slots
        ) {
            i64::try_from(state.cfg.collector.activity_interval_secs).unwrap_or(60)
        } else {
            interval
        };
        let mut w = window(gap_interval, from.0, to.0, step.0)?;
        w.max_gap_secs = 2.0 * interval.max(gap_interval) as f64;
        let server = server_by_name(&state, &name).await?;
        let keyed = family.0.keyed();
        let data = family_series::read(&state.pool, family.0.spec(), server.id, &w, keyed).await?;
        let (series, by) = columns_of(data, keyed);
        let names: Vec<String> = family
            .0
            .spec()
            .counters
            .iter()
            .map(|(_, n)| n.to_string())
            .chain(family.0.spec().gauges.iter().map(|(_, n, _)| n.to_string()))
            .collect();
        let n = family_series::times(&w).len();
        let mut series = series;
        for name in names {
            series.entry(name).or_insert_with(|| vec![None; n]);
        }
        SerdeJson::new(&FamilySeries {
            server: server.name,
            family: family.0.as_str().into(),
            from: w.first,
            to: w.end,
            step: w.step_secs,
            time: family_series::times(&w),
            series,
            by,
        })
    }

    /// The top statements over `from`..`to` (default the last 24 h), from what each spent in every
    /// stats slot (the top `collector.statements_top` of each slot are kept), optionally of one
    /// database.
    #[oai(path = "/servers/:name/statements", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per request parameter, as poem-openapi reads them
    async fn top(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        sort: Query<Option<StatementSort>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<i64>>,
        #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))] db: Query<Option<String>>,
    ) -> ApiResult<Json<TopStatements>> {
        let w = window(collect_interval(&state).await, from.0, to.0, None)?;
        let server = server_by_name(&state, &name).await?;
        let texts = super::activity::texts_for(&state, &auth);
        let rows = statements::top(
            &state.pool,
            server.id,
            w.first,
            w.end,
            db.0.as_deref().filter(|d| !d.is_empty()),
            sort.0.unwrap_or_default().into(),
            limit.0.unwrap_or(50),
        )
        .await?;
        Ok(Json(TopStatements {
            server: server.name,
            from: w.first,
            to: w.end,
            statements: rows
                .into_iter()
                .map(|r| TopStatement {
                    queryid: r.queryid,
                    queryid_text: r.queryid.to_string(),
                    database: r.datname,
                    user: r.usename,
                    toplevel: r.toplevel,
                    calls: r.calls,
                    total_exec_time_ms: r.total_exec_time,
                    total_plan_time_ms: r.total_plan_time,
                    mean_time_ms: r.mean_time,
                    rows: r.rows,
                    shared_blks_hit: r.shared_blks_hit,
                    shared_blks_read: r.shared_blks_read,
                    shared_blks_dirtied: r.shared_blks_dirtied,
                    shared_blks_written: r.shared_blks_written,
                    temp_blks: r.temp_blks,
                    blk_read_time_ms: r.blk_read_time,
                    blk_write_time_ms: r.blk_write_time,
                    wal_bytes: r.wal_bytes,
                    time_share: r.time_share,
                    query: show_query(texts, r.query.as_deref()),
                })
                .collect(),
        }))
    }

    /// One statement: its text and its figures per bucket over `from`..`to`.
    #[oai(path = "/servers/:name/statements/:queryid", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per request parameter, as poem-openapi reads them
    async fn statement(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
        queryid: Path<i64>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "315360000")))] step: Query<Option<i64>>,
    ) -> ApiResult<Json<StatementDetail>> {
        let w: Window = window(collect_interval(&state).await, from.0, to.0, step.0)?;
        let server = server_by_name(&state, &name).await?;
        let Some((query, first_seen, last_seen)) =
            statements::text(&state.pool, server.id, queryid.0).await?
        else {
            return Err(ApiError::not_found(format!(
                "statement {} not seen on server {}",
                queryid.0, server.name
            )));
        };
        // `query` is a plain string in this answer: no text is "".
        let query = show_query(super::activity::texts_for(&state, &auth), Some(&query)).unwrap_or_default();
        let rows = statements::series(&state.pool, server.id, queryid.0, w.first, w.end, w.step_secs).await?;
        let time = family_series::times(&w);
        let n = time.len();
        let (mut calls, mut exec, mut mean, mut rws, mut read) = (
            vec![None; n],
            vec![None; n],
            vec![None; n],
            vec![None; n],
            vec![None; n],
        );
        for (bucket, c, e, r, b, secs) in rows {
            let i = (bucket - w.first).num_seconds() / w.step_secs.max(1);
            let Some(i) = usize::try_from(i).ok().filter(|i| *i < n) else {
                continue;
            };
            if secs > 0.0 {
                calls[i] = Some(c as f64 / secs);
                exec[i] = Some(e / secs);
                rws[i] = Some(r as f64 / secs);
                read[i] = Some(b as f64 / secs);
            }
            mean[i] = (c > 0).then(|| e / c as f64);
        }
        Ok(Json(StatementDetail {
            server: server.name,
            queryid: queryid.0,
            query,
            first_seen,
            last_seen,
            from: w.first,
            to: w.end,
            step: w.step_secs,
            time,
            calls_per_sec: calls,
            exec_ms_per_sec: exec,
            mean_time_ms: mean,
            rows_per_sec: rws,
            shared_blks_read_per_sec: read,
        }))
    }
}
