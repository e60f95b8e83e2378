//! Benchmark of the history read path: 12 months of 10-minute snapshots for 10 servers x 20 databases
//! generated with SQL straight into a fresh store, rolled up, then loaded with 64 concurrent clients.
//! Prints req/s, p50 and p99 per scenario for: the API (`API`), the rollup scan it runs as plain SQL
//! (`SQL`), and the store call the handler makes, i.e. that statement plus the rate computation
//! (`STORE`); first with 64 concurrent clients, then with one (`x1`: the time of one request). The API
//! runs three times: as configured (`API`: a window asked before is answered from the response
//! cache), with the response cache off (`API computed`: every answer computed, packed chunks from
//! memory) and, for one client, with both caches off (`API no caches`, as after a restart). The
//! configured API is loaded again while one server's data changes every second.
//! Also pgmon-api's RSS. Run through `scripts/bench-stats.sh`.

use chrono::{DateTime, TimeDelta, Utc};
use pgmon_tests::bench::{percentile, rss_kib};
use pgmon_tests::{TestDb, TestEnv, http};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVERS: i64 = 10;
const DBS: i64 = 20;
const CLIENTS: usize = 64;

struct Outcome {
    ok: u64,
    failed: u64,
    lat: Vec<Duration>,
    elapsed: Duration,
}

impl Outcome {
    fn print(&self, label: &str) {
        println!(
            "{label:<44} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ok, {} failed)",
            self.ok as f64 / self.elapsed.as_secs_f64(),
            percentile(&self.lat, 0.50).as_secs_f64() * 1000.0,
            percentile(&self.lat, 0.99).as_secs_f64() * 1000.0,
            self.ok,
            self.failed
        );
    }
}

/// Runs `job(i)` from `clients` tasks for `secs` seconds.
async fn load<F, Fut>(clients: usize, secs: u64, job: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let job = Arc::new(job);
    let start = Instant::now();
    let stop = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut lat) = (0u64, 0u64, Vec::new());
            let mut i = c as u64 * 7919;
            while Instant::now() < stop {
                let t = Instant::now();
                if job(i).await {
                    ok += 1;
                    lat.push(t.elapsed());
                } else {
                    failed += 1;
                }
                i += 1;
            }
            (ok, failed, lat)
        }));
    }
    let mut out = Outcome {
        ok: 0,
        failed: 0,
        lat: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        if let Ok((ok, failed, lat)) = t.await {
            out.ok += ok;
            out.failed += failed;
            out.lat.extend(lat);
        }
    }
    out.elapsed = start.elapsed();
    out.lat.sort();
    out
}

