//! The checkpointer and background writer: `pg_stat_bgwriter` before 17, `pg_stat_checkpointer`
//! and `pg_stat_bgwriter` from 17 (the split), every stats slot.

use super::{Collected, Cx, Family, col};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::store::history::checkpointer::CheckpointerRow;
use pgmon_shared::version::Version;

pub struct Checkpointer;

/// The same columns whatever the version: what a version lacks reads as NULL.
pub fn sql(v: Version) -> String {
    if v.since(17) {
        let v18 = if v.has(18) {
            "c.num_done, c.slru_written"
        } else {
            "NULL::int8, NULL::int8"
        };
        format!(
            "SELECT c.stats_reset, b.stats_reset, c.num_timed, c.num_requested, {v18},
                    c.restartpoints_timed, c.restartpoints_req, c.restartpoints_done,
                    c.write_time, c.sync_time, c.buffers_written,
                    b.buffers_clean, b.maxwritten_clean, NULL::int8, NULL::int8, b.buffers_alloc
             FROM pg_stat_checkpointer c, pg_stat_bgwriter b"
        )
    } else {
        "SELECT stats_reset, stats_reset, checkpoints_timed, checkpoints_req, NULL::int8, NULL::int8,
                NULL::int8, NULL::int8, NULL::int8, checkpoint_write_time, checkpoint_sync_time,
                buffers_checkpoint, buffers_clean, maxwritten_clean, buffers_backend,
                buffers_backend_fsync, buffers_alloc
         FROM pg_stat_bgwriter"
            .to_string()
    }
}

impl Family for Checkpointer {
    fn name(&self) -> &'static str {
        "checkpointer"
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
            Ok(vec![Rows::Checkpointer(CheckpointerRow {
                server_id: cx.server.id(),
                slot: cx.slot,
                collected_at: Utc::now(),
                postmaster_start: info.postmaster_start,
                checkpointer_reset: col(r, 0)?,
                bgwriter_reset: col(r, 1)?,
                checkpoints_timed: col(r, 2)?,
                checkpoints_req: col(r, 3)?,
                checkpoints_done: col(r, 4)?,
                slru_written: col(r, 5)?,
                restartpoints_timed: col(r, 6)?,
                restartpoints_req: col(r, 7)?,
                restartpoints_done: col(r, 8)?,
                write_time: col(r, 9)?,
                sync_time: col(r, 10)?,
                buffers_written: col(r, 11)?,
                buffers_clean: col(r, 12)?,
                maxwritten_clean: col(r, 13)?,
                buffers_backend: col(r, 14)?,
                buffers_backend_fsync: col(r, 15)?,
                buffers_alloc: col(r, 16)?,
            })])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_17_split_is_followed_and_newer_majors_keep_it() {
        assert!(sql(Version(160000)).contains("FROM pg_stat_bgwriter"));
        assert!(sql(Version(170000)).contains("pg_stat_checkpointer"));
        assert!(sql(Version(180000)).contains("c.num_done"));
        let v19 = sql(Version(190000));
        assert!(v19.contains("pg_stat_checkpointer") && !v19.contains("num_done"));
    }
}
