//! WAL archiving (`pg_stat_archiver`, the same on every version), every stats slot.

use super::{Collected, Cx, Family, col};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::store::history::archiver::ArchiverRow;

pub struct Archiver;

impl Family for Archiver {
    fn name(&self) -> &'static str {
        "archiver"
    }

    fn task(&self) -> Task {
        Task::Stats
    }

    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let (_, info) = cx.pg()?;
            let rows = cx
                .query(
                    "SELECT stats_reset, archived_count, failed_count, last_archived_wal, last_archived_time,
                            last_failed_wal, last_failed_time
                     FROM pg_stat_archiver",
                    &[],
                )
                .await?;
            let Some(r) = rows.first() else {
                return Ok(Vec::new());
            };
            Ok(vec![Rows::Archiver(ArchiverRow {
                server_id: cx.server.id(),
                slot: cx.slot,
                collected_at: Utc::now(),
                postmaster_start: info.postmaster_start,
                stats_reset: col(r, 0)?,
                archived_count: col(r, 1)?,
                failed_count: col(r, 2)?,
                last_archived_wal: col(r, 3)?,
                last_archived_time: col(r, 4)?,
                last_failed_wal: col(r, 5)?,
                last_failed_time: col(r, 6)?,
            })])
        })
    }
}
