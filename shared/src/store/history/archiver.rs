//! `stat_archiver`: WAL archiving (`pg_stat_archiver`).

use super::super::Result;
use super::super::family_series::Spec;
use super::insert_rows;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArchiverRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub collected_at: DateTime<Utc>,
    pub postmaster_start: Option<DateTime<Utc>>,
    pub stats_reset: Option<DateTime<Utc>>,
    pub archived_count: Option<i64>,
    pub failed_count: Option<i64>,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<DateTime<Utc>>,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<DateTime<Utc>>,
}

pub async fn insert(conn: &mut PgConnection, rows: &[&ArchiverRow]) -> Result<u64> {
    insert_rows(
        conn,
        "stat_archiver (server_id, slot, collected_at, postmaster_start, stats_reset, archived_count,
            failed_count, last_archived_wal, last_archived_time, last_failed_wal, last_failed_time)",
        "ON CONFLICT DO NOTHING",
        rows,
        |b, r| {
            b.push_bind(r.server_id)
                .push_bind(r.slot)
                .push_bind(r.collected_at)
                .push_bind(r.postmaster_start)
                .push_bind(r.stats_reset)
                .push_bind(r.archived_count)
                .push_bind(r.failed_count)
                .push_bind(&r.last_archived_wal)
                .push_bind(r.last_archived_time)
                .push_bind(&r.last_failed_wal)
                .push_bind(r.last_failed_time);
        },
    )
    .await
}

pub const SPEC: Spec = Spec {
    table: "stat_archiver",
    keys: &[],
    resets: &["stats_reset"],
    counters: &[
        ("archived_count", "archived_per_sec"),
        ("failed_count", "failed_per_sec"),
    ],
    gauges: &[],
};
