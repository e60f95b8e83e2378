//! `/servers`: the monitored PostgreSQL servers, how to reach their hosts over SSH, and the two probes
//! (`test-connection`, `test-ssh`).
//!
//! Reading is open to every role; writes and probes need admin or operator (the original let every
//! role write). Passwords are write-only: responses say `has_password` instead.
//!
//! `PUT` merges: a field left out keeps its stored value, `null` clears what can be cleared
//! (`password`, `ssh`, `ssh.key_id`, `ssh.password`). A server authenticates over SSH with a key or a
//! password, never both: setting one drops the other.
//!
//! A stored secret is bound to the target it was given for: a `PUT` that moves the PostgreSQL target
//! (`host`, `port`, `user`, `dbname`, `sslmode`) without a new `password` forgets the stored one, and
//! one that moves the SSH endpoint (`ssh_host`, else `host`; `ssh_port`; `ssh_user`) without a new SSH
//! credential forgets the SSH password and key choice (SSH stays configured, off, until one is
//! given). Otherwise an edit would send the old credentials to whoever answers at the new address.
//! The answer says so (`password_cleared`, `ssh_credentials_cleared`, `note`).
//!
//! Every host is checked against `servers.allowed_targets` when it is set (422 naming the rule) and
//! again, after DNS, at every connect. Probes are limited per user (`servers.test_attempts_per_minute`).

use super::Message;
use super::auth::{actor, record};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::live::{self, DiskStatus, LiveStatus};
use crate::payload::{JsonBody, SerdeJson};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::remote;
use pgmon_shared::ssh;
use pgmon_shared::store::audit::event;
use pgmon_shared::store::servers::{self, SecretChange, ServerRow, ServerSpec, SshSpec, SshTargetError};
use pgmon_shared::store::stats_read;
use pgmon_shared::store::{StoreError, ssh_keys};
use pgmon_shared::targets;
use pgmon_shared::validate;
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Enum, Object, OpenApi, Tags};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

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

// ---------------------------------------------------------------------------------------------
// Bodies

/// A server as the original's clients send it: `POST` with the form's fields, `PUT` with the whole
/// object `GET /servers` gave plus the edits. Fields the answer carries but a client cannot set
/// (status, version, connections, ...) are accepted and ignored. An empty `password`, `ssh_password`
/// or `ssh_key_passphrase` keeps the stored one; `null` removes it.
#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerIn {
    /// Required on POST; a new value on PUT renames.
    #[oai(validator(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"))]
    pub name: Option<String>,
    /// Host name or IP address; required on POST.
    #[oai(validator(pattern = r"^[A-Za-z0-9_.:-]{1,253}$"))]
    pub host: Option<String>,
    /// Default (and `null`) 5432.
    #[oai(validator(minimum(value = "1"), maximum(value = "65535")))]
    #[serde(default)]
    pub port: MaybeUndefined<i64>,
    /// The PostgreSQL role; required on POST.
    #[oai(validator(min_length = 1, max_length = 63, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"))]
    pub user: Option<String>,
    /// `""` or left out: keep the stored one; `null`: none.
    #[oai(write_only, validator(max_length = 1024, pattern = r"^[^\x00]*$"))]
    #[serde(default)]
    pub password: MaybeUndefined<String>,
    /// The database the monitor connects to first; default `postgres`.
    #[oai(validator(min_length = 1, max_length = 63, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"))]
    pub dbname: Option<String>,
    /// As libpq's; default `prefer`.
    pub sslmode: Option<SslModeIn>,
    /// Default `default`.
    pub pool: Option<PoolIn>,
    /// Default true; a disabled server is neither collected nor probed.
    pub enabled: Option<bool>,
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    /// `password` or `key`, as the original; pgmon also takes `none` (SSH off, its credentials
    /// forgotten). SSH is on when the chosen method has a credential.
    pub ssh_auth_type: Option<SshAuthIn>,
    /// `""` or left out: keep the stored one (default `postgres`).
    #[oai(validator(pattern = r"^$|^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"))]
    pub ssh_user: Option<String>,
    /// Default (and `null`) 22.
    #[oai(validator(minimum(value = "1"), maximum(value = "65535")))]
    #[serde(default)]
    pub ssh_port: MaybeUndefined<i64>,
    /// `""` or left out: keep the stored one; `null`: none.
    #[oai(write_only, validator(max_length = 1024, pattern = r"^[^\x00]*$"))]
    #[serde(default)]
    pub ssh_password: MaybeUndefined<String>,
    /// A stored SSH key's id; `""` or `null`: none.
    #[oai(validator(
        pattern = r"^$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    #[serde(default)]
    pub ssh_key_id: MaybeUndefined<String>,
    /// Accepted for the original's clients and not used: pgmon keeps keys without a passphrase.
    #[oai(write_only, validator(max_length = 1024, pattern = r"^[^\x00]*$"))]
    #[serde(default)]
    pub ssh_key_passphrase: MaybeUndefined<String>,
    /// The SSH host when it is not `host`; `null` or `""`: follow `host`.
    #[oai(validator(pattern = r"^$|^[A-Za-z0-9_.:-]{1,253}$"))]
    #[serde(default)]
    pub ssh_host: MaybeUndefined<String>,
    /// The directory whose file system `df` measures; `""` or left out: keep the stored one
    /// (default `/`).
    #[oai(validator(max_length = 4096, pattern = r"^$|^/[^\x00-\x1f\x7f-\x9f]*$"))]
    pub ssh_data_path: Option<String>,
    /// Read-only fields of the answer, accepted and ignored.
    pub id: Option<serde_json::Value>,
    pub has_password: Option<serde_json::Value>,
    pub has_ssh_password: Option<serde_json::Value>,
    pub ssh_key_info: Option<serde_json::Value>,
    pub ssh_enabled: Option<serde_json::Value>,
    pub ssh_host_key_fingerprint: Option<serde_json::Value>,
    pub status: Option<serde_json::Value>,
    pub status_checked_at: Option<serde_json::Value>,
    pub status_source: Option<serde_json::Value>,
    pub timestamp: Option<serde_json::Value>,
    pub reachable: Option<serde_json::Value>,
    pub error_class: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
    pub version: Option<serde_json::Value>,
    pub version_num: Option<serde_json::Value>,
    pub in_recovery: Option<serde_json::Value>,
    pub connections: Option<serde_json::Value>,
    pub uptime_hours: Option<serde_json::Value>,
    pub max_connections: Option<serde_json::Value>,
    pub free_space: Option<serde_json::Value>,
    pub total_space: Option<serde_json::Value>,
    pub data_dir: Option<serde_json::Value>,
    pub created_at: Option<serde_json::Value>,
    pub updated_at: Option<serde_json::Value>,
    pub password_cleared: Option<serde_json::Value>,
    pub ssh_credentials_cleared: Option<serde_json::Value>,
    pub note: Option<serde_json::Value>,
}

