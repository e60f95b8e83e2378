//! The enabled servers, reloaded on `NOTIFY pgmon_servers` and every minute, and the back-off of the
//! ones that do not answer.
//!
//! Passwords are decrypted once per reload and kept in memory only inside [`Target`]s. When the store
//! is unreachable the last list loaded stays in use, so collection goes on.

use pgmon_shared::crypto::Crypto;
use pgmon_shared::remote::{ErrorClass, RemoteError, SslMode, Target};
use pgmon_shared::store::{self, servers::ServerRow};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// First retry delay of an unreachable server; doubles per failure up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// One monitored server as the collector sees it.
#[derive(Debug)]
pub struct Server {
    pub row: ServerRow,
    /// Why the server cannot be connected to at all (bad stored settings, undecryptable password).
    pub target: Result<Target, String>,
}

impl Server {
    pub fn id(&self) -> i64 {
        self.row.id
    }

    fn from_row(row: ServerRow, crypto: &Crypto) -> Self {
        let target = target_of(&row, crypto);
        Self { row, target }
    }
}

fn target_of(row: &ServerRow, crypto: &Crypto) -> Result<Target, String> {
    let port = u16::try_from(row.port).map_err(|_| "port out of range".to_string())?;
    let sslmode: SslMode = row
        .sslmode
        .parse()
        .map_err(|e: pgmon_shared::remote::BadSslMode| e.to_string())?;
    let password = match &row.password_enc {
        Some(token) => Some(crypto.decrypt(token).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Target {
        host: row.host.clone(),
        port,
        dbname: row.dbname.clone(),
        user: row.username.clone(),
        password,
        sslmode,
    })
}

#[derive(Debug, Clone)]
struct Backoff {
    failures: u32,
    next_try: Instant,
    last: RemoteError,
}

#[derive(Default)]
pub struct Registry {
    servers: RwLock<Arc<Vec<Arc<Server>>>>,
    loaded: std::sync::atomic::AtomicBool,
    backoff: Mutex<HashMap<i64, Backoff>>,
}

impl Registry {
    /// The current list (cheap: an `Arc`).
    pub fn list(&self) -> Arc<Vec<Arc<Server>>> {
        self.servers.read().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reloads the enabled servers; returns the ids that were not in the previous list, or that
    /// changed (a new server, or one whose connection settings were edited, gets collected at once).
    pub async fn reload(&self, pool: &PgPool, crypto: &Crypto) -> store::Result<Vec<i64>> {
        let rows = store::servers::list_enabled(pool).await?;
        let old = self.list();
        let old_by_id: HashMap<i64, &Arc<Server>> = old.iter().map(|s| (s.id(), s)).collect();
        let mut changed = Vec::new();
        let mut next = Vec::with_capacity(rows.len());
        for row in rows {
            match old_by_id.get(&row.id) {
                Some(s) if s.row.updated_at == row.updated_at => {
                    if s.row.ssh_host_key_fingerprint == row.ssh_host_key_fingerprint {
                        next.push(Arc::clone(s));
                    } else {
                        // A host key pinned or reset: nothing to collect anew.
                        next.push(Arc::new(Server::from_row(row, crypto)));
                    }
                }
                _ => {
                    changed.push(row.id);
                    next.push(Arc::new(Server::from_row(row, crypto)));
                }
            }
        }
        let ids: HashSet<i64> = next.iter().map(|s| s.id()).collect();
        if let Ok(mut b) = self.backoff.lock() {
            b.retain(|id, _| ids.contains(id) && !changed.contains(id));
        }
        if let Ok(mut g) = self.servers.write() {
            *g = Arc::new(next);
        }
        self.loaded.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(changed)
    }

    /// `Some(last error)` while the server is backing off and should not be tried yet.
    pub fn backing_off(&self, id: i64) -> Option<RemoteError> {
        let b = self.backoff.lock().ok()?;
        b.get(&id)
            .filter(|b| Instant::now() < b.next_try)
            .map(|b| b.last.clone())
    }

    /// Records a failed connect: the next try waits 1 s, 2 s, 4 s ... (capped at 5 min), with jitter
    /// so that many servers failing together do not retry together. Returns whether this failure's
    /// class differs from the previous one's (a new condition, worth one log line).
    pub fn failed(&self, id: i64, e: &RemoteError) -> bool {
        let Ok(mut map) = self.backoff.lock() else {
            return false;
        };
        let new = map.get(&id).is_none_or(|b| b.last.class != e.class);
        let failures = map.get(&id).map_or(0, |b| b.failures).saturating_add(1);
        let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let delay = exp.min(BACKOFF_CAP).mul_f64(0.5 + rand::random::<f64>() * 0.5);
        map.insert(
            id,
            Backoff {
                failures,
                next_try: Instant::now() + delay,
                last: e.clone(),
            },
        );
        new
    }

    pub fn succeeded(&self, id: i64) {
        if let Ok(mut map) = self.backoff.lock() {
            map.remove(&id);
        }
    }
}

/// The error recorded for a server whose stored settings cannot be used.
pub fn settings_error(message: &str) -> RemoteError {
    RemoteError::new(ErrorClass::Other, format!("unusable server settings: {message}"))
}
