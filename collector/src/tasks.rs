//! One run of one task for one slot: keep the servers this instance owns (rendezvous hashing over
//! the live collectors, so that a server's slots stay with one collector), claim them, collect them
//! concurrently (bounded by `collector.concurrency`), each under one deadline for its whole part of
//! the run, and queue their snapshots for the writer.
//!
//! A slot is the scheduled time a snapshot belongs to: now truncated to the task's interval. The
//! snapshot's key contains it, so collecting a slot twice writes nothing twice.

use crate::Ctx;
use crate::families::{self, Cx, Family};
use crate::servers::{Server, settings_error};
use crate::writer::{Batch, Rows};
use chrono::{DateTime, Months, TimeZone, Utc};
use futures::StreamExt;
use pgmon_shared::remote::{self, ErrorClass, RemoteError, SessionOpts};
use pgmon_shared::store::stats::AvailabilityRow;
use pgmon_shared::store::system_log::{self, Level, NewEntry};
use pgmon_shared::store::{self, StoreError, collectors};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A claim whose collector has not sent a heartbeat for this long may be taken over.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// Pseudo server id of the maintenance claim: one collector runs maintenance per slot.
const MAINTENANCE_CLAIM_ID: i64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    Stats,
    Sizes,
    DbInfo,
    Activity,
    Maintenance,
}

impl Task {
    pub const ALL: [Task; 5] = [
        Task::Stats,
        Task::Sizes,
        Task::DbInfo,
        Task::Activity,
        Task::Maintenance,
    ];

    /// Position in [`Task::ALL`].
    pub fn index(self) -> usize {
        match self {
            Task::Stats => 0,
            Task::Sizes => 1,
            Task::DbInfo => 2,
            Task::Activity => 3,
            Task::Maintenance => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Task::Stats => "stats",
            Task::Sizes => "sizes",
            Task::DbInfo => "db_info",
            Task::Activity => "activity",
            Task::Maintenance => "maintenance",
        }
    }

    /// The task's interval now: the runtime setting for the three collecting tasks, the config
    /// file's for maintenance.
    pub fn interval(self, ctx: &Ctx) -> Duration {
        let s = ctx.settings();
        match self {
            Task::Stats => s.collect_interval(),
            Task::Sizes => s.size_update_interval(),
            Task::DbInfo => s.db_check_interval(),
            Task::Activity => Duration::from_secs(ctx.cfg.collector.activity_interval_secs.max(1)),
            Task::Maintenance => Duration::from_secs(ctx.cfg.collector.maintenance_interval_secs.max(1)),
        }
    }

