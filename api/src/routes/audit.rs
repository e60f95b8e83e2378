//! `/audit/sessions`: the session audit (admin).

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use pgmon_shared::store::audit::{self, AuditRow, Filter};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};

#[derive(Tags)]
enum Tag {
    /// Who logged in, from where, and what they changed.
    Audit,
}

#[derive(Debug, Object)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// login_success, login_failure, login_rate_limited, refresh, refresh_reuse, logout,
    /// user_created, user_updated, user_deleted
    pub event: String,
    /// The acting login; for login failures, the login that was tried.
    pub login: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
}

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            at: r.at,
            event: r.event,
            login: r.login,
            client_ip: r.client_ip,
            user_agent: r.user_agent,
            details: r.details,
        }
    }
}

#[derive(Debug, Object)]
pub struct AuditPage {
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub events: Vec<AuditEvent>,
}

#[derive(Debug, Object)]
pub struct Count {
    pub key: String,
    pub count: i64,
}

#[derive(Debug, Object)]
pub struct DayCount {
    pub day: NaiveDate,
    pub count: i64,
}

#[derive(Debug, Object)]
pub struct AuditStats {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub by_event: Vec<Count>,
    pub by_login: Vec<Count>,
    pub by_day: Vec<DayCount>,
}

fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> ApiResult<()> {
    match (from, to) {
        (Some(f), Some(t)) if f >= t => Err(ApiError::bad_request("`from` must be before `to`")),
        _ => Ok(()),
    }
}

pub struct AuditApi;

#[OpenApi(tag = "Tag::Audit")]
impl AuditApi {
    /// Session audit events, newest first (admin).
    #[oai(path = "/audit/sessions", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn sessions(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        login: Query<Option<String>>,
        event: Query<Option<String>>,
        /// RFC 3339, inclusive.
        from: Query<Option<DateTime<Utc>>>,
        /// RFC 3339, exclusive.
        to: Query<Option<DateTime<Utc>>>,
        /// 1..=500, default 100.
        limit: Query<Option<i64>>,
        offset: Query<Option<i64>>,
    ) -> ApiResult<Json<AuditPage>> {
        auth.admin()?;
        check_range(from.0, to.0)?;
        let limit = limit.0.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::bad_request("limit must be between 1 and 500"));
        }
        let offset = offset.0.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::bad_request("offset must not be negative"));
        }
        let filter = Filter {
            login: login.0,
            event: event.0,
            from: from.0,
            to: to.0,
            limit,
            offset,
        };
        let (rows, total) = audit::list(&state.pool, &filter).await?;
        Ok(Json(AuditPage {
            total,
            limit,
            offset,
            events: rows.into_iter().map(AuditEvent::from).collect(),
        }))
    }

    /// Counts per event, per login and per day (admin). Default window: the last 30 days.
    #[oai(path = "/audit/sessions/stats", method = "get")]
    async fn stats(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
    ) -> ApiResult<Json<AuditStats>> {
        auth.admin()?;
        let to = to.0.unwrap_or_else(Utc::now);
        let from = from.0.unwrap_or(to - Duration::days(30));
        check_range(Some(from), Some(to))?;
        let c = audit::stats(&state.pool, from, to).await?;
        let counts = |v: Vec<(String, i64)>| v.into_iter().map(|(key, count)| Count { key, count }).collect();
        Ok(Json(AuditStats {
            from,
            to,
            by_event: counts(c.by_event),
            by_login: counts(c.by_login),
            by_day: c
                .by_day
                .into_iter()
                .map(|(day, count)| DayCount { day, count })
                .collect(),
        }))
    }
}
