//! The service: one loop per task on a plain tokio interval aligned to the task's slots (missed ticks
//! skipped; a task's loop awaits its run, so one task never runs twice at once), a writer, a listener
//! for `NOTIFY pgmon_servers`, and a main loop for signals, heartbeats, server reloads and the
//! systemd watchdog.
//!
//! tokio-cron-scheduler was tried and rejected: its repeating jobs stopped after two runs (its issue
//! #113) and it spawns every firing, so runs overlap.

use crate::Ctx;
use crate::tasks::{self, Summary, Task};
use chrono::Utc;
use pgmon_shared::store::{self, collectors};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// SIGTERM to exit: task loops get part of it, the writer's final flush the rest.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(10);

fn hostname() -> String {
    // /proc/sys is hidden under the unit's ProcSubset=pid: fall back to /etc/hostname.
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

async fn register(ctx: &Ctx) -> bool {
    match collectors::register_instance(
        &ctx.pool,
        ctx.instance,
        &hostname(),
        std::process::id(),
        env!("CARGO_PKG_VERSION"),
    )
    .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot register the collector instance (store unreachable?)");
            false
        }
    }
}

async fn reload(ctx: &Ctx) -> Vec<i64> {
    match ctx.servers.reload(&ctx.pool, &ctx.crypto).await {
        Ok(changed) => changed,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reload servers; keeping the last list");
            Vec::new()
        }
    }
}

async fn record(ctx: &Ctx, summary: &Summary) {
    let level_ok = summary.error.is_none();
    if level_ok {
        tracing::info!("{}", summary.line());
    } else {
        tracing::warn!("{}", summary.line());
    }
    if let Err(e) = collectors::record_task(&ctx.pool, ctx.instance, summary.task, summary.to_json()).await {
        tracing::debug!(error = %e, "cannot record the task outcome");
    }
}

/// `once`: collects the current slot of each task in `tasks`, prints one summary line, exits.
pub async fn once(ctx: Arc<Ctx>, tasks: &[Task], rollups: bool) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let writer = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move { ctx.writer.run(&ctx.pool, stop).await })
    };
    register(&ctx).await;
    if tasks.iter().any(|t| *t != Task::Maintenance) {
        reload(&ctx).await;
        if !ctx.servers.is_loaded() {
            anyhow::bail!("cannot read the list of servers from the store");
        }
    }
    let mut parts = Vec::new();
    let mut failed = false;
    for &task in tasks {
        let slot = tasks::slot_of(Utc::now(), task.interval(&ctx.cfg.collector));
        let summary = tasks::run(&ctx, task, slot, None, &stop).await;
        failed |= summary.error.is_some();
        record(&ctx, &summary).await;
        parts.push(summary);
    }
    let flushed = ctx.writer.flush(Duration::from_secs(30)).await;
    if rollups && flushed && tasks.contains(&Task::Stats) {
        crate::writer::refresh_rollups(&ctx.pool).await;
    }
    stop.cancel();
    let _ = writer.await;
    let w = ctx.writer.stats();
    if let Err(e) = collectors::mark_stopped(&ctx.pool, ctx.instance).await {
        tracing::debug!(error = %e, "cannot mark the instance stopped");
    }
    let lines: Vec<String> = parts.iter().map(Summary::line).collect();
    let (cpu_ms, peak_rss_kb) = own_usage();
    println!(
        "pgmon-collector once instance={} {} written_rows={} unwritten_rows={} dropped_rows={} cpu_ms={} peak_rss_kb={}",
        ctx.instance,
        lines.join(" | "),
        w.written_rows,
        w.pending_rows,
        w.dropped_rows,
        cpu_ms,
        peak_rss_kb
    );
    if !flushed {
        anyhow::bail!("{} rows could not be written to the store", w.pending_rows);
    }
    if failed {
        anyhow::bail!("a task failed; see the summary");
    }
    Ok(())
}

/// This process's CPU time (user + system, ms) and peak RSS (kB) from /proc/self, for the summary
/// line the benchmark reads; zeros where /proc is unavailable.
fn own_usage() -> (u64, u64) {
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            // USER_HZ is 100 on every Linux architecture pgmon targets.
            Some(ticks * 10)
        })
        .unwrap_or(0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    (cpu, rss)
}

