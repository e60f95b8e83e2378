//! Benchmark: `/api/health` latency while 16 clients log in continuously, and pgmon-api RSS idle and
//! under that load. Run through `scripts/bench-auth.sh` (release build, production bcrypt cost 12).

use pgmon_tests::bench::{percentile, rss_kib};
use pgmon_tests::{TestEnv, http};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let env = TestEnv::new("bcrypt_cost = 12\nlogin_attempts_per_minute = 1000000000", "").await;
    // TestEnv lowers bcrypt_cost to 4 first; the later key in [api] would clash, so rewrite it.
    let cfg = std::fs::read_to_string(&env.config_path)
        .expect("config")
        .replacen("bcrypt_cost = 4\n", "", 1);
    std::fs::write(&env.config_path, cfg).expect("config");
    env.add_user("bench", "viewer", "bench-password-1");
    let api = env.spawn_api().await;
    let pid = api.child.id();
    let client = http::client();
    for _ in 0..50 {
        let _ = client.get(api.url("/api/health")).send().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid);

    let stop = Instant::now() + Duration::from_secs(secs);
    let mut logins = Vec::new();
    for _ in 0..CLIENTS {
        let base = api.base.clone();
        logins.push(tokio::spawn(async move {
            let c = http::client();
            let mut n = 0u64;
            while Instant::now() < stop {
                let r = c
                    .post(format!("{base}/token"))
                    .form(&[("username", "bench"), ("password", "bench-password-1")])
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut lat = Vec::new();
    let mut peak_rss = 0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while Instant::now() < stop {
        let t = Instant::now();
        let ok = client
            .get(api.url("/api/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            lat.push(t.elapsed());
        }
        if lat.len() % 50 == 0 {
            peak_rss = peak_rss.max(rss_kib(pid));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut total_logins = 0;
    for l in logins {
        total_logins += l.await.unwrap_or(0);
    }
    lat.sort();
    println!(
        "pgmon-api auth benchmark ({secs} s, {CLIENTS} clients logging in, bcrypt cost 12, release build)"
    );
    println!(
        "  logins completed:        {total_logins} ({:.1}/s)",
        total_logins as f64 / secs as f64
    );
    println!("  /api/health samples:     {}", lat.len());
    println!(
        "  /api/health p50:         {:.2} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1000.0
    );
    println!(
        "  /api/health p99:         {:.2} ms (target <= 5 ms)",
        percentile(&lat, 0.99).as_secs_f64() * 1000.0
    );
    println!(
        "  RSS idle:                {:.1} MB (target <= 20 MB)",
        idle_rss as f64 / 1024.0
    );
    println!("  RSS under login storm:   {:.1} MB", peak_rss as f64 / 1024.0);
}
