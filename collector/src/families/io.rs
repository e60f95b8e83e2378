//! `pg_stat_io` (16+): I/O per backend type, object and context, every stats slot. Bytes as 18
//! reports them; before, operations times `op_bytes`.

use super::{Collected, Cx, Family, col};
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::store::history::io::IoRow;
use pgmon_shared::version::Version;

pub struct Io;

pub fn sql(v: Version) -> Option<String> {
    if !v.has(16) {
        return None;
    }
    let bytes = if v.has(18) {
        "read_bytes::int8, write_bytes::int8, extend_bytes::int8"
    } else {
        "(reads * op_bytes)::int8, (writes * op_bytes)::int8, (extends * op_bytes)::int8"
    };
    Some(format!(
        "SELECT backend_type, object, context, stats_reset, reads::int8, read_time, writes::int8,
                write_time, writebacks::int8, extends::int8, hits::int8, evictions::int8, reuses::int8,
                fsyncs::int8, fsync_time, {bytes}
         FROM pg_stat_io"
    ))
}

impl Family for Io {
    fn name(&self) -> &'static str {
        "io"
    }

    fn task(&self) -> Task {
        Task::Stats
    }

    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let (_, info) = cx.pg()?;
            let Some(sql) = sql(info.version) else {
                return Ok(Vec::new());
            };
            let rows = cx.query(&sql, &[]).await?;
            let collected_at = Utc::now();
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(IoRow {
                    server_id: cx.server.id(),
                    slot: cx.slot,
                    backend_type: col(r, 0)?,
                    object: col(r, 1)?,
                    context: col(r, 2)?,
                    collected_at,
                    postmaster_start: info.postmaster_start,
                    stats_reset: col(r, 3)?,
                    reads: col(r, 4)?,
                    read_time: col(r, 5)?,
                    writes: col(r, 6)?,
                    write_time: col(r, 7)?,
                    writebacks: col(r, 8)?,
                    extends: col(r, 9)?,
                    hits: col(r, 10)?,
                    evictions: col(r, 11)?,
                    reuses: col(r, 12)?,
                    fsyncs: col(r, 13)?,
                    fsync_time: col(r, 14)?,
                    read_bytes: col(r, 15)?,
                    write_bytes: col(r, 16)?,
                    extend_bytes: col(r, 17)?,
                });
            }
            Ok(vec![Rows::Io(out)])
        })
    }
}
