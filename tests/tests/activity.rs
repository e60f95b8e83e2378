//! Live activity of a monitored server through the real API, on real throwaway clusters of every
//! major from 12 to 18: sessions, the lock-wait tree, cancel and terminate, replication with a real
//! streaming standby and slots, the xmin horizon and wraparound, progress of maintenance commands.

use pgmon_tests::cluster::Cluster;
use pgmon_tests::http::call;
use pgmon_tests::{Roles, monitored, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::time::Duration;

/// One test per major from 12 to 18, each calling `$body(major)`.
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

/// A session on `cluster`'s `postgres` database as `user`, named `app`.
async fn session(cluster: &Cluster, user: &str, app: &str) -> PgConnection {
    PgConnectOptions::new()
        .host("127.0.0.1")
        .port(cluster.port)
        .username(user)
        .database("postgres")
        .application_name(app)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
}

async fn exec(c: &mut PgConnection, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn pid_of(c: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *c)
        .await
        .expect("pid")
}

async fn get(roles: &Roles, path: &str) -> Value {
    let (st, v) = call("GET", &roles.api.url(path), Some(&roles.viewer), None).await;
    assert_eq!(st, StatusCode::OK, "{path}: {v}");
    v
}

fn by_pid(sessions: &Value, pid: i32) -> Value {
    sessions["sessions"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["pid"] == pid))
        .cloned()
        .unwrap_or(Value::Null)
}

async fn signal(
    roles: &Roles,
    token: &str,
    server: &str,
    pid: i32,
    what: &str,
    backend_start: &Value,
) -> (StatusCode, Value) {
    call(
        "POST",
        &roles
            .api
            .url(&format!("/api/servers/{server}/activity/{pid}/{what}")),
        Some(token),
        Some(&json!({ "backend_start": backend_start })),
    )
    .await
}

