//! The collector when its store hangs or goes away: SIGTERM and the systemd watchdog are still served,
//! and what it collected meanwhile survives `kill -9` in the spool, bounded in bytes. The store is
//! reached through a TCP relay on loopback that the test freezes (a black hole) or cuts.

use chrono::{DateTime, Utc};
use pgmon_tests::relay::{Mode, Relay};
use pgmon_tests::{Proc, TestEnv, bin, monitored, run_cli, spool_dir, wait_for};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const READY: &str = "pgmon-collector running instance=";
const PG: &str = "127.0.0.1:5432";

/// A test store reached through a relay, migrated, with `servers` registrations of the shared
/// server; collection every second.
async fn env_behind_relay(servers: usize, collector_extra: &str) -> (TestEnv, Relay, PgPool, Vec<i64>) {
    let env = TestEnv::new(
        "",
        &format!(
            "[collector]\ncollect_interval_secs = 1\nactivity_interval_secs = 1\nsize_update_interval_secs = 3600\n\
             db_check_interval_secs = 3600\nmaintenance_interval_secs = 3600\nconcurrency = 8\n{collector_extra}"
        ),
    )
    .await;
    assert!(
        env.db.url.contains(PG),
        "the test store is on {PG}: {}",
        redact(&env.db.url)
    );
    let relay = Relay::start(PG.parse().expect("addr")).await;
    let text = std::fs::read_to_string(&env.config_path).expect("config");
    let text = text.replace(&env.db.url, &relay.url_for(&env.db.url, PG));
    std::fs::write(&env.config_path, text).expect("config");
    let (code, out, err) = run_cli(&bin("pgmon-collector"), &env.config_path, &["migrate"], None);
    assert_eq!(code, 0, "migrate: {out} {err}");
    let store = env.db.pool().await;
    let mut ids = Vec::new();
    for i in 0..servers {
        ids.push(
            monitored::shared()
                .register(&store, &env.fernet_key, &format!("s{i}"))
                .await,
        );
    }
    (env, relay, store, ids)
}

fn redact(url: &str) -> String {
    pgmon_shared::config::redact_url(url)
}

async fn count(store: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(store)
        .await
        .expect("count")
}

