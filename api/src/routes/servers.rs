//! `/servers`: the monitored PostgreSQL servers, how to reach their hosts over SSH, and the two probes
//! (`test-connection`, `test-ssh`).
//!
//! Reading is open to every role; writes and probes need admin or operator (the original let every
//! role write). Passwords are write-only: responses say `has_password` instead.
//!
//! `PUT` merges: a field left out keeps its stored value, `null` clears what can be cleared
//! (`password`, `ssh`, `ssh.key_id`, `ssh.password`). A server authenticates over SSH with a key or a
//! password, never both: setting one drops the other.

use super::auth::{actor, record};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::remote;
use pgmon_shared::ssh;
use pgmon_shared::store::servers::{self, SecretChange, ServerRow, ServerSpec, SshSpec, SshTargetError};
use pgmon_shared::store::{StoreError, ssh_keys};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use serde_json::json;
use std::sync::LazyLock;
use std::time::Duration;
use uuid::Uuid;

/// Audit event names of this module.
mod event {
    pub const SERVER_CREATED: &str = "server_created";
    pub const SERVER_UPDATED: &str = "server_updated";
    pub const SERVER_DELETED: &str = "server_deleted";
    pub const SSH_HOST_KEY_CLEARED: &str = "ssh_host_key_cleared";
    pub const SSH_HOST_KEY_PINNED: &str = "ssh_host_key_pinned";
}

/// `test-ssh` answers within this, whatever the peer does (connect, auth and command have their own
/// shorter deadlines inside it).
const TEST_SSH_DEADLINE: Duration = Duration::from_secs(14);
/// `test-connection`: connect (5 s) plus one short query.
const TEST_CONNECTION_DEADLINE: Duration = Duration::from_secs(14);

#[derive(Tags)]
enum Tag {
    /// Monitored servers.
    Servers,
}

static NAME: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$").expect("static regex"));
static HOSTNAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
        .expect("static regex")
});
static SSH_USER: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$").expect("static regex"));

// ---------------------------------------------------------------------------------------------
// Bodies

/// SSH settings as sent by clients.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct SshIn {
    /// `null` or left out at creation: the server's `host` (following it when it changes).
    pub host: MaybeUndefined<String>,
    /// Default 22.
    pub port: Option<i64>,
    /// Default `postgres`.
    pub username: Option<String>,
    /// A stored SSH key (`/ssh-keys`); `null` removes it.
    pub key_id: MaybeUndefined<Uuid>,
    /// Login password, when no key is used; `null` removes it, leaving it out keeps the stored one.
    #[oai(write_only)]
    pub password: MaybeUndefined<String>,
    /// The directory whose file system `df` measures. Default `/`.
    pub data_path: Option<String>,
}

/// A server as sent to `POST /servers` and `PUT /servers/{name}`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ServerIn {
    /// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`; required on POST, a new value on PUT renames.
    pub name: Option<String>,
    /// Host name or IP address; required on POST.
    pub host: Option<String>,
    /// Default 5432.
    pub port: Option<i64>,
    /// Default `postgres`.
    pub dbname: Option<String>,
    /// Required on POST.
    pub username: Option<String>,
    /// Leaving it out keeps the stored password; `null` removes it.
    #[oai(write_only)]
    pub password: MaybeUndefined<String>,
    /// `disable | prefer | require | verify-ca | verify-full`, as libpq; default `prefer`.
    pub sslmode: Option<String>,
    /// `default | high_load`; default `default`.
    pub pool: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    pub description: Option<String>,
    /// `null` turns SSH off.
    pub ssh: MaybeUndefined<SshIn>,
}

#[derive(Debug, Object)]
pub struct SshOut {
    pub host: String,
    pub port: i32,
    pub username: String,
    pub key_id: Option<Uuid>,
    pub has_password: bool,
    pub data_path: String,
    /// `SHA256:...` of the host key pinned at first contact; null until then.
    pub host_key_fingerprint: Option<String>,
}

