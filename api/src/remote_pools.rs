//! Connections from the API to monitored servers (live status, activity).
//!
//! One deadpool pool per server, sized by its `pool` profile, created on first use and rebuilt when
//! the server's connection settings change. Connections are recycled with `RecyclingMethod::Verified`
//! (a dead connection is never handed out), every wait/create/recycle has a deadline, and a
//! housekeeping pass closes connections idle for [`IDLE_CLOSE`] and drops pools unused for as long,
//! since nothing in deadpool closes idle connections by itself. `pools.*.min` is not kept warm:
//! deadpool has no minimum size, and an API that only answers on demand does not need one.
//!
//! A pool connects only to addresses checked against `servers.allowed_targets` after resolution. The
//! check is redone at most every [`RECHECK_AFTER`] (not on every `get`: that was a DNS lookup per
//! request, even when an open connection to a checked address was handed out), and the pool is
//! rebuilt when it gives other addresses, so a DNS change reaches no new connection unchecked.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use pgmon_shared::config::PoolsConfig;
use pgmon_shared::remote::{self, ErrorClass, RemoteError, SessionOpts, Target};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections and pools unused for this long are closed.
pub const IDLE_CLOSE: Duration = Duration::from_secs(300);
/// How long a resolution checked against `servers.allowed_targets` stands for a pool's new
/// connections: a DNS change reaches new connections at most this late, and always checked.
pub const RECHECK_AFTER: Duration = Duration::from_secs(30);

/// The API's session limits on monitored servers.
pub fn session_opts() -> SessionOpts {
    SessionOpts::new("pgmon-api")
}

struct Entry {
    name: String,
    profile: String,
    target: Target,
    /// The checked addresses the pool connects to, and when they were checked.
    addrs: Vec<IpAddr>,
    checked_at: Instant,
    pool: Pool,
    last_used: Instant,
}

/// A pool as `/api/pools/status` shows it.
#[derive(Debug, Clone)]
pub struct PoolInfo {
    pub server: String,
    /// `host:port:user:dbname`, the original backend's name for a pool.
    pub key: String,
    pub profile: String,
    pub max: usize,
    pub size: usize,
    pub idle: usize,
    pub waiting: usize,
}

#[derive(Clone)]
pub struct RemotePools {
    pools: Arc<Mutex<HashMap<i64, Entry>>>,
    sizes: PoolsConfig,
}

impl RemotePools {
    pub fn new(sizes: PoolsConfig) -> Self {
        Self {
            pools: Arc::default(),
            sizes,
        }
    }

    /// Creates the pools and spawns their housekeeping (idle connections closed every minute).
    pub fn start(sizes: PoolsConfig) -> Self {
        let pools = Self::new(sizes);
        let this = pools.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                this.close_idle();
            }
        });
        pools
    }

    /// The pool of server `id`, created or rebuilt if its settings changed.
    fn pool_for(
        &self,
        id: i64,
        name: &str,
        profile: &str,
        target: &Target,
        addrs: Vec<IpAddr>,
    ) -> Result<Pool, RemoteError> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = pools.get_mut(&id)
            && e.target == *target
            && e.addrs == addrs
            && e.profile == profile
        {
            e.last_used = Instant::now();
            e.checked_at = Instant::now();
            e.name = name.to_string();
            return Ok(e.pool.clone());
        }
        let opts = session_opts();
        let mgr = Manager::from_config(
            remote::pg_config(target, &opts, &addrs),
            remote::tls_connector(target.sslmode),
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let size = self.sizes.profile(profile);
        let pool = Pool::builder(mgr)
            .max_size(size.max.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.connect_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .recycle_timeout(Some(opts.connect_timeout))
            .build();
        let pool =
            pool.map_err(|e| RemoteError::new(ErrorClass::Other, format!("cannot build a pool: {e}")))?;
        pools.insert(
            id,
            Entry {
                name: name.to_string(),
                profile: profile.to_string(),
                target: target.clone(),
                addrs,
                checked_at: Instant::now(),
                pool: pool.clone(),
                last_used: Instant::now(),
            },
        );
        Ok(pool)
    }

    /// The pool of server `id` when its addresses were checked within [`RECHECK_AFTER`] for these
    /// settings: its connections go to those addresses, so no lookup is needed to hand one out.
    fn recently_checked(&self, id: i64, profile: &str, target: &Target) -> Option<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let e = pools.get_mut(&id)?;
        (e.target == *target && e.profile == profile && e.checked_at.elapsed() < RECHECK_AFTER).then(|| {
            e.last_used = Instant::now();
            e.pool.clone()
        })
    }

    /// A connection to server `id`, within the connect deadline (resolution and its check included).
    pub async fn get(
        &self,
        id: i64,
        name: &str,
        profile: &str,
        target: &Target,
    ) -> Result<deadpool_postgres::Object, RemoteError> {
        let deadline = session_opts().connect_timeout + Duration::from_secs(1);
        let started = Instant::now();
        let pool = match self.recently_checked(id, profile, target) {
            Some(pool) => pool,
            None => {
                let addrs = match tokio::time::timeout(deadline, remote::resolve(target)).await {
                    Ok(r) => r?,
                    Err(_) => return Err(RemoteError::timeout("connect", session_opts().connect_timeout)),
                };
                self.pool_for(id, name, profile, target, addrs)?
            }
        };
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, pool.get()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(deadpool_postgres::PoolError::Backend(e))) => Err(RemoteError::from_pg(&e)),
            Ok(Err(deadpool_postgres::PoolError::Timeout(_))) | Err(_) => {
                Err(RemoteError::timeout("connect", session_opts().connect_timeout))
            }
            Ok(Err(_)) => Err(RemoteError::new(ErrorClass::Other, "connection pool error")),
        }
    }

    /// Closes idle connections and drops pools nobody used for [`IDLE_CLOSE`].
    pub fn close_idle(&self) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|_, e| e.last_used.elapsed() < IDLE_CLOSE);
        for e in pools.values() {
            e.pool.retain(|_, m| m.last_used() < IDLE_CLOSE);
        }
    }

    /// Every open pool, by server name.
    pub fn infos(&self) -> Vec<PoolInfo> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<PoolInfo> = pools
            .values()
            .map(|e| {
                let s = e.pool.status();
                PoolInfo {
                    server: e.name.clone(),
                    key: format!(
                        "{}:{}:{}:{}",
                        e.target.host, e.target.port, e.target.user, e.target.dbname
                    ),
                    profile: e.profile.clone(),
                    max: s.max_size,
                    size: s.size,
                    idle: s.available,
                    waiting: s.waiting,
                }
            })
            .collect();
        out.sort_by(|a, b| a.server.cmp(&b.server));
        out
    }
}
