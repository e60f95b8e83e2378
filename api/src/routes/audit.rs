//! `/audit/sessions`: the session and admin-action audit (admin), in the original backend's shape.

use crate::auth::Auth;
use crate::error::ApiResult;
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
    pub timestamp: DateTime<Utc>,
    /// The original's names (`login_success`, `login_failed`, `refresh`, `logout`, `user_create`,
    /// `user_update`, `user_delete`, `server_create`, `server_update`, `server_delete`,
    /// `ssh_key_create`, `ssh_key_update`, `ssh_key_delete`, `settings_update`) and pgmon's own
    /// (`login_rate_limited`, `refresh_reuse`, `ssh_host_key_pinned`, `ssh_host_key_cleared`).
    pub event_type: String,
    /// The acting login; for a failed login, the login that was tried.
    pub username: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// The access token issued (login, refresh) or revoked (logout).
    pub jti: Option<String>,
    /// What happened, in words; never a secret.
    pub details: Option<String>,
}

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            timestamp: r.at,
            event_type: r.event,
            username: r.login,
            ip_address: r.client_ip,
            user_agent: r.user_agent,
            jti: r.jti,
            details: r.details,
        }
    }
}

#[derive(Debug, Object)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
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

/// The original's counters ("today" from 00:00 UTC, the week the last 7 days), then pgmon's
/// breakdown over `[from, to)`.
#[derive(Debug, Object)]
pub struct AuditStats {
    pub total_events: i64,
    pub logins_today: i64,
    pub unique_users_week: i64,
    pub failed_today: i64,
    pub failed_total: i64,
    /// Events today that are not logins, refreshes or logouts: administrative actions.
    pub actions_today: i64,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub by_event: Vec<Count>,
    pub by_login: Vec<Count>,
    pub by_day: Vec<DayCount>,
}

/// The start of `d` (UTC), or of the day after it.
fn day_start(d: NaiveDate, next: bool) -> DateTime<Utc> {
    let d = if next { d.succ_opt().unwrap_or(d) } else { d };
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

pub struct AuditApi;

#[OpenApi(tag = "Tag::Audit")]
impl AuditApi {
    /// Audit events, newest first (admin).
    #[oai(path = "/audit/sessions", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per request parameter, as poem-openapi reads them
    async fn sessions(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        /// Part of the login or of the client IP, case-insensitive.
        #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))]
        username: Query<Option<String>>,
        #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))] event_type: Query<Option<String>>,
        /// From that day's start, UTC.
        date_from: Query<Option<NaiveDate>>,
        /// Through that day's end, UTC.
        date_to: Query<Option<NaiveDate>>,
        /// 1..=500, default 50.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<i64>>,
        #[oai(validator(minimum(value = "0")))] offset: Query<Option<i64>>,
    ) -> ApiResult<Json<AuditPage>> {
        auth.admin()?;
        let from = date_from.0.map(|d| day_start(d, false));
        let to = date_to.0.map(|d| day_start(d, true));
        let limit = limit.0.unwrap_or(50);
        let offset = offset.0.unwrap_or(0);
        let filter = Filter {
            who: username.0.filter(|u| !u.is_empty()),
            event: event_type.0.filter(|e| !e.is_empty()),
            from,
            to,
            limit,
            offset,
        };
        let (rows, total) = audit::list(&state.pool, &filter).await?;
        Ok(Json(AuditPage {
            items: rows.into_iter().map(AuditEvent::from).collect(),
            total,
            limit,
            offset,
        }))
    }

    /// The original's counters, and counts per event, per login and per day over `from`..`to`
    /// (RFC 3339; default the last 30 days; an empty window counts nothing) (admin).
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
        let (s, c) = futures::try_join!(audit::summary(&state.pool), audit::counts(&state.pool, from, to))?;
        let counts = |v: Vec<(String, i64)>| v.into_iter().map(|(key, count)| Count { key, count }).collect();
        Ok(Json(AuditStats {
            total_events: s.total_events,
            logins_today: s.logins_today,
            unique_users_week: s.unique_users_week,
            failed_today: s.failed_today,
            failed_total: s.failed_total,
            actions_today: s.actions_today,
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
