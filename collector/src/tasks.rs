//! One run of one task for one slot: claim the servers, collect them concurrently (bounded by
//! `collector.concurrency`), queue their snapshots for the writer.
//!
//! A slot is the scheduled time a snapshot belongs to: now truncated to the task's interval. The
//! snapshot's key contains it, so collecting a slot twice writes nothing twice.

use crate::Ctx;
use crate::queries;
use crate::servers::{Server, settings_error};
use crate::writer::Batch;
use chrono::{DateTime, Months, TimeZone, Utc};
use futures::StreamExt;
use pgmon_shared::remote::{self, RemoteError, SessionOpts};
use pgmon_shared::ssh;
use pgmon_shared::store::stats::{AvailabilityRow, DbSizeRow, DiskUsageRow};
use pgmon_shared::store::{self, StoreError, collectors};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A claim whose collector has not sent a heartbeat for this long may be taken over.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// The overall deadline of one SSH disk-usage call.
const SSH_DEADLINE: Duration = Duration::from_secs(15);
/// Pseudo server id of the maintenance claim: one collector runs maintenance per slot.
const MAINTENANCE_CLAIM_ID: i64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    Stats,
    Sizes,
    DbInfo,
    Maintenance,
}

impl Task {
    pub const ALL: [Task; 4] = [Task::Stats, Task::Sizes, Task::DbInfo, Task::Maintenance];

    /// Position in [`Task::ALL`].
    pub fn index(self) -> usize {
        match self {
            Task::Stats => 0,
            Task::Sizes => 1,
            Task::DbInfo => 2,
            Task::Maintenance => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Task::Stats => "stats",
            Task::Sizes => "sizes",
            Task::DbInfo => "db_info",
            Task::Maintenance => "maintenance",
        }
    }

    pub fn interval(self, cfg: &pgmon_shared::config::CollectorConfig) -> Duration {
        Duration::from_secs(match self {
            Task::Stats => cfg.collect_interval_secs,
            Task::Sizes => cfg.size_update_interval_secs,
            Task::DbInfo => cfg.db_check_interval_secs,
            Task::Maintenance => cfg.maintenance_interval_secs,
        })
    }

    /// The session limits on monitored servers; sizes get their own, longer statement timeout.
    fn session(self, cfg: &pgmon_shared::config::CollectorConfig) -> SessionOpts {
        let mut o = SessionOpts::new(crate::APP_NAME);
        if self == Task::Sizes {
            o.statement_timeout = Duration::from_secs(cfg.size_statement_timeout_secs);
        }
        o
    }
}

/// `t` truncated to a multiple of `interval` since the epoch.
pub fn slot_of(t: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let step = i64::try_from(interval.as_secs().max(1)).unwrap_or(i64::MAX);
    let secs = t.timestamp().div_euclid(step) * step;
    Utc.timestamp_opt(secs, 0).single().unwrap_or(t)
}

/// What one run did, for the heartbeat row, logs and `once`'s summary line.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub task: &'static str,
    pub slot: Option<DateTime<Utc>>,
    /// Servers this instance collected.
    pub servers: usize,
    /// Servers another live collector had claimed.
    pub skipped: usize,
    pub up: usize,
    pub down: usize,
    pub rows: usize,
    pub duration_ms: u128,
    /// Set when the run itself failed (not a single server).
    pub error: Option<String>,
}

impl Summary {
    pub fn outcome(&self) -> &'static str {
        if self.error.is_some() {
            "error"
        } else if self.down > 0 {
            "partial"
        } else {
            "ok"
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "last_run": Utc::now(),
            "slot": self.slot,
            "outcome": self.outcome(),
            "servers": self.servers,
            "skipped": self.skipped,
            "up": self.up,
            "down": self.down,
            "rows": self.rows,
            "duration_ms": self.duration_ms,
            "error": self.error,
        })
    }

    pub fn line(&self) -> String {
        let slot = self.slot.map(|s| s.to_rfc3339()).unwrap_or_default();
        let mut l = format!(
            "task={} slot={} servers={} skipped={} up={} down={} rows={} ms={} outcome={}",
            self.task,
            slot,
            self.servers,
            self.skipped,
            self.up,
            self.down,
            self.rows,
            self.duration_ms,
            self.outcome()
        );
        if let Some(e) = &self.error {
            l.push_str(&format!(" error={e:?}"));
        }
        l
    }
}