/// libpq's `sslmode` values pgmon accepts.
#[derive(Debug, Clone, Copy, Enum, serde::Deserialize)]
pub enum SslModeIn {
    #[oai(rename = "disable")]
    #[serde(rename = "disable")]
    Disable,
    #[oai(rename = "prefer")]
    #[serde(rename = "prefer")]
    Prefer,
    #[oai(rename = "require")]
    #[serde(rename = "require")]
    Require,
    #[oai(rename = "verify-ca")]
    #[serde(rename = "verify-ca")]
    VerifyCa,
    #[oai(rename = "verify-full")]
    #[serde(rename = "verify-full")]
    VerifyFull,
}

impl SslModeIn {
    fn as_str(self) -> &'static str {
        match self {
            SslModeIn::Disable => "disable",
            SslModeIn::Prefer => "prefer",
            SslModeIn::Require => "require",
            SslModeIn::VerifyCa => "verify-ca",
            SslModeIn::VerifyFull => "verify-full",
        }
    }
}

/// Connection pool sizes (`[pools.*]` of the config).
#[derive(Debug, Clone, Copy, Enum, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PoolIn {
    Default,
    HighLoad,
}

/// How pgmon logs in over SSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum SshAuthIn {
    Password,
    Key,
    /// SSH off.
    None,
}

/// The SSH key a server logs in with.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct KeyInfo {
    pub name: String,
    pub fingerprint: String,
}

/// A server as the original's clients read it, its live status included, plus pgmon's settings.
///
/// The live part comes from what this API knows (probes refreshed in the background, else the
/// collector's last sample): the list never waits on a slow or dead server. `status_checked_at` says
/// how old it is.
#[derive(Debug, Object, serde::Serialize)]
pub struct ServerOut {
    pub name: String,
    pub host: String,
    pub port: i32,
    pub user: String,
    pub has_password: bool,
    pub ssh_user: String,
    pub ssh_port: i32,
    pub has_ssh_password: bool,
    /// `key` when a key is set, else `password` (see `ssh_enabled`).
    pub ssh_auth_type: String,
    pub ssh_key_id: Option<String>,
    pub ssh_key_info: Option<KeyInfo>,
    /// `ok`, `ok (SSH: <class>)`, `error: PostgreSQL: <reason>`, `pending` (not asked yet) or
    /// `disabled`: the original's clients show "down" for anything containing "error".
    pub status: String,
    /// `server_version`, e.g. `15.10 (Debian 15.10-0+deb12u1)`.
    pub version: Option<String>,
    /// Every session on the server by state (`None`: background processes).
    pub connections: Option<BTreeMap<String, i64>>,
    pub uptime_hours: Option<f64>,
    /// `max_connections` (pgmon addition: the fleet page shows sessions used of it).
    pub max_connections: Option<i32>,
    /// Bytes available and in all on the data directory's file system (SSH).
    pub free_space: Option<i64>,
    pub total_space: Option<i64>,
    pub data_dir: Option<String>,
    /// `status_checked_at` as seconds since the epoch (the original's cache stamp).
    pub timestamp: Option<f64>,
    pub id: i64,
    pub dbname: String,
    pub sslmode: String,
    pub pool: String,
    pub enabled: bool,
    pub description: String,
    /// SSH is used (a key or a password is set).
    pub ssh_enabled: bool,
    /// `null`: SSH goes to `host`.
    pub ssh_host: Option<String>,
    pub ssh_data_path: String,
    /// `SHA256:...` of the host key pinned at first contact; null until then.
    pub ssh_host_key_fingerprint: Option<String>,
    /// When the status was taken, and by whom: `api` (this API's probe) or `collector` (its last
    /// sample, before this API asked).
    pub status_checked_at: Option<DateTime<Utc>>,
    pub status_source: Option<String>,
    pub reachable: Option<bool>,
    /// `auth_failed`, `timeout`, `unreachable`, `tls`, `refused` (`servers.allowed_targets`) or `other`
    /// when not reachable.
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub version_num: Option<i32>,
    pub in_recovery: Option<bool>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// pgmon addition, in a `PUT` answer only: the stored PostgreSQL password was forgotten, because
    /// the target changed and no new `password` came with the change.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_cleared: Option<bool>,
    /// pgmon addition, in a `PUT` answer only: the SSH password and key choice were forgotten (SSH is
    /// off), because the SSH endpoint changed and no new credential came with the change.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_credentials_cleared: Option<bool>,
    /// pgmon addition: what the change did that the caller may not expect, in words.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl crate::payload::JsonSizeHint for Vec<ServerOut> {
    fn json_size_hint(&self) -> usize {
        1024 + self.len() * 1400
    }
}

