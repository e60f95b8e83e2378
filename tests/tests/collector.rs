//! pgmon-collector end to end: the real binary against real PostgreSQL, as store and as monitored
//! servers (the shared server, throwaway clusters, listeners that never answer), and a real sshd.

use chrono::{DateTime, Utc};
use pgmon_tests::cluster::Cluster;
use pgmon_tests::sshd::{self, Sshd, TEST_PASSWORD, TEST_USER};
use pgmon_tests::{Proc, TestEnv, bin, monitored, run_cli, wait_for};
use sqlx::PgPool;
use std::time::Duration;

const READY: &str = "pgmon-collector running instance=";

fn collector_toml(collect_secs: u64) -> String {
    format!(
        "[collector]\ncollect_interval_secs = {collect_secs}\nsize_update_interval_secs = 3600\n\
         db_check_interval_secs = 3600\nmaintenance_interval_secs = 3600\nconcurrency = 8\n"
    )
}

async fn env_with(collect_secs: u64, extra: &str) -> (TestEnv, PgPool) {
    let env = TestEnv::new("", &format!("{}{extra}", collector_toml(collect_secs))).await;
    let (code, out, err) = cli(&env, &["migrate"]);
    assert_eq!(code, 0, "migrate failed: {out} {err}");
    let pool = env.db.pool().await;
    (env, pool)
}

fn cli(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    run_cli(&bin("pgmon-collector"), &env.config_path, args, None)
}

fn once(env: &TestEnv, task: &str) -> String {
    let (code, out, err) = cli(env, &["once", "--task", task]);
    assert_eq!(code, 0, "once --task {task} failed: {out} {err}");
    out
}

async fn spawn(env: &TestEnv) -> Proc {
    Proc::spawn(&bin("pgmon-collector"), &env.config_path, &["run"], READY).await
}

async fn scalar_i64(pool: &PgPool, sql: &str, id: i64) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("query")
}