/// Sessions, the lock tree of a chain of three UPDATEs, and cancel / terminate with their guards.
async fn sessions_locks_and_signals(major: u32) {
    let c = Cluster::start_major(major, "");
    let roles = Roles::start().await;
    let store = roles.env.db.pool().await;
    c.login().register(&store, &roles.env.fernet_key, "db1").await;
    let mut admin = session(&c, "postgres", "setup").await;
    exec(&mut admin, "CREATE TABLE accounts (id int PRIMARY KEY, v int)").await;
    exec(&mut admin, "INSERT INTO accounts VALUES (1, 0)").await;
    exec(&mut admin, "CREATE ROLE app LOGIN").await;
    exec(&mut admin, "GRANT ALL ON accounts TO app").await;
    exec(&mut admin, "CREATE ROLE monitor LOGIN IN ROLE pg_monitor").await;

    // A chain: 1 holds the row, 2 waits for 1's transaction, 3 waits for 2's row lock.
    let mut s1 = session(&c, "app", "chain-1").await;
    exec(&mut s1, "BEGIN").await;
    exec(&mut s1, "UPDATE accounts SET v = 1 WHERE id = 1").await;
    let p1 = pid_of(&mut s1).await;
    let mut s2 = session(&c, "app", "chain-2").await;
    let p2 = pid_of(&mut s2).await;
    let t2 = tokio::spawn(async move {
        sqlx::query("UPDATE accounts SET v = 2 WHERE id = 1")
            .execute(&mut s2)
            .await
    });
    wait_for("2 to wait", Duration::from_secs(10), || async {
        get(&roles, "/api/servers/db1/locks").await["waiting"] == 1
    })
    .await;
    let mut s3 = session(&c, "app", "chain-3").await;
    let p3 = pid_of(&mut s3).await;
    let t3 = tokio::spawn(async move {
        sqlx::query("UPDATE accounts SET v = 3 WHERE id = 1")
            .execute(&mut s3)
            .await
    });
    wait_for("3 to wait", Duration::from_secs(10), || async {
        get(&roles, "/api/servers/db1/locks").await["waiting"] == 2
    })
    .await;

    let locks = get(&roles, "/api/servers/db1/locks").await;
    assert_eq!(locks["reachable"], true);
    assert_eq!(
        locks["version_num"].as_i64().map(|v| v / 10_000),
        Some(i64::from(major))
    );
    assert_eq!(locks["roots"], json!([p1]), "{locks}");
    let nodes = locks["nodes"].as_array().expect("nodes");
    let tree: Vec<(i64, i64, Option<i64>)> = nodes
        .iter()
        .map(|n| {
            (
                n["pid"].as_i64().unwrap_or(0),
                n["depth"].as_i64().unwrap_or(-1),
                n["parent_pid"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        tree[..3],
        [
            (i64::from(p1), 0, None),
            (i64::from(p2), 1, Some(i64::from(p1))),
            (i64::from(p3), 2, Some(i64::from(p2)))
        ],
        "{locks}"
    );
    assert!(nodes[0]["waiting_for"].is_null());
    assert_eq!(nodes[0]["state"], "idle in transaction");
    assert_eq!(nodes[0]["blocking_total"], 2);
    assert_eq!(nodes[1]["waiting_for"]["locktype"], "transactionid");
    assert_eq!(nodes[1]["waiting_for"]["mode"], "ShareLock");
    assert_eq!(nodes[1]["waiting_for"]["relation"], "accounts", "{locks}");
    assert_eq!(nodes[2]["waiting_for"]["locktype"], "tuple");
    assert_eq!(nodes[2]["waiting_for"]["relation"], "accounts");
    assert!(
        nodes[2]["waiting_secs"].as_f64().is_some_and(|s| s >= 0.0),
        "{locks}"
    );
    // A viewer reads the statement's shape, not its constants (api.viewer_query_text's default).
    assert_eq!(
        nodes[2]["query"], "UPDATE accounts SET v = $1 WHERE id = $2",
        "{locks}"
    );

    // Sessions: filters, sorting, pgmon's own marked.
    let chain = get(&roles, "/api/servers/db1/activity?application=CHAIN&sort=xact").await;
    assert_eq!(chain["count"], 3, "{chain}");
    assert_eq!(chain["sessions"][0]["pid"], p1, "the longest transaction first");
    let s = by_pid(&chain, p3);
    assert_eq!(
        (s["state"].as_str(), s["wait_event_type"].as_str()),
        (Some("active"), Some("Lock"))
    );
    assert_eq!(s["user"], "app");
    assert_eq!(s["database"], "postgres");
    assert!(
        s["blocked_by"].as_array().is_some_and(|b| b.contains(&json!(p2))),
        "{s}"
    );
    assert!(s["backend_start"].is_string() && s["query_secs"].as_f64().is_some());
    let waiting = get(&roles, "/api/servers/db1/activity?application=chain&state=active").await;
    assert_eq!(waiting["count"], 2);
    let all = get(&roles, "/api/servers/db1/activity").await;
    let ours: Vec<&Value> = all["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|s| s["pgmon"] == true)
        .collect();
    assert!(
        !ours.is_empty() && ours.iter().all(|s| s["application"] == "pgmon-api"),
        "{all}"
    );
    let hidden = get(&roles, "/api/servers/db1/activity?hide_pgmon=true").await;
    assert!(
        hidden["sessions"]
            .as_array()
            .expect("s")
            .iter()
            .all(|s| s["pgmon"] == false)
    );
    let long = get(&roles, "/api/servers/db1/activity?min_duration_secs=3600").await;
    assert_eq!(long["count"], 0);

    // Signals: a viewer is refused; a pid with another start time (a recycled pid) is not touched.
    let start3 = by_pid(&chain, p3)["backend_start"].clone();
    let (st, r) = signal(&roles, &roles.viewer, "db1", p3, "cancel", &start3).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{r}");
    let other_start = json!("2001-02-03T04:05:06.123456Z");
    let (st, r) = signal(&roles, &roles.operator, "db1", p3, "cancel", &other_start).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["outcome"], "gone", "{r}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!t3.is_finished(), "a recycled pid must not be signalled");
    let (st, r) = signal(&roles, &roles.operator, "db1", p3, "cancel", &start3).await;
    assert_eq!(
        (st, r["outcome"].as_str()),
        (StatusCode::OK, Some("signalled")),
        "{r}"
    );
    assert_eq!(r["user"], "app");
    let e = tokio::time::timeout(Duration::from_secs(10), t3)
        .await
        .expect("3 ends")
        .expect("join")
        .expect_err("3 was cancelled");
    assert!(e.to_string().contains("cancel"), "{e}");
    // Terminating the root blocker lets 2 through.
    let start1 = by_pid(&chain, p1)["backend_start"].clone();
    let (st, r) = signal(&roles, &roles.admin, "db1", p1, "terminate", &start1).await;
    assert_eq!(
        (st, r["outcome"].as_str()),
        (StatusCode::OK, Some("signalled")),
        "{r}"
    );
    tokio::time::timeout(Duration::from_secs(10), t2)
        .await
        .expect("2 ends")
        .expect("join")
        .expect("2 got the row");
    let (_, r) = signal(&roles, &roles.admin, "db1", p1, "terminate", &start1).await;
    assert_eq!(r["outcome"], "gone", "{r}");
    assert!(
        sqlx::query("SELECT 1").execute(&mut s1).await.is_err(),
        "1 was terminated"
    );

    // A pg_sleep is cancelled within moments.
    let mut sleeper = session(&c, "app", "sleeper").await;
    let ps = pid_of(&mut sleeper).await;
    let sleep = tokio::spawn(async move { sqlx::query("SELECT pg_sleep(60)").execute(&mut sleeper).await });
    wait_for("the sleep to run", Duration::from_secs(10), || async {
        by_pid(
            &get(&roles, "/api/servers/db1/activity?application=sleeper").await,
            ps,
        )["state"]
            == "active"
    })
    .await;
    let start = by_pid(
        &get(&roles, "/api/servers/db1/activity?application=sleeper").await,
        ps,
    )["backend_start"]
        .clone();
    let (_, r) = signal(&roles, &roles.operator, "db1", ps, "cancel", &start).await;
    assert_eq!(r["outcome"], "signalled", "{r}");
    let t = std::time::Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), sleep)
            .await
            .expect("sleep ends")
            .expect("join")
            .is_err()
    );
    assert!(t.elapsed() < Duration::from_secs(5));

    // A monitoring role without pg_signal_backend is answered clearly; with it, it may signal.
    pgmon_tests::monitored::PgLogin {
        user: "monitor".into(),
        ..c.login()
    }
    .register(&store, &roles.env.fernet_key, "db1-monitor")
    .await;
    let mut victim = session(&c, "app", "victim").await;
    exec(&mut victim, "BEGIN").await;
    let pv = pid_of(&mut victim).await;
    let vs = by_pid(
        &get(&roles, "/api/servers/db1-monitor/activity?application=victim").await,
        pv,
    )["backend_start"]
        .clone();
    let (st, r) = signal(&roles, &roles.operator, "db1-monitor", pv, "cancel", &vs).await;
    assert_eq!(
        (st, r["outcome"].as_str()),
        (StatusCode::OK, Some("not_permitted")),
        "{r}"
    );
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("pg_signal_backend")),
        "{r}"
    );
    exec(&mut admin, "GRANT pg_signal_backend TO monitor").await;
    let (_, r) = signal(&roles, &roles.operator, "db1-monitor", pv, "terminate", &vs).await;
    assert_eq!(r["outcome"], "signalled", "{r}");

    // Every attempt is in the audit, with who, where, whom and what.
    let (_, audit) = call(
        "GET",
        &roles
            .api
            .url("/api/audit/sessions?event_type=backend_cancel&limit=50"),
        Some(&roles.admin),
        None,
    )
    .await;
    let details: Vec<String> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["username"].as_str().unwrap_or(""),
                e["details"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(details.len(), 5, "{details:#?}");
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("view ") && d.contains(&format!("server db1, pid {p3}: refused")))
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("op ") && d.ends_with(&format!("server db1, pid {p3}: gone")))
    );
    assert!(details.iter().any(|d| d.starts_with("op ")
        && d.contains(&format!(
            "server db1, pid {p3} (user app, database postgres): signalled; query: UPDATE accounts SET v = 3"
        ))));
    assert!(
        details
            .iter()
            .any(|d| d.contains("db1-monitor") && d.contains("not_permitted"))
    );
    let (_, audit) = call(
        "GET",
        &roles.api.url("/api/audit/sessions?event_type=backend_terminate"),
        Some(&roles.admin),
        None,
    )
    .await;
    assert_eq!(audit["total"], 3, "{audit}");
}