/// What is known of a server's live state when it is shown.
#[derive(Default)]
struct Seen {
    status: Option<(DateTime<Utc>, Arc<LiveStatus>)>,
    disk: Option<DiskStatus>,
    collector: Option<stats_read::LastSeen>,
}

fn server_out(s: ServerRow, key: Option<KeyInfo>, seen: Seen) -> ServerOut {
    let live = seen.status.as_ref().map(|(_, l)| l.as_ref());
    let mut status = live::original_status(live, seen.disk.as_ref());
    let mut checked_at = seen.status.as_ref().map(|(t, _)| *t);
    let mut source = live.map(|_| "api".to_string());
    let (mut reachable, mut error_class, mut error) = match live {
        Some(l) => (Some(l.reachable), l.error_class.clone(), l.error.clone()),
        None => (None, None, None),
    };
    let (mut free, mut total) = match seen.disk.as_ref().filter(|d| d.ok) {
        Some(d) => (
            d.available_bytes.and_then(|b| i64::try_from(b).ok()),
            d.total_bytes.and_then(|b| i64::try_from(b).ok()),
        ),
        None => (None, None),
    };
    if let Some(c) = seen.collector {
        if live.is_none()
            && let (Some(at), Some(up)) = (c.collected_at, c.up)
        {
            status = if up {
                "ok".into()
            } else {
                format!(
                    "error: PostgreSQL: {}",
                    c.error.as_deref().unwrap_or("unreachable")
                )
            };
            checked_at = Some(at);
            source = Some("collector".into());
            reachable = Some(up);
            error_class = c.error_class;
            error = c.error;
        }
        if free.is_none() && total.is_none() {
            free = c.disk_available_bytes;
            total = c.disk_total_bytes;
        }
    }
    if !s.enabled {
        status = "disabled".into();
    }
    ServerOut {
        has_password: s.password_enc.is_some(),
        ssh_user: s.ssh_username.clone().unwrap_or_else(|| "postgres".into()),
        ssh_port: s.ssh_port.unwrap_or(22),
        has_ssh_password: s.ssh_password_enc.is_some(),
        ssh_auth_type: if s.ssh_key_id.is_some() { "key" } else { "password" }.into(),
        ssh_key_id: s.ssh_key_id.map(|k| k.to_string()),
        ssh_key_info: key,
        status,
        version: live.and_then(|l| l.server_version.clone()),
        connections: live.and_then(|l| l.sessions_by_state.clone()),
        uptime_hours: live
            .and_then(|l| l.uptime_secs)
            .map(|u| (u / 36.0).round() / 100.0),
        max_connections: live.and_then(|l| l.max_connections),
        free_space: free,
        total_space: total,
        data_dir: live.and_then(|l| l.data_directory.clone()),
        timestamp: checked_at.map(|t| t.timestamp_micros() as f64 / 1e6),
        ssh_enabled: s.ssh_enabled,
        ssh_host: s.ssh_host,
        ssh_data_path: s.ssh_data_path.unwrap_or_else(|| "/".into()),
        ssh_host_key_fingerprint: s.ssh_host_key_fingerprint,
        status_checked_at: checked_at,
        status_source: source,
        reachable,
        error_class,
        error,
        version_num: live.and_then(|l| l.version_num),
        in_recovery: live.and_then(|l| l.in_recovery),
        id: s.id,
        name: s.name,
        host: s.host,
        port: s.port,
        user: s.username,
        dbname: s.dbname,
        sslmode: s.sslmode,
        pool: s.pool,
        enabled: s.enabled,
        description: s.description,
        created_at: s.created_at,
        updated_at: s.updated_at,
        password_cleared: None,
        ssh_credentials_cleared: None,
        note: None,
    }
}

#[derive(Debug, Object)]
pub struct DiskOut {
    pub mount: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

/// The original's `{success, message, auth_type}`, plus what pgmon measured.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TestSshOut {
    pub success: bool,
    pub message: String,
    /// `password` or `key`.
    pub auth_type: String,
    pub latency_ms: Option<f64>,
    /// The key the host presented (also on `host_key_mismatch`).
    pub host_key_fingerprint: Option<String>,
    pub disk: Option<DiskOut>,
    /// `auth_failed | timeout | unreachable | host_key_mismatch | command_failed` (a target
    /// `servers.allowed_targets` refuses is a 422 instead)
    pub error: Option<String>,
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
    /// `auth_failed | timeout | unreachable | tls | other` (a refused target is a 422 instead)
    pub error: Option<String>,
    pub message: Option<String>,
    /// Sessions by state when connected.
    pub active: Option<i64>,
    pub idle: Option<i64>,
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
            active: None,
            idle: None,
        }
    }
}

