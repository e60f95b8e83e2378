//! Benchmark of `GET /servers`, which every browser of the original frontend polls every 10 s: 200
//! registered servers (190 on a throwaway cluster, 10 black-holed: they accept TCP and never answer)
//! polled by 20 concurrent clients. Prints p50, p99 and the slowest request, against the black-holed
//! servers' 5 s connect deadline, and pgmon-api's RSS. Run it with `scripts/bench-servers.sh`.
//!
//! Environment: BENCH_SERVERS (200), BENCH_BLACKHOLED (10), BENCH_CLIENTS (20), BENCH_SECS (30).

use pgmon_tests::bench::{percentile, rss_kib};
use pgmon_tests::cluster::Cluster;
use pgmon_tests::{TestEnv, http};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let servers = env_num("BENCH_SERVERS", 200);
    let holes = env_num("BENCH_BLACKHOLED", 10).min(servers);
    let clients = env_num("BENCH_CLIENTS", 20);
    let secs = env_num("BENCH_SECS", 30) as u64;

    let cluster = Cluster::start();
    let env = TestEnv::new("login_attempts_per_minute = 1000000", "").await;
    env.add_user("bench", "viewer", "bench-password-1");
    let api = env.spawn_api().await;
    let pool = env.db.pool().await;
    // Listeners that accept connections into their backlog and never read or answer.
    let mut black_holes = Vec::new();
    for i in 0..servers {
        let login = if i < holes {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = l.local_addr().expect("addr").port();
            black_holes.push(l);
            cluster.login().at_port(port)
        } else {
            cluster.login()
        };
        login
            .register(&pool, &env.fernet_key, &format!("srv{i:03}"))
            .await;
    }
    let token = http::token(&api.base, "bench", "bench-password-1").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let url = api.url("/servers");
    let get = |client: reqwest::Client, url: String, token: String| async move {
        let t = Instant::now();
        let ok = match client.get(url).bearer_auth(token).send().await {
            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
            _ => false,
        };
        (ok, t.elapsed())
    };
    let (_, first) = get(client.clone(), url.clone(), token.clone()).await;
    println!("{servers} servers ({holes} black-holed), {clients} clients polling GET /servers for {secs} s");
    println!(
        "first request (nothing known yet): {:.1} ms",
        first.as_secs_f64() * 1000.0
    );
    println!("pgmon-api RSS before load: {} KiB", rss_kib(api.child.id()));
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0u64;
            while Instant::now() < stop {
                let (ok, d) = get(client.clone(), url.clone(), token.clone()).await;
                if ok {
                    lat.push(d);
                } else {
                    failed += 1;
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        if let Ok((l, f)) = t.await {
            lat.extend(l);
            failed += f;
        }
    }
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "GET /servers: {} requests ({failed} failed), {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, slowest {:.2} ms \
         (the black-holed servers' connect deadline: 5000 ms)",
        lat.len(),
        lat.len() as f64 / secs as f64,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default())
    );
    let list: serde_json::Value = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let rows = list.as_array().cloned().unwrap_or_default();
    let ok = rows.iter().filter(|s| s["status"] == "ok").count();
    let down = rows
        .iter()
        .filter(|s| s["status"].as_str().is_some_and(|t| t.contains("error")))
        .count();
    println!(
        "statuses at the end: {ok} ok, {down} down, {} other",
        rows.len() - ok - down
    );
    println!("pgmon-api RSS after load: {} KiB", rss_kib(api.child.id()));
    drop(black_holes);
}