async fn generate(pool: &PgPool, now: DateTime<Utc>) -> Vec<i64> {
    let t0 = now - TimeDelta::days(365);
    let t0 = DateTime::from_timestamp(t0.timestamp() - t0.timestamp() % 600, 0).expect("t0");
    let slots = 365 * 144;
    pgmon_shared::store::stats::ensure_partitions(pool, t0, now + TimeDelta::days(31))
        .await
        .expect("partitions");
    let mut ids = Vec::new();
    for s in 0..SERVERS {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO servers (name, host, port, dbname, username, sslmode, pool)
             VALUES ($1, '127.0.0.1', 5432, 'postgres', 'postgres', 'disable', 'default') RETURNING id",
        )
        .bind(format!("srv{s}"))
        .fetch_one(pool)
        .await
        .expect("server");
        let t = Instant::now();
        // Cumulative counters growing at a rate that depends on the database and the time of day.
        sqlx::query(
            "INSERT INTO stat_database (server_id, slot, datid, datname, collected_at, postmaster_start,
                 numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched,
                 tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks)
             SELECT $1, $2::timestamptz + n * interval '10 min', 16384 + d, 'db' || d,
                    $2::timestamptz + n * interval '10 min' + interval '2 s', $2::timestamptz - interval '1 day',
                    (d + n) % 17, n * (600 + d * 10), n * 3, n * 120, n * 12000, n * 50000, n * 9000,
                    n * 300, n * 200, n * 20, 0, n / 100, n * 4096, n / 5000
             FROM generate_series(0, $3 - 1) n, generate_series(1, $4) d",
        )
        .bind(id)
        .bind(t0)
        .bind(slots)
        .bind(DBS)
        .execute(pool)
        .await
        .expect("stat_database");
        sqlx::query(
            "INSERT INTO db_size (server_id, slot, datname, collected_at, size_bytes)
             SELECT $1, $2::timestamptz + n * interval '30 min', 'db' || d, $2::timestamptz + n * interval '30 min',
                    1000000000 + n * 10000 * d
             FROM generate_series(0, $3 / 3 - 1) n, generate_series(1, $4) d",
        )
        .bind(id)
        .bind(t0)
        .bind(slots)
        .bind(DBS)
        .execute(pool)
        .await
        .expect("db_size");
        sqlx::query(
            "INSERT INTO availability (server_id, slot, collected_at, up, latency_ms)
             SELECT $1, $2::timestamptz + n * interval '10 min', $2::timestamptz + n * interval '10 min', n % 1000 <> 0, 2
             FROM generate_series(0, $3 - 1) n",
        )
        .bind(id)
        .bind(t0)
        .bind(slots)
        .execute(pool)
        .await
        .expect("availability");
        sqlx::query(
            "INSERT INTO disk_usage (server_id, slot, collected_at, mount, total_bytes, used_bytes, available_bytes)
             SELECT $1, $2::timestamptz + n * interval '30 min', $2::timestamptz + n * interval '30 min', '/',
                    1000000000000, 400000000000 + n * 1000000, 600000000000 - n * 1000000
             FROM generate_series(0, $3 / 3 - 1) n",
        )
        .bind(id)
        .bind(t0)
        .bind(slots)
        .execute(pool)
        .await
        .expect("disk_usage");
        println!(
            "generated srv{s}: {} snapshots in {:.1} s",
            slots * DBS,
            t.elapsed().as_secs_f64()
        );
        ids.push(id);
    }
    sqlx::query("ANALYZE").execute(pool).await.expect("analyze");
    ids
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    // BENCH_DB=<name> keeps the generated store in that database and reuses it on the next run
    // (the time axis is then the first run's); by default a throwaway database is used.
    let kept = std::env::var("BENCH_DB").ok().filter(|v| !v.is_empty());
    let db = match &kept {
        Some(name) => TestDb::kept(name).await,
        None => TestDb::new().await,
    };
    let env = TestEnv::with_db(db, "login_attempts_per_minute = 1000000000", "");
    let api = env.spawn_api().await; // migrates the store
    let pid = api.child.id();
    let api_bin = pgmon_tests::bin("pgmon-api");
    let spawn_with = |env_vars: &'static [(&'static str, &'static str)]| {
        pgmon_tests::Proc::spawn_env(
            &api_bin,
            &env.config_path,
            &["serve"],
            "pgmon-api listening on ",
            env_vars,
        )
    };
    let computed = spawn_with(&[("PGMON_API__HISTORY_RESPONSE_CACHE_MB", "0")]).await;
    let uncached = spawn_with(&[
        ("PGMON_API__HISTORY_RESPONSE_CACHE_MB", "0"),
        ("PGMON_API__HISTORY_CACHE_MB", "0"),
    ])
    .await;
    // Pooled like pgmon-api's store pool (10 connections, no ping before each query).
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .connect(&env.db.url)
        .await
        .expect("store");
    let existing: Vec<i64> = sqlx::query_scalar("SELECT id FROM servers WHERE name LIKE 'srv%' ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("servers");
    let (ids, now) = if existing.len() == SERVERS as usize {
        let newest: DateTime<Utc> = sqlx::query_scalar("SELECT max(slot) FROM stat_database")
            .fetch_one(&pool)
            .await
            .expect("newest slot");
        println!("reusing the data generated earlier in {}", env.db.name);
        (existing, newest)
    } else {
        env.add_user("bench", "viewer", "bench-password-1");
        let now = Utc::now();
        let t = Instant::now();
        let ids = generate(&pool, now).await;
        println!(
            "generated 12 months x {SERVERS} servers x {DBS} databases in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        (ids, now)
    };
    let t = Instant::now();
    let rows = pgmon_shared::store::rollups::refresh_rollups(&pool)
        .await
        .expect("rollups");
    println!("rollup: {rows} rows in {:.0} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    pgmon_shared::store::rollups::refresh_rollups(&pool)
        .await
        .expect("rollups");
    println!(
        "incremental rollup with nothing new: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    sqlx::query("VACUUM ANALYZE stat_rollup, stat_rollup_chunk")
        .execute(&pool)
        .await
        .expect("vacuum");

    let token = http::token(&api.base, "bench", "bench-password-1").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let to = fmt(now);
    println!("pgmon-api RSS before load: {} KiB", rss_kib(pid));
    let scenarios: [(&str, i64, bool); 3] = [
        ("GET /servers/{s}/databases/{d}/history, 7 days", 7, true),
        ("GET /servers/{s}/databases/{d}/history, 365 days", 365, true),
        ("GET /servers/{s}/history, 30 days", 30, false),
    ];
    for (label, days, per_db) in scenarios {
        let from = fmt(now - TimeDelta::days(days));
        let (base, token, client, to) = (api.base.clone(), token.clone(), client.clone(), to.clone());
        let first_url = if per_db {
            format!("{base}/servers/srv0/databases/db1/history?from={from}&to={to}")
        } else {
            format!("{base}/servers/srv0/history?from={from}&to={to}")
        };
        let sample: serde_json::Value = client
            .get(&first_url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let points = sample["time"].as_array().map_or(0, Vec::len);
        let step = sample["step"].as_i64().unwrap_or(0);
        let job_for = |base: String| {
            let (token, client, from, to) = (token.clone(), client.clone(), from.clone(), to.clone());
            move |i: u64| {
                let s = i % SERVERS as u64;
                let d = 1 + (i / SERVERS as u64) % DBS as u64;
                let url = if per_db {
                    format!("{base}/servers/srv{s}/databases/db{d}/history?from={from}&to={to}")
                } else {
                    format!("{base}/servers/srv{s}/history?from={from}&to={to}")
                };
                let req = client.get(url).bearer_auth(token.clone());
                async move {
                    match req.send().await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    }
                }
            }
        };
        let api_job = job_for(base.clone());
        let computed_job = job_for(computed.base.clone());
        let uncached_job = job_for(uncached.base.clone());
        let out = load(CLIENTS, secs, api_job.clone()).await;
        out.print(&format!("API  {label}"));
        println!(
            "     ({points} points, step {step} s; pgmon-api RSS now {} KiB)",
            rss_kib(pid)
        );
        // The same load while the store reports a change to one server's rows every second (60 times
        // the rate of a 10-server fleet collected every 10 minutes): each drops that server's kept
        // answers. The UPDATE touches no value a history read uses; its trigger notifies all the same.
        let churn = {
            let (pool, ids) = (pool.clone(), ids.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = sqlx::query(
                        "UPDATE stat_rollup_state SET refreshed_at = now()
                         WHERE server_id = $1 AND source = 'stat_database'",
                    )
                    .bind(ids[i % ids.len()])
                    .execute(&pool)
                    .await;
                }
            })
        };
        load(CLIENTS, secs, api_job.clone())
            .await
            .print(&format!("API, a server changing every 1 s, {label}"));
        churn.abort();
        load(CLIENTS, secs, computed_job.clone())
            .await
            .print(&format!("API computed {label}"));

        // `fold = false`: the statement the API runs, straight from sqlx (the plain-SQL baseline: no
        // rates, no JSON, no HTTP, no authentication); `true`: the store call the handler makes, that
        // statement plus the rate computation. Same concurrency as the API.
        let first = pgmon_shared::stats::rates::bucket_start(now - TimeDelta::days(days), step);
        let window = pgmon_shared::store::stats_read::Window {
            first,
            end: pgmon_shared::stats::rates::bucket_start(now, step) + TimeDelta::seconds(step),
            step_secs: step,
            max_gap_secs: 1200.0,
        };
        let store_job = |fold: bool| {
            let (pool, ids) = (pool.clone(), ids.clone());
            // No chunk cache: the store call as it is on a cold cache.
            let no_cache = Arc::new(pgmon_shared::store::chunk_cache::ChunkCache::new(0));
            move |i: u64| {
                let (pool, no_cache) = (pool.clone(), no_cache.clone());
                let id = ids[(i % SERVERS as u64) as usize];
                let db = per_db.then(|| format!("db{}", 1 + (i / SERVERS as u64) % DBS as u64));
                async move {
                    use pgmon_shared::store::stats_read::{history, history_rows};
                    if fold {
                        history(&pool, &no_cache, id, db.as_deref(), &window)
                            .await
                            .is_ok()
                    } else {
                        history_rows(&pool, id, db.as_deref(), &window, &[]).await.is_ok()
                    }
                }
            }
        };
        let (sql_job, fold_job) = (store_job(false), store_job(true));
        load(CLIENTS, secs, sql_job.clone())
            .await
            .print(&format!("SQL  {label}"));
        load(CLIENTS, secs, fold_job.clone())
            .await
            .print(&format!("STORE {label}"));
        // One client: the time of one request, without queueing.
        load(1, 3, api_job).await.print(&format!("API  x1 {label}"));
        load(1, 3, computed_job)
            .await
            .print(&format!("API  x1 computed {label}"));
        load(1, 3, uncached_job)
            .await
            .print(&format!("API  x1 no caches {label}"));
        load(1, 3, sql_job).await.print(&format!("SQL  x1 {label}"));
        load(1, 3, fold_job).await.print(&format!("STORE x1 {label}"));
    }
    // The original backend's server page: every database's timeline, with its bucket rules (hours up
    // to 14 days, 4 hours up to 90), as its frontend asks for it.
    let iso = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    for days in [7, 90] {
        let range = format!(
            "start_date={}&end_date={}",
            iso(now - TimeDelta::days(days)),
            iso(now)
        );
        let job_for = |base: String| {
            let (token, client, range) = (token.clone(), client.clone(), range.clone());
            move |i: u64| {
                let url = format!("{base}/server/srv{}/stats?{range}", i % SERVERS as u64);
                let req = client.get(url).bearer_auth(token.clone());
                async move {
                    match req.send().await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    }
                }
            }
        };
        let sample: serde_json::Value = client
            .get(format!("{}/server/srv0/stats?{range}", api.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let label = format!("GET /server/{{s}}/stats (original page), {days} days");
        load(CLIENTS, secs, job_for(api.base.clone()))
            .await
            .print(&format!("API  {label}"));
        println!(
            "     ({} databases, {} timeline points, aggregation {})",
            sample["databases"].as_array().map_or(0, Vec::len),
            sample["connection_timeline"].as_array().map_or(0, Vec::len),
            sample["aggregation"]
        );
        load(CLIENTS, secs, job_for(computed.base.clone()))
            .await
            .print(&format!("API computed {label}"));
        load(1, 3, job_for(computed.base.clone()))
            .await
            .print(&format!("API  x1 computed {label}"));
    }
    // For reference: the naive query computing the same 365-day series from the raw table.
    let t = Instant::now();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
           SELECT date_bin('12 hours', slot, 'epoch'::timestamptz) b, sum(d)
           FROM (SELECT slot, xact_commit - lag(xact_commit) OVER (ORDER BY slot) d
                 FROM stat_database WHERE server_id = $1 AND datname = 'db1' AND slot >= $2) x
           GROUP BY b) y",
    )
    .bind(ids[0])
    .bind(now - TimeDelta::days(365))
    .fetch_one(&pool)
    .await
    .expect("raw query");
    println!(
        "raw table, 365 days, one database, one counter, no rollup: {:.1} ms ({n} points)",
        t.elapsed().as_secs_f64() * 1000.0
    );
    println!("pgmon-api RSS after load: {} KiB", rss_kib(pid));
}