for_each_major!(sessions_locks_and_signals:
    sessions_locks_and_signals_pg12 = 12,
    sessions_locks_and_signals_pg13 = 13,
    sessions_locks_and_signals_pg14 = 14,
    sessions_locks_and_signals_pg15 = 15,
    sessions_locks_and_signals_pg16 = 16,
    sessions_locks_and_signals_pg17 = 17,
    sessions_locks_and_signals_pg18 = 18,
);

async fn get_as(roles: &Roles, token: &str, path: &str) -> Value {
    let (st, v) = call("GET", &roles.api.url(path), Some(token), None).await;
    assert_eq!(st, StatusCode::OK, "{path}: {v}");
    v
}

/// A password typed into a statement never leaves pgmon: not in the sessions, the lock tree, the
/// original's `/server_stats` queries, a cancel's answer or its audit row, whoever asks. Operators and
/// admins read the rest of the text; viewers read it normalized by default, and nothing with
/// `viewer_query_text = "none"`.
#[tokio::test]
async fn query_texts_hide_passwords_and_viewers_get_them_normalized() {
    const SECRET: &str = "hunter2secret";
    const CONNINFO_SECRET: &str = "conninfo2secret";
    let c = Cluster::start();
    let roles = Roles::start().await;
    let store = roles.env.db.pool().await;
    c.login().register(&store, &roles.env.fernet_key, "db1").await;
    let mut setup = session(&c, "postgres", "setup").await;
    exec(&mut setup, "CREATE ROLE rotated LOGIN").await;

    // A password change that waits: another transaction has updated the same role and holds it.
    let mut holder = session(&c, "postgres", "holder").await;
    exec(&mut holder, "BEGIN").await;
    exec(&mut holder, "ALTER ROLE rotated CONNECTION LIMIT 5").await;
    let mut setter = session(&c, "postgres", "setter").await;
    let ps = pid_of(&mut setter).await;
    let set_password = tokio::spawn(async move {
        sqlx::query("ALTER ROLE rotated PASSWORD 'hunter2secret' VALID UNTIL '2099-01-01'")
            .execute(&mut setter)
            .await
    });
    // And a long statement carrying a conninfo with a password, as dblink calls do.
    let mut sleeper = session(&c, "postgres", "sleeper").await;
    let pz = pid_of(&mut sleeper).await;
    let sleep = tokio::spawn(async move {
        sqlx::query("SELECT pg_sleep(60), 'host=10.0.0.1 password=conninfo2secret user=u' AS conninfo")
            .execute(&mut sleeper)
            .await
    });
    wait_for("the password change to wait", Duration::from_secs(10), || async {
        let a = get_as(&roles, &roles.admin, "/api/servers/db1/activity").await;
        by_pid(&a, ps)["wait_event_type"] == "Lock" && by_pid(&a, pz)["state"] == "active"
    })
    .await;

    // Admins and operators: the whole text, the secrets replaced.
    for token in [&roles.admin, &roles.operator] {
        let all = get_as(&roles, token, "/api/servers/db1/activity").await;
        assert_eq!(
            by_pid(&all, ps)["query"],
            "ALTER ROLE rotated PASSWORD '***' VALID UNTIL '2099-01-01'",
            "{all}"
        );
        assert_eq!(
            by_pid(&all, pz)["query"],
            "SELECT pg_sleep(60), 'host=10.0.0.1 password=*** user=u' AS conninfo"
        );
        let full = get_as(&roles, token, "/api/servers/db1/activity?full_query=true").await;
        let locks = get_as(&roles, token, "/api/servers/db1/locks").await;
        let live = get_as(&roles, token, "/api/server_stats/db1").await;
        for v in [&all, &full, &locks, &live] {
            let text = v.to_string();
            assert!(
                !text.contains(SECRET) && !text.contains(CONNINFO_SECRET),
                "{text}"
            );
        }
        assert!(locks["nodes"].as_array().is_some_and(|n| {
            n.iter()
                .any(|n| n["pid"] == ps && n["query"].as_str().is_some_and(|q| q.contains("PASSWORD '***'")))
        }));
        assert!(live["queries"].as_array().is_some_and(|q| {
            q.iter()
                .any(|q| q["pid"] == pz && q["query"].as_str().is_some_and(|t| t.contains("password=***")))
        }));
    }

    // Viewers: constants replaced, in every answer that carries query texts.
    let all = get(&roles, "/api/servers/db1/activity").await;
    assert_eq!(
        by_pid(&all, ps)["query"],
        "ALTER ROLE rotated PASSWORD $1 VALID UNTIL $2",
        "{all}"
    );
    assert_eq!(by_pid(&all, pz)["query"], "SELECT pg_sleep($1), $2 AS conninfo");
    let locks = get(&roles, "/api/servers/db1/locks").await;
    let live = get(&roles, "/api/server_stats/db1").await;
    assert!(live["queries"].as_array().is_some_and(|q| {
        q.iter()
            .any(|q| q["pid"] == pz && q["query"] == "SELECT pg_sleep($1), $2 AS conninfo")
    }));
    for v in [&all, &locks, &live] {
        let text = v.to_string();
        assert!(
            !text.contains(SECRET) && !text.contains(CONNINFO_SECRET) && !text.contains("2099-01-01"),
            "{text}"
        );
    }

    // Cancelling the password change: neither its answer nor its audit row holds the password.
    let start = by_pid(&all, ps)["backend_start"].clone();
    let (st, r) = signal(&roles, &roles.operator, "db1", ps, "cancel", &start).await;
    assert_eq!(
        (st, r["outcome"].as_str()),
        (StatusCode::OK, Some("signalled")),
        "{r}"
    );
    assert_eq!(
        r["query"],
        "ALTER ROLE rotated PASSWORD '***' VALID UNTIL '2099-01-01'"
    );
    tokio::time::timeout(Duration::from_secs(10), set_password)
        .await
        .expect("the password change ends")
        .expect("join")
        .expect_err("it was cancelled");
    let audit = get_as(
        &roles,
        &roles.admin,
        "/api/audit/sessions?event_type=backend_cancel&limit=50",
    )
    .await;
    let row = audit["items"]
        .as_array()
        .and_then(|i| {
            i.iter().find(|e| {
                e["details"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("pid {ps}")))
            })
        })
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        row["details"]
            .as_str()
            .is_some_and(|d| d.contains("signalled; query: ALTER ROLE rotated PASSWORD '***'")),
        "{audit}"
    );
    assert!(!audit.to_string().contains(SECRET), "{audit}");

    // viewer_query_text = "none": viewers get no text at all, admins still the whole one.
    let quiet = Roles::start_with("viewer_query_text = \"none\"").await;
    let quiet_store = quiet.env.db.pool().await;
    c.login()
        .register(&quiet_store, &quiet.env.fernet_key, "db1")
        .await;
    let viewed = get(&quiet, "/api/servers/db1/activity?full_query=true").await;
    let s = by_pid(&viewed, pz);
    assert_eq!(s["state"], "active", "{viewed}");
    assert!(s["query"].is_null() && s["query_chars"].is_null(), "{s}");
    let live = get(&quiet, "/api/server_stats/db1").await;
    assert!(
        live["queries"]
            .as_array()
            .is_some_and(|q| q.iter().any(|q| q["pid"] == pz && q["query"].is_null()))
    );
    let admin = get_as(&quiet, &quiet.admin, "/api/servers/db1/activity").await;
    assert_eq!(
        by_pid(&admin, pz)["query"],
        "SELECT pg_sleep(60), 'host=10.0.0.1 password=*** user=u' AS conninfo"
    );
    let start = by_pid(&admin, pz)["backend_start"].clone();
    let (_, r) = signal(&quiet, &quiet.admin, "db1", pz, "cancel", &start).await;
    assert_eq!(r["outcome"], "signalled", "{r}");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .expect("the sleep ends")
            .expect("join")
            .is_err()
    );
    drop(holder);
}

