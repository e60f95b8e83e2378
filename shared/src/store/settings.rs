//! The runtime settings in the store: only what an admin set; the config file fills in the rest
//! (see [`crate::settings`]).

use super::Result;
use super::audit::{self, Actor};
use super::system_log::{self, Level, NewEntry};
use crate::settings::{Key, Settings};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Sent, with the changed keys as payload, by the transaction that changes a setting.
pub const SETTINGS_CHANNEL: &str = "pgmon_settings";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SettingRow {
    pub key: String,
    /// `None`: the config file's value applies.
    pub value: Option<i64>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

async fn rows(db: impl sqlx::PgExecutor<'_>, for_update: bool) -> Result<Vec<SettingRow>> {
    let sql = if for_update {
        "SELECT key, value, updated_at, updated_by FROM settings ORDER BY key FOR UPDATE"
    } else {
        "SELECT key, value, updated_at, updated_by FROM settings ORDER BY key"
    };
    Ok(sqlx::query_as(sql).fetch_all(db).await?)
}

fn effective(defaults: Settings, rows: &[SettingRow]) -> Settings {
    let mut s = defaults;
    for r in rows {
        if let (Some(k), Some(v)) = (Key::from_name(&r.key), r.value) {
            s.set(k, v);
        }
    }
    s
}

/// The effective settings (`defaults` overridden by the store) and the stored rows.
pub async fn load(pool: &PgPool, defaults: Settings) -> Result<(Settings, Vec<SettingRow>)> {
    let rows = rows(pool, false).await?;
    Ok((effective(defaults, &rows), rows))
}

/// What an update did.
#[derive(Debug, Clone)]
pub struct Updated {
    pub before: Settings,
    pub after: Settings,
    pub rows: Vec<SettingRow>,
    /// `label: old → new; …`, empty when nothing changed.
    pub changes: String,
}

/// Sets `changes` (already validated) in one transaction with the audit event, the system-log entry
/// and the notification, so that nobody sees one without the others.
pub async fn update(
    pool: &PgPool,
    defaults: Settings,
    changes: &[(Key, i64)],
    actor: &Actor,
    process: &str,
    instance: Option<uuid::Uuid>,
) -> Result<Updated> {
    let mut tx = pool.begin().await?;
    let before = effective(defaults, &rows(&mut *tx, true).await?);
    let keys: Vec<&str> = changes.iter().map(|(k, _)| k.name()).collect();
    let values: Vec<i64> = changes.iter().map(|(_, v)| *v).collect();
    sqlx::query(
        "UPDATE settings s SET value = c.value, updated_at = now(), updated_by = $3
         FROM unnest($1::text[], $2::bigint[]) AS c(key, value)
         WHERE s.key = c.key AND s.value IS DISTINCT FROM c.value",
    )
    .bind(&keys)
    .bind(&values)
    .bind(&actor.login)
    .execute(&mut *tx)
    .await?;
    let rows = rows(&mut *tx, false).await?;
    let after = effective(defaults, &rows);
    let text = after.changes_from(&before);
    if !text.is_empty() {
        audit::record(&mut *tx, audit::event::SETTINGS_UPDATE, actor, Some(&text), None).await?;
        let who = actor.login.as_deref().unwrap_or("?");
        let entry = NewEntry::new(
            Level::Info,
            system_log::source::SYSTEM,
            format!("settings changed by {who}"),
        )
        .details(text.clone());
        system_log::insert(&mut *tx, process, instance, &[entry]).await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(SETTINGS_CHANNEL)
            .bind(keys.join(","))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Updated {
        before,
        after,
        rows,
        changes: text,
    })
}