    /// Where the system log files this task's entries (the original's sources).
    pub fn log_source(self) -> &'static str {
        match self {
            Task::Stats => system_log::source::COLLECTOR_STATS,
            Task::Sizes => system_log::source::COLLECTOR_SIZES,
            Task::DbInfo => system_log::source::COLLECTOR_DB_INFO,
            // The original has no activity source; its runs are the statistics collector's kind.
            Task::Activity => system_log::source::COLLECTOR_STATS,
            Task::Maintenance => system_log::source::MAINTENANCE,
        }
    }

    /// How an entry of this task names it.
    fn title(self) -> &'static str {
        match self {
            Task::Stats => "statistics",
            Task::Sizes => "sizes",
            Task::DbInfo => "database list",
            Task::Activity => "activity",
            Task::Maintenance => "maintenance",
        }
    }

    /// How long one server's part of a run may take, all families together: the configured
    /// deadline, else half the interval (a server never holds the next slot) capped at 120 s.
    pub fn server_deadline(self, ctx: &Ctx) -> Duration {
        match ctx.cfg.collector.server_deadline_secs {
            0 => (self.interval(ctx) / 2).clamp(Duration::from_secs(1), Duration::from_secs(120)),
            secs => Duration::from_secs(secs),
        }
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
    /// The servers that failed, by name, and why.
    #[serde(skip)]
    pub failures: Vec<(String, String)>,
    /// What maintenance did, in words (for the system log).
    #[serde(skip)]
    pub note: Option<String>,
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

    /// The run's system-log entry: info with the counts, or error naming the failing servers.
    /// `None` for a run that collected nothing here (another collector had every server).
    pub fn log_entry(&self, task: Task) -> Option<NewEntry> {
        let secs = self.duration_ms as f64 / 1000.0;
        if let Some(e) = &self.error {
            return Some(
                NewEntry::new(
                    Level::Error,
                    task.log_source(),
                    format!("{} failed", task.title()),
                )
                .details(e.clone()),
            );
        }
        if task == Task::Maintenance {
            let note = self.note.clone()?;
            return Some(NewEntry::new(Level::Info, task.log_source(), "maintenance done").details(note));
        }
        if self.servers == 0 {
            return None;
        }
        if self.failures.is_empty() && self.down == 0 {
            let msg = format!(
                "{}: {} servers OK ({} rows, {secs:.1} s)",
                task.title(),
                self.up,
                self.rows
            );
            return Some(NewEntry::new(Level::Info, task.log_source(), msg));
        }
        let failed = self.failures.len().max(self.down);
        let msg = format!("{}: {failed} of {} servers failed", task.title(), self.servers);
        let mut names: Vec<String> = self
            .failures
            .iter()
            .take(100)
            .map(|(n, why)| format!("{n}: {why}"))
            .collect();
        if self.failures.len() > 100 {
            names.push(format!("and {} more", self.failures.len() - 100));
        }
        Some(NewEntry::new(Level::Error, task.log_source(), msg).details(names.join("; ")))
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
        // Maintenance runs many statements (partitions, purges, rollups), each under the store's
        // statement_timeout; a half-open store connection is bounded by this deadline of the whole.
        let limit = ctx.cfg.store.call_timeout() * 8;
        match store::deadline(limit, maintenance(ctx, slot)).await {
            Ok(Some((n, note))) => {
                summary.servers = 1;
                summary.rows = n;
                summary.note = Some(note);
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
    let ids = owned(ctx, task, &wanted).await;
    // Without the store there is nobody to share with: collect everything; the keyed, idempotent
    // writes keep a slot collected by two instances single.
    let claim = collectors::claim_with(
        &ctx.pool,
        ctx.instance,
        task.as_str(),
        slot,
        &ids,
        STALE_AFTER,
        ctx.once,
    );
    let claimed: HashSet<i64> = match ctx.store(claim).await {
        Ok((c, taken)) => {
            if taken > 0 {
                tracing::info!(
                    task = task.as_str(),
                    servers = taken,
                    "took over servers of a collector that stopped or died"
                );
                ctx.counters
                    .claim_takeovers
                    .fetch_add(taken as u64, Ordering::Relaxed);
            }
            c.into_iter().collect()
        }
        Err(e) => {
            tracing::warn!(task = task.as_str(), error = %e, "cannot claim servers; collecting all of them");
            ids.iter().copied().collect()
        }
    };
    if task == Task::Stats {
        let scope: HashSet<i64> = wanted.iter().map(|s| s.id()).collect();
        hand_over(ctx, ctx.statements.hand_over(&scope, &claimed)).await;
    }
    let wanted_n = wanted.len();
    let mine: Vec<Arc<Server>> = wanted.into_iter().filter(|s| claimed.contains(&s.id())).collect();
    summary.skipped = wanted_n - mine.len();
    summary.servers = mine.len();
    let up = AtomicUsize::new(0);
    let rows = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let opts = task.session(&ctx.cfg.collector);
    let deadline = task.server_deadline(ctx);
    futures::stream::iter(mine)
        .take_until(stop.cancelled())
        .for_each_concurrent(ctx.cfg.collector.concurrency, |server| {
            let (up, rows, failures) = (&up, &rows, &failures);
            async move {
                let (batch, outcome) =
                    match tokio::time::timeout(deadline, collect_server(ctx, task, &server, slot, &opts))
                        .await
                    {
                        Ok(done) => done,
                        Err(_) => abandoned(task, &server, slot, deadline),
                    };
                match outcome {
                    Ok(()) => {
                        up.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(why) => {
                        if let Ok(mut f) = failures.lock() {
                            f.push((server.row.name.clone(), why));
                        }
                    }
                }
                if !batch.rows.is_empty() {
                    rows.fetch_add(batch.rows(), Ordering::Relaxed);
                    ctx.writer.push(batch);
                }
            }
        })
        .await;
    summary.up = up.into_inner();
    summary.down = summary.servers.saturating_sub(summary.up);
    summary.failures = failures.into_inner().unwrap_or_default();
    summary.failures.sort();
    summary.rows = rows.into_inner();
    summary.duration_ms = started.elapsed().as_millis();
    summary
}

/// The servers of `wanted` this instance owns among the live collectors (itself included, even
/// before its registration is visible). A `once` run owns them all; so does a run that cannot read
/// the live collectors (claims still keep each server's slot single).
async fn owned(ctx: &Ctx, task: Task, wanted: &[Arc<Server>]) -> Vec<i64> {
    let ids = wanted.iter().map(|s| s.id());
    if ctx.once {
        return ids.collect();
    }
    let mut live = match ctx
        .store(collectors::live_instances(&ctx.pool, STALE_AFTER))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(task = task.as_str(), error = %e, "cannot read the live collectors; trying every server");
            return ids.collect();
        }
    };
    if !live.contains(&ctx.instance) {
        live.push(ctx.instance);
    }
    ids.filter(|id| collectors::owner(*id, &live) == Some(ctx.instance))
        .collect()
}

/// Saves baselines for the servers' next collectors; a failure costs those servers one slot of
/// statements, nothing else.
pub async fn hand_over(ctx: &Ctx, baselines: Vec<families::statements::Handover>) {
    if baselines.is_empty() {
        return;
    }
    let rows: Vec<(i64, &str, DateTime<Utc>, Vec<u8>)> = baselines
        .into_iter()
        .map(|(id, slot, data)| (id, families::statements::FAMILY, slot, data))
        .collect();
    match ctx.store(collectors::save_baselines(&ctx.pool, &rows)).await {
        Ok(_) => tracing::debug!(servers = rows.len(), "statements baselines handed over"),
        Err(e) => tracing::warn!(servers = rows.len(), error = %e, "cannot hand statements baselines over"),
    }
}

/// A server whose part of the run outlived `deadline`: whatever it collected is dropped (never a
/// partial snapshot), it is down for this slot, and the failure says why.
fn abandoned(
    task: Task,
    server: &Server,
    slot: DateTime<Utc>,
    deadline: Duration,
) -> (Batch, Result<(), String>) {
    let why = format!(
        "abandoned: no complete answer within {} s (the deadline per server and run)",
        deadline.as_secs_f64()
    );
    tracing::warn!(server = %server.row.name, task = task.as_str(), "{why}");
    let mut batch = Batch::default();
    if task == Task::Stats {
        let e = RemoteError::new(pgmon_shared::remote::ErrorClass::Timeout, why.clone());
        batch
            .rows
            .push(Rows::Availability(sample(server, slot, false, None, Some(&e))));
    }
    (batch, Err(format!("timeout: {why}")))
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
            let new = ctx.servers.failed(server.id(), &e);
            if new && e.class == ErrorClass::Refused {
                // A configuration matter, not an outage: said once, not at every retry.
                tracing::warn!(server = %server.row.name, error = %e, "not connecting: target refused");
            } else {
                tracing::debug!(server = %server.row.name, error = %e, "connect failed");
            }
            Err(e)
        }
    }
}

