//! Disk usage of the data directory's file system over SSH, with the host key pinned on first use,
//! every sizes slot. Needs no PostgreSQL connection.

use super::{Collected, Cx, Family};
use crate::Ctx;
use crate::servers::Server;
use crate::tasks::Task;
use crate::writer::Rows;
use chrono::Utc;
use futures::future::BoxFuture;
use pgmon_shared::ssh;
use pgmon_shared::store;
use pgmon_shared::store::stats::DiskUsageRow;
use pgmon_shared::store::system_log::{self, Level, NewEntry};
use std::time::Duration;

/// The overall deadline of one SSH disk-usage call.
const SSH_DEADLINE: Duration = Duration::from_secs(15);
/// System-log entries per server and hour about its SSH failures (per level).
const SSH_LOGS_PER_HOUR: u32 = 2;

pub struct Disk;

impl Family for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn task(&self) -> Task {
        Task::Sizes
    }

    fn needs_connection(&self) -> bool {
        false
    }

    fn collect<'a>(&'a self, cx: &'a Cx<'a>) -> BoxFuture<'a, Collected> {
        Box::pin(async move {
            let (ctx, server) = (cx.ctx, cx.server);
            if server.row.ssh_data_path.as_deref().is_none_or(str::is_empty) {
                return Ok(Vec::new());
            }
            // The pinned host key is read fresh: a cached row could still say "nothing pinned" and
            // let any key through (with the credentials) after another run pinned one. No store, no
            // SSH.
            let row = match store::servers::get_by_id(&ctx.pool, server.id()).await {
                Ok(Some(row)) if row.enabled => row,
                Ok(_) => return Ok(Vec::new()),
                Err(e) => {
                    tracing::debug!(server = %server.row.name, error = %e, "store unreachable; skipping SSH");
                    return Ok(Vec::new());
                }
            };
            let Some(data_path) = row.ssh_data_path.as_deref().filter(|p| !p.is_empty()) else {
                return Ok(Vec::new());
            };
            let target = match store::servers::ssh_target(&ctx.pool, &ctx.crypto, &row).await {
                Ok(Some(t)) => t,
                Ok(None) => return Ok(Vec::new()),
                Err(e) => {
                    let why = format!("ssh: cannot build the SSH target: {e}");
                    problem(ctx, server, Level::Error, &why);
                    return Err(why);
                }
            };
            match ssh::disk_usage(&target, data_path, SSH_DEADLINE).await {
                Ok(out) => {
                    if target.expected_fingerprint.is_none() {
                        match store::servers::pin_host_key(&ctx.pool, server.id(), &out.host_key_fingerprint)
                            .await
                        {
                            Ok(true) => {
                                tracing::info!(server = %server.row.name, fingerprint = %out.host_key_fingerprint, "pinned SSH host key")
                            }
                            Ok(false) => {
                                tracing::warn!(server = %server.row.name, "another SSH host key was pinned meanwhile; discarding the measurement");
                                return Ok(Vec::new());
                            }
                            Err(e) => {
                                tracing::warn!(server = %server.row.name, error = %e, "cannot pin the SSH host key");
                                return Ok(Vec::new());
                            }
                        }
                    }
                    let v = out.value;
                    Ok(vec![Rows::Disk(DiskUsageRow {
                        server_id: server.id(),
                        slot: cx.slot,
                        collected_at: Utc::now(),
                        mount: v.mount,
                        total_bytes: i64::try_from(v.total_bytes).unwrap_or(i64::MAX),
                        used_bytes: i64::try_from(v.used_bytes).unwrap_or(i64::MAX),
                        available_bytes: i64::try_from(v.available_bytes).unwrap_or(i64::MAX),
                    })])
                }
                Err(e) => {
                    let why = format!("ssh: {e}");
                    let level = if e.class == ssh::SshErrorClass::HostKeyMismatch {
                        Level::Error
                    } else {
                        Level::Warning
                    };
                    problem(ctx, server, level, &why);
                    Err(why)
                }
            }
        })
    }
}

/// An SSH failure in the system log: a few an hour per server, so an unreachable host every cycle
/// does not fill it.
fn problem(ctx: &Ctx, server: &Server, level: Level, why: &str) {
    let entry = NewEntry::new(
        level,
        system_log::source::COLLECTOR_SIZES,
        format!("SSH to server {} failed", server.row.name),
    )
    .details(why)
    .server(server.id());
    ctx.journal.log_limited(
        &format!("ssh:{}:{level:?}", server.id()),
        SSH_LOGS_PER_HOUR,
        entry,
    );
}
