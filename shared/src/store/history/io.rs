//! `stat_io`: `pg_stat_io` (16+) per backend type, object and context.

use super::super::Result;
use super::super::family_series::Spec;
use super::insert_rows;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IoRow {
    pub server_id: i64,
    pub slot: DateTime<Utc>,
    pub backend_type: String,
    pub object: String,
    pub context: String,
    pub collected_at: DateTime<Utc>,
    pub postmaster_start: Option<DateTime<Utc>>,
    pub stats_reset: Option<DateTime<Utc>>,
    pub reads: Option<i64>,
    pub read_bytes: Option<i64>,
    pub read_time: Option<f64>,
    pub writes: Option<i64>,
    pub write_bytes: Option<i64>,
    pub write_time: Option<f64>,
    pub writebacks: Option<i64>,
    pub extends: Option<i64>,
    pub extend_bytes: Option<i64>,
    pub hits: Option<i64>,
    pub evictions: Option<i64>,
    pub reuses: Option<i64>,
    pub fsyncs: Option<i64>,
    pub fsync_time: Option<f64>,
}

pub async fn insert(conn: &mut PgConnection, rows: &[&IoRow]) -> Result<u64> {
    insert_rows(
        conn,
        "stat_io (server_id, slot, backend_type, object, context, collected_at, postmaster_start,
            stats_reset, reads, read_bytes, read_time, writes, write_bytes, write_time, writebacks,
            extends, extend_bytes, hits, evictions, reuses, fsyncs, fsync_time)",
        "ON CONFLICT DO NOTHING",
        rows,
        |b, r| {
            b.push_bind(r.server_id)
                .push_bind(r.slot)
                .push_bind(&r.backend_type)
                .push_bind(&r.object)
                .push_bind(&r.context)
                .push_bind(r.collected_at)
                .push_bind(r.postmaster_start)
                .push_bind(r.stats_reset)
                .push_bind(r.reads)
                .push_bind(r.read_bytes)
                .push_bind(r.read_time)
                .push_bind(r.writes)
                .push_bind(r.write_bytes)
                .push_bind(r.write_time)
                .push_bind(r.writebacks)
                .push_bind(r.extends)
                .push_bind(r.extend_bytes)
                .push_bind(r.hits)
                .push_bind(r.evictions)
                .push_bind(r.reuses)
                .push_bind(r.fsyncs)
                .push_bind(r.fsync_time);
        },
    )
    .await
}

/// Totals over every backend type, object and context (per backend type with `by_key`).
pub const SPEC: Spec = Spec {
    table: "stat_io",
    keys: &["backend_type", "object", "context"],
    resets: &["stats_reset"],
    counters: &[
        ("reads", "reads_per_sec"),
        ("read_bytes", "read_bytes_per_sec"),
        ("read_time", "read_ms_per_sec"),
        ("writes", "writes_per_sec"),
        ("write_bytes", "write_bytes_per_sec"),
        ("write_time", "write_ms_per_sec"),
        ("writebacks", "writebacks_per_sec"),
        ("extends", "extends_per_sec"),
        ("extend_bytes", "extend_bytes_per_sec"),
        ("hits", "hits_per_sec"),
        ("evictions", "evictions_per_sec"),
        ("reuses", "reuses_per_sec"),
        ("fsyncs", "fsyncs_per_sec"),
        ("fsync_time", "fsync_ms_per_sec"),
    ],
    gauges: &[],
};
