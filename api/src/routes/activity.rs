//! `/servers/{name}/activity`, `/locks`, `/replication`, `/wraparound`, `/progress`: what runs on a
//! server now (every role), and cancel / terminate of one backend (admin and operator, audited).
//! An unreachable server is a normal answer with `reachable: false`.

use super::auth::{actor as request_actor, record};
use super::stats::server_by_name;
use crate::activity::{self, Reach, Remote, locks, progress, replication, sessions, signals, wraparound};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::payload::{JsonBody, SerdeJson};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use pgmon_shared::config::QueryTextView;
use pgmon_shared::redact;
use pgmon_shared::store::audit::event;
use pgmon_shared::store::servers::ServerRow;
use pgmon_shared::validate::Role;
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi, Tags};
use std::time::Instant;

#[derive(Tags)]
enum Tag {
    /// Live activity of a monitored server: sessions, lock waits, replication, wraparound, progress;
    /// cancel and terminate.
    Activity,
}

#[derive(Debug, Object, serde::Serialize)]
pub struct SessionsOut {
    #[oai(flatten)]
    #[serde(flatten)]
    pub reach: Reach,
    /// Sessions matching the filters (all of them, sorted).
    pub count: i32,
    pub sessions: Vec<sessions::Session>,
}

impl crate::payload::JsonSizeHint for SessionsOut {
    fn json_size_hint(&self) -> usize {
        512 + self
            .sessions
            .iter()
            .map(|s| 700 + s.query.as_ref().map_or(0, String::len))
            .sum::<usize>()
    }
}

#[derive(Debug, Object)]
pub struct LocksOut {
    #[oai(flatten)]
    pub reach: Reach,
    /// Sessions waiting on a lock.
    pub waiting: i32,
    /// Root blockers: sessions that block others without waiting themselves.
    pub roots: Vec<i32>,
    /// Root blockers first, their waiters beneath (depth-first, `depth` and `parent_pid` give the
    /// tree).
    pub nodes: Vec<locks::LockNode>,
}

#[derive(Debug, Object)]
pub struct ReplicationOut {
    #[oai(flatten)]
    pub reach: Reach,
    /// `primary` or `standby`.
    pub role: Option<String>,
    /// The current WAL position (on a standby, the last replayed one).
    pub current_lsn: Option<String>,
    /// Its standbys (on a standby, those cascading from it).
    pub standbys: Vec<replication::Standby>,
    /// On a standby: its WAL receiver and replay delay.
    pub wal_receiver: Option<replication::WalReceiver>,
    pub slots: Vec<replication::Slot>,
}

#[derive(Debug, Object)]
pub struct WraparoundOut {
    #[oai(flatten)]
    pub reach: Reach,
    pub autovacuum_freeze_max_age: Option<i64>,
    pub autovacuum_multixact_freeze_max_age: Option<i64>,
    pub vacuum_failsafe_age: Option<i64>,
    /// Oldest first.
    pub databases: Vec<wraparound::DatabaseAge>,
    /// Who holds the oldest xmin.
    pub oldest_xmin_holder: Option<wraparound::XminHolder>,
    /// Holders of the xmin horizon, oldest first (at most 20).
    pub holders: Vec<wraparound::XminHolder>,
}

#[derive(Debug, Object)]
pub struct ProgressOut {
    #[oai(flatten)]
    pub reach: Reach,
    pub commands: Vec<progress::Progress>,
}

/// Names the backend to signal: the pid alone could have been given to another session since.
#[derive(Debug, Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalIn {
    /// The backend's `backend_start` as the sessions list gave it (RFC 3339).
    pub backend_start: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum OutcomeOut {
    /// The server accepted the signal.
    Signalled,
    /// No backend with that pid and start time: it ended, or the pid belongs to another session now.
    Gone,
    /// The monitoring role may not signal it (it needs `pg_signal_backend`, and nobody but a
    /// superuser signals a superuser's backend).
    NotPermitted,
    /// The server did not answer; nothing was sent.
    Unreachable,
}

#[derive(Debug, Object)]
pub struct SignalOut {
    pub server: String,
    pub pid: i32,
    /// `cancel` or `terminate`.
    pub signal: String,
    pub outcome: OutcomeOut,
    /// What happened, in words.
    pub message: String,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
    /// The first 200 characters of its query when it was signalled, password literals redacted.
    pub query: Option<String>,
}

