//! In-process copies of the store rows nearly every request reads: the caller's auth state (by
//! access-token id), a server (by name) and the list of servers. Without them a history read made three store round
//! trips, two of them for rows that change a few times a day. The same listener keeps whole history
//! answers current ([`crate::history_cache`]), per server, from `NOTIFY pgmon_stats`.
//!
//! Kept correct by `LISTEN`: every change to a user, a token family, a server or a runtime setting
//! sends `NOTIFY pgmon_auth` / `pgmon_servers` / `pgmon_settings` in the changing transaction (see
//! `pgmon_shared::store::{users, tokens, servers}`), and any notification empties both caches. While
//! the listening connection is down (and until it is back and listening) nothing is served from
//! them, so a notification lost with the connection cannot leave a stale entry. A value read from the
//! store is only served if no notification arrived while it was read (the generation check), and no
//! entry lives longer than [`TTL`]. Another API instance's logout therefore takes effect here as soon
//! as PostgreSQL delivers the notification (milliseconds); this instance's own changes, at once.

use crate::history_cache::{self, HistoryCache};
use bytes::Bytes;
use pgmon_shared::settings::Settings;
use pgmon_shared::store::servers::{NOTIFY_CHANNEL as SERVERS_CHANNEL, ServerRow};
use pgmon_shared::store::settings::SETTINGS_CHANNEL;
use pgmon_shared::store::stats::STATS_CHANNEL;
use pgmon_shared::store::tokens::{AUTH_CHANNEL, AuthState};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Longest life of an entry, whatever the notifications say.
pub const TTL: Duration = Duration::from_secs(60);
/// Most entries per map; a full map is emptied rather than grown (tokens are short-lived).
const MAX_ENTRIES: usize = 10_000;

struct Map<K, V> {
    entries: Mutex<HashMap<K, (u64, Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Map<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
    fn get<Q: Eq + Hash + ?Sized>(&self, k: &Q, generation: u64) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
    {
        let map = self.entries.lock().ok()?;
        let (g, at, v) = map.get(k)?;
        (*g == generation && at.elapsed() < TTL).then(|| v.clone())
    }
    fn put(&self, k: K, v: V, generation: u64) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(k, (generation, Instant::now(), v));
        }
    }
    fn clear(&self) {
        if let Ok(mut map) = self.entries.lock() {
            map.clear();
        }
    }
}

#[derive(Clone)]
pub struct StoreCache(Arc<Inner>);

struct Inner {
    listening: AtomicBool,
    generation: AtomicU64,
    /// Times the maps were emptied (`/metrics`): a high rate means the store serves every request.
    invalidations: AtomicU64,
    auth: Map<Uuid, AuthState>,
    servers: Map<String, ServerRow>,
    /// Every server, as `GET /servers` (polled by every browser) lists them.
    server_list: Map<(), Arc<Vec<ServerRow>>>,
    /// The effective runtime settings (`NOTIFY pgmon_settings`).
    settings: Map<(), Settings>,
    history: HistoryCache,
}

impl StoreCache {
    /// `history_bytes` bounds the history answers kept (0: none).
    pub fn new(history_bytes: usize) -> Self {
        Self(Arc::new(Inner {
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            auth: Map::new(),
            servers: Map::new(),
            server_list: Map::new(),
            settings: Map::new(),
            history: HistoryCache::new(history_bytes),
        }))
    }

    fn listening(&self) -> bool {
        self.0.listening.load(Ordering::Acquire)
    }

    /// The generation to pass to the `put_*` call after reading the store; `None` while the cache is
    /// not in use (the listener is down).
    pub fn generation(&self) -> Option<u64> {
        self.listening()
            .then(|| self.0.generation.load(Ordering::Acquire))
    }

    pub fn auth(&self, jti: Uuid) -> Option<AuthState> {
        self.0.auth.get(&jti, self.generation()?)
    }

    /// Keeps a value read from the store; `read_at` is [`Self::generation`] from before the read, so
    /// a value read across a notification is stored as already stale and never served.
    pub fn put_auth(&self, jti: Uuid, state: AuthState, read_at: Option<u64>) {
        if let Some(g) = read_at {
            self.0.auth.put(jti, state, g);
        }
    }

    pub fn server(&self, name: &str) -> Option<ServerRow> {
        self.0.servers.get(name, self.generation()?)
    }

    pub fn put_server(&self, row: ServerRow, read_at: Option<u64>) {
        if let Some(g) = read_at {
            self.0.servers.put(row.name.clone(), row, g);
        }
    }

    pub fn server_list(&self) -> Option<Arc<Vec<ServerRow>>> {
        self.0.server_list.get(&(), self.generation()?)
    }

    pub fn put_server_list(&self, rows: Arc<Vec<ServerRow>>, read_at: Option<u64>) {
        if let Some(g) = read_at {
            self.0.server_list.put((), rows, g);
        }
    }

    pub fn settings(&self) -> Option<Settings> {
        self.0.settings.get(&(), self.generation()?)
    }

    pub fn put_settings(&self, s: Settings, read_at: Option<u64>) {
        if let Some(g) = read_at {
            self.0.settings.put((), s, g);
        }
    }

