//! Several collectors, restarts and crashes, and servers that freeze mid-run (issue 21, items 10 to
//! 12): the real binary against real clusters.
//!
//! - A server's slots stick to one live collector, and its statements baseline moves with it, so two
//!   collectors and a restart of one of them lose no statements slot.
//! - A collector killed with -9 mid-slot is known dead at once (its advisory lock is gone), so its
//!   restart redoes the slot at once instead of a minute later (or never, for a long interval).
//! - A server that stops answering mid-run is abandoned at the per-server deadline; the others'
//!   slots are written on time.

use chrono::{DateTime, Utc};
use pgmon_tests::cluster::Cluster;
use pgmon_tests::{Proc, TestEnv, bin, monitored, run_cli, wait_for};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READY: &str = "pgmon-collector running instance=";

async fn env(collector: &str) -> (TestEnv, PgPool) {
    let env = TestEnv::new("", collector).await;
    let (code, out, err) = run_cli(&bin("pgmon-collector"), &env.config_path, &["migrate"], None);
    assert_eq!(code, 0, "migrate failed: {out} {err}");
    let pool = env.db.pool().await;
    (env, pool)
}

async fn spawn(env: &TestEnv) -> Proc {
    Proc::spawn(&bin("pgmon-collector"), &env.config_path, &["run"], READY).await
}

/// The (server, slot) pairs that were collected (an availability sample, up) after the server's first
/// statements slot, but have no statements: the slots whose statement history has a hole.
async fn statement_holes(store: &PgPool) -> Vec<(i64, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT a.server_id, a.slot FROM availability a
         JOIN (SELECT server_id, min(slot) AS first FROM stat_statements GROUP BY 1) f USING (server_id)
         WHERE a.up AND a.slot > f.first
           AND NOT EXISTS (SELECT 1 FROM stat_statements s WHERE s.server_id = a.server_id AND s.slot = a.slot)
         ORDER BY 1, 2",
    )
    .fetch_all(store)
    .await
    .expect("holes")
}

async fn statement_slots(store: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(DISTINCT (server_id, slot)) FROM stat_statements")
        .fetch_one(store)
        .await
        .expect("slots")
}

