//! What each monitored server answers right now: the status probe (version, uptime, connections,
//! sizes) through the API's per-server pools, the disk of its data directory over SSH, and what this
//! API instance remembers of both.
//!
//! Two ways to ask. [`LiveStatuses::status`] and [`LiveStatuses::disk`] wait for an answer at most
//! `server_status_cache_ttl_secs` (`ssh_cache_ttl_secs`) old; concurrent callers share one probe. They
//! serve the one-server endpoints. [`LiveStatuses::known`] never waits: it returns what is known, how
//! old it is, and starts a background refresh of anything stale (one per server at a time, at most
//! [`BACKGROUND_PROBES`] servers at once). It serves `GET /servers`, which every browser polls: a
//! dead or black-holed server must not slow that list down, it only stays stale until its probe ends.

use crate::remote_pools::session_opts;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::redact::{peer_text, redact_sql};
use pgmon_shared::remote::{self, ErrorClass, RemoteError};
use pgmon_shared::ssh;
use pgmon_shared::store::servers::{self, ServerRow};
use poem_openapi::Object;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whole SSH exchange (connect, login, `df`) deadline.
const SSH_DEADLINE: Duration = Duration::from_secs(10);
/// Servers probed at once by background refreshes (foreground probes are not counted).
pub const BACKGROUND_PROBES: usize = 16;
/// Remembered answers of servers nobody asked about for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Connections on the server by state (client backends only, this API's own session excluded).
#[derive(Debug, Clone, Object)]
pub struct Connections {
    pub total: i64,
    pub active: i64,
    pub idle: i64,
    pub idle_in_transaction: i64,
    /// Sessions waiting on a heavyweight lock.
    pub waiting_on_lock: i64,
}

/// Disk usage of the data directory's file system, read over SSH.
#[derive(Debug, Clone, Object)]
pub struct DiskStatus {
    pub ok: bool,
    pub mount: Option<String>,
    pub total_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    /// `auth_failed | timeout | unreachable | host_key_mismatch | command_failed | other`
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
}

/// A query running on the server, as the original's `/server_stats` listed them.
#[derive(Debug, Clone, Object)]
pub struct SessionQuery {
    pub pid: i32,
    pub usename: Option<String>,
    pub datname: Option<String>,
    /// Cut to `api.activity_query_chars` characters, password literals redacted; for viewers as
    /// `api.viewer_query_text` says.
    pub query: Option<String>,
    pub state: Option<String>,
}

/// The server as it answered a probe.
#[derive(Debug, Clone, Object)]
pub struct LiveStatus {
    pub server: String,
    pub reachable: bool,
    /// `auth_failed`, `timeout`, `unreachable`, `tls`, `refused` or `other` when not reachable.
    pub error_class: Option<String>,
    pub error: Option<String>,
    /// When the server was asked; older than the request by up to the cache TTL.
    pub checked_at: DateTime<Utc>,
    pub latency_ms: Option<f64>,
    /// `version()`, e.g. `PostgreSQL 15.10 (Debian 15.10-0+deb12u1) on x86_64-pc-linux-gnu, ...`.
    pub version: Option<String>,
    pub version_num: Option<i32>,
    /// `server_version`, e.g. `15.10 (Debian 15.10-0+deb12u1)`.
    pub server_version: Option<String>,
    pub uptime_secs: Option<f64>,
    pub in_recovery: Option<bool>,
    pub max_connections: Option<i32>,
    pub connections: Option<Connections>,
    /// Every `pg_stat_activity` row counted by `state` (`None`: background processes without one).
    pub sessions_by_state: Option<BTreeMap<String, i64>>,
    /// `data_directory`, when the monitoring role may read it (`pg_read_all_settings`).
    pub data_directory: Option<String>,
    /// Databases other than templates.
    pub databases: Option<i64>,
    /// Sum of the sizes of the databases this role may connect to.
    pub total_size_bytes: Option<i64>,
    /// Age of the longest running query, seconds.
    pub longest_query_secs: Option<f64>,
    /// Age of the oldest open transaction, seconds.
    pub longest_transaction_secs: Option<f64>,
    /// `null` when SSH is not configured for the server.
    pub disk: Option<DiskStatus>,
}

