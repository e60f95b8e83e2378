//! End-to-end tests of the stats API: history rates across resets, restarts and gaps (from rows put in
//! the store, read both before and after the rollups), limits, 404s, roles, database info, a
//! pgbench run measured by the real collector, and whole answers kept until the store says their
//! server's data changed.

use chrono::{DateTime, TimeDelta, Utc};
use pgmon_tests::{Proc, TestEnv, http, monitored, wait_for};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;

const PW: &str = "correct-horse-1";

async fn setup(extra: &str) -> (TestEnv, Proc, [String; 3]) {
    setup_api("", extra).await
}

/// [`setup`] with more lines in the config's `[api]` section.
async fn setup_api(api_extra: &str, extra: &str) -> (TestEnv, Proc, [String; 3]) {
    let env = TestEnv::new(&format!("login_attempts_per_minute = 10000\n{api_extra}"), extra).await;
    for (login, role) in [("admin", "admin"), ("operator", "operator"), ("viewer", "viewer")] {
        env.add_user(login, role, PW);
    }
    let api = env.spawn_api().await;
    let tokens = [
        http::token(&api.base, "admin", PW).await,
        http::token(&api.base, "operator", PW).await,
        http::token(&api.base, "viewer", PW).await,
    ];
    (env, api, tokens)
}

/// One stat_database row: commits and blocks given, the other counters follow commits.
#[allow(clippy::too_many_arguments)]
async fn put_sample(
    pool: &PgPool,
    server: i64,
    db: &str,
    slot: DateTime<Utc>,
    commits: i64,
    reset: Option<DateTime<Utc>>,
    start: DateTime<Utc>,
    backends: i32,
) {
    sqlx::query(
        "INSERT INTO stat_database (server_id, slot, datid, datname, collected_at, postmaster_start,
             stats_reset, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned,
             tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks)
         VALUES ($1, $2, 1, $3, $2 + interval '2 seconds', $4, $5, $6, $7, $7 / 10, $7, $7 * 9, $7 * 5,
                 $7, $7, 0, 0, 0, 0, 0, 0)",
    )
    .bind(server)
    .bind(slot)
    .bind(db)
    .bind(start)
    .bind(reset)
    .bind(backends)
    .bind(commits)
    .execute(pool)
    .await
    .expect("insert sample");
}

fn base_time() -> DateTime<Utc> {
    // Whole hours, two days ago: inside the partitions the migration creates.
    let now = Utc::now().timestamp();
    DateTime::from_timestamp(now - now % 3600 - 2 * 86400, 0).expect("time")
}

fn floats(v: &Value, key: &str) -> Vec<Option<f64>> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .iter()
        .map(Value::as_f64)
        .collect()
}

