//! Collector bookkeeping: instances and their heartbeats, the claims that split work between several
//! collectors, and the `databases` inventory.
//!
//! A claim is the row (server, task, slot) in `collector_claims`; its primary key makes it exclusive.
//! A claim held by an instance that stopped, or whose heartbeat is older than `stale_after`, may be
//! taken over: that is how the servers of a dead collector move to the others, and how a `once` run
//! redoes a slot a finished run already took. Snapshot writes are idempotent, so a takeover never
//! duplicates rows.

use super::Result;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

/// Registers (or re-registers, after the store came back) a collector instance.
pub async fn register_instance(pool: &PgPool, id: Uuid, host: &str, pid: u32, version: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO collector_instances (instance_id, host, pid, version) VALUES ($1, $2, $3, $4)
         ON CONFLICT (instance_id) DO UPDATE SET last_seen_at = now(), stopped_at = NULL",
    )
    .bind(id)
    .bind(host)
    .bind(i32::try_from(pid).unwrap_or(i32::MAX))
    .bind(version)
    .execute(pool)
    .await?;
    Ok(())
}

/// Refreshes `last_seen_at`; false when the row is gone (then register again).
pub async fn heartbeat(pool: &PgPool, id: Uuid, counters: serde_json::Value) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE collector_instances SET last_seen_at = now(), counters = $2 WHERE instance_id = $1",
    )
    .bind(id)
    .bind(counters)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Records the last run of `task`: `outcome` is a JSON object (last_run, outcome, servers, rows, ...).
pub async fn record_task(pool: &PgPool, id: Uuid, task: &str, outcome: serde_json::Value) -> Result<()> {
    sqlx::query(
        "UPDATE collector_instances SET tasks = tasks || jsonb_build_object($2::text, $3::jsonb),
             last_seen_at = now()
         WHERE instance_id = $1",
    )
    .bind(id)
    .bind(task)
    .bind(outcome)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn mark_stopped(pool: &PgPool, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE collector_instances SET stopped_at = now(), last_seen_at = now() WHERE instance_id = $1",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// One collector process as it last reported itself.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Heartbeat {
    pub instance_id: Uuid,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub tasks: serde_json::Value,
    /// Running totals: see migration 0012.
    pub counters: serde_json::Value,
}

/// Collectors that are running or stopped within the last day, newest first.
pub async fn heartbeats(pool: &PgPool) -> Result<Vec<Heartbeat>> {
    Ok(sqlx::query_as(
        "SELECT instance_id, host, pid, version, started_at, last_seen_at, stopped_at, tasks, counters
         FROM collector_instances
         WHERE stopped_at IS NULL OR stopped_at > now() - interval '1 day'
         ORDER BY last_seen_at DESC LIMIT 100",
    )
    .fetch_all(pool)
    .await?)
}

/// Claims (server, task, slot) for each of `server_ids`; returns the ids this instance now holds.
/// `server_ids` may contain duplicates; they are removed first.
pub async fn claim(
    pool: &PgPool,
    instance: Uuid,
    task: &str,
    slot: DateTime<Utc>,
    server_ids: &[i64],
    stale_after: Duration,
) -> Result<Vec<i64>> {
    Ok(claim_counted(pool, instance, task, slot, server_ids, stale_after)
        .await?
        .0)
}

/// [`claim`], and how many of the claims were taken over from a collector that stopped answering.
pub async fn claim_counted(
    pool: &PgPool,
    instance: Uuid,
    task: &str,
    slot: DateTime<Utc>,
    server_ids: &[i64],
    stale_after: Duration,
) -> Result<(Vec<i64>, usize)> {
    let mut ids = server_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok((ids, 0));
    }
    // Sorted ids lock rows in one order, so two collectors claiming overlapping sets cannot deadlock.
    let rows: Vec<(i64, bool)> = sqlx::query_as(
        "WITH before AS (
             SELECT server_id, instance_id FROM collector_claims
             WHERE task = $2 AND slot = $3 AND server_id = ANY($1))
         INSERT INTO collector_claims AS c (server_id, task, slot, instance_id)
         SELECT id, $2, $3, $4 FROM unnest($1::bigint[]) AS id ORDER BY id
         ON CONFLICT (server_id, task, slot) DO UPDATE
             SET instance_id = excluded.instance_id, claimed_at = now()
             WHERE c.instance_id = excluded.instance_id
                OR NOT EXISTS (SELECT 1 FROM collector_instances i
                               WHERE i.instance_id = c.instance_id AND i.stopped_at IS NULL
                                 AND i.last_seen_at > now() - make_interval(secs => $5))
         RETURNING server_id,
                   coalesce((SELECT b.instance_id <> $4 FROM before b WHERE b.server_id = c.server_id), false)",
    )
    .bind(&ids)
    .bind(task)
    .bind(slot)
    .bind(instance)
    .bind(stale_after.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let taken = rows.iter().filter(|(_, t)| *t).count();
    Ok((rows.into_iter().map(|(id, _)| id).collect(), taken))
}

