//! `/metrics` scraped by a real Prometheus (Debian's package, on a loopback port): the fleet under
//! postgres_exporter's names with the values the collector stored, `pg_up 0` for a dead server,
//! counters whose `rate()` stays non-negative across `pg_stat_reset()`, pgmon's own figures, and
//! the token and address guards.

use pgmon_tests::cluster::{Cluster, free_port};
use pgmon_tests::{Proc, TestEnv, bin, monitored, wait_for};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str, token_file: &std::path::Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: pgmon\n    \
                 metrics_path: /metrics\n    authorization:\n      credentials_file: {}\n    static_configs:\n      \
                 - targets: ['{target}']\n",
                token_file.display()
            ),
        )
        .expect("prometheus.yml");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian's package `prometheus`: ./scripts/test.sh installs it)");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    async fn query(&self, q: &str) -> Vec<Value> {
        let url = reqwest::Url::parse_with_params(
            &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            &[("query", q)],
        )
        .expect("url");
        // Before Prometheus listens, and while it starts (503, plain text), nothing is known.
        let Ok(resp) = reqwest::Client::new().get(url).send().await else {
            return Vec::new();
        };
        if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Vec::new();
        }
        let r: Value = resp.json().await.expect("json");
        r["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    async fn value(&self, q: &str) -> Option<f64> {
        self.query(q)
            .await
            .first()
            .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_fleet_under_postgres_exporter_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("metrics_token");
    std::fs::write(&token_file, "scrape-token-0123456789\n").expect("token");
    let env = TestEnv::new(
        "",
        &format!(
            "[collector]\ncollect_interval_secs = 1\nactivity_interval_secs = 1\nsize_update_interval_secs = 2\n\
             db_check_interval_secs = 3600\nmaintenance_interval_secs = 3600\n\n\
             [metrics]\nenabled = true\ntoken_file = \"{}\"\nallow = [\"127.0.0.1/32\"]\n",
            token_file.display()
        ),
    )
    .await;
    let cluster = Cluster::start();
    let store = env.db.pool().await;
    let api = env.spawn_api().await;
    cluster.login().register(&store, &env.fernet_key, "m").await;
    monitored::shared()
        .at_port(free_port())
        .register(&store, &env.fernet_key, "dead")
        .await;
    let _collector = Proc::spawn(
        &bin("pgmon-collector"),
        &env.config_path,
        &["run"],
        "pgmon-collector running",
    )
    .await;

    // The guards: a token is required, and only that token.
    let client = reqwest::Client::new();
    let status = |token: Option<&'static str>| {
        let (client, url) = (client.clone(), api.url("/metrics"));
        async move {
            let mut r = client.get(url);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send().await.expect("scrape").status().as_u16()
        }
    };
    assert_eq!(status(None).await, 401);
    assert_eq!(status(Some("scrape-token-wrong")).await, 401);
    assert_eq!(status(Some("scrape-token-0123456789")).await, 200);
    let om = client
        .get(api.url("/metrics"))
        .bearer_auth("scrape-token-0123456789")
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("scrape");
    assert!(
        om.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("application/openmetrics-text")
    );
    let body = om.text().await.expect("body");
    assert!(
        body.ends_with("# EOF\n"),
        "{}",
        &body[body.len().saturating_sub(200)..]
    );
    assert!(
        body.contains("# TYPE pgmon_api_requests counter\npgmon_api_requests_total{"),
        "an OpenMetrics counter family is named without _total, its samples with it"
    );

    let prom = Prometheus::start(api.base.trim_start_matches("http://"), &token_file);
    wait_for("Prometheus to scrape pgmon", Duration::from_secs(60), || async {
        prom.value("pg_up{server=\"m\"}").await == Some(1.0)
    })
    .await;
    assert_eq!(prom.value("pg_up{server=\"dead\"}").await, Some(0.0));
    assert!(
        prom.query("pg_stat_database_xact_commit{server=\"dead\"}")
            .await
            .is_empty(),
        "a dead server has no stale values"
    );
    // Values are the stored ones.
    let q = "pg_stat_database_xact_commit{server=\"m\",datname=\"postgres\"}";
    let scraped = prom.value(q).await.expect("xact_commit");
    let stored: Vec<i64> = sqlx::query_scalar(
        "SELECT xact_commit FROM stat_database WHERE datname = 'postgres'
           AND server_id = (SELECT id FROM servers WHERE name = 'm')",
    )
    .fetch_all(&store)
    .await
    .expect("stored");
    assert!(
        stored.contains(&(scraped as i64)),
        "{scraped} not among {stored:?}"
    );
    wait_for("sizes and activity", Duration::from_secs(30), || async {
        prom.value("pg_database_size_bytes{server=\"m\",datname=\"postgres\"}")
            .await
            > Some(1_000_000.0)
            && prom
                .value("pg_stat_activity_count{server=\"m\",state=\"idle\"}")
                .await
                .is_some()
    })
    .await;
    assert!(
        prom.value("pg_stat_bgwriter_buffers_alloc_total{server=\"m\"}")
            .await
            > Some(0.0)
    );
    assert!(prom.value("pgmon_wraparound_used_ratio{server=\"m\"}").await < Some(0.01));
    assert_eq!(
        prom.value("pg_replication_is_replica{server=\"m\"}").await,
        Some(0.0)
    );

    // A statistics reset: the counter goes down, rate() does not.
    let pool = cluster.pool("postgres").await;
    let high = prom.value(q).await.unwrap_or(0.0) + 50.0;
    for _ in 0..50 {
        sqlx::query("SELECT 1").execute(&pool).await.expect("commit");
    }
    wait_for("the commits to be scraped", Duration::from_secs(30), || async {
        prom.value(q).await >= Some(high)
    })
    .await;
    sqlx::query("SELECT pg_stat_reset()")
        .execute(&pool)
        .await
        .expect("reset");
    wait_for("the reset to be scraped", Duration::from_secs(30), || async {
        prom.value(&format!("resets({q}[1m])")).await >= Some(1.0)
    })
    .await;
    // The newest sample is from after the reset now.
    let high = prom.value(q).await.unwrap_or(0.0) + 50.0;
    for _ in 0..50 {
        sqlx::query("SELECT 1").execute(&pool).await.expect("commit");
    }
    wait_for(
        "the commits after the reset to be scraped",
        Duration::from_secs(30),
        || async { prom.value(q).await >= Some(high) },
    )
    .await;
    let rates = || async {
        prom.query(&format!("rate({q}[5s])[1m:1s]"))
            .await
            .first()
            .and_then(|s| s["values"].as_array().cloned())
            .unwrap_or_default()
    };
    wait_for(
        "five rates in the minute of the reset",
        Duration::from_secs(30),
        || async { rates().await.len() >= 5 },
    )
    .await;
    let rate = rates().await;
    assert!(rate.len() >= 5, "{rate:?}");
    for v in &rate {
        let x: f64 = v[1].as_str().and_then(|s| s.parse().ok()).unwrap_or(-1.0);
        assert!(x >= 0.0, "rate went negative: {rate:?}");
    }

    // pgmon's own figures, the collector's from the store.
    assert!(
        prom.value("sum(pgmon_api_requests_total{route=\"/metrics\"})")
            .await
            > Some(0.0)
    );
    assert!(
        prom.value("sum(pgmon_collector_task_runs_total{task=\"stats\"})")
            .await
            > Some(2.0)
    );
    assert!(prom.value("sum(pgmon_collector_rows_written_total)").await > Some(0.0));
    assert_eq!(prom.value("sum(pgmon_collector_up)").await, Some(1.0));
}

#[tokio::test]
async fn metrics_are_off_by_default_and_limited_to_allowed_addresses() {
    let env = TestEnv::new("", "").await;
    let api = env.spawn_api().await;
    let r = reqwest::get(api.url("/metrics")).await.expect("scrape");
    assert_eq!(r.status().as_u16(), 404);
    let env = TestEnv::new("", "[metrics]\nenabled = true\nallow = [\"10.0.0.0/8\"]\n").await;
    let api = env.spawn_api().await;
    let r = reqwest::get(api.url("/metrics")).await.expect("scrape");
    assert_eq!(r.status().as_u16(), 403);
    let env = TestEnv::new("", "[metrics]\nenabled = true\n").await;
    let api = env.spawn_api().await;
    let r = reqwest::get(api.url("/metrics")).await.expect("scrape");
    assert_eq!(r.status().as_u16(), 200, "loopback is allowed by default");
    let body = r.text().await.expect("body");
    assert!(body.contains("# TYPE pg_up gauge"), "{body}");
}
