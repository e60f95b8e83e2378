//! Packed rollup chunks kept in a reader's memory, so a history read asks the store only for what is
//! newer than the last packed chunk.
//!
//! Caching them is safe because a chunk never changes once it exists: `rollups::pack` writes each
//! one whole, in one transaction, and nothing writes before `packed_until` again. Chunks only
//! disappear: a deleted server's (no longer reachable by name, and server ids are never reused) and
//! those past retention. An entry is dropped after [`TTL`] so that, and an operator's manual
//! change, is seen within the hour.
//!
//! The memory is bounded by `max_bytes` (`api.history_cache_mb`); past it, the series (one server or
//! database at one resolution) used least recently go first. The data is the chunk's records as the
//! store holds them (see [`super::chunk`]): 165 bytes per bucket, a 7-day series at 10 minutes is
//! 166 KB.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a chunk is served from memory before it is read from the store again.
pub const TTL: Duration = Duration::from_secs(3600);

/// The records of one packed chunk.
pub type ChunkData = Arc<[u8]>;

pub struct ChunkCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By (server id, resolution), then database name ('' = server level).
    series: HashMap<(i64, i64), HashMap<String, Series>>,
    bytes: usize,
    clock: u64,
}

#[derive(Default)]
struct Series {
    chunks: BTreeMap<DateTime<Utc>, (Instant, ChunkData)>,
    last_used: u64,
}

impl Series {
    fn bytes(&self) -> usize {
        self.chunks.values().map(|(_, d)| d.len()).sum()
    }
}

impl ChunkCache {
    /// A cache holding at most `max_bytes` of chunk data; 0 disables it.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that matters
        // here (at worst `bytes` is off), so a poisoned lock is used as it is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunks held for one series whose start lies in `(after, before)`, in order.
    pub fn get(
        &self,
        server_id: i64,
        datname: &str,
        res: i64,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, ChunkData)> {
        if self.max_bytes == 0 || after >= before {
            return Vec::new();
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let Some(series) = inner
            .series
            .get_mut(&(server_id, res))
            .and_then(|m| m.get_mut(datname))
        else {
            return Vec::new();
        };
        series.last_used = clock;
        let now = Instant::now();
        series
            .chunks
            .range(after..before)
            .filter(|(start, (at, _))| **start > after && now.duration_since(*at) < TTL)
            .map(|(start, (_, data))| (*start, data.clone()))
            .collect()
    }

    /// Keeps a chunk read from the store.
    pub fn put(&self, server_id: i64, datname: &str, res: i64, start: DateTime<Utc>, data: ChunkData) {
        if self.max_bytes == 0 || data.len() > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let len = data.len();
        let by_db = inner.series.entry((server_id, res)).or_default();
        let series = match by_db.get_mut(datname) {
            Some(s) => s,
            None => by_db.entry(datname.to_string()).or_default(),
        };
        series.last_used = clock;
        let old = series.chunks.insert(start, (Instant::now(), data));
        inner.bytes = inner.bytes + len - old.map_or(0, |(_, d)| d.len());
        if inner.bytes > self.max_bytes {
            inner.evict(self.max_bytes - self.max_bytes / 10);
        }
    }

    /// Bytes of chunk data held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Inner {
    /// Drops the least recently used series until at most `target` bytes are held; going below the
    /// limit by a tenth spares the scan on the next few insertions.
    fn evict(&mut self, target: usize) {
        while self.bytes > target {
            let oldest = self
                .series
                .iter()
                .flat_map(|(k, m)| m.iter().map(move |(db, s)| (s.last_used, *k, db)))
                .min_by_key(|(used, _, _)| *used)
                .map(|(_, k, db)| (k, db.clone()));
            let Some((key, db)) = oldest else { break };
            if let Some(by_db) = self.series.get_mut(&key) {
                if let Some(s) = by_db.remove(&db) {
                    self.bytes = self.bytes.saturating_sub(s.bytes());
                }
                if by_db.is_empty() {
                    self.series.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::hours(h)
    }

    fn data(n: usize) -> ChunkData {
        vec![7u8; n].into()
    }

    #[test]
    fn returns_the_chunks_of_the_window_and_series_asked() {
        let c = ChunkCache::new(1 << 20);
        for h in [0, 12, 24, 36] {
            c.put(1, "app", 0, t(h), data(10));
        }
        c.put(1, "web", 0, t(12), data(10));
        c.put(1, "app", 3600, t(12), data(10));
        let got: Vec<_> = c
            .get(1, "app", 0, t(0), t(36))
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(
            got,
            vec![t(12), t(24)],
            "start strictly after `after`, before `before`"
        );
        assert_eq!(c.get(2, "app", 0, t(-1), t(99)).len(), 0);
        assert_eq!(c.get(1, "db", 0, t(-1), t(99)).len(), 0);
        assert_eq!(c.bytes(), 60);
        c.put(1, "app", 0, t(12), data(30));
        assert_eq!(c.bytes(), 80, "a replaced chunk is counted once");
    }

    #[test]
    fn the_least_recently_used_series_goes_first_and_disabled_keeps_nothing() {
        let c = ChunkCache::new(100);
        c.put(1, "a", 0, t(0), data(40));
        c.put(1, "b", 0, t(0), data(40));
        assert_eq!(c.get(1, "a", 0, t(-1), t(1)).len(), 1);
        c.put(1, "c", 0, t(0), data(40));
        assert_eq!(
            c.get(1, "b", 0, t(-1), t(1)).len(),
            0,
            "b was used least recently"
        );
        assert_eq!(c.get(1, "a", 0, t(-1), t(1)).len(), 1);
        assert_eq!(c.get(1, "c", 0, t(-1), t(1)).len(), 1);
        assert_eq!(c.bytes(), 80);
        c.put(1, "d", 0, t(0), data(101));
        assert_eq!(c.bytes(), 80, "a chunk larger than the whole cache is not kept");

        let off = ChunkCache::new(0);
        off.put(1, "a", 0, t(0), data(1));
        assert_eq!(off.get(1, "a", 0, t(-1), t(1)).len(), 0);
        assert_eq!(off.bytes(), 0);
    }
}
