//! `/logs`: the system log (admin), in the original's shape, with its filters and paging.

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::state::AppState;
use chrono::{DateTime, NaiveDate, Utc};
use pgmon_shared::store::system_log::{self, Filter, LogRow};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi, Tags};

#[derive(Tags)]
enum Tag {
    /// What the collectors and the API did: task runs, servers down and up, SSH failures, store
    /// outages, settings changes, maintenance, starts and stops.
    Logs,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum LevelIn {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum SourceIn {
    CollectorStats,
    CollectorSizes,
    CollectorDbInfo,
    Maintenance,
    System,
}

impl LevelIn {
    fn as_str(self) -> &'static str {
        match self {
            LevelIn::Info => "info",
            LevelIn::Warning => "warning",
            LevelIn::Error => "error",
        }
    }
}

impl SourceIn {
    fn as_str(self) -> &'static str {
        use system_log::source;
        match self {
            SourceIn::CollectorStats => source::COLLECTOR_STATS,
            SourceIn::CollectorSizes => source::COLLECTOR_SIZES,
            SourceIn::CollectorDbInfo => source::COLLECTOR_DB_INFO,
            SourceIn::Maintenance => source::MAINTENANCE,
            SourceIn::System => source::SYSTEM,
        }
    }
}

/// One entry: `timestamp`, `level`, `source`, `message` and `details` are the original's.
#[derive(Debug, Object)]
pub struct LogEntry {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    /// `info`, `warning` or `error`.
    pub level: String,
    /// `collector_stats`, `collector_sizes`, `collector_db_info`, `maintenance` or `system`.
    pub source: String,
    pub message: String,
    pub details: Option<String>,
    /// `collector` or `api`.
    pub process: String,
    /// The server concerned, if any (its id: the entry outlives a deleted server).
    pub server_id: Option<i64>,
    /// `server_down` or `server_up` for availability transitions.
    pub event: Option<String>,
}

impl From<LogRow> for LogEntry {
    fn from(r: LogRow) -> Self {
        Self {
            id: r.id,
            timestamp: r.at,
            level: r.level,
            source: r.source,
            message: r.message,
            details: r.details,
            process: r.process,
            server_id: r.server_id,
            event: r.event,
        }
    }
}

#[derive(Debug, Object)]
pub struct LogPage {
    pub items: Vec<LogEntry>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// "Today" starts at 00:00 UTC.
#[derive(Debug, Object)]
pub struct LogStats {
    pub total: i64,
    pub errors_today: i64,
    pub warnings_today: i64,
}

/// The start of `d` (UTC), or of the day after it.
fn day_start(d: NaiveDate, next: bool) -> DateTime<Utc> {
    let d = if next { d.succ_opt().unwrap_or(d) } else { d };
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

pub struct LogsApi;

#[OpenApi(tag = "Tag::Logs")]
impl LogsApi {
    /// System log entries, newest first (admin).
    #[oai(path = "/logs", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per request parameter, as poem-openapi reads them
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// 1..=500, default 50.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<i64>>,
        #[oai(validator(minimum(value = "0")))] offset: Query<Option<i64>>,
        level: Query<Option<LevelIn>>,
        source: Query<Option<SourceIn>>,
        /// Part of the message or of the details, case-insensitive.
        #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))]
        search: Query<Option<String>>,
        /// From that day's start, UTC.
        date_from: Query<Option<NaiveDate>>,
        /// Through that day's end, UTC.
        date_to: Query<Option<NaiveDate>>,
    ) -> ApiResult<Json<LogPage>> {
        auth.admin()?;
        let limit = limit.0.unwrap_or(50);
        let offset = offset.0.unwrap_or(0);
        let filter = Filter {
            level: level.0.map(|l| l.as_str().to_string()),
            source: source.0.map(|s| s.as_str().to_string()),
            search: search.0.filter(|s| !s.is_empty()),
            from: date_from.0.map(|d| day_start(d, false)),
            to: date_to.0.map(|d| day_start(d, true)),
            limit,
            offset,
        };
        let (rows, total) = system_log::list(&state.pool, &filter).await?;
        Ok(Json(LogPage {
            items: rows.into_iter().map(LogEntry::from).collect(),
            total,
            limit,
            offset,
        }))
    }

    /// Entries in all, and errors and warnings since 00:00 UTC (admin).
    #[oai(path = "/logs/stats", method = "get")]
    async fn stats(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<LogStats>> {
        auth.admin()?;
        let s = system_log::stats(&state.pool).await?;
        Ok(Json(LogStats {
            total: s.total,
            errors_today: s.errors_today,
            warnings_today: s.warnings_today,
        }))
    }
}
