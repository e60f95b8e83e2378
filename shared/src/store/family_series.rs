//! Time series of the history families besides `pg_stat_database` (activity, replication, slots,
//! checkpointer, WAL, archiver, I/O), read from their raw tables in one statement per request.
//!
//! The rules are those of [`crate::stats::rates`]: a counter's delta between two samples of the same
//! key is refused across a server restart (`postmaster_start`), a statistics reset (the family's
//! `stats_reset` columns), a counter that went down, or a gap longer than `max_gap`; a refused delta
//! leaves its interval uncovered instead of drawing a negative value or a spike. A bucket's rate is
//! the sum of a key's trusted deltas over the seconds they cover, summed over the keys. Gauges are
//! averaged (or their maximum taken) per bucket. Buckets without data are gaps (`null`).

use super::Result;
use super::stats_read::Window;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;

/// How a gauge is folded into a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    Avg,
    Max,
}

/// A family's table as the reader sees it.
pub struct Spec {
    pub table: &'static str,
    /// Columns that tell series apart within a server (empty: one row per slot).
    pub keys: &'static [&'static str],
    /// Reset timestamps besides `postmaster_start`; a change refuses the delta.
    pub resets: &'static [&'static str],
    /// (column, series name): cumulative counters, read as per-second rates.
    pub counters: &'static [(&'static str, &'static str)],
    /// (column, series name, fold): values as they are.
    pub gauges: &'static [(&'static str, &'static str, Fold)],
}

/// Series in window order: one value per bucket, `None` where the bucket has no data.
pub type Columns = BTreeMap<String, Vec<Option<f64>>>;

fn buckets(w: &Window) -> usize {
    usize::try_from((w.end - w.first).num_seconds() / w.step_secs.max(1)).unwrap_or(0)
}

fn index(w: &Window, bucket: DateTime<Utc>) -> Option<usize> {
    let i = (bucket - w.first).num_seconds() / w.step_secs.max(1);
    usize::try_from(i).ok().filter(|i| *i < buckets(w))
}

