//! Activity samples: sessions by state, lock and other waits, the longest query and transaction,
//! the oldest xmin (sessions, prepared transactions, slots, standbys), wraparound ages, the worst
//! replication lag and slot retention, a standby's replay delay; every activity slot.

use super::{Collected, Cx, Family, col};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::remote_sql::CURRENT_LSN;
use pgmon_shared::store::history::activity::ActivityRow;

pub struct Activity;

/// One row; pgmon's own sessions are left out of the counts and ages.
fn sql() -> String {
    format!(
        "WITH a AS (
            SELECT * FROM pg_stat_activity
            WHERE pid <> pg_backend_pid() AND coalesce(application_name, '') NOT IN ('pgmon-api', 'pgmon-collector')
        ), c AS (SELECT * FROM a WHERE backend_type = 'client backend')
        SELECT pg_is_in_recovery(),
               (SELECT count(*) FROM c)::int4,
               (SELECT count(*) FROM c WHERE state = 'active')::int4,
               (SELECT count(*) FROM c WHERE state = 'idle')::int4,
               (SELECT count(*) FROM c WHERE state = 'idle in transaction')::int4,
               (SELECT count(*) FROM c WHERE state = 'idle in transaction (aborted)')::int4,
               (SELECT count(*) FROM a WHERE wait_event_type = 'Lock')::int4,
               (SELECT count(*) FROM c WHERE state = 'active'
                   AND wait_event_type IN ('LWLock', 'IO', 'IPC', 'BufferPin', 'Timeout', 'Extension'))::int4,
               (SELECT extract(epoch FROM max(now() - query_start)) FROM c WHERE state = 'active')::float8,
               (SELECT extract(epoch FROM max(now() - xact_start)) FROM c)::float8,
               (SELECT extract(epoch FROM max(now() - state_change)) FROM c
                   WHERE state LIKE 'idle in transaction%')::float8,
               greatest(
                   (SELECT max(greatest(age(backend_xmin), age(backend_xid))) FROM a WHERE backend_type <> 'walsender'),
                   (SELECT max(age(transaction)) FROM pg_prepared_xacts),
                   (SELECT max(greatest(age(xmin), age(catalog_xmin))) FROM pg_replication_slots),
                   (SELECT max(age(backend_xmin)) FROM pg_stat_replication))::int8,
               (SELECT max(age(datfrozenxid)) FROM pg_database)::int8,
               (SELECT max(mxid_age(datminmxid)) FROM pg_database)::int8,
               (SELECT max(CASE WHEN replay_lsn >= l.lsn THEN 0 ELSE extract(epoch FROM replay_lag) END)
                  FROM pg_stat_replication, (SELECT {CURRENT_LSN} AS lsn) l)::float8,
               (SELECT max(pg_wal_lsn_diff(l.lsn, replay_lsn))
                  FROM pg_stat_replication, (SELECT {CURRENT_LSN} AS lsn) l)::int8,
               (SELECT max(pg_wal_lsn_diff({CURRENT_LSN}, restart_lsn)) FROM pg_replication_slots)::int8,
               CASE WHEN pg_is_in_recovery() THEN
                   CASE WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()
                        THEN 0 ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
               END::float8"
    )
}

impl Family for Activity {
    fn name(&self) -> &'static str {
        "activity"
    }

    fn task(&self) -> Task {
        Task::Activity
    }

    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let rows = cx.query(&sql(), &[]).await?;
            let Some(r) = rows.first() else {
                return Ok(Vec::new());
            };
            Ok(vec![Rows::Activity(ActivityRow {
                server_id: cx.server.id(),
                slot: cx.slot,
                collected_at: Utc::now(),
                in_recovery: col(r, 0)?,
                sessions: col(r, 1)?,
                active: col(r, 2)?,
                idle: col(r, 3)?,
                idle_in_xact: col(r, 4)?,
                idle_in_xact_aborted: col(r, 5)?,
                waiting_lock: col(r, 6)?,
                waiting_other: col(r, 7)?,
                longest_query_secs: col(r, 8)?,
                longest_xact_secs: col(r, 9)?,
                longest_idle_xact_secs: col(r, 10)?,
                oldest_xmin_age: col(r, 11)?,
                max_xid_age: col(r, 12)?,
                max_mxid_age: col(r, 13)?,
                max_replication_lag_secs: col(r, 14)?,
                max_replication_lag_bytes: col(r, 15)?,
                max_slot_retained_bytes: col(r, 16)?,
                replay_delay_secs: col(r, 17)?,
            })])
        })
    }
}
