//! `stat_wal`: the WAL position on every version, and `pg_stat_wal` from 14.

use super::super::Result;
use super::super::family_series::Spec;
use super::insert_rows;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WalRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub collected_at: DateTime<Utc>,
    pub postmaster_start: Option<DateTime<Utc>>,
    pub stats_reset: Option<DateTime<Utc>>,
    pub in_recovery: Option<bool>,
    /// Bytes since `0/0`: the insert position on a primary, the replayed one on a standby.
    pub wal_position: Option<i64>,
    pub wal_records: Option<i64>,
    pub wal_fpi: Option<i64>,
    pub wal_bytes: Option<i64>,
    pub wal_buffers_full: Option<i64>,
    pub wal_write: Option<i64>,
    pub wal_sync: Option<i64>,
    pub wal_write_time: Option<f64>,
    pub wal_sync_time: Option<f64>,
}

pub async fn insert(conn: &mut PgConnection, rows: &[&WalRow]) -> Result<u64> {
    insert_rows(
        conn,
        "stat_wal (server_id, slot, collected_at, postmaster_start, stats_reset, in_recovery, wal_position,
            wal_records, wal_fpi, wal_bytes, wal_buffers_full, wal_write, wal_sync, wal_write_time,
            wal_sync_time)",
        "ON CONFLICT DO NOTHING",
        rows,
        |b, r| {
            b.push_bind(r.server_id)
                .push_bind(r.slot)
                .push_bind(r.collected_at)
                .push_bind(r.postmaster_start)
                .push_bind(r.stats_reset)
                .push_bind(r.in_recovery)
                .push_bind(r.wal_position)
                .push_bind(r.wal_records)
                .push_bind(r.wal_fpi)
                .push_bind(r.wal_bytes)
                .push_bind(r.wal_buffers_full)
                .push_bind(r.wal_write)
                .push_bind(r.wal_sync)
                .push_bind(r.wal_write_time)
                .push_bind(r.wal_sync_time);
        },
    )
    .await
}

/// The position never resets except with the server, so `wal_generated_bytes_per_sec` exists on
/// every version; the rest needs `pg_stat_wal` (14+; write and sync moved to `pg_stat_io` in 18).
pub const SPEC: Spec = Spec {
    table: "stat_wal",
    keys: &[],
    resets: &["stats_reset"],
    counters: &[
        ("wal_position", "wal_generated_bytes_per_sec"),
        ("wal_records", "wal_records_per_sec"),
        ("wal_fpi", "wal_fpi_per_sec"),
        ("wal_bytes", "wal_bytes_per_sec"),
        ("wal_buffers_full", "wal_buffers_full_per_sec"),
        ("wal_write", "wal_write_per_sec"),
        ("wal_sync", "wal_sync_per_sec"),
        ("wal_write_time", "wal_write_ms_per_sec"),
        ("wal_sync_time", "wal_sync_ms_per_sec"),
    ],
    gauges: &[],
};
