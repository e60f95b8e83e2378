//! `activity_sample`: sessions by state, waits, the longest query and transaction, the oldest xmin,
//! the worst replication lag, slot retention and wraparound age, every activity slot.

use super::super::Result;
use super::super::family_series::{Fold, Spec};
use super::insert_rows;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActivityRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub collected_at: DateTime<Utc>,
    pub in_recovery: Option<bool>,
    pub sessions: Option<i32>,
    pub active: Option<i32>,
    pub idle: Option<i32>,
    pub idle_in_xact: Option<i32>,
    pub idle_in_xact_aborted: Option<i32>,
    pub waiting_lock: Option<i32>,
    pub waiting_other: Option<i32>,
    pub longest_query_secs: Option<f64>,
    pub longest_xact_secs: Option<f64>,
    pub longest_idle_xact_secs: Option<f64>,
    pub oldest_xmin_age: Option<i64>,
    pub max_xid_age: Option<i64>,
    pub max_mxid_age: Option<i64>,
    pub max_replication_lag_secs: Option<f64>,
    pub max_replication_lag_bytes: Option<i64>,
    pub max_slot_retained_bytes: Option<i64>,
    pub replay_delay_secs: Option<f64>,
}

pub async fn insert(conn: &mut PgConnection, rows: &[&ActivityRow]) -> Result<u64> {
    insert_rows(
        conn,
        "activity_sample (server_id, slot, collected_at, in_recovery, sessions, active, idle, idle_in_xact,
            idle_in_xact_aborted, waiting_lock, waiting_other, longest_query_secs, longest_xact_secs,
            longest_idle_xact_secs, oldest_xmin_age, max_xid_age, max_mxid_age, max_replication_lag_secs,
            max_replication_lag_bytes, max_slot_retained_bytes, replay_delay_secs)",
        "ON CONFLICT DO NOTHING",
        rows,
        |b, r| {
            b.push_bind(r.server_id)
                .push_bind(r.slot)
                .push_bind(r.collected_at)
                .push_bind(r.in_recovery)
                .push_bind(r.sessions)
                .push_bind(r.active)
                .push_bind(r.idle)
                .push_bind(r.idle_in_xact)
                .push_bind(r.idle_in_xact_aborted)
                .push_bind(r.waiting_lock)
                .push_bind(r.waiting_other)
                .push_bind(r.longest_query_secs)
                .push_bind(r.longest_xact_secs)
                .push_bind(r.longest_idle_xact_secs)
                .push_bind(r.oldest_xmin_age)
                .push_bind(r.max_xid_age)
                .push_bind(r.max_mxid_age)
                .push_bind(r.max_replication_lag_secs)
                .push_bind(r.max_replication_lag_bytes)
                .push_bind(r.max_slot_retained_bytes)
                .push_bind(r.replay_delay_secs);
        },
    )
    .await
}

/// Averages per bucket, except the longest and oldest figures, whose maximum is shown.
pub const SPEC: Spec = Spec {
    table: "activity_sample",
    keys: &[],
    resets: &[],
    counters: &[],
    gauges: &[
        ("sessions", "sessions", Fold::Avg),
        ("active", "active", Fold::Avg),
        ("idle", "idle", Fold::Avg),
        ("idle_in_xact", "idle_in_transaction", Fold::Avg),
        ("idle_in_xact_aborted", "idle_in_transaction_aborted", Fold::Avg),
        ("waiting_lock", "waiting_on_locks", Fold::Avg),
        ("waiting_other", "waiting_other", Fold::Avg),
        ("longest_query_secs", "longest_query_secs", Fold::Max),
        ("longest_xact_secs", "longest_transaction_secs", Fold::Max),
        (
            "longest_idle_xact_secs",
            "longest_idle_in_transaction_secs",
            Fold::Max,
        ),
        ("oldest_xmin_age", "oldest_xmin_age", Fold::Max),
        ("max_xid_age", "max_xid_age", Fold::Max),
        ("max_mxid_age", "max_mxid_age", Fold::Max),
        ("max_replication_lag_secs", "max_replication_lag_secs", Fold::Max),
        (
            "max_replication_lag_bytes",
            "max_replication_lag_bytes",
            Fold::Max,
        ),
        ("max_slot_retained_bytes", "max_slot_retained_bytes", Fold::Max),
        ("replay_delay_secs", "replay_delay_secs", Fold::Max),
    ],
};
