//! The collected metric families, one module each behind [`Family`], all listed in [`ALL`]. A task
//! (a schedule) runs the families registered for it on one connection per server, and their rows
//! become one snapshot written in one transaction.
//!
//! A new family is a new module here (what it queries per server version, the rows it returns, the
//! task whose interval it follows), a line in [`ALL`], and its rows' variant and table in the store.

pub mod activity;
pub mod archiver;
pub mod checkpointer;
pub mod databases;
pub mod disk;
pub mod io;
pub mod replication;
pub mod sizes;
pub mod stat_database;
pub mod statements;
pub mod wal;

use crate::Ctx;
use crate::servers::Server;
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use pgmon_shared::remote::{self, RemoteError, SessionOpts};
use pgmon_shared::version::Version;
use tokio_postgres::Client;

/// What the server says about itself, read once per task run.
#[derive(Debug, Clone, Copy)]
pub struct ServerInfo {
    pub version: Version,
    pub postmaster_start: Option<DateTime<Utc>>,
    pub in_recovery: bool,
}

pub async fn server_info(client: &Client, opts: &SessionOpts) -> Result<ServerInfo, RemoteError> {
    let row = remote::call(
        opts.call_deadline(),
        client.query_one(
            "SELECT current_setting('server_version_num')::int, pg_postmaster_start_time(), pg_is_in_recovery()",
            &[],
        ),
    )
    .await?;
    let get = |e: tokio_postgres::Error| RemoteError::from_pg(&e);
    Ok(ServerInfo {
        version: Version(row.try_get(0).map_err(get)?),
        postmaster_start: row.try_get(1).map_err(get)?,
        in_recovery: row.try_get(2).map_err(get)?,
    })
}

/// Everything a family needs to collect one server's slot.
pub struct Cx<'a> {
    pub ctx: &'a Ctx,
    pub server: &'a Server,
    pub slot: DateTime<Utc>,
    /// The task's connection to the server (families that need none also run without it).
    pub client: Option<&'a Client>,
    pub info: Option<ServerInfo>,
    pub opts: &'a SessionOpts,
}

impl Cx<'_> {
    /// The connection and the server's facts; only called by families that need a connection.
    pub fn pg(&self) -> Result<(&Client, ServerInfo), String> {
        match (self.client, self.info) {
            (Some(c), Some(i)) => Ok((c, i)),
            _ => Err("not connected".into()),
        }
    }

    /// Runs `sql` on the task's connection under the session's deadline.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, String> {
        let (client, _) = self.pg()?;
        remote::call(self.opts.call_deadline(), client.query(sql, params))
            .await
            .map_err(|e| reason(&e))
    }
}

/// What a family returns: its rows, or why it could not collect them (the server itself may be
/// fine: a failed family does not make a server down).
pub type Collected = Result<Vec<Rows>, String>;

pub trait Family: Send + Sync {
    /// Names the family in logs and in a run's list of failures.
    fn name(&self) -> &'static str;
    /// The task whose interval (and connection) the family rides.
    fn task(&self) -> Task;
    /// False for a family that reaches the server otherwise (disk usage over SSH).
    fn needs_connection(&self) -> bool {
        true
    }
    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected>;
}

/// Every family, in the order a task runs them.
pub static ALL: [&dyn Family; 11] = [
    &stat_database::StatDatabase,
    &checkpointer::Checkpointer,
    &wal::Wal,
    &archiver::Archiver,
    &io::Io,
    &statements::Statements,
    &sizes::Sizes,
    &disk::Disk,
    &databases::Databases,
    &activity::Activity,
    &replication::Replication,
];

pub fn reason(e: &RemoteError) -> String {
    format!("{}: {}", e.class.as_str(), e.message)
}

/// A column of a row, with a decoding failure as a reason.
pub fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, String> {
    row.try_get(i).map_err(|e| reason(&RemoteError::from_pg(&e)))
}
