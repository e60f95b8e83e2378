//! pgmon's web UI in a real browser: Debian's Chromium driven by playwright-core (`web/e2e/run.mjs`),
//! against the real binaries, a real store and a real monitored PostgreSQL (a primary with
//! pg_stat_statements and a streaming standby).
//!
//! This side prepares what a user would see (collected history, a lock wait, a long `pg_sleep`) and
//! checks what only the server can tell: the cancel clicked in the UI really ended the `pg_sleep`.
//! The script checks the pages and saves a screenshot of each under `target/web-screenshots/`.

use pgmon_tests::cluster::{Cluster, default_major};
use pgmon_tests::{Proc, TestEnv, bin, bin_dir, http, wait_for};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn chromium() -> String {
    std::env::var("PGMON_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// The UI must have been built (`scripts/test.sh` does it) and playwright-core installed.
fn web_ready() -> PathBuf {
    let web = repo().join("web");
    let dist = web.join("dist");
    assert!(
        dist.join("index.html").exists(),
        "web/dist is not built: run `cd web && npm ci && npm run build` (scripts/test.sh does)"
    );
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `cd web && npm ci` (scripts/test.sh does)"
    );
    assert!(
        std::path::Path::new(&chromium()).exists(),
        "{} not found: apt install chromium (scripts/test.sh does)",
        chromium()
    );
    dist
}

async fn get(base: &str, token: &str, path: &str) -> Value {
    let (status, body) = http::call("GET", &format!("{base}/api{path}"), Some(token), None).await;
    assert!(status.is_success(), "GET {path}: {status} {body}");
    body
}

fn non_null(v: &Value) -> usize {
    v.as_array()
        .map(|a| a.iter().filter(|x| !x.is_null()).count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_in_a_real_browser() {
    let dist = web_ready();
    let major = default_major();
    let primary = Cluster::start_major(
        major,
        "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n\
         wal_level = replica\nmax_wal_senders = 5\nmax_replication_slots = 5\n",
    );
    let standby = Cluster::standby_of(&primary, "replica_slot", "").await;
    let admin_pool = primary.pool("postgres").await;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&admin_pool)
        .await
        .expect("create pg_stat_statements");
    sqlx::query("CREATE DATABASE shop")
        .execute(&admin_pool)
        .await
        .expect("create database");
    let shop = primary.pool("shop").await;
    sqlx::query("CREATE TABLE orders (id serial PRIMARY KEY, total numeric)")
        .execute(&shop)
        .await
        .expect("create table");

    let env = TestEnv::new(
        &format!(
            "login_attempts_per_minute = 1000\nweb_dir = \"{}\"",
            dist.display()
        ),
        "[collector]\ncollect_interval_secs = 2\nactivity_interval_secs = 1\nsize_update_interval_secs = 2\n\
         db_check_interval_secs = 2\nmaintenance_interval_secs = 3600\n",
    )
    .await;
    env.add_user("admin", "admin", "admin-password-1");
    env.add_user("view", "viewer", "viewer-password-1");
    let api = env.spawn_api().await;
    let store = env.db.pool().await;
    primary.login().register(&store, &env.fernet_key, "primary").await;
    let _collector = Proc::spawn(
        &bin("pgmon-collector"),
        &env.config_path,
        &["run"],
        "pgmon-collector running",
    )
    .await;

    // A workload, so that every chart and the statements have something to show.
    let work = {
        let shop = shop.clone();
        tokio::spawn(async move {
            for i in 0..100_000u64 {
                let _ = sqlx::query("INSERT INTO orders (total) VALUES ($1::numeric)")
                    .bind(i.to_string())
                    .execute(&shop)
                    .await;
                let _ = sqlx::query("SELECT count(*), sum(total) FROM orders WHERE id > $1")
                    .bind(i64::try_from(i).unwrap_or(0))
                    .execute(&shop)
                    .await;
                // Pacing, not waiting: a steady trickle of work spread over the collections.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let token = http::token(&api.base, "admin", "admin-password-1").await;
    let base = api.base.clone();
    wait_for("history with rates", Duration::from_secs(90), || {
        let (base, token) = (base.clone(), token.clone());
        async move {
            let from = (chrono::Utc::now() - chrono::Duration::minutes(10))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let h = get(&base, &token, &format!("/servers/primary/history?from={from}")).await;
            non_null(&h["xact_per_sec"]) >= 2 && non_null(&h["size_bytes"]) >= 1
        }
    })
    .await;
    wait_for("the fleet's sparkline", Duration::from_secs(60), || {
        let (base, token) = (base.clone(), token.clone());
        async move {
            let f = get(&base, &token, "/fleet/trends").await;
            f["servers"][0]["tps"].as_array().is_some_and(|a| a.len() >= 2)
        }
    })
    .await;
    wait_for("top statements", Duration::from_secs(60), || {
        let (base, token) = (base.clone(), token.clone());
        async move {
            let s = get(&base, &token, "/servers/primary/statements").await;
            s["statements"].as_array().is_some_and(|a| !a.is_empty())
        }
    })
    .await;

    // A lock wait (the tree) and a long sleep (the cancel).
    let mut holder = shop.begin().await.expect("begin");
    sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .expect("lock");
    let waiter = {
        let shop = shop.clone();
        tokio::spawn(async move {
            sqlx::query("SELECT count(*) FROM orders")
                .execute(&shop)
                .await
                .map(|_| ())
        })
    };
    let sleeper = {
        let url = primary.url("postgres");
        tokio::spawn(async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
            sqlx::query("SET application_name = 'e2e-sleeper'")
                .execute(&mut c)
                .await
                .expect("set");
            sqlx::query("SELECT pg_sleep(600)")
                .execute(&mut c)
                .await
                .map(|_| ())
        })
    };
    // The names are bound, not written in the statement: this session's own query text shows in
    // the activity page too.
    wait_for(
        "the lock wait and the pg_sleep on the server",
        Duration::from_secs(10),
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT count(*) FILTER (WHERE datname = $1 AND wait_event_type = 'Lock') > 0
                        AND count(*) FILTER (WHERE application_name = $2 AND state = 'active'
                                              AND query LIKE $3) > 0
                 FROM pg_stat_activity",
            )
            .bind("shop")
            .bind("e2e-sleeper")
            .bind("%pg_sleep(600)%")
            .fetch_one(&admin_pool)
            .await
            .expect("pg_stat_activity")
        },
    )
    .await;

    let shots = bin_dir()
        .parent()
        .map(|t| t.join("web-screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/web-screenshots"));
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let sb = standby.login();
    let script = repo().join("web/e2e/run.mjs");
    let api_base = api.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("PGMON_URL", &api_base)
            .env("SCREENSHOT_DIR", &shots)
            .env("CHROMIUM", chromium())
            .env("REPLICA_HOST", &sb.host)
            .env("REPLICA_PORT", sb.port.to_string())
            .env("REPLICA_USER", &sb.user)
            .output()
    })
    .await
    .expect("join")
    .expect("run node: is Node.js installed? (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    if !out.status.success() {
        let logs = api.logs();
        let tail = &logs[logs.len().saturating_sub(6000)..];
        panic!("browser checks failed:\n{stdout}\n{stderr}\npgmon-api's log, last lines:\n{tail}");
    }

    // The cancel clicked in the UI ended the sleep on the server, with PostgreSQL's own message.
    let slept = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the pg_sleep still runs after the UI's cancel")
        .expect("join");
    let err = slept.expect_err("pg_sleep ended normally instead of being cancelled");
    let code = err
        .as_database_error()
        .and_then(|e| e.code().map(|c| c.to_string()));
    assert_eq!(code.as_deref(), Some("57014"), "{err}");

    holder.rollback().await.expect("rollback");
    let _ = tokio::time::timeout(Duration::from_secs(10), waiter).await;
    work.abort();
}

/// Without a built UI (`cargo build` needs no Node), `/` says how to build it, and the API keeps its
/// paths: a browser's navigation gets the page, API clients get JSON as before.
#[tokio::test]
async fn without_a_built_ui_the_api_says_how_to_build_it() {
    let empty = tempfile::tempdir().expect("tempdir");
    let env = TestEnv::new(&format!("web_dir = \"{}\"", empty.path().display()), "").await;
    let api = env.spawn_api().await;
    let client = http::client();
    let get = |path: &str, accept: &str| {
        client
            .get(format!("{}{path}", api.base))
            .header("Accept", accept)
            .send()
    };
    let nav = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for (path, accept) in [("/", "*/*"), ("/", nav), ("/servers/db1", nav)] {
        let r = get(path, accept).await.expect("get");
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with("text/html"),
            "{path}"
        );
        let body = r.text().await.expect("body");
        assert!(body.contains("npm ci &amp;&amp; npm run build"), "{path}: {body}");
    }
    // API clients are answered by the API, as before the UI existed.
    let r = get("/servers/db1", "application/json, text/plain, */*")
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    assert!(r.text().await.expect("body").contains("detail"));
    let r = get("/api/servers", nav).await.expect("get");
    assert_eq!(r.status(), 401);
    let r = get("/docs", nav).await.expect("get");
    assert!(r.text().await.expect("body").contains("swagger"));
    let r = get("/assets/app-missing.js", "*/*").await.expect("get");
    assert_eq!(r.status(), 404);
}
