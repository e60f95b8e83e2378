//! Cancel and terminate: the only writes pgmon makes to a monitored server. A backend is named by its
//! pid and its `backend_start`, and the signal is sent by one statement that finds exactly that
//! backend, so a pid the server has since given to another session is never hit.

use super::{Remote, col};
use crate::remote_pools::session_opts;
use chrono::{DateTime, Utc};
use pgmon_shared::redact::{peer_text, redact_sql};
use pgmon_shared::remote::RemoteError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Cancel,
    Terminate,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Cancel => "cancel",
            Signal::Terminate => "terminate",
        }
    }
}

/// What happened to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server accepted the signal.
    Signalled,
    /// No backend with that pid and start time: it ended, or the pid now belongs to another one.
    Gone,
    /// The monitoring role may not signal that backend.
    NotPermitted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Signalled => "signalled",
            Outcome::Gone => "gone",
            Outcome::NotPermitted => "not_permitted",
        }
    }
}

/// The backend as it was when signalled (for the answer and the audit).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
    /// The first 200 characters of its query, password literals redacted (it goes to the audit).
    pub query: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Done {
    pub outcome: Outcome,
    pub target: Target,
    /// The server's reason when not permitted.
    pub reason: Option<String>,
}

const FIND_SQL: &str = "SELECT usename::text, datname::text, application_name, left(query, 200)
     FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2 AND pid <> pg_backend_pid()";

/// The signal only reaches a backend still matching (pid, backend_start) when the statement runs.
fn signal_sql(s: Signal) -> &'static str {
    match s {
        Signal::Cancel => {
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2"
        }
        Signal::Terminate => {
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2"
        }
    }
}

/// Sends `s` to backend `pid` if it is still the one that started at `backend_start` (compared to
/// the microsecond, as the server keeps it).
pub async fn send(
    r: &Remote,
    s: Signal,
    pid: i32,
    backend_start: DateTime<Utc>,
) -> Result<Done, RemoteError> {
    let deadline = session_opts().call_deadline();
    let found = super::query(r, FIND_SQL, &[&pid, &backend_start]).await?;
    let Some(row) = found.first() else {
        return Ok(Done {
            outcome: Outcome::Gone,
            target: Target::default(),
            reason: None,
        });
    };
    let target = Target {
        user: col(row, 0)?,
        database: col(row, 1)?,
        application: col(row, 2)?,
        query: col::<Option<String>>(row, 3)?.map(|q| redact_sql(&q).into_owned()),
    };
    let res = tokio::time::timeout(deadline, r.client.query(signal_sql(s), &[&pid, &backend_start])).await;
    let rows = match res {
        Err(_) => return Err(RemoteError::timeout("signal", deadline)),
        Ok(Err(e)) => {
            // 42501: "permission denied to cancel query" / "must be a member of the role ..." (the
            // monitoring role lacks pg_signal_backend, or the backend is a superuser's).
            if let Some(db) = e.as_db_error()
                && db.code().code() == "42501"
            {
                return Ok(Done {
                    outcome: Outcome::NotPermitted,
                    target,
                    reason: Some(peer_text(db.message(), 300)),
                });
            }
            return Err(RemoteError::from_pg(&e));
        }
        Ok(Ok(rows)) => rows,
    };
    let sent = match rows.first() {
        Some(row) => col::<Option<bool>>(row, 0)?.unwrap_or(false),
        None => false,
    };
    Ok(Done {
        outcome: if sent { Outcome::Signalled } else { Outcome::Gone },
        target,
        reason: None,
    })
}

/// `api.backend_signals`: which signals this API sends at all.
pub fn allowed(setting: &str, s: Signal) -> Result<(), String> {
    match (setting, s) {
        ("on", _) | ("cancel", Signal::Cancel) => Ok(()),
        ("cancel", Signal::Terminate) => Err(
            "terminating backends is disabled on this pgmon (api.backend_signals = \"cancel\"); cancel is allowed"
                .into(),
        ),
        _ => Err("signalling backends is disabled on this pgmon (api.backend_signals = \"off\")".into()),
    }
}