#[tokio::test]
async fn two_collectors_and_a_restart_record_every_statement_slot() {
    let cluster = Cluster::start_major(
        pgmon_tests::cluster::default_major(),
        "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all",
    );
    let opts = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(cluster.port)
        .username("postgres")
        .database("postgres")
        .application_name("workload");
    let mut admin = opts.connect().await.expect("connect");
    sqlx::query("CREATE EXTENSION pg_stat_statements")
        .execute(&mut admin)
        .await
        .expect("extension");
    // Statements run in every slot, on top of the collector's own.
    let workload = tokio::spawn(async move {
        loop {
            let _ = sqlx::query("SELECT count(*) FROM pg_class WHERE relpages >= 0")
                .execute(&mut admin)
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // 4-second slots: a run hands its moved baselines over in its first milliseconds, well within
    // the 2-second deadline per server.
    let (env, store) = env(
        "[collector]\ncollect_interval_secs = 4\nsize_update_interval_secs = 3600\n\
         db_check_interval_secs = 3600\nmaintenance_interval_secs = 3600\nactivity_interval_secs = 3600\n",
    )
    .await;
    let servers = 8;
    for i in 0..servers {
        cluster
            .login()
            .register(&store, &env.fernet_key, &format!("st-{i}"))
            .await;
    }
    let a = spawn(&env).await;
    let mut b = spawn(&env).await;
    let all_have = |n: i64| {
        let store = store.clone();
        async move {
            let min: Option<i64> = sqlx::query_scalar(
                "SELECT min(c) FROM (SELECT s.id, count(DISTINCT st.slot) AS c FROM servers s
                 LEFT JOIN stat_statements st ON st.server_id = s.id GROUP BY s.id) x",
            )
            .fetch_one(&store)
            .await
            .expect("per server");
            min.unwrap_or(0) >= n
        }
    };
    wait_for(
        "three statements slots of every server",
        Duration::from_secs(60),
        || all_have(3),
    )
    .await;
    let status = b
        .terminate(Duration::from_secs(15))
        .await
        .expect("exit on SIGTERM");
    assert!(status.success(), "{status}");
    let before = statement_slots(&store).await;
    wait_for("two slots without it", Duration::from_secs(30), || async {
        statement_slots(&store).await >= before + 2 * servers
    })
    .await;
    let mut b2 = spawn(&env).await;
    let before = statement_slots(&store).await;
    wait_for(
        "three slots with the restarted collector",
        Duration::from_secs(40),
        || async { statement_slots(&store).await >= before + 3 * servers },
    )
    .await;
    let mut a = a;
    for p in [&mut a, &mut b2] {
        let status = p
            .terminate(Duration::from_secs(15))
            .await
            .expect("exit on SIGTERM");
        assert!(status.success(), "{status}");
    }
    workload.abort();
    let holes = statement_holes(&store).await;
    assert!(holes.is_empty(), "statements slots lost: {holes:?}");
    // The three processes all collected, and no server's slots were split between two of them at
    // once: each (server, slot) was claimed once.
    let instances: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT instance_id) FROM collector_claims c
         WHERE task = 'stats' AND EXISTS (SELECT 1 FROM stat_statements s WHERE s.server_id = c.server_id AND s.slot = c.slot)",
    )
    .fetch_one(&store)
    .await
    .expect("instances");
    assert_eq!(instances, 3, "each collector wrote statements");
    let per_server: i64 = sqlx::query_scalar(
        "SELECT min(c) FROM (SELECT server_id, count(DISTINCT slot) AS c FROM stat_statements GROUP BY 1) x",
    )
    .fetch_one(&store)
    .await
    .expect("per server");
    assert!(per_server >= 7, "{per_server}");
}

#[tokio::test]
async fn kill_9_mid_slot_then_restart_redoes_the_slot_at_once() {
    // Day-long slots: the restarted collector's first run is the only one that can redo the slot.
    // Concurrency 1, and the black hole sorts first: the good server waits behind it, so the kill
    // lands after the claims and before the good server's snapshot.
    let (env, store) = env(
        "[collector]\ncollect_interval_secs = 86400\nsize_update_interval_secs = 86400\n\
         db_check_interval_secs = 86400\nmaintenance_interval_secs = 86400\nactivity_interval_secs = 86400\n\
         concurrency = 1\n",
    )
    .await;
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = hole.local_addr().expect("addr").port();
    let hole_id = monitored::shared()
        .at_port(port)
        .register(&store, &env.fernet_key, "a-hole")
        .await;
    let good = monitored::shared()
        .register(&store, &env.fernet_key, "b-good")
        .await;
    let mut first = spawn(&env).await;
    let claimed = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM collector_claims WHERE task = 'stats'")
            .fetch_one(&store)
            .await
            .expect("claims")
            >= 2
    };
    wait_for("the slot's claims", Duration::from_secs(20), claimed).await;
    first.kill9();
    let slot: DateTime<Utc> =
        sqlx::query_scalar("SELECT slot FROM collector_claims WHERE task = 'stats' AND server_id = $1")
            .bind(good)
            .fetch_one(&store)
            .await
            .expect("slot");
    let written = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM availability WHERE server_id = $1 AND slot = $2")
            .bind(good)
            .bind(slot)
            .fetch_one(&store)
            .await
            .expect("availability")
    };
    assert_eq!(
        written().await,
        0,
        "the good server was collected before the kill"
    );
    let restarted = std::time::Instant::now();
    let second = spawn(&env).await;
    // Well before the dead process's heartbeat (60 s) could go stale.
    wait_for(
        "the killed slot redone by the restart",
        Duration::from_secs(30),
        || async { written().await == 1 },
    )
    .await;
    assert!(restarted.elapsed() < Duration::from_secs(40));
    let holder: uuid::Uuid = sqlx::query_scalar(
        "SELECT instance_id FROM collector_claims WHERE task = 'stats' AND server_id = $1",
    )
    .bind(hole_id)
    .fetch_one(&store)
    .await
    .expect("holder");
    let second_id = second.base.clone();
    assert_eq!(
        holder.to_string(),
        second_id,
        "the restart took the dead process's claims"
    );
    assert!(second.logs().contains("took over servers"), "{}", second.logs());
    // `once` may always redo the current slot, even while the service holds its claims.
    let (code, out, err) = run_cli(
        &bin("pgmon-collector"),
        &env.config_path,
        &["once", "--task", "stats"],
        None,
    );
    assert!(out.contains("servers=2 skipped=0"), "{code} {out} {err}");
    drop(hole);
}