/// The original's answer to `test-pg`.
#[derive(Debug, Object)]
pub struct TestPgOut {
    pub success: bool,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Handlers

pub struct ServersApi;

#[OpenApi(tag = "Tag::Servers")]
impl ServersApi {
    /// All monitored servers with their live status (any role). Never waits on a server: the status
    /// is what this API last learned, refreshed in the background (see `status_checked_at`).
    #[oai(path = "/servers", method = "get")]
    async fn list(&self, state: Data<&AppState>, _auth: Auth) -> ApiResult<SerdeJson<Vec<ServerOut>>> {
        let rows = server_rows(&state).await?;
        let keys = key_infos(&state, &rows).await?;
        let mut missing = Vec::new();
        let mut seen: Vec<Seen> = rows
            .iter()
            .map(|r| {
                if !r.enabled {
                    return Seen::default();
                }
                let k = state.live.known(&state, r);
                if k.status.is_none() || k.disk.is_none() {
                    missing.push(r.id);
                }
                Seen {
                    status: k.status.map(|(at, v)| (live::wall_clock(at), v)),
                    disk: k.disk.and_then(|(_, d)| (*d).clone()),
                    collector: None,
                }
            })
            .collect();
        // Servers this API has not asked yet (or not their disk): the collector's last word.
        if !missing.is_empty() {
            let mut last = stats_read::last_seen(&state.pool, &missing).await?;
            for (r, s) in rows.iter().zip(seen.iter_mut()) {
                s.collector = last.remove(&r.id);
            }
        }
        let out: Vec<ServerOut> = rows
            .iter()
            .zip(seen)
            .map(|(r, s)| {
                let key = r.ssh_key_id.and_then(|k| keys.get(&k).cloned());
                server_out(r.clone(), key, s)
            })
            .collect();
        SerdeJson::new(&out)
    }

    /// One server with its live status (any role); waits at most the connect deadline.
    #[oai(path = "/servers/:name", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<ServerOut>> {
        let row = load(&state, &name).await?;
        Ok(Json(with_status(&state, row, false).await?))
    }

