//! The service: one loop per task on a plain tokio interval aligned to the task's slots (missed ticks
//! skipped; a task's loop awaits its run, so one task never runs twice at once), a writer and its
//! spiller, a listener for `NOTIFY pgmon_servers`, a chores task for heartbeats and server and
//! settings reloads, and a main loop for signals and the systemd watchdog.
//!
//! The main loop never awaits the store: a store that hangs (a half-open connection, a black-holed
//! network) must not keep SIGTERM or `WATCHDOG=1` waiting, or systemd kills the process. Every store
//! call elsewhere has a deadline (`store.call_timeout_secs`).
//!
//! tokio-cron-scheduler was tried and rejected: its repeating jobs stopped after two runs (its issue
//! #113) and it spawns every firing, so runs overlap.

use crate::Ctx;
use crate::tasks::{self, Summary, Task};
use chrono::Utc;
use pgmon_shared::store::system_log::{self, Level, NewEntry};
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
    match ctx
        .store(collectors::register_instance(
            &ctx.pool,
            ctx.instance,
            &hostname(),
            std::process::id(),
            env!("CARGO_PKG_VERSION"),
        ))
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
    match ctx.store(ctx.servers.reload(&ctx.pool, &ctx.crypto)).await {
        Ok(changed) => changed,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reload servers; keeping the last list");
            Vec::new()
        }
    }
}

async fn record(ctx: &Ctx, task: Task, summary: &Summary) {
    ctx.counters.runs[task.index()].fetch_add(1, Ordering::Relaxed);
    ctx.counters.run_ms[task.index()].fetch_add(
        u64::try_from(summary.duration_ms).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    let level_ok = summary.error.is_none();
    if level_ok {
        tracing::info!("{}", summary.line());
    } else {
        tracing::warn!("{}", summary.line());
    }
    if let Some(entry) = summary.log_entry(task) {
        ctx.journal.queue(entry);
    }
    let call = collectors::record_task(&ctx.pool, ctx.instance, summary.task, summary.to_json());
    if let Err(e) = ctx.store(call).await {
        tracing::debug!(error = %e, "cannot record the task outcome");
    }
}

/// `once`: collects the current slot of each task in `tasks`, prints one summary line, exits.
pub async fn once(ctx: Arc<Ctx>, tasks: &[Task], rollups: bool) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let writer = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move { ctx.writer.run(&ctx.pool, &ctx.journal, ctx.instance, stop).await })
    };
    let journal = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move { ctx.journal.run(ctx.pool.clone(), stop).await })
    };
    ctx.open_spool();
    let spiller = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move { ctx.writer.run_spiller(&ctx.journal, stop).await })
    };
    crate::liveness::start(ctx.clone(), stop.clone()).await;
    register(&ctx).await;
    crate::load_settings(&ctx).await;
    if tasks.iter().any(|t| *t != Task::Maintenance) {
        reload(&ctx).await;
        if !ctx.servers.is_loaded() {
            anyhow::bail!("cannot read the list of servers from the store");
        }
    }
    let mut parts = Vec::new();
    let mut failed = false;
    for &task in tasks {
        let slot = tasks::slot_of(Utc::now(), task.interval(&ctx));
        let summary = tasks::run(&ctx, task, slot, None, &stop).await;
        failed |= summary.error.is_some();
        record(&ctx, task, &summary).await;
        parts.push(summary);
    }
    let flushed = ctx.writer.flush(Duration::from_secs(30)).await;
    if rollups && flushed && tasks.contains(&Task::Stats) {
        refresh_new_rollups(&ctx).await;
    }
    ctx.journal.flush(Duration::from_secs(5)).await;
    stop.cancel();
    let _ = writer.await;
    let _ = journal.await;
    let _ = spiller.await;
    // What the store did not take stays on disk for the next collector on this host.
    ctx.writer.close();
    let w = ctx.writer.stats();
    if let Err(e) = ctx.store(collectors::mark_stopped(&ctx.pool, ctx.instance)).await {
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
        anyhow::bail!(
            "{} rows could not be written to the store; they wait in {} for the next start",
            w.pending_rows,
            ctx.cfg.collector.spool_dir.display()
        );
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
    ctx.open_spool();
    let alive = CancellationToken::new();
    // The store may hang at start too: signals are served meanwhile, each call has a deadline.
    let startup = async {
        // Migrations may rightly take a while (the API applies them too); still bounded.
        let limit = ctx.cfg.store.call_timeout() * 4;
        if let Err(e) = store::deadline(limit, store::migrate(&ctx.pool)).await {
            tracing::warn!(error = %e, "cannot apply migrations now (store unreachable?); continuing");
        }
        crate::liveness::start(ctx.clone(), alive.clone()).await;
        let registered = register(&ctx).await;
        reload(&ctx).await;
        crate::load_settings(&ctx).await;
        registered
    };
    let registered = tokio::select! {
        r = startup => r,
        _ = sigterm.recv() => return stop_early(&ctx),
        _ = sigint.recv() => return stop_early(&ctx),
    };

    let stop = CancellationToken::new();
    let writer_stop = CancellationToken::new();
    let loops = TaskTracker::new();
    let writer = {
        let (ctx, stop) = (ctx.clone(), writer_stop.clone());
        tokio::spawn(async move { ctx.writer.run(&ctx.pool, &ctx.journal, ctx.instance, stop).await })
    };
    let journal = {
        let (ctx, stop) = (ctx.clone(), writer_stop.clone());
        tokio::spawn(async move { ctx.journal.run(ctx.pool.clone(), stop).await })
    };
    let spiller = {
        let (ctx, stop) = (ctx.clone(), writer_stop.clone());
        tokio::spawn(async move { ctx.writer.run_spiller(&ctx.journal, stop).await })
    };
    let mut kicks = Vec::new();
    for task in Task::ALL {
        let (tx, rx) = mpsc::unbounded_channel::<Vec<i64>>();
        kicks.push((task, tx));
        loops.spawn(task_loop(ctx.clone(), task, rx, stop.clone()));
    }
    loops.close();
    let (notify_tx, notify_rx) = mpsc::unbounded_channel::<Notice>();
    let listener = tokio::spawn(listen(ctx.clone(), notify_tx, stop.clone()));
    let chores = tokio::spawn(chores(ctx.clone(), kicks, notify_rx, registered));

    println!("pgmon-collector running instance={}", ctx.instance);
    let s = ctx.settings();
    ctx.journal.log(
        NewEntry::new(Level::Info, system_log::source::SYSTEM, "collector started").details(format!(
            "instance {} on {} (pid {}, version {}); {} servers; intervals: statistics {} s, sizes {} s, \
             database list {} s",
            ctx.instance,
            hostname(),
            std::process::id(),
            env!("CARGO_PKG_VERSION"),
            ctx.servers.list().len(),
            s.collect_interval().as_secs(),
            s.size_update_interval().as_secs(),
            s.db_check_interval().as_secs(),
        )),
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick = tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    watchdog_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = watchdog_tick.tick() => {
                if watchdog.is_some() && tasks_alive(&ctx) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        }
    }

    tracing::info!("stopping: finishing runs in progress and writes in flight");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let deadline = Instant::now() + SHUTDOWN_BUDGET;
    chores.abort();
    stop.cancel();
    let _ = tokio::time::timeout(SHUTDOWN_BUDGET / 2, loops.wait()).await;
    // The next collector of each server continues its statement deltas from these.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        tasks::hand_over(&ctx, ctx.statements.hand_over_all()),
    )
    .await;
    let left = deadline.saturating_duration_since(Instant::now());
    let flushed = ctx
        .writer
        .flush(left.saturating_sub(Duration::from_millis(500)))
        .await;
    writer_stop.cancel();
    writer.abort();
    listener.abort();
    spiller.abort();
    // What the store did not take stays on disk for the next start.
    ctx.writer.close();
    let w = ctx.writer.stats();
    if !flushed {
        tracing::warn!(
            unwritten_rows = w.pending_rows,
            dir = %ctx.cfg.collector.spool_dir.display(),
            "stopping with snapshots that could not be written; they stay in the spool"
        );
    }
    ctx.journal.log(
        NewEntry::new(Level::Info, system_log::source::SYSTEM, "collector stopped").details(format!(
            "instance {}; rows written {}, dropped {}, not written {}",
            ctx.instance, w.written_rows, w.dropped_rows, w.pending_rows
        )),
    );
    let _ = tokio::time::timeout(
        Duration::from_millis(700),
        ctx.journal.flush(Duration::from_millis(600)),
    )
    .await;
    journal.abort();
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        collectors::mark_stopped(&ctx.pool, ctx.instance),
    )
    .await;
    alive.cancel();
    Ok(())
}

