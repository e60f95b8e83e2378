//! Building and serving the HTTP application.

use crate::auth::password::Hasher;
use crate::auth::rate_limit::LoginLimiter;
use crate::error::{ApiError, to_json_response};
use crate::routes;
use crate::state::AppState;
use anyhow::Context;
use pgmon_shared::store::chunk_cache::ChunkCache;
use pgmon_shared::store::system_log::{self, Level, NewEntry};
use pgmon_shared::{Config, secrets, store};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::Cors;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::{OpenApiService, ServerObject};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// JSON bodies larger than this are refused with 413.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;
/// Multipart uploads (`/ssh-keys/import-file`) may be this large; the file itself is checked too.
pub const UPLOAD_BODY_LIMIT: usize = 1024 * 1024 + 16 * 1024;

pub fn openapi_service() -> OpenApiService<impl poem_openapi::OpenApi, ()> {
    OpenApiService::new(routes::apis(), "pgmon API", env!("CARGO_PKG_VERSION"))
        .description(
            "PostgreSQL activity monitor: servers, users, audit and collected statistics.\n\n\
             Every operation is served twice, with the same behaviour: under `/api` (the original \
             backend's later layout) and at the bare path (its first layout, e.g. `/token`, \
             `/servers`). Bodies with a field the operation does not know are refused with 422.",
        )
        .server(ServerObject::new("/api").description("the original backend's later layout"))
        .server(ServerObject::new("/").description("the original backend's first layout"))
}

/// The OpenAPI document as served: poem-openapi's, with what it does not write down added.
pub fn openapi_document() -> String {
    let raw = openapi_service().spec();
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(&raw) else {
        return raw;
    };
    complete_document(&mut doc);
    serde_json::to_string(&doc).unwrap_or(raw)
}

