//! `pg_stat_database`: every database's counters, every stats slot.

use super::{Collected, Cx, Family, col};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::store::stats::StatDatabaseRow;
use pgmon_shared::version::Version;

pub struct StatDatabase;

/// The query for a server version: columns the version lacks read as NULL, so every version gives
/// the same row shape.
pub fn sql(v: Version) -> String {
    let sessions = if v.has(14) {
        "session_time, active_time, idle_in_transaction_time, sessions, sessions_abandoned, \
         sessions_fatal, sessions_killed"
    } else {
        "NULL::float8, NULL::float8, NULL::float8, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint"
    };
    // The row of shared objects (datid 0, no name) is left out: it is no database.
    format!(
        "SELECT datid::bigint, datname::text, stats_reset, numbackends, xact_commit, xact_rollback,
                blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted,
                conflicts, temp_files, temp_bytes, deadlocks, checksum_failures, blk_read_time,
                blk_write_time, {sessions}
         FROM pg_stat_database WHERE datname IS NOT NULL"
    )
}

impl Family for StatDatabase {
    fn name(&self) -> &'static str {
        "stat_database"
    }

    fn task(&self) -> Task {
        Task::Stats
    }

    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let (_, info) = cx.pg()?;
            let rows = cx.query(&sql(info.version), &[]).await?;
            let collected_at = Utc::now();
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(StatDatabaseRow {
                    server_id: cx.server.id(),
                    slot: cx.slot,
                    datid: col(r, 0)?,
                    datname: col(r, 1)?,
                    collected_at,
                    postmaster_start: info.postmaster_start,
                    stats_reset: col(r, 2)?,
                    numbackends: col(r, 3)?,
                    xact_commit: col(r, 4)?,
                    xact_rollback: col(r, 5)?,
                    blks_read: col(r, 6)?,
                    blks_hit: col(r, 7)?,
                    tup_returned: col(r, 8)?,
                    tup_fetched: col(r, 9)?,
                    tup_inserted: col(r, 10)?,
                    tup_updated: col(r, 11)?,
                    tup_deleted: col(r, 12)?,
                    conflicts: col(r, 13)?,
                    temp_files: col(r, 14)?,
                    temp_bytes: col(r, 15)?,
                    deadlocks: col(r, 16)?,
                    checksum_failures: col(r, 17)?,
                    blk_read_time: col(r, 18)?,
                    blk_write_time: col(r, 19)?,
                    session_time: col(r, 20)?,
                    active_time: col(r, 21)?,
                    idle_in_transaction_time: col(r, 22)?,
                    sessions: col(r, 23)?,
                    sessions_abandoned: col(r, 24)?,
                    sessions_fatal: col(r, 25)?,
                    sessions_killed: col(r, 26)?,
                });
            }
            Ok(vec![Rows::StatDatabase(out)])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_follow_the_server_version() {
        assert!(!sql(Version(120000)).contains("session_time"));
        for v in [140000, 150004, 180002] {
            assert!(sql(Version(v)).contains("sessions_killed"), "{v}");
        }
        // Same shape whatever the version: 27 columns.
        for v in [120000, 170000, 190000] {
            let select = sql(Version(v));
            let cols = select
                .split("FROM")
                .next()
                .unwrap_or_default()
                .matches(',')
                .count()
                + 1;
            assert_eq!(cols, 27, "{v}");
        }
    }
}