/// Runs `task` for `slot`, for all servers or only those in `only`. Servers not started when `stop`
/// is cancelled are left out; those in progress finish.
pub async fn run(
    ctx: &Arc<Ctx>,
    task: Task,
    slot: DateTime<Utc>,
    only: Option<&HashSet<i64>>,
    stop: &CancellationToken,
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary {
        task: task.as_str(),
        slot: Some(slot),
        ..Summary::default()
    };
    if task == Task::Maintenance {
        match maintenance(ctx, slot).await {
            Ok(Some(n)) => {
                summary.servers = 1;
                summary.rows = n;
            }
            Ok(None) => summary.skipped = 1,
            Err(e) => summary.error = Some(e.to_string()),
        }
        summary.duration_ms = started.elapsed().as_millis();
        return summary;
    }
    let all = ctx.servers.list();
    let wanted: Vec<Arc<Server>> = all
        .iter()
        .filter(|s| only.is_none_or(|o| o.contains(&s.id())))
        .cloned()
        .collect();
    let ids: Vec<i64> = wanted.iter().map(|s| s.id()).collect();
    // Without the store there is nobody to share with: collect everything; the keyed, idempotent
    // writes keep a slot collected by two instances single.
    let claimed: HashSet<i64> = match collectors::claim(
        &ctx.pool,
        ctx.instance,
        task.as_str(),
        slot,
        &ids,
        STALE_AFTER,
    )
    .await
    {
        Ok(c) => c.into_iter().collect(),
        Err(e) => {
            tracing::warn!(task = task.as_str(), error = %e, "cannot claim servers; collecting all of them");
            ids.iter().copied().collect()
        }
    };
    let mine: Vec<Arc<Server>> = wanted.into_iter().filter(|s| claimed.contains(&s.id())).collect();
    summary.skipped = ids.len() - mine.len();
    summary.servers = mine.len();
    let up = AtomicUsize::new(0);
    let rows = AtomicUsize::new(0);
    let opts = task.session(&ctx.cfg.collector);
    futures::stream::iter(mine)
        .take_until(stop.cancelled())
        .for_each_concurrent(ctx.cfg.collector.concurrency, |server| {
            let (up, rows) = (&up, &rows);
            async move {
                let (batch, ok) = match task {
                    Task::Stats => stats(ctx, &server, slot, &opts).await,
                    Task::Sizes => sizes(ctx, &server, slot, &opts).await,
                    Task::DbInfo => db_info(ctx, &server, &opts).await,
                    Task::Maintenance => (None, true),
                };
                if ok {
                    up.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(b) = batch {
                    rows.fetch_add(b.rows(), Ordering::Relaxed);
                    ctx.writer.push(b);
                }
            }
        })
        .await;
    summary.up = up.into_inner();
    summary.down = summary.servers.saturating_sub(summary.up);
    summary.rows = rows.into_inner();
    summary.duration_ms = started.elapsed().as_millis();
    summary
}

/// Connects, unless the server is backing off or its settings are unusable; maintains the back-off.
async fn connect(
    ctx: &Ctx,
    server: &Server,
    opts: &SessionOpts,
) -> Result<(tokio_postgres::Client, f64), RemoteError> {
    let target = server.target.as_ref().map_err(|m| settings_error(m))?;
    if let Some(last) = ctx.servers.backing_off(server.id()) {
        return Err(last);
    }
    let t0 = Instant::now();
    match remote::connect(target, opts).await {
        Ok(c) => {
            ctx.servers.succeeded(server.id());
            Ok((c, t0.elapsed().as_secs_f64() * 1000.0))
        }
        Err(e) => {
            ctx.servers.failed(server.id(), &e);
            tracing::debug!(server = %server.row.name, error = %e, "connect failed");
            Err(e)
        }
    }
}

/// The stats snapshot and the availability sample; a server that does not answer still gets its
/// "down" sample.
async fn stats(ctx: &Ctx, server: &Server, slot: DateTime<Utc>, opts: &SessionOpts) -> (Option<Batch>, bool) {
    let sample = |up: bool, latency: Option<f64>, e: Option<&RemoteError>| AvailabilityRow {
        server_id: server.id(),
        slot,
        collected_at: Utc::now(),
        up,
        latency_ms: latency,
        error_class: e.map(|e| e.class.as_str().to_string()),
        error: e.map(|e| e.message.clone()),
    };
    let (client, latency) = match connect(ctx, server, opts).await {
        Ok(c) => c,
        Err(e) => {
            let b = Batch::Stats {
                availability: sample(false, None, Some(&e)),
                rows: Vec::new(),
            };
            return (Some(b), false);
        }
    };
    match queries::stat_database(&client, opts, server.id(), slot).await {
        Ok(rows) => {
            let b = Batch::Stats {
                availability: sample(true, Some(latency), None),
                rows,
            };
            (Some(b), true)
        }
        Err(e) => {
            tracing::warn!(server = %server.row.name, error = %e, "reading pg_stat_database failed");
            let b = Batch::Stats {
                availability: sample(false, Some(latency), Some(&e)),
                rows: Vec::new(),
            };
            (Some(b), false)
        }
    }
}

async fn sizes(ctx: &Ctx, server: &Server, slot: DateTime<Utc>, opts: &SessionOpts) -> (Option<Batch>, bool) {
    let mut rows = Vec::new();
    let mut ok = true;
    match connect(ctx, server, opts).await {
        Ok((client, _)) => match queries::sizable_databases(&client, opts).await {
            Ok(dbs) => {
                for (oid, name) in dbs {
                    match queries::database_size(&client, opts, oid).await {
                        Ok(size) => rows.push(DbSizeRow {
                            server_id: server.id(),
                            slot,
                            datname: name,
                            collected_at: Utc::now(),
                            size_bytes: size,
                        }),
                        Err(e) => {
                            tracing::warn!(server = %server.row.name, database = %name, error = %e, "pg_database_size failed");
                        }
                    }
                }
            }
            Err(e) => {
                ok = false;
                tracing::warn!(server = %server.row.name, error = %e, "listing databases failed");
            }
        },
        Err(e) => {
            ok = false;
            tracing::debug!(server = %server.row.name, error = %e, "sizes: server not reachable");
        }
    }
    let disk = disk_usage(ctx, server, slot).await;
    if rows.is_empty() && disk.is_none() {
        return (None, ok);
    }
    (Some(Batch::Sizes { rows, disk }), ok)
}

/// Disk usage of the server's data directory over SSH, with the host key pinned on first use.
async fn disk_usage(ctx: &Ctx, server: &Server, slot: DateTime<Utc>) -> Option<DiskUsageRow> {
    server.row.ssh_data_path.as_deref().filter(|p| !p.is_empty())?;
    // The pinned host key is read fresh: a cached row could still say "nothing pinned" and let any
    // key through (with the credentials) after another run pinned one. No store, no SSH.
    let row = match store::servers::get_by_id(&ctx.pool, server.id()).await {
        Ok(Some(row)) if row.enabled => row,
        Ok(_) => return None,
        Err(e) => {
            tracing::debug!(server = %server.row.name, error = %e, "store unreachable; skipping SSH");
            return None;
        }
    };
    let data_path = row.ssh_data_path.as_deref().filter(|p| !p.is_empty())?;
    let target = match store::servers::ssh_target(&ctx.pool, &ctx.crypto, &row).await {
        Ok(Some(t)) => t,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(server = %server.row.name, error = %e, "cannot build the SSH target");
            return None;
        }
    };
    match ssh::disk_usage(&target, data_path, SSH_DEADLINE).await {
        Ok(out) => {
            if target.expected_fingerprint.is_none() {
                match store::servers::pin_host_key(&ctx.pool, server.id(), &out.host_key_fingerprint).await {
                    Ok(true) => {
                        tracing::info!(server = %server.row.name, fingerprint = %out.host_key_fingerprint, "pinned SSH host key")
                    }
                    Ok(false) => {
                        tracing::warn!(server = %server.row.name, "another SSH host key was pinned meanwhile; discarding the measurement");
                        return None;
                    }
                    Err(e) => {
                        tracing::warn!(server = %server.row.name, error = %e, "cannot pin the SSH host key");
                        return None;
                    }
                }
            }
            let v = out.value;
            Some(DiskUsageRow {
                server_id: server.id(),
                slot,
                collected_at: Utc::now(),
                mount: v.mount,
                total_bytes: i64::try_from(v.total_bytes).unwrap_or(i64::MAX),
                used_bytes: i64::try_from(v.used_bytes).unwrap_or(i64::MAX),
                available_bytes: i64::try_from(v.available_bytes).unwrap_or(i64::MAX),
            })
        }
        Err(e) => {
            tracing::warn!(server = %server.row.name, class = e.class.as_str(), error = %e, "SSH disk usage failed");
            None
        }
    }
}

