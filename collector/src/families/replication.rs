//! Replication lag per standby and WAL retention per slot, every activity slot, from the same SQL
//! as the API's live view (`pgmon_shared::remote_sql`), so history and live never disagree.

use super::{Collected, Cx, Family, col};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::remote_sql;
use pgmon_shared::store::history::replication::{SlotRow, StandbyRow};

pub struct Replication;

impl Family for Replication {
    fn name(&self) -> &'static str {
        "replication"
    }

    fn task(&self) -> Task {
        Task::Activity
    }

    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let (_, info) = cx.pg()?;
            let at = Utc::now();
            let mut standbys = Vec::new();
            for r in &cx.query(&remote_sql::standbys(), &[]).await? {
                let pid: i32 = col(r, 0)?;
                let app: Option<String> = col(r, 2)?;
                let addr: Option<String> = col(r, 3)?;
                let standby = app
                    .filter(|a| !a.is_empty())
                    .or(addr.clone())
                    .unwrap_or_else(|| format!("pid {pid}"));
                standbys.push(StandbyRow {
                    server_id: cx.server.id(),
                    slot: cx.slot,
                    standby,
                    collected_at: at,
                    client_addr: addr,
                    state: col(r, 4)?,
                    sync_state: col(r, 5)?,
                    sent_lag_bytes: col(r, 10)?,
                    write_lag_bytes: col(r, 11)?,
                    flush_lag_bytes: col(r, 12)?,
                    replay_lag_bytes: col(r, 13)?,
                    write_lag_secs: col(r, 14)?,
                    flush_lag_secs: col(r, 15)?,
                    replay_lag_secs: col(r, 16)?,
                });
            }
            // Two walsenders with one name (a standby reconnecting) would clash on the key.
            standbys.sort_by(|a, b| a.standby.cmp(&b.standby));
            standbys.dedup_by(|a, b| a.standby == b.standby);
            let mut slots = Vec::new();
            for r in &cx.query(&remote_sql::slots(info.version), &[]).await? {
                slots.push(SlotRow {
                    server_id: cx.server.id(),
                    slot: cx.slot,
                    slot_name: col(r, 0)?,
                    collected_at: at,
                    slot_type: col(r, 1)?,
                    active: col(r, 5)?,
                    retained_bytes: col(r, 9)?,
                    wal_status: col(r, 10)?,
                    safe_wal_size: col(r, 11)?,
                    xmin_age: col(r, 13)?,
                    catalog_xmin_age: col(r, 15)?,
                });
            }
            Ok(vec![Rows::Standbys(standbys), Rows::Slots(slots)])
        })
    }
}