const STATUS_SQL: &str = "
    SELECT version(),
           current_setting('server_version_num')::int4,
           extract(epoch FROM now() - pg_postmaster_start_time())::float8,
           pg_is_in_recovery(),
           current_setting('max_connections')::int4,
           a.total, a.active, a.idle, a.idle_xact, a.waiting, a.longest_query, a.longest_xact,
           (SELECT count(*) FROM pg_database WHERE NOT datistemplate),
           (SELECT sum(pg_database_size(oid))::int8 FROM pg_database
             WHERE datallowconn AND has_database_privilege(oid, 'CONNECT')),
           current_setting('server_version'),
           (SELECT json_object_agg(coalesce(state, 'None'), n)
              FROM (SELECT state, count(*) AS n FROM pg_stat_activity GROUP BY state) s),
           (SELECT setting FROM pg_settings WHERE name = 'data_directory')
    FROM (SELECT count(*) AS total,
                 count(*) FILTER (WHERE state = 'active') AS active,
                 count(*) FILTER (WHERE state = 'idle') AS idle,
                 count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_xact,
                 count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,
                 extract(epoch FROM max(now() - query_start) FILTER (WHERE state = 'active'))::float8
                     AS longest_query,
                 extract(epoch FROM max(now() - xact_start))::float8 AS longest_xact
          FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) a";

fn down(name: &str, e: &RemoteError, latency_ms: Option<f64>) -> LiveStatus {
    LiveStatus {
        server: name.to_string(),
        reachable: false,
        error_class: Some(e.class.as_str().to_string()),
        error: Some(e.message.clone()),
        checked_at: Utc::now(),
        latency_ms,
        version: None,
        version_num: None,
        server_version: None,
        uptime_secs: None,
        in_recovery: None,
        max_connections: None,
        connections: None,
        sessions_by_state: None,
        data_directory: None,
        databases: None,
        total_size_bytes: None,
        longest_query_secs: None,
        longest_transaction_secs: None,
        disk: None,
    }
}

/// Asks the server; a failure is a `reachable: false` answer, never an error.
pub async fn probe(state: &AppState, server: &ServerRow) -> LiveStatus {
    let target = match servers::remote_target(&state.crypto, server) {
        Ok(t) => t,
        Err(_) => {
            let e = RemoteError::new(ErrorClass::Other, "the stored password cannot be decrypted");
            return down(&server.name, &e, None);
        }
    };
    let t = Instant::now();
    let row = async {
        let client = state
            .remote
            .get(server.id, &server.name, &server.pool, &target)
            .await?;
        let deadline = session_opts().call_deadline();
        let stmt = remote::call(deadline, client.prepare_cached(STATUS_SQL)).await?;
        remote::call(deadline, client.query_one(&stmt, &[])).await
    }
    .await;
    let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
    let row = match row {
        Ok(r) => r,
        Err(e) => return down(&server.name, &e, Some(latency_ms)),
    };
    let parsed = (|| -> Result<LiveStatus, tokio_postgres::Error> {
        let count = |i: usize| -> Result<i64, tokio_postgres::Error> {
            Ok(row.try_get::<_, Option<i64>>(i)?.unwrap_or(0))
        };
        let by_state: Option<serde_json::Value> = row.try_get(15)?;
        Ok(LiveStatus {
            server: server.name.clone(),
            reachable: true,
            error_class: None,
            error: None,
            checked_at: Utc::now(),
            latency_ms: Some(latency_ms),
            // The server's own words: a hostile or odd build may put anything in them.
            version: row.try_get::<_, Option<String>>(0)?.map(|v| peer_text(&v, 300)),
            version_num: row.try_get(1)?,
            server_version: row.try_get::<_, Option<String>>(14)?.map(|v| peer_text(&v, 100)),
            uptime_secs: row.try_get(2)?,
            in_recovery: row.try_get(3)?,
            max_connections: row.try_get(4)?,
            connections: Some(Connections {
                total: count(5)?,
                active: count(6)?,
                idle: count(7)?,
                idle_in_transaction: count(8)?,
                waiting_on_lock: count(9)?,
            }),
            sessions_by_state: by_state.and_then(|v| serde_json::from_value(v).ok()),
            data_directory: row.try_get(16)?,
            longest_query_secs: row.try_get(10)?,
            longest_transaction_secs: row.try_get(11)?,
            databases: row.try_get(12)?,
            total_size_bytes: row.try_get(13)?,
            disk: None,
        })
    })();
    parsed.unwrap_or_else(|e| down(&server.name, &RemoteError::from_pg(&e), Some(latency_ms)))
}