    /// Register a server (admin, operator) and probe it: `status` says whether pgmon reaches it.
    /// 409 if the name is taken.
    #[oai(path = "/servers", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        body: JsonBody<ServerIn>,
    ) -> ApiResult<Json<ServerOut>> {
        let me = auth.operator()?;
        let (spec, _) = build_spec(&state, body.0, None).await?;
        check_targets(&spec, None).await?;
        let row = servers::create(&state.pool, &spec).await?;
        let details = format!(
            "server {} ({}:{}){}",
            row.name,
            row.host,
            row.port,
            ssh_words(&row)
        );
        record(
            &state,
            event::SERVER_CREATE,
            &actor(req, Some(&me.login)),
            Some(&details),
        )
        .await;
        Ok(Json(with_status(&state, row, true).await?))
    }

    /// Change a server (admin, operator): fields left out keep their stored values, a new `name`
    /// renames it (its collected stats follow: they reference the server by id). The whole object
    /// of `GET` may be sent back; read-only fields are ignored.
    #[oai(path = "/servers/:name", method = "put")]
    async fn update(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        body: JsonBody<ServerIn>,
    ) -> ApiResult<Json<ServerOut>> {
        let me = auth.operator()?;
        let current = load(&state, &name).await?;
        let (spec, forgot) = build_spec(&state, body.0, Some(&current)).await?;
        check_targets(&spec, Some(&current)).await?;
        let row = servers::update(&state.pool, &name, &spec)
            .await
            .map_err(|e| not_found_as(e, &name))?;
        let details = format!("server {}: {}", name.0, changes(&current, &row));
        record(
            &state,
            event::SERVER_UPDATE,
            &actor(req, Some(&me.login)),
            Some(&details),
        )
        .await;
        let mut out = with_status(&state, row, true).await?;
        if forgot.password {
            out.password_cleared = Some(true);
        }
        if forgot.ssh {
            out.ssh_credentials_cleared = Some(true);
        }
        out.note = forgot.note();
        Ok(Json(out))
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
    ) -> ApiResult<Json<Message>> {
        let me = auth.operator()?;
        let row = load(&state, &name).await?;
        servers::delete(&state.pool, &name)
            .await
            .map_err(|e| not_found_as(e, &name))?;
        state.live.forget(row.id);
        let details = format!("server {} ({}:{})", row.name, row.host, row.port);
        record(
            &state,
            event::SERVER_DELETE,
            &actor(req, Some(&me.login)),
            Some(&details),
        )
        .await;
        Ok(Json(Message {
            message: format!("Server {} deleted", name.0),
        }))
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
    ) -> ApiResult<Json<Message>> {
        let me = auth.operator()?;
        let row = servers::clear_host_key(&state.pool, &name)
            .await
            .map_err(|e| not_found_as(e, &name))?;
        let details = format!("server {}: pinned SSH host key forgotten", row.name);
        record(
            &state,
            event::SSH_HOST_KEY_CLEARED,
            &actor(req, Some(&me.login)),
            Some(&details),
        )
        .await;
        Ok(Json(Message {
            message: format!("the SSH host key of {} is no longer pinned", row.name),
        }))
    }

    /// Connect to the server as the collector does and report version and role (admin, operator).
    #[oai(path = "/servers/:name/test-connection", method = "post")]
    async fn test_connection(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<TestConnectionOut>> {
        let me = auth.operator()?;
        probe_allowed(&state, &me.login)?;
        let server = load(&state, &name).await?;
        Ok(Json(test_connection(&state, &server).await?))
    }

    /// The original's PostgreSQL connection test: `test-connection` as `{success, message}`
    /// (admin, operator).
    #[oai(path = "/servers/:name/test-pg", method = "post")]
    async fn test_pg(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<TestPgOut>> {
        let me = auth.operator()?;
        probe_allowed(&state, &me.login)?;
        let server = load(&state, &name).await?;
        let t = test_connection(&state, &server).await?;
        let message = if t.ok {
            format!(
                "PG {}, соединений: {} акт. / {} idle ({:.2}с)",
                t.version.as_deref().unwrap_or("?"),
                t.active.unwrap_or(0),
                t.idle.unwrap_or(0),
                t.latency_ms.unwrap_or(0.0) / 1000.0
            )
        } else {
            t.message.clone().unwrap_or_default()
        };
        Ok(Json(TestPgOut {
            success: t.ok,
            message,
        }))
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
        probe_allowed(&state, &me.login)?;
        let server = load(&state, &name).await?;
        let auth_type = if server.ssh_key_id.is_some() {
            "key"
        } else {
            "password"
        };
        let target = match servers::ssh_target(&state.pool, &state.crypto, &server).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(ApiError::conflict(format!(
                    "server {} has no SSH settings (set ssh_password or ssh_key_id)",
                    server.name
                )));
            }
            Err(SshTargetError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(ApiError::internal(e)),
        };
        let data_path = server.ssh_data_path.as_deref().unwrap_or("/");
        let failed = |class: &str, message: String, fingerprint: Option<String>| TestSshOut {
            success: false,
            message,
            auth_type: auth_type.into(),
            latency_ms: None,
            host_key_fingerprint: fingerprint,
            disk: None,
            error: Some(class.into()),
        };
        let out = match ssh::disk_usage(&target, data_path, TEST_SSH_DEADLINE).await {
            Ok(done) => {
                if target.expected_fingerprint.is_none() {
                    let pinned =
                        servers::pin_host_key(&state.pool, server.id, &done.host_key_fingerprint).await?;
                    if !pinned {
                        return Ok(Json(failed(
                            ssh::SshErrorClass::HostKeyMismatch.as_str(),
                            "another host key was pinned meanwhile".into(),
                            Some(done.host_key_fingerprint),
                        )));
                    }
                    let details = format!(
                        "server {}: SSH host key {} pinned",
                        server.name, done.host_key_fingerprint
                    );
                    record(
                        &state,
                        event::SSH_HOST_KEY_PINNED,
                        &actor(req, Some(&me.login)),
                        Some(&details),
                    )
                    .await;
                }
                let d = done.value;
                TestSshOut {
                    success: true,
                    message: format!(
                        "SSH OK ({:.0} ms): {} has {} of {} bytes available",
                        done.latency_ms, d.mount, d.available_bytes, d.total_bytes
                    ),
                    auth_type: auth_type.into(),
                    latency_ms: Some(done.latency_ms),
                    host_key_fingerprint: Some(done.host_key_fingerprint),
                    disk: Some(DiskOut {
                        mount: d.mount,
                        total_bytes: d.total_bytes,
                        used_bytes: d.used_bytes,
                        available_bytes: d.available_bytes,
                    }),
                    error: None,
                }
            }
            Err(e) if e.class == ssh::SshErrorClass::Refused => {
                return Err(ApiError::unprocessable(format!("ssh_host: {}", e.message)));
            }
            Err(e) => failed(e.class.as_str(), e.message, e.host_key_fingerprint),
        };
        Ok(Json(out))
    }
}

/// Names and fingerprints of the SSH keys `rows` log in with.
async fn key_infos(state: &AppState, rows: &[ServerRow]) -> ApiResult<HashMap<Uuid, KeyInfo>> {
    if rows.iter().all(|r| r.ssh_key_id.is_none()) {
        return Ok(HashMap::new());
    }
    Ok(ssh_keys::list(&state.pool)
        .await?
        .into_iter()
        .map(|k| {
            (
                k.id,
                KeyInfo {
                    name: k.name,
                    fingerprint: k.fingerprint,
                },
            )
        })
        .collect())
}

/// Every registered server, from this API's cache of the list (dropped on `NOTIFY pgmon_servers`
/// and after this API's own writes), else from the store.
pub(crate) async fn server_rows(state: &AppState) -> ApiResult<Arc<Vec<ServerRow>>> {
    if let Some(rows) = state.cache.server_list() {
        return Ok(rows);
    }
    let read_at = state.cache.generation();
    let rows = Arc::new(servers::list(&state.pool).await?);
    state.cache.put_server_list(rows.clone(), read_at);
    Ok(rows)
}

/// `row` with a status at most the cache TTL old (`fresh`: probed now, after a change).
async fn with_status(state: &AppState, row: ServerRow, fresh: bool) -> ApiResult<ServerOut> {
    let keys = key_infos(state, std::slice::from_ref(&row)).await?;
    let key = row.ssh_key_id.and_then(|k| keys.get(&k).cloned());
    if !row.enabled {
        return Ok(server_out(row, key, Seen::default()));
    }
    let (status, disk) = if fresh {
        (state.live.refresh(state, &row).await, None)
    } else {
        tokio::join!(state.live.status(state, &row), state.live.disk(state, &row))
    };
    let seen = Seen {
        status: Some((status.checked_at, status)),
        disk,
        collector: None,
    };
    Ok(server_out(row, key, seen))
}

