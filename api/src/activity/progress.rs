//! Progress of running VACUUM, ANALYZE (PostgreSQL 13+), CREATE INDEX and CLUSTER / VACUUM FULL
//! (PostgreSQL 12+): phase and the share done, from the `pg_stat_progress_*` views.

use super::{Remote, Version, col, query, relation_sql};
use pgmon_shared::config::QueryTextView;
use pgmon_shared::redact::show_query;
use pgmon_shared::remote::RemoteError;
use poem_openapi::Object;

#[derive(Debug, Clone, Object)]
pub struct Progress {
    /// `vacuum`, `analyze`, `create_index` or `cluster`.
    pub command: String,
    pub pid: i32,
    pub database: Option<String>,
    /// A name in the connected database, `oid N` elsewhere.
    pub relation: Option<String>,
    pub phase: Option<String>,
    /// Blocks (or tuples) done and in all, of what the current phase counts.
    pub done: Option<i64>,
    pub total: Option<i64>,
    /// `done / total`, 0 to 1; `null` while the total is unknown.
    pub share_done: Option<f64>,
    /// What `done` and `total` count: `heap blocks`, `sample blocks`, `blocks`, `tuples`.
    pub unit: Option<String>,
    pub query_secs: Option<f64>,
    pub user: Option<String>,
    /// Password literals redacted; for viewers as `api.viewer_query_text` says.
    pub query: Option<String>,
}

/// One `SELECT` per view the version has, in one statement.
pub fn sql(v: Version) -> String {
    let rel = relation_sql("p.datid", "p.relid");
    let mut parts = vec![format!(
        "SELECT 'vacuum' AS command, p.pid, p.datname::text, {rel}, p.phase::text,
                p.heap_blks_scanned::int8 AS done, p.heap_blks_total::int8 AS total, 'heap blocks' AS unit
         FROM pg_stat_progress_vacuum p"
    )];
    if v.has(13) {
        parts.push(format!(
            "SELECT 'analyze', p.pid, p.datname::text, {rel}, p.phase::text,
                    p.sample_blks_scanned::int8, p.sample_blks_total::int8, 'sample blocks'
             FROM pg_stat_progress_analyze p"
        ));
    }
    // CREATE INDEX and CLUSTER have had their views since 12, the oldest version pgmon supports, so
    // an unknown newer major keeps them too.
    parts.push(format!(
        "SELECT 'create_index', p.pid, p.datname::text, {rel}, p.phase::text,
                CASE WHEN p.blocks_total > 0 THEN p.blocks_done ELSE p.tuples_done END::int8,
                CASE WHEN p.blocks_total > 0 THEN p.blocks_total ELSE p.tuples_total END::int8,
                CASE WHEN p.blocks_total > 0 THEN 'blocks' ELSE 'tuples' END
         FROM pg_stat_progress_create_index p"
    ));
    parts.push(format!(
        "SELECT 'cluster', p.pid, p.datname::text, {rel}, p.phase::text,
                p.heap_blks_scanned::int8, p.heap_blks_total::int8, 'heap blocks'
         FROM pg_stat_progress_cluster p"
    ));
    format!(
        "SELECT g.command, g.pid, g.datname, g.relation, g.phase, g.done, g.total, g.unit,
                extract(epoch FROM now() - a.query_start)::float8, a.usename::text, left(a.query, $1)
         FROM ({}) AS g(command, pid, datname, relation, phase, done, total, unit)
         LEFT JOIN pg_stat_activity a ON a.pid = g.pid
         ORDER BY g.command, g.pid",
        parts.join(" UNION ALL ")
    )
}

pub async fn list(
    r: &Remote,
    query_chars: usize,
    texts: QueryTextView,
) -> Result<Vec<Progress>, RemoteError> {
    let chars = i32::try_from(query_chars).unwrap_or(i32::MAX);
    let mut out = Vec::new();
    for row in &query(r, &sql(r.version), &[&chars]).await? {
        let done: Option<i64> = col(row, 5)?;
        let total: Option<i64> = col(row, 6)?;
        let share_done = match (done, total) {
            (Some(d), Some(t)) if t > 0 => Some(((d as f64 / t as f64) * 10_000.0).round() / 10_000.0),
            _ => None,
        };
        out.push(Progress {
            command: col(row, 0)?,
            pid: col(row, 1)?,
            database: col(row, 2)?,
            relation: col(row, 3)?,
            phase: col(row, 4)?,
            done,
            total,
            share_done,
            unit: col(row, 7)?,
            query_secs: col(row, 8)?,
            user: col(row, 9)?,
            query: show_query(texts, col::<Option<String>>(row, 10)?.as_deref()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyze_progress_needs_13() {
        assert!(!sql(Version(120000)).contains("pg_stat_progress_analyze"));
        assert!(sql(Version(130000)).contains("pg_stat_progress_analyze"));
        assert!(!sql(Version(190000)).contains("pg_stat_progress_analyze"));
    }
}
