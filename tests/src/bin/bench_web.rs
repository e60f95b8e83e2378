//! Benchmark of the web UI at fleet size, in Debian's Chromium (`web/e2e/bench.mjs`): the fleet page
//! with 1,000 servers (first render, and a refresh: the new answer fetched and drawn), and a server
//! page over a year of 10-minute history (5 databases), from navigation until every chart is drawn.
//! The store is generated with SQL into a fresh database; the 1,000 servers point at a closed port
//! (down, as a dead fleet member is). Run it with `scripts/bench-web.sh`; it prints the figures.

use chrono::{DateTime, TimeDelta, Utc};
use pgmon_tests::{TestDb, TestEnv};
use std::path::PathBuf;
use std::time::Instant;

const FLEET: i64 = 1000;
const YEAR_DBS: i64 = 5;

async fn exec(pool: &sqlx::PgPool, sql: &'static str, binds: (i64, DateTime<Utc>, i64)) {
    sqlx::query(sql)
        .bind(binds.0)
        .bind(binds.1)
        .bind(binds.2)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::main]
async fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf();
    let dist = repo.join("web/dist");
    assert!(
        dist.join("index.html").exists(),
        "build the UI first (scripts/bench-web.sh does)"
    );
    let env = TestEnv::with_db(
        TestDb::new().await,
        &format!(
            "login_attempts_per_minute = 1000000\nweb_dir = \"{}\"",
            dist.display()
        ),
        "",
    );
    env.add_user("bench", "admin", "bench-password-1");
    let api = env.spawn_api().await;
    let pool = env.db.pool().await;
    let now = Utc::now();
    let t = Instant::now();
    let t0 = now - TimeDelta::days(365);
    let t0 = DateTime::from_timestamp(t0.timestamp() - t0.timestamp() % 600, 0).expect("t0");
    pgmon_shared::store::stats::ensure_partitions(&pool, t0, now + TimeDelta::days(31))
        .await
        .expect("partitions");
    // The fleet: 1,000 servers with 6 hours of one database's counters (the sparklines).
    sqlx::query(
        "INSERT INTO servers (name, host, port, dbname, username, sslmode, pool)
         SELECT 'pg-' || lpad(i::text, 4, '0'), '127.0.0.1', 9, 'postgres', 'postgres', 'disable', 'default'
         FROM generate_series(1, $1) i",
    )
    .bind(FLEET)
    .execute(&pool)
    .await
    .expect("servers");
    let recent =
        DateTime::from_timestamp(now.timestamp() - now.timestamp() % 600 - 6 * 3600, 0).expect("recent");
    exec(
        &pool,
        "INSERT INTO stat_database (server_id, slot, datid, datname, collected_at, postmaster_start,
             numbackends, xact_commit, xact_rollback, blks_read, blks_hit)
         SELECT s.id, $2::timestamptz + n * interval '10 min', 16384, 'app', $2::timestamptz + n * interval '10 min',
                $2::timestamptz - interval '1 day', 5, n * (600 + s.id * 7 + (n % 5) * 100), n, n * 10, n * 1000
         FROM servers s, generate_series(0, $3 - 1) n WHERE s.id <= $1",
        (FLEET, recent, 36),
    )
    .await;
    exec(
        &pool,
        "INSERT INTO availability (server_id, slot, collected_at, up, latency_ms)
         SELECT s.id, $2::timestamptz + n * interval '10 min', $2::timestamptz + n * interval '10 min', true, 2
         FROM servers s, generate_series(0, $3 - 1) n WHERE s.id <= $1",
        (FLEET, recent, 36),
    )
    .await;
    // One server with a year of history.
    let year: i64 = sqlx::query_scalar(
        "INSERT INTO servers (name, host, port, dbname, username, sslmode, pool)
         VALUES ('year', '127.0.0.1', 9, 'postgres', 'postgres', 'disable', 'default') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("year server");
    let slots = 365 * 144;
    sqlx::query(
        "INSERT INTO stat_database (server_id, slot, datid, datname, collected_at, postmaster_start,
             numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched,
             tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks)
         SELECT $1, $2::timestamptz + n * interval '10 min', 16384 + d, 'db' || d,
                $2::timestamptz + n * interval '10 min' + interval '2 s', $2::timestamptz - interval '1 day',
                (d + n) % 17, n * (600 + d * 10) + (n % 144) * (n % 144) * d, n * 3, n * 120, n * 12000,
                n * 50000, n * 9000, n * 300, n * 200, n * 20, 0, n / 100, n * 4096, n / 5000
         FROM generate_series(0, $3 - 1) n, generate_series(1, $4) d",
    )
    .bind(year)
    .bind(t0)
    .bind(slots)
    .bind(YEAR_DBS)
    .execute(&pool)
    .await
    .expect("stat_database");
    for (sql, every) in [
        (
            "INSERT INTO db_size (server_id, slot, datname, collected_at, size_bytes)
             SELECT $1, $2::timestamptz + n * interval '30 min', 'db' || d, $2::timestamptz + n * interval '30 min',
                    1000000000 + n * 10000 * d
             FROM generate_series(0, $3 - 1) n, generate_series(1, 5) d",
            3,
        ),
        (
            "INSERT INTO availability (server_id, slot, collected_at, up, latency_ms)
             SELECT $1, $2::timestamptz + n * interval '10 min', $2::timestamptz + n * interval '10 min', n % 1000 <> 0, 2
             FROM generate_series(0, $3 - 1) n",
            1,
        ),
        (
            "INSERT INTO disk_usage (server_id, slot, collected_at, mount, total_bytes, used_bytes, available_bytes)
             SELECT $1, $2::timestamptz + n * interval '30 min', $2::timestamptz + n * interval '30 min', '/',
                    1000000000000, 400000000000 + n * 1000000, 600000000000 - n * 1000000
             FROM generate_series(0, $3 - 1) n",
            3,
        ),
    ] {
        exec(&pool, sql, (year, t0, slots / every)).await;
    }
    sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
    println!("generated the store in {:.0} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    pgmon_shared::store::rollups::refresh_rollups(&pool)
        .await
        .expect("rollups");
    println!("rolled up in {:.0} s", t.elapsed().as_secs_f64());

    let status = std::process::Command::new("node")
        .arg(repo.join("web/e2e/bench.mjs"))
        .env("PGMON_URL", &api.base)
        .env(
            "CHROMIUM",
            std::env::var("PGMON_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
        )
        .status()
        .expect("node");
    assert!(status.success(), "the browser benchmark failed");
}
