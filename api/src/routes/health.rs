//! `/api/health` (no auth) and `/api/pools/status` (any role).
//!
//! Health also reports the collectors' heartbeats: a collector records each task run in
//! `collector_instances.tasks`, and health is `degraded` when the newest run of a task, by any
//! collector, is older than twice that task's interval.

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::payload::SerdeJson;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::settings::Settings;
use pgmon_shared::store;
use pgmon_shared::store::collectors::{self, Heartbeat};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Tags)]
enum Tag {
    /// Liveness and pools.
    Health,
}

#[derive(Debug, Clone, Object)]
pub struct StoreHealth {
    pub reachable: bool,
    pub schema_version: Option<i64>,
    pub expected_schema_version: i64,
    pub latency_ms: Option<f64>,
}

/// One collector process, from its heartbeat row.
#[derive(Debug, Clone, Object)]
pub struct CollectorBeat {
    pub instance_id: uuid::Uuid,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

/// The newest run of one task by any collector.
#[derive(Debug, Clone, Object)]
pub struct TaskHealth {
    pub task: String,
    pub interval_secs: u64,
    pub last_run: DateTime<Utc>,
    pub last_outcome: Option<String>,
    /// No collector ran it for more than twice its interval.
    pub overdue: bool,
}

#[derive(Debug, Clone, Object)]
pub struct CollectorsHealth {
    /// Collectors running, or stopped within the last day.
    pub instances: Vec<CollectorBeat>,
    pub tasks: Vec<TaskHealth>,
}

#[derive(Debug, Object)]
pub struct Health {
    /// `ok`, or `degraded` when the store is unreachable (HTTP 503) or when some task has not been run
    /// by any collector for more than twice its interval (HTTP 200: the API itself still works).
    pub status: String,
    /// When this answer was made.
    pub timestamp: DateTime<Utc>,
    /// Open pools to monitored servers.
    pub pools_count: i64,
    pub version: String,
    pub uptime_secs: u64,
    pub store: StoreHealth,
    /// `null` when the store is unreachable. With no collector ever registered, no task is overdue.
    pub collectors: Option<CollectorsHealth>,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Health>),
    #[oai(status = 503)]
    Degraded(Json<Health>),
}

#[derive(Debug, Object, serde::Serialize)]
pub struct StorePool {
    pub max: u32,
    pub size: u32,
    pub idle: u32,
    pub in_use: u32,
}

/// A pool of connections from this API to one monitored server (for live status).
#[derive(Debug, Object, serde::Serialize)]
pub struct RemotePool {
    pub server: String,
    /// `default` or `high_load`.
    pub profile: String,
    pub max: u64,
    pub size: u64,
    pub idle: u64,
    /// Requests waiting for a connection.
    pub waiting: u64,
}

/// Whole history answers this API keeps until their server's data changes
/// (`api.history_response_cache_mb`).
#[derive(Debug, Object, serde::Serialize)]
pub struct HistoryAnswers {
    /// False while the API's `LISTEN` connection to the store is down: nothing is kept or served.
    pub active: bool,
    pub answers: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Answers sent from memory since the API started.
    pub hits: u64,
    /// Answers computed since the API started.
    pub computed: u64,
}

/// A remote pool as the original listed it, under the key `host:port:user:dbname`.
#[derive(Debug, serde::Serialize)]
pub struct OriginalPool {
    pub minconn: usize,
    pub maxconn: usize,
    pub closed: bool,
}

/// The pools. Besides the fields below, every open remote pool is also a member named
/// `host:port:user:dbname` holding `{minconn, maxconn, closed}`, as the original listed its pools.
#[derive(Debug, Object, serde::Serialize)]
pub struct PoolsStatus {
    pub store: StorePool,
    /// Open pools to monitored servers, by server name; pools idle for 5 minutes are closed.
    pub remote: Vec<RemotePool>,
    pub history_answers: HistoryAnswers,
    #[oai(skip)]
    #[serde(flatten)]
    pub original: BTreeMap<String, OriginalPool>,
}

impl crate::payload::JsonSizeHint for PoolsStatus {
    fn json_size_hint(&self) -> usize {
        512 + self.remote.len() * 300
    }
}

pub struct HealthApi;

