//! `/api/health` (no auth) and `/api/pools/status` (any role).

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::state::AppState;
use pgmon_shared::store;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use std::time::Duration;

#[derive(Tags)]
enum Tag {
    /// Liveness and pools.
    Health,
}

#[derive(Debug, Object)]
pub struct StoreHealth {
    pub reachable: bool,
    pub schema_version: Option<i64>,
    pub expected_schema_version: i64,
    pub latency_ms: Option<f64>,
}

#[derive(Debug, Object)]
pub struct Health {
    /// `ok`, or `degraded` when the store is unreachable.
    pub status: String,
    pub version: String,
    pub uptime_secs: u64,
    pub store: StoreHealth,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Health>),
    #[oai(status = 503)]
    Degraded(Json<Health>),
}

#[derive(Debug, Object)]
pub struct StorePool {
    pub max: u32,
    pub size: u32,
    pub idle: u32,
    pub in_use: u32,
}

#[derive(Debug, Object)]
pub struct PoolsStatus {
    pub store: StorePool,
}

pub struct HealthApi;

#[OpenApi(tag = "Tag::Health")]
impl HealthApi {
    /// Health of the API and its store; 503 with `degraded` when the store is unreachable.
    #[oai(path = "/api/health", method = "get")]
    async fn health(&self, state: Data<&AppState>) -> HealthResponse {
        let t = std::time::Instant::now();
        let version = tokio::time::timeout(Duration::from_secs(2), store::schema_version(&state.pool)).await;
        let (reachable, schema_version) = match version {
            Ok(Ok(v)) => (true, Some(v)),
            _ => (false, None),
        };
        let body = Health {
            status: if reachable { "ok" } else { "degraded" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: state.started.elapsed().as_secs(),
            store: StoreHealth {
                reachable,
                schema_version,
                expected_schema_version: store::expected_schema_version(),
                latency_ms: reachable.then(|| t.elapsed().as_secs_f64() * 1000.0),
            },
        };
        if reachable {
            HealthResponse::Ok(Json(body))
        } else {
            HealthResponse::Degraded(Json(body))
        }
    }

    /// Connection pools: the store's (remote server pools are added by the stats API).
    #[oai(path = "/api/pools/status", method = "get")]
    async fn pools(&self, state: Data<&AppState>, _auth: Auth) -> ApiResult<Json<PoolsStatus>> {
        let size = state.pool.size();
        let idle = u32::try_from(state.pool.num_idle()).unwrap_or(u32::MAX);
        Ok(Json(PoolsStatus {
            store: StorePool {
                max: state.cfg.store.max_connections,
                size,
                idle,
                in_use: size.saturating_sub(idle),
            },
        }))
    }
}
