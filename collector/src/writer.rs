//! The write path: snapshots queue here in the order they were taken and are written in that order,
//! several per transaction, each whole or not at all.
//!
//! A snapshot the store has not confirmed within [`SPILL_AFTER`] (the store is down, slow or
//! black-holed) is also written to the spool on disk ([`crate::spool`]), so a restart, a watchdog kill
//! or an upgrade during an outage loses nothing: the next collector on the host replays it. What waits
//! is bounded by `collector.spool_max_mb` (bytes: a snapshot's size on disk, estimated until it is
//! spilled) and `collector.buffer_max_rows`; beyond them the oldest snapshots are dropped, counted, and
//! reported in the system log in rows and bytes.
//!
//! Errors are sorted by SQLSTATE ([`pgmon_shared::store::classify_sqlstate`]): an unreachable store and
//! transient refusals (deadlock, serialization failure, statement or lock timeout) are retried with
//! backoff for as long as it takes; a missing partition is created and the write retried; anything
//! else (a bug, a constraint) is retried a few times, then the snapshots are written one by one and
//! the one the store still refuses is dropped, so one bad snapshot never blocks the others.

use crate::spool::Spool;
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows written per transaction at most (a batch is never split).
const GROUP_ROWS: usize = 10_000;
/// Attempts of a group the store refuses for a reason no retry can fix, before it is split.
const MAX_ATTEMPTS: u32 = 3;
/// A snapshot not confirmed by the store within this long is spilled to disk.
pub const SPILL_AFTER: Duration = Duration::from_secs(1);
/// Drops are reported to the system log at most this often (each report sums what it covers).
const DROP_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Rows of one family from one server's snapshot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

    /// About the bytes these rows take as JSON in the spool, without serializing them: texts by
    /// their length, other rows by a typical size (a JSON row of numbers is a few hundred bytes).
    fn approx_bytes(&self) -> usize {
        match self {
            Rows::StatementTexts(v) => v.iter().map(|t| 64 + t.query.len()).sum(),
            Rows::Databases { dbs, .. } => 64 + dbs.iter().map(|d| 200 + d.name.len()).sum::<usize>(),
            Rows::Statements(v) => v.len() * 600,
            Rows::StatDatabase(v) => v.iter().map(|r| 900 + r.datname.len()).sum(),
            other => other.len() * 500,
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
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Batch {
    pub rows: Vec<Rows>,
}

impl Batch {
    /// Rows the batch holds, as counted against the buffer bound.
    pub fn rows(&self) -> usize {
        self.rows.iter().map(Rows::len).sum::<usize>().max(1)
    }

    fn approx_bytes(&self) -> usize {
        self.rows.iter().map(Rows::approx_bytes).sum::<usize>().max(64)
    }

    fn slots(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.rows.iter().filter_map(Rows::slot)
    }
}

/// A queued snapshot.
struct Entry {
    id: u64,
    batch: Arc<Batch>,
    rows: usize,
    /// Its size in the spool once spilled, an estimate before.
    bytes: usize,
    /// The spool file holding it, once spilled.
    file: Option<u64>,
    queued_at: Instant,
}

#[derive(Default)]
struct State {
    /// Oldest first; the first `in_flight` entries are being written.
    queue: VecDeque<Entry>,
    in_flight: usize,
    next_id: u64,
    rows: usize,
    bytes: usize,
    /// Live entries per spool file; a file is deleted when its count reaches zero.
    files: HashMap<u64, usize>,
    written_rows: u64,
    dropped_rows: u64,
    dropped_bytes: u64,
    /// Drops not reported to the system log yet: (rows, bytes).
    unreported: (u64, u64),
    /// Entries dropped while being written, (rows, bytes) by id: should that write succeed, they
    /// were not lost after all and the counts are corrected.
    dropped_in_flight: HashMap<u64, (usize, usize)>,
}

impl State {
    /// Takes the entry at `i` out of the queue and its counts; returns the spool file to delete
    /// when it was the file's last entry.
    fn remove_at(&mut self, i: usize) -> Option<(Entry, Option<u64>)> {
        let e = self.queue.remove(i)?;
        self.rows -= e.rows;
        self.bytes -= e.bytes;
        let mut gone = None;
        if let Some(f) = e.file
            && let Some(n) = self.files.get_mut(&f)
        {
            *n -= 1;
            if *n == 0 {
                self.files.remove(&f);
                gone = Some(f);
            }
        }
        Some((e, gone))
    }
}

/// Counters for summaries and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub pending_rows: usize,
    pub pending_bytes: usize,
    pub written_rows: u64,
    pub dropped_rows: u64,
    pub dropped_bytes: u64,
}

pub struct Writer {
    state: Mutex<State>,
    wake: Notify,
    max_rows: usize,
    max_bytes: usize,
    /// None without a usable spool directory: snapshots then wait in memory only.
    spool: Mutex<Option<Spool>>,
    call_timeout: Duration,
}

impl Writer {
    pub fn new(max_rows: usize, max_bytes: usize, call_timeout: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            max_rows: max_rows.max(1),
            max_bytes: max_bytes.max(1),
            spool: Mutex::new(None),
            call_timeout,
        }
    }

    /// Takes this process's spool directory and queues, oldest first, what collectors that are gone
    /// left in theirs. Returns the rows queued that way.
    pub fn attach_spool(&self, spool: Spool) -> usize {
        if let Ok(mut s) = self.spool.lock() {
            *s = Some(spool);
        }
        self.adopt_orphans()
    }

    /// Queues the snapshots that collectors that are gone left in the spool (at start, and now and
    /// then for a `pgmon-collector once` that ended during an outage).
    pub fn adopt_orphans(&self) -> usize {
        let loaded = match self.spool.lock() {
            Ok(mut g) => match g.as_mut() {
                Some(sp) => sp.adopt_orphans::<Batch>(),
                None => return 0,
            },
            Err(_) => return 0,
        };
        let mut rows = 0;
        let mut gone = Vec::new();
        if let Ok(mut s) = self.state.lock() {
            for file in loaded {
                for (batch, bytes) in file.items {
                    rows += batch.rows();
                    push_entry(&mut s, batch, bytes, Some(file.seq));
                }
            }
            gone = self.enforce_bounds(&mut s);
        }
        self.delete_files(&gone);
        if rows > 0 {
            tracing::info!(
                rows,
                "replaying snapshots left in the spool by a collector that is gone"
            );
            self.wake.notify_one();
        }
        rows
    }

    /// Queues a snapshot; drops the oldest ones when a bound is passed.
    pub fn push(&self, batch: Batch) {
        let mut gone = Vec::new();
        if let Ok(mut s) = self.state.lock() {
            let bytes = batch.approx_bytes();
            push_entry(&mut s, batch, bytes, None);
            gone = self.enforce_bounds(&mut s);
        }
        self.delete_files(&gone);
        self.wake.notify_one();
    }

    /// Drops the oldest entries while a bound is passed (the newest always stays), even those
    /// being written: a write to a hanging store may take its whole deadline, and the oldest must
    /// still go first. Returns the spool files left empty.
    fn enforce_bounds(&self, s: &mut State) -> Vec<u64> {
        let (mut rows, mut bytes) = (0usize, 0usize);
        let mut gone = Vec::new();
        while (s.rows > self.max_rows || s.bytes > self.max_bytes) && s.queue.len() > 1 {
            if let Some((e, file)) = s.remove_at(0) {
                if s.in_flight > 0 {
                    s.in_flight -= 1;
                    s.dropped_in_flight.insert(e.id, (e.rows, e.bytes));
                }
                rows += e.rows;
                bytes += e.bytes;
                gone.extend(file);
            }
        }
        if rows > 0 {
            s.dropped_rows += rows as u64;
            s.dropped_bytes += bytes as u64;
            s.unreported.0 += rows as u64;
            s.unreported.1 += bytes as u64;
            tracing::warn!(
                dropped_rows = rows,
                dropped_bytes = bytes,
                dropped_total = s.dropped_rows,
                buffer_max_rows = self.max_rows,
                spool_max_bytes = self.max_bytes,
                "snapshot buffer full: dropped the oldest snapshots"
            );
        }
        gone
    }

    fn delete_files(&self, seqs: &[u64]) {
        if seqs.is_empty() {
            return;
        }
        if let Ok(g) = self.spool.lock()
            && let Some(sp) = g.as_ref()
        {
            for seq in seqs {
                sp.remove(*seq);
            }
        }
    }

    pub fn stats(&self) -> WriterStats {
        self.state
            .lock()
            .map(|s| WriterStats {
                pending_rows: s.rows,
                pending_bytes: s.bytes,
                written_rows: s.written_rows,
                dropped_rows: s.dropped_rows,
                dropped_bytes: s.dropped_bytes,
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

    /// Writes to the spool, as one file, every queued snapshot not there yet that has waited at
    /// least `older_than`. Blocking file I/O, a few ms; only the spiller and shutdown call it.
    pub fn spill(&self, older_than: Duration) {
        let Ok(mut spool) = self.spool.lock() else { return };
        let Some(sp) = spool.as_mut() else { return };
        let picked: Vec<(u64, Arc<Batch>)> = match self.state.lock() {
            Ok(s) => {
                if !s
                    .queue
                    .iter()
                    .any(|e| e.file.is_none() && e.queued_at.elapsed() >= older_than)
                {
                    return;
                }
                s.queue
                    .iter()
                    .filter(|e| e.file.is_none())
                    .map(|e| (e.id, e.batch.clone()))
                    .collect()
            }
            Err(_) => return,
        };
        let batches: Vec<&Batch> = picked.iter().map(|(_, b)| b.as_ref()).collect();
        let (seq, sizes) = match sp.write(&batches) {
            Ok((seq, _, sizes)) => (seq, sizes),
            Err(e) => {
                tracing::error!(error = %e, dir = %sp.dir().display(), "cannot write to the spool; snapshots wait in memory only");
                return;
            }
        };
        let mut gone = Vec::new();
        if let Ok(mut s) = self.state.lock() {
            let sizes: HashMap<u64, usize> = picked.iter().map(|(id, _)| *id).zip(sizes).collect();
            let mut live = 0;
            let mut delta: isize = 0;
            for e in s.queue.iter_mut().filter(|e| e.file.is_none()) {
                if let Some(size) = sizes.get(&e.id) {
                    e.file = Some(seq);
                    delta += *size as isize - e.bytes as isize;
                    e.bytes = *size;
                    live += 1;
                }
            }
            s.bytes = s.bytes.saturating_add_signed(delta);
            if live == 0 {
                gone.push(seq); // written to the store meanwhile
            } else {
                s.files.insert(seq, live);
                tracing::debug!(seq, snapshots = live, "spilled unconfirmed snapshots to disk");
            }
            gone.extend(self.enforce_bounds(&mut s));
        }
        drop(spool);
        self.delete_files(&gone);
    }

    /// At exit: spills what is left, or removes the empty spool directory.
    pub fn close(&self) {
        self.spill(Duration::ZERO);
        let empty = self.stats().pending_rows == 0;
        if let Ok(mut g) = self.spool.lock()
            && let Some(sp) = g.take()
        {
            if empty {
                sp.close_empty();
            } else {
                tracing::info!(dir = %sp.dir().display(), "unwritten snapshots stay in the spool for the next start");
            }
        }
    }

    /// Spills snapshots the store has not confirmed in time, reports drops, and adopts the spool of
    /// collectors that ended meanwhile, until `stop`.
    pub async fn run_spiller(&self, journal: &Journal, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SPILL_AFTER / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_adopt = Instant::now();
        let mut last_report: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            self.spill(SPILL_AFTER);
            if last_report.is_none_or(|t| t.elapsed() >= DROP_REPORT_EVERY) && self.report_drops(journal) {
                last_report = Some(Instant::now());
            }
            if last_adopt.elapsed() >= Duration::from_secs(60) {
                last_adopt = Instant::now();
                self.adopt_orphans();
            }
        }
    }

    /// Logs the drops since the last report; true when there were any.
    fn report_drops(&self, journal: &Journal) -> bool {
        let (rows, bytes) = match self.state.lock() {
            Ok(mut s) => std::mem::take(&mut s.unreported),
            Err(_) => return false,
        };
        if rows == 0 {
            return false;
        }
        journal.log(
            NewEntry::new(
                Level::Error,
                system_log::source::SYSTEM,
                format!("snapshot buffer full: dropped the oldest {rows} rows ({bytes} bytes)"),
            )
            .details(format!(
                "the store did not confirm them and the buffer reached its bound (collector.spool_max_mb = {} MB, \
                 collector.buffer_max_rows = {})",
                self.max_bytes / (1024 * 1024),
                self.max_rows
            )),
        );
        true
    }

    #[cfg(test)]
    fn dir_name(&self) -> std::path::PathBuf {
        self.spool
            .lock()
            .ok()
            .and_then(|g| g.as_ref().and_then(|s| s.dir().file_name().map(Into::into)))
            .unwrap_or_default()
    }

    fn take_group(&self) -> Vec<(u64, Arc<Batch>)> {
        let Ok(mut s) = self.state.lock() else {
            return Vec::new();
        };
        let mut group = Vec::new();
        let mut rows = 0;
        for e in s.queue.iter() {
            if !group.is_empty() && rows + e.rows > GROUP_ROWS {
                break;
            }
            rows += e.rows;
            group.push((e.id, e.batch.clone()));
        }
        s.in_flight = group.len();
        group
    }

    /// The group being written goes back to waiting, in place.
    fn requeue(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.in_flight = 0;
            s.dropped_in_flight.clear();
        }
    }

    /// Ends the write of the group: `written` and `dropped` (by id) leave the queue and the spool.
    fn done(&self, written: &[u64], dropped: &[u64]) {
        let mut gone = Vec::new();
        if let Ok(mut s) = self.state.lock() {
            s.in_flight = 0;
            for id in written {
                // Dropped by the bound while its write was under way, and written after all.
                if let Some((rows, bytes)) = s.dropped_in_flight.remove(id) {
                    s.dropped_rows = s.dropped_rows.saturating_sub(rows as u64);
                    s.dropped_bytes = s.dropped_bytes.saturating_sub(bytes as u64);
                    s.unreported.0 = s.unreported.0.saturating_sub(rows as u64);
                    s.unreported.1 = s.unreported.1.saturating_sub(bytes as u64);
                    s.written_rows += rows as u64;
                }
            }
            s.dropped_in_flight.clear();
            for (ids, was_written) in [(written, true), (dropped, false)] {
                for id in ids {
                    let Some(i) = s.queue.iter().position(|e| e.id == *id) else {
                        continue;
                    };
                    if let Some((e, file)) = s.remove_at(i) {
                        if was_written {
                            s.written_rows += e.rows as u64;
                        } else {
                            s.dropped_rows += e.rows as u64;
                            s.dropped_bytes += e.bytes as u64;
                        }
                        gone.extend(file);
                    }
                }
            }
        }
        self.delete_files(&gone);
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
            let batches: Vec<&Batch> = group.iter().map(|(_, b)| b.as_ref()).collect();
            let ids: Vec<u64> = group.iter().map(|(id, _)| *id).collect();
            let result =
                pgmon_shared::store::deadline(self.call_timeout, write_group(pool, &batches, instance)).await;
            match result {
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
                                "from {}; {} rows were buffered in memory and on disk and are being \
                                 written; {dropped} rows were dropped (collector.spool_max_mb = {} MB, \
                                 collector.buffer_max_rows = {})",
                                at.to_rfc3339(),
                                st.pending_rows,
                                self.max_bytes / (1024 * 1024),
                                self.max_rows
                            )),
                        );
                    }
                    retry = Duration::from_millis(500);
                    attempts = 0;
                    self.done(&ids, &[]);
                }
                Err(StoreError::MissingPartition(_)) => {
                    let slots: Vec<_> = batches.iter().flat_map(|b| b.slots()).collect();
                    let (from, to) = (slots.iter().min().copied(), slots.iter().max().copied());
                    self.requeue();
                    if let (Some(from), Some(to)) = (from, to) {
                        tracing::info!(%from, %to, "creating missing stats partitions");
                        let ensure = stats::ensure_partitions(pool, from, to);
                        if let Err(e) = pgmon_shared::store::deadline(self.call_timeout, ensure).await {
                            tracing::warn!(error = %e, "cannot create partitions");
                            sleep_or_stop(retry, &stop).await;
                            retry = (retry * 2).min(Duration::from_secs(10));
                        }
                    }
                }
                Err(StoreError::Unavailable(msg)) => {
                    if down_since.is_none() {
                        down_since = Some((Instant::now(), Utc::now(), self.stats().dropped_rows));
                        tracing::warn!(error = %msg, "store unreachable: buffering snapshots (memory and spool)");
                    }
                    self.requeue();
                    sleep_or_stop(retry, &stop).await;
                    retry = next_retry(retry, &stop);
                }
                Err(StoreError::Transient(msg)) => {
                    // The store refused this attempt only (a deadlock, a timeout): the same rows
                    // will go in later, so they are never dropped for it.
                    tracing::warn!(error = %msg, "writing snapshots failed for now; retrying");
                    self.requeue();
                    sleep_or_stop(retry, &stop).await;
                    retry = next_retry(retry, &stop);
                }
                Err(e) if attempts + 1 < MAX_ATTEMPTS => {
                    tracing::warn!(error = %e, "writing snapshots failed; retrying");
                    attempts += 1;
                    self.requeue();
                    sleep_or_stop(retry, &stop).await;
                }
                Err(e) => {
                    attempts = 0;
                    tracing::warn!(error = %e, "writing snapshots failed again; writing them one by one");
                    let (mut written, mut dropped) = (Vec::new(), Vec::new());
                    for (id, b) in &group {
                        let one = [b.as_ref()];
                        let call = write_group(pool, &one, instance);
                        match pgmon_shared::store::deadline(self.call_timeout, call).await {
                            Ok(()) => written.push(*id),
                            // Not this snapshot's fault: it and the rest stay queued.
                            Err(
                                StoreError::Unavailable(_)
                                | StoreError::Transient(_)
                                | StoreError::MissingPartition(_),
                            ) => {
                                break;
                            }
                            Err(e) => {
                                dropped.push(*id);
                                tracing::error!(error = %e, rows = b.rows(), "store refused a snapshot; dropped it");
                            }
                        }
                    }
                    self.done(&written, &dropped);
                }
            }
        }
    }
}