/// How query texts are shown to the caller (see `api.viewer_query_text`).
pub(crate) fn texts_for(state: &AppState, auth: &Auth) -> QueryTextView {
    redact::view_for(auth.0.role, state.cfg.api.viewer_query_text)
}

/// Either the server answered (`Ok(remote)`) or a `reachable: false` header to answer with.
async fn connect(state: &AppState, server: &ServerRow) -> Result<(Remote, Instant), Reach> {
    let t = Instant::now();
    activity::open(state, server)
        .await
        .map(|r| (r, t))
        .map_err(|e| Reach::down(server, &e))
}

pub struct ActivityApi;

#[OpenApi(tag = "Tag::Activity")]
impl ActivityApi {
    /// The server's sessions (`pg_stat_activity`, as far as the monitoring role sees them), longest
    /// running first. Filters are exact except `application` (part of the name, any case);
    /// `min_duration_secs` applies to the `sort` duration.
    #[oai(path = "/servers/:name/activity", method = "get")]
    #[allow(clippy::too_many_arguments)] // one per request parameter, as poem-openapi reads them
    async fn sessions(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
        #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))] database: Query<Option<String>>,
        #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))] user: Query<Option<String>>,
        #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))] application: Query<Option<String>>,
        /// `active`, `idle`, `idle in transaction`, ...
        #[oai(name = "state", validator(max_length = 200, pattern = r"^[^\x00]*$"))]
        state_filter: Query<Option<String>>,
        /// `client backend`, `autovacuum worker`, ...
        #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))]
        backend_type: Query<Option<String>>,
        #[oai(validator(minimum(value = "0"), maximum(value = "3153600000")))] min_duration_secs: Query<
            Option<f64>,
        >,
        sort: Query<Option<sessions::SortBy>>,
        order: Query<Option<sessions::Order>>,
        /// The whole query text instead of its first `api.activity_query_chars` characters.
        full_query: Query<Option<bool>>,
        /// Leave out pgmon's own sessions.
        hide_pgmon: Query<Option<bool>>,
    ) -> ApiResult<SerdeJson<SessionsOut>> {
        let server = server_by_name(&state, &name).await?;
        let filter = sessions::Filter {
            database: database.0.filter(|s| !s.is_empty()),
            user: user.0.filter(|s| !s.is_empty()),
            application: application.0.filter(|s| !s.is_empty()),
            state: state_filter.0.filter(|s| !s.is_empty()),
            backend_type: backend_type.0.filter(|s| !s.is_empty()),
            min_duration_secs: min_duration_secs.0,
            sort: sort.0.unwrap_or_default(),
            order: order.0.unwrap_or_default(),
            query_chars: (!full_query.0.unwrap_or(false)).then_some(state.cfg.api.activity_query_chars),
            hide_pgmon: hide_pgmon.0.unwrap_or(false),
            texts: texts_for(&state, &auth),
        };
        let (r, t) = match connect(&state, &server).await {
            Ok(c) => c,
            Err(reach) => {
                return SerdeJson::new(&SessionsOut {
                    reach,
                    count: 0,
                    sessions: Vec::new(),
                });
            }
        };
        SerdeJson::new(&match sessions::list(&r, &filter).await {
            Ok(list) => SessionsOut {
                reach: Reach::up(&server, &r, t),
                count: i32::try_from(list.len()).unwrap_or(i32::MAX),
                sessions: list,
            },
            Err(e) => SessionsOut {
                reach: Reach::down(&server, &e),
                count: 0,
                sessions: Vec::new(),
            },
        })
    }

