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
//!
//! A server's slots stick to one collector (see `store::collectors::owner`), and the previous
//! snapshot travels with the server when it moves: the collector that gives a server up (another
//! instance joined, or it stops gracefully) saves its snapshot in `collector_baselines` (binary, about
//! 130 bytes per statement), and the next collector of that server loads it when its memory has none.
//! A collection of a slot that already has a baseline (a redo) keeps the older one, so the next
//! slot's delta covers everything since the slot's first snapshot.

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

/// Format version of [`Baseline::encode`].
const BASELINE_FORMAT: u8 = 1;

impl Baseline {
    /// Compact little-endian binary (the slot is stored beside it): JSON would triple the size of a
    /// handover of thousands of statements per server.
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(21 + self.counters.len() * 130);
        b.push(BASELINE_FORMAT);
        b.extend(self.at.timestamp_micros().to_le_bytes());
        b.extend(
            self.reset
                .map_or(i64::MIN, |r| r.timestamp_micros())
                .to_le_bytes(),
        );
        b.extend(
            u32::try_from(self.counters.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        for ((user, db, query, top), c) in self.counters.iter().take(u32::MAX as usize) {
            for v in [*user, *db, *query] {
                b.extend(v.to_le_bytes());
            }
            b.push(u8::from(*top));
            for v in [
                c.calls,
                c.rows,
                c.hit,
                c.read,
                c.dirtied,
                c.written,
                c.temp_read,
                c.temp_written,
            ] {
                b.extend(v.to_le_bytes());
            }
            for v in [c.exec, c.plan, c.read_time, c.write_time] {
                b.extend(v.to_le_bytes());
            }
            b.push(u8::from(c.wal_bytes.is_some()));
            b.extend(c.wal_bytes.unwrap_or(0).to_le_bytes());
        }
        b
    }

    /// [`Baseline::encode`]'s inverse; `None` for anything else (another format, cut short).
    fn decode(slot: DateTime<Utc>, data: &[u8]) -> Option<Baseline> {
        let mut r = Reader(data);
        if r.take(1)?[0] != BASELINE_FORMAT {
            return None;
        }
        let at = DateTime::from_timestamp_micros(r.i64()?)?;
        let reset = match r.i64()? {
            i64::MIN => None,
            micros => Some(DateTime::from_timestamp_micros(micros)?),
        };
        let n = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        let mut counters = HashMap::with_capacity(n.min(data.len() / 100));
        for _ in 0..n {
            let key: Key = (r.i64()?, r.i64()?, r.i64()?, r.take(1)?[0] != 0);
            let mut c = Counters {
                calls: r.i64()?,
                rows: r.i64()?,
                hit: r.i64()?,
                read: r.i64()?,
                dirtied: r.i64()?,
                written: r.i64()?,
                temp_read: r.i64()?,
                temp_written: r.i64()?,
                ..Counters::default()
            };
            c.exec = r.f64()?;
            c.plan = r.f64()?;
            c.read_time = r.f64()?;
            c.write_time = r.f64()?;
            let has_wal = r.take(1)?[0] != 0;
            let wal = r.i64()?;
            c.wal_bytes = has_wal.then_some(wal);
            counters.insert(key, c);
        }
        r.0.is_empty().then_some(Baseline {
            slot,
            at,
            reset,
            counters,
        })
    }

    /// Whether this snapshot can be the previous one of `slot`'s delta: of an earlier slot, and not
    /// so long before that the delta would span more than one slot.
    fn precedes(&self, slot: DateTime<Utc>, interval: std::time::Duration) -> bool {
        let gap = (slot - self.slot).to_std().unwrap_or_default();
        self.slot < slot && gap <= interval + interval / 2
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
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

/// A baseline ready for the store: (server, slot, data).
pub type Handover = (i64, DateTime<Utc>, Vec<u8>);

impl State {
    /// The per-server map; a panic elsewhere while it was held leaves data still worth using.
    fn servers(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ServerState>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes and encodes the baselines of the servers in `scope` this collector does not collect
    /// now (`keep`): their next collector loads them from the store.
    pub fn hand_over(&self, scope: &HashSet<i64>, keep: &HashSet<i64>) -> Vec<Handover> {
        let mut all = self.servers();
        let gone: Vec<i64> = all
            .iter()
            .filter(|(id, st)| scope.contains(id) && !keep.contains(id) && st.baseline.is_some())
            .map(|(id, _)| *id)
            .collect();
        gone.into_iter()
            .filter_map(|id| {
                let b = all.remove(&id)?.baseline?;
                Some((id, b.slot, b.encode()))
            })
            .collect()
    }

    /// Every baseline, encoded (a graceful stop hands them all over).
    pub fn hand_over_all(&self) -> Vec<Handover> {
        let all = self.servers();
        all.iter()
            .filter_map(|(id, st)| st.baseline.as_ref().map(|b| (*id, b.slot, b.encode())))
            .collect()
    }
}

/// The store's name of this family's baselines.
pub const FAMILY: &str = "statements";
/// How long a collector that takes a server over waits for the previous collector, still alive, to
/// hand its baseline over (it does so as its own run of the slot starts, in one statement for all
/// the servers it gives up). A quarter of the interval, 1 to 5 s: at 1,000 servers and 2
/// collectors a fixed second was too short when a successor joined under load (446 of 500 slots
/// lost in bench-affinity); the wait is only spent until that one statement lands.
fn handover_wait(interval: std::time::Duration) -> std::time::Duration {
    (interval / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(5),
    )
}

/// The baseline another collector left for `slot` of `server_id`, when one usable arrives.
async fn handed_over(cx: &Cx<'_>, interval: std::time::Duration) -> Option<Baseline> {
    let ctx = cx.ctx;
    let id = cx.server.id();
    let prev = cx.slot - chrono::Duration::from_std(interval).ok()?;
    let started = std::time::Instant::now();
    let mut expected = None;
    loop {
        match pgmon_shared::store::collectors::load_baseline(&ctx.pool, id, FAMILY).await {
            Ok(Some((slot, data))) => match Baseline::decode(slot, &data) {
                Some(b) if b.slot <= cx.slot && (b.slot == cx.slot || b.precedes(cx.slot, interval)) => {
                    return Some(b);
                }
                Some(_) => {}
                None => {
                    tracing::warn!(server = %cx.server.row.name, "an unreadable statements baseline was ignored")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot load a statements baseline");
                return None;
            }
        }
        if expected.is_none() {
            // Wait only when the previous slot's collector is alive to hand it over.
            expected = Some(
                pgmon_shared::store::collectors::held_by_other_live(
                    &ctx.pool,
                    ctx.instance,
                    id,
                    Task::Stats.as_str(),
                    prev,
                    crate::tasks::STALE_AFTER,
                )
                .await
                .unwrap_or(false),
            );
        }
        if expected != Some(true) || started.elapsed() >= handover_wait(interval) {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
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
            let in_memory = {
                let all = cx.ctx.statements.servers();
                all.get(&id)
                    .and_then(|s| s.baseline.as_ref())
                    .is_some_and(|b| b.slot == cx.slot || b.precedes(cx.slot, interval))
            };
            let loaded = if in_memory {
                None
            } else {
                handed_over(cx, interval).await
            };
            let (spent, secs, need_known) = {
                let mut all = cx.ctx.statements.servers();
                let st = all.entry(id).or_default();
                let prev = loaded.or_else(|| st.baseline.take());
                if prev.as_ref().is_some_and(|p| p.slot == cx.slot) {
                    // This slot again (a redo, or a server collected at once after a change): keep
                    // the slot's first snapshot, so the next delta misses nothing.
                    st.baseline = prev;
                    return Ok(Vec::new());
                }
                st.baseline = Some(Baseline {
                    slot: cx.slot,
                    at,
                    reset,
                    counters: current.clone(),
                });
                let usable = prev.filter(|p| p.precedes(cx.slot, interval));
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
                let mut all = cx.ctx.statements.servers();
                all.entry(id).or_default().known_texts = Some(known);
            }
            let missing: Vec<i64> = {
                let all = cx.ctx.statements.servers();
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
                let mut all = cx.ctx.statements.servers();
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
    fn a_baseline_survives_its_trip_through_the_store() {
        let slot = Utc::now();
        let mut counters = HashMap::new();
        counters.insert(
            (10, 5, -42, true),
            Counters {
                calls: 7,
                exec: 1.5,
                plan: 0.25,
                rows: 3,
                hit: 9,
                read: 1,
                dirtied: 2,
                written: 4,
                temp_read: 5,
                temp_written: 6,
                read_time: 0.5,
                write_time: 0.75,
                wal_bytes: Some(123),
            },
        );
        counters.insert((11, 5, 42, false), Counters::default());
        let b = Baseline {
            slot,
            at: slot,
            reset: None,
            counters,
        };
        let data = b.encode();
        let back = Baseline::decode(slot, &data).expect("decodes");
        assert_eq!(back.counters.len(), 2);
        let c = back.counters[&(10, 5, -42, true)];
        assert_eq!(
            (c.calls, c.exec, c.temp_written, c.wal_bytes),
            (7, 1.5, 6, Some(123))
        );
        assert_eq!(back.counters[&(11, 5, 42, false)].wal_bytes, None);
        assert_eq!(back.at.timestamp_micros(), slot.timestamp_micros());
        assert!(back.reset.is_none());
        assert!(Baseline::decode(slot, &data[..data.len() - 1]).is_none());
        assert!(Baseline::decode(slot, b"\x02").is_none());
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
