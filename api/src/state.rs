//! What every request handler can reach.

use crate::auth::jwt::JwtKeys;
use crate::auth::password::Hasher;
use crate::auth::rate_limit::LoginLimiter;
use pgmon_shared::Config;
use pgmon_shared::crypto::Crypto;
use pgmon_shared::settings::Settings;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub cfg: Arc<Config>,
    pub jwt: Arc<JwtKeys>,
    pub crypto: Arc<Crypto>,
    pub hasher: Hasher,
    pub limiter: LoginLimiter,
    /// Server probes per user (`servers.test_attempts_per_minute`).
    pub probes: crate::probe_limit::ProbeLimiter,
    pub started: Instant,
    pub remote: crate::remote_pools::RemotePools,
    /// Auth states and servers by name, kept current by LISTEN (off until the listener runs).
    pub cache: crate::store_cache::StoreCache,
    /// Packed history chunks, which never change once written (`api.history_cache_mb`).
    pub chunks: Arc<pgmon_shared::store::chunk_cache::ChunkCache>,
    /// `api.trusted_proxies`, parsed once.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// `api.client_ip_header`, parsed once.
    pub client_ip_header: poem::http::HeaderName,
    /// The store's part of `/health`, shared by every request for a second.
    pub health: Arc<crate::routes::health::HealthCache>,
    /// What pgmon knows of each server's live status, refreshed in the background.
    pub live: crate::live::LiveStatuses,
    /// This process's writer of the system log.
    pub journal: pgmon_shared::journal::Journal,
    /// Requests answered, for `/metrics`.
    pub requests: crate::metrics::own::Requests,
}

impl AppState {
    /// The effective runtime settings: the store's, else (store unreachable) the config file's.
    pub async fn settings(&self) -> Settings {
        if let Some(s) = self.cache.settings() {
            return s;
        }
        let read_at = self.cache.generation();
        let defaults = Settings::defaults(&self.cfg);
        match pgmon_shared::store::settings::load(&self.pool, defaults).await {
            Ok((s, _)) => {
                self.cache.put_settings(s, read_at);
                s
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the runtime settings; using the config file's");
                defaults
            }
        }
    }
}