    /// Lock waits as a tree: root blockers first, their waiters beneath, with the lock mode and
    /// relation waited on and for how long.
    #[oai(path = "/servers/:name/locks", method = "get")]
    async fn locks(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<LocksOut>> {
        let server = server_by_name(&state, &name).await?;
        let empty = |reach| LocksOut {
            reach,
            waiting: 0,
            roots: Vec::new(),
            nodes: Vec::new(),
        };
        let (r, t) = match connect(&state, &server).await {
            Ok(c) => c,
            Err(reach) => return Ok(Json(empty(reach))),
        };
        Ok(Json(
            match locks::tree(&r, state.cfg.api.activity_query_chars, texts_for(&state, &auth)).await {
                Ok(nodes) => {
                    let roots: Vec<i32> = nodes.iter().filter(|n| n.depth == 0).map(|n| n.pid).collect();
                    let mut waiting: Vec<i32> = nodes
                        .iter()
                        .filter(|n| !n.blocked_by.is_empty())
                        .map(|n| n.pid)
                        .collect();
                    waiting.sort_unstable();
                    waiting.dedup();
                    LocksOut {
                        reach: Reach::up(&server, &r, t),
                        waiting: i32::try_from(waiting.len()).unwrap_or(i32::MAX),
                        roots,
                        nodes,
                    }
                }
                Err(e) => empty(Reach::down(&server, &e)),
            },
        ))
    }

    /// Replication: on a primary each standby with its positions and lag in bytes and seconds; on a
    /// standby its WAL receiver and replay delay; on both the replication slots.
    #[oai(path = "/servers/:name/replication", method = "get")]
    async fn replication(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<ReplicationOut>> {
        let server = server_by_name(&state, &name).await?;
        let empty = |reach| ReplicationOut {
            reach,
            role: None,
            current_lsn: None,
            standbys: Vec::new(),
            wal_receiver: None,
            slots: Vec::new(),
        };
        let (r, t) = match connect(&state, &server).await {
            Ok(c) => c,
            Err(reach) => return Ok(Json(empty(reach))),
        };
        Ok(Json(match replication::read(&r).await {
            Ok(rep) => ReplicationOut {
                reach: Reach::up(&server, &r, t),
                role: Some(if rep.in_recovery { "standby" } else { "primary" }.into()),
                current_lsn: rep.current_lsn,
                standbys: rep.standbys,
                wal_receiver: rep.wal_receiver,
                slots: rep.slots,
            },
            Err(e) => empty(Reach::down(&server, &e)),
        }))
    }

    /// Wraparound: each database's `age(datfrozenxid)` and `mxid_age(datminmxid)` against the 2^31
    /// limit, and who holds the oldest xmin (a session, a prepared transaction, a replication slot,
    /// a standby's feedback).
    #[oai(path = "/servers/:name/wraparound", method = "get")]
    async fn wraparound(
        &self,
        state: Data<&AppState>,
        _auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<WraparoundOut>> {
        let server = server_by_name(&state, &name).await?;
        let empty = |reach| WraparoundOut {
            reach,
            autovacuum_freeze_max_age: None,
            autovacuum_multixact_freeze_max_age: None,
            vacuum_failsafe_age: None,
            databases: Vec::new(),
            oldest_xmin_holder: None,
            holders: Vec::new(),
        };
        let (r, t) = match connect(&state, &server).await {
            Ok(c) => c,
            Err(reach) => return Ok(Json(empty(reach))),
        };
        Ok(Json(match wraparound::read(&r).await {
            Ok(w) => WraparoundOut {
                reach: Reach::up(&server, &r, t),
                autovacuum_freeze_max_age: w.autovacuum_freeze_max_age,
                autovacuum_multixact_freeze_max_age: w.autovacuum_multixact_freeze_max_age,
                vacuum_failsafe_age: w.vacuum_failsafe_age,
                databases: w.databases,
                oldest_xmin_holder: w.holders.first().cloned(),
                holders: w.holders,
            },
            Err(e) => empty(Reach::down(&server, &e)),
        }))
    }

    /// Progress of running VACUUM, ANALYZE, CREATE INDEX and CLUSTER / VACUUM FULL: phase and share
    /// done.
    #[oai(path = "/servers/:name/progress", method = "get")]
    async fn progress(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        name: Path<String>,
    ) -> ApiResult<Json<ProgressOut>> {
        let server = server_by_name(&state, &name).await?;
        let (r, t) = match connect(&state, &server).await {
            Ok(c) => c,
            Err(reach) => {
                return Ok(Json(ProgressOut {
                    reach,
                    commands: Vec::new(),
                }));
            }
        };
        Ok(Json(
            match progress::list(&r, state.cfg.api.activity_query_chars, texts_for(&state, &auth)).await {
                Ok(commands) => ProgressOut {
                    reach: Reach::up(&server, &r, t),
                    commands,
                },
                Err(e) => ProgressOut {
                    reach: Reach::down(&server, &e),
                    commands: Vec::new(),
                },
            },
        ))
    }

    /// Cancel the query of one backend (admin, operator): `pg_cancel_backend`, only if the backend
    /// with that pid still started at `backend_start`. Every attempt is audited (`backend_cancel`).
    #[oai(path = "/servers/:name/activity/:pid/cancel", method = "post")]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        pid: Path<i32>,
        body: JsonBody<SignalIn>,
    ) -> ApiResult<Json<SignalOut>> {
        signal(&state, req, &auth, &name, pid.0, body.0, signals::Signal::Cancel).await
    }

    /// Terminate one backend (admin, operator): `pg_terminate_backend`, only if the backend with
    /// that pid still started at `backend_start`. Every attempt is audited (`backend_terminate`).
    #[oai(path = "/servers/:name/activity/:pid/terminate", method = "post")]
    async fn terminate(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: Auth,
        name: Path<String>,
        pid: Path<i32>,
        body: JsonBody<SignalIn>,
    ) -> ApiResult<Json<SignalOut>> {
        signal(
            &state,
            req,
            &auth,
            &name,
            pid.0,
            body.0,
            signals::Signal::Terminate,
        )
        .await
    }
}

/// The one implementation of both signals: policy checks, the signal, the audit event.
async fn signal(
    state: &AppState,
    req: &Request,
    auth: &Auth,
    name: &str,
    pid: i32,
    body: SignalIn,
    s: signals::Signal,
) -> ApiResult<Json<SignalOut>> {
    let ev = match s {
        signals::Signal::Cancel => event::BACKEND_CANCEL,
        signals::Signal::Terminate => event::BACKEND_TERMINATE,
    };
    let actor = request_actor(req, Some(&auth.0.login));
    let audit = |outcome: String, target: Option<&signals::Target>| {
        let mut d = format!("server {name}, pid {pid}");
        if let Some(t) = target {
            d.push_str(&format!(
                " (user {}, database {})",
                t.user.as_deref().unwrap_or("?"),
                t.database.as_deref().unwrap_or("?")
            ));
        }
        d.push_str(&format!(": {outcome}"));
        if let Some(q) = target.and_then(|t| t.query.as_deref()) {
            d.push_str(&format!("; query: {q}"));
        }
        d
    };
    if auth.0.role < Role::Operator {
        let detail = format!("{} needs the operator or admin role", s.as_str());
        record(
            state,
            ev,
            &actor,
            Some(&audit(format!("refused: {detail}"), None)),
        )
        .await;
        return Err(ApiError::forbidden(detail));
    }
    if let Err(detail) = signals::allowed(&state.cfg.api.backend_signals, s) {
        record(
            state,
            ev,
            &actor,
            Some(&audit(format!("refused: {detail}"), None)),
        )
        .await;
        return Err(ApiError::forbidden(detail));
    }
    let server = server_by_name(state, name).await?;
    let sent = match activity::open(state, &server).await {
        Ok(r) => signals::send(&r, s, pid, body.backend_start).await,
        Err(e) => Err(e),
    };
    let done = match sent {
        Ok(d) => d,
        Err(e) => {
            let message = format!("server {name} did not answer ({}); nothing was sent", e.message);
            record(
                state,
                ev,
                &actor,
                Some(&audit(format!("unreachable: {}", e.message), None)),
            )
            .await;
            return Ok(Json(SignalOut {
                server: server.name.clone(),
                pid,
                signal: s.as_str().into(),
                outcome: OutcomeOut::Unreachable,
                message,
                user: None,
                database: None,
                application: None,
                query: None,
            }));
        }
    };
    let (outcome, message) = match done.outcome {
        signals::Outcome::Signalled => (
            OutcomeOut::Signalled,
            match s {
                signals::Signal::Cancel => format!("cancel sent to backend {pid}"),
                signals::Signal::Terminate => format!("terminate sent to backend {pid}"),
            },
        ),
        signals::Outcome::Gone => (
            OutcomeOut::Gone,
            format!(
                "no backend {pid} started at {}: it has ended (or the pid belongs to another session now); nothing was sent",
                body.backend_start.to_rfc3339()
            ),
        ),
        signals::Outcome::NotPermitted => (
            OutcomeOut::NotPermitted,
            format!(
                "the monitoring role may not signal backend {pid}: {}. Grant it pg_signal_backend (GRANT pg_signal_backend TO <role>); a superuser's backends can only be signalled by a superuser",
                done.reason.as_deref().unwrap_or("permission denied")
            ),
        ),
    };
    let target = (done.outcome != signals::Outcome::Gone).then_some(&done.target);
    record(
        state,
        ev,
        &actor,
        Some(&audit(done.outcome.as_str().to_string(), target)),
    )
    .await;
    Ok(Json(SignalOut {
        server: server.name.clone(),
        pid,
        signal: s.as_str().into(),
        outcome,
        message,
        user: done.target.user,
        database: done.target.database,
        application: done.target.application,
        query: done.target.query,
    }))
}