/// Counters, the database inventory (new, dropped, recreated), sizes and disk usage over SSH, all on
/// a cluster whose databases have awkward names.
#[tokio::test]
async fn snapshots_counters_databases_sizes_and_disk() {
    sshd::available().expect("sshd harness");
    let (env, store) = env_with(600, "").await;
    let cluster = Cluster::start();
    let weird = "we\"ird db";
    let control = "tab\there\\back\nslash";
    cluster
        .create_databases(&[weird, "gone", "ünïcødé 'quoted'", control])
        .await;
    let w = cluster.pool(weird).await;
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&w)
        .await
        .expect("create");
    sqlx::query("INSERT INTO t SELECT generate_series(1, 100)")
        .execute(&w)
        .await
        .expect("insert");
    w.close().await;
    let id = cluster
        .login()
        .register(&store, &env.fernet_key, "cluster-1")
        .await;
    let server_pool = cluster.pool("postgres").await;
    let inserted = || async {
        sqlx::query_scalar::<_, i64>("SELECT tup_inserted FROM pg_stat_database WHERE datname = $1")
            .bind(weird)
            .fetch_one(&server_pool)
            .await
            .expect("read pg_stat_database")
    };
    wait_for(
        "the inserts to reach pg_stat_database",
        Duration::from_secs(20),
        || async { inserted().await >= 100 },
    )
    .await;

    // Stats: one row per database, counters equal to the server's. Both stats runs below must fall in
    // one 10-minute slot (the second shows a slot is never written twice): not near its end.
    let to_next_slot = 600 - Utc::now().timestamp().rem_euclid(600);
    if to_next_slot < 60 {
        // Deliberate: nothing to poll for, the clock has to cross into the next slot.
        tokio::time::sleep(Duration::from_secs(to_next_slot as u64 + 1)).await;
    }
    let out = once(&env, "stats");
    assert!(out.contains("task=stats"), "{out}");
    let (tup, sessions): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT tup_inserted, sessions FROM stat_database WHERE server_id = $1 AND datname = $2",
    )
    .bind(id)
    .bind(weird)
    .fetch_one(&store)
    .await
    .expect("stat row of the weird database");
    assert_eq!(tup, Some(inserted().await));
    assert!(sessions.is_some(), "PG14+ session counters are collected");
    let server_dbs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_database WHERE datname IS NOT NULL")
            .fetch_one(&server_pool)
            .await
            .expect("count");
    let stored = scalar_i64(
        &store,
        "SELECT count(*) FROM stat_database WHERE server_id = $1",
        id,
    )
    .await;
    assert_eq!(stored, server_dbs);
    let control_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stat_database WHERE server_id = $1 AND datname = $2")
            .bind(id)
            .bind(control)
            .fetch_one(&store)
            .await
            .expect("count");
    assert_eq!(
        control_rows, 1,
        "a name with a tab, a backslash and a newline survives"
    );
    let (up, latency): (bool, Option<f64>) =
        sqlx::query_as("SELECT up, latency_ms FROM availability WHERE server_id = $1")
            .bind(id)
            .fetch_one(&store)
            .await
            .expect("availability");
    assert!(up && latency.is_some_and(|l| l > 0.0));
    // The same slot again: nothing is written twice.
    once(&env, "stats");
    let again = scalar_i64(
        &store,
        "SELECT count(*) FROM stat_database WHERE server_id = $1",
        id,
    )
    .await;
    assert_eq!(again, stored);

    // Database inventory: new, dropped, recreated with another oid.
    once(&env, "db_info");
    let live = |name: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query_as::<_, (i64, Option<DateTime<Utc>>)>(
                "SELECT oid, dropped_at FROM databases WHERE server_id = $1 AND name = $2 ORDER BY first_seen, id",
            )
            .bind(id)
            .bind(name)
            .fetch_all(&store)
            .await
            .expect("databases")
        }
    };
    assert_eq!(live(weird).await.len(), 1);
    assert!(live("gone").await[0].1.is_none());
    let admin = cluster.pool("postgres").await;
    sqlx::query("DROP DATABASE gone")
        .execute(&admin)
        .await
        .expect("drop");
    sqlx::query("CREATE DATABASE newdb")
        .execute(&admin)
        .await
        .expect("create");
    once(&env, "db_info");
    assert!(
        live("gone").await[0].1.is_some(),
        "a dropped database is marked, not deleted"
    );
    assert_eq!(live("newdb").await.len(), 1);
    sqlx::query("CREATE DATABASE gone")
        .execute(&admin)
        .await
        .expect("recreate");
    once(&env, "db_info");
    let gone = live("gone").await;
    assert_eq!(
        gone.len(),
        2,
        "a database back with another oid is a new database"
    );
    assert_ne!(gone[0].0, gone[1].0);
    assert!(gone[0].1.is_some() && gone[1].1.is_none());

    // Sizes of every connectable database, and the disk over SSH with the host key pinned.
    let mut sshd = Sshd::start();
    let crypto = pgmon_shared::crypto::Crypto::from_key(&env.fernet_key).expect("key");
    sqlx::query(
        "UPDATE servers SET ssh_enabled = true, ssh_host = '127.0.0.1', ssh_port = $2, ssh_username = $3,
             ssh_password_enc = $4, ssh_data_path = '/', updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(i32::from(sshd.port))
    .bind(TEST_USER)
    .bind(crypto.encrypt(TEST_PASSWORD))
    .execute(&store)
    .await
    .expect("ssh settings");
    once(&env, "sizes");
    let size: i64 =
        sqlx::query_scalar("SELECT size_bytes FROM db_size WHERE server_id = $1 AND datname = $2")
            .bind(id)
            .bind(weird)
            .fetch_one(&store)
            .await
            .expect("size of the weird database");
    let actual: i64 = sqlx::query_scalar("SELECT pg_database_size($1::text)")
        .bind(weird)
        .fetch_one(&admin)
        .await
        .expect("size");
    assert_eq!(size, actual);
    let connectable: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datallowconn")
        .fetch_one(&admin)
        .await
        .expect("count");
    let sized = scalar_i64(&store, "SELECT count(*) FROM db_size WHERE server_id = $1", id).await;
    assert_eq!(sized, connectable);
    let (total, used): (i64, i64) =
        sqlx::query_as("SELECT total_bytes, used_bytes FROM disk_usage WHERE server_id = $1")
            .bind(id)
            .fetch_one(&store)
            .await
            .expect("disk usage row");
    assert!(total > 0 && used > 0 && used <= total);
    let pinned: Option<String> =
        sqlx::query_scalar("SELECT ssh_host_key_fingerprint FROM servers WHERE id = $1")
            .bind(id)
            .fetch_one(&store)
            .await
            .expect("fingerprint");
    let first_key = sshd.host_fingerprint();
    assert_eq!(pinned.as_deref(), Some(first_key.as_str()));
    // A host showing another key is refused and the pin stays: never re-pinned behind the user's back.
    sshd.replace_host_key();
    let (code, out, err) = cli(&env, &["once", "--task", "sizes"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(err.contains("host_key_mismatch"), "{err}");
    assert!(!err.contains(TEST_PASSWORD) && !out.contains(TEST_PASSWORD));
    let pinned: Option<String> =
        sqlx::query_scalar("SELECT ssh_host_key_fingerprint FROM servers WHERE id = $1")
            .bind(id)
            .fetch_one(&store)
            .await
            .expect("fingerprint");
    assert_eq!(pinned.as_deref(), Some(first_key.as_str()));
}

/// Maintenance keeps what the runtime settings say (set through the API, as an admin would): stats
/// partitions by `retention_months`, audit events by `audit_retention_days`, the system log by
/// `logs_retention_days`; and it creates partitions ahead.
#[tokio::test]
async fn maintenance_applies_the_retention_settings() {
    let (env, store) = env_with(600, "").await;
    env.add_user("admin", "admin", "admin-password-1");
    let api = env.spawn_api().await;
    let admin = pgmon_tests::http::token(&api.base, "admin", "admin-password-1").await;
    let body =
        serde_json::json!({"retention_months": 1, "audit_retention_days": 7, "logs_retention_days": 10});
    let (st, r) = pgmon_tests::http::call("PUT", &api.url("/api/settings"), Some(&admin), Some(&body)).await;
    assert_eq!(st.as_u16(), 200, "{r}");
    let month_ago = Utc::now() - chrono::Duration::days(40);
    sqlx::query("SELECT pgmon_ensure_partitions($1, $1)")
        .bind(month_ago)
        .execute(&store)
        .await
        .expect("partition a month back");
    sqlx::query("SELECT pgmon_ensure_partitions('2020-01-15', '2020-01-15')")
        .execute(&store)
        .await
        .expect("old partition");
    for (days, what) in [(8, "old"), (6, "recent")] {
        sqlx::query(
            "INSERT INTO audit_sessions (at, event, login, details) VALUES (now() - make_interval(days => $1), 'login_success', $2, NULL)",
        )
        .bind(days)
        .bind(what)
        .execute(&store)
        .await
        .expect("audit row");
    }
    for (days, what) in [(11, "old entry"), (9, "recent entry")] {
        sqlx::query(
            "INSERT INTO system_log (at, level, source, message, process) VALUES (now() - make_interval(days => $1), 'info', 'system', $2, 'collector')",
        )
        .bind(days)
        .bind(what)
        .execute(&store)
        .await
        .expect("log row");
    }
    let exists = |name: String| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                .bind(name)
                .fetch_one(&store)
                .await
                .expect("to_regclass")
        }
    };
    assert!(exists("stat_database_202001".into()).await);
    let out = once(&env, "maintenance");
    assert!(out.contains("task=maintenance"), "{out}");
    for t in ["stat_database", "availability", "db_size", "disk_usage"] {
        assert!(!exists(format!("{t}_202001")).await, "{t}_202001 was not dropped");
    }
    // retention_months = 1 keeps the current month and the one before.
    let prev = format!("stat_database_{}", month_ago.format("%Y%m"));
    let kept_prev = Utc::now()
        .checked_sub_months(chrono::Months::new(1))
        .expect("date");
    assert_eq!(
        exists(prev.clone()).await,
        month_ago.format("%Y%m").to_string() == kept_prev.format("%Y%m").to_string(),
        "{prev}"
    );
    let now = Utc::now();
    let ahead = now.checked_add_months(chrono::Months::new(2)).expect("date");
    for m in [now, ahead] {
        let name = format!("stat_database_{}", m.format("%Y%m"));
        assert!(exists(name.clone()).await, "{name} missing");
    }
    let logins: Vec<Option<String>> =
        sqlx::query_scalar("SELECT login FROM audit_sessions WHERE login IN ('old', 'recent')")
            .fetch_all(&store)
            .await
            .expect("audit");
    assert_eq!(logins, [Some("recent".to_string())]);
    let messages: Vec<String> =
        sqlx::query_scalar("SELECT message FROM system_log WHERE message LIKE '% entry' ORDER BY at")
            .fetch_all(&store)
            .await
            .expect("log");
    assert_eq!(messages, ["recent entry"]);
    let (st, logs) = pgmon_tests::http::call(
        "GET",
        &api.url("/api/logs?source=maintenance"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(st.as_u16(), 200);
    assert_eq!(logs["items"][0]["message"], "maintenance done", "{logs}");
    let details = logs["items"][0]["details"].as_str().unwrap_or("");
    assert!(
        details.contains("audit events purged 1 (older than 7 days)")
            && details.contains("log entries purged 1 (older than 10 days)"),
        "{details}"
    );
}

/// A running collector hears a new interval within seconds and runs at it: the next statistics run
/// comes at the new interval's next boundary, not after the old hour.
#[tokio::test]
async fn a_settings_change_reschedules_a_running_collector() {
    let (env, store) = env_with(3600, "").await;
    env.add_user("admin", "admin", "admin-password-1");
    let api = env.spawn_api().await;
    let admin = pgmon_tests::http::token(&api.base, "admin", "admin-password-1").await;
    let id = monitored::shared()
        .register(&store, &env.fernet_key, "main")
        .await;
    let collector = spawn(&env).await;
    let slots = || {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, DateTime<Utc>>(
                "SELECT slot FROM availability WHERE server_id = $1 ORDER BY slot",
            )
            .bind(id)
            .fetch_all(&store)
            .await
            .expect("slots")
        }
    };
    wait_for("the first run", Duration::from_secs(30), || async {
        !slots().await.is_empty()
    })
    .await;
    assert_eq!(slots().await[0].timestamp() % 3600, 0, "hourly slots at first");
    let body = serde_json::json!({"collect_interval": 60});
    let changed_at = Utc::now();
    let (st, r) = pgmon_tests::http::call("PUT", &api.url("/settings"), Some(&admin), Some(&body)).await;
    assert_eq!(st.as_u16(), 200, "{r}");
    wait_for("the collector to reschedule", Duration::from_secs(10), || async {
        collector.logs().contains("interval changed; rescheduled")
    })
    .await;
    wait_for("a run at the new interval", Duration::from_secs(75), || async {
        slots().await.len() >= 2
    })
    .await;
    let second = slots().await[1];
    assert_eq!(second.timestamp() % 60, 0);
    assert!(
        second > changed_at - chrono::Duration::seconds(1)
            && second <= changed_at + chrono::Duration::seconds(60),
        "the next run came at the next minute: changed at {changed_at}, slot {second}"
    );
    // The API judges the collector's freshness by the new interval too (its health answer is at
    // most a second old).
    let stats_interval = || async {
        let (_, h) = pgmon_tests::http::call("GET", &api.url("/api/health"), Some(&admin), None).await;
        h["collectors"]["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["task"] == "stats"))
            .map(|t| t["interval_secs"].clone())
            .unwrap_or_default()
    };
    wait_for(
        "health to judge by the new interval",
        Duration::from_secs(10),
        || async { stats_interval().await == 60 },
    )
    .await;
}

/// A server that flaps gets at most six down/up entries an hour; once the hour has room, the state
/// it is then in is logged.
#[tokio::test]
async fn a_flapping_server_is_logged_a_few_times_an_hour() {
    let (env, store) = env_with(1, "").await;
    let dead = pgmon_tests::cluster::free_port();
    let id = monitored::shared()
        .at_port(dead)
        .register(&store, &env.fernet_key, "flapper")
        .await;
    // Six transitions in the last hour, the last one "up".
    sqlx::query(
        "INSERT INTO system_log (at, level, source, message, process, server_id, event)
         SELECT now() - make_interval(mins => 60 - i * 5), 'info', 'collector_stats', 'seeded', 'collector', $1,
                CASE WHEN i % 2 = 1 THEN 'server_down' ELSE 'server_up' END
         FROM generate_series(1, 6) AS i",
    )
    .bind(id)
    .execute(&store)
    .await
    .expect("seed");
    let downs = || {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM system_log WHERE server_id = $1 AND event = 'server_down' AND message <> 'seeded'",
            )
            .bind(id)
            .fetch_one(&store)
            .await
            .expect("count")
        }
    };
    once(&env, "stats");
    assert_eq!(downs().await, 0, "the hour's share is used up");
    // An hour later the share is back: the server, still down, is logged down once.
    sqlx::query("UPDATE system_log SET at = at - interval '1 hour' WHERE server_id = $1")
        .bind(id)
        .execute(&store)
        .await
        .expect("age");
    // Deliberate: every run needs a 1 s slot of its own (a slot is collected once), so the clock
    // has to move on between them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    once(&env, "stats");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    once(&env, "stats");
    assert_eq!(downs().await, 1);
}

