//! What runs on a monitored server right now, read live through the API's per-server pools:
//! sessions, lock waits, replication, the xmin horizon and wraparound, progress of maintenance
//! commands; and the one write pgmon ever makes to a server, an operator's cancel or terminate.
//!
//! Every query branches on `server_version_num` for PostgreSQL 12 to 18 (see [`Version`]); a newer
//! major pgmon does not know yet gets the columns all versions share instead of an error. The
//! sessions are the API's (`application_name` pgmon-api, read-only, statement and lock timeouts).

pub mod locks;
pub mod progress;
pub mod replication;
pub mod sessions;
pub mod signals;
pub mod wraparound;

use crate::remote_pools::session_opts;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::remote::{self, ErrorClass, RemoteError};
use pgmon_shared::store::servers::{self, ServerRow};
use poem_openapi::Object;
use std::time::Instant;

pub use pgmon_shared::version::Version;

/// A connection to the server, taken from the API's pool for it.
pub struct Remote {
    pub client: deadpool_postgres::Object,
    pub version: Version,
    pub connected_ms: f64,
}

/// Whether the server answered, as every activity answer starts.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct Reach {
    pub server: String,
    pub reachable: bool,
    /// `auth_failed`, `timeout`, `unreachable`, `tls`, `refused` or `other` when not reachable.
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub checked_at: DateTime<Utc>,
    /// `server_version_num`, e.g. 150010.
    pub version_num: Option<i32>,
    /// Connection (from the pool) plus queries, milliseconds.
    pub latency_ms: Option<f64>,
}

impl Reach {
    pub fn down(server: &ServerRow, e: &RemoteError) -> Self {
        Self {
            server: server.name.clone(),
            reachable: false,
            error_class: Some(e.class.as_str().to_string()),
            error: Some(e.message.clone()),
            checked_at: Utc::now(),
            version_num: None,
            latency_ms: None,
        }
    }

    pub fn up(server: &ServerRow, r: &Remote, started: Instant) -> Self {
        Self {
            server: server.name.clone(),
            reachable: true,
            error_class: None,
            error: None,
            checked_at: Utc::now(),
            version_num: Some(r.version.0),
            latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
        }
    }
}

/// A connection to `server`. A server this API saw unreachable within `server_status_cache_ttl_secs`
/// is answered as such at once, without waiting for another connect timeout (a background probe
/// keeps that knowledge fresh).
pub async fn open(state: &AppState, server: &ServerRow) -> Result<Remote, RemoteError> {
    let known = state.live.known(state, server);
    let ttl = std::time::Duration::from_secs(state.cfg.api.server_status_cache_ttl_secs);
    let mut version = None;
    if let Some((at, s)) = &known.status {
        if !s.reachable && at.elapsed() < ttl {
            return Err(RemoteError::new(
                s.error_class
                    .as_deref()
                    .map(class_of)
                    .unwrap_or(ErrorClass::Other),
                s.error.clone().unwrap_or_else(|| "not reachable".into()),
            ));
        }
        version = s.version_num;
    }
    let target = servers::remote_target(&state.crypto, server)
        .map_err(|_| RemoteError::new(ErrorClass::Other, "the stored password cannot be decrypted"))?;
    let t = Instant::now();
    let client = match state
        .remote
        .get(server.id, &server.name, &server.pool, &target)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            state.live.note_down(server, &e);
            return Err(e);
        }
    };
    let connected_ms = t.elapsed().as_secs_f64() * 1000.0;
    let version = match version {
        Some(v) => v,
        None => {
            let stmt = remote::call(
                session_opts().call_deadline(),
                client.prepare_cached("SELECT current_setting('server_version_num')::int4"),
            )
            .await?;
            let row = remote::call(session_opts().call_deadline(), client.query_one(&stmt, &[])).await?;
            row.try_get(0).map_err(|e| RemoteError::from_pg(&e))?
        }
    };
    Ok(Remote {
        client,
        version: Version(version),
        connected_ms,
    })
}

fn class_of(s: &str) -> ErrorClass {
    match s {
        "auth_failed" => ErrorClass::AuthFailed,
        "timeout" => ErrorClass::Timeout,
        "unreachable" => ErrorClass::Unreachable,
        "tls" => ErrorClass::Tls,
        "refused" => ErrorClass::Refused,
        _ => ErrorClass::Other,
    }
}

/// Runs `sql` (prepared once per connection) and returns its rows, under the API's deadline.
pub async fn query(
    r: &Remote,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, RemoteError> {
    let deadline = session_opts().call_deadline();
    let stmt = remote::call(deadline, r.client.prepare_cached(sql)).await?;
    remote::call(deadline, r.client.query(&stmt, params)).await
}

/// A column of a row, with a type mismatch as a [`RemoteError`] (pgmon's own text).
pub fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, RemoteError> {
    row.try_get(i).map_err(|e| RemoteError::from_pg(&e))
}

/// Sessions of pgmon's own processes, marked in the answers so they can be told apart.
pub fn is_pgmon(application: Option<&str>) -> bool {
    application.is_some_and(|a| a == "pgmon-api" || a == "pgmon-collector")
}

/// `relid` as a name when it lives in the database this session is connected to (regclass only
/// resolves there), else as `oid N`.
pub fn relation_sql(datid: &str, relid: &str) -> String {
    format!(
        "CASE WHEN {relid} IS NULL OR {relid} = 0 THEN NULL
              WHEN {datid} = (SELECT oid FROM pg_database WHERE datname = current_database())
              THEN {relid}::regclass::text ELSE 'oid ' || {relid}::text END"
    )
}
