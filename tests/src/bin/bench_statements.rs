//! Benchmark of the statements family on a server with BENCH_STATEMENTS (5,000) statements and
//! BENCH_TEXT_KB (100) KiB of query text each (500 MB): per stats slot of a running collector (the
//! first, which only takes the baseline; the second, which stores the top 100 and fetches their
//! texts; later ones) under a workload running 300 of the statements per slot, its wall time, the collector's CPU time and RSS, and the bytes the server
//! sent, counted by a TCP relay in front of it; against one plain `SELECT * FROM
//! pg_stat_statements` through the same relay. Run it with `scripts/bench-statements.sh`.

use pgmon_tests::bench::rss_kib;
use pgmon_tests::cluster::Cluster;
use pgmon_tests::{Proc, TestEnv, bin};
use sqlx::ConnectOptions;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Relays 127.0.0.1:<returned port> to `target`, counting the bytes the server sends.
async fn relay(target: u16, counted: Arc<AtomicU64>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = sr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::join!(up, down);
            });
        }
    });
    port
}

/// (user + system) CPU milliseconds of `pid`.
fn cpu_ms(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) * 10)
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let statements = env_num("BENCH_STATEMENTS", 5000);
    let text_kb = env_num("BENCH_TEXT_KB", 100);
    let cluster = Cluster::start_major(
        pgmon_tests::cluster::default_major(),
        &format!(
            "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.max = {}\n\
             pg_stat_statements.track = top\npg_stat_statements.track_utility = off",
            statements + 1000
        ),
    );
    let mut c = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(cluster.port)
        .username("postgres")
        .database("postgres")
        .connect()
        .await
        .expect("connect");
    sqlx::query("CREATE EXTENSION pg_stat_statements")
        .execute(&mut c)
        .await
        .expect("extension");
    eprintln!("creating {statements} statements with {text_kb} KiB of text each");
    let pad = "x".repeat(text_kb * 1024);
    for i in 0..statements {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE t{i} (x int)")))
            .execute(&mut c)
            .await
            .expect("table");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM t{i} /* {pad} */"
        )))
        .execute(&mut c)
        .await
        .expect("statement");
    }
    let texts: i64 = sqlx::query_scalar("SELECT sum(length(query))::int8 FROM pg_stat_statements")
        .fetch_one(&mut c)
        .await
        .expect("texts");
    let counted = Arc::new(AtomicU64::new(0));
    let port = relay(cluster.port, counted.clone()).await;

    // Baseline: the plain query, through the relay.
    let mut plain = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .database("postgres")
        .connect()
        .await
        .expect("connect through the relay");
    let before = counted.load(Ordering::Relaxed);
    let t = Instant::now();
    let rows = sqlx::query("SELECT * FROM pg_stat_statements")
        .fetch_all(&mut plain)
        .await
        .expect("baseline");
    let base_secs = t.elapsed().as_secs_f64();
    let base_bytes = counted.load(Ordering::Relaxed) - before;
    drop(rows);
    drop(plain);

    let env = TestEnv::new(
        "",
        "[collector]\ncollect_interval_secs = 10\nactivity_interval_secs = 3600\nsize_update_interval_secs = 3600\n\
         db_check_interval_secs = 3600\nmaintenance_interval_secs = 3600\n",
    )
    .await;
    let (code, out, err) =
        pgmon_tests::run_cli(&bin("pgmon-collector"), &env.config_path, &["migrate"], None);
    assert_eq!(code, 0, "{out} {err}");
    let store = env.db.pool().await;
    cluster
        .login()
        .at_port(port)
        .register(&store, &env.fernet_key, "busy")
        .await;
    // A workload: 300 different statements of the 5,000 between two slots, so that each slot's top
    // 100 changes and texts are fetched.
    let load_port = cluster.port;
    let load_pad = pad.clone();
    let workload = tokio::spawn(async move {
        let mut c = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(load_port)
            .username("postgres")
            .database("postgres")
            .connect()
            .await
            .expect("connect");
        let mut i: usize = 0;
        loop {
            i = (i + 7919) % statements;
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM t{i} /* {load_pad} */"
            )))
            .execute(&mut c)
            .await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let collector = Proc::spawn(
        &bin("pgmon-collector"),
        &env.config_path,
        &["run"],
        "pgmon-collector running",
    )
    .await;
    let pid = collector.child.id();
    println!(
        "statements benchmark: {statements} statements, {:.0} MB of query text on the server",
        texts as f64 / 1e6
    );
    println!(
        "  baseline: SELECT * FROM pg_stat_statements   {base_secs:.2} s, {:.1} MB from the server",
        base_bytes as f64 / 1e6
    );
    let mut last_slot = None;
    let mut last_cpu = cpu_ms(pid);
    let mut last_bytes = counted.load(Ordering::Relaxed);
    for n in 1..=4 {
        // Wait for the next stats run to be recorded.
        let deadline = Instant::now() + Duration::from_secs(120);
        let (slot, ms) = loop {
            let row: Option<(Option<chrono::DateTime<chrono::Utc>>, Option<serde_json::Value>)> =
                sqlx::query_as(
                    "SELECT (tasks->'stats'->>'slot')::timestamptz, tasks->'stats' FROM collector_instances
                 WHERE stopped_at IS NULL ORDER BY last_seen_at DESC LIMIT 1",
                )
                .fetch_optional(&store)
                .await
                .expect("heartbeat");
            if let Some((Some(slot), Some(t))) = row
                && Some(slot) != last_slot
            {
                break (slot, t["duration_ms"].as_u64().unwrap_or(0));
            }
            assert!(Instant::now() < deadline, "no stats run");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        last_slot = Some(slot);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu = cpu_ms(pid);
        let bytes = counted.load(Ordering::Relaxed);
        let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM stat_statements WHERE slot = $1")
            .bind(slot)
            .fetch_one(&store)
            .await
            .expect("kept");
        let what = match n {
            1 => "first slot (baseline only)",
            2 => "second slot (top kept, texts fetched)",
            _ => "steady state",
        };
        println!(
            "  slot {n}: {what:<38} wall {ms:>5} ms  collector CPU {:>5} ms  RSS {:>6.1} MB  from the server {:>7.2} MB  statements kept {kept}",
            cpu - last_cpu,
            rss_kib(pid) as f64 / 1024.0,
            (bytes - last_bytes) as f64 / 1e6,
        );
        last_cpu = cpu;
        last_bytes = bytes;
    }
    workload.abort();
}