fn q(from: DateTime<Utc>, to: DateTime<Utc>, step: i64) -> String {
    format!(
        "from={}&to={}&step={step}",
        from.format("%Y-%m-%dT%H:%M:%SZ"),
        to.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// 24 slots of 10 minutes for two databases at 1 commit/s (`app`) and 2 commits/s (`web`), with a
/// stats reset of `app` at slot 6, a server restart at slot 10, no data for slots 13-15, a counter
/// going down in `app` at slot 19. Returns the slots.
async fn load_story(pool: &PgPool, server: i64) -> Vec<DateTime<Utc>> {
    let t0 = base_time();
    let slots: Vec<DateTime<Utc>> = (0..24).map(|i| t0 + TimeDelta::minutes(10 * i)).collect();
    let boot1 = t0 - TimeDelta::days(30);
    let boot2 = slots[10] - TimeDelta::minutes(3);
    let reset = slots[6] - TimeDelta::minutes(5);
    let (mut app, mut web) = (1_000_000i64, 5_000_000i64);
    for (i, slot) in slots.iter().enumerate() {
        if (13..=15).contains(&i) {
            app += 600;
            web += 1200;
            continue;
        }
        app += 600;
        web += 1200;
        if i == 6 {
            app = 300; // reset 5 minutes before the slot
        }
        if i == 10 {
            app = 180;
            web = 360;
        }
        if i == 19 {
            app -= 5000;
        }
        let start = if i >= 10 { boot2 } else { boot1 };
        let app_reset = if i >= 6 { Some(reset) } else { None };
        put_sample(pool, server, "app", *slot, app, app_reset, start, 3).await;
        put_sample(pool, server, "web", *slot, web, None, start, 5).await;
        sqlx::query(
            "INSERT INTO availability (server_id, slot, collected_at, up, latency_ms) VALUES ($1, $2, $2, true, 1.5)",
        )
        .bind(server)
        .bind(slot)
        .execute(pool)
        .await
        .expect("availability");
        if i % 3 == 0 {
            for (db, size) in [("app", 1_000_000 + i as i64 * 1000), ("web", 2_000_000)] {
                sqlx::query("INSERT INTO db_size (server_id, slot, datname, collected_at, size_bytes) VALUES ($1, $2, $3, $2, $4)")
                    .bind(server)
                    .bind(slot)
                    .bind(db)
                    .bind(size)
                    .execute(pool)
                    .await
                    .expect("size");
            }
        }
    }
    for (i, slot) in slots.iter().enumerate().filter(|(i, _)| (13..=15).contains(i)) {
        let _ = i;
        sqlx::query(
            "INSERT INTO availability (server_id, slot, collected_at, up, error_class) VALUES ($1, $2, $2, false, 'unreachable')",
        )
        .bind(server)
        .bind(slot)
        .execute(pool)
        .await
        .expect("availability down");
    }
    slots
}

fn assert_story_db(v: &Value, slots: &[DateTime<Utc>]) {
    let commits = floats(v, "commits_per_sec");
    assert_eq!(commits.len(), slots.len(), "{v}");
    for (i, c) in commits.iter().enumerate().take(slots.len()) {
        match i {
            // First slot has no baseline; reset, restart, the three missing slots, the first slot after
            // the gap and the counter going down have no trusted delta.
            0 | 6 | 10 | 13 | 14 | 15 | 16 | 19 => assert_eq!(*c, None, "slot {i}: {commits:?}"),
            _ => {
                let c = c.unwrap_or_else(|| panic!("slot {i} is a gap: {commits:?}"));
                assert!((c - 1.0).abs() < 0.01, "slot {i}: {c}");
            }
        }
    }
    for x in commits.iter().flatten() {
        assert!(*x >= 0.0 && *x < 1.1, "negative or spiked point {x}");
    }
    let hit = floats(v, "cache_hit_ratio");
    assert!((hit[3].expect("hit ratio") - 0.9).abs() < 1e-9);
    assert_eq!(floats(v, "numbackends")[3], Some(3.0));
}

#[tokio::test]
async fn rates_survive_resets_restarts_and_gaps_before_and_after_rollups() {
    // Whole answers are not kept here: every read below must be computed, from raw rows, rollups,
    // packed chunks and the chunk cache in turn (kept answers: `history_answers_are_kept_until_...`).
    let (env, api, [admin, operator, viewer]) = setup_api("history_response_cache_mb = 0", "").await;
    let pool = env.db.pool().await;
    let server = monitored::shared().register(&pool, &env.fernet_key, "prod").await;
    let slots = load_story(&pool, server).await;
    let (from, to) = (slots[0], slots[23] + TimeDelta::minutes(10));
    let db_url = api.url(&format!(
        "/servers/prod/databases/app/history?{}",
        q(from, to, 600)
    ));
    let srv_url = api.url(&format!("/servers/prod/history?{}", q(from, to, 600)));
    let hour_url = api.url(&format!("/servers/prod/history?{}", q(from, to, 3600)));

    let (s, raw_db) = http::call("GET", &db_url, Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK, "{raw_db}");
    assert_story_db(&raw_db, &slots);
    let (s, raw_srv) = http::call("GET", &srv_url, Some(&operator), None).await;
    assert_eq!(s, StatusCode::OK, "{raw_srv}");
    let (_, raw_hour) = http::call("GET", &hour_url, Some(&admin), None).await;

    // Server level: app + web = 3 commits/s; a slot where any database refused its delta is left out.
    let commits = floats(&raw_srv, "commits_per_sec");
    for (i, c) in commits.iter().enumerate().take(24) {
        match i {
            0 | 6 | 10 | 13 | 14 | 15 | 16 | 19 => assert_eq!(*c, None, "slot {i}: {commits:?}"),
            _ => assert!((c.expect("rate") - 3.0).abs() < 0.02, "slot {i}: {c:?}"),
        }
    }
    let avail = floats(&raw_srv, "availability");
    assert_eq!(avail[12], Some(1.0));
    assert_eq!(avail[14], Some(0.0));
    assert_eq!(floats(&raw_srv, "numbackends")[2], Some(8.0));
    assert_eq!(floats(&raw_srv, "size_bytes")[3], Some(3_003_000.0));
    assert_eq!(floats(&raw_srv, "size_bytes")[4], None);

    // The rollups give the same answers, and a second refresh changes nothing.
    let n = pgmon_shared::store::rollups::refresh_rollups(&pool)
        .await
        .expect("refresh");
    assert!(n > 0);
    let (_, rolled_db) = http::call("GET", &db_url, Some(&viewer), None).await;
    let (_, rolled_srv) = http::call("GET", &srv_url, Some(&viewer), None).await;
    let (_, rolled_hour) = http::call("GET", &hour_url, Some(&viewer), None).await;
    assert_story_db(&rolled_db, &slots);
    assert_eq!(raw_db, rolled_db);
    assert_eq!(raw_srv, rolled_srv);
    assert_eq!(raw_hour, rolled_hour);
    pgmon_shared::store::rollups::refresh_rollups(&pool)
        .await
        .expect("refresh again");
    let (_, again) = http::call("GET", &hour_url, Some(&viewer), None).await;
    assert_eq!(raw_hour, again);

    // Hour buckets: rate over the covered seconds only, never a spike.
    let hourly = floats(&raw_hour, "commits_per_sec");
    for x in hourly.iter().flatten() {
        assert!((x - 3.0).abs() < 0.02, "{hourly:?}");
    }
    let covered = floats(&raw_hour, "covered_secs");
    assert!(covered[0].expect("secs") < 3600.0 && covered[0].expect("secs") > 2900.0);

    // New slots after the rollup come from the raw tables and join the rolled-up ones.
    let next = slots[23] + TimeDelta::minutes(10);
    put_sample(
        &pool,
        server,
        "app",
        next,
        180 + 600 * 13 - 5000 + 600,
        Some(slots[6] - TimeDelta::minutes(5)),
        slots[10] - TimeDelta::minutes(3),
        3,
    )
    .await;
    let url = api.url(&format!(
        "/servers/prod/databases/app/history?{}",
        q(from, next + TimeDelta::minutes(10), 600)
    ));
    let (_, v) = http::call("GET", &url, Some(&viewer), None).await;
    let c = floats(&v, "commits_per_sec");
    assert!((c[24].expect("new slot") - 1.0).abs() < 0.01, "{c:?}");

    // Once the server's newest slot is far enough past them, the story's rollups are packed into
    // chunks (every resolution: 12 h, 5 d and 30 d chunks) and read back unchanged.
    let day_url = api.url(&format!("/servers/prod/history?{}", q(from, to, 43200)));
    let (_, unpacked_day) = http::call("GET", &day_url, Some(&viewer), None).await;
    assert!(
        floats(&unpacked_day, "commits_per_sec")
            .iter()
            .any(Option::is_some),
        "{unpacked_day}"
    );
    let far = slots[0] + TimeDelta::days(62);
    pgmon_shared::store::stats::ensure_partitions(&pool, far, far + TimeDelta::days(1))
        .await
        .expect("partitions");
    for db in ["app", "web"] {
        put_sample(&pool, server, db, far, 1, None, far - TimeDelta::days(1), 1).await;
    }
    pgmon_shared::store::rollups::refresh_rollups(&pool)
        .await
        .expect("refresh that packs");
    let packed: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT res, count(*) FROM stat_rollup_chunk WHERE server_id = $1 GROUP BY res ORDER BY res",
    )
    .bind(server)
    .fetch_all(&pool)
    .await
    .expect("chunks");
    assert_eq!(
        packed.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        vec![0, 3600, 43200],
        "{packed:?}"
    );
    let unpacked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stat_rollup WHERE server_id = $1 AND bucket < $2")
            .bind(server)
            .bind(slots[23] + TimeDelta::days(1))
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(unpacked, 0, "packed rows stay in stat_rollup");
    let (_, packed_db) = http::call("GET", &db_url, Some(&viewer), None).await;
    let (_, packed_srv) = http::call("GET", &srv_url, Some(&viewer), None).await;
    let (_, packed_hour) = http::call("GET", &hour_url, Some(&viewer), None).await;
    assert_eq!(raw_db, packed_db);
    assert_eq!(raw_srv, packed_srv);
    assert_eq!(raw_hour, packed_hour);
    let (_, packed_day) = http::call("GET", &day_url, Some(&viewer), None).await;
    assert_eq!(unpacked_day, packed_day);

    // A packed chunk never changes, so the API keeps the chunks it has read: with them deleted from
    // the store (as retention would), it still answers from memory, while a freshly started API, its
    // cache empty, finds nothing there.
    sqlx::query("DELETE FROM stat_rollup_chunk WHERE server_id = $1 AND res = 0")
        .bind(server)
        .execute(&pool)
        .await
        .expect("delete chunks");
    let (_, cached_db) = http::call("GET", &db_url, Some(&viewer), None).await;
    assert_eq!(raw_db, cached_db);
    let fresh = env.spawn_api().await;
    let path = format!("/servers/prod/databases/app/history?{}", q(from, to, 600));
    let (s, v) = http::call("GET", &fresh.url(&path), Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(floats(&v, "commits_per_sec").iter().all(Option::is_none), "{v}");

    // A deleted server's rollups go with the next refresh.
    sqlx::query("DELETE FROM servers WHERE id = $1")
        .bind(server)
        .execute(&pool)
        .await
        .expect("delete server");
    pgmon_shared::store::rollups::refresh_rollups(&pool)
        .await
        .expect("refresh after delete");
    for table in ["stat_rollup", "stat_rollup_chunk"] {
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE server_id = $1"
        )))
        .bind(server)
        .fetch_one(&pool)
        .await
        .expect("count");
        assert_eq!(left, 0, "{table}");
    }
}