/// - every JSON request body refuses unknown fields (`additionalProperties: false`);
/// - a field that may be left out may also be `null` (`Option` fields are answered as `null`), and
///   the series' values and the counters map may hold `null` (a gap, a counter the version lacks);
/// - `POST /servers` requires `name`, `host` and `user` (`PUT` takes the same body, all optional);
/// - the original's `start_date`/`end_date` are date-times, and dates are JSON Schema's `date`.
fn complete_document(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    // `get_mut` throughout: indexing a `Value` mutably inserts the key it looks for.
    fn obj(v: Option<&mut Value>) -> impl Iterator<Item = (&String, &mut Value)> {
        v.and_then(Value::as_object_mut).into_iter().flatten()
    }
    let mut strict = std::collections::BTreeSet::new();
    for (path, ops) in obj(doc.get_mut("paths")) {
        for (method, op) in obj(Some(ops)) {
            let content = op.get_mut("requestBody").and_then(|b| b.get_mut("content"));
            for (ct, media) in obj(content) {
                if !ct.starts_with("application/json") {
                    continue;
                }
                let Some(schema) = media.get_mut("schema") else {
                    continue;
                };
                if let Some(r) = schema
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.rsplit('/').next())
                {
                    strict.insert(r.to_string());
                    if path == "/servers" && method == "post" {
                        *schema = json!({"$ref": "#/components/schemas/ServerCreate"});
                    }
                }
            }
            let params = op.get_mut("parameters").and_then(Value::as_array_mut);
            for p in params.into_iter().flatten() {
                let name = p.get("name").and_then(Value::as_str).map(str::to_string);
                let Some(schema) = p.get_mut("schema").and_then(Value::as_object_mut) else {
                    continue;
                };
                if matches!(name.as_deref(), Some("start_date" | "end_date")) {
                    schema.insert("format".into(), json!("date-time"));
                }
                // poem-openapi names chrono's NaiveDate `naive-date`; JSON Schema's name is `date`.
                if schema.get("format").and_then(Value::as_str) == Some("naive-date") {
                    schema.insert("format".into(), json!("date"));
                }
            }
        }
    }
    let Some(schemas) = doc
        .get_mut("components")
        .and_then(|c| c.get_mut("schemas"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(mut create) = schemas.get("ServerIn").cloned() {
        if let Some(c) = create.as_object_mut() {
            c.insert("required".into(), json!(["name", "host", "user"]));
            c.insert(
                "description".into(),
                json!("A server to register: `ServerIn` with `name`, `host` and `user` required."),
            );
        }
        schemas.insert("ServerCreate".into(), create);
        strict.insert("ServerCreate".into());
    }
    for name in &strict {
        if let Some(s) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            s.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    for (name, schema) in schemas.iter_mut() {
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        for (field, prop) in obj(schema.get_mut("properties")) {
            let Some(p) = prop.as_object_mut() else { continue };
            let is_array = p.get("type").and_then(Value::as_str) == Some("array");
            if name == "Series"
                && is_array
                && field != "time"
                && field != "covered_secs"
                && let Some(items) = p.get_mut("items").and_then(Value::as_object_mut)
            {
                items.insert("nullable".into(), json!(true));
            }
            // `Vec<Option<f64>>` of pgmon's other series: poem-openapi drops the items' nullability.
            if name == "StatementDetail"
                && is_array
                && field != "time"
                && let Some(items) = p.get_mut("items").and_then(Value::as_object_mut)
            {
                items.insert("nullable".into(), json!(true));
            }
            if name == "FamilySeries" && (field == "series" || field == "by") {
                let mut cur = p.get_mut("additionalProperties");
                if field == "by" {
                    cur = cur.and_then(|v| v.get_mut("additionalProperties"));
                }
                if let Some(items) = cur
                    .and_then(|v| v.get_mut("items"))
                    .and_then(Value::as_object_mut)
                {
                    items.insert("nullable".into(), json!(true));
                }
            }
            if name == "DbInfoOut"
                && field == "counters"
                && let Some(values) = p.get_mut("additionalProperties").and_then(Value::as_object_mut)
            {
                values.insert("nullable".into(), json!(true));
            }
            if required.contains(field) {
                continue;
            }
            if p.contains_key("$ref") {
                let inner = prop.take();
                *prop = json!({"allOf": [inner], "nullable": true});
            } else {
                p.insert("nullable".into(), json!(true));
            }
        }
    }
}

/// Methods served per path, from the document: a 405 names them in `Allow` (RFC 9110).
/// Each path of the document as a pattern, with its methods and its template (`/servers/{name}`):
/// the `Allow` header of a 405, and the route label of the request metrics.
struct AllowTable(Vec<(regex::Regex, String, String)>);

impl AllowTable {
    fn from_document(doc: &str) -> Self {
        let doc: serde_json::Value = serde_json::from_str(doc).unwrap_or_default();
        let mut rows = Vec::new();
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            let pattern: String = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        "[^/]+".to_string()
                    } else {
                        regex::escape(seg)
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let Ok(re) = regex::Regex::new(&format!("^(/api)?{pattern}/?$")) else {
                continue;
            };
            let mut methods: Vec<String> = ops
                .as_object()
                .into_iter()
                .flatten()
                .map(|(m, _)| m.to_uppercase())
                .collect();
            methods.sort();
            rows.push((re, methods.join(", "), path.clone()));
        }
        Self(rows)
    }

    fn allow(&self, path: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(re, _, _)| re.is_match(path))
            .map(|(_, m, _)| m.as_str())
    }

    /// The template a path is served by; `other` for anything else (never the raw path: the label
    /// set would grow with every name a client tries).
    fn route(&self, path: &str) -> &str {
        if matches!(
            path,
            "/metrics" | "/docs" | "/api/docs" | "/openapi.json" | "/api/openapi.json"
        ) {
            return match path {
                "/metrics" => "/metrics",
                "/docs" | "/api/docs" => "/docs",
                _ => "/openapi.json",
            };
        }
        self.0
            .iter()
            .find(|(re, _, _)| re.is_match(path))
            .map(|(_, _, t)| t.as_str())
            .unwrap_or("other")
    }
}