/// `run`: the service, until SIGTERM or SIGINT.
pub async fn run(ctx: Arc<Ctx>) -> anyhow::Result<()> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    if let Err(e) = store::migrate(&ctx.pool).await {
        tracing::warn!(error = %e, "cannot apply migrations now (store unreachable?); continuing");
    }
    let mut registered = register(&ctx).await;
    reload(&ctx).await;

    let stop = CancellationToken::new();
    let writer_stop = CancellationToken::new();
    let loops = TaskTracker::new();
    let writer = {
        let (ctx, stop) = (ctx.clone(), writer_stop.clone());
        tokio::spawn(async move { ctx.writer.run(&ctx.pool, stop).await })
    };
    let mut kicks = Vec::new();
    for task in Task::ALL {
        let (tx, rx) = mpsc::unbounded_channel::<Vec<i64>>();
        kicks.push((task, tx));
        loops.spawn(task_loop(ctx.clone(), task, rx, stop.clone()));
    }
    loops.close();
    let (notify_tx, mut notify_rx) = mpsc::unbounded_channel::<String>();
    let listener = tokio::spawn(listen(ctx.clone(), notify_tx, stop.clone()));

    println!("pgmon-collector running instance={}", ctx.instance);
    tracing::info!(instance = %ctx.instance, servers = ctx.servers.list().len(), "collector started");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
    let mut reload_tick = tokio::time::interval_at(Instant::now() + RELOAD_EVERY, RELOAD_EVERY);
    for t in [&mut watchdog_tick, &mut heartbeat, &mut reload_tick] {
        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
    }
    loop {
        let changed = tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = watchdog_tick.tick() => {
                if watchdog.is_some() && tasks_alive(&ctx) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                continue;
            }
            _ = heartbeat.tick() => {
                registered = if registered {
                    matches!(collectors::heartbeat(&ctx.pool, ctx.instance).await, Ok(true))
                        || register(&ctx).await
                } else {
                    register(&ctx).await
                };
                continue;
            }
            _ = reload_tick.tick() => reload(&ctx).await,
            Some(name) = notify_rx.recv() => {
                tracing::info!(server = %name, "servers changed; reloading");
                // Coalesce a burst of notifications into one reload.
                while notify_rx.try_recv().is_ok() {}
                reload(&ctx).await
            }
        };
        if !changed.is_empty() {
            for (task, tx) in &kicks {
                if *task != Task::Maintenance {
                    let _ = tx.send(changed.clone());
                }
            }
        }
    }

    tracing::info!("stopping: finishing runs in progress and writes in flight");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let deadline = Instant::now() + SHUTDOWN_BUDGET;
    stop.cancel();
    let _ = tokio::time::timeout(SHUTDOWN_BUDGET / 2, loops.wait()).await;
    let left = deadline.saturating_duration_since(Instant::now());
    let flushed = ctx
        .writer
        .flush(left.saturating_sub(Duration::from_millis(500)))
        .await;
    writer_stop.cancel();
    writer.abort();
    listener.abort();
    let w = ctx.writer.stats();
    if !flushed {
        tracing::warn!(
            unwritten_rows = w.pending_rows,
            "stopping with snapshots that could not be written"
        );
    }
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        collectors::mark_stopped(&ctx.pool, ctx.instance),
    )
    .await;
    tracing::info!(
        written_rows = w.written_rows,
        dropped_rows = w.dropped_rows,
        "collector stopped"
    );
    Ok(())
}

/// False when a task's run has lasted far longer than any healthy run can (every remote call has a
/// deadline, so only a bug gets there): the watchdog is then starved and systemd restarts the service.
fn tasks_alive(ctx: &Ctx) -> bool {
    let now = Utc::now().timestamp();
    Task::ALL.iter().all(|t| {
        let since = ctx.busy_since[t.index()].load(Ordering::Relaxed);
        let limit = 2 * i64::try_from(t.interval(&ctx.cfg.collector).as_secs()).unwrap_or(i64::MAX / 4) + 600;
        let stuck = since != 0 && now - since > limit;
        if stuck {
            tracing::error!(
                task = t.as_str(),
                running_secs = now - since,
                "task run hung; starving the watchdog"
            );
        }
        !stuck
    })
}

/// One task's schedule: a run at start, then one per slot boundary; changed servers are collected
/// at once for the current slot.
async fn task_loop(
    ctx: Arc<Ctx>,
    task: Task,
    mut kicks: mpsc::UnboundedReceiver<Vec<i64>>,
    stop: CancellationToken,
) {
    let every = task.interval(&ctx.cfg.collector);
    let now = Utc::now();
    let next = tasks::slot_of(now, every) + chrono::Duration::from_std(every).unwrap_or_default();
    let wait = (next - now).to_std().unwrap_or_default();
    let mut ticker = tokio::time::interval_at(Instant::now() + wait, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut only: Option<HashSet<i64>> = None;
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => only = None,
                Some(ids) = kicks.recv() => {
                    let mut set: HashSet<i64> = ids.into_iter().collect();
                    while let Ok(more) = kicks.try_recv() {
                        set.extend(more);
                    }
                    only = Some(set);
                }
            }
        }
        first = false;
        if task != Task::Maintenance && !ctx.servers.is_loaded() {
            continue;
        }
        let slot = tasks::slot_of(Utc::now(), every);
        let busy = &ctx.busy_since[task.index()];
        busy.store(Utc::now().timestamp(), Ordering::Relaxed);
        let summary = tasks::run(&ctx, task, slot, only.as_ref(), &stop).await;
        busy.store(0, Ordering::Relaxed);
        if only.is_none() || summary.servers > 0 {
            record(&ctx, &summary).await;
        }
        if task == Task::Stats && summary.rows > 0 {
            // Once this slot is in the store, fold it into the rollups the read API serves.
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let Ok(_guard) = ctx.rollup_lock.try_lock() else {
                    return;
                };
                if ctx.writer.flush(every).await {
                    crate::writer::refresh_rollups(&ctx.pool).await;
                }
            });
        }
    }
}

/// Forwards `NOTIFY pgmon_servers` payloads; reconnects after the store comes back.
async fn listen(ctx: Arc<Ctx>, tx: mpsc::UnboundedSender<String>, stop: CancellationToken) {
    let channel = store::servers::NOTIFY_CHANNEL;
    let mut delay = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&ctx.pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot LISTEN yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if let Err(e) = listener.listen(channel).await {
            tracing::debug!(error = %e, "LISTEN failed");
            tokio::time::sleep(delay).await;
            continue;
        }
        delay = Duration::from_secs(1);
        // A reload after (re)connecting catches changes made while nobody listened.
        let _ = tx.send(String::from("(listener connected)"));
        loop {
            match listener.recv().await {
                Ok(n) => {
                    let _ = tx.send(n.payload().chars().take(200).collect());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection lost");
                    tokio::time::sleep(delay).await;
                    break;
                }
            }
        }
    }
}
