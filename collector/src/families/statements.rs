//! Top statements from `pg_stat_statements`, when the extension is installed in the server's
//! maintenance database, every stats slot.
//!
//! Cheap on servers with thousands of statements and hundreds of MB of query text: one query per
//! slot reads the counters through `pg_stat_statements(false)`, which leaves the text file alone;
//! texts are fetched only for statements entering the top list that this server's store has no
//! text for yet, and cut to 4 KiB on the server.
//!
//! What a statement spent in a slot is its counters minus those of the previous slot, kept in this
//! collector's memory per server (about 150 bytes per statement: ~1 MB for 5,000). Never negative,
//! never spiked: a statement absent from the previous snapshot (new, or evicted and back) or whose
//! calls went down counts from zero, a `pg_stat_statements_reset()` (seen in
//! `pg_stat_statements_info` from 14, or as every statement gone or lower before) does the same,
//! and a previous snapshot that is not the previous slot's (this collector restarted, or another
//! collector took the slots between) only becomes the new baseline: that slot stores nothing.

use super::{Collected, Cx, Family, col};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use pgmon_shared::redact::redact_sql;
use pgmon_shared::store::history::statements::{self as store, StatementRow, TextRow};
use pgmon_shared::store::system_log::{self, Level, NewEntry};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

pub struct Statements;

type Key = (i64, i64, i64, bool);

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    calls: i64,
    exec: f64,
    plan: f64,
    rows: i64,
    hit: i64,
    read: i64,
    dirtied: i64,
    written: i64,
    temp_read: i64,
    temp_written: i64,
    read_time: f64,
    write_time: f64,
    wal_bytes: Option<i64>,
}

impl Counters {
    /// What was spent since `prev`; `None` when some counter went down (the entry was reset).
    fn since(&self, prev: &Counters) -> Option<Counters> {
        let d = Counters {
            calls: self.calls - prev.calls,
            exec: self.exec - prev.exec,
            plan: self.plan - prev.plan,
            rows: self.rows - prev.rows,
            hit: self.hit - prev.hit,
            read: self.read - prev.read,
            dirtied: self.dirtied - prev.dirtied,
            written: self.written - prev.written,
            temp_read: self.temp_read - prev.temp_read,
            temp_written: self.temp_written - prev.temp_written,
            read_time: self.read_time - prev.read_time,
            write_time: self.write_time - prev.write_time,
            wal_bytes: match (self.wal_bytes, prev.wal_bytes) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            },
        };
        let ints = [
            d.calls,
            d.rows,
            d.hit,
            d.read,
            d.dirtied,
            d.written,
            d.temp_read,
            d.temp_written,
        ];
        let floats = [d.exec, d.plan, d.read_time, d.write_time];
        (ints.iter().all(|v| *v >= 0)
            && floats.iter().all(|v| *v >= -1e-6)
            && d.wal_bytes.is_none_or(|w| w >= 0))
        .then_some(d)
    }
}

struct Baseline {
    slot: DateTime<Utc>,
    at: DateTime<Utc>,
    reset: Option<DateTime<Utc>>,
    counters: HashMap<Key, Counters>,
}

#[derive(Default)]
struct ServerState {
    baseline: Option<Baseline>,
    known_texts: Option<HashSet<i64>>,
}

