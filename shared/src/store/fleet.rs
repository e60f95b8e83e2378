//! The whole fleet at a glance: each server's recent transaction rate, for the UI's fleet page.
//!
//! Read from the whole-server per-slot rollups (`datname = ''`, `res = 0`), unpacked rows and packed
//! chunks alike, so that one statement pair serves a thousand servers: reading each server's history
//! the way a server page does would cost one round trip per server.

use super::Result;
use super::chunk;
use crate::stats::rates::COUNTER_NAMES;
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// One point of a sparkline: seconds since the epoch and transactions (commits + rollbacks) per
/// second over the slot that ends there. A slot whose delta was refused (reset, restart, gap) is
/// left out, so the line shows a gap rather than a dip.
pub type Point = (i64, f64);

static UNPACKED_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT server_id, {} FROM stat_rollup WHERE res = 0 AND datname = '' AND bucket >= $1",
        chunk::record_sql()
    )
});

/// Chunks hold 12 hours of slots; one that started up to 12 hours before `$1` may hold newer slots.
const PACKED_SQL: &str = "SELECT server_id, data FROM stat_rollup_chunk
     WHERE res = 0 AND datname = '' AND chunk_start > $1 - interval '12 hours'";

/// Every server's transaction rate since `since`, in time order.
pub async fn tps_since(pool: &PgPool, since: DateTime<Utc>) -> Result<BTreeMap<i64, Vec<Point>>> {
    let (unpacked, packed) = tokio::try_join!(
        sqlx::query_as::<_, (i64, Vec<u8>)>(AssertSqlSafe(UNPACKED_SQL.as_str()))
            .bind(since)
            .fetch_all(pool),
        sqlx::query_as::<_, (i64, Vec<u8>)>(PACKED_SQL)
            .bind(since)
            .fetch_all(pool),
    )?;
    let commit = COUNTER_NAMES.iter().position(|n| *n == "xact_commit");
    let rollback = COUNTER_NAMES.iter().position(|n| *n == "xact_rollback");
    let since_us = since.timestamp_micros();
    let mut out: BTreeMap<i64, Vec<Point>> = BTreeMap::new();
    for (server, data) in unpacked.iter().chain(packed.iter()) {
        let points = out.entry(*server).or_default();
        chunk::decode(data, |micros, acc| {
            if micros < since_us || acc.secs <= 0.0 {
                return;
            }
            let xacts: i64 = [commit, rollback]
                .into_iter()
                .flatten()
                .map(|i| acc.counters[i])
                .sum();
            points.push((micros.div_euclid(1_000_000), xacts as f64 / acc.secs));
        });
    }
    for points in out.values_mut() {
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
    }
    Ok(out)
}
