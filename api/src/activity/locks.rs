//! Lock waits as a tree: the sessions that block others without waiting themselves (the root
//! blockers) first, the sessions waiting on them beneath, from `pg_blocking_pids`.

use super::{Remote, Version, col, is_pgmon, query, relation_sql};
use chrono::{DateTime, Utc};
use pgmon_shared::config::QueryTextView;
use pgmon_shared::redact::show_query;
use pgmon_shared::remote::RemoteError;
use poem_openapi::Object;
use std::collections::{BTreeMap, HashSet};

/// The lock a session waits for.
#[derive(Debug, Clone, Object)]
pub struct WaitedLock {
    /// `relation`, `tuple`, `transactionid`, `virtualxid`, `advisory`, ...
    pub locktype: Option<String>,
    /// `AccessExclusiveLock`, `ShareLock`, ...
    pub mode: Option<String>,
    /// The relation waited on (for a row or transaction wait, the relation whose row it is, as far as
    /// the waiter's other locks tell); a name in the connected database, `oid N` elsewhere.
    pub relation: Option<String>,
    pub transactionid: Option<String>,
}

/// One session in the tree, in display order (depth-first).
#[derive(Debug, Clone, Object)]
pub struct LockNode {
    pub pid: i32,
    /// 0 for a root blocker.
    pub depth: i32,
    /// The session it waits for at this place in the tree.
    pub parent_pid: Option<i32>,
    /// Every session it waits for (a waiter under several blockers appears under each).
    pub blocked_by: Vec<i32>,
    /// Sessions waiting for this one directly.
    pub blocking: i32,
    /// Sessions waiting for this one directly or through others.
    pub blocking_total: i32,
    pub database: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    pub state: Option<String>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub backend_start: Option<DateTime<Utc>>,
    /// What it waits for; `null` for a root blocker.
    pub waiting_for: Option<WaitedLock>,
    /// How long it has waited (PostgreSQL 14+: from `pg_locks.waitstart`; before, since its state
    /// last changed).
    pub waiting_secs: Option<f64>,
    pub xact_secs: Option<f64>,
    pub query_secs: Option<f64>,
    /// Password literals redacted; for viewers as `api.viewer_query_text` says.
    pub query: Option<String>,
    pub pgmon: bool,
}

fn sql(v: Version) -> String {
    let wait_since = if v.has(14) {
        "coalesce(l.waitstart, a.state_change)"
    } else {
        "a.state_change"
    };
    let rel = relation_sql("l.database", "l.relation");
    let held_rel = relation_sql("t.database", "t.relation");
    format!(
        "WITH waiting AS (
             SELECT pid, pg_blocking_pids(pid) AS blocked_by FROM pg_stat_activity
             WHERE wait_event_type = 'Lock'),
         involved AS (
             SELECT pid FROM waiting UNION SELECT unnest(blocked_by) FROM waiting)
         SELECT a.pid, w.blocked_by, a.datname::text, a.usename::text, a.application_name, a.state,
                a.wait_event_type, a.wait_event, a.backend_start,
                extract(epoch FROM now() - a.xact_start)::float8,
                extract(epoch FROM now() - a.query_start)::float8,
                l.locktype, l.mode, coalesce({rel}, (
                    SELECT {held_rel} FROM pg_locks t
                    WHERE t.pid = a.pid AND t.granted AND t.locktype = 'tuple' LIMIT 1)),
                l.transactionid::text,
                CASE WHEN w.pid IS NOT NULL THEN extract(epoch FROM now() - {wait_since})::float8 END,
                left(a.query, $1)
         FROM involved i
         JOIN pg_stat_activity a ON a.pid = i.pid
         LEFT JOIN waiting w ON w.pid = a.pid
         LEFT JOIN LATERAL (
             SELECT * FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1) l ON true"
    )
}

/// The tree: root blockers (those blocking the most first), each followed by its waiters.
pub async fn tree(
    r: &Remote,
    query_chars: usize,
    texts: QueryTextView,
) -> Result<Vec<LockNode>, RemoteError> {
    let chars = i32::try_from(query_chars).unwrap_or(i32::MAX);
    let rows = query(r, &sql(r.version), &[&chars]).await?;
    let mut nodes: BTreeMap<i32, LockNode> = BTreeMap::new();
    for row in &rows {
        let blocked_by: Vec<i32> = col::<Option<Vec<i32>>>(row, 1)?.unwrap_or_default();
        let locktype: Option<String> = col(row, 11)?;
        let application: Option<String> = col(row, 4)?;
        let waiting_for = if blocked_by.is_empty() && locktype.is_none() {
            None
        } else {
            Some(WaitedLock {
                locktype,
                mode: col(row, 12)?,
                relation: col(row, 13)?,
                transactionid: col(row, 14)?,
            })
        };
        let pid: i32 = col(row, 0)?;
        nodes.insert(
            pid,
            LockNode {
                pid,
                depth: 0,
                parent_pid: None,
                blocked_by,
                blocking: 0,
                blocking_total: 0,
                database: col(row, 2)?,
                user: col(row, 3)?,
                pgmon: is_pgmon(application.as_deref()),
                application,
                state: col(row, 5)?,
                wait_event_type: col(row, 6)?,
                wait_event: col(row, 7)?,
                backend_start: col(row, 8)?,
                xact_secs: col(row, 9)?,
                query_secs: col(row, 10)?,
                waiting_for,
                waiting_secs: col(row, 15)?,
                query: show_query(texts, col::<Option<String>>(row, 16)?.as_deref()),
            },
        );
    }
    Ok(arrange(nodes))
}