#[tokio::test]
async fn limits_404s_roles_and_database_info() {
    let (env, api, tokens) = setup("").await;
    let pool = env.db.pool().await;
    let server = monitored::shared().register(&pool, &env.fernet_key, "prod").await;
    let slots = load_story(&pool, server).await;
    sqlx::query(
        "INSERT INTO databases (server_id, oid, name, owner, encoding, frozen_xid_age, first_seen, last_seen, dropped_at)
         VALUES ($1, 1, 'app', 'postgres', 'UTF8', 1234, $2, $3, NULL),
                ($1, 7, 'gone', 'postgres', 'UTF8', 99, $2, $2, $3)",
    )
    .bind(server)
    .bind(slots[0])
    .bind(slots[23])
    .execute(&pool)
    .await
    .expect("databases");
    let range = q(slots[0], slots[23], 600);

    for t in &tokens {
        let (s, _) = http::call(
            "GET",
            &api.url(&format!("/servers/prod/history?{range}")),
            Some(t),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let (s, info) = http::call("GET", &api.url("/server/prod/db/app"), Some(t), None).await;
        assert_eq!(s, StatusCode::OK, "{info}");
    }
    let (s, _) = http::call("GET", &api.url("/servers/prod/history"), None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let viewer = Some(tokens[2].as_str());
    let cases = [
        (format!("/servers/nope/history?{range}"), StatusCode::NOT_FOUND),
        (
            format!("/servers/prod/databases/nope/history?{range}"),
            StatusCode::NOT_FOUND,
        ),
        ("/server/prod/db/nope".to_string(), StatusCode::NOT_FOUND),
        ("/server/nope/db/app".to_string(), StatusCode::NOT_FOUND),
        (
            format!("/servers/prod/history?{}", q(slots[5], slots[1], 600)),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/servers/prod/history?{}", q(slots[0], slots[23], 0)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!(
                "/servers/prod/history?{}",
                q(slots[0], slots[0] + TimeDelta::days(30), 60)
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/servers/prod/history?from=yesterday".to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!(
                "/servers/prod/history?{}",
                q(slots[0], slots[0] + TimeDelta::days(30), 1300)
            ),
            StatusCode::OK,
        ),
    ];
    for (path, want) in &cases {
        let (s, body) = http::call("GET", &api.url(path), viewer, None).await;
        assert_eq!(s, *want, "{path}: {body}");
        if s != StatusCode::OK {
            assert!(body["detail"].is_string(), "{path}: {body}");
        }
    }
    let (_, body) = http::call(
        "GET",
        &api.url(&format!(
            "/servers/prod/history?{}",
            q(slots[0], slots[0] + TimeDelta::days(30), 60)
        )),
        viewer,
        None,
    )
    .await;
    assert!(body["detail"].as_str().unwrap_or("").contains("2000"), "{body}");

    // Default range: the last 24 hours, with a step giving at most about 1,000 points.
    let (s, body) = http::call(
        "GET",
        &api.url("/servers/prod/databases/app/history"),
        viewer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["step"], 600);
    assert!(body["time"].as_array().map_or(0, Vec::len) <= 1000);

    // Database info, including a dropped database and size growth.
    let (_, info) = http::call("GET", &api.url("/server/prod/db/app"), viewer, None).await;
    assert_eq!(info["frozen_xid_age"], 1234);
    assert_eq!(info["dropped_at"], Value::Null);
    assert_eq!(info["size_bytes"], 1_021_000);
    assert_eq!(info["counters"]["xact_commit"], sqlx::query_scalar::<_, i64>(
        "SELECT xact_commit FROM stat_database WHERE server_id = $1 AND datname = 'app' ORDER BY slot DESC LIMIT 1",
    ).bind(server).fetch_one(&pool).await.expect("latest"));
    assert_eq!(info["growth_24h_bytes"], Value::Null);
    assert!(info["last_snapshot"].is_string());
    // The original's four fields: MiB, the latest connections and cumulative commits, the time.
    assert_eq!(info["size_mb"], 1_021_000.0 / 1_048_576.0);
    assert_eq!(info["commits"], info["counters"]["xact_commit"]);
    assert!(info["connections"].is_i64(), "{info}");
    assert_eq!(info["last_update"], info["last_snapshot"]);
    let (s, gone) = http::call("GET", &api.url("/server/prod/db/gone"), viewer, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(gone["dropped_at"].is_string(), "{gone}");
    // A dropped database keeps its history.
    let (s, _) = http::call(
        "GET",
        &api.url(&format!("/servers/prod/databases/gone/history?{range}")),
        viewer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

/// A TCP forwarder to the local PostgreSQL that counts the bytes clients send, to tell whether the
/// API touched the server.
async fn counting_proxy() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let upstream = monitored::shared();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect((upstream.host.as_str(), upstream.port)).await
            else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
            });
        }
    });
    (port, sent)
}