/// Disk usage over SSH; `None` without SSH settings. Pins the host key on first success.
pub async fn probe_disk(state: &AppState, server: &ServerRow) -> Option<DiskStatus> {
    let path = server.ssh_data_path.as_deref().filter(|p| !p.is_empty())?;
    if !server.ssh_enabled {
        return None;
    }
    let failed = |class: &str, msg: String| DiskStatus {
        ok: false,
        mount: None,
        total_bytes: None,
        used_bytes: None,
        available_bytes: None,
        error_class: Some(class.to_string()),
        error: Some(msg),
        checked_at: Utc::now(),
    };
    Some(
        match servers::ssh_target(&state.pool, &state.crypto, server).await {
            Ok(Some(target)) => match ssh::disk_usage(&target, path, SSH_DEADLINE).await {
                Ok(out) => {
                    if server.ssh_host_key_fingerprint.is_none() {
                        if let Err(e) =
                            servers::pin_host_key(&state.pool, server.id, &out.host_key_fingerprint).await
                        {
                            tracing::warn!(server = %server.name, error = %e, "cannot pin the SSH host key");
                        }
                        // A write inside a read: the cached row without the pin must go now, not when
                        // the NOTIFY comes back.
                        state.cache.invalidate();
                    }
                    DiskStatus {
                        ok: true,
                        mount: Some(out.value.mount),
                        total_bytes: Some(out.value.total_bytes),
                        used_bytes: Some(out.value.used_bytes),
                        available_bytes: Some(out.value.available_bytes),
                        error_class: None,
                        error: None,
                        checked_at: Utc::now(),
                    }
                }
                Err(e) => failed(e.class.as_str(), e.message),
            },
            Ok(None) => return None,
            Err(e) => failed("other", e.to_string()),
        },
    )
}

/// The sessions with a state, through the API's pool for the server.
async fn session_queries(state: &AppState, server: &ServerRow) -> Result<Vec<SessionQuery>, RemoteError> {
    let target = servers::remote_target(&state.crypto, server)
        .map_err(|_| RemoteError::new(ErrorClass::Other, "the stored password cannot be decrypted"))?;
    let client = state
        .remote
        .get(server.id, &server.name, &server.pool, &target)
        .await?;
    let deadline = session_opts().call_deadline();
    let chars = i32::try_from(state.cfg.api.activity_query_chars).unwrap_or(i32::MAX);
    // A cached statement: a one-off one is closed afterwards, one more message to the server.
    let stmt = remote::call(
        deadline,
        client.prepare_cached(
            "SELECT pid, usename::text, datname::text, left(query, $1), state
             FROM pg_stat_activity WHERE state IS NOT NULL ORDER BY pid",
        ),
    )
    .await?;
    let rows = remote::call(deadline, client.query(&stmt, &[&chars])).await?;
    let f = |e: tokio_postgres::Error| RemoteError::from_pg(&e);
    rows.iter()
        .map(|r| {
            Ok(SessionQuery {
                pid: r.try_get(0).map_err(f)?,
                usename: r.try_get(1).map_err(f)?,
                datname: r.try_get(2).map_err(f)?,
                // Redacted before it is kept: the cache serves every role.
                query: r
                    .try_get::<_, Option<String>>(3)
                    .map_err(f)?
                    .map(|q| redact_sql(&q).into_owned()),
                state: r.try_get(4).map_err(f)?,
            })
        })
        .collect()
}

/// A remembered answer and when it was taken.
type Kept<T> = Mutex<Option<(Instant, Arc<T>)>>;