/// Deletes claims of slots before `before` and instances stopped or silent since then.
pub async fn purge_before(pool: &PgPool, before: DateTime<Utc>) -> Result<u64> {
    let a = sqlx::query("DELETE FROM collector_claims WHERE slot < $1")
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected();
    let b = sqlx::query("DELETE FROM collector_instances WHERE last_seen_at < $1")
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(a + b)
}

/// One row of `pg_database` as the collector reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseInfo {
    pub oid: i64,
    pub name: String,
    pub owner: Option<String>,
    pub encoding: Option<String>,
    pub datcollate: Option<String>,
    pub datallowconn: Option<bool>,
    pub datistemplate: Option<bool>,
    pub frozen_xid_age: Option<i64>,
    /// Modification time of the database's `PG_VERSION`, when the monitoring role may read it.
    pub created_at: Option<DateTime<Utc>>,
}

/// Applies the list of databases `server_id` had at `seen_at`: new (oid, name) pairs get a row with
/// `first_seen`, known ones their `last_seen` and attributes, and rows missing from the list are
/// marked dropped (kept, never deleted). A database that reappears under the same oid and name is
/// undropped; one that comes back with another oid is a new row.
pub async fn apply_databases(
    conn: &mut PgConnection,
    server_id: i64,
    seen_at: DateTime<Utc>,
    dbs: &[DatabaseInfo],
) -> Result<u64> {
    let n = sqlx::query(
        "INSERT INTO databases (server_id, oid, name, owner, encoding, datcollate, datallowconn,
             datistemplate, frozen_xid_age, created_at, first_seen, last_seen)
         SELECT $1, u.*, $10, $10 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::bool[], $8::bool[], $9::bigint[], $11::timestamptz[]) AS u
         ON CONFLICT (server_id, oid, name) DO UPDATE SET
             owner = excluded.owner, encoding = excluded.encoding, datcollate = excluded.datcollate,
             datallowconn = excluded.datallowconn, datistemplate = excluded.datistemplate,
             frozen_xid_age = excluded.frozen_xid_age,
             created_at = coalesce(excluded.created_at, databases.created_at),
             last_seen = greatest(databases.last_seen, excluded.last_seen), dropped_at = NULL",
    )
    .bind(server_id)
    .bind(dbs.iter().map(|d| d.oid).collect::<Vec<_>>())
    .bind(dbs.iter().map(|d| d.name.clone()).collect::<Vec<_>>())
    .bind(dbs.iter().map(|d| d.owner.clone()).collect::<Vec<_>>())
    .bind(dbs.iter().map(|d| d.encoding.clone()).collect::<Vec<_>>())
    .bind(dbs.iter().map(|d| d.datcollate.clone()).collect::<Vec<_>>())
    .bind(dbs.iter().map(|d| d.datallowconn).collect::<Vec<_>>())
    .bind(dbs.iter().map(|d| d.datistemplate).collect::<Vec<_>>())
    .bind(dbs.iter().map(|d| d.frozen_xid_age).collect::<Vec<_>>())
    .bind(seen_at)
    .bind(dbs.iter().map(|d| d.created_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE databases SET dropped_at = $2
         WHERE server_id = $1 AND dropped_at IS NULL AND last_seen < $2",
    )
    .bind(server_id)
    .bind(seen_at)
    .execute(&mut *conn)
    .await?;
    Ok(n)
}