#[tokio::test]
async fn live_status_is_cached_and_an_unreachable_server_is_a_normal_answer() {
    use std::sync::atomic::Ordering;
    let env = TestEnv::new(
        "login_attempts_per_minute = 10000\nserver_status_cache_ttl_secs = 3600",
        "",
    )
    .await;
    env.add_user("viewer", "viewer", PW);
    let api = env.spawn_api().await;
    let viewer = http::token(&api.base, "viewer", PW).await;
    let pool = env.db.pool().await;
    let (port, sent) = counting_proxy().await;
    monitored::shared()
        .at_port(port)
        .register(&pool, &env.fernet_key, "live")
        .await;

    let (s, first) = http::call("GET", &api.url("/server_stats/live"), Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["reachable"], true, "{first}");
    assert!(
        first["version"].as_str().unwrap_or("").contains("PostgreSQL"),
        "{first}"
    );
    assert!(first["max_connections"].as_i64().unwrap_or(0) > 0);
    assert!(first["databases"].as_i64().unwrap_or(0) >= 1);
    assert!(first["total_size_bytes"].as_i64().unwrap_or(0) > 0);
    assert!(first["connections"]["total"].as_i64().is_some());
    assert_eq!(first["in_recovery"], false);
    assert_eq!(first["disk"], Value::Null);
    // The original's `queries`: sessions with a state.
    let queries = first["queries"].as_array().expect("queries");
    assert!(
        queries
            .iter()
            .any(|q| q["pid"].is_i64() && q["state"].is_string()),
        "{first}"
    );
    let touched = sent.load(Ordering::SeqCst);
    assert!(touched > 0);

    // Within the TTL: the same answer, and not one byte sent to the server.
    let (_, second) = http::call("GET", &api.url("/server_stats/live"), Some(&viewer), None).await;
    assert_eq!(second["checked_at"], first["checked_at"]);
    assert_eq!(sent.load(Ordering::SeqCst), touched);

    let (_, pools) = http::call("GET", &api.url("/api/pools/status"), Some(&viewer), None).await;
    let remote = pools["remote"].as_array().expect("remote pools");
    assert_eq!(remote.len(), 1, "{pools}");
    assert_eq!(remote[0]["server"], "live");
    assert_eq!(remote[0]["profile"], "default");
    assert_eq!(remote[0]["max"], 5);
    assert!(remote[0]["size"].as_u64().unwrap_or(0) >= 1);

    // A closed port and a peer that never answers: 200 with reachable false, within the deadline.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    monitored::shared()
        .at_port(closed_port)
        .register(&pool, &env.fernet_key, "closed")
        .await;
    monitored::shared()
        .at_port(silent_port)
        .register(&pool, &env.fernet_key, "silent")
        .await;
    let (s, body) = http::call("GET", &api.url("/server_stats/closed"), Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["reachable"], false);
    assert_eq!(body["error_class"], "unreachable", "{body}");
    let started = std::time::Instant::now();
    let (s, body) = http::call("GET", &api.url("/server_stats/silent"), Some(&viewer), None).await;
    let took = started.elapsed();
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["reachable"], false);
    assert_eq!(body["error_class"], "timeout", "{body}");
    // The connect deadline is 5 s; the answer must not wait for TCP's own timeouts (minutes).
    assert!(took < Duration::from_secs(12), "answered after {took:?}");
    drop(silent);

    // Registered without a password on a server that asks for one: the reason, not "invalid
    // configuration".
    let cluster = pgmon_tests::cluster::Cluster::start_with_password("needs-a-Pa55word");
    let nopass = monitored::PgLogin {
        password: None,
        ..cluster.login()
    };
    nopass.register(&pool, &env.fernet_key, "nopass").await;
    let (s, body) = http::call("GET", &api.url("/server_stats/nopass"), Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["reachable"], false, "{body}");
    assert_eq!(body["error_class"], "auth_failed", "{body}");
    assert_eq!(
        body["error"], "the server asks for a password and none is stored",
        "{body}"
    );

    let (s, _) = http::call("GET", &api.url("/server_stats/nope"), Some(&viewer), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = http::call("GET", &api.url("/server_stats/live"), None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_reports_collectors_and_degrades_when_a_task_is_overdue() {
    let (env, api, _) = setup("").await;
    let pool = env.db.pool().await;
    let (s, body) = http::call("GET", &api.url("/api/health"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "ok", "{body}");
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO collector_instances (instance_id, host, pid, version, tasks)
         VALUES ($1, 'h1', 42, '0.1.0', jsonb_build_object('stats',
                 jsonb_build_object('last_run', now() - interval '30 minutes', 'outcome', 'ok')))",
    )
    .bind(id)
    .execute(&pool)
    .await
    .expect("instance");
    // The store's part of `/health` is at most a second old.
    wait_for(
        "health to see the overdue task",
        Duration::from_secs(10),
        || async { http::call("GET", &api.url("/api/health"), None, None).await.1["status"] == "degraded" },
    )
    .await;
    let (s, body) = http::call("GET", &api.url("/api/health"), None, None).await;
    assert_eq!(s, StatusCode::OK, "the API itself still serves: {body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["collectors"]["instances"][0]["host"], "h1");
    assert_eq!(body["collectors"]["tasks"][0]["task"], "stats");
    assert_eq!(body["collectors"]["tasks"][0]["overdue"], true);
    sqlx::query(
        "UPDATE collector_instances SET tasks = jsonb_build_object('stats',
             jsonb_build_object('last_run', now() - interval '2 minutes', 'outcome', 'ok'))",
    )
    .execute(&pool)
    .await
    .expect("update");
    wait_for(
        "health to see the task run again",
        Duration::from_secs(10),
        || async { http::call("GET", &api.url("/api/health"), None, None).await.1["status"] == "ok" },
    )
    .await;
}

/// pg_stat_database.xact_commit of `db`, read directly.
async fn commits_now(admin: &PgPool, db: &str) -> i64 {
    sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(db)
        .fetch_one(admin)
        .await
        .expect("pg_stat_database")
}

#[tokio::test]
async fn pgbench_commits_between_two_collector_runs_match_pg_stat_database() {
    let interval = 20;
    let (env, api, [_, _, viewer]) =
        setup(&format!("[collector]\ncollect_interval_secs = {interval}\n")).await;
    let pool = env.db.pool().await;
    let admin = PgPool::connect(&pgmon_tests::pg_admin_url())
        .await
        .expect("admin");
    let bench = format!("pgbench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {bench}")))
        .execute(&admin)
        .await
        .expect("create bench db");
    let base = pgmon_tests::pg_admin_url();
    let bench_url = format!("{}/{bench}", base.rsplit_once('/').expect("url").0);
    let pgbench = |args: &[&str]| {
        pgmon_tests::output_ok(
            std::process::Command::new("/usr/bin/pgbench")
                .args(args)
                .arg(&bench_url),
            "pgbench",
        );
    };
    pgbench(&["-i", "-q", "-s", "1"]);
    let server = monitored::shared()
        .with_dbname(&bench)
        .register(&pool, &env.fernet_key, "bench")
        .await;
    let collect = || {
        let (code, out, err) = pgmon_tests::run_cli(
            &pgmon_tests::bin("pgmon-collector"),
            &env.config_path,
            &["once", "--task", "stats"],
            None,
        );
        assert_eq!(code, 0, "collector once: {out} {err}");
    };
    let slot_of = |t: DateTime<Utc>| t.timestamp() - t.timestamp() % interval;

    let before = commits_now(&admin, &bench).await;
    collect();
    let s1: DateTime<Utc> =
        sqlx::query_scalar("SELECT max(slot) FROM stat_database WHERE server_id = $1 AND datname = $2")
            .bind(server)
            .bind(&bench)
            .fetch_one(&pool)
            .await
            .expect("first snapshot");
    pgbench(&["-n", "-c", "4", "-t", "500"]);
    // The second run must fall in the next slot: the clock has to move on.
    pgmon_tests::wait_for(
        "the next slot",
        Duration::from_secs(interval as u64 + 5),
        || async { slot_of(Utc::now()) > s1.timestamp() },
    )
    .await;
    collect();
    let after = commits_now(&admin, &bench).await;
    let expected = (after - before) as f64;
    assert!(expected >= 2000.0, "{before} -> {after}");

    let url = api.url(&format!(
        "/servers/bench/databases/{bench}/history?{}",
        q(s1, s1 + TimeDelta::seconds(3 * interval), interval)
    ));
    let (s, v) = http::call("GET", &url, Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rates = floats(&v, "commits_per_sec");
    let covered = floats(&v, "covered_secs");
    let measured: f64 = rates
        .iter()
        .zip(covered.iter())
        .map(|(r, c)| r.unwrap_or(0.0) * c.unwrap_or(0.0))
        .sum();
    assert!(
        (measured - expected).abs() <= expected * 0.01,
        "API says {measured} commits, pg_stat_database says {expected}: {v}"
    );
    drop(api);
    drop(pool);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {bench} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
}

/// Stats every 10 minutes (1 commit/s) and sizes every 30 minutes for database `app`, slots `from..=to`
/// counted from `t0`.
async fn put_series(
    pool: &PgPool,
    server: i64,
    t0: DateTime<Utc>,
    stats: (i32, i32),
    sizes: Option<(i32, i32)>,
) {
    sqlx::query(
        "INSERT INTO stat_database (server_id, slot, datid, datname, collected_at, postmaster_start,
             numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched,
             tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes, deadlocks)
         SELECT $1, $2 + n * interval '10 min', 1, 'app', $2 + n * interval '10 min', $2 - interval '1 day',
                1, n * 600, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
         FROM generate_series($3, $4) n",
    )
    .bind(server)
    .bind(t0)
    .bind(stats.0)
    .bind(stats.1)
    .execute(pool)
    .await
    .expect("stats");
    if let Some((from, to)) = sizes {
        sqlx::query(
            "INSERT INTO db_size (server_id, slot, datname, collected_at, size_bytes)
             SELECT $1, $2 + n * interval '30 min', 'app', $2 + n * interval '30 min', 1000000 + n
             FROM generate_series($3, $4) n",
        )
        .bind(server)
        .bind(t0)
        .bind(from)
        .bind(to)
        .execute(pool)
        .await
        .expect("sizes");
    }
}