/// An SSH failure of the sizes task is a warning naming the server; the run itself an error naming
/// it with the reason.
#[tokio::test]
async fn ssh_failures_reach_the_system_log() {
    let (env, store) = env_with(600, "").await;
    let closed = pgmon_tests::cluster::free_port();
    let id = monitored::shared()
        .register(&store, &env.fernet_key, "nossh")
        .await;
    sqlx::query(
        "UPDATE servers SET ssh_enabled = true, ssh_host = '127.0.0.1', ssh_port = $2, ssh_username = 'postgres',
                ssh_password_enc = $3, ssh_data_path = '/var/lib/postgresql' WHERE id = $1",
    )
    .bind(id)
    .bind(i32::from(closed))
    .bind(pgmon_tests::python_fernet("encrypt", &env.fernet_key, "ssh-Pa55word"))
    .execute(&store)
    .await
    .expect("ssh settings");
    once(&env, "sizes");
    let rows: Vec<(String, String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT level, message, details, server_id FROM system_log WHERE source = 'collector_sizes' ORDER BY id",
    )
    .fetch_all(&store)
    .await
    .expect("log");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str(), rows[0].3),
        ("warning", "SSH to server nossh failed", Some(id))
    );
    assert!(
        rows[0]
            .2
            .as_deref()
            .is_some_and(|d| d.starts_with("ssh: unreachable")),
        "{rows:?}"
    );
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str()),
        ("error", "sizes: 1 of 1 servers failed")
    );
    assert!(
        rows[1]
            .2
            .as_deref()
            .is_some_and(|d| d.starts_with("nossh: ssh: unreachable")),
        "{rows:?}"
    );
    assert!(!format!("{rows:?}").contains("ssh-Pa55word"));
}