/// The whole route tree with its middleware, ready to serve.
pub fn build_endpoint(state: AppState) -> impl Endpoint {
    let document = openapi_document();
    let allow = Arc::new(AllowTable::from_document(&document));
    let ui = {
        // Swagger UI embeds the document it shows: give it the one served.
        let raw = openapi_service().spec();
        let html = openapi_service().swagger_ui_html().replace(&raw, &document);
        poem::endpoint::make_sync(move |_| poem::web::Html(html.clone()))
    };
    let spec = poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    let origins = state.cfg.api.allowed_origins.clone();
    let mut cors = Cors::new().allow_credentials(true);
    for o in &origins {
        cors = cors.allow_origin(o.as_str());
    }
    let spec = Arc::new(spec);
    let ui = Arc::new(ui);
    let web_dir: Arc<std::path::Path> = Arc::from(state.cfg.api.web_dir.as_path());
    let request_limit = state.cfg.store.call_timeout();
    Route::new()
        .at("/openapi.json", spec.clone())
        .at("/api/openapi.json", spec)
        .at("/docs", ui.clone())
        .at("/api/docs", ui)
        .at("/metrics", poem::get(crate::metrics::scrape))
        .nest("/api", openapi_service())
        .nest("/", openapi_service())
        .around(move |next, req| request_deadline(next, req, request_limit))
        .around(move |next, req| crate::web::serve(next, req, web_dir.clone()))
        .around(limit_body)
        .around(invalidate_after_writes)
        .around(move |next, req| allow_header(next, req, allow.clone()))
        .with_if(!origins.is_empty(), cors)
        .data(state)
        .catch_all_error(to_json_response)
}

/// A 405 carries the methods the path does serve.
async fn allow_header<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    allow: Arc<AllowTable>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_string();
    let method = method_label(req.method());
    let requests = req.data::<AppState>().map(|s| s.requests.clone());
    let started = Instant::now();
    let mut resp = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => to_json_response(e).await,
    };
    if let Some(r) = requests {
        r.observe(
            allow.route(&path),
            method,
            resp.status().as_u16(),
            started.elapsed(),
        );
    }
    if resp.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
        && let Some(v) = allow
            .allow(&path)
            .and_then(|m| poem::http::HeaderValue::from_str(m).ok())
    {
        resp.headers_mut().insert(poem::http::header::ALLOW, v);
    }
    Ok(resp)
}

/// Every change to users, tokens and servers is a POST, PUT, PATCH or DELETE: once one has succeeded
/// (2xx) for an authenticated caller, this instance's caches of store rows are dropped before the
/// response leaves, so the caller's next request sees its own change. (Other instances learn of it
/// by NOTIFY; see `store_cache`.) A refused or anonymous request changes nothing, so it empties
/// nothing: otherwise anyone could keep the caches empty and every request on the store. The
/// anonymous writes that do change cached rows (`/logout`, a reused refresh token) drop them
/// themselves.
async fn invalidate_after_writes<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    use poem::http::Method;
    let write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let cache = write
        .then(|| req.data::<AppState>().map(|s| s.cache.clone()))
        .flatten();
    let authenticated = crate::auth::guard::AuthenticatedMark::default();
    if cache.is_some() {
        req.extensions_mut().insert(authenticated.clone());
    }
    let resp = next.call(req).await?.into_response();
    if let Some(c) = cache
        && resp.status().is_success()
        && authenticated.is_set()
    {
        c.invalidate();
    }
    Ok(resp)
}

/// The method as a metrics label: the methods HTTP defines for this API, else `other` (a client
/// may send any token as a method; each would be a new series held forever).
fn method_label(m: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Answers 503 when a request is not done within `store.call_timeout_secs`. Every remote call a
/// handler makes has a shorter deadline of its own, so in practice this is a store connection gone
/// half-open (sqlx has no keepalive): without it the request, and its client, would wait forever.
async fn request_deadline<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    limit: Duration,
) -> poem::Result<Response> {
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(out) => Ok(out?.into_response()),
        Err(_) => {
            tracing::warn!(
                limit_secs = limit.as_secs(),
                "a request outlived its deadline; answered 503"
            );
            Err(ApiError::unavailable("store did not answer in time").into())
        }
    }
}

