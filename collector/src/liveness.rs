//! This process's advisory lock on the store, which tells the other collectors it is alive.
//!
//! The heartbeat alone says so for a minute after a `kill -9`, so a restarted collector (systemd) or
//! a `once` run would find the dead process's claims of the current slot held and leave the slot
//! uncollected. A session-level lock dies with the session, and the session with the process: the
//! lock is free at once, and `pgmon_collector_live` (migration 0013) counts a collector whose lock
//! is free as dead. The lock lives on a connection of its own, outside the pool (a pooled connection
//! is shared and recycled), reopened whenever it is lost.

use crate::Ctx;
use pgmon_shared::store::collectors;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the lock's connection is checked, and the deadline of each store call here.
const CHECK_EVERY: Duration = Duration::from_secs(5);
const CALL_DEADLINE: Duration = Duration::from_secs(5);

async fn lock(ctx: &Ctx) -> Result<(PgConnection, bool), String> {
    let opts = ctx.pool.connect_options();
    let mut conn = tokio::time::timeout(CALL_DEADLINE, opts.connect())
        .await
        .map_err(|_| "connect: timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let held = tokio::time::timeout(CALL_DEADLINE, collectors::lock_instance(&mut conn, ctx.instance))
        .await
        .map_err(|_| "lock: timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok((conn, held))
}

/// Holds the lock until `stop`; the returned receiver turns true once the lock was first taken (or
/// could not be, so that start-up never waits for it for long).
pub fn spawn(ctx: Arc<Ctx>, stop: CancellationToken) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        while !stop.is_cancelled() {
            let mut conn = match lock(&ctx).await {
                Ok((conn, held)) => {
                    if !held {
                        tracing::warn!(
                            "another session holds this instance's lock; liveness falls back to the heartbeat"
                        );
                    }
                    delay = Duration::from_secs(1);
                    let _ = tx.send(true);
                    conn
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot take the instance lock yet");
                    let _ = tx.send(true);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            loop {
                tokio::select! {
                    _ = stop.cancelled() => {
                        let _ = tokio::time::timeout(Duration::from_millis(500), conn.close()).await;
                        return;
                    }
                    _ = tokio::time::sleep(CHECK_EVERY) => {}
                }
                match tokio::time::timeout(CALL_DEADLINE, conn.ping()).await {
                    Ok(Ok(())) => {}
                    _ => {
                        tracing::info!(
                            "the instance lock's store connection was lost; taking the lock again"
                        );
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Starts holding the lock and waits (briefly) until it is held, before the instance registers.
pub async fn start(ctx: Arc<Ctx>, stop: CancellationToken) {
    let mut held = spawn(ctx, stop);
    let _ = tokio::time::timeout(Duration::from_secs(3), held.wait_for(|h| *h)).await;
}