#[tokio::test]
async fn black_holed_servers_do_not_hold_the_others_back() {
    let (env, store) = env_with(600, "").await;
    // Listeners whose backlog accepts connections that nobody ever answers.
    let holes: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let mut hole_ids = Vec::new();
    for (i, l) in holes.iter().enumerate() {
        let port = l.local_addr().expect("addr").port();
        hole_ids.push(
            monitored::shared()
                .at_port(port)
                .register(&store, &env.fernet_key, &format!("hole-{i}"))
                .await,
        );
    }
    let good = monitored::shared()
        .register(&store, &env.fernet_key, "good")
        .await;
    let disabled = monitored::shared()
        .register(&store, &env.fernet_key, "disabled")
        .await;
    sqlx::query("UPDATE servers SET enabled = false WHERE id = $1")
        .bind(disabled)
        .execute(&store)
        .await
        .expect("disable");
    let out = once(&env, "stats");
    assert!(out.contains("servers=4 skipped=0 up=1 down=3"), "{out}");
    let rows: Vec<(i64, bool, Option<String>, DateTime<Utc>)> =
        sqlx::query_as("SELECT server_id, up, error_class, collected_at FROM availability")
            .fetch_all(&store)
            .await
            .expect("availability");
    assert_eq!(
        rows.len(),
        4,
        "one sample per enabled server, none for the disabled one"
    );
    let good_at = rows.iter().find(|r| r.0 == good).expect("good sample");
    assert!(good_at.1);
    for r in rows.iter().filter(|r| r.0 != good) {
        assert!(!r.1);
        assert_eq!(r.2.as_deref(), Some("timeout"));
        assert!(good_at.3 < r.3, "the good server waited for a black hole");
    }
    let n = scalar_i64(
        &store,
        "SELECT count(*) FROM stat_database WHERE server_id = $1",
        good,
    )
    .await;
    assert!(n >= 3);
    drop(holes);
}

#[tokio::test]
async fn a_stopped_server_is_down_then_resumes() {
    let (env, store) = env_with(1, "").await;
    let cluster = Cluster::start();
    let id = cluster.login().register(&store, &env.fernet_key, "flaky").await;
    let _collector = spawn(&env).await;
    let latest = |up: bool| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
                "SELECT max(slot) FROM availability WHERE server_id = $1 AND up = $2",
            )
            .bind(id)
            .bind(up)
            .fetch_one(&store)
            .await
            .expect("availability")
        }
    };
    wait_for("a first up sample", Duration::from_secs(30), || async {
        latest(true).await.is_some()
    })
    .await;
    let last_up = latest(true).await;
    cluster.stop();
    wait_for("a down sample", Duration::from_secs(30), || async {
        latest(false).await > last_up
    })
    .await;
    let class: Option<String> = sqlx::query_scalar(
        "SELECT error_class FROM availability WHERE server_id = $1 AND NOT up ORDER BY slot DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(&store)
    .await
    .expect("class");
    assert_eq!(class.as_deref(), Some("unreachable"));
    let downs = || {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM availability WHERE server_id = $1 AND NOT up")
                .bind(id)
                .fetch_one(&store)
                .await
                .expect("count")
        }
    };
    wait_for("many failed cycles", Duration::from_secs(60), || async {
        downs().await >= 6
    })
    .await;
    let down = latest(false).await;
    cluster.start_again();
    wait_for("collection to resume", Duration::from_secs(60), || async {
        latest(true).await > down
    })
    .await;
    // Exactly one entry for going down and one for coming back, however many cycles failed.
    let transitions: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT event, level, message, details FROM system_log WHERE server_id = $1 AND event IS NOT NULL ORDER BY at, id",
    )
    .bind(id)
    .fetch_all(&store)
    .await
    .expect("transitions");
    assert_eq!(transitions.len(), 2, "{transitions:?}");
    assert_eq!(
        (
            transitions[0].0.as_str(),
            transitions[0].1.as_str(),
            transitions[0].2.as_str()
        ),
        ("server_down", "error", "server flaky is down")
    );
    assert!(
        transitions[0]
            .3
            .as_deref()
            .is_some_and(|d| d.starts_with("unreachable: ")),
        "{transitions:?}"
    );
    assert_eq!(
        (
            transitions[1].0.as_str(),
            transitions[1].1.as_str(),
            transitions[1].2.as_str()
        ),
        ("server_up", "info", "server flaky is up again")
    );
    assert!(
        transitions[1]
            .3
            .as_deref()
            .is_some_and(|d| d.starts_with("down since ")),
        "{transitions:?}"
    );
    // Each failed run is an error entry naming the server and why.
    let failed_runs: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT details FROM system_log WHERE source = 'collector_stats' AND level = 'error' AND event IS NULL",
    )
    .fetch_all(&store)
    .await
    .expect("runs");
    assert!(failed_runs.len() >= 5, "{failed_runs:?}");
    assert!(
        failed_runs.iter().all(|d| d
            .as_deref()
            .is_some_and(|d| d.starts_with("flaky: unreachable: "))),
        "{failed_runs:?}"
    );
    let rows = scalar_i64(
        &store,
        "SELECT count(*) FROM stat_database WHERE server_id = $1 AND slot > (SELECT max(slot) FROM availability WHERE server_id = $1 AND NOT up)",
        id,
    )
    .await;
    assert!(rows > 0);
}

