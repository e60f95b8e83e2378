//! The history families beyond `pg_stat_database`, collected by the real collector from real clusters
//! of every major from 12 to 18 and read back through the API: activity, checkpointer, WAL,
//! archiver, I/O, replication per standby and slot, and top statements, across resets.

use pgmon_tests::cluster::Cluster;
use pgmon_tests::http::{self, call};
use pgmon_tests::{Proc, TestEnv, bin, wait_for};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use std::time::Duration;

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

async fn session(cluster: &Cluster, app: &str) -> PgConnection {
    PgConnectOptions::new()
        .host("127.0.0.1")
        .port(cluster.port)
        .username("postgres")
        .database("postgres")
        .application_name(app)
        .connect()
        .await
        .expect("connect")
}

async fn exec(c: &mut PgConnection, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every value of every series of an answer.
fn values(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    let mut take = |cols: &Value| {
        for col in cols.as_object().into_iter().flat_map(|o| o.values()) {
            out.extend(col.as_array().into_iter().flatten().filter_map(Value::as_f64));
        }
    };
    take(&v["series"]);
    for by in v["by"].as_object().into_iter().flat_map(|o| o.values()) {
        take(by);
    }
    out
}

fn column(v: &Value, name: &str) -> Vec<Option<f64>> {
    v["series"][name]
        .as_array()
        .map(|a| a.iter().map(Value::as_f64).collect())
        .unwrap_or_default()
}

struct Setup {
    primary: Cluster,
    standby: Cluster,
    env: TestEnv,
    api: Proc,
    _collector: Proc,
    token: String,
    start: String,
}

impl Setup {
    async fn get(&self, path: &str) -> Value {
        let (st, v) = call("GET", &self.api.url(path), Some(&self.token), None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        v
    }

    async fn series(&self, server: &str, family: &str) -> Value {
        let to = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
        self.get(&format!(
            "/api/servers/{server}/series/{family}?from={}&to={}&step=1",
            urlencode(&self.start),
            urlencode(&to)
        ))
        .await
    }

    async fn statement_calls(&self, marker: &str) -> i64 {
        let to = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
        let top = self
            .get(&format!(
                "/api/servers/p/statements?from={}&to={}&limit=500&sort=calls",
                urlencode(&self.start),
                urlencode(&to)
            ))
            .await;
        top["statements"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["query"].as_str().is_some_and(|q| q.contains(marker)))
            .filter_map(|s| s["calls"].as_i64())
            .sum()
    }

    async fn slots_of(&self, table: &str) -> i64 {
        let store = self.env.db.pool().await;
        let n = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT count(DISTINCT slot) FROM {table} WHERE server_id = (SELECT id FROM servers WHERE name = 'p')"
        )))
        .fetch_one(&store)
        .await
        .expect("count");
        store.close().await;
        n
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn setup(major: u32) -> Setup {
    let primary = Cluster::start_major(
        major,
        "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all",
    );
    let standby = Cluster::standby_of(&primary, "standby1", "wal_receiver_status_interval = 1").await;
    let mut admin = session(&primary, "setup").await;
    exec(&mut admin, "CREATE EXTENSION pg_stat_statements").await;
    exec(&mut admin, "CREATE TABLE w (x int)").await;
    let env = TestEnv::new(
        "",
        "[collector]\ncollect_interval_secs = 2\nactivity_interval_secs = 1\nsize_update_interval_secs = 3600\n\
         db_check_interval_secs = 3600\nmaintenance_interval_secs = 3600\n",
    )
    .await;
    env.add_user("admin", "admin", "admin-password-1");
    let api = env.spawn_api().await;
    let store = env.db.pool().await;
    primary.login().register(&store, &env.fernet_key, "p").await;
    standby.login().register(&store, &env.fernet_key, "s").await;
    let start = chrono::Utc::now().to_rfc3339();
    let collector = Proc::spawn(
        &bin("pgmon-collector"),
        &env.config_path,
        &["run"],
        "pgmon-collector running",
    )
    .await;
    let token = http::token(&api.base, "admin", "admin-password-1").await;
    Setup {
        primary,
        standby,
        env,
        api,
        _collector: collector,
        token,
        start,
    }
}

async fn families_and_statements(major: u32) {
    let s = setup(major).await;
    let mut work = session(&s.primary, "worker").await;
    wait_for("statements of a first slot", Duration::from_secs(30), || async {
        s.slots_of("stat_statements").await >= 1
    })
    .await;

    // Statements: what runs after the baseline is counted exactly, before and after a reset.
    for i in 0..37 {
        exec(&mut work, &format!("SELECT {i} + 1 AS pgmon_marker_a")).await;
    }
    wait_for("the calls counted", Duration::from_secs(30), || async {
        s.statement_calls("pgmon_marker_a").await >= 37
    })
    .await;
    exec(&mut work, "SELECT pg_stat_statements_reset()").await;
    if major >= 17 {
        exec(&mut work, "SELECT pg_stat_reset_shared('checkpointer')").await;
    }
    exec(&mut work, "SELECT pg_stat_reset_shared('bgwriter')").await;
    exec(&mut work, "SELECT pg_stat_reset_shared('archiver')").await;
    if major >= 14 {
        exec(&mut work, "SELECT pg_stat_reset_shared('wal')").await;
    }
    if major >= 16 {
        exec(&mut work, "SELECT pg_stat_reset_shared('io')").await;
    }
    for i in 0..11 {
        exec(&mut work, &format!("SELECT {i} + 1 AS pgmon_marker_a")).await;
    }
    wait_for(
        "the calls after the reset counted",
        Duration::from_secs(30),
        || async { s.statement_calls("pgmon_marker_a").await >= 48 },
    )
    .await;
    // Later slots, collected after the reset, add no spike either.
    let seen = s.slots_of("stat_statements").await;
    wait_for("two more statement slots", Duration::from_secs(30), || async {
        s.slots_of("stat_statements").await >= seen + 2
    })
    .await;
    assert_eq!(
        s.statement_calls("pgmon_marker_a").await,
        48,
        "no spike across the reset"
    );

    // The statement's own page.
    let to = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    let top = s
        .get(&format!(
            "/api/servers/p/statements?from={}&to={}",
            urlencode(&s.start),
            urlencode(&to)
        ))
        .await;
    let marker = top["statements"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|st| st["query"].as_str().is_some_and(|q| q.contains("pgmon_marker_a")))
        .cloned()
        .expect("the marker statement");
    assert!(marker["total_exec_time_ms"].as_f64() >= Some(0.0));
    assert!(marker["mean_time_ms"].as_f64().is_some());
    let qid = marker["queryid"].as_i64().expect("queryid");
    let detail = s
        .get(&format!(
            "/api/servers/p/statements/{qid}?from={}&to={}&step=2",
            urlencode(&s.start),
            urlencode(&to)
        ))
        .await;
    assert!(
        detail["query"]
            .as_str()
            .is_some_and(|q| q.contains("pgmon_marker_a"))
    );
    let calls: f64 = detail["calls_per_sec"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .sum();
    assert!(calls > 0.0, "{detail}");
    let (st, _) = call(
        "GET",
        &s.api.url("/api/servers/p/statements/12345"),
        Some(&s.token),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Every family: collected, read back, never negative across the resets.
    exec(&mut work, "INSERT INTO w SELECT generate_series(1, 20000)").await;
    exec(&mut work, "CHECKPOINT").await;
    wait_for(
        "the INSERT's WAL and the CHECKPOINT in the history",
        Duration::from_secs(30),
        || async {
            let wal = s.series("p", "wal").await;
            let cp = s.series("p", "checkpointer").await;
            column(&wal, "wal_generated_bytes_per_sec")
                .iter()
                .flatten()
                .any(|v| *v > 100_000.0)
                && column(&cp, "checkpoints_req_per_sec")
                    .iter()
                    .flatten()
                    .any(|v| *v > 0.0)
        },
    )
    .await;
    let wal = s.series("p", "wal").await;
    assert!(
        column(&wal, "wal_generated_bytes_per_sec")
            .iter()
            .flatten()
            .any(|v| *v > 100_000.0),
        "{wal}"
    );
    if major >= 14 {
        assert!(
            column(&wal, "wal_records_per_sec")
                .iter()
                .flatten()
                .any(|v| *v > 0.0),
            "{wal}"
        );
    } else {
        assert!(
            column(&wal, "wal_records_per_sec").iter().all(Option::is_none),
            "no pg_stat_wal before 14"
        );
    }
    let cp = s.series("p", "checkpointer").await;
    assert!(
        column(&cp, "buffers_alloc_per_sec").iter().flatten().count() > 2,
        "{cp}"
    );
    assert!(
        column(&cp, "checkpoints_req_per_sec")
            .iter()
            .flatten()
            .any(|v| *v > 0.0),
        "the CHECKPOINT: {cp}"
    );
    let arch = s.series("p", "archiver").await;
    assert!(
        column(&arch, "archived_per_sec")
            .iter()
            .flatten()
            .all(|v| *v == 0.0)
    );
    assert!(
        column(&arch, "archived_per_sec").iter().flatten().count() > 2,
        "{arch}"
    );
    let io = s.series("p", "io").await;
    if major >= 16 {
        assert!(
            column(&io, "hits_per_sec").iter().flatten().any(|v| *v > 0.0),
            "{io}"
        );
        assert!(
            io["by"]
                .as_object()
                .is_some_and(|b| b.keys().any(|k| k.starts_with("client backend/")))
        );
    } else {
        assert!(values(&io).is_empty(), "no pg_stat_io before 16");
    }
    let act = s.series("p", "activity").await;
    assert!(
        column(&act, "sessions").iter().flatten().any(|v| *v >= 1.0),
        "{act}"
    );
    assert!(column(&act, "max_xid_age").iter().flatten().any(|v| *v > 0.0));
    for (name, v) in [
        ("wal", &wal),
        ("checkpointer", &cp),
        ("archiver", &arch),
        ("io", &io),
        ("activity", &act),
    ] {
        assert!(
            values(v).iter().all(|x| *x >= 0.0),
            "{name} has a negative value: {v}"
        );
    }
}

for_each_major!(families_and_statements:
    families_and_statements_pg12 = 12,
    families_and_statements_pg13 = 13,
    families_and_statements_pg14 = 14,
    families_and_statements_pg15 = 15,
    families_and_statements_pg16 = 16,
    families_and_statements_pg17 = 17,
    families_and_statements_pg18 = 18,
);

/// A standby's lag series shows a burst while its replay is paused, then zero; an inactive slot's
/// retention shows the burst (a physical slot follows its standby's flush, not its replay).
async fn replication_lag_history(major: u32) {
    let s = setup(major).await;
    let mut p = session(&s.primary, "writer").await;
    let mut r = session(&s.standby, "replay-control").await;
    wait_for("activity samples", Duration::from_secs(30), || async {
        s.slots_of("replication_sample").await >= 2
    })
    .await;
    exec(
        &mut p,
        "SELECT pg_create_physical_replication_slot('idle_slot', true)",
    )
    .await;
    exec(&mut r, "SELECT pg_wal_replay_pause()").await;
    exec(
        &mut p,
        "CREATE TABLE burst AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 50000) g",
    )
    .await;
    wait_for("the lag in the history", Duration::from_secs(30), || async {
        let v = s.series("p", "replication").await;
        v["by"]["standby1"]["replay_lag_bytes"]
            .as_array()
            .is_some_and(|a| a.iter().filter_map(Value::as_f64).any(|x| x > 1_000_000.0))
    })
    .await;
    exec(&mut r, "SELECT pg_wal_replay_resume()").await;
    wait_for("zero lag in the history", Duration::from_secs(60), || async {
        let v = s.series("p", "replication").await;
        let lag: Vec<f64> = v["by"]["standby1"]["replay_lag_bytes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let secs: Vec<f64> = v["by"]["standby1"]["replay_lag_secs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        lag.last() == Some(&0.0) && secs.last() == Some(&0.0)
    })
    .await;
    let slots = s.series("p", "slots").await;
    assert!(
        slots["by"]["idle_slot"]["retained_bytes"]
            .as_array()
            .is_some_and(|a| a.iter().filter_map(Value::as_f64).any(|x| x > 1_000_000.0)),
        "an inactive slot keeps the burst: {slots}"
    );
    assert!(
        slots["by"]["standby1"]["active"]
            .as_array()
            .is_some_and(|a| a.iter().filter_map(Value::as_f64).any(|x| x == 1.0)),
        "{slots}"
    );
    let act = s.series("s", "activity").await;
    assert!(
        column(&act, "replay_delay_secs")
            .iter()
            .flatten()
            .any(|v| *v > 0.0),
        "the standby's own replay delay: {act}"
    );
    let act = s.series("p", "activity").await;
    assert!(
        column(&act, "max_replication_lag_bytes")
            .iter()
            .flatten()
            .any(|v| *v > 1_000_000.0)
    );
}

for_each_major!(replication_lag_history:
    replication_lag_history_pg12 = 12,
    replication_lag_history_pg13 = 13,
    replication_lag_history_pg14 = 14,
    replication_lag_history_pg15 = 15,
    replication_lag_history_pg16 = 16,
    replication_lag_history_pg17 = 17,
    replication_lag_history_pg18 = 18,
);
