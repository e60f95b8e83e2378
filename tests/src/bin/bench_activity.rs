//! Benchmark of `GET /api/servers/{name}/activity` with BENCH_SESSIONS (500) sessions on a throwaway
//! cluster (80% idle, 10% idle in transaction, 10% running `pg_sleep`, each with a 200-character
//! query text): p50 / p99 latency and response bytes, one client and BENCH_CLIENTS (8) at once,
//! against the plain SQL query (`SELECT * FROM pg_stat_activity`, read whole over one connection)
//! as the baseline. Run it with `scripts/bench-activity.sh`.

use pgmon_tests::bench::{percentile, rss_kib};
use pgmon_tests::cluster::Cluster;
use pgmon_tests::{TestEnv, http};
use sqlx::ConnectOptions;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn line(what: &str, mut lat: Vec<Duration>, bytes: usize, wall: Duration) {
    lat.sort();
    println!(
        "{what:<44} {:>7.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} requests, {bytes} bytes each)",
        lat.len() as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
        lat.len()
    );
}

#[tokio::main]
async fn main() {
    let sessions = env_num("BENCH_SESSIONS", 500);
    let clients = env_num("BENCH_CLIENTS", 8);
    let requests = env_num("BENCH_REQUESTS", 300);

    let cluster = Cluster::start();
    let env = TestEnv::new("login_attempts_per_minute = 1000000", "").await;
    env.add_user("bench", "viewer", "bench-password-1");
    let api = env.spawn_api().await;
    let store = env.db.pool().await;
    cluster.login().register(&store, &env.fernet_key, "busy").await;

    let opts = |app: String| {
        sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(cluster.port)
            .username("postgres")
            .database("postgres")
            .application_name(&app)
    };
    let pad = "x".repeat(150);
    let mut conns = Vec::new();
    let mut sleepers = Vec::new();
    for i in 0..sessions {
        let mut c = opts(format!("bench-{i}")).connect().await.expect("connect");
        let q = format!("SELECT {i} AS n, '{pad}' AS pad /* bench session */");
        sqlx::query(sqlx::AssertSqlSafe(q.clone()))
            .execute(&mut c)
            .await
            .expect("query");
        match i % 10 {
            0 => sleepers.push(tokio::spawn(async move {
                let _ = sqlx::query("SELECT pg_sleep(3600) /* a long-running bench query */")
                    .execute(&mut c)
                    .await;
            })),
            1 => {
                sqlx::query("BEGIN").execute(&mut c).await.expect("begin");
                sqlx::query(sqlx::AssertSqlSafe(q))
                    .execute(&mut c)
                    .await
                    .expect("q");
                conns.push(c);
            }
            _ => conns.push(c),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let token = http::token(&api.base, "bench", "bench-password-1").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let url = api.url("/api/servers/busy/activity");
    let get = |client: reqwest::Client, url: String, token: String| async move {
        let t = Instant::now();
        let r = client.get(url).bearer_auth(token).send().await.expect("GET");
        assert!(r.status().is_success());
        let body = r.bytes().await.expect("body");
        (t.elapsed(), body.len())
    };
    let (_, bytes) = get(client.clone(), url.clone(), token.clone()).await;
    let first: serde_json::Value = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    println!(
        "{} sessions on the server ({} listed by the API)",
        sessions, first["count"]
    );

    // Baseline: the plain query over one connection.
    let mut plain = opts("bench-baseline".into()).connect().await.expect("connect");
    let mut lat = Vec::new();
    let t0 = Instant::now();
    for _ in 0..requests {
        let t = Instant::now();
        let rows = sqlx::query("SELECT * FROM pg_stat_activity")
            .fetch_all(&mut plain)
            .await
            .expect("baseline");
        assert!(rows.len() >= sessions);
        lat.push(t.elapsed());
    }
    line(
        "SQL  SELECT * FROM pg_stat_activity, 1 client",
        lat,
        0,
        t0.elapsed(),
    );

    let mut lat = Vec::new();
    let t0 = Instant::now();
    for _ in 0..requests {
        lat.push(get(client.clone(), url.clone(), token.clone()).await.0);
    }
    line("API  GET /activity, 1 client", lat, bytes, t0.elapsed());

    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for _ in 0..requests / 4 {
                lat.push(get(client.clone(), url.clone(), token.clone()).await.0);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client"));
    }
    line(
        &format!("API  GET /activity, {clients} clients"),
        lat,
        bytes,
        t0.elapsed(),
    );
    println!("pgmon-api RSS after load: {} KiB", rss_kib(api.child.id()));
    for s in sleepers {
        s.abort();
    }
}