#[derive(Debug, Object)]
pub struct ServerOut {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: i32,
    pub dbname: String,
    pub username: String,
    pub has_password: bool,
    pub sslmode: String,
    pub pool: String,
    pub enabled: bool,
    pub description: String,
    pub ssh: Option<SshOut>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ServerRow> for ServerOut {
    fn from(s: ServerRow) -> Self {
        let ssh = s.ssh_enabled.then(|| SshOut {
            host: s.ssh_host.clone().unwrap_or_else(|| s.host.clone()),
            port: s.ssh_port.unwrap_or(22),
            username: s.ssh_username.clone().unwrap_or_default(),
            key_id: s.ssh_key_id,
            has_password: s.ssh_password_enc.is_some(),
            data_path: s.ssh_data_path.clone().unwrap_or_else(|| "/".into()),
            host_key_fingerprint: s.ssh_host_key_fingerprint.clone(),
        });
        Self {
            id: s.id,
            name: s.name,
            host: s.host,
            port: s.port,
            dbname: s.dbname,
            username: s.username,
            has_password: s.password_enc.is_some(),
            sslmode: s.sslmode,
            pool: s.pool,
            enabled: s.enabled,
            description: s.description,
            ssh,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Object)]
pub struct DiskOut {
    pub mount: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

/// `{"ok": true, ...}` or `{"ok": false, "error": CLASS, "message": ...}`.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TestSshOut {
    pub ok: bool,
    pub latency_ms: Option<f64>,
    /// The key the host presented (also on `host_key_mismatch`).
    pub host_key_fingerprint: Option<String>,
    pub disk: Option<DiskOut>,
    /// `auth_failed | timeout | unreachable | host_key_mismatch | command_failed`
    pub error: Option<String>,
    pub message: Option<String>,
}

/// `{"ok": true, "latency_ms", "version", "in_recovery"}` or `{"ok": false, "error", "message"}`.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TestConnectionOut {
    pub ok: bool,
    pub latency_ms: Option<f64>,
    /// `server_version`'s number, e.g. `15.10`.
    pub version: Option<String>,
    pub in_recovery: Option<bool>,
    /// `auth_failed | timeout | unreachable | tls | other`
    pub error: Option<String>,
    pub message: Option<String>,
}

impl TestConnectionOut {
    fn failed(class: &str, message: String) -> Self {
        Self {
            ok: false,
            latency_ms: None,
            version: None,
            in_recovery: None,
            error: Some(class.into()),
            message: Some(message),
        }
    }
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Json<ServerOut>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

// ---------------------------------------------------------------------------------------------
// Handlers

pub struct ServersApi;

#[OpenApi(tag = "Tag::Servers")]
impl ServersApi {
    /// All monitored servers (any role).
    #[oai(path = "/servers", method = "get")]
    async fn list(&self, state: Data<&AppState>, _auth: Auth) -> ApiResult<Json<Vec<ServerOut>>> {
        let rows = servers::list(&state.pool).await?;
        Ok(Json(rows.into_iter().map(ServerOut::from).collect()))
    }

    /// One server (any role).
    #[oai(path = "/servers/:name", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<ServerOut>> {
        Ok(Json(load(&state, &name).await?.into()))
    }

    /// Register a server (admin, operator). 409 if the name is taken.
    #[oai(path = "/servers", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: Json<ServerIn>,
    ) -> ApiResult<Created> {
        let me = auth.operator()?;
        let spec = build_spec(&state, body.0, None).await?;
        let row = servers::create(&state.pool, &spec).await?;
        record(
            &state,
            event::SERVER_CREATED,
            &actor(req, Some(&me.login)),
            json!({ "server": row.name, "host": row.host, "port": row.port, "ssh": row.ssh_enabled }),
        )
        .await;
        Ok(Created::Created(Json(row.into())))
    }

    /// Change a server (admin, operator). Left-out fields keep their stored values; a new `name`
    /// renames it (its collected stats follow: they reference the server by id).
    #[oai(path = "/servers/:name", method = "put")]
    async fn update(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        body: Json<ServerIn>,
    ) -> ApiResult<Json<ServerOut>> {
        let me = auth.operator()?;
        let current = load(&state, &name).await?;
        let spec = build_spec(&state, body.0, Some(&current)).await?;
        let row = servers::update(&state.pool, &name, &spec)
            .await
            .map_err(|e| not_found_as(e, &name))?;
        record(
            &state,
            event::SERVER_UPDATED,
            &actor(req, Some(&me.login)),
            json!({ "server": row.name, "previous_name": name.0, "ssh": row.ssh_enabled }),
        )
        .await;
        Ok(Json(row.into()))
    }