#[OpenApi(tag = "Tag::Health")]
impl HealthApi {
    /// Health of the API and its store; 503 with `degraded` when the store is unreachable.
    ///
    /// The store's part is at most a second old: it is shared by every request (see [`HealthCache`]).
    #[oai(path = "/health", method = "get")]
    async fn health(&self, state: Data<&AppState>) -> HealthResponse {
        let snap = state.health.get(&state).await;
        let reachable = snap.store.reachable;
        let overdue = snap
            .collectors
            .as_ref()
            .is_some_and(|c| c.tasks.iter().any(|t| t.overdue));
        let body = Health {
            status: if reachable && !overdue { "ok" } else { "degraded" }.into(),
            timestamp: Utc::now(),
            pools_count: state.remote.infos().len() as i64,
            collectors: snap.collectors.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: state.started.elapsed().as_secs(),
            store: snap.store.clone(),
        };
        if reachable {
            HealthResponse::Ok(Json(body))
        } else {
            HealthResponse::Degraded(Json(body))
        }
    }

    /// Connection pools: the store's and those to monitored servers, and the kept history answers.
    #[oai(path = "/pools/status", method = "get")]
    async fn pools(&self, state: Data<&AppState>, _auth: Auth) -> ApiResult<SerdeJson<PoolsStatus>> {
        let size = state.pool.size();
        let idle = u32::try_from(state.pool.num_idle()).unwrap_or(u32::MAX);
        let infos = state.remote.infos();
        let original = infos
            .iter()
            .map(|p| {
                (
                    p.key.clone(),
                    OriginalPool {
                        minconn: 0,
                        maxconn: p.max,
                        closed: false,
                    },
                )
            })
            .collect();
        SerdeJson::new(&PoolsStatus {
            original,
            store: StorePool {
                max: state.cfg.store.max_connections,
                size,
                idle,
                in_use: size.saturating_sub(idle),
            },
            remote: infos
                .into_iter()
                .map(|p| RemotePool {
                    server: p.server,
                    profile: p.profile,
                    max: p.max as u64,
                    size: p.size as u64,
                    idle: p.idle as u64,
                    waiting: p.waiting as u64,
                })
                .collect(),
            history_answers: {
                let (h, active) = state.cache.history_stats();
                HistoryAnswers {
                    active,
                    answers: h.answers,
                    bytes: h.bytes,
                    max_bytes: h.max_bytes,
                    hits: h.hits,
                    computed: h.computed,
                }
            },
        })
    }
}

/// How long the store's part of `/health` is shared.
const HEALTH_TTL: Duration = Duration::from_secs(1);

/// What `/health` reads from the store.
pub struct StoreSnapshot {
    store: StoreHealth,
    collectors: Option<CollectorsHealth>,
}

/// The store's part of `/health`, read at most once a second, by one request at a time.
///
/// `/health` needs no auth and is polled by load balancers: without this, every anonymous request
/// was two store queries. While one request refreshes a stale snapshot, the others answer from the
/// previous one rather than queue behind a slow store.
#[derive(Default)]
pub struct HealthCache {
    snapshot: std::sync::Mutex<Option<(Instant, Arc<StoreSnapshot>)>>,
    refresh: tokio::sync::Mutex<()>,
}

impl HealthCache {
    fn current(&self, fresh_only: bool) -> Option<Arc<StoreSnapshot>> {
        let g = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .filter(|(at, _)| !fresh_only || at.elapsed() < HEALTH_TTL)
            .map(|(_, s)| s.clone())
    }

    pub async fn get(&self, state: &AppState) -> Arc<StoreSnapshot> {
        if let Some(s) = self.current(true) {
            return s;
        }
        let _refreshing = match self.refresh.try_lock() {
            Ok(g) => g,
            Err(_) => match self.current(false) {
                Some(s) => return s,
                None => self.refresh.lock().await,
            },
        };
        // Another request may have refreshed it while this one waited.
        if let Some(s) = self.current(true) {
            return s;
        }
        let s = Arc::new(read_store(state).await);
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), s.clone()));
        s
    }
}

