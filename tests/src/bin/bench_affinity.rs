//! Affinity benchmark: BENCH_SERVERS (1000) server rows spread over BENCH_CLUSTERS (2) throwaway
//! clusters with pg_stat_statements, collected by 2 and then 4 running collectors with
//! BENCH_INTERVAL-second (15) stats slots. For each fleet size it prints each collector's share of
//! the servers, the statements slots lost (a server collected, up, in a slot with no statements:
//! its baseline was not where its collector looked) through a graceful restart of one collector and
//! through a kill -9 of another, and how many servers moved after the kill (the killed collector's
//! share, ideally, and nobody else's). Run it with `scripts/bench-affinity.sh`.

use chrono::{DateTime, Utc};
use pgmon_tests::cluster::Cluster;
use pgmon_tests::{Proc, TestEnv, bin, wait_for};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use std::collections::HashMap;
use std::time::Duration;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn spawn(env: &TestEnv) -> Proc {
    Proc::spawn(
        &bin("pgmon-collector"),
        &env.config_path,
        &["run"],
        "pgmon-collector running instance=",
    )
    .await
}

/// The newest stats slot every server has an availability sample of.
async fn complete_slot(store: &PgPool, servers: usize) -> Option<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT max(slot) FROM (SELECT slot FROM availability GROUP BY slot HAVING count(*) >= $1) s",
    )
    .bind(i64::try_from(servers).unwrap_or(i64::MAX))
    .fetch_one(store)
    .await
    .ok()
    .flatten()
}

/// Waits until `n` more slots than `after` are complete; returns the last one.
async fn slots_after(
    store: &PgPool,
    servers: usize,
    after: Option<DateTime<Utc>>,
    n: i64,
    every: u64,
) -> DateTime<Utc> {
    let target = after.map(|a| a + chrono::Duration::seconds(n * every as i64));
    wait_for(
        "complete slots",
        Duration::from_secs((n as u64 + 3) * every + 120),
        || async {
            let c = complete_slot(store, servers).await;
            c.is_some() && (target.is_none() || c >= target)
        },
    )
    .await;
    complete_slot(store, servers).await.unwrap_or_else(Utc::now)
}

/// Statement holes in `(from, to]`: servers collected (up) with no statements in that slot, after
/// their first statements slot.
async fn holes(store: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM availability a
         JOIN (SELECT server_id, min(slot) AS first FROM stat_statements GROUP BY 1) f USING (server_id)
         WHERE a.up AND a.slot > f.first AND a.slot > $1 AND a.slot <= $2
           AND NOT EXISTS (SELECT 1 FROM stat_statements s WHERE s.server_id = a.server_id AND s.slot = a.slot)",
    )
    .bind(from)
    .bind(to)
    .fetch_one(store)
    .await
    .unwrap_or(-1)
}

/// Holder of each server's stats claim of `slot`.
async fn holders(store: &PgPool, slot: DateTime<Utc>) -> HashMap<i64, uuid::Uuid> {
    sqlx::query_as::<_, (i64, uuid::Uuid)>(
        "SELECT server_id, instance_id FROM collector_claims WHERE task = 'stats' AND slot = $1",
    )
    .bind(slot)
    .fetch_all(store)
    .await
    .unwrap_or_default()
    .into_iter()
    .collect()
}

