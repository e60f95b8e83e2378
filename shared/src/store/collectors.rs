//! Collector bookkeeping: instances and their heartbeats, the claims that split work between several
//! collectors, and the `databases` inventory.
//!
//! A claim is the row (server, task, slot) in `collector_claims`; its primary key makes it exclusive.
//! A claim held by an instance that stopped, or whose heartbeat is older than `stale_after`, may be
//! taken over: that is how the servers of a dead collector move to the others, and how a `once` run
//! redoes a slot a finished run already took. Snapshot writes are idempotent, so a takeover never
//! duplicates rows.
//!
//! Liveness (`pgmon_collector_live`, migration 0013) is one SQL definition for claims and affinity:
//! not stopped, heartbeat fresh, and the instance's advisory lock held. The lock lives on the
//! process's own store session, so a process killed with -9 is known dead at once (its claims can be
//! taken over by its restart), not only after its heartbeat goes stale.
//!
//! Affinity: a server's slots go to one live collector, chosen by rendezvous hashing ([`owner`]) of
//! (server, instance) over the live instances. Deltas that need the previous slot (statements) then
//! find it in that collector's memory, and when an instance joins or leaves only the servers whose
//! owner changes move (about 1/n of them).

use super::Result;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

/// Class (first key) of the instances' advisory locks: 'pgmo'. Migration 0013 names it too.
pub const LOCK_CLASS: i32 = 0x7067_6d6f;

/// Second key of `instance`'s advisory lock: 31 bits of its id (non-negative, so that it compares
/// with `pg_locks.objid` as an oid). A collision only makes a dead instance look alive until its
/// heartbeat goes stale.
pub fn lock_key(instance: Uuid) -> i32 {
    let b = instance.as_bytes();
    i32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]])
}

/// Takes `instance`'s advisory lock on `conn`, which must then stay open as long as the process
/// lives. False when another session holds it (a key collision).
pub async fn lock_instance(conn: &mut PgConnection, instance: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(lock_key(instance))
        .fetch_one(&mut *conn)
        .await?)
}

/// Registers (or re-registers, after the store came back) a collector instance, with the key of the
/// advisory lock it holds (see [`lock_instance`]).
pub async fn register_instance(pool: &PgPool, id: Uuid, host: &str, pid: u32, version: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO collector_instances (instance_id, host, pid, version, lock_key) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (instance_id) DO UPDATE SET last_seen_at = now(), stopped_at = NULL",
    )
    .bind(id)
    .bind(host)
    .bind(i32::try_from(pid).unwrap_or(i32::MAX))
    .bind(version)
    .bind(lock_key(id))
    .execute(pool)
    .await?;
    Ok(())
}

/// The instances alive now (see the module docs), in no particular order.
pub async fn live_instances(pool: &PgPool, stale_after: Duration) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT instance_id FROM collector_instances
         WHERE pgmon_collector_live(stopped_at, last_seen_at, lock_key, $1)",
    )
    .bind(stale_after.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// Whether another instance that is still alive held `server_id`'s claim of (`task`, `slot`): then
/// it may still hand over what it kept of that slot.
pub async fn held_by_other_live(
    pool: &PgPool,
    me: Uuid,
    server_id: i64,
    task: &str,
    slot: DateTime<Utc>,
    stale_after: Duration,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM collector_claims c JOIN collector_instances i USING (instance_id)
                        WHERE c.server_id = $1 AND c.task = $2 AND c.slot = $3 AND c.instance_id <> $4
                          AND pgmon_collector_live(i.stopped_at, i.last_seen_at, i.lock_key, $5))",
    )
    .bind(server_id)
    .bind(task)
    .bind(slot)
    .bind(me)
    .bind(stale_after.as_secs_f64())
    .fetch_one(pool)
    .await?)
}

/// SplitMix64's finaliser: a cheap, well-mixed, stable 64-bit hash step (std's hashers promise no
/// stability across releases, and every collector version must agree on owners).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Rendezvous weight of (server, instance).
fn weight(server_id: i64, instance: Uuid) -> u64 {
    let (hi, lo) = instance.as_u64_pair();
    mix(mix(hi ^ mix(lo)) ^ server_id as u64)
}

/// The instance among `instances` that owns `server_id` (highest rendezvous weight; ties, which need
/// a 64-bit collision, go to the larger id). `None` for no instances.
pub fn owner(server_id: i64, instances: &[Uuid]) -> Option<Uuid> {
    instances
        .iter()
        .copied()
        .max_by_key(|i| (weight(server_id, *i), *i))
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
    Ok(
        claim_with(pool, instance, task, slot, server_ids, stale_after, false)
            .await?
            .0,
    )
}

