//! The system log's writer in each process: entries queue in memory and a background task writes
//! them in batches, so logging never waits on the store and survives its outages.
//!
//! Bounded twice, so that neither a flapping server nor a dead store can flood the log or the
//! process: per key (a server's SSH failures, say) at most a few entries an hour, the rest counted
//! and named in the next entry let through; and at most [`MAX_QUEUED`] entries wait for the store,
//! the oldest dropped beyond that and reported by one entry once the store is back.

use crate::store::StoreError;
use crate::store::system_log::{self, Level, NewEntry};
use sqlx::PgPool;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Entries kept while the store cannot take them.
pub const MAX_QUEUED: usize = 10_000;
/// Entries written per statement.
const BATCH: usize = 500;
/// The window of [`Journal::log_limited`].
const WINDOW: Duration = Duration::from_secs(3600);

struct Window {
    started: Instant,
    count: u32,
    suppressed: u32,
}

#[derive(Default)]
struct State {
    queue: VecDeque<NewEntry>,
    in_flight: usize,
    dropped: u64,
    limits: HashMap<String, Window>,
}

struct Inner {
    process: &'static str,
    instance: Option<Uuid>,
    state: Mutex<State>,
    wake: Notify,
    /// Deadline of one write to the store, in ms (see [`Journal::set_call_timeout`]).
    call_timeout_ms: AtomicU64,
}

/// Cheap to clone; every clone feeds the same queue.
#[derive(Clone)]
pub struct Journal(Arc<Inner>);

impl Journal {
    /// `process` is `collector` or `api`; `instance` tells several collectors apart.
    pub fn new(process: &'static str, instance: Option<Uuid>) -> Self {
        Self(Arc::new(Inner {
            process,
            instance,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            call_timeout_ms: AtomicU64::new(45_000),
        }))
    }

    /// How long one write to the store may take (`store.call_timeout_secs`) before it counts as an
    /// outage and is retried: a half-open store connection must not stall the log.
    pub fn set_call_timeout(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        self.0.call_timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// Queues an entry and repeats it in the process's own log.
    pub fn log(&self, e: NewEntry) {
        let details = e.details.as_deref().unwrap_or("");
        match e.level {
            Level::Info => tracing::info!(source = e.source, details, "{}", e.message),
            Level::Warning => tracing::warn!(source = e.source, details, "{}", e.message),
            Level::Error => tracing::error!(source = e.source, details, "{}", e.message),
        }
        self.queue(e);
    }

    /// Queues an entry the caller has already put in the process's own log.
    pub fn queue(&self, e: NewEntry) {
        let Ok(mut s) = self.0.state.lock() else {
            return;
        };
        s.queue.push_back(e);
        while s.queue.len() + s.in_flight > MAX_QUEUED && !s.queue.is_empty() {
            s.queue.pop_front();
            s.dropped += 1;
        }
        drop(s);
        self.0.wake.notify_one();
    }

    /// Like [`Self::log`], but at most `per_hour` entries an hour under `key`; the ones held back
    /// are counted in the details of the next entry let through.
    pub fn log_limited(&self, key: &str, per_hour: u32, mut e: NewEntry) {
        let suppressed = {
            let Ok(mut s) = self.0.state.lock() else {
                return;
            };
            if s.limits.len() > 10_000 {
                s.limits.retain(|_, w| w.started.elapsed() < WINDOW);
            }
            let w = s.limits.entry(key.to_string()).or_insert(Window {
                started: Instant::now(),
                count: 0,
                suppressed: 0,
            });
            let mut held_before = 0;
            if w.started.elapsed() >= WINDOW {
                held_before = w.suppressed;
                *w = Window {
                    started: Instant::now(),
                    count: 0,
                    suppressed: 0,
                };
            }
            if w.count >= per_hour {
                w.suppressed += 1;
                tracing::debug!(key, "system log entry held back by its hourly limit");
                return;
            }
            w.count += 1;
            held_before
        };
        if suppressed > 0 {
            let note = format!("{suppressed} similar entries were not logged in the hour before");
            e.details = Some(match e.details.take() {
                Some(d) => format!("{d} ({note})"),
                None => note,
            });
        }
        self.log(e);
    }

    /// Entries not yet in the store.
    pub fn pending(&self) -> usize {
        self.0
            .state
            .lock()
            .map(|s| s.queue.len() + s.in_flight)
            .unwrap_or(0)
    }

    /// Waits until everything queued so far is written, or `timeout` passes; true when empty.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.0.wake.notify_one();
        while self.pending() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn take(&self) -> (Vec<NewEntry>, u64) {
        let Ok(mut s) = self.0.state.lock() else {
            return (Vec::new(), 0);
        };
        let n = s.queue.len().min(BATCH);
        let batch: Vec<NewEntry> = s.queue.drain(..n).collect();
        s.in_flight = batch.len();
        (batch, s.dropped)
    }

    fn settle(&self, unwritten: Option<Vec<NewEntry>>, dropped_reported: u64) {
        if let Ok(mut s) = self.0.state.lock() {
            s.in_flight = 0;
            s.dropped -= dropped_reported.min(s.dropped);
            if let Some(batch) = unwritten {
                for e in batch.into_iter().rev() {
                    s.queue.push_front(e);
                }
            }
        }
    }

    /// Writes queued entries until `stop` is cancelled (the caller bounds the last flush).
    pub async fn run(&self, pool: PgPool, stop: CancellationToken) {
        let mut retry = Duration::from_millis(500);
        loop {
            let (mut batch, dropped) = self.take();
            if batch.is_empty() {
                self.settle(None, 0);
                tokio::select! {
                    _ = self.0.wake.notified() => continue,
                    _ = stop.cancelled() => return,
                }
            }
            let reported = batch.len();
            if dropped > 0 {
                batch.push(NewEntry::new(
                    Level::Warning,
                    system_log::source::SYSTEM,
                    format!("{dropped} system log entries were dropped while the store was unreachable"),
                ));
            }
            let limit = Duration::from_millis(self.0.call_timeout_ms.load(Ordering::Relaxed));
            let insert = system_log::insert(&pool, self.0.process, self.0.instance, &batch);
            match crate::store::deadline(limit, insert).await {
                Ok(()) => {
                    retry = Duration::from_millis(500);
                    self.settle(None, dropped);
                }
                Err(StoreError::Unavailable(_) | StoreError::Transient(_)) => {
                    batch.truncate(reported);
                    self.settle(Some(batch), 0);
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = stop.cancelled() => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                    retry = (retry * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    // Not an outage: retrying the same rows would fail the same way.
                    tracing::error!(error = %e, entries = reported, "the store refused system log entries; dropped them");
                    self.settle(None, dropped);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(msg: &str) -> NewEntry {
        NewEntry::new(Level::Warning, system_log::source::COLLECTOR_SIZES, msg)
    }

    #[test]
    fn a_key_gets_its_hourly_share_and_the_queue_its_bound() {
        let j = Journal::new("test", None);
        for i in 0..10 {
            j.log_limited("ssh:1", 3, entry(&format!("ssh failed {i}")));
        }
        j.log_limited("ssh:2", 3, entry("another server"));
        assert_eq!(j.pending(), 4, "three for server 1, one for server 2");
        for i in 0..MAX_QUEUED + 5 {
            j.log(entry(&format!("flood {i}")));
        }
        assert_eq!(j.pending(), MAX_QUEUED);
        let (batch, dropped) = j.take();
        assert_eq!(dropped, 9, "the oldest entries went first");
        assert_eq!(batch[0].message, "flood 5");
    }
}
