//! Whole history responses, as the JSON bytes sent, kept until their server's data changes.
//!
//! A history answer is a pure function of the request's window and the server's rows in the store,
//! and those change only when something writes them: a collector every few minutes, maintenance, an
//! operator. Dashboards ask for the same windows again and again in between (every viewer, every
//! refresh; a window's buckets are aligned to its step, so "the last 7 days" keeps one key for a
//! whole step). Computing an answer costs the store a statement and this process the rate folding
//! and ~10,000 formatted numbers; a kept one costs a map lookup.
//!
//! Kept correct by the store: triggers on every stats table send `NOTIFY pgmon_stats, '<server id>'`
//! on commit (migration 0008), and [`crate::store_cache::StoreCache::listen`] passes them to
//! [`HistoryCache::server_changed`]. The rules of the other caches hold here too: nothing is served
//! while the listening connection is down, an answer computed across a notification is not kept
//! (the generation read before computing must still be current), and no entry outlives [`TTL`],
//! which bounds what the triggers cannot see (a statement run on one partition directly).

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OwnedMutexGuard;

/// Longest life of an entry, whatever the notifications say.
pub const TTL: Duration = Duration::from_secs(600);

/// What a history answer depends on besides the store's rows. The server's name is in the answer,
/// so it is part of the key (a renamed server's old entries are simply never asked for again).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Which of the wire shapes over the same rows the body is.
    pub shape: Shape,
    pub server_id: i64,
    pub server: String,
    /// `None` for the server-level series.
    pub database: Option<String>,
    pub first_us: i64,
    pub end_us: i64,
    pub step_secs: i64,
}

/// The answers kept: pgmon's columnar series and the original backend's per-database timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    Series,
    OriginalServer,
    OriginalDatabase,
}

struct Entry {
    body: Bytes,
    at: Instant,
    /// Tick of the last use; the smallest goes first when memory runs out.
    used: u64,
}

#[derive(Default)]
struct State {
    /// Source of generations and use ticks: only ever grows.
    clock: u64,
    /// Generation of servers without one of their own (set by [`HistoryCache::all_changed`]).
    base: u64,
    servers: HashMap<i64, u64>,
    entries: HashMap<Key, Entry>,
    bytes: usize,
}

impl State {
    fn generation(&self, server_id: i64) -> u64 {
        self.servers.get(&server_id).copied().unwrap_or(self.base)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= e.body.len();
        }
    }
}

/// Bounded by the bytes of the bodies it holds (`api.history_response_cache_mb`; 0 turns it off).
pub struct HistoryCache {
    max_bytes: usize,
    state: Mutex<State>,
    /// One lock per answer being computed: a collector write drops a server's answers while every
    /// dashboard showing it asks again, and they should cost the store one statement, not one each.
    computing: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    hits: AtomicU64,
    computed: AtomicU64,
}

/// What the cache holds and has done since the process started, for `/api/pools/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub answers: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Answers sent from memory.
    pub hits: u64,
    /// Answers computed (kept or not).
    pub computed: u64,
}

/// Held while computing one answer; others asking for it wait, then find it kept.
pub struct Computing<'a> {
    cache: &'a HistoryCache,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Computing<'_> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else { return };
        let lock = OwnedMutexGuard::mutex(&guard).clone();
        drop(guard);
        if let Ok(mut map) = self.cache.computing.lock() {
            // Only the map's reference and this one: nobody waits (new arrivals clone under the
            // map's lock), so the entry can go.
            if Arc::strong_count(&lock) == 2 {
                map.remove(&self.key);
            }
        }
    }
}