/// A relay to `port` that passes the first `budget` bytes of each connection's answers and then
/// freezes (holds both sockets, forwards nothing): a server that stops answering mid-run.
async fn freezing_relay(port: u16, budget: usize) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let relay_port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut left = budget;
                    let mut buf = vec![0u8; 4096];
                    while left > 0 {
                        let n = match sr.read(&mut buf[..left.min(4096)]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    relay_port
}

#[tokio::test]
async fn a_server_that_freezes_mid_run_is_abandoned_at_the_deadline() {
    let cluster = Cluster::start();
    // 4-second slots: the deadline per server is 2 s; every remote call's own deadline is 7 s, and a
    // stats run has eight families.
    let (env, store) = env(
        "[collector]\ncollect_interval_secs = 4\nsize_update_interval_secs = 3600\n\
         db_check_interval_secs = 3600\nmaintenance_interval_secs = 3600\nactivity_interval_secs = 3600\n",
    )
    .await;
    let relay = freezing_relay(cluster.port, 1500).await;
    let frozen = cluster
        .login()
        .at_port(relay)
        .register(&store, &env.fernet_key, "frozen")
        .await;
    let good = cluster.login().register(&store, &env.fernet_key, "good").await;
    // Reachable through the relay before it freezes: the handshake fits in the budget.
    let direct = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(relay)
        .username("postgres")
        .database("postgres")
        .connect()
        .await
        .expect("the relay passes the handshake");
    let _ = direct.close().await;
    let started = Utc::now();
    let _collector = spawn(&env).await;
    let slots_of = |id: i64, up: bool| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, DateTime<Utc>>(
                "SELECT slot FROM availability WHERE server_id = $1 AND up = $2 AND slot > $3 ORDER BY slot",
            )
            .bind(id)
            .bind(up)
            .bind(started)
            .fetch_all(&store)
            .await
            .expect("slots")
        }
    };
    wait_for(
        "six slots of the good server",
        Duration::from_secs(60),
        || async { slots_of(good, true).await.len() >= 6 },
    )
    .await;
    let good_slots = slots_of(good, true).await;
    for w in good_slots.windows(2) {
        assert_eq!(
            (w[1] - w[0]).num_seconds(),
            4,
            "the frozen server held the run: the good server missed slots {good_slots:?}"
        );
    }
    let frozen_rows: Vec<(DateTime<Utc>, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT slot, error_class, error FROM availability WHERE server_id = $1 AND slot > $2 ORDER BY slot",
    )
    .bind(frozen)
    .bind(started)
    .fetch_all(&store)
    .await
    .expect("frozen");
    assert!(
        frozen_rows.len() >= 4,
        "the frozen server is recorded each slot: {frozen_rows:?}"
    );
    for (_, class, error) in &frozen_rows {
        assert_eq!(class.as_deref(), Some("timeout"), "{frozen_rows:?}");
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("abandoned") && e.contains("within 2 s")),
            "{frozen_rows:?}"
        );
    }
    let logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM system_log WHERE source = 'collector_stats' AND level = 'error'
         AND details LIKE 'frozen: timeout: abandoned%'",
    )
    .fetch_one(&store)
    .await
    .expect("log");
    assert!(logged >= 3, "each failed run names the frozen server");
}