    /// Delete a server (admin, operator). Its collected stats stay in the store, no longer reachable
    /// through the API, until retention drops them.
    #[oai(path = "/servers/:name", method = "delete")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Deleted> {
        let me = auth.operator()?;
        servers::delete(&state.pool, &name)
            .await
            .map_err(|e| not_found_as(e, &name))?;
        record(
            &state,
            event::SERVER_DELETED,
            &actor(req, Some(&me.login)),
            json!({ "server": name.0 }),
        )
        .await;
        Ok(Deleted::Deleted)
    }

    /// Forget the pinned SSH host key (admin, operator): the next successful `test-ssh` or collector
    /// visit pins the key the host then presents.
    #[oai(path = "/servers/:name/ssh-host-key", method = "delete")]
    async fn clear_host_key(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Deleted> {
        let me = auth.operator()?;
        let row = servers::clear_host_key(&state.pool, &name)
            .await
            .map_err(|e| not_found_as(e, &name))?;
        record(
            &state,
            event::SSH_HOST_KEY_CLEARED,
            &actor(req, Some(&me.login)),
            json!({ "server": row.name }),
        )
        .await;
        Ok(Deleted::Deleted)
    }

    /// Connect to the server as the collector does and report version and role (admin, operator).
    #[oai(path = "/servers/:name/test-connection", method = "post")]
    async fn test_connection(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<TestConnectionOut>> {
        auth.operator()?;
        let server = load(&state, &name).await?;
        let target = servers::remote_target(&state.crypto, &server).map_err(ApiError::internal)?;
        let opts = remote::SessionOpts::new("pgmon-api");
        let started = std::time::Instant::now();
        let probe = async {
            let client = remote::connect(&target, &opts).await?;
            remote::call(
                opts.call_deadline(),
                client.query_one(
                    "SELECT current_setting('server_version'), pg_is_in_recovery()",
                    &[],
                ),
            )
            .await
        };
        let out = match tokio::time::timeout(TEST_CONNECTION_DEADLINE, probe).await {
            Err(_) => TestConnectionOut::failed("timeout", "no answer within 14 s".into()),
            Ok(Err(e)) => TestConnectionOut::failed(e.class.as_str(), e.message),
            Ok(Ok(row)) => {
                let version: String = row.try_get(0).unwrap_or_default();
                TestConnectionOut {
                    ok: true,
                    latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                    version: version.split_whitespace().next().map(str::to_string),
                    in_recovery: row.try_get(1).ok(),
                    error: None,
                    message: None,
                }
            }
        };
        Ok(Json(out))
    }

    /// Log in over SSH with the stored settings and run `df` on the data path (admin, operator).
    ///
    /// The first success pins the host key's fingerprint; afterwards another key is refused with
    /// `host_key_mismatch` until the pin is cleared. Answers within 15 s whatever the host does.
    #[oai(path = "/servers/:name/test-ssh", method = "post")]
    async fn test_ssh(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<TestSshOut>> {
        let me = auth.operator()?;
        let server = load(&state, &name).await?;
        let target = match servers::ssh_target(&state.pool, &state.crypto, &server).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(ApiError::bad_request(format!(
                    "server {} has no SSH settings",
                    server.name
                )));
            }
            Err(SshTargetError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(ApiError::internal(e)),
        };
        let data_path = server.ssh_data_path.as_deref().unwrap_or("/");
        let result = ssh::disk_usage(&target, data_path, TEST_SSH_DEADLINE).await;
        let out = match result {
            Ok(done) => {
                if target.expected_fingerprint.is_none() {
                    let pinned =
                        servers::pin_host_key(&state.pool, server.id, &done.host_key_fingerprint).await?;
                    if !pinned {
                        return Ok(Json(ssh_failed(
                            ssh::SshErrorClass::HostKeyMismatch.as_str(),
                            "another host key was pinned meanwhile".into(),
                            Some(done.host_key_fingerprint),
                        )));
                    }
                    record(
                        &state,
                        event::SSH_HOST_KEY_PINNED,
                        &actor(req, Some(&me.login)),
                        json!({ "server": server.name, "fingerprint": done.host_key_fingerprint }),
                    )
                    .await;
                }
                TestSshOut {
                    ok: true,
                    latency_ms: Some(done.latency_ms),
                    host_key_fingerprint: Some(done.host_key_fingerprint),
                    disk: Some(DiskOut {
                        mount: done.value.mount,
                        total_bytes: done.value.total_bytes,
                        used_bytes: done.value.used_bytes,
                        available_bytes: done.value.available_bytes,
                    }),
                    error: None,
                    message: None,
                }
            }
            Err(e) => ssh_failed(e.class.as_str(), e.message, e.host_key_fingerprint),
        };
        Ok(Json(out))
    }
}

fn ssh_failed(class: &str, message: String, fingerprint: Option<String>) -> TestSshOut {
    TestSshOut {
        ok: false,
        latency_ms: None,
        host_key_fingerprint: fingerprint,
        disk: None,
        error: Some(class.into()),
        message: Some(message),
    }
}

async fn load(state: &AppState, name: &str) -> ApiResult<ServerRow> {
    servers::get_by_name(&state.pool, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("server {name} not found")))
}

