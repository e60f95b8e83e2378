//! Replication as the server sees it: on a primary its standbys (`pg_stat_replication`), on a
//! standby its WAL receiver and replay delay, and on both the replication slots.
//!
//! Lag in time is zero once a standby has replayed everything sent: PostgreSQL keeps showing the
//! last measured lag for a while on an idle primary, and a monitor must not report that as a
//! delay.

use super::{Remote, Version, col, query};
use chrono::{DateTime, Utc};
use pgmon_shared::remote::RemoteError;
use pgmon_shared::remote_sql;
use poem_openapi::Object;

#[derive(Debug, Clone, Object)]
pub struct Standby {
    pub pid: i32,
    pub user: Option<String>,
    pub application: Option<String>,
    pub client_addr: Option<String>,
    /// `startup`, `catchup`, `streaming`, `backup`, `stopping`.
    pub state: Option<String>,
    /// `async`, `potential`, `sync`, `quorum`.
    pub sync_state: Option<String>,
    pub sent_lsn: Option<String>,
    pub write_lsn: Option<String>,
    pub flush_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    /// Bytes of WAL this server has (generated, or on a cascading standby replayed) but the standby
    /// has not yet been sent / written / flushed / replayed.
    pub sent_lag_bytes: Option<i64>,
    pub write_lag_bytes: Option<i64>,
    pub flush_lag_bytes: Option<i64>,
    pub replay_lag_bytes: Option<i64>,
    /// Seconds; 0 when that position has caught up with the primary.
    pub write_lag_secs: Option<f64>,
    pub flush_lag_secs: Option<f64>,
    pub replay_lag_secs: Option<f64>,
    /// The xmin the standby reports with `hot_standby_feedback`, and its age.
    pub backend_xmin: Option<String>,
    pub xmin_age: Option<i64>,
    pub reply_time: Option<DateTime<Utc>>,
    pub backend_start: Option<DateTime<Utc>>,
}

/// A standby's WAL receiver (its connection settings are left out: they may hold a password).
#[derive(Debug, Clone, Object)]
pub struct WalReceiver {
    /// `null` when no WAL receiver runs (restoring from an archive, or the primary is gone).
    pub status: Option<String>,
    pub sender_host: Option<String>,
    pub sender_port: Option<i32>,
    pub slot_name: Option<String>,
    /// Last WAL position written (PostgreSQL 13+; received before).
    pub written_lsn: Option<String>,
    pub flushed_lsn: Option<String>,
    pub last_msg_receipt_time: Option<DateTime<Utc>>,
    pub latest_end_lsn: Option<String>,
    pub latest_end_time: Option<DateTime<Utc>>,
    pub receive_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    /// Bytes received but not replayed yet.
    pub replay_lag_bytes: Option<i64>,
    /// Seconds since the last replayed transaction's commit while replay is behind; 0 when all that
    /// was received is replayed.
    pub replay_delay_secs: Option<f64>,
    pub last_replay_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Object)]