async fn packed_until(pool: &PgPool, server: i64) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT packed_until FROM stat_rollup_packed WHERE server_id = $1 AND res = 0")
        .bind(server)
        .fetch_optional(pool)
        .await
        .expect("packed_until")
}

#[tokio::test]
async fn packing_follows_the_slowest_source_but_not_a_stopped_one() {
    let (env, api, [_, _, viewer]) = setup("").await;
    let pool = env.db.pool().await;
    let server = monitored::shared().register(&pool, &env.fernet_key, "prod").await;
    let now = Utc::now().timestamp();
    let t0 = DateTime::from_timestamp(now - now % 43200 - 4 * 86400, 0).expect("t0");
    pgmon_shared::store::stats::ensure_partitions(&pool, t0, t0 + TimeDelta::days(3))
        .await
        .expect("partitions");
    let h = |hours: i64| t0 + TimeDelta::hours(hours);

    // Stats up to 36 h, sizes (every 30 min) up to 35.5 h: every source is 2 h past 24 h, so the
    // slots before it are packed (a fixed margin behind the newest slot would have stopped at 12 h).
    put_series(&pool, server, t0, (0, 216), Some((0, 71))).await;
    let url = api.url(&format!(
        "/servers/prod/databases/app/history?{}",
        q(h(0), h(36), 1800)
    ));
    let (s, raw) = http::call("GET", &url, Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK, "{raw}");
    pgmon_shared::store::rollups::refresh_rollups(&pool)
        .await
        .expect("refresh");
    assert_eq!(packed_until(&pool, server).await, Some(h(24)));
    let (_, packed) = http::call("GET", &url, Some(&viewer), None).await;
    assert_eq!(raw, packed, "packing changes no answer");
    let commits = floats(&packed, "commits_per_sec");
    assert!(commits[1..].iter().all(|c| *c == Some(1.0)), "{commits:?}");
    assert_eq!(floats(&packed, "size_bytes")[47], Some(1_000_047.0));

    // Sizes stop, stats go on to 60 h: packing waits for the sizes at most 12 h, then goes on.
    put_series(&pool, server, t0, (217, 360), None).await;
    pgmon_shared::store::rollups::refresh_rollups(&pool)
        .await
        .expect("refresh");
    assert_eq!(packed_until(&pool, server).await, Some(h(36)));
    let url = api.url(&format!(
        "/servers/prod/databases/app/history?{}",
        q(h(0), h(60), 1800)
    ));
    let (_, v) = http::call("GET", &url, Some(&viewer), None).await;
    let commits = floats(&v, "commits_per_sec");
    assert!(commits[1..].iter().all(|c| *c == Some(1.0)), "{commits:?}");
    assert_eq!(floats(&v, "size_bytes")[71], Some(1_000_071.0));
    assert_eq!(floats(&v, "size_bytes")[72], None);
}