/// A real streaming standby: lag after a burst while its replay is paused, zero once it has caught
/// up and the primary is idle; the WAL receiver's view; an active slot and an inactive one that
/// retains WAL.
async fn replication(major: u32) {
    let primary = Cluster::start_major(major, "");
    let standby = Cluster::standby_of(
        &primary,
        "standby1",
        "hot_standby_feedback = on\nwal_receiver_status_interval = 1",
    )
    .await;
    let roles = Roles::start().await;
    let store = roles.env.db.pool().await;
    primary
        .login()
        .register(&store, &roles.env.fernet_key, "primary")
        .await;
    standby
        .login()
        .register(&store, &roles.env.fernet_key, "replica")
        .await;
    let mut p = session(&primary, "postgres", "writer").await;
    let mut s = session(&standby, "postgres", "replay-control").await;

    wait_for("the standby to stream", Duration::from_secs(30), || async {
        let r = get(&roles, "/api/servers/primary/replication").await;
        r["standbys"][0]["state"] == "streaming" && r["standbys"][0]["application"] == "standby1"
    })
    .await;
    exec(&mut p, "CREATE TABLE before_burst (x int)").await;
    wait_for(
        "a first transaction replayed",
        Duration::from_secs(30),
        || async {
            let r = get(&roles, "/api/servers/replica/replication").await;
            r["wal_receiver"]["last_replay_at"].is_string() && r["wal_receiver"]["replay_lag_bytes"] == 0
        },
    )
    .await;
    exec(&mut s, "SELECT pg_wal_replay_pause()").await;
    exec(
        &mut p,
        "CREATE TABLE burst AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 50000) g",
    )
    .await;
    wait_for(
        "the primary to see the standby behind",
        Duration::from_secs(30),
        || async {
            let r = get(&roles, "/api/servers/primary/replication").await;
            r["standbys"][0]["replay_lag_bytes"].as_i64() > Some(1_000_000)
                && r["standbys"][0]["flush_lag_bytes"] == 0
        },
    )
    .await;
    let r = get(&roles, "/api/servers/replica/replication").await;
    assert_eq!(r["role"], "standby", "{r}");
    let w = &r["wal_receiver"];
    assert_eq!(w["status"], "streaming", "{r}");
    assert_eq!(w["slot_name"], "standby1");
    assert!(w["replay_lag_bytes"].as_i64() > Some(1_000_000), "{r}");
    assert!(w["replay_delay_secs"].as_f64() > Some(0.0), "{r}");
    assert!(r["standbys"].as_array().is_some_and(Vec::is_empty));

    exec(&mut s, "SELECT pg_wal_replay_resume()").await;
    wait_for("no lag once idle", Duration::from_secs(60), || async {
        let r = get(&roles, "/api/servers/primary/replication").await;
        let st = &r["standbys"][0];
        st["replay_lag_bytes"] == 0 && st["replay_lag_secs"] == 0.0 && st["write_lag_secs"] == 0.0
    })
    .await;
    wait_for("no replay delay once idle", Duration::from_secs(30), || async {
        let r = get(&roles, "/api/servers/replica/replication").await;
        r["wal_receiver"]["replay_lag_bytes"] == 0 && r["wal_receiver"]["replay_delay_secs"] == 0.0
    })
    .await;

    // Slots: the standby's, active; an inactive one keeping WAL from being recycled.
    exec(
        &mut p,
        "SELECT pg_create_physical_replication_slot('idle_slot', true)",
    )
    .await;
    exec(
        &mut p,
        "INSERT INTO burst SELECT g, repeat('y', 100) FROM generate_series(1, 50000) g",
    )
    .await;
    exec(&mut p, "SELECT pg_switch_wal()").await;
    let r = get(&roles, "/api/servers/primary/replication").await;
    assert_eq!(r["role"], "primary");
    let slots = r["slots"].as_array().expect("slots");
    let slot = |name: &str| {
        slots
            .iter()
            .find(|s| s["slot_name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let active = slot("standby1");
    assert_eq!(
        (active["active"].as_bool(), active["slot_type"].as_str()),
        (Some(true), Some("physical")),
        "{r}"
    );
    let idle = slot("idle_slot");
    assert_eq!(idle["active"], false, "{r}");
    assert!(idle["retained_bytes"].as_i64() > Some(5_000_000), "{r}");
    if major >= 13 {
        assert_eq!(idle["wal_status"], "reserved", "{r}");
    } else {
        assert!(idle["wal_status"].is_null());
    }
    // A snapshot held on the standby reaches the primary as feedback and holds its xmin horizon;
    // with a slot, PostgreSQL keeps that xmin on the slot, which is named.
    let mut reader = session(&standby, "postgres", "standby-reader").await;
    exec(&mut reader, "BEGIN ISOLATION LEVEL REPEATABLE READ").await;
    exec(&mut reader, "SELECT count(*) FROM burst").await;
    wait_for("the standby's xmin", Duration::from_secs(30), || async {
        let w = get(&roles, "/api/servers/primary/wraparound").await;
        w["holders"].as_array().is_some_and(|h| {
            h.iter()
                .any(|h| h["kind"] == "replication_slot" && h["name"] == "standby1" && h["state"] == "active")
        })
    })
    .await;
}

for_each_major!(replication:
    replication_pg12 = 12,
    replication_pg13 = 13,
    replication_pg14 = 14,
    replication_pg15 = 15,
    replication_pg16 = 16,
    replication_pg17 = 17,
    replication_pg18 = 18,
);

/// Who holds the xmin horizon (a prepared transaction, an idle-in-transaction session), database
/// ages, and progress of a VACUUM (cancelled through the API) and a CREATE INDEX CONCURRENTLY.
async fn wraparound_and_progress(major: u32) {
    let c = Cluster::start_major(major, "max_prepared_transactions = 5\nautovacuum = off");
    let roles = Roles::start().await;
    let store = roles.env.db.pool().await;
    c.login().register(&store, &roles.env.fernet_key, "db1").await;
    let mut admin = session(&c, "postgres", "setup").await;
    exec(
        &mut admin,
        "CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 60000) g",
    )
    .await;
    let mut holder = session(&c, "postgres", "holder").await;
    exec(&mut holder, "BEGIN ISOLATION LEVEL REPEATABLE READ").await;
    exec(&mut holder, "SELECT count(*) FROM pg_class").await;
    let ph = pid_of(&mut holder).await;
    for _ in 0..5 {
        exec(&mut admin, "SELECT txid_current()").await;
    }
    exec(&mut admin, "BEGIN").await;
    exec(&mut admin, "INSERT INTO big VALUES (0, '')").await;
    exec(&mut admin, "PREPARE TRANSACTION 'pgmon-prepared'").await;
    for _ in 0..20 {
        exec(&mut admin, "SELECT txid_current()").await;
    }
    let w = get(&roles, "/api/servers/db1/wraparound").await;
    assert_eq!(w["reachable"], true, "{w}");
    let h = w["holders"].as_array().expect("holders");
    assert_eq!(w["oldest_xmin_holder"], h[0]);
    assert_eq!(h.len(), 2, "pgmon's own sessions are no holders: {w}");
    assert_eq!(
        (h[0]["kind"].as_str(), h[0]["pid"].as_i64()),
        (Some("session"), Some(i64::from(ph))),
        "{w}"
    );
    assert_eq!(h[0]["state"], "idle in transaction");
    assert_eq!(
        (h[1]["kind"].as_str(), h[1]["name"].as_str()),
        (Some("prepared_transaction"), Some("pgmon-prepared")),
        "{w}"
    );
    assert!(
        h[1]["age"].as_i64() >= Some(20) && h[0]["age"].as_i64() >= Some(25),
        "{w}"
    );
    assert!(h[0]["age"].as_i64() > h[1]["age"].as_i64(), "{w}");
    assert_eq!(w["autovacuum_freeze_max_age"], 200_000_000);
    let pg = w["databases"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["database"] == "postgres"))
        .cloned()
        .expect("postgres database");
    assert!(pg["xid_age"].as_i64() > Some(20), "{w}");
    let pct = pg["xid_used_pct"].as_f64().expect("pct");
    assert!((0.0..1.0).contains(&pct), "{pct}");
    if major >= 14 {
        assert!(w["vacuum_failsafe_age"].as_i64().is_some());
    }
    exec(&mut admin, "COMMIT PREPARED 'pgmon-prepared'").await;
    exec(&mut holder, "COMMIT").await;

    // A slowed-down VACUUM shows its phase and share done; an operator cancels it.
    let mut vac = session(&c, "postgres", "vacuumer").await;
    exec(&mut vac, "SET vacuum_cost_delay = '100ms'").await;
    exec(&mut vac, "SET vacuum_cost_limit = 1").await;
    let pv = pid_of(&mut vac).await;
    let vacuum = tokio::spawn(async move { sqlx::query("VACUUM big").execute(&mut vac).await });
    wait_for("the vacuum's progress", Duration::from_secs(20), || async {
        let p = get(&roles, "/api/servers/db1/progress").await;
        p["commands"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["command"] == "vacuum"
                    && c["pid"] == pv
                    && c["total"].as_i64() > Some(100)
                    && c["done"].as_i64() > Some(0)
            })
        })
    })
    .await;
    let p = get(&roles, "/api/servers/db1/progress").await;
    let v = p["commands"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["pid"] == pv))
        .cloned()
        .expect("vacuum");
    assert_eq!(
        (v["relation"].as_str(), v["database"].as_str(), v["unit"].as_str()),
        (Some("big"), Some("postgres"), Some("heap blocks")),
        "{v}"
    );
    assert!(v["phase"].as_str().is_some_and(|s| s.contains("heap")), "{v}");
    let share = v["share_done"].as_f64().expect("share");
    assert!(share > 0.0 && share < 1.0, "{v}");
    let start = by_pid(
        &get(&roles, "/api/servers/db1/activity?application=vacuumer").await,
        pv,
    )["backend_start"]
        .clone();
    let (_, r) = signal(&roles, &roles.operator, "db1", pv, "cancel", &start).await;
    assert_eq!(r["outcome"], "signalled", "{r}");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), vacuum)
            .await
            .expect("vacuum ends")
            .expect("join")
            .is_err()
    );

    // CREATE INDEX CONCURRENTLY waits for an open writer: its phase says so.
    let mut writer = session(&c, "postgres", "writer").await;
    exec(&mut writer, "BEGIN").await;
    exec(&mut writer, "INSERT INTO big VALUES (-1, '')").await;
    let mut ix = session(&c, "postgres", "indexer").await;
    let pi = pid_of(&mut ix).await;
    let index = tokio::spawn(async move {
        sqlx::query("CREATE INDEX CONCURRENTLY big_g ON big (g)")
            .execute(&mut ix)
            .await
    });
    wait_for("the index build's progress", Duration::from_secs(20), || async {
        let p = get(&roles, "/api/servers/db1/progress").await;
        p["commands"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["command"] == "create_index"
                    && c["pid"] == pi
                    && c["relation"] == "big"
                    && c["phase"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("waiting for writers"))
            })
        })
    })
    .await;
    exec(&mut writer, "COMMIT").await;
    tokio::time::timeout(Duration::from_secs(30), index)
        .await
        .expect("index ends")
        .expect("join")
        .expect("index built");
    let p = get(&roles, "/api/servers/db1/progress").await;
    assert!(p["commands"].as_array().is_some_and(Vec::is_empty), "{p}");
}

