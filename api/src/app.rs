//! Building and serving the HTTP application.

use crate::auth::password::Hasher;
use crate::auth::rate_limit::LoginLimiter;
use crate::error::{ApiError, to_json_response};
use crate::routes;
use crate::state::AppState;
use anyhow::Context;
use pgmon_shared::store::chunk_cache::ChunkCache;
use pgmon_shared::{Config, secrets, store};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// JSON bodies larger than this are refused with 413.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;
/// Multipart uploads (`/ssh-keys/import-file`) may be this large; the file itself is checked too.
pub const UPLOAD_BODY_LIMIT: usize = 1024 * 1024 + 16 * 1024;

pub fn openapi_service() -> OpenApiService<impl poem_openapi::OpenApi, ()> {
    OpenApiService::new(routes::apis(), "pgmon API", env!("CARGO_PKG_VERSION"))
        .description("PostgreSQL activity monitor: servers, users, audit and collected statistics.")
}

/// The whole route tree with its middleware, ready to serve.
pub fn build_endpoint(state: AppState) -> impl Endpoint {
    let api = openapi_service();
    let ui = api.swagger_ui();
    let spec = api.spec_endpoint();
    let origins = state.cfg.api.allowed_origins.clone();
    let mut cors = Cors::new().allow_credentials(true);
    for o in &origins {
        cors = cors.allow_origin(o.as_str());
    }
    Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", ui)
        .nest("/", api)
        .around(limit_body)
        .around(invalidate_after_writes)
        .with_if(!origins.is_empty(), cors)
        .data(state)
        .catch_all_error(to_json_response)
}

/// Every change to users, tokens and servers is a POST, PUT, PATCH or DELETE: once one has run, this
/// instance's caches of store rows are dropped before the response leaves, so the caller's next
/// request sees its own change. (Other instances learn of it by NOTIFY; see `store_cache`.)
async fn invalidate_after_writes<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let write = !matches!(*req.method(), poem::http::Method::GET | poem::http::Method::HEAD);
    let cache = write
        .then(|| req.data::<AppState>().map(|s| s.cache.clone()))
        .flatten();
    let out = next.call(req).await;
    if let Some(c) = cache {
        c.invalidate();
    }
    Ok(out?.into_response())
}

/// Refuses bodies over the limit with 413 before any handler reads them.
async fn limit_body<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let limit = if req.uri().path() == "/ssh-keys/import-file" {
        UPLOAD_BODY_LIMIT
    } else {
        JSON_BODY_LIMIT
    };
    let too_large = || ApiError::too_large(format!("request body larger than {limit} bytes"));
    let length = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match length {
        Some(n) if n > limit => return Err(too_large().into()),
        Some(_) => {}
        None if req.headers().contains_key(poem::http::header::TRANSFER_ENCODING) => {
            let body = req
                .take_body()
                .into_bytes_limit(limit)
                .await
                .map_err(|_| too_large())?;
            req.set_body(body);
        }
        None => {}
    }
    Ok(next.call(req).await?.into_response())
}

/// Loads secrets, opens and migrates the store: everything `serve` needs before it binds.
pub async fn build_state(cfg: Config) -> anyhow::Result<AppState> {
    let crypto = secrets::load_crypto(&cfg)?;
    let jwt_secret = secrets::load_jwt_secret(&cfg)?;
    let pool = store::connect_lazy(&cfg.store, "pgmon-api")?;
    store::migrate(&pool).await.context("cannot migrate the store")?;
    let hasher = Hasher::new(cfg.api.bcrypt_cost)?;
    Ok(AppState {
        pool,
        limiter: LoginLimiter::new(cfg.api.login_attempts_per_minute),
        jwt: Arc::new(crate::auth::jwt::JwtKeys::new(&jwt_secret)),
        crypto: Arc::new(crypto),
        hasher,
        remote: crate::remote_pools::RemotePools::start(cfg.pools.clone()),
        cache: crate::store_cache::StoreCache::new(cfg.api.history_response_cache_mb as usize * 1024 * 1024),
        chunks: Arc::new(ChunkCache::new(cfg.api.history_cache_mb as usize * 1024 * 1024)),
        cfg: Arc::new(cfg),
        started: Instant::now(),
    })
}

/// Serves until SIGTERM or SIGINT. Tells systemd READY once the listener is bound.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listen = cfg.api.listen;
    let state = build_state(cfg).await?;
    let acceptor = TcpListener::bind(listen)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(listen);
    // Handlers are installed before READY so that a SIGTERM right after start is a clean shutdown.
    let shutdown = shutdown_signal()?;
    tracing::info!(%bound, "pgmon-api listening; Swagger UI at http://{bound}/docs");
    println!("pgmon-api listening on http://{bound}");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    spawn_housekeeping(state.clone());
    tokio::spawn(state.cache.clone().listen(state.pool.clone()));
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(build_endpoint(state), shutdown, Some(Duration::from_secs(10)))
        .await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    Ok(())
}

/// Forgets stale rate-limit keys every minute and purges expired token rows every hour.
fn spawn_housekeeping(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            state.limiter.retain_recent();
            if n.is_multiple_of(60) {
                match store::tokens::purge_expired(&state.pool).await {
                    Ok(rows) if rows > 0 => tracing::info!(rows, "purged expired token rows"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "token purge failed"),
                }
            }
            n += 1;
        }
    });
}

/// Resolves on SIGTERM or SIGINT. The handlers are registered when this is called, not when polled.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