/// Orders `nodes` depth-first from the root blockers; a wait cycle without a root (a deadlock the
/// server has not broken yet) is shown from its lowest pid.
fn arrange(mut nodes: BTreeMap<i32, LockNode>) -> Vec<LockNode> {
    let waiters_of = |nodes: &BTreeMap<i32, LockNode>, pid: i32| -> Vec<i32> {
        nodes
            .values()
            .filter(|n| n.blocked_by.contains(&pid))
            .map(|n| n.pid)
            .collect()
    };
    let pids: Vec<i32> = nodes.keys().copied().collect();
    for pid in &pids {
        let direct = waiters_of(&nodes, *pid);
        let mut seen: HashSet<i32> = HashSet::new();
        let mut stack = direct.clone();
        while let Some(p) = stack.pop() {
            if p != *pid && seen.insert(p) {
                stack.extend(waiters_of(&nodes, p));
            }
        }
        if let Some(n) = nodes.get_mut(pid) {
            n.blocking = i32::try_from(direct.len()).unwrap_or(i32::MAX);
            n.blocking_total = i32::try_from(seen.len()).unwrap_or(i32::MAX);
        }
    }
    let mut roots: Vec<i32> = nodes
        .values()
        .filter(|n| n.blocked_by.is_empty())
        .map(|n| n.pid)
        .collect();
    roots.sort_by_key(|p| (-nodes.get(p).map_or(0, |n| n.blocking_total), *p));
    let mut out = Vec::new();
    let mut placed: HashSet<i32> = HashSet::new();
    fn walk(
        nodes: &BTreeMap<i32, LockNode>,
        pid: i32,
        parent: Option<i32>,
        depth: i32,
        path: &mut Vec<i32>,
        out: &mut Vec<LockNode>,
        placed: &mut HashSet<i32>,
    ) {
        let Some(n) = nodes.get(&pid) else { return };
        let mut node = n.clone();
        node.depth = depth;
        node.parent_pid = parent;
        out.push(node);
        placed.insert(pid);
        path.push(pid);
        let mut waiters: Vec<&LockNode> = nodes.values().filter(|w| w.blocked_by.contains(&pid)).collect();
        waiters.sort_by(|a, b| {
            b.waiting_secs
                .unwrap_or(0.0)
                .total_cmp(&a.waiting_secs.unwrap_or(0.0))
                .then(a.pid.cmp(&b.pid))
        });
        for w in waiters {
            if !path.contains(&w.pid) {
                walk(nodes, w.pid, Some(pid), depth + 1, path, out, placed);
            }
        }
        path.pop();
    }
    for r in roots {
        walk(&nodes, r, None, 0, &mut Vec::new(), &mut out, &mut placed);
    }
    // Sessions only in cycles.
    let left: Vec<i32> = nodes.keys().filter(|p| !placed.contains(p)).copied().collect();
    for p in left {
        if !placed.contains(&p) {
            walk(&nodes, p, None, 0, &mut Vec::new(), &mut out, &mut placed);
        }
    }
    nodes.clear();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(pid: i32, blocked_by: &[i32]) -> LockNode {
        LockNode {
            pid,
            depth: 0,
            parent_pid: None,
            blocked_by: blocked_by.to_vec(),
            blocking: 0,
            blocking_total: 0,
            database: None,
            user: None,
            application: None,
            state: None,
            wait_event_type: None,
            wait_event: None,
            backend_start: None,
            waiting_for: None,
            waiting_secs: None,
            xact_secs: None,
            query_secs: None,
            query: None,
            pgmon: false,
        }
    }

    #[test]
    fn roots_first_then_their_waiters_and_cycles_are_shown_once() {
        let nodes: BTreeMap<i32, LockNode> = [
            node(10, &[]),
            node(11, &[10]),
            node(12, &[11]),
            node(20, &[]),
            node(21, &[20]),
            node(30, &[31]),
            node(31, &[30]),
        ]
        .into_iter()
        .map(|n| (n.pid, n))
        .collect();
        let out = arrange(nodes);
        let order: Vec<(i32, i32, Option<i32>)> =
            out.iter().map(|n| (n.pid, n.depth, n.parent_pid)).collect();
        assert_eq!(
            order,
            [
                (10, 0, None),
                (11, 1, Some(10)),
                (12, 2, Some(11)),
                (20, 0, None),
                (21, 1, Some(20)),
                (30, 0, None),
                (31, 1, Some(30)),
            ]
        );
        assert_eq!((out[0].blocking, out[0].blocking_total), (1, 2));
    }
}