/// [`claim`], and how many of the claims were taken over from a collector that is gone; with
/// `force`, claims held by live instances are taken too (`pgmon-collector
/// once`: an operator asked for this slot now).
pub async fn claim_with(
    pool: &PgPool,
    instance: Uuid,
    task: &str,
    slot: DateTime<Utc>,
    server_ids: &[i64],
    stale_after: Duration,
    force: bool,
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
             WHERE c.instance_id = excluded.instance_id OR $6
                OR NOT EXISTS (SELECT 1 FROM collector_instances i
                               WHERE i.instance_id = c.instance_id
                                 AND pgmon_collector_live(i.stopped_at, i.last_seen_at, i.lock_key, $5))
         RETURNING server_id,
                   coalesce((SELECT b.instance_id <> $4 FROM before b WHERE b.server_id = c.server_id), false)",
    )
    .bind(&ids)
    .bind(task)
    .bind(slot)
    .bind(instance)
    .bind(stale_after.as_secs_f64())
    .bind(force)
    .fetch_all(pool)
    .await?;
    let taken = rows.iter().filter(|(_, t)| *t).count();
    Ok((rows.into_iter().map(|(id, _)| id).collect(), taken))
}

/// Deletes claims of slots before `before`, instances stopped or silent since then, and baselines
/// saved before then that nobody picked up.
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
    let c = sqlx::query("DELETE FROM collector_baselines WHERE saved_at < $1")
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(a + b + c)
}

/// Saves per-server state for whichever collector next collects the server: (server, family, slot,
/// data). A later save of the same server and family replaces the earlier one.
pub async fn save_baselines(pool: &PgPool, rows: &[(i64, &str, DateTime<Utc>, Vec<u8>)]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(
        "INSERT INTO collector_baselines AS b (server_id, family, slot, data)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::bytea[])
         ON CONFLICT (server_id, family) DO UPDATE
             SET slot = excluded.slot, data = excluded.data, saved_at = now()
             WHERE b.slot <= excluded.slot",
    )
    .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>())
    .execute(pool)
    .await?
    .rows_affected())
}

/// The state last saved for `server_id` and `family`: its slot and data.
pub async fn load_baseline(
    pool: &PgPool,
    server_id: i64,
    family: &str,
) -> Result<Option<(DateTime<Utc>, Vec<u8>)>> {
    Ok(
        sqlx::query_as("SELECT slot, data FROM collector_baselines WHERE server_id = $1 AND family = $2")
            .bind(server_id)
            .bind(family)
            .fetch_optional(pool)
            .await?,
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn instances(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    fn shares(servers: i64, inst: &[Uuid]) -> HashMap<Uuid, usize> {
        let mut m = HashMap::new();
        for s in 1..=servers {
            *m.entry(owner(s, inst).expect("owner")).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn owners_are_stable_and_independent_of_order() {
        let inst = instances(4);
        let mut rev = inst.clone();
        rev.reverse();
        for s in 1..=1000 {
            assert_eq!(owner(s, &inst), owner(s, &rev));
            assert_eq!(owner(s, &inst), owner(s, &inst));
        }
        assert_eq!(owner(1, &[]), None);
        assert_eq!(owner(7, &inst[..1]), Some(inst[0]));
    }

    #[test]
    fn servers_are_balanced_within_a_tolerance() {
        for n in [2, 3, 4, 8] {
            for _ in 0..20 {
                let inst = instances(n);
                let m = shares(10_000, &inst);
                let fair = 10_000 / n;
                // Binomial spread: 5 standard deviations (a 1-in-a-million miss per instance).
                let p = 1.0 / n as f64;
                let tolerance = 5.0 * (10_000.0 * p * (1.0 - p)).sqrt();
                assert_eq!(m.len(), n, "every instance gets servers");
                for (i, c) in &m {
                    assert!(
                        (*c as f64 - fair as f64).abs() <= tolerance,
                        "{n} instances: {i} has {c}, fair is {fair}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_leaving_instance_moves_only_its_own_servers() {
        let inst = instances(4);
        let gone = inst[2];
        let left: Vec<Uuid> = inst.iter().copied().filter(|i| *i != gone).collect();
        let mut moved = 0;
        for s in 1..=10_000 {
            let before = owner(s, &inst).expect("owner");
            let after = owner(s, &left).expect("owner");
            if before == gone {
                moved += 1;
                assert_ne!(after, gone);
            } else {
                assert_eq!(before, after, "server {s} moved without need");
            }
        }
        assert!((2000..3000).contains(&moved), "{moved}");
        // A joining instance takes servers only from the others, about 1/(n+1) of them.
        let mut more = inst.clone();
        more.push(Uuid::new_v4());
        let joined = more[4];
        let mut taken = 0;
        for s in 1..=10_000 {
            let after = owner(s, &more).expect("owner");
            if after == joined {
                taken += 1;
            } else {
                assert_eq!(Some(after), owner(s, &inst));
            }
        }
        assert!((1600..2400).contains(&taken), "{taken}");
    }

    #[test]
    fn lock_keys_are_non_negative() {
        for _ in 0..1000 {
            assert!(lock_key(Uuid::new_v4()) >= 0);
        }
        assert_eq!(lock_key(Uuid::from_u128(u128::MAX)), i32::MAX);
    }
}