/// One server's snapshot for `task`: one connection shared by the task's families (none if no family
/// needs one), the availability sample for the stats task, and every family's rows. The outcome
/// names what failed; a family's failure does not make the server down.
async fn collect_server(
    ctx: &Ctx,
    task: Task,
    server: &Server,
    slot: DateTime<Utc>,
    opts: &SessionOpts,
) -> (Batch, Result<(), String>) {
    let families: Vec<&dyn Family> = families::ALL
        .iter()
        .copied()
        .filter(|f| f.task() == task)
        .collect();
    let mut batch = Batch::default();
    let mut problems = Vec::new();
    let conn = if families.iter().any(|f| f.needs_connection()) {
        Some(connect(ctx, server, opts).await)
    } else {
        None
    };
    let (client, latency) = match conn {
        Some(Ok((c, latency))) => (Some(c), Some(latency)),
        Some(Err(e)) => {
            problems.push(families::reason(&e));
            if task == Task::Stats {
                batch
                    .rows
                    .push(Rows::Availability(sample(server, slot, false, None, Some(&e))));
            }
            (None, None)
        }
        None => (None, None),
    };
    let info = match &client {
        Some(c) => match families::server_info(c, opts).await {
            Ok(i) => Some(i),
            Err(e) => {
                problems.push(families::reason(&e));
                if task == Task::Stats {
                    batch
                        .rows
                        .push(Rows::Availability(sample(server, slot, false, latency, Some(&e))));
                }
                None
            }
        },
        None => None,
    };
    let cx = Cx {
        ctx,
        server,
        slot,
        client: if info.is_some() { client.as_ref() } else { None },
        info,
        opts,
    };
    let mut stats_failed = None;
    for f in families {
        if f.needs_connection() && cx.info.is_none() {
            continue;
        }
        match f.collect(&cx).await {
            Ok(rows) => batch.rows.extend(rows),
            Err(why) => {
                tracing::warn!(server = %server.row.name, family = f.name(), error = %why, "collecting failed");
                if f.name() == "stat_database" {
                    stats_failed = Some(why.clone());
                }
                problems.push(why);
            }
        }
    }
    if task == Task::Stats && cx.info.is_some() {
        // Up when the server answered its statistics.
        let e = stats_failed.map(|why| RemoteError::new(pgmon_shared::remote::ErrorClass::Other, why));
        batch.rows.push(Rows::Availability(sample(
            server,
            slot,
            e.is_none(),
            latency,
            e.as_ref(),
        )));
    }
    let outcome = if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    };
    (batch, outcome)
}