fn not_found_as(e: StoreError, name: &str) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(format!("server {name} not found")),
        e => e.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation and merging

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

fn check_name(name: &str) -> ApiResult<()> {
    if NAME.is_match(name) {
        Ok(())
    } else {
        Err(bad("name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"))
    }
}

/// A host name or an IP address: no spaces, `=`, `/` or anything else a connection string would read.
fn check_host(field: &str, host: &str) -> ApiResult<()> {
    let ip = host.parse::<std::net::IpAddr>().is_ok();
    if ip || (host.len() <= 253 && HOSTNAME.is_match(host)) {
        Ok(())
    } else {
        Err(bad(format!("{field} must be a host name or an IP address")))
    }
}

fn check_port(field: &str, port: i64) -> ApiResult<i32> {
    match i32::try_from(port) {
        Ok(p) if (1..=65535).contains(&p) => Ok(p),
        _ => Err(bad(format!("{field} must be between 1 and 65535"))),
    }
}

/// Free text that ends up in a connection's startup packet or a log line: bounded, no control chars.
fn check_text(field: &str, value: &str, max: usize, allow_empty: bool) -> ApiResult<()> {
    if !allow_empty && value.is_empty() {
        return Err(bad(format!("{field} must not be empty")));
    }
    if value.len() > max {
        return Err(bad(format!("{field} must be at most {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(format!("{field} must not contain control characters")));
    }
    Ok(())
}

fn check_secret(field: &str, value: &str) -> ApiResult<()> {
    if value.len() > 1024 {
        return Err(bad(format!("{field} must be at most 1024 bytes")));
    }
    if value.contains('\0') {
        return Err(bad(format!("{field} must not contain NUL")));
    }
    Ok(())
}

fn secret_change(state: &AppState, field: &str, v: MaybeUndefined<String>) -> ApiResult<SecretChange> {
    Ok(match v {
        MaybeUndefined::Undefined => SecretChange::Keep,
        MaybeUndefined::Null => SecretChange::Clear,
        MaybeUndefined::Value(p) => {
            check_secret(field, &p)?;
            SecretChange::Set(state.crypto.encrypt(&p))
        }
    })
}

/// Validates `body`, applies defaults (create) or the stored values (update, `current`), and encrypts
/// new secrets.
async fn build_spec(state: &AppState, body: ServerIn, current: Option<&ServerRow>) -> ApiResult<ServerSpec> {
    let name = match (body.name, current) {
        (Some(n), _) => n,
        (None, Some(c)) => c.name.clone(),
        (None, None) => return Err(bad("name is required")),
    };
    check_name(&name)?;
    let host = match (body.host, current) {
        (Some(h), _) => h,
        (None, Some(c)) => c.host.clone(),
        (None, None) => return Err(bad("host is required")),
    };
    check_host("host", &host)?;
    let port = match (body.port, current) {
        (Some(p), _) => check_port("port", p)?,
        (None, Some(c)) => c.port,
        (None, None) => 5432,
    };
    let dbname = body
        .dbname
        .or_else(|| current.map(|c| c.dbname.clone()))
        .unwrap_or_else(|| "postgres".into());
    check_text("dbname", &dbname, 63, false)?;
    let username = match (body.username, current) {
        (Some(u), _) => u,
        (None, Some(c)) => c.username.clone(),
        (None, None) => return Err(bad("username is required")),
    };
    check_text("username", &username, 63, false)?;
    let sslmode = body
        .sslmode
        .or_else(|| current.map(|c| c.sslmode.clone()))
        .unwrap_or_else(|| "prefer".into());
    sslmode
        .parse::<remote::SslMode>()
        .map_err(|_| bad("sslmode must be one of disable, prefer, require, verify-ca, verify-full"))?;
    let pool = body
        .pool
        .or_else(|| current.map(|c| c.pool.clone()))
        .unwrap_or_else(|| "default".into());
    if pool != "default" && pool != "high_load" {
        return Err(bad("pool must be default or high_load"));
    }
    let description = body
        .description
        .or_else(|| current.map(|c| c.description.clone()))
        .unwrap_or_default();
    if description.len() > 2000 {
        return Err(bad("description must be at most 2000 bytes"));
    }
    let password = secret_change(state, "password", body.password)?;
    let ssh = match body.ssh {
        MaybeUndefined::Null => None,
        MaybeUndefined::Undefined => current.and_then(stored_ssh),
        MaybeUndefined::Value(s) => Some(build_ssh(state, s, current.filter(|c| c.ssh_enabled)).await?),
    };
    Ok(ServerSpec {
        name,
        host,
        port,
        dbname,
        username,
        password,
        sslmode,
        pool,
        enabled: body.enabled.or(current.map(|c| c.enabled)).unwrap_or(true),
        description,
        ssh,
    })
}

fn stored_ssh(c: &ServerRow) -> Option<SshSpec> {
    c.ssh_enabled.then(|| SshSpec {
        host: c.ssh_host.clone(),
        port: c.ssh_port.unwrap_or(22),
        username: c.ssh_username.clone().unwrap_or_else(|| "postgres".into()),
        key_id: c.ssh_key_id,
        password: SecretChange::Keep,
        data_path: c.ssh_data_path.clone().unwrap_or_else(|| "/".into()),
    })
}

async fn build_ssh(state: &AppState, s: SshIn, current: Option<&ServerRow>) -> ApiResult<SshSpec> {
    let ssh_host = match s.host {
        MaybeUndefined::Value(h) => Some(h),
        MaybeUndefined::Null => None,
        MaybeUndefined::Undefined => current.and_then(|c| c.ssh_host.clone()),
    };
    if let Some(h) = &ssh_host {
        check_host("ssh.host", h)?;
    }
    let port = match (s.port, current) {
        (Some(p), _) => check_port("ssh.port", p)?,
        (None, Some(c)) => c.ssh_port.unwrap_or(22),
        (None, None) => 22,
    };
    let username = s
        .username
        .or_else(|| current.and_then(|c| c.ssh_username.clone()))
        .unwrap_or_else(|| "postgres".into());
    if !SSH_USER.is_match(&username) {
        return Err(bad("ssh.username must match ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"));
    }
    let data_path = s
        .data_path
        .or_else(|| current.and_then(|c| c.ssh_data_path.clone()))
        .unwrap_or_else(|| "/".into());
    check_text("ssh.data_path", &data_path, 4096, false)?;
    if !data_path.starts_with('/') {
        return Err(bad("ssh.data_path must be an absolute path"));
    }
    let (key_id, password) = match (s.key_id, s.password) {
        (MaybeUndefined::Value(_), MaybeUndefined::Value(_)) => {
            return Err(bad("give ssh.key_id or ssh.password, not both"));
        }
        (MaybeUndefined::Value(k), _) => (Some(k), SecretChange::Clear),
        (_, MaybeUndefined::Value(p)) => (
            None,
            secret_change(state, "ssh.password", MaybeUndefined::Value(p))?,
        ),
        (MaybeUndefined::Null, p) => (None, secret_change(state, "ssh.password", p)?),
        (MaybeUndefined::Undefined, p) => (
            current.and_then(|c| c.ssh_key_id),
            secret_change(state, "ssh.password", p)?,
        ),
    };
    if let Some(k) = key_id
        && ssh_keys::get(&state.pool, k).await?.is_none()
    {
        return Err(bad(format!("ssh.key_id: no SSH key {k}")));
    }
    let has_password = match &password {
        SecretChange::Set(_) => true,
        SecretChange::Clear => false,
        SecretChange::Keep => current.is_some_and(|c| c.ssh_password_enc.is_some()),
    };
    if key_id.is_none() && !has_password {
        return Err(bad("ssh needs a key_id or a password"));
    }
    Ok(SshSpec {
        host: ssh_host,
        port,
        username,
        key_id,
        password,
        data_path,
    })
}