/// SIGTERM before the service got going (the store hung at start): what was replayed from the spool
/// stays there.
fn stop_early(ctx: &Ctx) -> anyhow::Result<()> {
    tracing::info!("stopping before start-up finished");
    ctx.writer.close();
    Ok(())
}

/// Heartbeats, and reloads of servers and settings (on a timer and on notifications), off the main
/// loop: each store call here has a deadline, and the main loop never waits for this task.
async fn chores(
    ctx: Arc<Ctx>,
    kicks: Vec<(Task, mpsc::UnboundedSender<Vec<i64>>)>,
    mut notify_rx: mpsc::UnboundedReceiver<Notice>,
    mut registered: bool,
) {
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
    let mut reload_tick = tokio::time::interval_at(Instant::now() + RELOAD_EVERY, RELOAD_EVERY);
    for t in [&mut heartbeat, &mut reload_tick] {
        t.set_missed_tick_behavior(MissedTickBehavior::Skip);
    }
    loop {
        let changed = tokio::select! {
            _ = heartbeat.tick() => {
                registered = if registered {
                    let beat = collectors::heartbeat(&ctx.pool, ctx.instance, ctx.counters_json());
                    matches!(ctx.store(beat).await, Ok(true)) || register(&ctx).await
                } else {
                    register(&ctx).await
                };
                continue;
            }
            _ = reload_tick.tick() => {
                // Settings too, in case a notification was lost with a connection.
                crate::load_settings(&ctx).await;
                reload(&ctx).await
            }
            notice = notify_rx.recv() => {
                let Some(notice) = notice else { return };
                // Coalesce a burst of notifications into one reload of each kind.
                let mut notices = vec![notice];
                while let Ok(n) = notify_rx.try_recv() {
                    notices.push(n);
                }
                if notices.iter().any(|n| matches!(n, Notice::Settings | Notice::Connected)) {
                    crate::load_settings(&ctx).await;
                }
                match notices.iter().find(|n| !matches!(n, Notice::Settings)) {
                    Some(Notice::Servers(name)) => {
                        tracing::info!(server = %name, "servers changed; reloading");
                        reload(&ctx).await
                    }
                    Some(_) => reload(&ctx).await,
                    None => continue,
                }
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
}

/// Folds the newest stats slot into the rollups, bounded: a refresh cut short is redone by the next.
async fn refresh_new_rollups(ctx: &Ctx) {
    let limit = ctx.cfg.store.call_timeout() * 4;
    if tokio::time::timeout(limit, crate::writer::refresh_new_rollups(&ctx.pool))
        .await
        .is_err()
    {
        tracing::warn!("refreshing rollups did not finish in time; the next refresh catches up");
    }
}

/// False when a task's run has lasted far longer than any healthy run can (every remote call has a
/// deadline, so only a bug gets there): the watchdog is then starved and systemd restarts the service.
fn tasks_alive(ctx: &Ctx) -> bool {
    let now = Utc::now().timestamp();
    Task::ALL.iter().all(|t| {
        let since = ctx.busy_since[t.index()].load(Ordering::Relaxed);
        let limit = 2 * i64::try_from(t.interval(ctx).as_secs()).unwrap_or(i64::MAX / 4) + 600;
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

/// The next slot boundary of `every` after now, as a tokio ticker.
fn ticker_for(every: Duration) -> tokio::time::Interval {
    let now = Utc::now();
    let next = tasks::slot_of(now, every) + chrono::Duration::from_std(every).unwrap_or_default();
    let wait = (next - now).to_std().unwrap_or_default();
    let mut ticker = tokio::time::interval_at(Instant::now() + wait, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticker
}

/// One task's schedule: a run at start, then one per slot boundary; changed servers are collected
/// at once for the current slot. A new interval (a runtime setting) reschedules the next run to the
/// new interval's next boundary at once: a shorter interval never waits out the old one.
async fn task_loop(
    ctx: Arc<Ctx>,
    task: Task,
    mut kicks: mpsc::UnboundedReceiver<Vec<i64>>,
    stop: CancellationToken,
) {
    let mut settings = ctx.settings.subscribe();
    let mut every = task.interval(&ctx);
    let mut ticker = ticker_for(every);
    let mut only: Option<HashSet<i64>> = None;
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => only = None,
                Ok(()) = settings.changed() => {
                    let now_every = task.interval(&ctx);
                    if now_every != every {
                        tracing::info!(
                            task = task.as_str(),
                            from_secs = every.as_secs(),
                            to_secs = now_every.as_secs(),
                            "interval changed; rescheduled"
                        );
                        every = now_every;
                        ticker = ticker_for(every);
                    }
                    continue;
                }
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
            record(&ctx, task, &summary).await;
        }
        if task == Task::Stats && summary.rows > 0 {
            // Once this slot is in the store, fold it into the rollups the read API serves.
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let Ok(_guard) = ctx.rollup_lock.try_lock() else {
                    return;
                };
                if ctx.writer.flush(every).await {
                    refresh_new_rollups(&ctx).await;
                }
            });
        }
    }
}

/// What the store told the collector.
#[derive(Debug)]
enum Notice {
    /// A server changed (the payload, cut short).
    Servers(String),
    Settings,
    /// The listener (re)connected: changes made meanwhile went unheard.
    Connected,
}

/// Forwards `NOTIFY pgmon_servers` and `pgmon_settings`; reconnects after the store comes back.
async fn listen(ctx: Arc<Ctx>, tx: mpsc::UnboundedSender<Notice>, stop: CancellationToken) {
    let channels = [store::servers::NOTIFY_CHANNEL, store::settings::SETTINGS_CHANNEL];
    let mut delay = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let connect =
            async { Ok::<_, store::StoreError>(sqlx::postgres::PgListener::connect_with(&ctx.pool).await?) };
        let mut listener = match ctx.store(connect).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot LISTEN yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let subscribe = async { Ok::<_, store::StoreError>(listener.listen_all(channels).await?) };
        if let Err(e) = ctx.store(subscribe).await {
            tracing::debug!(error = %e, "LISTEN failed");
            tokio::time::sleep(delay).await;
            continue;
        }
        delay = Duration::from_secs(1);
        let _ = tx.send(Notice::Connected);
        loop {
            match listener.recv().await {
                Ok(n) if n.channel() == store::settings::SETTINGS_CHANNEL => {
                    let _ = tx.send(Notice::Settings);
                }
                Ok(n) => {
                    let _ = tx.send(Notice::Servers(n.payload().chars().take(200).collect()));
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