fn sample(
    server: &Server,
    slot: DateTime<Utc>,
    up: bool,
    latency: Option<f64>,
    e: Option<&RemoteError>,
) -> AvailabilityRow {
    AvailabilityRow {
        server_id: server.id(),
        slot,
        collected_at: Utc::now(),
        up,
        latency_ms: latency,
        error_class: e.map(|e| e.class.as_str().to_string()),
        error: e.map(|e| e.message.clone()),
    }
}

/// Partitions ahead, retention (stats, audit, system log, by the runtime settings), token and claim
/// purges. `None` when another collector has the slot; else what was touched, counted and in words.
async fn maintenance(ctx: &Ctx, slot: DateTime<Utc>) -> Result<Option<(usize, String)>, StoreError> {
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
    // Retention settings an admin changed since the last NOTIFY reached us apply now.
    let settings = crate::load_settings(ctx).await;
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
    let cutoff = month_start(month(settings.retention_months(), false));
    let dropped = store::stats::drop_partitions_before(&ctx.pool, cutoff).await?;
    let audit = store::audit::purge_older_than(&ctx.pool, settings.audit_retention_days()).await?;
    let logs = system_log::purge_older_than(&ctx.pool, settings.logs_retention_days()).await?;
    let texts = store::history::statements::purge_texts_before(&ctx.pool, cutoff).await?;
    let tokens = store::tokens::purge_expired(&ctx.pool).await?;
    let claims = collectors::purge_before(&ctx.pool, now - chrono::Duration::days(2)).await?;
    crate::writer::refresh_rollups(&ctx.pool).await;
    let note = format!(
        "partitions created {created}, dropped {dropped} (before {}); audit events purged {audit} (older than {} days); \
         log entries purged {logs} (older than {} days); statement texts purged {texts}; expired tokens purged {tokens}; \
         claims purged {claims}",
        cutoff.format("%Y-%m-%d"),
        settings.audit_retention_days(),
        settings.logs_retention_days(),
    );
    let touched = usize::try_from(created + dropped).unwrap_or(0)
        + usize::try_from(audit + logs + texts + tokens + claims).unwrap_or(usize::MAX);
    Ok(Some((touched, note)))
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
