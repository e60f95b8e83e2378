//! Collector benchmark: N server rows (default 1000) spread over a few throwaway clusters holding 50
//! databases each; one `pgmon-collector once --task stats` collects every row separately. Prints wall
//! time, the collector's CPU time and peak RSS, rows and rows/s, then the store write path alone
//! (the collector's batched `unnest` inserts) against a plain `COPY` of the same rows into the same
//! table. Run it with `scripts/bench-collector.sh`.
//!
//! Environment: BENCH_SERVERS (1000), BENCH_CLUSTERS (4), BENCH_DBS (50), BENCH_CONCURRENCY (32).

use futures::StreamExt;
use pgmon_shared::store::stats::{self, STAT_DATABASE_COLUMNS, StatDatabaseRow};
use pgmon_tests::cluster::Cluster;
use pgmon_tests::{TestEnv, bin};
use std::time::Instant;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the collector CLI. `PGMON_TEST_PG_URL` is removed: the config reads every `PGMON_*` variable
/// as a key.
fn collector(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin("pgmon-collector"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("PGMON_TEST_PG_URL")
        .env_remove("PGMON_CONFIG")
        .env("PGMON_COLLECTOR__SPOOL_DIR", pgmon_tests::spool_dir(config))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run pgmon-collector");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `key=value` from the collector's summary line.
fn field(out: &str, key: &str) -> Option<u64> {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let servers = env_num("BENCH_SERVERS", 1000);
    let clusters_n = env_num("BENCH_CLUSTERS", 4).max(1);
    let dbs = env_num("BENCH_DBS", 50);
    let concurrency = env_num("BENCH_CONCURRENCY", 32);

    eprintln!("starting {clusters_n} clusters with {dbs} databases each");
    let clusters: Vec<Cluster> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clusters_n).map(|_| s.spawn(Cluster::start)).collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let names: Vec<String> = (0..dbs).map(|i| format!("bench_db_{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for c in &clusters {
        c.create_databases(&refs).await;
    }

    let env = TestEnv::new(
        "",
        &format!("[collector]\nconcurrency = {concurrency}\nbuffer_max_rows = 1000000\n\n[metrics]\nenabled = true\n"),
    )
    .await;
    let (code, out, err) = collector(&env.config_path, &["migrate"]);
    anyhow::ensure!(code == 0, "migrate failed: {out} {err}");
    let store = env.db.pool().await;
    let ports: Vec<i32> = (0..servers)
        .map(|i| i32::from(clusters[i % clusters.len()].port))
        .collect();
    let server_names: Vec<String> = (0..servers).map(|i| format!("bench-{i:04}")).collect();
    sqlx::query(
        "INSERT INTO servers (name, host, port, dbname, username, sslmode, pool)
         SELECT n, '127.0.0.1', p, 'postgres', 'postgres', 'disable', 'default'
         FROM unnest($1::text[], $2::int[]) AS u(n, p)",
    )
    .bind(&server_names)
    .bind(&ports)
    .execute(&store)
    .await?;

    eprintln!("collecting one stats slot of {servers} servers");
    let t = Instant::now();
    let (code, out, err) = collector(&env.config_path, &["once", "--task", "stats", "--skip-rollups"]);
    let wall = t.elapsed().as_secs_f64();
    anyhow::ensure!(code == 0, "once failed: {out} {err}");
    let rows = field(&out, "written_rows").unwrap_or(0);
    let cpu_ms = field(&out, "cpu_ms").unwrap_or(0);
    let rss_kb = field(&out, "peak_rss_kb").unwrap_or(0);
    let collect_ms = field(&out, "ms").unwrap_or(0);
    let stat_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM stat_database")
        .fetch_one(&store)
        .await?;
    let up: i64 = sqlx::query_scalar("SELECT count(*) FROM availability WHERE up")
        .fetch_one(&store)
        .await?;

    // What the collector does next in a service: fold the slot into the read API's rollups.
    let t = Instant::now();
    pgmon_shared::store::rollups::refresh_new(&store).await?;
    let rollup_secs = t.elapsed().as_secs_f64();
    // Maintenance's refresh, which goes back over the lookback for late rows, and purges.
    let t = Instant::now();
    pgmon_shared::store::rollups::refresh_rollups(&store).await?;
    let full_rollup_secs = t.elapsed().as_secs_f64();

    // One scrape of /metrics over the whole fleet, and what it does to pgmon-api's memory.
    let api = env.spawn_api().await;
    let rss_idle = pgmon_tests::bench::rss_kib(api.child.id());
    let client = reqwest::Client::new();
    let mut scrapes = Vec::new();
    let mut body_len = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let body = client.get(api.url("/metrics")).send().await?.bytes().await?;
        scrapes.push(t.elapsed().as_secs_f64());
        body_len = body.len();
    }
    let rss_after = pgmon_tests::bench::rss_kib(api.child.id());
    drop(api);

    // The write path alone versus COPY, same rows, same table.
    let loaded: Vec<StatDatabaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STAT_DATABASE_COLUMNS} FROM stat_database ORDER BY server_id, datname"
    )))
    .fetch_all(&store)
    .await?;
    let mut text = Vec::new();
    {
        let mut conn = store.acquire().await?;
        let mut stream = conn
            .copy_out_raw(&format!(
                "COPY (SELECT {STAT_DATABASE_COLUMNS} FROM stat_database ORDER BY server_id, datname) TO STDOUT"
            ))
            .await?;
        while let Some(chunk) = stream.next().await {
            text.extend_from_slice(&chunk?);
        }
    }
    let reset = || async {
        sqlx::query("TRUNCATE stat_database").execute(&store).await?;
        sqlx::query("VACUUM ANALYZE stat_database")
            .execute(&store)
            .await?;
        anyhow::Ok(())
    };
    reset().await?;
    let t = Instant::now();
    for chunk in loaded.chunks(20_000) {
        let mut tx = store.begin().await?;
        stats::insert_stat_database(&mut tx, chunk).await?;
        tx.commit().await?;
    }
    let insert_secs = t.elapsed().as_secs_f64();
    reset().await?;
    let t = Instant::now();
    {
        let mut conn = store.acquire().await?;
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY stat_database ({STAT_DATABASE_COLUMNS}) FROM STDIN"
            ))
            .await?;
        copy.send(text.as_slice()).await?;
        copy.finish().await?;
    }
    let copy_secs = t.elapsed().as_secs_f64();
    let n = loaded.len() as f64;

    println!(
        "collector benchmark: {servers} servers over {clusters_n} clusters x {dbs} databases, concurrency {concurrency}"
    );
    println!("  servers up            {up}/{servers}");
    println!("  wall time             {wall:.2} s (`once --task stats`, process start to exit)");
    println!(
        "  collect phase         {:.2} s (connect, read, queue every server)",
        collect_ms as f64 / 1000.0
    );
    println!("  collector CPU time    {:.2} s", cpu_ms as f64 / 1000.0);
    println!("  collector peak RSS    {:.1} MB", rss_kb as f64 / 1024.0);
    println!("  rows written          {rows} ({stat_rows} stat_database rows)");
    println!(
        "  rollup refresh        {rollup_secs:.2} s (after the slot; in the service it runs in the background), {:.0} % of the slot's wall time",
        100.0 * rollup_secs / wall
    );
    println!(
        "  rollup refresh, full  {full_rollup_secs:.2} s (maintenance, hourly: the 2-hour lookback again, and purges)"
    );
    println!("  rows/s (end to end)   {:.0}", rows as f64 / wall);
    println!(
        "  /metrics scrape       {:.2} s first, {:.2} s and {:.2} s next; {:.1} MB; pgmon-api RSS {:.1} -> {:.1} MB",
        scrapes[0],
        scrapes[1],
        scrapes[2],
        body_len as f64 / 1e6,
        rss_idle as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    println!(
        "  write path            {:.0} rows/s ({} rows in {:.3} s)",
        n / insert_secs,
        loaded.len(),
        insert_secs
    );
    println!(
        "  COPY baseline         {:.0} rows/s ({copy_secs:.3} s)",
        n / copy_secs
    );
    println!("  write path / COPY     {:.0} %", 100.0 * copy_secs / insert_secs);
    Ok(())
}
