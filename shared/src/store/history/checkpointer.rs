//! `stat_checkpointer`: the checkpointer and the background writer (`pg_stat_bgwriter` before 17;
//! `pg_stat_checkpointer` and `pg_stat_bgwriter` from 17, each with its own reset time).

use super::super::Result;
use super::super::family_series::Spec;
use super::insert_rows;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointerRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub collected_at: DateTime<Utc>,
    pub postmaster_start: Option<DateTime<Utc>>,
    pub checkpointer_reset: Option<DateTime<Utc>>,
    pub bgwriter_reset: Option<DateTime<Utc>>,
    pub checkpoints_timed: Option<i64>,
    pub checkpoints_req: Option<i64>,
    pub checkpoints_done: Option<i64>,
    pub restartpoints_timed: Option<i64>,
    pub restartpoints_req: Option<i64>,
    pub restartpoints_done: Option<i64>,
    /// Milliseconds.
    pub write_time: Option<f64>,
    pub sync_time: Option<f64>,
    pub buffers_written: Option<i64>,
    pub slru_written: Option<i64>,
    pub buffers_clean: Option<i64>,
    pub maxwritten_clean: Option<i64>,
    pub buffers_backend: Option<i64>,
    pub buffers_backend_fsync: Option<i64>,
    pub buffers_alloc: Option<i64>,
}

pub async fn insert(conn: &mut PgConnection, rows: &[&CheckpointerRow]) -> Result<u64> {
    insert_rows(
        conn,
        "stat_checkpointer (server_id, slot, collected_at, postmaster_start, checkpointer_reset,
            bgwriter_reset, checkpoints_timed, checkpoints_req, checkpoints_done, restartpoints_timed,
            restartpoints_req, restartpoints_done, write_time, sync_time, buffers_written, slru_written,
            buffers_clean, maxwritten_clean, buffers_backend, buffers_backend_fsync, buffers_alloc)",
        "ON CONFLICT DO NOTHING",
        rows,
        |b, r| {
            b.push_bind(r.server_id)
                .push_bind(r.slot)
                .push_bind(r.collected_at)
                .push_bind(r.postmaster_start)
                .push_bind(r.checkpointer_reset)
                .push_bind(r.bgwriter_reset)
                .push_bind(r.checkpoints_timed)
                .push_bind(r.checkpoints_req)
                .push_bind(r.checkpoints_done)
                .push_bind(r.restartpoints_timed)
                .push_bind(r.restartpoints_req)
                .push_bind(r.restartpoints_done)
                .push_bind(r.write_time)
                .push_bind(r.sync_time)
                .push_bind(r.buffers_written)
                .push_bind(r.slru_written)
                .push_bind(r.buffers_clean)
                .push_bind(r.maxwritten_clean)
                .push_bind(r.buffers_backend)
                .push_bind(r.buffers_backend_fsync)
                .push_bind(r.buffers_alloc);
        },
    )
    .await
}

/// Per-second rates; the write and sync times as milliseconds spent per second.
pub const SPEC: Spec = Spec {
    table: "stat_checkpointer",
    keys: &[],
    resets: &["checkpointer_reset", "bgwriter_reset"],
    counters: &[
        ("checkpoints_timed", "checkpoints_timed_per_sec"),
        ("checkpoints_req", "checkpoints_req_per_sec"),
        ("checkpoints_done", "checkpoints_done_per_sec"),
        ("restartpoints_done", "restartpoints_done_per_sec"),
        ("write_time", "checkpoint_write_ms_per_sec"),
        ("sync_time", "checkpoint_sync_ms_per_sec"),
        ("buffers_written", "buffers_checkpoint_per_sec"),
        ("buffers_clean", "buffers_clean_per_sec"),
        ("maxwritten_clean", "maxwritten_clean_per_sec"),
        ("buffers_backend", "buffers_backend_per_sec"),
        ("buffers_alloc", "buffers_alloc_per_sec"),
    ],
    gauges: &[],
};