/// Takes one probe from `login`'s budget: 429 past `servers.test_attempts_per_minute`.
fn probe_allowed(state: &AppState, login: &str) -> ApiResult<()> {
    state.probes.check(login).map_err(|(limit, wait)| {
        ApiError::too_many_with(
            format!(
                "too many connection tests: at most {limit} a minute per user \
                 (servers.test_attempts_per_minute); try again in {wait} s"
            ),
            wait,
        )
    })
}

/// How long `check_targets` waits for DNS; a name that does not resolve in time is not refused here
/// (every connect checks it again).
const CHECK_RESOLVE_DEADLINE: Duration = Duration::from_secs(5);

/// 422 when `servers.allowed_targets` refuses the PostgreSQL host or the SSH host of `spec`. On an
/// update only a moved endpoint is checked, so that a server a narrowed policy now refuses can still
/// be disabled or described; it is refused at every connect anyway.
async fn check_targets(spec: &ServerSpec, current: Option<&ServerRow>) -> ApiResult<()> {
    let mut endpoints = vec![("host", spec.host.as_str(), spec.port)];
    if let Some(s) = &spec.ssh {
        endpoints.push(("ssh_host", s.host.as_deref().unwrap_or(&spec.host), s.port));
    }
    for (field, host, port) in endpoints {
        let unchanged = current.is_some_and(|c| match field {
            "host" => c.host == host && c.port == port,
            _ => {
                c.ssh_enabled
                    && c.ssh_host.as_deref().unwrap_or(&c.host) == host
                    && c.ssh_port.unwrap_or(22) == port
            }
        });
        if unchanged {
            continue;
        }
        let port = u16::try_from(port).unwrap_or(0);
        if let Ok(Err(e)) = tokio::time::timeout(CHECK_RESOLVE_DEADLINE, targets::resolve(host, port)).await
            && e.is_refused()
        {
            return Err(ApiError::unprocessable(format!("{field}: {e}")));
        }
    }
    Ok(())
}

/// One connection as the collector makes it, and what the server says of itself.
async fn test_connection(state: &AppState, server: &ServerRow) -> ApiResult<TestConnectionOut> {
    let target = servers::remote_target(&state.crypto, server).map_err(ApiError::internal)?;
    let opts = remote::SessionOpts::new("pgmon-api");
    let started = std::time::Instant::now();
    let probe = async {
        let client = remote::connect(&target, &opts).await?;
        remote::call(
            opts.call_deadline(),
            client.query_one(
                "SELECT current_setting('server_version'), pg_is_in_recovery(),
                        count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'idle')
                 FROM pg_stat_activity",
                &[],
            ),
        )
        .await
    };
    Ok(
        match tokio::time::timeout(TEST_CONNECTION_DEADLINE, probe).await {
            Err(_) => TestConnectionOut::failed("timeout", "no answer within 14 s".into()),
            Ok(Err(e)) if e.class == remote::ErrorClass::Refused => {
                return Err(ApiError::unprocessable(format!("host: {}", e.message)));
            }
            Ok(Err(e)) => TestConnectionOut::failed(e.class.as_str(), e.message),
            Ok(Ok(row)) => {
                let version: String = row.try_get(0).unwrap_or_default();
                TestConnectionOut {
                    ok: true,
                    latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                    version: version
                        .split_whitespace()
                        .next()
                        .map(|v| pgmon_shared::redact::peer_text(v, 100)),
                    in_recovery: row.try_get(1).ok(),
                    error: None,
                    message: None,
                    active: row.try_get(2).ok(),
                    idle: row.try_get(3).ok(),
                }
            }
        },
    )
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

fn ssh_words(row: &ServerRow) -> String {
    match (row.ssh_enabled, row.ssh_key_id.is_some()) {
        (false, _) => String::new(),
        (true, true) => ", SSH with a key".into(),
        (true, false) => ", SSH with a password".into(),
    }
}