/// For each (server, slot) with stats: exactly one row per database, never a partial snapshot.
async fn assert_whole_snapshots(store: &PgPool, per_snapshot: i64) -> i64 {
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT (server_id, datname, slot)) FROM stat_database")
            .fetch_one(store)
            .await
            .expect("counts");
    assert_eq!(rows, distinct, "duplicate rows");
    let partial: Vec<(i64, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT server_id, slot, count(*) FROM stat_database GROUP BY 1, 2 HAVING count(*) <> $1",
    )
    .bind(per_snapshot)
    .fetch_all(store)
    .await
    .expect("partial");
    assert!(partial.is_empty(), "partial snapshots: {partial:?}");
    sqlx::query_scalar("SELECT count(DISTINCT slot) FROM stat_database")
        .fetch_one(store)
        .await
        .expect("slots")
}

#[tokio::test]
async fn kill_9_mid_cycle_then_restart_leaves_no_duplicates() {
    let (env, store) = env_with(1, "").await;
    let cluster = Cluster::start();
    let names: Vec<String> = (0..20).map(|i| format!("db {i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    cluster.create_databases(&refs).await;
    for i in 0..3 {
        cluster
            .login()
            .register(&store, &env.fernet_key, &format!("s{i}"))
            .await;
    }
    let per_snapshot = 20 + 3;
    let slots = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(DISTINCT slot) FROM stat_database")
            .fetch_one(&store)
            .await
            .expect("slots")
    };
    let mut first = spawn(&env).await;
    wait_for("a first snapshot", Duration::from_secs(30), || async {
        slots().await >= 1
    })
    .await;
    first.kill9();
    let before = assert_whole_snapshots(&store, per_snapshot).await;
    let second = spawn(&env).await;
    wait_for("two more slots", Duration::from_secs(60), || async {
        slots().await >= before + 2
    })
    .await;
    assert_whole_snapshots(&store, per_snapshot).await;
    let logs = second.logs();
    assert!(!logs.contains("writing snapshots failed"), "{logs}");
    assert!(!logs.contains("refreshing rollups failed"), "{logs}");
}

#[tokio::test]
async fn two_collectors_share_the_work_and_write_everything_once() {
    let (env, store) = env_with(2, "").await;
    // 16 servers: the rendezvous split leaves one collector without any with probability 2^-15.
    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(
            monitored::shared()
                .register(&store, &env.fernet_key, &format!("shared-{i}"))
                .await,
        );
    }
    let mut a = spawn(&env).await;
    let mut b = spawn(&env).await;
    let both_started = Utc::now();
    let full_slots = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM (SELECT slot FROM availability WHERE slot > $1 GROUP BY slot
             HAVING count(*) = 16) s",
        )
        .bind(both_started)
        .fetch_one(&store)
        .await
        .expect("slots")
    };
    wait_for(
        "three slots collected by the pair",
        Duration::from_secs(60),
        || async { full_slots().await >= 3 },
    )
    .await;
    // The shared server gains and loses test databases meanwhile: check uniqueness, not counts.
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT (server_id, datname, slot)) FROM stat_database")
            .fetch_one(&store)
            .await
            .expect("counts");
    assert_eq!(rows, distinct);
    assert!(rows > 0);
    let holders: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT count(DISTINCT instance_id), count(*) FROM collector_claims WHERE task = 'stats' AND slot > $1
         GROUP BY server_id, slot ORDER BY 1 DESC LIMIT 1",
    )
    .bind(both_started)
    .fetch_all(&store)
    .await
    .expect("claims");
    assert_eq!(holders.first().map(|h| h.0), Some(1), "a claim has one holder");
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM collector_instances WHERE stopped_at IS NULL AND tasks ? 'stats'",
    )
    .fetch_one(&store)
    .await
    .expect("instances");
    assert_eq!(live, 2, "both heartbeat rows report their stats runs");
    // Each collector collected: both hold claims of the slots they shared, and a server's slots
    // stay with one of them (affinity) once both are running.
    let per_instance: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT instance_id, count(*) FROM collector_claims WHERE task = 'stats' AND slot > $1
         GROUP BY instance_id ORDER BY 2",
    )
    .bind(both_started + chrono::Duration::seconds(2))
    .fetch_all(&store)
    .await
    .expect("claims per instance");
    assert_eq!(
        per_instance.len(),
        2,
        "both collectors collected: {per_instance:?}"
    );
    assert!(per_instance.iter().all(|(_, n)| *n >= 3), "{per_instance:?}");
    let holders_per_server: Vec<i64> = sqlx::query_scalar(
        "SELECT count(DISTINCT instance_id) FROM collector_claims WHERE task = 'stats' AND slot > $1
         GROUP BY server_id",
    )
    .bind(both_started + chrono::Duration::seconds(2))
    .fetch_all(&store)
    .await
    .expect("holders per server");
    assert_eq!(holders_per_server.len(), 16);
    assert!(
        holders_per_server.iter().all(|n| *n == 1),
        "a server's slots stick to one collector: {holders_per_server:?}"
    );
    for p in [&mut a, &mut b] {
        let status = p
            .terminate(Duration::from_secs(15))
            .await
            .expect("exit on SIGTERM");
        assert!(status.success(), "{status}");
    }
    let stopped: i64 =
        sqlx::query_scalar("SELECT count(*) FROM collector_instances WHERE stopped_at IS NOT NULL")
            .fetch_one(&store)
            .await
            .expect("stopped");
    assert_eq!(stopped, 2);
}