/// The spool files under `dir` (all collectors' subdirectories) and their total size.
fn spool_files(dir: &Path) -> (Vec<std::path::PathBuf>, u64) {
    let mut files = Vec::new();
    let mut bytes = 0;
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(sub.path()).into_iter().flatten().flatten() {
            if f.path().extension().is_some_and(|x| x == "batch") {
                bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
                files.push(f.path());
            }
        }
    }
    (files, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_store_does_not_stop_sigterm_or_the_watchdog() {
    let (env, relay, store, _) = env_behind_relay(2, "").await;
    let sock_path = env.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("notify socket");
    let sock_env = sock_path.display().to_string();
    let mut collector = Proc::spawn_env(
        &bin("pgmon-collector"),
        &env.config_path,
        &["run"],
        READY,
        &[("NOTIFY_SOCKET", &sock_env), ("WATCHDOG_USEC", "1000000")],
    )
    .await;
    wait_for("samples in the store", Duration::from_secs(30), || async {
        count(&store, "SELECT count(*) FROM availability").await >= 2
    })
    .await;
    relay.set(Mode::Frozen);
    // Past a heartbeat (every 10 s) and more: WATCHDOG=1 (every 0.5 s here) must never pause.
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let frozen_at = Instant::now();
    let mut buf = [0u8; 512];
    let mut beats = 0;
    while frozen_at.elapsed() < Duration::from_secs(16) {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no notification for 3 s, {:?} into the freeze ({beats} watchdog beats before): {e}\n{}",
                frozen_at.elapsed(),
                collector.logs()
            )
        });
        if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
            beats += 1;
        }
    }
    assert!(beats >= 16, "{beats} watchdog beats in 16 s of a frozen store");
    let started = Instant::now();
    let status = collector
        .terminate(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("SIGTERM with the store black-holed: {e}\n{}", collector.logs()));
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(15));
    relay.set(Mode::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_store_outage_then_a_restart_loses_no_row() {
    let (env, relay, store, ids) = env_behind_relay(2, "").await;
    let mut first = Proc::spawn(&bin("pgmon-collector"), &env.config_path, &["run"], READY).await;
    wait_for("samples in the store", Duration::from_secs(30), || async {
        count(&store, "SELECT count(*) FROM availability").await >= 2
    })
    .await;
    relay.set(Mode::Cut);
    let cut_at = Utc::now();
    let spool = spool_dir(&env.config_path);
    // Slots collected after the cut reach the spool (a snapshot unconfirmed for a second is spilled).
    let outage_slots = || {
        let mut slots: BTreeMap<(i64, String), usize> = BTreeMap::new();
        for f in spool_files(&spool).0 {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for line in text.lines() {
                let Ok(batch) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let rows = batch["rows"].as_array().cloned().unwrap_or_default();
                let Some(avail) = rows.iter().find_map(|r| r.get("Availability")) else {
                    continue;
                };
                let collected: DateTime<Utc> = avail["collected_at"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(DateTime::UNIX_EPOCH);
                if collected <= cut_at {
                    continue;
                }
                let dbs = rows
                    .iter()
                    .find_map(|r| r.get("StatDatabase"))
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let key = (
                    avail["server_id"].as_i64().unwrap_or(0),
                    avail["slot"].as_str().unwrap_or("").to_string(),
                );
                slots.insert(key, dbs);
            }
        }
        slots
    };
    wait_for(
        "outage slots of both servers in the spool",
        Duration::from_secs(30),
        || async {
            let s = outage_slots();
            ids.iter()
                .all(|id| s.keys().filter(|(sid, _)| sid == id).count() >= 2)
        },
    )
    .await;
    first.kill9();
    let expected = outage_slots();
    relay.set(Mode::Open);
    let _second = Proc::spawn(&bin("pgmon-collector"), &env.config_path, &["run"], READY).await;
    let stored = |server: i64, slot: String| {
        let store = store.clone();
        async move {
            let slot: DateTime<Utc> = slot.parse().expect("slot");
            let q = |sql: &'static str| {
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(server)
                    .bind(slot)
                    .fetch_one(&store)
            };
            (
                q("SELECT count(*) FROM availability WHERE server_id = $1 AND slot = $2")
                    .await
                    .expect("availability"),
                q("SELECT count(*) FROM stat_database WHERE server_id = $1 AND slot = $2")
                    .await
                    .expect("stat_database"),
            )
        }
    };
    wait_for(
        "the spooled slots in the store",
        Duration::from_secs(60),
        || async {
            for (server, slot) in expected.keys() {
                if stored(*server, slot.clone()).await.0 == 0 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for ((server, slot), dbs) in &expected {
        let (avail, stats) = stored(*server, slot.clone()).await;
        assert_eq!(avail, 1, "server {server} slot {slot}: one availability sample");
        assert_eq!(
            stats as usize, *dbs,
            "server {server} slot {slot}: every database once"
        );
    }
    wait_for("the spool emptied", Duration::from_secs(30), || async {
        spool_files(&spool).0.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_the_oldest_snapshots_and_says_how_much() {
    let (env, relay, store, ids) = env_behind_relay(15, "spool_max_mb = 1\n").await;
    let collector = Proc::spawn(&bin("pgmon-collector"), &env.config_path, &["run"], READY).await;
    wait_for("samples in the store", Duration::from_secs(30), || async {
        count(&store, "SELECT count(*) FROM availability").await >= 15
    })
    .await;
    relay.set(Mode::Cut);
    let cut_at = Utc::now();
    let spool = spool_dir(&env.config_path);
    wait_for(
        "the spool to reach its bound",
        Duration::from_secs(90),
        || async {
            collector
                .logs()
                .contains("snapshot buffer full: dropped the oldest snapshots")
        },
    )
    .await;
    // Deliberate: the outage goes on for a few more slots, so that the drops (each only as much as
    // the bound needs) add up to more than the first seconds of the outage asserted on below.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Bounded in bytes (a spilled file with some live snapshots may outlive its dropped ones).
    let (_, bytes) = spool_files(&spool);
    assert!(bytes <= 1024 * 1024 + 512 * 1024, "{bytes} bytes in the spool");
    relay.set(Mode::Open);
    let reopened_at = Utc::now();
    wait_for("the drop in the system log", Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM system_log WHERE source = 'system'
             AND message ~ '^snapshot buffer full: dropped the oldest [0-9]+ rows \\([0-9]+ bytes\\)$'",
        )
        .fetch_one(&store)
        .await
        .unwrap_or(0)
            >= 1
    })
    .await;
    // The oldest went: the first outage slot of a server is missing, its last is there.
    let server = ids[0];
    wait_for(
        "the newest outage sample written",
        Duration::from_secs(60),
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM availability WHERE server_id = $1 AND collected_at BETWEEN $2 AND $3",
            )
            .bind(server)
            .bind(reopened_at - chrono::Duration::seconds(3))
            .bind(reopened_at)
            .fetch_one(&store)
            .await
            .unwrap_or(0)
                >= 1
        },
    )
    .await;
    let first_seconds: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM availability WHERE server_id = $1 AND collected_at BETWEEN $2 AND $3",
    )
    .bind(server)
    .bind(cut_at)
    .bind(cut_at + chrono::Duration::seconds(2))
    .fetch_one(&store)
    .await
    .expect("count");
    assert_eq!(first_seconds, 0, "the oldest outage samples were dropped first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_503_when_the_store_hangs() {
    let env = TestEnv::new("", "").await;
    env.add_user("admin", "admin", "admin-password-1");
    let relay = Relay::start(PG.parse().expect("addr")).await;
    let text = std::fs::read_to_string(&env.config_path).expect("config");
    let text = text.replace(&env.db.url, &relay.url_for(&env.db.url, PG));
    std::fs::write(&env.config_path, text).expect("config");
    let api = Proc::spawn_env(
        &bin("pgmon-api"),
        &env.config_path,
        &["serve"],
        "pgmon-api listening on ",
        &[
            ("PGMON_STORE__STATEMENT_TIMEOUT_SECS", "1"),
            ("PGMON_STORE__CALL_TIMEOUT_SECS", "3"),
        ],
    )
    .await;
    let token = pgmon_tests::http::token(&api.base, "admin", "admin-password-1").await;
    let get = || {
        pgmon_tests::http::client()
            .get(api.url("/api/logs"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(30))
            .send()
    };
    assert_eq!(get().await.expect("logs").status(), 200);
    relay.set(Mode::Frozen);
    let started = Instant::now();
    let resp = get().await.expect("an answer, not a hang");
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["detail"], "store did not answer in time");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    relay.set(Mode::Open);
    wait_for("the API to recover", Duration::from_secs(30), || async {
        get().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}