/// What an update changed, in words for the audit; secrets only as "changed".
fn changes(before: &ServerRow, after: &ServerRow) -> String {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} {a} -> {b}"));
        }
    };
    field("name", before.name.clone(), after.name.clone());
    field("host", before.host.clone(), after.host.clone());
    field("port", before.port.to_string(), after.port.to_string());
    field("user", before.username.clone(), after.username.clone());
    field("dbname", before.dbname.clone(), after.dbname.clone());
    field("sslmode", before.sslmode.clone(), after.sslmode.clone());
    field("pool", before.pool.clone(), after.pool.clone());
    field("enabled", before.enabled.to_string(), after.enabled.to_string());
    field("ssh", ssh_words(before), ssh_words(after));
    field(
        "ssh_host",
        before.ssh_host.clone().unwrap_or_default(),
        after.ssh_host.clone().unwrap_or_default(),
    );
    field(
        "ssh_port",
        before.ssh_port.unwrap_or(22).to_string(),
        after.ssh_port.unwrap_or(22).to_string(),
    );
    field(
        "ssh_user",
        before.ssh_username.clone().unwrap_or_default(),
        after.ssh_username.clone().unwrap_or_default(),
    );
    if before.description != after.description {
        out.push("description changed".into());
    }
    if before.password_enc != after.password_enc {
        out.push("password changed".into());
    }
    if before.ssh_password_enc != after.ssh_password_enc {
        out.push("SSH password changed".into());
    }
    if before.ssh_key_id != after.ssh_key_id {
        out.push("SSH key changed".into());
    }
    if out.is_empty() {
        "nothing changed".into()
    } else {
        out.join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Validation and merging

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

fn check_name(name: &str) -> ApiResult<()> {
    validate::check_server_name(name).map_err(bad)
}

fn check_host(field: &str, host: &str) -> ApiResult<()> {
    validate::check_host(field, host).map_err(bad)
}

fn check_port(field: &str, port: i64) -> ApiResult<i32> {
    validate::check_port(field, port).map_err(bad)
}

/// A port as sent: left out keeps `current` (else `default`), `null` is the default.
fn port_of(field: &str, v: MaybeUndefined<i64>, current: Option<i32>, default: i32) -> ApiResult<i32> {
    match v {
        MaybeUndefined::Value(p) => check_port(field, p),
        MaybeUndefined::Null => Ok(default),
        MaybeUndefined::Undefined => Ok(current.unwrap_or(default)),
    }
}

fn check_text(field: &str, value: &str, max: usize, allow_empty: bool) -> ApiResult<()> {
    validate::check_text(field, value, max, allow_empty).map_err(bad)
}

fn check_text_lines(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.chars().count() > max {
        return Err(bad(format!("{field} must be at most {max} characters")));
    }
    Ok(())
}

fn check_secret(field: &str, value: &str) -> ApiResult<()> {
    validate::check_secret(field, value).map_err(bad)
}

/// A secret as sent: left out or `""` keeps the stored one (the original's forms send `""` for
/// "unchanged"), `null` removes it.
fn secret_change(state: &AppState, field: &str, v: MaybeUndefined<String>) -> ApiResult<SecretChange> {
    Ok(match v {
        MaybeUndefined::Undefined => SecretChange::Keep,
        MaybeUndefined::Value(p) if p.is_empty() => SecretChange::Keep,
        MaybeUndefined::Null => SecretChange::Clear,
        MaybeUndefined::Value(p) => {
            check_secret(field, &p)?;
            SecretChange::Set(state.crypto.encrypt(&p))
        }
    })
}

/// `Some(None)`: no key (`""` or `null`); `None`: left out.
async fn key_id_of(state: &AppState, v: MaybeUndefined<String>) -> ApiResult<Option<Option<Uuid>>> {
    let id = match v {
        MaybeUndefined::Undefined => return Ok(None),
        MaybeUndefined::Null => return Ok(Some(None)),
        MaybeUndefined::Value(s) if s.is_empty() => return Ok(Some(None)),
        MaybeUndefined::Value(s) => s,
    };
    // An id that names no stored key is a reference to nothing: 404, as for any unknown key.
    let missing = || ApiError::not_found(format!("ssh_key_id: no SSH key {id}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| bad(format!("ssh_key_id {id:?} is not a UUID")))?;
    if ssh_keys::get(&state.pool, uuid).await?.is_none() {
        return Err(missing());
    }
    Ok(Some(Some(uuid)))
}

/// Stored credentials an update forgot because their target moved.
#[derive(Debug, Default, Clone, Copy)]
struct Forgotten {
    password: bool,
    ssh: bool,
}

impl Forgotten {
    fn note(self) -> Option<String> {
        let pg = "the PostgreSQL target changed and no new password was given: the stored password \
                  was forgotten (has_password is false); set it again with \"password\"";
        let ssh = "the SSH endpoint changed and no new SSH credential was given: the SSH password and \
                   key choice were forgotten and SSH is off; set \"ssh_password\" or \"ssh_key_id\" again";
        match (self.password, self.ssh) {
            (false, false) => None,
            (true, false) => Some(pg.into()),
            (false, true) => Some(ssh.into()),
            (true, true) => Some(format!("{pg}; {ssh}")),
        }
    }
}

/// Validates `body`, applies defaults (create) or the stored values (update, `current`), and encrypts
/// new secrets. A secret the body leaves unchanged is forgotten when its target moves (see the
/// module's doc); the second value says which were.
async fn build_spec(
    state: &AppState,
    body: ServerIn,
    current: Option<&ServerRow>,
) -> ApiResult<(ServerSpec, Forgotten)> {
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
    let port = port_of("port", body.port, current.map(|c| c.port), 5432)?;
    let dbname = body
        .dbname
        .or_else(|| current.map(|c| c.dbname.clone()))
        .unwrap_or_else(|| "postgres".into());
    check_text("dbname", &dbname, 63, false)?;
    let username = match (body.user, current) {
        (Some(u), _) => u,
        (None, Some(c)) => c.username.clone(),
        (None, None) => return Err(bad("user is required")),
    };
    check_text("user", &username, 63, false)?;
    let sslmode = body
        .sslmode
        .map(|m| m.as_str().to_string())
        .or_else(|| current.map(|c| c.sslmode.clone()))
        .unwrap_or_else(|| "prefer".into());
    let pool = body
        .pool
        .map(|p| match p {
            PoolIn::Default => "default".to_string(),
            PoolIn::HighLoad => "high_load".to_string(),
        })
        .or_else(|| current.map(|c| c.pool.clone()))
        .unwrap_or_else(|| "default".into());
    let description = body
        .description
        .or_else(|| current.map(|c| c.description.clone()))
        .unwrap_or_default();
    check_text_lines("description", &description, 2000)?;
    let mut password = secret_change(state, "password", body.password)?;
    let pg_moved = current.is_some_and(|c| {
        (
            c.host.as_str(),
            c.port,
            c.username.as_str(),
            c.dbname.as_str(),
            c.sslmode.as_str(),
        ) != (
            host.as_str(),
            port,
            username.as_str(),
            dbname.as_str(),
            sslmode.as_str(),
        )
    });
    let mut forgot = Forgotten::default();
    if pg_moved && matches!(password, SecretChange::Keep) {
        forgot.password = current.is_some_and(|c| c.password_enc.is_some());
        password = SecretChange::Clear;
    }
    if let MaybeUndefined::Value(p) = &body.ssh_key_passphrase {
        check_secret("ssh_key_passphrase", p)?;
    }
    let (ssh, ssh_forgotten) = build_ssh(
        state,
        &host,
        SshFields {
            auth_type: body.ssh_auth_type,
            user: body.ssh_user,
            port: body.ssh_port,
            password: body.ssh_password,
            key_id: body.ssh_key_id,
            host: body.ssh_host,
            data_path: body.ssh_data_path,
        },
        current,
    )
    .await?;
    forgot.ssh = ssh_forgotten;
    let spec = ServerSpec {
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
    };
    Ok((spec, forgot))
}

/// The SSH part of a server body.
struct SshFields {
    auth_type: Option<SshAuthIn>,
    user: Option<String>,
    port: MaybeUndefined<i64>,
    password: MaybeUndefined<String>,
    key_id: MaybeUndefined<String>,
    host: MaybeUndefined<String>,
    data_path: Option<String>,
}

/// SSH settings after the change: `None` when SSH is off, which is when the chosen method has no
/// credential (a key for `key`, a password for `password`), or `ssh_auth_type` is `none`. A server
/// logs in with a key or a password, never both: choosing one drops the other.
///
/// When the endpoint (`ssh_host`, else `pg_host`; port; user) moves, the stored password and key are
/// not carried over: only a credential given in the same body is. If none is, SSH is kept configured
/// but off (`enabled: false`), and the second value is true.
async fn build_ssh(
    state: &AppState,
    pg_host: &str,
    f: SshFields,
    current: Option<&ServerRow>,
) -> ApiResult<(Option<SshSpec>, bool)> {
    let host = match f.host {
        MaybeUndefined::Value(h) if !h.is_empty() => {
            check_host("ssh_host", &h)?;
            Some(h)
        }
        MaybeUndefined::Value(_) | MaybeUndefined::Null => None,
        MaybeUndefined::Undefined => current.and_then(|c| c.ssh_host.clone()),
    };
    let port = port_of("ssh_port", f.port, current.and_then(|c| c.ssh_port), 22)?;
    let username = f
        .user
        .filter(|u| !u.is_empty())
        .or_else(|| current.and_then(|c| c.ssh_username.clone()))
        .unwrap_or_else(|| "postgres".into());
    validate::check_ssh_user(&username).map_err(bad)?;
    let data_path = f
        .data_path
        .filter(|p| !p.is_empty())
        .or_else(|| current.and_then(|c| c.ssh_data_path.clone()))
        .unwrap_or_else(|| "/".into());
    validate::check_data_path(&data_path).map_err(bad)?;
    let key_given = key_id_of(state, f.key_id).await?;
    let mut password = secret_change(state, "ssh_password", f.password)?;
    let had_credential = current.is_some_and(|c| c.ssh_key_id.is_some() || c.ssh_password_enc.is_some());
    let moved = had_credential
        && current.is_some_and(|c| {
            c.ssh_host.as_deref().unwrap_or(&c.host) != host.as_deref().unwrap_or(pg_host)
                || c.ssh_port.unwrap_or(22) != port
                || c.ssh_username.as_deref().unwrap_or("postgres") != username
        });
    if moved && matches!(password, SecretChange::Keep) {
        password = SecretChange::Clear;
    }
    let stored_key = current.and_then(|c| c.ssh_key_id).filter(|_| !moved);
    let stored_password = !moved && current.is_some_and(|c| c.ssh_password_enc.is_some());
    // Settings kept while SSH is off, after an earlier move forgot the credentials.
    let kept_off = current.is_some_and(|c| !c.ssh_enabled && c.ssh_port.is_some());
    let (key_id, password) = match f.auth_type {
        Some(SshAuthIn::None) => return Ok((None, false)),
        // Without a key, key authentication has no credential: SSH is off, as with no password.
        Some(SshAuthIn::Key) => (key_given.unwrap_or(stored_key), SecretChange::Clear),
        Some(SshAuthIn::Password) => (None, password),
        // Neither chosen: a key given wins (and drops the password), a password given replaces
        // the key, else what is stored stays.
        None => match (key_given, &password) {
            (Some(Some(k)), _) => (Some(k), SecretChange::Clear),
            (_, SecretChange::Set(_)) | (Some(None), _) => (None, password),
            (None, _) => (stored_key, password),
        },
    };
    let has_password = match &password {
        SecretChange::Set(_) => true,
        SecretChange::Clear => false,
        SecretChange::Keep => stored_password,
    };
    let enabled = key_id.is_some() || has_password;
    if !enabled && !moved && !kept_off {
        return Ok((None, false));
    }
    let spec = SshSpec {
        enabled,
        host,
        port,
        username,
        key_id,
        password: if key_id.is_some() || !enabled {
            SecretChange::Clear
        } else {
            password
        },
        data_path,
    };
    Ok((Some(spec), moved && !enabled))
}
