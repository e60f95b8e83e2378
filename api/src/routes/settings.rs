//! `/settings`: the runtime settings (admin), in the original's shape: an object keyed by setting,
//! each value a string. Stored in the store; the config file's values are the defaults. A change
//! reaches running collectors through `NOTIFY pgmon_settings` within seconds.

use super::auth::actor as request_actor;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::payload::JsonBody;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::settings::{Key, Settings};
use pgmon_shared::store::settings::{self, SettingRow};
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};

#[derive(Tags)]
enum Tag {
    /// Collector intervals and retention, changed at runtime.
    Settings,
}

/// One setting. `key`, `value` (a string, as the original stored it), `value_type`, `description`
/// and `updated_at` are the original's; the rest is pgmon's.
#[derive(Debug, Object)]
pub struct SettingOut {
    pub key: String,
    /// The effective value.
    pub value: String,
    /// Always `int`.
    pub value_type: String,
    pub description: String,
    /// When the stored row last changed (its creation for a setting never changed).
    pub updated_at: DateTime<Utc>,
    /// Who changed it last; `null` for a setting never changed.
    pub updated_by: Option<String>,
    /// `admin` when an admin set the value, `config` when the config file's value applies.
    pub source: String,
    /// The config file's value.
    pub default: i64,
    pub min: i64,
    pub max: i64,
    /// `s`, `months` or `days`.
    pub unit: String,
    /// The label the error texts use.
    pub label: String,
}

/// Every setting, keyed by name.
#[derive(Debug, Object)]
pub struct SettingsOut {
    pub collect_interval: SettingOut,
    pub size_update_interval: SettingOut,
    pub db_check_interval: SettingOut,
    pub retention_months: SettingOut,
    pub audit_retention_days: SettingOut,
    pub logs_retention_days: SettingOut,
}

/// Any subset of the settings; `null` or a missing key keeps the value. Out of range: 400 with
/// the original's text, `<label>: допустимо от MIN до MAX`.
#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    /// Seconds between statistics snapshots.
    #[oai(validator(minimum(value = "60"), maximum(value = "86400")))]
    pub collect_interval: Option<i64>,
    /// Seconds between database size and disk usage snapshots.
    #[oai(validator(minimum(value = "300"), maximum(value = "86400")))]
    pub size_update_interval: Option<i64>,
    /// Seconds between database inventory checks.
    #[oai(validator(minimum(value = "300"), maximum(value = "86400")))]
    pub db_check_interval: Option<i64>,
    /// Months of snapshots kept.
    #[oai(validator(minimum(value = "1"), maximum(value = "120")))]
    pub retention_months: Option<i64>,
    /// Days of audit events kept.
    #[oai(validator(minimum(value = "7"), maximum(value = "3650")))]
    pub audit_retention_days: Option<i64>,
    /// Days of system log entries kept.
    #[oai(validator(minimum(value = "7"), maximum(value = "3650")))]
    pub logs_retention_days: Option<i64>,
}

impl SettingsUpdate {
    fn changes(&self) -> Vec<(Key, i64)> {
        [
            (Key::CollectInterval, self.collect_interval),
            (Key::SizeUpdateInterval, self.size_update_interval),
            (Key::DbCheckInterval, self.db_check_interval),
            (Key::RetentionMonths, self.retention_months),
            (Key::AuditRetentionDays, self.audit_retention_days),
            (Key::LogsRetentionDays, self.logs_retention_days),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

fn wire(effective: Settings, defaults: Settings, rows: &[SettingRow]) -> SettingsOut {
    let one = |k: Key| {
        let row = rows.iter().find(|r| r.key == k.name());
        let (min, max) = k.range();
        SettingOut {
            key: k.name().into(),
            value: effective.get(k).to_string(),
            value_type: "int".into(),
            description: k.description().into(),
            updated_at: row.map(|r| r.updated_at).unwrap_or_else(Utc::now),
            updated_by: row.and_then(|r| r.updated_by.clone()),
            source: if row.is_some_and(|r| r.value.is_some()) {
                "admin"
            } else {
                "config"
            }
            .into(),
            default: defaults.get(k),
            min,
            max,
            unit: k.unit().into(),
            label: k.label().into(),
        }
    };
    SettingsOut {
        collect_interval: one(Key::CollectInterval),
        size_update_interval: one(Key::SizeUpdateInterval),
        db_check_interval: one(Key::DbCheckInterval),
        retention_months: one(Key::RetentionMonths),
        audit_retention_days: one(Key::AuditRetentionDays),
        logs_retention_days: one(Key::LogsRetentionDays),
    }
}

pub struct SettingsApi;

#[OpenApi(tag = "Tag::Settings")]
impl SettingsApi {
    /// Every runtime setting with its effective value (admin).
    #[oai(path = "/settings", method = "get")]
    async fn get(&self, state: Data<&AppState>, auth: Auth) -> ApiResult<Json<SettingsOut>> {
        auth.admin()?;
        let defaults = Settings::defaults(&state.cfg);
        let (effective, rows) = settings::load(&state.pool, defaults).await?;
        Ok(Json(wire(effective, defaults, &rows)))
    }

    /// Change settings (admin). Running collectors apply a new interval within seconds (their next
    /// run moves to the new interval's next boundary); retention applies at the next maintenance
    /// run. Audited as `settings_update` with `label: old → new` for each change.
    #[oai(path = "/settings", method = "put")]
    async fn put(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: JsonBody<SettingsUpdate>,
    ) -> ApiResult<Json<SettingsOut>> {
        let me = auth.admin()?;
        let JsonBody(body) = body;
        let changes = body.changes();
        if changes.is_empty() {
            return Err(ApiError::bad_request("Нет данных для обновления"));
        }
        for (k, v) in &changes {
            k.check(*v).map_err(ApiError::bad_request)?;
        }
        let defaults = Settings::defaults(&state.cfg);
        let done = settings::update(
            &state.pool,
            defaults,
            &changes,
            &request_actor(req, Some(&me.login)),
            crate::PROCESS,
            None,
        )
        .await?;
        if !done.changes.is_empty() {
            tracing::info!(by = %me.login, changes = %done.changes, "runtime settings changed");
            state.cache.invalidate();
        }
        Ok(Json(wire(done.after, defaults, &done.rows)))
    }
}
