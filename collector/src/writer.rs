//! The write path: snapshots queue here in the order they were taken and are written in that order,
//! several per transaction, each whole or not at all.
//!
//! While the store is unreachable the queue grows up to `collector.buffer_max_rows`; beyond it the
//! oldest snapshots are dropped, counted and logged. A batch the store refuses for another reason
//! (a bug, a constraint) is retried a few times, then written alone and dropped if it still fails, so
//! one bad batch never blocks the others.

use chrono::{DateTime, Utc};
use pgmon_shared::journal::Journal;
use pgmon_shared::store::collectors::{self, DatabaseInfo};
use pgmon_shared::store::history::{
    self,
    activity::ActivityRow,
    archiver::ArchiverRow,
    checkpointer::CheckpointerRow,
    io::IoRow,
    replication::{SlotRow, StandbyRow},
    statements::{StatementRow, TextRow},
    wal::WalRow,
};
use pgmon_shared::store::stats::{self, AvailabilityRow, DbSizeRow, DiskUsageRow, StatDatabaseRow};
use pgmon_shared::store::system_log::{self, Level, NewEntry};
use pgmon_shared::store::{StoreError, rollups};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows written per transaction at most (a batch is never split).
const GROUP_ROWS: usize = 10_000;
/// Attempts of a group the store refuses for a reason other than being unreachable.
const MAX_ATTEMPTS: u32 = 3;

/// Rows of one family from one server's snapshot.
#[derive(Debug, Clone)]
pub enum Rows {
    StatDatabase(Vec<StatDatabaseRow>),
    Availability(AvailabilityRow),
    DbSize(Vec<DbSizeRow>),
    Disk(DiskUsageRow),
    Databases {
        server_id: i64,
        seen_at: DateTime<Utc>,
        dbs: Vec<DatabaseInfo>,
    },
    Activity(ActivityRow),
    Standbys(Vec<StandbyRow>),
    Slots(Vec<SlotRow>),
    Checkpointer(CheckpointerRow),
    Wal(WalRow),
    Archiver(ArchiverRow),
    Io(Vec<IoRow>),
    Statements(Vec<StatementRow>),
    StatementTexts(Vec<TextRow>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::StatDatabase(v) => v.len(),
            Rows::DbSize(v) => v.len(),
            Rows::Databases { dbs, .. } => dbs.len().max(1),
            Rows::Standbys(v) => v.len(),
            Rows::Slots(v) => v.len(),
            Rows::Io(v) => v.len(),
            Rows::Statements(v) => v.len(),
            Rows::StatementTexts(v) => v.len(),
            Rows::Availability(_)
            | Rows::Disk(_)
            | Rows::Activity(_)
            | Rows::Checkpointer(_)
            | Rows::Wal(_)
            | Rows::Archiver(_) => 1,
        }
    }

    fn slot(&self) -> Option<DateTime<Utc>> {
        match self {
            Rows::StatDatabase(v) => v.first().map(|r| r.slot),
            Rows::Availability(a) => Some(a.slot),
            Rows::DbSize(v) => v.first().map(|r| r.slot),
            Rows::Disk(d) => Some(d.slot),
            Rows::Activity(a) => Some(a.slot),
            Rows::Standbys(v) => v.first().map(|r| r.slot),
            Rows::Slots(v) => v.first().map(|r| r.slot),
            Rows::Checkpointer(r) => Some(r.slot),
            Rows::Wal(r) => Some(r.slot),
            Rows::Archiver(r) => Some(r.slot),
            Rows::Io(v) => v.first().map(|r| r.slot),
            Rows::Statements(v) => v.first().map(|r| r.slot),
            Rows::Databases { .. } | Rows::StatementTexts(_) => None,
        }
    }
}

/// One snapshot of one server (every family of one task), written atomically.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub rows: Vec<Rows>,
}

impl Batch {
    /// Rows the batch holds, as counted against the buffer bound.
    pub fn rows(&self) -> usize {
        self.rows.iter().map(Rows::len).sum::<usize>().max(1)
    }

    fn slots(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.rows.iter().filter_map(Rows::slot)
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Batch>,
    queued_rows: usize,
    in_flight_rows: usize,
    written_rows: u64,
    dropped_rows: u64,
}

/// Counters for summaries and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub pending_rows: usize,
    pub written_rows: u64,
    pub dropped_rows: u64,
}

pub struct Writer {
    state: Mutex<State>,
    wake: Notify,
    max_rows: usize,
}