async fn round(clusters: &[Cluster], servers: usize, collectors: usize, every: u64) -> anyhow::Result<()> {
    let env = TestEnv::new(
        "",
        &format!(
            "[collector]\ncollect_interval_secs = {every}\nsize_update_interval_secs = 86400\n\
             db_check_interval_secs = 86400\nmaintenance_interval_secs = 86400\nactivity_interval_secs = 86400\n\
             concurrency = 32\n"
        ),
    )
    .await;
    let (code, out, err) =
        pgmon_tests::run_cli(&bin("pgmon-collector"), &env.config_path, &["migrate"], None);
    anyhow::ensure!(code == 0, "migrate failed: {out} {err}");
    let store = env.db.pool().await;
    let names: Vec<String> = (0..servers).map(|i| format!("aff-{i:04}")).collect();
    let ports: Vec<i32> = (0..servers)
        .map(|i| i32::from(clusters[i % clusters.len()].port))
        .collect();
    sqlx::query(
        "INSERT INTO servers (name, host, port, dbname, username, sslmode, pool)
         SELECT n, '127.0.0.1', p, 'postgres', 'postgres', 'disable', 'default'
         FROM unnest($1::text[], $2::int[]) AS u(n, p)",
    )
    .bind(&names)
    .bind(&ports)
    .execute(&store)
    .await?;
    let mut procs = Vec::new();
    for _ in 0..collectors {
        procs.push(spawn(&env).await);
    }
    // Steady state: two slots after every collector is in.
    let warm = slots_after(&store, servers, None, 0, every).await;
    let steady = slots_after(&store, servers, Some(warm), 2, every).await;
    let by_holder = holders(&store, steady).await;
    let mut share: HashMap<uuid::Uuid, usize> = HashMap::new();
    for h in by_holder.values() {
        *share.entry(*h).or_default() += 1;
    }
    let mut shares: Vec<usize> = share.values().copied().collect();
    shares.sort_unstable();
    let lost_steady = holes(&store, warm, steady).await;

    // A graceful restart of the last collector.
    let mut last = procs.pop().expect("a collector");
    let _ = last.terminate(Duration::from_secs(20)).await;
    drop(last);
    let gone = slots_after(&store, servers, Some(steady), 1, every).await;
    procs.push(spawn(&env).await);
    let back = slots_after(&store, servers, Some(gone), 2, every).await;
    let lost_restart = holes(&store, steady, back).await;

    // A kill -9 of the first one: its servers move (at once: its lock is gone); nobody else's should.
    let before = holders(&store, back).await;
    let mut victim = procs.remove(0);
    let victim_id: uuid::Uuid = victim.base.parse()?;
    victim.kill9();
    let after_slot = slots_after(&store, servers, Some(back), 2, every).await;
    let after = holders(&store, after_slot).await;
    let moved = before.iter().filter(|(s, h)| after.get(s) != Some(h)).count();
    let moved_other = before
        .iter()
        .filter(|(s, h)| **h != victim_id && after.get(s) != Some(h))
        .count();
    let victims = before.values().filter(|h| **h == victim_id).count();
    let lost_kill = holes(&store, back, after_slot).await;
    for p in &mut procs {
        let _ = p.terminate(Duration::from_secs(20)).await;
    }
    let fair = servers as f64 / collectors as f64;
    println!("{collectors} collectors, {servers} servers, {every} s slots");
    println!(
        "  share per collector    {} (fair {fair:.0}; max/fair {:.2})",
        shares
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" / "),
        shares.last().copied().unwrap_or(0) as f64 / fair
    );
    println!("  slots lost, steady     {lost_steady} (2 slots x {servers} servers)");
    println!(
        "  slots lost, restart    {lost_restart} (graceful stop of one, 1 slot without it, 2 slots with its successor)"
    );
    println!(
        "  moves after kill -9    {moved} ({victims} were the killed collector's; {moved_other} of the others' moved)"
    );
    println!(
        "  slots lost, kill -9    {lost_kill} (the killed collector's baselines die with it: one slot each)"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let servers = env_num("BENCH_SERVERS", 1000);
    let clusters_n = env_num("BENCH_CLUSTERS", 2).max(1);
    let every = env_num("BENCH_INTERVAL", 15) as u64;
    eprintln!("starting {clusters_n} clusters with pg_stat_statements");
    let conf = "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\nmax_connections = 300";
    let major = pgmon_tests::cluster::default_major();
    let clusters: Vec<Cluster> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clusters_n)
            .map(|_| s.spawn(|| Cluster::start_major(major, conf)))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for c in &clusters {
        let mut conn = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(c.port)
            .username("postgres")
            .database("postgres")
            .connect()
            .await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut conn)
            .await?;
    }
    for collectors in [2, 4] {
        round(&clusters, servers, collectors, every).await?;
    }
    Ok(())
}