    /// A history answer kept earlier, while the listener runs.
    pub fn history(&self, key: &history_cache::Key) -> Option<Bytes> {
        if !self.listening() {
            return None;
        }
        self.0.history.get(key)
    }

    /// The generation to pass to [`Self::put_history`]: read before computing the answer.
    pub fn history_generation(&self, server_id: i64) -> Option<u64> {
        if !self.listening() {
            return None;
        }
        self.0.history.generation(server_id)
    }

    /// Waits while another request computes the same answer (see [`HistoryCache::computing`]);
    /// `None` while answers are not kept.
    pub async fn history_computing(&self, key: &history_cache::Key) -> Option<history_cache::Computing<'_>> {
        if !self.listening() {
            return None;
        }
        Some(self.0.history.computing(key).await)
    }

    /// Keeps an answer just computed (if the generation read before is still current).
    pub fn put_history(&self, key: history_cache::Key, body: Bytes, read_at: Option<u64>) {
        self.0.history.count_computed();
        if let Some(g) = read_at {
            self.0.history.put(key, body, g);
        }
    }

    /// The history cache's figures, and whether it is in use (the listener is up).
    pub fn history_stats(&self) -> (history_cache::Stats, bool) {
        (self.0.history.stats(), self.listening())
    }

    /// Times the maps were emptied since the API started.
    pub fn invalidations(&self) -> u64 {
        self.0.invalidations.load(Ordering::Relaxed)
    }

    /// Empties both maps and makes every generation read before now stale.
    pub fn invalidate(&self) {
        self.0.invalidations.fetch_add(1, Ordering::Relaxed);
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        self.0.auth.clear();
        self.0.servers.clear();
        self.0.server_list.clear();
        self.0.settings.clear();
    }

    fn set_listening(&self, on: bool) {
        self.invalidate();
        self.0.history.all_changed();
        self.0.listening.store(on, Ordering::Release);
        self.invalidate();
        self.0.history.all_changed();
    }

    /// Listens for changes until the process ends, reconnecting after a lost connection.
    pub async fn listen(self, pool: PgPool) {
        loop {
            match Self::subscribe(&pool).await {
                Ok(mut listener) => {
                    self.set_listening(true);
                    // `Ok(None)` is a lost connection; notifications sent meanwhile are lost too.
                    while let Ok(Some(n)) = listener.try_recv().await {
                        if n.channel() == STATS_CHANNEL {
                            self.0.history.notified(n.payload());
                        } else {
                            self.invalidate();
                        }
                    }
                    self.set_listening(false);
                    tracing::warn!(
                        "lost the LISTEN connection to the store; caches are off until it is back"
                    );
                }
                Err(e) => tracing::debug!(error = %e, "cannot LISTEN on the store yet"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener
            .listen_all([AUTH_CHANNEL, SERVERS_CHANNEL, STATS_CHANNEL, SETTINGS_CHANNEL])
            .await?;
        Ok(listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ver: i32) -> AuthState {
        AuthState {
            role: "viewer".into(),
            disabled: false,
            token_version: ver,
            revoked: false,
        }
    }

    #[test]
    fn nothing_is_served_without_a_listener() {
        let c = StoreCache::new(0);
        let jti = Uuid::new_v4();
        c.put_auth(jti, state(1), c.generation());
        assert!(c.auth(jti).is_none());
        c.set_listening(true);
        c.put_auth(jti, state(1), c.generation());
        assert_eq!(c.auth(jti).map(|s| s.token_version), Some(1));
        c.set_listening(false);
        assert!(c.auth(jti).is_none());
    }

    #[test]
    fn history_answers_need_the_listener_and_go_when_it_is_lost() {
        let c = StoreCache::new(1 << 20);
        let key = history_cache::Key {
            shape: history_cache::Shape::Series,
            server_id: 7,
            server: "prod".into(),
            database: None,
            first_us: 0,
            end_us: 600_000_000,
            step_secs: 600,
        };
        assert_eq!(c.history_generation(7), None);
        c.put_history(key.clone(), Bytes::from_static(b"{}"), c.history_generation(7));
        c.set_listening(true);
        assert!(c.history(&key).is_none());
        c.put_history(key.clone(), Bytes::from_static(b"{}"), c.history_generation(7));
        assert_eq!(c.history(&key).as_deref(), Some(&b"{}"[..]));
        c.invalidate(); // a user or server change leaves stats answers alone
        assert!(c.history(&key).is_some());
        c.set_listening(false);
        c.set_listening(true);
        assert!(
            c.history(&key).is_none(),
            "notifications may have been lost meanwhile"
        );
    }

    #[test]
    fn a_notification_during_a_read_keeps_the_read_value_out() {
        let c = StoreCache::new(0);
        c.set_listening(true);
        let jti = Uuid::new_v4();
        let read_at = c.generation();
        c.invalidate(); // a NOTIFY arrives while the store is being read
        c.put_auth(jti, state(1), read_at);
        assert!(c.auth(jti).is_none());
        let read_at = c.generation();
        c.put_auth(jti, state(2), read_at);
        assert_eq!(c.auth(jti).map(|s| s.token_version), Some(2));
        c.invalidate();
        assert!(c.auth(jti).is_none());
    }
}