#[tokio::test]
async fn store_outage_is_buffered_and_written_later() {
    let store_cluster = Cluster::start();
    let store_url = store_cluster.url("postgres");
    let env = TestEnv::new("", "").await;
    // This test's store is a throwaway cluster that can be stopped: its own config file.
    let text = std::fs::read_to_string(&env.config_path).expect("config");
    let text = text.replace(&env.db.url, &store_url) + &collector_toml(1);
    std::fs::write(&env.config_path, text).expect("config");
    let (code, out, err) = cli(&env, &["migrate"]);
    assert_eq!(code, 0, "migrate: {out} {err}");
    let store = store_cluster.pool("postgres").await;
    let id = monitored::shared()
        .register(&store, &env.fernet_key, "main")
        .await;
    store.close().await;
    let collector = spawn(&env).await;
    let store = store_cluster.pool("postgres").await;
    let count = |store: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM availability WHERE server_id = $1")
            .bind(id)
            .fetch_one(&store)
            .await
            .expect("count")
    };
    wait_for("a first sample", Duration::from_secs(30), || {
        let store = store.clone();
        async move { count(store).await > 0 }
    })
    .await;
    store.close().await;
    let down_at = Utc::now();
    store_cluster.stop();
    wait_for("the collector to buffer", Duration::from_secs(60), || async {
        collector
            .logs()
            .contains("cannot claim servers; collecting all of them")
    })
    .await;
    wait_for(
        "a sample taken during the outage",
        Duration::from_secs(60),
        || async {
            collector.logs().matches("task=stats").count() >= 2
                && collector.logs().contains("store unreachable: buffering")
        },
    )
    .await;
    let up_at = Utc::now();
    store_cluster.start_again();
    let store = store_cluster.pool("postgres").await;
    wait_for("buffered samples in the store", Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM availability WHERE server_id = $1 AND collected_at > $2 AND collected_at < $3",
        )
        .bind(id)
        .bind(down_at)
        .bind(up_at)
        .fetch_one(&store)
        .await
        .unwrap_or(0)
            > 0
    })
    .await;
    assert!(collector.logs().contains("store reachable again"));
    wait_for("the outage in the system log", Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM system_log WHERE source = 'system' AND message LIKE 'the store was unreachable for % s'
             AND details LIKE '%rows were buffered in memory%' AND at > $1",
        )
        .bind(down_at)
        .fetch_one(&store)
        .await
        .unwrap_or(0)
            == 1
    })
    .await;
}

#[tokio::test]
async fn a_new_server_is_collected_within_seconds_of_its_notify() {
    let (env, store) = env_with(3600, "").await;
    let mut collector = spawn(&env).await;
    // The first runs (no servers yet) are done when the heartbeat row lists them.
    wait_for("the first run", Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT coalesce(bool_or(tasks ? 'stats'), false) FROM collector_instances",
        )
        .fetch_one(&store)
        .await
        .expect("instances")
    })
    .await;
    let id = monitored::shared()
        .register(&store, &env.fernet_key, "late")
        .await;
    // Well under the 60 s periodic reload: only the notification explains it.
    wait_for(
        "the new server's first snapshot",
        Duration::from_secs(30),
        || async {
            scalar_i64(
                &store,
                "SELECT count(*) FROM availability WHERE server_id = $1 AND up",
                id,
            )
            .await
                > 0
        },
    )
    .await;
    let status = collector
        .terminate(Duration::from_secs(15))
        .await
        .expect("SIGTERM");
    assert!(status.success());
}

/// A server registered without a password whose pg_hba.conf asks for one (Debian's default): the
/// availability sample says why in words an operator can act on.
#[tokio::test]
async fn a_missing_password_is_named_in_the_availability_sample() {
    let (env, store) = env_with(600, "").await;
    let cluster = Cluster::start_with_password("needs-a-Pa55word");
    let login = monitored::PgLogin {
        password: None,
        ..cluster.login()
    };
    let id = login.register(&store, &env.fernet_key, "nopass").await;
    once(&env, "stats");
    let (up, class, error): (bool, Option<String>, Option<String>) =
        sqlx::query_as("SELECT up, error_class, error FROM availability WHERE server_id = $1")
            .bind(id)
            .fetch_one(&store)
            .await
            .expect("availability sample");
    assert!(!up);
    assert_eq!(class.as_deref(), Some("auth_failed"));
    assert_eq!(
        error.as_deref(),
        Some("the server asks for a password and none is stored")
    );
}