#[derive(Default)]
struct Slot {
    status: Kept<LiveStatus>,
    disk: Kept<Option<DiskStatus>>,
    queries: Kept<Vec<SessionQuery>>,
    /// Held while a probe runs: concurrent callers wait for it instead of probing again.
    probing: tokio::sync::Mutex<()>,
    disk_probing: tokio::sync::Mutex<()>,
    queries_probing: tokio::sync::Mutex<()>,
    /// A background refresh is queued or running.
    refreshing: AtomicBool,
    last_asked: Mutex<Option<Instant>>,
}

fn fresh<T>(kept: &Kept<T>, ttl: Duration) -> Option<Arc<T>> {
    let g = kept.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref()
        .filter(|(at, _)| at.elapsed() < ttl)
        .map(|(_, v)| v.clone())
}

fn peek<T>(kept: &Kept<T>) -> Option<(Instant, Arc<T>)> {
    kept.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn keep<T>(kept: &Kept<T>, v: T) -> Arc<T> {
    let v = Arc::new(v);
    *kept.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), v.clone()));
    v
}

#[derive(Clone)]
pub struct LiveStatuses {
    slots: Arc<Mutex<HashMap<i64, Arc<Slot>>>>,
    background: Arc<tokio::sync::Semaphore>,
}

impl Default for LiveStatuses {
    fn default() -> Self {
        Self {
            slots: Arc::default(),
            background: Arc::new(tokio::sync::Semaphore::new(BACKGROUND_PROBES)),
        }
    }
}

/// What [`LiveStatuses::known`] returns for one server.
pub struct Known {
    pub status: Option<(Instant, Arc<LiveStatus>)>,
    /// `Some(None)`: probed, no SSH settings.
    pub disk: Option<(Instant, Arc<Option<DiskStatus>>)>,
}

impl LiveStatuses {
    fn slot(&self, id: i64) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() > 100 && slots.len().is_power_of_two() {
            slots.retain(|_, s| {
                s.last_asked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some_and(|t| t.elapsed() < FORGET_AFTER)
            });
        }
        let slot = slots.entry(id).or_default().clone();
        *slot.last_asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        slot
    }

    fn ttls(state: &AppState) -> (Duration, Duration) {
        (
            Duration::from_secs(state.cfg.api.server_status_cache_ttl_secs),
            Duration::from_secs(state.cfg.api.ssh_cache_ttl_secs),
        )
    }

    /// The status at most `server_status_cache_ttl_secs` old, probing (once for all concurrent
    /// callers) when there is none.
    pub async fn status(&self, state: &AppState, server: &ServerRow) -> Arc<LiveStatus> {
        let slot = self.slot(server.id);
        let ttl = Self::ttls(state).0;
        if let Some(v) = fresh(&slot.status, ttl) {
            return v;
        }
        let _probing = slot.probing.lock().await;
        if let Some(v) = fresh(&slot.status, ttl) {
            return v;
        }
        keep(&slot.status, probe(state, server).await)
    }

    /// The disk part at most `ssh_cache_ttl_secs` old; `None` without SSH settings.
    pub async fn disk(&self, state: &AppState, server: &ServerRow) -> Option<DiskStatus> {
        let slot = self.slot(server.id);
        let ttl = Self::ttls(state).1;
        if let Some(v) = fresh(&slot.disk, ttl) {
            return (*v).clone();
        }
        let _probing = slot.disk_probing.lock().await;
        if let Some(v) = fresh(&slot.disk, ttl) {
            return (*v).clone();
        }
        (*keep(&slot.disk, probe_disk(state, server).await)).clone()
    }

    /// The sessions with a state at most `server_status_cache_ttl_secs` old (empty when the server
    /// does not answer).
    pub async fn queries(&self, state: &AppState, server: &ServerRow) -> Arc<Vec<SessionQuery>> {
        let slot = self.slot(server.id);
        let ttl = Self::ttls(state).0;
        if let Some(v) = fresh(&slot.queries, ttl) {
            return v;
        }
        let _probing = slot.queries_probing.lock().await;
        if let Some(v) = fresh(&slot.queries, ttl) {
            return v;
        }
        keep(
            &slot.queries,
            session_queries(state, server).await.unwrap_or_default(),
        )
    }

    /// Probes PostgreSQL now, whatever is remembered (after the server's settings changed); the SSH
    /// part follows in the background (it may take its whole deadline).
    pub async fn refresh(&self, state: &AppState, server: &ServerRow) -> Arc<LiveStatus> {
        self.forget(server.id);
        let status = self.status(state, server).await;
        let (this, state, server) = (self.clone(), state.clone(), server.clone());
        tokio::spawn(async move {
            this.disk(&state, &server).await;
        });
        status
    }

    /// Remembers that `server` did not answer another caller (the activity endpoints), so that the
    /// next caller within the TTL is answered at once instead of waiting for its own timeout.
    pub fn note_down(&self, server: &ServerRow, e: &RemoteError) {
        let slot = self.slot(server.id);
        keep(&slot.status, down(&server.name, e, None));
    }

    /// Forgets what is remembered of server `id`.
    pub fn forget(&self, id: i64) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// What is known of `server` now, without waiting; a stale or missing answer starts a background
    /// refresh.
    pub fn known(&self, state: &AppState, server: &ServerRow) -> Known {
        let slot = self.slot(server.id);
        let (ttl, ssh_ttl) = Self::ttls(state);
        let status = peek(&slot.status);
        let disk = peek(&slot.disk);
        let stale = status.as_ref().is_none_or(|(at, _)| at.elapsed() >= ttl)
            || disk.as_ref().is_none_or(|(at, _)| at.elapsed() >= ssh_ttl);
        if stale && !slot.refreshing.swap(true, Ordering::AcqRel) {
            let (this, state, server) = (self.clone(), state.clone(), server.clone());
            tokio::spawn(async move {
                if let Ok(_permit) = this.background.clone().acquire_owned().await {
                    this.status(&state, &server).await;
                    this.disk(&state, &server).await;
                }
                slot.refreshing.store(false, Ordering::Release);
            });
        }
        Known { status, disk }
    }
}