impl HistoryCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::new(State::default()),
            computing: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            computed: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> Stats {
        let (answers, bytes) = self
            .state
            .lock()
            .map(|s| (s.entries.len() as u64, s.bytes as u64))
            .unwrap_or_default();
        Stats {
            answers,
            bytes,
            max_bytes: self.max_bytes as u64,
            hits: self.hits.load(Ordering::Relaxed),
            computed: self.computed.load(Ordering::Relaxed),
        }
    }

    /// Counts an answer computed because none was kept.
    pub fn count_computed(&self) {
        self.computed.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until nobody else is computing the answer for `key`, then holds that place until the
    /// returned value is dropped. The caller looks in the cache again before computing. With the
    /// cache off nothing would be kept for the waiters, so nobody waits.
    pub async fn computing(&self, key: &Key) -> Computing<'_> {
        let lock = match self.computing.lock() {
            Ok(mut map) if self.max_bytes > 0 => Some(map.entry(key.clone()).or_default().clone()),
            _ => None,
        };
        let guard = match lock {
            Some(l) => Some(l.lock_owned().await),
            None => None,
        };
        Computing {
            cache: self,
            key: key.clone(),
            guard,
        }
    }

    /// The generation to pass to [`Self::put`] after computing an answer for this server.
    pub fn generation(&self, server_id: i64) -> Option<u64> {
        let s = self.state.lock().ok()?;
        Some(s.generation(server_id))
    }

    pub fn get(&self, key: &Key) -> Option<Bytes> {
        let mut s = self.state.lock().ok()?;
        let tick = s.tick();
        let e = s.entries.get_mut(key)?;
        if e.at.elapsed() >= TTL {
            s.remove(key);
            return None;
        }
        e.used = tick;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(e.body.clone())
    }

    /// Keeps an answer computed after reading `read_at` from [`Self::generation`]; dropped if the
    /// server's data changed since (the answer may predate the change).
    pub fn put(&self, key: Key, body: Bytes, read_at: u64) {
        // One answer may take at most a quarter of the budget, so a few huge ones cannot flush it.
        if body.len() > self.max_bytes / 4 {
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        if s.generation(key.server_id) != read_at {
            return;
        }
        let used = s.tick();
        s.remove(&key);
        s.bytes += body.len();
        s.entries.insert(
            key,
            Entry {
                body,
                at: Instant::now(),
                used,
            },
        );
        while s.bytes > self.max_bytes {
            // A linear scan: entries number in the hundreds, and this runs only when an answer
            // was computed anyway.
            let Some(oldest) = s
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            s.remove(&oldest);
        }
    }

    /// The store says this server's rows changed: its answers go, and answers being computed
    /// for it will not be kept.
    pub fn server_changed(&self, server_id: i64) {
        if let Ok(mut s) = self.state.lock() {
            let g = s.tick();
            s.servers.insert(server_id, g);
            let gone: Vec<Key> = s
                .entries
                .keys()
                .filter(|k| k.server_id == server_id)
                .cloned()
                .collect();
            for k in &gone {
                s.remove(k);
            }
        }
    }

    /// Every server's rows may have changed (partitions dropped, a table truncated, notifications
    /// lost with the listening connection).
    pub fn all_changed(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.base = s.tick();
            s.servers.clear();
            s.entries.clear();
            s.bytes = 0;
        }
    }

    /// Applies one `pgmon_stats` notification: a server id, or `*` for all.
    pub fn notified(&self, payload: &str) {
        match payload.parse::<i64>() {
            Ok(id) => self.server_changed(id),
            Err(_) => self.all_changed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(server_id: i64, db: &str) -> Key {
        Key {
            shape: Shape::Series,
            server_id,
            server: format!("srv{server_id}"),
            database: Some(db.to_string()),
            first_us: 0,
            end_us: 3_600_000_000,
            step_secs: 600,
        }
    }

    fn body(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn a_change_drops_only_that_servers_answers() {
        let c = HistoryCache::new(1 << 20);
        for id in [1, 2] {
            let g = c.generation(id).expect("generation");
            c.put(key(id, "app"), body(10), g);
        }
        c.notified("1");
        assert!(c.get(&key(1, "app")).is_none());
        assert_eq!(c.get(&key(2, "app")).map(|b| b.len()), Some(10));
        let st = c.stats();
        assert_eq!((st.answers, st.bytes, st.hits), (1, 10, 1));
        c.notified("*");
        assert!(c.get(&key(2, "app")).is_none());
    }

    #[test]
    fn an_answer_computed_across_a_change_is_not_kept() {
        let c = HistoryCache::new(1 << 20);
        let g = c.generation(1).expect("generation");
        c.server_changed(1); // the collector commits while the answer is computed
        c.put(key(1, "app"), body(10), g);
        assert!(c.get(&key(1, "app")).is_none());
        // Another server's change does not matter.
        let g = c.generation(1).expect("generation");
        c.server_changed(2);
        c.put(key(1, "app"), body(10), g);
        assert!(c.get(&key(1, "app")).is_some());
        // Nor does a generation read before everything was dropped survive it.
        let g = c.generation(3).expect("generation");
        c.all_changed();
        c.put(key(3, "app"), body(10), g);
        assert!(c.get(&key(3, "app")).is_none());
    }

    #[tokio::test]
    async fn one_answer_is_computed_at_a_time_and_its_place_is_freed() {
        let c = Arc::new(HistoryCache::new(1 << 20));
        let first = c.computing(&key(1, "app")).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move {
                let _place = c.computing(&key(1, "app")).await;
                c.get(&key(1, "app")).map(|b| b.len())
            })
        };
        // Another answer is not held up.
        drop(c.computing(&key(1, "web")).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        let g = c.generation(1).expect("generation");
        c.put(key(1, "app"), body(10), g);
        drop(first);
        assert_eq!(
            waiter.await.ok().flatten(),
            Some(10),
            "the waiter finds the answer kept"
        );
        assert!(c.computing.lock().map(|m| m.is_empty()).unwrap_or(false));
        // With the cache off nothing would be kept for a waiter: nobody waits.
        let off = HistoryCache::new(0);
        let _a = off.computing(&key(1, "app")).await;
        let b = tokio::time::timeout(Duration::from_secs(1), off.computing(&key(1, "app"))).await;
        assert!(b.is_ok());
    }

    #[test]
    fn the_least_recently_used_answers_go_when_memory_runs_out() {
        let c = HistoryCache::new(400);
        let g = c.generation(1).expect("generation");
        for db in ["a", "b", "c", "d"] {
            c.put(key(1, db), body(100), g);
        }
        assert!(c.get(&key(1, "a")).is_some()); // "b" is now the oldest
        c.put(key(1, "e"), body(100), g);
        assert!(c.get(&key(1, "b")).is_none());
        for db in ["a", "c", "d", "e"] {
            assert!(c.get(&key(1, db)).is_some(), "{db}");
        }
        c.put(key(1, "huge"), body(101), g);
        assert!(
            c.get(&key(1, "huge")).is_none(),
            "more than a quarter of the budget"
        );
        let off = HistoryCache::new(0);
        off.put(key(1, "a"), body(1), off.generation(1).expect("generation"));
        assert!(off.get(&key(1, "a")).is_none());
    }
}