fn sql(spec: &Spec, by_key: bool) -> String {
    let key_list = spec.keys.join(", ");
    let part = if spec.keys.is_empty() {
        String::new()
    } else {
        format!("PARTITION BY {key_list}")
    };
    let key_text = if spec.keys.is_empty() || !by_key {
        "''::text".to_string()
    } else {
        spec.keys
            .iter()
            .map(|k| format!("coalesce({k}::text, '')"))
            .collect::<Vec<_>>()
            .join(" || '/' || ")
    };
    // Gauge-only tables have no postmaster_start: nothing of theirs is a delta.
    let has_counters = !spec.counters.is_empty();
    let mut lags = vec!["lag(collected_at) OVER w AS p_at".to_string()];
    let mut checks = vec![
        "p_at IS NOT NULL".to_string(),
        "collected_at > p_at".to_string(),
        "extract(epoch FROM collected_at - p_at) <= $4".to_string(),
    ];
    if has_counters {
        lags.push("lag(postmaster_start) OVER w AS p_pm".to_string());
        checks.push("postmaster_start IS NOT DISTINCT FROM p_pm".to_string());
    }
    for r in spec.resets {
        lags.push(format!("lag({r}) OVER w AS p_{r}"));
        checks.push(format!("{r} IS NOT DISTINCT FROM p_{r}"));
    }
    for (c, _) in spec.counters {
        lags.push(format!("lag({c}) OVER w AS p_{c}"));
        checks.push(format!("coalesce({c} >= p_{c}, true)"));
    }
    let cols: Vec<String> = spec
        .counters
        .iter()
        .map(|(c, _)| c.to_string())
        .chain(spec.gauges.iter().map(|(g, _, _)| g.to_string()))
        .chain(spec.resets.iter().map(|r| r.to_string()))
        .collect();
    let pm = if has_counters { "postmaster_start, " } else { "" };
    let per_key_rates: Vec<String> = spec
        .counters
        .iter()
        .map(|(c, n)| {
            format!("sum(CASE WHEN ok THEN ({c} - p_{c})::float8 END) / nullif(sum(CASE WHEN ok THEN secs END), 0) AS \"{n}\"")
        })
        .collect();
    let per_key_gauges: Vec<String> = spec
        .gauges
        .iter()
        .map(|(g, n, f)| match f {
            Fold::Avg => format!("avg({g})::float8 AS \"{n}\""),
            Fold::Max => format!("max({g})::float8 AS \"{n}\""),
        })
        .collect();
    let outer: Vec<String> = spec
        .counters
        .iter()
        .map(|(_, n)| format!("sum(\"{n}\")::float8"))
        .chain(spec.gauges.iter().map(|(_, n, f)| match f {
            // A sum over keys of the per-key averages (sessions of several keys add up), or the
            // largest of their maxima.
            Fold::Avg => format!("sum(\"{n}\")::float8"),
            Fold::Max => format!("max(\"{n}\")::float8"),
        }))
        .collect();
    let key_cols = if spec.keys.is_empty() {
        String::new()
    } else {
        format!("{key_list}, ")
    };
    format!(
        "WITH raw AS (
            SELECT slot, collected_at, {key_cols}{pm}{cols}, {lags}
            FROM {table}
            WHERE server_id = $1 AND slot >= $2::timestamptz - make_interval(secs => $4) AND slot < $3
            WINDOW w AS ({part} ORDER BY slot)
        ), judged AS (
            SELECT *, date_bin(make_interval(secs => $5), slot, 'epoch'::timestamptz) AS bucket,
                   {key_text} AS k,
                   extract(epoch FROM collected_at - p_at)::float8 AS secs,
                   ({checks}) AS ok
            FROM raw WHERE slot >= $2
        ), per_key AS (
            SELECT bucket, k{comma_rates}{rates}{comma_gauges}{gauges}
            FROM judged GROUP BY bucket, k
        )
        SELECT bucket, k, {outer} FROM per_key GROUP BY bucket, k ORDER BY k, bucket",
        table = spec.table,
        cols = cols.join(", "),
        lags = lags.join(", "),
        checks = checks.join(" AND "),
        comma_rates = if per_key_rates.is_empty() { "" } else { ", " },
        rates = per_key_rates.join(", "),
        comma_gauges = if per_key_gauges.is_empty() { "" } else { ", " },
        gauges = per_key_gauges.join(", "),
        outer = outer.join(", "),
    )
}

/// The family's series over `w`: totals over its keys, or (`by_key`) one set per key (keys joined
/// with `/`).
pub async fn read(
    pool: &PgPool,
    spec: &Spec,
    server_id: i64,
    w: &Window,
    by_key: bool,
) -> Result<BTreeMap<String, Columns>> {
    let names: Vec<&str> = spec
        .counters
        .iter()
        .map(|(_, n)| *n)
        .chain(spec.gauges.iter().map(|(_, n, _)| *n))
        .collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql(spec, by_key)))
        .bind(server_id)
        .bind(w.first)
        .bind(w.end)
        .bind(w.max_gap_secs)
        .bind(w.step_secs as f64)
        .fetch_all(pool)
        .await?;
    let n = buckets(w);
    let mut out: BTreeMap<String, Columns> = BTreeMap::new();
    for row in &rows {
        use sqlx::Row;
        let bucket: DateTime<Utc> = row.try_get(0)?;
        let key: String = row.try_get(1)?;
        let Some(i) = index(w, bucket) else { continue };
        let cols = out.entry(key).or_insert_with(|| {
            names
                .iter()
                .map(|name| (name.to_string(), vec![None; n]))
                .collect()
        });
        for (j, name) in names.iter().enumerate() {
            let v: Option<f64> = row.try_get(2 + j)?;
            if let Some(col) = cols.get_mut(*name) {
                col[i] = v;
            }
        }
    }
    Ok(out)
}

/// The bucket starts of `w`.
pub fn times(w: &Window) -> Vec<DateTime<Utc>> {
    (0..buckets(w))
        .map(|i| w.first + TimeDelta::seconds(w.step_secs * i as i64))
        .collect()
}