/// GET with a deadline: `None` when no answer came in time.
async fn get_within(url: &str, token: &str, secs: u64) -> Option<(StatusCode, Value)> {
    let resp = http::client()
        .get(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(secs))
        .send()
        .await
        .ok()?;
    let status = resp.status();
    Some((status, resp.json().await.ok()?))
}

#[tokio::test]
async fn history_answers_are_kept_until_the_servers_data_changes() {
    let (env, api, [_, _, viewer]) = setup("").await;
    let pool = env.db.pool().await;
    let server = monitored::shared().register(&pool, &env.fernet_key, "prod").await;
    let slots = load_story(&pool, server).await;
    let (from, to) = (slots[0], slots[23] + TimeDelta::minutes(10));
    let url = api.url(&format!(
        "/servers/prod/databases/app/history?{}",
        q(from, to, 600)
    ));
    let (s, first) = get_within(&url, &viewer, 10).await.expect("first answer");
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_story_db(&first, &slots);

    // The story's ~100 write statements each sent a notification; one still on its way when the
    // first answer was kept would drop it. Asked again once they are all in, the answer is kept:
    // sent from memory, and the same.
    let figures = || async {
        let (s, pools) = http::call("GET", &api.url("/api/pools/status"), Some(&viewer), None).await;
        assert_eq!(s, StatusCode::OK, "{pools}");
        pools["history_answers"].clone()
    };
    let count = |h: &Value, k: &str| h[k].as_u64().unwrap_or(0);
    pgmon_tests::wait_for(
        "the answer to be sent from memory",
        Duration::from_secs(10),
        || async {
            let hits = count(&figures().await, "hits");
            let (s, again) = get_within(&url, &viewer, 10).await.expect("answer again");
            assert_eq!((s, &again), (StatusCode::OK, &first));
            count(&figures().await, "hits") > hits
        },
    )
    .await;
    let before = figures().await;

    // While the stats tables are locked, the answer given before still comes, from memory; an
    // answer not given before waits for the store.
    let mut lock = pool.begin().await.expect("begin");
    sqlx::query(
        "LOCK TABLE stat_database, availability, db_size, disk_usage, stat_rollup, stat_rollup_chunk,
                    stat_rollup_state IN ACCESS EXCLUSIVE MODE",
    )
    .execute(&mut *lock)
    .await
    .expect("lock");
    let kept = get_within(&url, &viewer, 5).await;
    assert_eq!(kept, Some((StatusCode::OK, first.clone())));
    // Five viewers asking for the same new answer at once cost the store one statement: the others
    // wait for it and get the same answer.
    let other = api.url(&format!(
        "/servers/prod/databases/app/history?{}",
        q(from, to, 1200)
    ));
    let askers: Vec<_> = (0..5)
        .map(|_| {
            let (url, token) = (other.clone(), viewer.clone());
            tokio::spawn(async move { get_within(&url, &token, 30).await })
        })
        .collect();
    let waiting = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = $1 AND application_name = 'pgmon-api' AND wait_event_type = 'Lock'",
        )
        .bind(&env.db.name)
        .fetch_one(&pool)
        .await
        .expect("pg_stat_activity")
    };
    pgmon_tests::wait_for(
        "a statement waiting for the locked tables",
        Duration::from_secs(5),
        || async { waiting().await > 0 },
    )
    .await;
    // Deliberate: time for the other askers to reach the store if they were going to (an absence
    // cannot be polled for); the counts after the unlock say the same without a clock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(waiting().await, 1, "statements waiting for the locked tables");
    assert!(
        askers.iter().all(|a| !a.is_finished()),
        "answered without the store"
    );
    lock.rollback().await.expect("unlock");
    let mut answers = Vec::new();
    for a in askers {
        let (s, v) = a.await.expect("task").expect("answer in time");
        assert_eq!(s, StatusCode::OK, "{v}");
        answers.push(v);
    }
    assert!(answers.iter().all(|v| *v == answers[0]));
    assert_eq!(answers[0]["step"], 1200);
    // The API's own figures say the same: since the first answer was kept, one of the five was
    // computed; the kept answer under the lock and the other four were sent from memory.
    let h = figures().await;
    assert_eq!(h["active"], true, "{h}");
    assert_eq!(
        count(&h, "computed") - count(&before, "computed"),
        1,
        "{before} -> {h}"
    );
    assert_eq!(count(&h, "hits") - count(&before, "hits"), 5, "{before} -> {h}");
    assert_eq!(h["answers"], 2, "{h}");
    assert_eq!(h["max_bytes"], 64 * 1024 * 1024, "{h}");

    // Any write to the server's rows, by whoever, replaces the kept answer: here a snapshot deleted
    // by hand, which turns slots 5 and 6 into gaps.
    sqlx::query("DELETE FROM stat_database WHERE server_id = $1 AND datname = 'app' AND slot = $2")
        .bind(server)
        .bind(slots[5])
        .execute(&pool)
        .await
        .expect("delete a snapshot");
    let answer = || async { get_within(&url, &viewer, 10).await.expect("answer") };
    pgmon_tests::wait_for(
        "the answer to change after the delete",
        Duration::from_secs(5),
        || async { answer().await.1 != first },
    )
    .await;
    let (_, changed) = answer().await;
    let commits = floats(&changed, "commits_per_sec");
    assert_eq!(commits[5], None, "{commits:?}");
    assert!((commits[4].expect("slot 4") - 1.0).abs() < 0.01, "{commits:?}");

    // Retention drops whole partitions, which fires no trigger; it notifies every server instead.
    // With every row of the database gone, the database is unknown.
    let month_end: DateTime<Utc> =
        sqlx::query_scalar("SELECT date_trunc('month', $1::timestamptz, 'UTC') + interval '1 month'")
            .bind(slots[23])
            .fetch_one(&pool)
            .await
            .expect("month end");
    let dropped = pgmon_shared::store::stats::drop_partitions_before(&pool, month_end)
        .await
        .expect("drop partitions");
    assert!(dropped > 0);
    pgmon_tests::wait_for(
        "the dropped partitions to leave the answer",
        Duration::from_secs(5),
        || async { answer().await.0 == StatusCode::NOT_FOUND },
    )
    .await;
}