impl Writer {
    pub fn new(max_rows: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            max_rows: max_rows.max(1),
        }
    }

    /// Queues a snapshot; drops the oldest ones when the bound is passed.
    pub fn push(&self, batch: Batch) {
        let mut dropped = 0usize;
        if let Ok(mut s) = self.state.lock() {
            s.queued_rows += batch.rows();
            s.queue.push_back(batch);
            while s.queued_rows + s.in_flight_rows > self.max_rows && s.queue.len() > 1 {
                if let Some(old) = s.queue.pop_front() {
                    s.queued_rows -= old.rows();
                    dropped += old.rows();
                }
            }
            s.dropped_rows += dropped as u64;
            if dropped > 0 {
                tracing::warn!(
                    dropped_rows = dropped,
                    dropped_total = s.dropped_rows,
                    buffer_max_rows = self.max_rows,
                    "snapshot buffer full: dropped the oldest snapshots"
                );
            }
        }
        self.wake.notify_one();
    }

    pub fn stats(&self) -> WriterStats {
        self.state
            .lock()
            .map(|s| WriterStats {
                pending_rows: s.queued_rows + s.in_flight_rows,
                written_rows: s.written_rows,
                dropped_rows: s.dropped_rows,
            })
            .unwrap_or_default()
    }

    /// Waits until everything queued so far is written, or `timeout` passes; true when empty.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stats().pending_rows == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn take_group(&self) -> Vec<Batch> {
        let Ok(mut s) = self.state.lock() else {
            return Vec::new();
        };
        let mut group = Vec::new();
        let mut rows = 0;
        while let Some(b) = s.queue.front() {
            if !group.is_empty() && rows + b.rows() > GROUP_ROWS {
                break;
            }
            rows += b.rows();
            if let Some(b) = s.queue.pop_front() {
                group.push(b);
            }
        }
        s.queued_rows -= rows;
        s.in_flight_rows = rows;
        group
    }

    /// Puts a group that could not be written back at the head of the queue, in order.
    fn requeue(&self, group: Vec<Batch>) {
        if let Ok(mut s) = self.state.lock() {
            s.in_flight_rows = 0;
            for b in group.into_iter().rev() {
                s.queued_rows += b.rows();
                s.queue.push_front(b);
            }
        }
    }

    fn done(&self, written: usize, dropped: usize) {
        if let Ok(mut s) = self.state.lock() {
            s.in_flight_rows = 0;
            s.written_rows += written as u64;
            s.dropped_rows += dropped as u64;
        }
    }

    /// Writes queued snapshots until `stop` is cancelled (the caller bounds the final flush). An
    /// outage of the store ends with one system-log entry saying how long it lasted and what was
    /// buffered and dropped.
    pub async fn run(&self, pool: &PgPool, journal: &Journal, instance: Uuid, stop: CancellationToken) {
        let mut retry = Duration::from_millis(500);
        let mut down_since: Option<(Instant, DateTime<Utc>, u64)> = None;
        let mut attempts = 0u32;
        loop {
            let group = self.take_group();
            if group.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stop.cancelled() => return,
                }
            }
            let rows: usize = group.iter().map(Batch::rows).sum();
            match write_group(pool, &group, instance).await {
                Ok(()) => {
                    if let Some((since, at, dropped_before)) = down_since.take() {
                        tracing::info!(
                            down_secs = since.elapsed().as_secs(),
                            "store reachable again; writing buffered snapshots"
                        );
                        let st = self.stats();
                        let dropped = st.dropped_rows - dropped_before;
                        let level = if dropped > 0 { Level::Error } else { Level::Warning };
                        journal.queue(
                            NewEntry::new(
                                level,
                                system_log::source::SYSTEM,
                                format!("the store was unreachable for {} s", since.elapsed().as_secs()),
                            )
                            .details(format!(
                                "from {}; {} rows were buffered in memory and are being written; \
                                 {dropped} rows were dropped (collector.buffer_max_rows = {})",
                                at.to_rfc3339(),
                                st.pending_rows,
                                self.max_rows
                            )),
                        );
                    }
                    retry = Duration::from_millis(500);
                    attempts = 0;
                    self.done(rows, 0);
                }
                Err(e) if stats::is_missing_partition(&e) => {
                    let slots: Vec<_> = group.iter().flat_map(Batch::slots).collect();
                    let (from, to) = (slots.iter().min().copied(), slots.iter().max().copied());
                    self.requeue(group);
                    if let (Some(from), Some(to)) = (from, to) {
                        tracing::info!(%from, %to, "creating missing stats partitions");
                        if let Err(e) = stats::ensure_partitions(pool, from, to).await {
                            tracing::warn!(error = %e, "cannot create partitions");
                            sleep_or_stop(retry, &stop).await;
                        }
                    }
                    attempts += 1;
                }
                Err(StoreError::Unavailable(msg)) => {
                    if down_since.is_none() {
                        down_since = Some((Instant::now(), Utc::now(), self.stats().dropped_rows));
                        tracing::warn!(error = %msg, "store unreachable: buffering snapshots in memory");
                    }
                    self.requeue(group);
                    sleep_or_stop(retry, &stop).await;
                    if stop.is_cancelled() {
                        // During shutdown the caller's deadline decides; keep trying quickly.
                        retry = Duration::from_millis(200);
                    } else {
                        retry = (retry * 2).min(Duration::from_secs(10));
                    }
                }
                Err(e) if attempts + 1 < MAX_ATTEMPTS => {
                    tracing::warn!(error = %e, "writing snapshots failed; retrying");
                    attempts += 1;
                    self.requeue(group);
                    sleep_or_stop(retry, &stop).await;
                }
                Err(e) => {
                    attempts = 0;
                    tracing::warn!(error = %e, "writing snapshots failed again; writing them one by one");
                    let (mut written, mut dropped) = (0, 0);
                    for b in group {
                        match write_group(pool, std::slice::from_ref(&b), instance).await {
                            Ok(()) => written += b.rows(),
                            Err(e) => {
                                dropped += b.rows();
                                tracing::error!(error = %e, rows = b.rows(), "store refused a snapshot; dropped it");
                            }
                        }
                    }
                    self.done(written, dropped);
                }
            }
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => tokio::time::sleep(d.min(Duration::from_millis(200))).await,
    }
}