/// Sessions on monitored servers: the limits every session carries, sslmode as libpq reads it, and
/// error classes whose messages never hold a password.
#[tokio::test]
async fn remote_sessions_carry_limits_follow_sslmode_and_classify_errors() {
    use pgmon_shared::remote::{self, ErrorClass, SessionOpts, SslMode, Target};
    let opts = SessionOpts::new("pgmon-test");
    let secret = "s3cret-Pa55word";
    let cluster = Cluster::start_with_password(secret);
    let target = Target {
        host: "127.0.0.1".into(),
        port: cluster.port,
        dbname: "postgres".into(),
        user: "postgres".into(),
        password: Some(secret.into()),
        sslmode: SslMode::Disable,
    };
    let client = remote::connect(&target, &opts).await.expect("connect");
    let row = client
        .query_one(
            "SELECT current_setting('application_name'), current_setting('default_transaction_read_only'),
                    current_setting('statement_timeout'), current_setting('lock_timeout')",
            &[],
        )
        .await
        .expect("settings");
    assert_eq!(row.get::<_, String>(0), "pgmon-test");
    assert_eq!(row.get::<_, String>(1), "on");
    assert_eq!(row.get::<_, String>(2), "5s");
    assert_eq!(row.get::<_, String>(3), "100ms");
    let e = remote::call(
        opts.call_deadline(),
        client.batch_execute("CREATE TABLE t (x int)"),
    )
    .await
    .expect_err("a read-only session");
    assert!(e.message.contains("read-only"), "{e}");

    let wrong = Target {
        password: Some("wrong-Pa55".into()),
        ..target.clone()
    };
    let e = remote::connect(&wrong, &opts).await.expect_err("wrong password");
    assert_eq!(e.class, ErrorClass::AuthFailed, "{e}");
    assert!(
        !e.to_string().contains("wrong-Pa55") && !e.to_string().contains(secret),
        "{e}"
    );

    // This cluster has no TLS: `require` refuses plain text, `prefer` falls back to it.
    let require = Target {
        sslmode: SslMode::Require,
        ..target.clone()
    };
    let e = remote::connect(&require, &opts)
        .await
        .expect_err("require without TLS");
    assert_eq!(e.class, ErrorClass::Tls, "{e}");
    let prefer = Target {
        sslmode: SslMode::Prefer,
        ..target.clone()
    };
    remote::connect(&prefer, &opts)
        .await
        .expect("prefer falls back to plain text");

    // A server with TLS, on a self-signed certificate: `prefer` and `require` encrypt (as the
    // server sees it), `disable` does not, and `verify-full` refuses a certificate no trusted CA signed.
    let pki = pgmon_tests::tls::Pki::new();
    pki.self_signed("selfsigned", "IP:127.0.0.1");
    pgmon_tests::tls::serve(&cluster, &pki, "selfsigned", "");
    for (mode, encrypted) in [
        (SslMode::Disable, false),
        (SslMode::Prefer, true),
        (SslMode::Require, true),
    ] {
        let c = remote::connect(
            &Target {
                sslmode: mode,
                ..target.clone()
            },
            &opts,
        )
        .await
        .unwrap_or_else(|e| panic!("{mode:?} on a TLS server: {e}"));
        let ssl: bool = c
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .await
            .expect("pg_stat_ssl")
            .get(0);
        assert_eq!(ssl, encrypted, "{mode:?}");
    }
    let full = Target {
        sslmode: SslMode::VerifyFull,
        ..target.clone()
    };
    let e = remote::connect(&full, &opts)
        .await
        .expect_err("an untrusted certificate");
    assert_eq!(e.class, ErrorClass::Tls, "{e}");
}

