//! SQL run on monitored servers by both processes (the API live, the collector into history), so the
//! two never disagree on what a figure means.

use crate::version::Version;

/// The current WAL position: the inserted one on a primary, the replayed one on a standby.
pub const CURRENT_LSN: &str =
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END";

/// One row per standby streaming from this server (`pg_stat_replication`): pid, user, application,
/// client, state, sync state, sent/write/flush/replay LSN (text), the four lags in bytes behind
/// [`CURRENT_LSN`], write/flush/replay lag in seconds, backend_xmin (text) and its age, reply time,
/// backend start.
///
/// A lag in seconds is 0 once that position has caught up: PostgreSQL keeps showing the last
/// measured lag for a while on an idle primary, which is no delay.
pub fn standbys() -> String {
    format!(
        "SELECT r.pid, r.usename::text, r.application_name, host(r.client_addr), r.state, r.sync_state,
                r.sent_lsn::text, r.write_lsn::text, r.flush_lsn::text, r.replay_lsn::text,
                pg_wal_lsn_diff(c.lsn, r.sent_lsn)::int8, pg_wal_lsn_diff(c.lsn, r.write_lsn)::int8,
                pg_wal_lsn_diff(c.lsn, r.flush_lsn)::int8, pg_wal_lsn_diff(c.lsn, r.replay_lsn)::int8,
                CASE WHEN r.write_lsn >= c.lsn THEN 0 ELSE extract(epoch FROM r.write_lag) END::float8,
                CASE WHEN r.flush_lsn >= c.lsn THEN 0 ELSE extract(epoch FROM r.flush_lag) END::float8,
                CASE WHEN r.replay_lsn >= c.lsn THEN 0 ELSE extract(epoch FROM r.replay_lag) END::float8,
                r.backend_xmin::text, age(r.backend_xmin)::int8, r.reply_time, r.backend_start
         FROM pg_stat_replication r, (SELECT {CURRENT_LSN} AS lsn) c
         ORDER BY r.application_name, r.pid"
    )
}

/// One row per replication slot: name, type, plugin, database, temporary, active, active pid,
/// restart and confirmed-flush LSN (text), WAL retained from `restart_lsn` to [`CURRENT_LSN`],
/// wal_status and safe_wal_size (13+), xmin and catalog xmin (text) with their ages, inactive_since
/// and invalidation_reason (17+).
pub fn slots(v: Version) -> String {
    let wal = if v.has(13) {
        "s.wal_status, s.safe_wal_size"
    } else {
        "NULL::text, NULL::int8"
    };
    let v17 = if v.has(17) {
        "s.inactive_since, s.invalidation_reason"
    } else {
        "NULL::timestamptz, NULL::text"
    };
    format!(
        "SELECT s.slot_name::text, s.slot_type, s.plugin::text, s.database::text, s.temporary, s.active,
                s.active_pid, s.restart_lsn::text, s.confirmed_flush_lsn::text,
                pg_wal_lsn_diff({CURRENT_LSN}, s.restart_lsn)::int8,
                {wal}, s.xmin::text, age(s.xmin)::int8, s.catalog_xmin::text, age(s.catalog_xmin)::int8,
                {v17}
         FROM pg_replication_slots s ORDER BY s.slot_name"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_columns_follow_the_version() {
        assert!(slots(Version(120000)).contains("NULL::text, NULL::int8"));
        assert!(slots(Version(130000)).contains("s.wal_status"));
        assert!(slots(Version(170000)).contains("s.inactive_since"));
        assert_eq!(slots(Version(190000)), slots(Version(120000)));
    }
}