/// Writes whole batches in one transaction, with the down/up entries their availability samples
/// call for.
pub async fn write_group(pool: &PgPool, group: &[Batch], instance: Uuid) -> Result<(), StoreError> {
    let mut stat_rows: Vec<&StatDatabaseRow> = Vec::new();
    let mut avail = Vec::new();
    let mut sizes = Vec::new();
    let mut disks = Vec::new();
    let mut activity = Vec::new();
    let mut standbys = Vec::new();
    let mut slots = Vec::new();
    let mut checkpointer = Vec::new();
    let mut wal = Vec::new();
    let mut archiver = Vec::new();
    let mut io = Vec::new();
    let mut statements = Vec::new();
    let mut texts = Vec::new();
    let mut tx = pool.begin().await?;
    for r in group.iter().flat_map(|b| b.rows.iter()) {
        match r {
            Rows::StatDatabase(v) => stat_rows.extend(v.iter()),
            Rows::Availability(a) => avail.push(a.clone()),
            Rows::DbSize(v) => sizes.extend(v.iter().cloned()),
            Rows::Disk(d) => disks.push(d.clone()),
            Rows::Databases {
                server_id,
                seen_at,
                dbs,
            } => {
                collectors::apply_databases(&mut tx, *server_id, *seen_at, dbs).await?;
            }
            Rows::Activity(a) => activity.push(a),
            Rows::Standbys(v) => standbys.extend(v.iter()),
            Rows::Slots(v) => slots.extend(v.iter()),
            Rows::Checkpointer(c) => checkpointer.push(c),
            Rows::Wal(w) => wal.push(w),
            Rows::Archiver(a) => archiver.push(a),
            Rows::Io(v) => io.extend(v.iter()),
            Rows::Statements(v) => statements.extend(v.iter()),
            Rows::StatementTexts(v) => texts.extend(v.iter()),
        }
    }
    stats::insert_stat_database(&mut tx, &stat_rows).await?;
    let written = stats::insert_availability(&mut tx, &avail).await?;
    stats::insert_db_size(&mut tx, &sizes).await?;
    stats::insert_disk_usage(&mut tx, &disks).await?;
    history::activity::insert(&mut tx, &activity).await?;
    history::replication::insert_standbys(&mut tx, &standbys).await?;
    history::replication::insert_slots(&mut tx, &slots).await?;
    history::checkpointer::insert(&mut tx, &checkpointer).await?;
    history::wal::insert(&mut tx, &wal).await?;
    history::archiver::insert(&mut tx, &archiver).await?;
    history::io::insert(&mut tx, &io).await?;
    // Texts first: a statement's row refreshes its text's last_seen.
    history::statements::insert_texts(&mut tx, &texts).await?;
    history::statements::insert(&mut tx, &statements).await?;
    let written: HashSet<(i64, DateTime<Utc>)> = written.into_iter().collect();
    let fresh: Vec<&AvailabilityRow> = avail
        .iter()
        .filter(|a| written.contains(&(a.server_id, a.slot)))
        .collect();
    log_transitions(&mut tx, &fresh, instance).await?;
    tx.commit().await?;
    Ok(())
}

/// Down/up entries a server may get per hour; beyond them a flapping server is logged again, in the
/// state it is then in, once the hour has room.
const TRANSITIONS_PER_HOUR: i64 = 6;