fn push_entry(s: &mut State, batch: Batch, bytes: usize, file: Option<u64>) {
    let rows = batch.rows();
    s.next_id += 1;
    let id = s.next_id;
    s.rows += rows;
    s.bytes += bytes;
    if let Some(f) = file {
        *s.files.entry(f).or_insert(0) += 1;
    }
    s.queue.push_back(Entry {
        id,
        batch: Arc::new(batch),
        rows,
        bytes,
        file,
        queued_at: Instant::now(),
    });
}

fn next_retry(retry: Duration, stop: &CancellationToken) -> Duration {
    if stop.is_cancelled() {
        // During shutdown the caller's deadline decides; keep trying quickly.
        Duration::from_millis(200)
    } else {
        (retry * 2).min(Duration::from_secs(10))
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
pub async fn write_group(pool: &PgPool, group: &[&Batch], instance: Uuid) -> Result<(), StoreError> {
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

    fn server_ids(group: &[(u64, Arc<Batch>)]) -> Vec<i64> {
        group
            .iter()
            .map(|(_, b)| match b.rows.first() {
                Some(Rows::Availability(a)) => a.server_id,
                _ => 0,
            })
            .collect()
    }

    fn files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|l| {
                l.flatten()
                    .filter(|f| f.path().extension().is_some_and(|x| x == "batch"))
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn a_full_buffer_drops_and_counts_the_oldest_snapshots() {
        let w = Writer::new(3, usize::MAX, Duration::from_secs(1));
        for id in 1..=5 {
            w.push(sample(id));
        }
        let s = w.stats();
        assert_eq!((s.pending_rows, s.dropped_rows, s.written_rows), (3, 2, 0));
        let group = w.take_group();
        assert_eq!(
            server_ids(&group),
            [3, 4, 5],
            "the newest snapshots are kept, in order"
        );
        w.requeue();
        assert_eq!(w.stats().pending_rows, 3);
    }

    #[test]
    fn the_oldest_go_first_even_while_being_written() {
        let w = Writer::new(3, usize::MAX, Duration::from_secs(1));
        for id in 1..=3 {
            w.push(sample(id));
        }
        let group = w.take_group(); // a write to a hanging store
        w.push(sample(4));
        w.push(sample(5));
        let s = w.stats();
        assert_eq!((s.pending_rows, s.dropped_rows), (3, 2));
        // The write succeeds after all: 1 and 2 were not lost.
        let ids: Vec<u64> = group.iter().map(|(id, _)| *id).collect();
        w.done(&ids, &[]);
        let s = w.stats();
        assert_eq!((s.pending_rows, s.written_rows, s.dropped_rows), (2, 3, 0));
        assert_eq!(server_ids(&w.take_group()), [4, 5]);
    }

    #[test]
    fn spilled_snapshots_survive_a_crash_and_replay_in_order() {
        let root = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(1000, usize::MAX, Duration::from_secs(1));
        w.attach_spool(Spool::open(root.path(), Uuid::new_v4()).expect("spool"));
        w.push(sample(1));
        w.push(sample(2));
        w.spill(Duration::ZERO);
        w.push(sample(3));
        w.spill(Duration::from_secs(3600));
        assert_eq!(
            files(&root.path().join(w.dir_name())),
            1,
            "3 is too young to spill"
        );
        w.spill(Duration::ZERO);
        let bytes_on_disk: u64 = std::fs::read_dir(root.path().join(w.dir_name()))
            .expect("ls")
            .flatten()
            .filter(|f| f.path().extension().is_some_and(|x| x == "batch"))
            .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert_eq!(
            w.stats().pending_bytes as u64,
            bytes_on_disk,
            "spilled sizes are exact"
        );
        drop(w); // kill -9: no close

        let next = Writer::new(1000, usize::MAX, Duration::from_secs(1));
        let rows = next.attach_spool(Spool::open(root.path(), Uuid::new_v4()).expect("spool"));
        assert_eq!(rows, 3);
        let group = next.take_group();
        assert_eq!(server_ids(&group), [1, 2, 3]);
        let dir = root.path().join(next.dir_name());
        assert_eq!(files(&dir), 2, "adopted into the new directory");
        let ids: Vec<u64> = group.iter().map(|(id, _)| *id).collect();
        next.done(&ids[..2], &[]);
        assert_eq!(files(&dir), 1, "a file goes once the store has all of it");
        next.done(&ids[2..], &[]);
        assert_eq!(files(&dir), 0);
        next.close();
        assert_eq!(
            std::fs::read_dir(root.path()).expect("ls").count(),
            0,
            "clean exit, no leftovers"
        );
    }

    #[test]
    fn the_spool_is_bounded_in_bytes_and_drops_are_reported_in_rows_and_bytes() {
        let root = tempfile::tempdir().expect("tempdir");
        let one = sample(1).approx_bytes();
        let w = Writer::new(1_000_000, one * 3, Duration::from_secs(1));
        w.attach_spool(Spool::open(root.path(), Uuid::new_v4()).expect("spool"));
        for id in 1..=3 {
            w.push(sample(id));
            w.spill(Duration::ZERO); // one file each
        }
        // Spilled sizes replace the estimates; make sure the bound is what binds below.
        let per = w.stats().pending_bytes / 3;
        let w2 = Writer::new(1_000_000, per * 3, Duration::from_secs(1));
        drop(w);
        w2.attach_spool(Spool::open(root.path(), Uuid::new_v4()).expect("spool"));
        w2.push(sample(4));
        w2.push(sample(5));
        let s = w2.stats();
        assert!(s.pending_bytes <= per * 3, "{s:?}");
        assert!(s.dropped_rows >= 2, "{s:?}");
        let group = w2.take_group();
        let ids = server_ids(&group);
        assert_eq!(ids.last(), Some(&5), "the newest stays: {ids:?}");
        assert!(
            !ids.contains(&1) && !ids.contains(&2),
            "the oldest went first: {ids:?}"
        );
        let dir = root.path().join(w2.dir_name());
        let left: Vec<i64> = ids.iter().copied().filter(|id| *id <= 3).collect();
        assert_eq!(
            files(&dir),
            left.len(),
            "the dropped snapshots' files are deleted"
        );
        let journal = Journal::new("test", None);
        assert!(w2.report_drops(&journal));
        assert_eq!(journal.pending(), 1);
        assert!(!w2.report_drops(&journal), "reported once");
        assert!(s.dropped_bytes >= 2 * per as u64, "{s:?}");
    }
}