/// Per server: the previous snapshot's counters and the statements whose text the store has.
#[derive(Default)]
pub struct State {
    servers: Mutex<HashMap<i64, ServerState>>,
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The counters query for the columns the installed extension version has (they follow its
/// version, not the server's: an extension not updated after an upgrade keeps its old columns).
fn counters_sql(schema: &str, cols: &HashSet<String>) -> String {
    let has = |c: &str| cols.contains(c);
    let exec = if has("total_exec_time") {
        "s.total_exec_time"
    } else {
        "s.total_time"
    };
    let plan = if has("total_plan_time") {
        "s.total_plan_time"
    } else {
        "0::float8"
    };
    let toplevel = if has("toplevel") { "s.toplevel" } else { "true" };
    let (rt, wt) = if has("shared_blk_read_time") {
        ("s.shared_blk_read_time", "s.shared_blk_write_time")
    } else {
        ("s.blk_read_time", "s.blk_write_time")
    };
    let wal = if has("wal_bytes") {
        "s.wal_bytes::int8"
    } else {
        "NULL::int8"
    };
    format!(
        "SELECT s.userid::int8, s.dbid::int8, {toplevel}, s.queryid, s.calls, {exec}, {plan}, s.rows,
                s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.shared_blks_written,
                s.temp_blks_read, s.temp_blks_written, {rt}, {wt}, {wal}, d.datname::text, r.rolname::text
         FROM {}.pg_stat_statements(false) s
         LEFT JOIN pg_database d ON d.oid = s.dbid LEFT JOIN pg_roles r ON r.oid = s.userid
         WHERE s.queryid IS NOT NULL",
        ident(schema)
    )
}

impl Family for Statements {
    fn name(&self) -> &'static str {
        "statements"
    }

    fn task(&self) -> Task {
        Task::Stats
    }

    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let top_n = cx.ctx.cfg.collector.statements_top;
            if top_n == 0 {
                return Ok(Vec::new());
            }
            let ext = cx
                .query(
                    "SELECT n.nspname::text,
                            (SELECT array_agg(a.attname::text) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                             WHERE c.relnamespace = n.oid AND c.relname = 'pg_stat_statements'
                               AND a.attnum > 0 AND NOT a.attisdropped),
                            EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid
                                    AND c.relname = 'pg_stat_statements_info')
                     FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
                     WHERE e.extname = 'pg_stat_statements'",
                    &[],
                )
                .await?;
            let Some(e) = ext.first() else {
                return Ok(Vec::new());
            };
            let schema: String = col(e, 0)?;
            let cols: HashSet<String> = col::<Option<Vec<String>>>(e, 1)?
                .unwrap_or_default()
                .into_iter()
                .collect();
            let has_info: bool = col(e, 2)?;
            let rows = match cx.query(&counters_sql(&schema, &cols), &[]).await {
                Ok(r) => r,
                Err(why) => {
                    // Most often: installed but not in shared_preload_libraries. Not the server's
                    // failure; said once an hour.
                    cx.ctx.journal.log_limited(
                        &format!("pgss:{}", cx.server.id()),
                        1,
                        NewEntry::new(
                            Level::Warning,
                            system_log::source::COLLECTOR_STATS,
                            format!(
                                "pg_stat_statements of server {} cannot be read",
                                cx.server.row.name
                            ),
                        )
                        .details(why)
                        .server(cx.server.id()),
                    );
                    return Ok(Vec::new());
                }
            };
            let reset: Option<DateTime<Utc>> = if has_info {
                let info = cx
                    .query(
                        &format!(
                            "SELECT stats_reset FROM {}.pg_stat_statements_info",
                            ident(&schema)
                        ),
                        &[],
                    )
                    .await?;
                match info.first() {
                    Some(r) => col(r, 0)?,
                    None => None,
                }
            } else {
                None
            };
            let at = Utc::now();
            let mut current: HashMap<Key, Counters> = HashMap::with_capacity(rows.len());
            let mut names: HashMap<Key, (Option<String>, Option<String>)> = HashMap::new();
            for r in &rows {
                let key: Key = (col(r, 0)?, col(r, 1)?, col(r, 3)?, col(r, 2)?);
                current.insert(
                    key,
                    Counters {
                        calls: col(r, 4)?,
                        exec: col(r, 5)?,
                        plan: col(r, 6)?,
                        rows: col(r, 7)?,
                        hit: col(r, 8)?,
                        read: col(r, 9)?,
                        dirtied: col(r, 10)?,
                        written: col(r, 11)?,
                        temp_read: col(r, 12)?,
                        temp_written: col(r, 13)?,
                        read_time: col::<Option<f64>>(r, 14)?.unwrap_or(0.0),
                        write_time: col::<Option<f64>>(r, 15)?.unwrap_or(0.0),
                        wal_bytes: col(r, 16)?,
                    },
                );
                names.insert(key, (col(r, 17)?, col(r, 18)?));
            }
            let id = cx.server.id();
            let interval = crate::tasks::Task::Stats.interval(cx.ctx);
            let (spent, secs, need_known) = {
                let mut all = cx
                    .ctx
                    .statements
                    .servers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let st = all.entry(id).or_default();
                let prev = st.baseline.take();
                st.baseline = Some(Baseline {
                    slot: cx.slot,
                    at,
                    reset,
                    counters: current.clone(),
                });
                let usable = prev.filter(|p| {
                    let gap = (cx.slot - p.slot).to_std().unwrap_or_default();
                    p.slot < cx.slot && gap <= interval + interval / 2
                });
                let Some(prev) = usable else {
                    return Ok(Vec::new());
                };
                let was_reset = has_info && prev.reset != reset;
                let mut spent: Vec<(Key, Counters)> = current
                    .iter()
                    .filter_map(|(k, c)| {
                        let d = match prev.counters.get(k) {
                            Some(p) if !was_reset => c.since(p).unwrap_or(*c),
                            _ => *c,
                        };
                        (d.calls > 0).then_some((*k, d))
                    })
                    .collect();
                spent.sort_by(|a, b| b.1.exec.total_cmp(&a.1.exec).then(a.0.cmp(&b.0)));
                spent.truncate(top_n);
                let secs = (at - prev.at).as_seconds_f64();
                (spent, secs, st.known_texts.is_none())
            };
            if spent.is_empty() {
                return Ok(Vec::new());
            }
            if need_known {
                let known: HashSet<i64> = store::known_texts(&cx.ctx.pool, id)
                    .await
                    .map(|v| v.into_iter().collect())
                    .unwrap_or_default();
                let mut all = cx
                    .ctx
                    .statements
                    .servers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                all.entry(id).or_default().known_texts = Some(known);
            }
            let missing: Vec<i64> = {
                let all = cx
                    .ctx
                    .statements
                    .servers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let known = all.get(&id).and_then(|s| s.known_texts.as_ref());
                let mut m: Vec<i64> = spent
                    .iter()
                    .map(|(k, _)| k.2)
                    .filter(|q| known.is_none_or(|k| !k.contains(q)))
                    .collect();
                m.sort_unstable();
                m.dedup();
                m
            };
            let mut texts = Vec::new();
            if !missing.is_empty() {
                let sql = format!(
                    "SELECT DISTINCT ON (queryid) queryid, left(query, {}) FROM {}.pg_stat_statements(true)
                     WHERE queryid = ANY($1) ORDER BY queryid",
                    store::TEXT_BYTES,
                    ident(&schema)
                );
                for r in &cx.query(&sql, &[&missing]).await? {
                    let q: Option<String> = col(r, 1)?;
                    texts.push(TextRow {
                        server_id: id,
                        queryid: col(r, 0)?,
                        // Before PostgreSQL 16 utility statements keep their literals: an `ALTER
                        // ROLE ... PASSWORD '...'` would be stored as typed.
                        query: store::cut(&redact_sql(q.as_deref().unwrap_or(""))),
                    });
                }
                let mut all = cx
                    .ctx
                    .statements
                    .servers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(known) = all.get_mut(&id).and_then(|s| s.known_texts.as_mut()) {
                    known.extend(texts.iter().map(|t| t.queryid));
                }
            }
            let out: Vec<StatementRow> = spent
                .into_iter()
                .map(|(k, d)| {
                    let (datname, usename) = names.get(&k).cloned().unwrap_or((None, None));
                    StatementRow {
                        server_id: id,
                        slot: cx.slot,
                        queryid: k.2,
                        dbid: k.1,
                        userid: k.0,
                        toplevel: k.3,
                        collected_at: at,
                        secs,
                        datname,
                        usename,
                        calls: d.calls,
                        total_exec_time: d.exec,
                        total_plan_time: d.plan,
                        rows: d.rows,
                        shared_blks_hit: d.hit,
                        shared_blks_read: d.read,
                        shared_blks_dirtied: d.dirtied,
                        shared_blks_written: d.written,
                        temp_blks_read: d.temp_read,
                        temp_blks_written: d.temp_written,
                        blk_read_time: d.read_time,
                        blk_write_time: d.write_time,
                        wal_bytes: d.wal_bytes,
                    }
                })
                .collect();
            Ok(vec![Rows::StatementTexts(texts), Rows::Statements(out)])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_went_down_is_a_reset_not_a_negative() {
        let prev = Counters {
            calls: 10,
            exec: 100.0,
            ..Counters::default()
        };
        let now = Counters {
            calls: 15,
            exec: 150.0,
            ..Counters::default()
        };
        assert_eq!(now.since(&prev).map(|d| (d.calls, d.exec)), Some((5, 50.0)));
        let after_reset = Counters {
            calls: 2,
            exec: 3.0,
            ..Counters::default()
        };
        assert!(after_reset.since(&prev).is_none());
    }

    #[test]
    fn the_columns_follow_the_extension() {
        let old: HashSet<String> = ["total_time", "blk_read_time"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let sql = counters_sql("public", &old);
        assert!(sql.contains("s.total_time") && sql.contains("0::float8") && sql.contains("NULL::int8"));
        let new: HashSet<String> = [
            "total_exec_time",
            "total_plan_time",
            "toplevel",
            "shared_blk_read_time",
            "wal_bytes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let sql = counters_sql("we\"ird", &new);
        assert!(
            sql.contains("\"we\"\"ird\".pg_stat_statements(false)")
                && sql.contains("s.shared_blk_write_time")
        );
    }
}
