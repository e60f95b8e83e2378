//! `pg_database_size` of every connectable database, every sizes slot (statement timeout
//! `collector.size_statement_timeout_secs`).

use super::{Collected, Cx, Family, col, reason};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::remote;
use pgmon_shared::store::stats::DbSizeRow;

pub struct Sizes;

impl Family for Sizes {
    fn name(&self) -> &'static str {
        "sizes"
    }

    fn task(&self) -> Task {
        Task::Sizes
    }

    /// One statement per database: on a cluster with many objects one slow database then costs only
    /// its own statement, not the others'. A database that fails is named; the others are kept.
    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let (client, _) = cx.pg()?;
            let dbs = cx
                .query(
                    "SELECT oid::bigint, datname::text FROM pg_database WHERE datallowconn ORDER BY oid",
                    &[],
                )
                .await?;
            let mut rows = Vec::new();
            let mut failed = Vec::new();
            for r in &dbs {
                let oid: i64 = col(r, 0)?;
                let name: String = col(r, 1)?;
                let size = remote::call(
                    cx.opts.call_deadline(),
                    client.query_one("SELECT pg_database_size($1::bigint::oid)", &[&oid]),
                )
                .await
                .map_err(|e| reason(&e))
                .and_then(|row| col::<i64>(&row, 0));
                match size {
                    Ok(size_bytes) => rows.push(DbSizeRow {
                        server_id: cx.server.id(),
                        slot: cx.slot,
                        datname: name,
                        collected_at: Utc::now(),
                        size_bytes,
                    }),
                    Err(e) => {
                        tracing::warn!(server = %cx.server.row.name, database = %name, error = %e, "pg_database_size failed");
                        failed.push(format!("size of {name:?}: {e}"));
                    }
                }
            }
            if rows.is_empty() && !failed.is_empty() {
                return Err(failed.join(", "));
            }
            Ok(vec![Rows::DbSize(rows)])
        })
    }
}