async fn db_info(ctx: &Ctx, server: &Server, opts: &SessionOpts) -> (Option<Batch>, bool) {
    let (client, _) = match connect(ctx, server, opts).await {
        Ok(c) => c,
        Err(_) => return (None, false),
    };
    match queries::databases(&client, opts).await {
        Ok(dbs) => {
            let b = Batch::DbInfo {
                server_id: server.id(),
                seen_at: Utc::now(),
                dbs,
            };
            (Some(b), true)
        }
        Err(e) => {
            tracing::warn!(server = %server.row.name, error = %e, "listing databases failed");
            (None, false)
        }
    }
}

/// Partitions ahead, retention, audit and token purges. `None` when another collector has the slot.
async fn maintenance(ctx: &Ctx, slot: DateTime<Utc>) -> Result<Option<usize>, StoreError> {
    let claimed = collectors::claim(
        &ctx.pool,
        ctx.instance,
        Task::Maintenance.as_str(),
        slot,
        &[MAINTENANCE_CLAIM_ID],
        STALE_AFTER,
    )
    .await?;
    if claimed.is_empty() {
        return Ok(None);
    }
    let now = Utc::now();
    let month = |m: u32, forward: bool| {
        if forward {
            now.checked_add_months(Months::new(m))
        } else {
            now.checked_sub_months(Months::new(m))
        }
        .unwrap_or(now)
    };
    let created = store::stats::ensure_partitions(&ctx.pool, now, month(2, true)).await?;
    // Partitions are months: keep the current one and `retention_months` whole months before it.
    let cutoff = month_start(month(ctx.cfg.collector.retention_months, false));
    let dropped = store::stats::drop_partitions_before(&ctx.pool, cutoff).await?;
    let audit = store::audit::purge_older_than(&ctx.pool, ctx.cfg.api.audit_retention_days).await?;
    let tokens = store::tokens::purge_expired(&ctx.pool).await?;
    let claims = collectors::purge_before(&ctx.pool, now - chrono::Duration::days(2)).await?;
    crate::writer::refresh_rollups(&ctx.pool).await;
    tracing::info!(
        partitions_created = created,
        partitions_dropped = dropped,
        audit_purged = audit,
        tokens_purged = tokens,
        claims_purged = claims,
        "maintenance done"
    );
    let touched = usize::try_from(created + dropped).unwrap_or(0)
        + usize::try_from(audit + tokens + claims).unwrap_or(usize::MAX);
    Ok(Some(touched))
}

fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Datelike;
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_truncate_to_the_interval() {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 24, 17, 34, 56)
            .single()
            .expect("time");
        assert_eq!(
            slot_of(t, Duration::from_secs(600)),
            Utc.with_ymd_and_hms(2026, 11, 24, 17, 30, 0)
                .single()
                .expect("time")
        );
        assert_eq!(
            month_start(t),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("time")
        );
    }
}