/// The systemd protocol as the unit uses it (Type=notify, WatchdogSec): READY after start, WATCHDOG
/// from the scheduler loop, STOPPING on SIGTERM, then exit 0.
#[tokio::test]
async fn tells_systemd_ready_feeds_the_watchdog_and_stops_cleanly() {
    let (env, _store) = env_with(3600, "").await;
    let sock_path = env.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let sock_env = sock_path.display().to_string();
    let mut collector = Proc::spawn_env(
        &bin("pgmon-collector"),
        &env.config_path,
        &["run"],
        READY,
        &[("NOTIFY_SOCKET", &sock_env), ("WATCHDOG_USEC", "1000000")],
    )
    .await;
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        let n = sock.recv(&mut buf).expect("a notification within 30 s");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    let status = collector
        .terminate(Duration::from_secs(15))
        .await
        .expect("SIGTERM");
    assert!(status.success(), "{status}");
    while !seen.contains("STOPPING=1") {
        let n = sock.recv(&mut buf).expect("STOPPING before exit");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// libpq's sslmode semantics, through the collector and the API: `disable` never encrypts,
/// `prefer` encrypts when the server offers TLS, `require` encrypts without checking the
/// certificate, `verify-ca` checks the chain but not the name, `verify-full` checks both. The
/// private CA is trusted through `PGSSLROOTCERT`, as with libpq.
#[tokio::test]
async fn sslmodes_check_what_libpq_checks() {
    use pgmon_tests::tls::{self, Pki};
    let (env, store) = env_with(600, "").await;
    let pki = Pki::new();
    pki.issue("trusted", "IP:127.0.0.1,DNS:localhost");
    pki.issue("named", "DNS:elsewhere.example");
    pki.self_signed("selfsigned", "IP:127.0.0.1");
    // The server's own record of each session: its database and whether it was encrypted.
    let trusted = Cluster::start();
    tls::serve(&trusted, &pki, "trusted", "log_connections = on");
    trusted
        .create_databases(&["via_disable", "via_prefer", "via_full"])
        .await;
    let ca_signed = Cluster::start();
    tls::serve(&ca_signed, &pki, "named", "");
    let self_signed = Cluster::start();
    tls::serve(&self_signed, &pki, "selfsigned", "");

    let mut expect = Vec::new();
    for (name, cluster, db, mode, up) in [
        ("disable", &trusted, "via_disable", "disable", true),
        ("prefer", &trusted, "via_prefer", "prefer", true),
        ("verify-full", &trusted, "via_full", "verify-full", true),
        ("verify-full-localhost", &trusted, "postgres", "verify-full", true),
        ("verify-ca-other-name", &ca_signed, "postgres", "verify-ca", true),
        (
            "verify-full-other-name",
            &ca_signed,
            "postgres",
            "verify-full",
            false,
        ),
        ("require-selfsigned", &self_signed, "postgres", "require", true),
        (
            "verify-ca-selfsigned",
            &self_signed,
            "postgres",
            "verify-ca",
            false,
        ),
    ] {
        // The certificate names both: the host name is checked as such, not only the address.
        let host = if name.ends_with("localhost") {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let id = cluster
            .login()
            .with_dbname(db)
            .register(&store, &env.fernet_key, name)
            .await;
        sqlx::query("UPDATE servers SET sslmode = $2, host = $3 WHERE id = $1")
            .bind(id)
            .bind(mode)
            .bind(host)
            .execute(&store)
            .await
            .expect("sslmode");
        expect.push((name, id, up));
    }
    let ca = pki.ca();
    let ca = ca.to_str().expect("CA path");
    pgmon_tests::output_ok(
        std::process::Command::new(bin("pgmon-collector"))
            .arg("--config")
            .arg(&env.config_path)
            .args(["once", "--task", "stats"])
            .env_remove("PGMON_TEST_PG_URL")
            .env_remove("PGMON_CONFIG")
            .env("PGSSLROOTCERT", ca),
        "pgmon-collector once --task stats",
    );
    for (name, id, up) in &expect {
        let (got, class): (bool, Option<String>) =
            sqlx::query_as("SELECT up, error_class FROM availability WHERE server_id = $1")
                .bind(id)
                .fetch_one(&store)
                .await
                .expect("sample");
        assert_eq!(got, *up, "{name}: {class:?}");
        if !up {
            assert_eq!(class.as_deref(), Some("tls"), "{name}");
        }
    }
    // The collector's sessions as the server logged them: `prefer` and `verify-full` encrypted,
    // `disable` not.
    let log = std::fs::read_to_string(trusted.log_path()).expect("server log");
    let authorized = |db: &str| -> Vec<&str> {
        log.lines()
            .filter(|l| l.contains("connection authorized") && l.contains(&format!("database={db} ")))
            .collect()
    };
    for (db, encrypted) in [("via_disable", false), ("via_prefer", true), ("via_full", true)] {
        let sessions = authorized(db);
        assert!(!sessions.is_empty(), "no collector session on {db}: {log}");
        assert!(
            sessions.iter().all(|l| l.contains("SSL enabled") == encrypted),
            "{db}: {sessions:?}"
        );
    }

    // The API's sessions, kept open in its pools, as pg_stat_ssl shows them.
    env.add_user("viewer", "viewer", "viewer-password-1");
    let api = Proc::spawn_env(
        &bin("pgmon-api"),
        &env.config_path,
        &["serve"],
        "pgmon-api listening on ",
        &[("PGSSLROOTCERT", ca)],
    )
    .await;
    let token = pgmon_tests::http::token(&api.base, "viewer", "viewer-password-1").await;
    let server_pool = trusted.pool("postgres").await;
    let api_sessions = || async {
        sqlx::query_as::<_, (String, bool)>(
            "SELECT a.datname::text, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name = 'pgmon-api' ORDER BY 1",
        )
        .fetch_all(&server_pool)
        .await
        .expect("pg_stat_ssl")
    };
    wait_for(
        "the API's sessions on the TLS server",
        Duration::from_secs(30),
        || async {
            for name in ["disable", "prefer", "verify-full"] {
                let (st, body) =
                    pgmon_tests::http::call("GET", &api.url(&format!("/servers/{name}")), Some(&token), None)
                        .await;
                assert_eq!(st, reqwest::StatusCode::OK, "{body}");
            }
            let dbs: std::collections::BTreeSet<String> =
                api_sessions().await.into_iter().map(|(db, _)| db).collect();
            dbs.len() == 3
        },
    )
    .await;
    let sessions = api_sessions().await;
    for (db, ssl) in &sessions {
        assert_eq!(*ssl, db != "via_disable", "{sessions:?}");
    }
}

/// Statistics, sizes and the database inventory of a throwaway cluster of `major`: every database's
/// counters as the server has them, the session counters where the version has them (14+), sizes,
/// owners and ages.
async fn collects_every_family(major: u32) {
    let (env, store) = env_with(600, "").await;
    let cluster = Cluster::start_major(major, "");
    cluster.create_databases(&["app db"]).await;
    let app = cluster.pool("app db").await;
    sqlx::query("CREATE TABLE t AS SELECT generate_series(1, 500) AS x")
        .execute(&app)
        .await
        .expect("table");
    let inserted = || async {
        sqlx::query_scalar::<_, i64>("SELECT tup_inserted FROM pg_stat_database WHERE datname = 'app db'")
            .fetch_one(&app)
            .await
            .expect("pg_stat_database")
    };
    wait_for(
        "the inserts in pg_stat_database",
        Duration::from_secs(20),
        || async { inserted().await >= 500 },
    )
    .await;
    let id = cluster
        .login()
        .register(&store, &env.fernet_key, "versioned")
        .await;
    for task in ["db_info", "stats", "sizes"] {
        let out = once(&env, task);
        assert!(
            out.contains(&format!("task={task}")) && out.contains("up=1 down=0"),
            "{task}: {out}"
        );
    }
    let (tup, sessions, numbackends): (Option<i64>, Option<i64>, Option<i32>) = sqlx::query_as(
        "SELECT tup_inserted, sessions, numbackends FROM stat_database WHERE server_id = $1 AND datname = 'app db'",
    )
    .bind(id)
    .fetch_one(&store)
    .await
    .expect("stat row");
    assert_eq!(tup, Some(inserted().await), "PostgreSQL {major}");
    assert!(numbackends >= Some(1));
    assert_eq!(
        sessions.is_some(),
        major >= 14,
        "session counters exist from 14 on"
    );
    let server_dbs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_database WHERE datname IS NOT NULL")
            .fetch_one(&app)
            .await
            .expect("count");
    let stored = scalar_i64(
        &store,
        "SELECT count(*) FROM stat_database WHERE server_id = $1",
        id,
    )
    .await;
    assert_eq!(stored, server_dbs);
    let (owner, age, template): (Option<String>, Option<i64>, Option<bool>) = sqlx::query_as(
        "SELECT owner, frozen_xid_age, datistemplate FROM databases WHERE server_id = $1 AND name = 'app db'",
    )
    .bind(id)
    .fetch_one(&store)
    .await
    .expect("inventory");
    assert_eq!((owner.as_deref(), template), (Some("postgres"), Some(false)));
    assert!(age > Some(0));
    let size: i64 =
        sqlx::query_scalar("SELECT size_bytes FROM db_size WHERE server_id = $1 AND datname = 'app db'")
            .bind(id)
            .fetch_one(&store)
            .await
            .expect("size");
    let real: i64 = sqlx::query_scalar("SELECT pg_database_size('app db')")
        .fetch_one(&app)
        .await
        .expect("size");
    assert!((size - real).abs() < 1024 * 1024, "{size} vs {real}");
}

macro_rules! for_each_major {
    ($body:ident: $($name:ident = $major:expr),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $body($major).await;
            }
        )*
    };
}

for_each_major!(collects_every_family:
    collects_every_family_pg12 = 12,
    collects_every_family_pg13 = 13,
    collects_every_family_pg14 = 14,
    collects_every_family_pg15 = 15,
    collects_every_family_pg16 = 16,
    collects_every_family_pg17 = 17,
    collects_every_family_pg18 = 18,
);
