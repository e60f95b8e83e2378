//! `replication_sample` and `slot_sample`: each standby's lag and each slot's retention, every
//! activity slot.

use super::super::Result;
use super::super::family_series::{Fold, Spec};
use super::insert_rows;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StandbyRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    /// `application_name`, else the client address, else the walsender's pid.
    pub standby: String,
    pub collected_at: DateTime<Utc>,
    pub client_addr: Option<String>,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sent_lag_bytes: Option<i64>,
    pub write_lag_bytes: Option<i64>,
    pub flush_lag_bytes: Option<i64>,
    pub replay_lag_bytes: Option<i64>,
    pub write_lag_secs: Option<f64>,
    pub flush_lag_secs: Option<f64>,
    pub replay_lag_secs: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlotRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub slot_name: String,
    pub collected_at: DateTime<Utc>,
    pub slot_type: Option<String>,
    pub active: Option<bool>,
    pub wal_status: Option<String>,
    pub retained_bytes: Option<i64>,
    pub safe_wal_size: Option<i64>,
    pub xmin_age: Option<i64>,
    pub catalog_xmin_age: Option<i64>,
}

pub async fn insert_standbys(conn: &mut PgConnection, rows: &[&StandbyRow]) -> Result<u64> {
    insert_rows(
        conn,
        "replication_sample (server_id, slot, standby, collected_at, client_addr, state, sync_state,
            sent_lag_bytes, write_lag_bytes, flush_lag_bytes, replay_lag_bytes, write_lag_secs,
            flush_lag_secs, replay_lag_secs)",
        "ON CONFLICT DO NOTHING",
        rows,
        |b, r| {
            b.push_bind(r.server_id)
                .push_bind(r.slot)
                .push_bind(&r.standby)
                .push_bind(r.collected_at)
                .push_bind(&r.client_addr)
                .push_bind(&r.state)
                .push_bind(&r.sync_state)
                .push_bind(r.sent_lag_bytes)
                .push_bind(r.write_lag_bytes)
                .push_bind(r.flush_lag_bytes)
                .push_bind(r.replay_lag_bytes)
                .push_bind(r.write_lag_secs)
                .push_bind(r.flush_lag_secs)
                .push_bind(r.replay_lag_secs);
        },
    )
    .await
}

pub async fn insert_slots(conn: &mut PgConnection, rows: &[&SlotRow]) -> Result<u64> {
    insert_rows(
        conn,
        "slot_sample (server_id, slot, slot_name, collected_at, slot_type, active, wal_status,
            retained_bytes, safe_wal_size, xmin_age, catalog_xmin_age)",
        "ON CONFLICT DO NOTHING",
        rows,
        |b, r| {
            b.push_bind(r.server_id)
                .push_bind(r.slot)
                .push_bind(&r.slot_name)
                .push_bind(r.collected_at)
                .push_bind(&r.slot_type)
                .push_bind(r.active)
                .push_bind(&r.wal_status)
                .push_bind(r.retained_bytes)
                .push_bind(r.safe_wal_size)
                .push_bind(r.xmin_age)
                .push_bind(r.catalog_xmin_age);
        },
    )
    .await
}

/// Per standby: the worst lag of each bucket.
pub const STANDBYS: Spec = Spec {
    table: "replication_sample",
    keys: &["standby"],
    resets: &[],
    counters: &[],
    gauges: &[
        ("sent_lag_bytes", "sent_lag_bytes", Fold::Max),
        ("write_lag_bytes", "write_lag_bytes", Fold::Max),
        ("flush_lag_bytes", "flush_lag_bytes", Fold::Max),
        ("replay_lag_bytes", "replay_lag_bytes", Fold::Max),
        ("write_lag_secs", "write_lag_secs", Fold::Max),
        ("flush_lag_secs", "flush_lag_secs", Fold::Max),
        ("replay_lag_secs", "replay_lag_secs", Fold::Max),
    ],
};

/// Per slot: the most WAL retained in each bucket, and its xmin ages.
pub const SLOTS: Spec = Spec {
    table: "slot_sample",
    keys: &["slot_name"],
    resets: &[],
    counters: &[],
    gauges: &[
        ("retained_bytes", "retained_bytes", Fold::Max),
        ("safe_wal_size", "safe_wal_size", Fold::Max),
        ("xmin_age", "xmin_age", Fold::Max),
        ("catalog_xmin_age", "catalog_xmin_age", Fold::Max),
        ("active::int", "active", Fold::Avg),
    ],
};
