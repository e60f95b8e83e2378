//! WAL: the position on every version (a byte counter that only a restart resets), and
//! `pg_stat_wal` from 14 (18 moved its write and sync figures to `pg_stat_io`), every stats slot.

use super::{Collected, Cx, Family, col};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::remote_sql::CURRENT_LSN;
use pgmon_shared::store::history::wal::WalRow;
use pgmon_shared::version::Version;

pub struct Wal;

pub fn sql(v: Version) -> String {
    let (stats, from) = if v.has(14) {
        let io = if v.has(18) {
            "NULL::int8, NULL::int8, NULL::float8, NULL::float8"
        } else {
            "w.wal_write, w.wal_sync, w.wal_write_time, w.wal_sync_time"
        };
        (
            format!("w.stats_reset, w.wal_records, w.wal_fpi, w.wal_bytes::int8, w.wal_buffers_full, {io}"),
            ", pg_stat_wal w",
        )
    } else {
        (
            "NULL::timestamptz, NULL::int8, NULL::int8, NULL::int8, NULL::int8, NULL::int8, NULL::int8, \
             NULL::float8, NULL::float8"
                .to_string(),
            "",
        )
    };
    format!(
        "SELECT pg_is_in_recovery(), pg_wal_lsn_diff({CURRENT_LSN}, '0/0')::int8, {stats}
         FROM (SELECT 1) x{from}"
    )
}

impl Family for Wal {
    fn name(&self) -> &'static str {
        "wal"
    }

    fn task(&self) -> Task {
        Task::Stats
    }

    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let (_, info) = cx.pg()?;
            let rows = cx.query(&sql(info.version), &[]).await?;
            let Some(r) = rows.first() else {
                return Ok(Vec::new());
            };
            Ok(vec![Rows::Wal(WalRow {
                server_id: cx.server.id(),
                slot: cx.slot,
                collected_at: Utc::now(),
                postmaster_start: info.postmaster_start,
                in_recovery: col(r, 0)?,
                wal_position: col(r, 1)?,
                stats_reset: col(r, 2)?,
                wal_records: col(r, 3)?,
                wal_fpi: col(r, 4)?,
                wal_bytes: col(r, 5)?,
                wal_buffers_full: col(r, 6)?,
                wal_write: col(r, 7)?,
                wal_sync: col(r, 8)?,
                wal_write_time: col(r, 9)?,
                wal_sync_time: col(r, 10)?,
            })])
        })
    }
}
