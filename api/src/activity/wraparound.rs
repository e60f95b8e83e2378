//! Transaction ID wraparound and the xmin horizon: how old each database's frozen XID and multixact
//! are against the 2^31 limit, and who holds the oldest xmin back (a session, a prepared
//! transaction, a replication slot, a standby's feedback), named.

use super::{Remote, Version, col, query};
use chrono::{DateTime, Utc};
use pgmon_shared::remote::RemoteError;
use poem_openapi::Object;

/// XIDs (and multixacts) an age may reach before the server refuses to assign new ones.
pub const LIMIT: f64 = 2_147_483_648.0;

#[derive(Debug, Clone, Object)]
pub struct DatabaseAge {
    pub database: String,
    /// `age(datfrozenxid)`.
    pub xid_age: i64,
    /// Share of the 2^31 limit, percent.
    pub xid_used_pct: f64,
    /// `mxid_age(datminmxid)`.
    pub mxid_age: i64,
    pub mxid_used_pct: f64,
    pub allows_connections: bool,
}

/// Something that holds the xmin horizon back. A standby's `hot_standby_feedback` shows as the
/// standby when it streams without a slot, and as its slot when it uses one (PostgreSQL keeps the
/// xmin on the slot then).
#[derive(Debug, Clone, Object)]
pub struct XminHolder {
    /// `session`, `prepared_transaction`, `replication_slot` or `standby`.
    pub kind: String,
    /// The pid (session), the GID (prepared transaction), the slot name, or the standby's
    /// application name.
    pub name: String,
    pub pid: Option<i32>,
    pub user: Option<String>,
    pub database: Option<String>,
    /// A session's or a standby's `application_name`.
    pub application: Option<String>,
    /// For a session, its state; for a slot, `active` or `inactive`; for a standby, its state.
    pub state: Option<String>,
    pub xmin: Option<String>,
    /// Transactions since its xmin.
    pub age: i64,
    /// Since when: the transaction's start, the prepare, the standby's connection.
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Wraparound {
    pub autovacuum_freeze_max_age: Option<i64>,
    pub autovacuum_multixact_freeze_max_age: Option<i64>,
    /// PostgreSQL 14+.
    pub vacuum_failsafe_age: Option<i64>,
    pub databases: Vec<DatabaseAge>,
    /// Oldest first (at most 20).
    pub holders: Vec<XminHolder>,
}

fn settings_sql(v: Version) -> String {
    let failsafe = if v.has(14) {
        "current_setting('vacuum_failsafe_age')::int8"
    } else {
        "NULL::int8"
    };
    format!(
        "SELECT current_setting('autovacuum_freeze_max_age')::int8,
                current_setting('autovacuum_multixact_freeze_max_age')::int8, {failsafe}"
    )
}

const DATABASES_SQL: &str =
    "SELECT datname::text, age(datfrozenxid)::int8, mxid_age(datminmxid)::int8, datallowconn
     FROM pg_database ORDER BY 2 DESC, 1";

/// Sessions hold the horizon back by their snapshot's xmin or their own XID, whichever is older;
/// walsenders are counted as standbys; pgmon's own sessions (this query, a status probe beside it)
/// hold it for milliseconds and are left out.
const HOLDERS_SQL: &str = "
    SELECT * FROM (
        SELECT 'session' AS kind, a.pid::text AS name, a.pid, a.usename::text, a.datname::text,
               a.application_name, a.state,
               coalesce(a.backend_xmin, a.backend_xid)::text AS xmin,
               greatest(age(a.backend_xmin), age(a.backend_xid))::int8 AS age, a.xact_start AS since
        FROM pg_stat_activity a
        WHERE (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
          AND a.backend_type <> 'walsender'
          AND a.application_name NOT IN ('pgmon-api', 'pgmon-collector')
        UNION ALL
        SELECT 'prepared_transaction', p.gid, NULL, p.owner::text, p.database::text, NULL, NULL,
               p.transaction::text, age(p.transaction)::int8, p.prepared
        FROM pg_prepared_xacts p
        UNION ALL
        SELECT 'replication_slot', s.slot_name::text, s.active_pid, NULL, s.database::text, NULL,
               CASE WHEN s.active THEN 'active' ELSE 'inactive' END,
               CASE WHEN age(s.catalog_xmin) > coalesce(age(s.xmin), -1) THEN s.catalog_xmin ELSE s.xmin END::text,
               greatest(age(s.xmin), age(s.catalog_xmin))::int8, NULL
        FROM pg_replication_slots s WHERE s.xmin IS NOT NULL OR s.catalog_xmin IS NOT NULL
        UNION ALL
        SELECT 'standby', coalesce(r.application_name, r.pid::text), r.pid, r.usename::text, NULL,
               r.application_name, r.state,
               r.backend_xmin::text, age(r.backend_xmin)::int8, r.backend_start
        FROM pg_stat_replication r WHERE r.backend_xmin IS NOT NULL
    ) h ORDER BY age DESC, kind, name LIMIT 20";

pub async fn read(r: &Remote) -> Result<Wraparound, RemoteError> {
    let s = query(r, &settings_sql(r.version), &[]).await?;
    let (freeze, mxid_freeze, failsafe) = match s.first() {
        Some(row) => (col(row, 0)?, col(row, 1)?, col(row, 2)?),
        None => (None, None, None),
    };
    let mut databases = Vec::new();
    for row in &query(r, DATABASES_SQL, &[]).await? {
        let xid_age: i64 = col(row, 1)?;
        let mxid_age: i64 = col(row, 2)?;
        databases.push(DatabaseAge {
            database: col(row, 0)?,
            xid_age,
            xid_used_pct: round2(xid_age as f64 / LIMIT * 100.0),
            mxid_age,
            mxid_used_pct: round2(mxid_age as f64 / LIMIT * 100.0),
            allows_connections: col(row, 3)?,
        });
    }
    let mut holders = Vec::new();
    for row in &query(r, HOLDERS_SQL, &[]).await? {
        holders.push(XminHolder {
            kind: col(row, 0)?,
            name: col(row, 1)?,
            pid: col(row, 2)?,
            user: col(row, 3)?,
            database: col(row, 4)?,
            application: col(row, 5)?,
            state: col(row, 6)?,
            xmin: col(row, 7)?,
            age: col::<Option<i64>>(row, 8)?.unwrap_or(0),
            since: col(row, 9)?,
        });
    }
    Ok(Wraparound {
        autovacuum_freeze_max_age: freeze,
        autovacuum_multixact_freeze_max_age: mxid_freeze,
        vacuum_failsafe_age: failsafe,
        databases,
        holders,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