/// The `status` string of the original's server list, chosen for its clients' rules: they show a
/// server as down when the text contains "error", as up when it is "ok" or contains it, and as
/// unknown otherwise.
pub fn original_status(status: Option<&LiveStatus>, disk: Option<&DiskStatus>) -> String {
    match status {
        None => "pending".into(),
        Some(s) if !s.reachable => format!(
            "error: PostgreSQL: {}",
            s.error.as_deref().unwrap_or("unreachable")
        ),
        Some(_) => match disk.filter(|d| !d.ok) {
            // The SSH part names its class only: a message could contain "error", which the
            // clients would read as "server down".
            Some(d) => format!("ok (SSH: {})", d.error_class.as_deref().unwrap_or("failed")),
            None => "ok".into(),
        },
    }
}

/// When `at` was, as wall-clock time.
pub fn wall_clock(at: Instant) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(at.elapsed()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reachable: bool) -> LiveStatus {
        let mut s = down(
            "x",
            &RemoteError::new(ErrorClass::Unreachable, "cannot connect: connection refused"),
            None,
        );
        s.reachable = reachable;
        s
    }

    fn disk(ok: bool) -> DiskStatus {
        DiskStatus {
            ok,
            mount: None,
            total_bytes: None,
            used_bytes: None,
            available_bytes: None,
            error_class: (!ok).then(|| "auth_failed".to_string()),
            error: (!ok).then(|| "authentication error".to_string()),
            checked_at: Utc::now(),
        }
    }

    /// The original frontend: contains "error" → down; "ok" or contains "ok" → up; else unknown.
    fn frontend(s: &str) -> &'static str {
        if s.is_empty() || s == "failed" || s.contains("error") {
            "down"
        } else if s == "ok" || s.contains("ok") {
            "up"
        } else {
            "unknown"
        }
    }

    #[test]
    fn status_strings_read_as_the_original_frontend_reads_them() {
        assert_eq!(frontend(&original_status(None, None)), "unknown");
        assert_eq!(frontend(&original_status(Some(&status(false)), None)), "down");
        assert_eq!(frontend(&original_status(Some(&status(true)), None)), "up");
        assert_eq!(original_status(Some(&status(true)), Some(&disk(true))), "ok");
        let ssh_failed = original_status(Some(&status(true)), Some(&disk(false)));
        assert_eq!(ssh_failed, "ok (SSH: auth_failed)");
        assert_eq!(frontend(&ssh_failed), "up");
    }
}
