//! The database inventory (`pg_database`), every db_info slot.

use super::{Collected, Cx, Family, col};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::store::collectors::DatabaseInfo;

pub struct Databases;

impl Family for Databases {
    fn name(&self) -> &'static str {
        "databases"
    }

    fn task(&self) -> Task {
        Task::DbInfo
    }

    /// Every database with its attributes. Its creation time is the modification time of
    /// `base/<oid>/PG_VERSION` (what the original backend showed), read only where the monitoring
    /// role may call `pg_stat_file` (a superuser, or an explicit GRANT); otherwise it stays unknown.
    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let rows = cx
                .query(
                    "SELECT d.oid::bigint, d.datname::text, pg_get_userbyid(d.datdba)::text,
                            pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datallowconn,
                            d.datistemplate, age(d.datfrozenxid)::bigint,
                            CASE WHEN has_function_privilege('pg_catalog.pg_stat_file(text, boolean)', 'EXECUTE')
                                 THEN (pg_stat_file('base/' || d.oid || '/PG_VERSION', true)).modification END
                     FROM pg_database d ORDER BY d.oid",
                    &[],
                )
                .await?;
            let mut dbs = Vec::with_capacity(rows.len());
            for r in &rows {
                dbs.push(DatabaseInfo {
                    oid: col(r, 0)?,
                    name: col(r, 1)?,
                    owner: col(r, 2)?,
                    encoding: col(r, 3)?,
                    datcollate: col(r, 4)?,
                    datallowconn: col(r, 5)?,
                    datistemplate: col(r, 6)?,
                    frozen_xid_age: col(r, 7)?,
                    created_at: col(r, 8)?,
                });
            }
            Ok(vec![Rows::Databases {
                server_id: cx.server.id(),
                seen_at: Utc::now(),
                dbs,
            }])
        })
    }
}