/// Refuses bodies over the limit with 413 before any handler reads them.
async fn limit_body<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let path = req.uri().path();
    let limit = if path == "/ssh-keys/import-file" || path == "/api/ssh-keys/import-file" {
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
    let journal = pgmon_shared::journal::Journal::new(crate::PROCESS, Some(uuid::Uuid::new_v4()));
    journal.set_call_timeout(cfg.store.call_timeout());
    Ok(AppState {
        pool,
        limiter: LoginLimiter::new(
            cfg.api.login_attempts_per_minute,
            cfg.api.login_ip_attempts_per_minute(),
        ),
        probes: crate::probe_limit::ProbeLimiter::new(cfg.servers.test_attempts_per_minute),
        jwt: Arc::new(crate::auth::jwt::JwtKeys::new(&jwt_secret)),
        crypto: Arc::new(crypto),
        hasher,
        remote: crate::remote_pools::RemotePools::start(cfg.pools.clone()),
        cache: crate::store_cache::StoreCache::new(cfg.api.history_response_cache_mb as usize * 1024 * 1024),
        chunks: Arc::new(ChunkCache::new(cfg.api.history_cache_mb as usize * 1024 * 1024)),
        trusted_proxies: Arc::new(cfg.api.trusted_proxy_nets()),
        client_ip_header: poem::http::HeaderName::from_bytes(cfg.api.client_ip_header.as_bytes())
            .unwrap_or(poem::http::header::HeaderName::from_static("x-forwarded-for")),
        health: Default::default(),
        live: crate::live::LiveStatuses::default(),
        journal,
        requests: Default::default(),
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
    let journal_stop = tokio_util::sync::CancellationToken::new();
    let journal = {
        let (j, pool, stop) = (state.journal.clone(), state.pool.clone(), journal_stop.clone());
        tokio::spawn(async move { j.run(pool, stop).await })
    };
    let log = |msg: &str| {
        NewEntry::new(Level::Info, system_log::source::SYSTEM, msg).details(format!(
            "listening on {bound} (pid {}, version {})",
            std::process::id(),
            env!("CARGO_PKG_VERSION")
        ))
    };
    state.journal.log(log("api started"));
    let served = poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            build_endpoint(state.clone()),
            shutdown,
            Some(Duration::from_secs(10)),
        )
        .await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    state.limiter.refusals.flush(&state.pool).await;
    state.journal.log(log("api stopped"));
    state.journal.flush(Duration::from_secs(2)).await;
    journal_stop.cancel();
    let _ = journal.await;
    served?;
    Ok(())
}

/// Forgets stale rate-limit keys every minute and purges expired token rows every hour; writes the
/// counts of refused logins every 2 s.
fn spawn_housekeeping(state: AppState) {
    let refusals = state.limiter.refusals.clone();
    let pool = state.pool.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            refusals.flush(&pool).await;
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            state.limiter.retain_recent();
            state.probes.retain_recent();
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

#[cfg(test)]
mod tests {
    use super::*;
    use pgmon_shared::validate;

    /// The patterns the document states are the ones the handlers check.
    #[test]
    fn the_document_states_the_rules_the_handlers_check() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_document()).expect("json");
        let props = |schema: &str| doc["components"]["schemas"][schema]["properties"].clone();
        let server = props("ServerIn");
        assert_eq!(server["name"]["pattern"], validate::SERVER_NAME_PATTERN);
        assert_eq!(server["host"]["pattern"], validate::HOST_PATTERN);
        assert_eq!(server["user"]["pattern"], validate::LINE_PATTERN);
        assert_eq!(
            server["ssh_data_path"]["pattern"],
            format!("^$|{}", validate::PATH_PATTERN)
        );
        assert_eq!(
            server["ssh_user"]["pattern"],
            format!("^$|{}", validate::SSH_USER_PATTERN)
        );
        assert_eq!(server["password"]["pattern"], validate::NO_NUL_PATTERN);
        assert_eq!(props("UserCreate")["login"]["pattern"], validate::LOGIN_PATTERN);
        let create = &doc["components"]["schemas"]["ServerCreate"];
        assert_eq!(create["required"], serde_json::json!(["name", "host", "user"]));
        assert_eq!(create["additionalProperties"], false);
        assert_eq!(server["description"]["nullable"], true);
    }
}