for_each_major!(wraparound_and_progress:
    wraparound_and_progress_pg12 = 12,
    wraparound_and_progress_pg13 = 13,
    wraparound_and_progress_pg14 = 14,
    wraparound_and_progress_pg15 = 15,
    wraparound_and_progress_pg16 = 16,
    wraparound_and_progress_pg17 = 17,
    wraparound_and_progress_pg18 = 18,
);

/// `api.backend_signals` turns signals off or down to cancel only, audited; a dead server answers
/// `reachable: false` (at once the second time), and a signal to it `unreachable`.
#[tokio::test]
async fn signal_policy_and_dead_servers() {
    let c = Cluster::start();
    for (policy, cancel, terminate) in [
        ("off", StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
        ("cancel", StatusCode::OK, StatusCode::FORBIDDEN),
    ] {
        let roles = Roles::start_with(&format!("backend_signals = \"{policy}\"")).await;
        let store = roles.env.db.pool().await;
        c.login().register(&store, &roles.env.fernet_key, "db1").await;
        let mut s = session(&c, "postgres", "victim").await;
        let pid = pid_of(&mut s).await;
        let start = by_pid(
            &get(&roles, "/api/servers/db1/activity?application=victim").await,
            pid,
        )["backend_start"]
            .clone();
        let (st, r) = signal(&roles, &roles.admin, "db1", pid, "cancel", &start).await;
        assert_eq!(st, cancel, "{policy}: {r}");
        let (st, r) = signal(&roles, &roles.admin, "db1", pid, "terminate", &start).await;
        assert_eq!(st, terminate, "{policy}: {r}");
        assert!(
            r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("api.backend_signals")),
            "{r}"
        );
        assert!(
            sqlx::query("SELECT 1").execute(&mut s).await.is_ok(),
            "{policy}: still alive"
        );
        let (_, audit) = call(
            "GET",
            &roles.api.url("/api/audit/sessions?event_type=backend_terminate"),
            Some(&roles.admin),
            None,
        )
        .await;
        assert!(
            audit["items"][0]["details"]
                .as_str()
                .is_some_and(|d| d.contains("refused")),
            "{audit}"
        );
    }

    let roles = Roles::start().await;
    let store = roles.env.db.pool().await;
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = hole.local_addr().expect("addr").port();
    monitored::shared()
        .at_port(port)
        .register(&store, &roles.env.fernet_key, "hole")
        .await;
    for path in ["activity", "locks", "replication", "wraparound", "progress"] {
        let t = std::time::Instant::now();
        let r = get(&roles, &format!("/api/servers/hole/{path}")).await;
        assert_eq!(
            (r["reachable"].as_bool(), r["error_class"].as_str()),
            (Some(false), Some("timeout")),
            "{path}: {r}"
        );
        if path != "activity" {
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{path} waited {:?} for a server known dead",
                t.elapsed()
            );
        }
    }
    let (st, r) = signal(
        &roles,
        &roles.admin,
        "hole",
        1,
        "cancel",
        &json!("2020-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(
        (st, r["outcome"].as_str()),
        (StatusCode::OK, Some("unreachable")),
        "{r}"
    );
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing was sent")),
        "{r}"
    );
    let (st, _) = call(
        "GET",
        &roles.api.url("/api/servers/nope/activity"),
        Some(&roles.viewer),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    drop(hole);
}