pub struct Slot {
    pub slot_name: String,
    /// `physical` or `logical`.
    pub slot_type: Option<String>,
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub temporary: Option<bool>,
    pub active: Option<bool>,
    pub active_pid: Option<i32>,
    pub restart_lsn: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
    /// WAL the slot keeps from being removed: from `restart_lsn` to the current position.
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved`, `lost` (PostgreSQL 13+).
    pub wal_status: Option<String>,
    /// Bytes that can still be written before the slot is lost (PostgreSQL 13+; null without
    /// `max_slot_wal_keep_size`).
    pub safe_wal_size: Option<i64>,
    pub xmin: Option<String>,
    pub xmin_age: Option<i64>,
    pub catalog_xmin: Option<String>,
    pub catalog_xmin_age: Option<i64>,
    /// PostgreSQL 17+.
    pub inactive_since: Option<DateTime<Utc>>,
    /// PostgreSQL 17+: why the slot was invalidated.
    pub invalidation_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Replication {
    pub in_recovery: bool,
    pub current_lsn: Option<String>,
    pub standbys: Vec<Standby>,
    pub wal_receiver: Option<WalReceiver>,
    pub slots: Vec<Slot>,
}

fn receiver_sql(v: Version) -> String {
    let (written, flushed) = if v.has(13) {
        ("w.written_lsn::text", "w.flushed_lsn::text")
    } else {
        ("NULL::text", "NULL::text")
    };
    format!(
        "SELECT w.status, w.sender_host, w.sender_port, w.slot_name, {written}, {flushed},
                w.last_msg_receipt_time, w.latest_end_lsn::text, w.latest_end_time,
                pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
                pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::int8,
                CASE WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()
                     THEN 0 ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8,
                pg_last_xact_replay_timestamp()
         FROM (SELECT 1) x LEFT JOIN pg_stat_wal_receiver w ON true"
    )
}

pub async fn read(r: &Remote) -> Result<Replication, RemoteError> {
    let head = query(
        r,
        &format!("SELECT pg_is_in_recovery(), ({})::text", remote_sql::CURRENT_LSN),
        &[],
    )
    .await?;
    let (in_recovery, current_lsn): (bool, Option<String>) = match head.first() {
        Some(row) => (col(row, 0)?, col(row, 1)?),
        None => (false, None),
    };
    let mut standbys = Vec::new();
    let mut wal_receiver = None;
    if in_recovery {
        let rows = query(r, &receiver_sql(r.version), &[]).await?;
        if let Some(row) = rows.first() {
            wal_receiver = Some(WalReceiver {
                status: col(row, 0)?,
                sender_host: col(row, 1)?,
                sender_port: col(row, 2)?,
                slot_name: col(row, 3)?,
                written_lsn: col(row, 4)?,
                flushed_lsn: col(row, 5)?,
                last_msg_receipt_time: col(row, 6)?,
                latest_end_lsn: col(row, 7)?,
                latest_end_time: col(row, 8)?,
                receive_lsn: col(row, 9)?,
                replay_lsn: col(row, 10)?,
                replay_lag_bytes: col(row, 11)?,
                replay_delay_secs: col(row, 12)?,
                last_replay_at: col(row, 13)?,
            });
        }
    }
    // A standby may have standbys of its own (cascading replication).
    {
        for row in &query(r, &remote_sql::standbys(), &[]).await? {
            standbys.push(Standby {
                pid: col(row, 0)?,
                user: col(row, 1)?,
                application: col(row, 2)?,
                client_addr: col(row, 3)?,
                state: col(row, 4)?,
                sync_state: col(row, 5)?,
                sent_lsn: col(row, 6)?,
                write_lsn: col(row, 7)?,
                flush_lsn: col(row, 8)?,
                replay_lsn: col(row, 9)?,
                sent_lag_bytes: col(row, 10)?,
                write_lag_bytes: col(row, 11)?,
                flush_lag_bytes: col(row, 12)?,
                replay_lag_bytes: col(row, 13)?,
                write_lag_secs: col(row, 14)?,
                flush_lag_secs: col(row, 15)?,
                replay_lag_secs: col(row, 16)?,
                backend_xmin: col(row, 17)?,
                xmin_age: col(row, 18)?,
                reply_time: col(row, 19)?,
                backend_start: col(row, 20)?,
            });
        }
    }
    let mut slots = Vec::new();
    for row in &query(r, &remote_sql::slots(r.version), &[]).await? {
        slots.push(Slot {
            slot_name: col(row, 0)?,
            slot_type: col(row, 1)?,
            plugin: col(row, 2)?,
            database: col(row, 3)?,
            temporary: col(row, 4)?,
            active: col(row, 5)?,
            active_pid: col(row, 6)?,
            restart_lsn: col(row, 7)?,
            confirmed_flush_lsn: col(row, 8)?,
            retained_bytes: col(row, 9)?,
            wal_status: col(row, 10)?,
            safe_wal_size: col(row, 11)?,
            xmin: col(row, 12)?,
            xmin_age: col(row, 13)?,
            catalog_xmin: col(row, 14)?,
            catalog_xmin_age: col(row, 15)?,
            inactive_since: col(row, 16)?,
            invalidation_reason: col(row, 17)?,
        });
    }
    Ok(Replication {
        in_recovery,
        current_lsn,
        standbys,
        wal_receiver,
        slots,
    })
}