/// Compares each server's newest sample just written with its last down/up entry in the system
/// log and writes an entry where they differ: once per transition however many cycles a server
/// stays down, the same with several collectors and across restarts, since the log itself is the
/// state. A server first seen down gets a "down" entry; one first seen up, none.
async fn log_transitions(
    conn: &mut sqlx::PgConnection,
    samples: &[&AvailabilityRow],
    instance: Uuid,
) -> Result<(), StoreError> {
    let mut newest: HashMap<i64, &AvailabilityRow> = HashMap::new();
    for a in samples {
        let e = newest.entry(a.server_id).or_insert(a);
        if a.slot > e.slot {
            *e = a;
        }
    }
    if newest.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = newest.keys().copied().collect();
    let last: HashMap<i64, (String, DateTime<Utc>, i64)> =
        system_log::last_transitions(conn, &ids, Duration::from_secs(3600))
            .await?
            .into_iter()
            .map(|(id, event, at, n)| (id, (event, at, n)))
            .collect();
    let mut due = Vec::new();
    for (id, a) in &newest {
        match last.get(id) {
            None if !a.up => due.push((*a, None)),
            Some((event, at, n))
                if (event == system_log::event::SERVER_DOWN) == a.up && *n < TRANSITIONS_PER_HOUR =>
            {
                due.push((*a, Some(*at)))
            }
            _ => {}
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    let due_ids: Vec<i64> = due.iter().map(|(a, _)| a.server_id).collect();
    let names: HashMap<i64, String> = sqlx::query_as("SELECT id, name FROM servers WHERE id = ANY($1)")
        .bind(&due_ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let entries: Vec<NewEntry> = due
        .into_iter()
        .map(|(a, since)| {
            let name = names
                .get(&a.server_id)
                .cloned()
                .unwrap_or_else(|| format!("#{}", a.server_id));
            let mut e = if a.up {
                let details = since
                    .map(|s| {
                        let mins = (a.collected_at - s).num_seconds().max(0) as f64 / 60.0;
                        format!("down since {} ({mins:.1} min)", s.to_rfc3339())
                    })
                    .unwrap_or_default();
                NewEntry::new(
                    Level::Info,
                    system_log::source::COLLECTOR_STATS,
                    format!("server {name} is up again"),
                )
                .details(details)
                .event(system_log::event::SERVER_UP)
            } else {
                let why = match (&a.error_class, &a.error) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.clone(),
                    (None, Some(m)) => m.clone(),
                    (None, None) => String::new(),
                };
                NewEntry::new(
                    Level::Error,
                    system_log::source::COLLECTOR_STATS,
                    format!("server {name} is down"),
                )
                .details(why)
                .event(system_log::event::SERVER_DOWN)
            };
            e.at = a.collected_at;
            e.server(a.server_id)
        })
        .collect();
    for e in &entries {
        tracing::info!(server_id = e.server_id, "{}", e.message);
    }
    system_log::insert(&mut *conn, crate::PROCESS, Some(instance), &entries).await
}

/// Rolls up the slots written since the last refresh (after each stats slot).
pub async fn refresh_new_rollups(pool: &PgPool) {
    match rollups::refresh_new(pool).await {
        Ok(n) => tracing::debug!(rows = n, "rollups refreshed"),
        Err(e) => tracing::warn!(error = %e, "refreshing rollups failed"),
    }
}

/// Refreshes the read API's rollups with the lookback (maintenance); a failure is logged and the
/// next refresh catches up.
pub async fn refresh_rollups(pool: &PgPool) {
    match rollups::refresh_rollups(pool).await {
        Ok(n) => tracing::debug!(rows = n, "rollups refreshed"),
        Err(e) => tracing::warn!(error = %e, "refreshing rollups failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(server_id: i64) -> Batch {
        Batch {
            rows: vec![Rows::Availability(AvailabilityRow {
                server_id,
                slot: Utc::now(),
                collected_at: Utc::now(),
                up: false,
                latency_ms: None,
                error_class: Some("timeout".into()),
                error: Some("connect: no answer within 5.0 s".into()),
            })],
        }
    }

    #[test]
    fn a_full_buffer_drops_and_counts_the_oldest_snapshots() {
        let w = Writer::new(3);
        for id in 1..=5 {
            w.push(sample(id));
        }
        let s = w.stats();
        assert_eq!((s.pending_rows, s.dropped_rows, s.written_rows), (3, 2, 0));
        let group = w.take_group();
        let ids: Vec<i64> = group
            .iter()
            .map(|b| match b.rows.first() {
                Some(Rows::Availability(a)) => a.server_id,
                _ => 0,
            })
            .collect();
        assert_eq!(ids, [3, 4, 5], "the newest snapshots are kept, in order");
        w.requeue(group);
        assert_eq!(w.stats().pending_rows, 3);
    }
}