async fn read_store(state: &AppState) -> StoreSnapshot {
    let t = Instant::now();
    let version = tokio::time::timeout(Duration::from_secs(2), store::schema_version(&state.pool)).await;
    let (reachable, schema_version) = match version {
        Ok(Ok(v)) => (true, Some(v)),
        _ => (false, None),
    };
    let latency_ms = reachable.then(|| t.elapsed().as_secs_f64() * 1000.0);
    let collectors = if reachable {
        match tokio::time::timeout(Duration::from_secs(2), collectors::heartbeats(&state.pool)).await {
            Ok(Ok(beats)) => Some(collectors_health(
                &state.settings().await,
                state.cfg.collector.maintenance_interval_secs,
                beats,
                Utc::now(),
            )),
            _ => None,
        }
    } else {
        None
    };
    StoreSnapshot {
        store: StoreHealth {
            reachable,
            schema_version,
            expected_schema_version: store::expected_schema_version(),
            latency_ms,
        },
        collectors,
    }
}

/// Per task, the newest run over all collectors and whether it is overdue.
fn collectors_health(
    s: &Settings,
    maintenance_interval_secs: u64,
    beats: Vec<Heartbeat>,
    now: DateTime<Utc>,
) -> CollectorsHealth {
    let intervals = [
        ("stats", s.collect_interval().as_secs()),
        ("sizes", s.size_update_interval().as_secs()),
        ("db_info", s.db_check_interval().as_secs()),
        ("maintenance", maintenance_interval_secs),
    ];
    let mut tasks = Vec::new();
    for (task, interval) in intervals {
        let newest = beats
            .iter()
            .filter_map(|b| {
                let t = b.tasks.get(task)?;
                let at = t.get("last_run")?.as_str()?.parse::<DateTime<Utc>>().ok()?;
                let outcome = t.get("outcome").and_then(|o| o.as_str()).map(str::to_string);
                Some((at, outcome))
            })
            .max_by_key(|(at, _)| *at);
        if let Some((last_run, last_outcome)) = newest {
            let limit =
                chrono::Duration::seconds(i64::try_from(interval.saturating_mul(2)).unwrap_or(i64::MAX));
            tasks.push(TaskHealth {
                task: task.to_string(),
                interval_secs: interval,
                last_run,
                last_outcome,
                overdue: now - last_run > limit,
            });
        }
    }
    CollectorsHealth {
        instances: beats
            .into_iter()
            .map(|b| CollectorBeat {
                instance_id: b.instance_id,
                host: b.host,
                pid: b.pid,
                version: b.version,
                started_at: b.started_at,
                last_seen_at: b.last_seen_at,
                stopped_at: b.stopped_at,
            })
            .collect(),
        tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(tasks: serde_json::Value) -> Heartbeat {
        Heartbeat {
            instance_id: uuid::Uuid::new_v4(),
            host: "h".into(),
            pid: 1,
            version: "0".into(),
            started_at: Utc::now(),
            last_seen_at: Utc::now(),
            stopped_at: None,
            tasks,
            counters: serde_json::json!({}),
        }
    }

    #[test]
    fn a_task_is_overdue_after_twice_its_interval_across_all_collectors() {
        let cfg = Settings::defaults(
            &pgmon_shared::Config::from_toml_and_env(
                "[store]\nurl = \"postgres://h/d\"\n",
                "t.toml",
                std::iter::empty(),
            )
            .expect("config"),
        );
        let now = Utc::now();
        let ago = |s: i64| (now - chrono::Duration::seconds(s)).to_rfc3339();
        let old = beat(serde_json::json!({"stats": {"last_run": ago(1300), "outcome": "ok"}}));
        let h = collectors_health(&cfg, 3600, vec![old], now);
        assert!(h.tasks[0].overdue);
        let fresh = beat(serde_json::json!({"stats": {"last_run": ago(700), "outcome": "ok"}}));
        let old =
            beat(serde_json::json!({"stats": {"last_run": ago(5000)}, "sizes": {"last_run": ago(3000)}}));
        let h = collectors_health(&cfg, 3600, vec![old, fresh], now);
        assert_eq!(h.tasks.len(), 2);
        assert!(!h.tasks[0].overdue, "another collector ran it recently");
        assert!(!h.tasks[1].overdue, "sizes run every 1800 s");
        assert!(collectors_health(&cfg, 3600, Vec::new(), now).tasks.is_empty());
    }
}
