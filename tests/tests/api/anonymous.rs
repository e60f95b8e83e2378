//! What anonymous clients cannot do: make the API work the store (emptied caches, `/health`), grow
//! the audit table, or grow the request metrics with made-up methods.

use super::PW;
use futures::StreamExt;
use pgmon_tests::http::{self, call};
use pgmon_tests::{Proc, TestEnv, wait_for};
use reqwest::StatusCode;
use std::time::Duration;

/// An API with metrics on and the three users of [`super::with_users`], default login limits.
async fn api_with_metrics() -> (TestEnv, Proc) {
    let env = TestEnv::new("", "[metrics]\nenabled = true\n").await;
    for (login, role) in [("admin", "admin"), ("operator", "operator"), ("viewer", "viewer")] {
        env.add_user(login, role, PW);
    }
    let api = env.spawn_api().await;
    (env, api)
}

/// Transactions committed in the store database, once the API's sessions have reported theirs
/// (a backend reports its statistics within a second of going idle). Read from another database so
/// that measuring adds nothing.
async fn store_commits(db: &str) -> i64 {
    let admin = sqlx::PgPool::connect(&pgmon_tests::pg_admin_url())
        .await
        .expect("admin");
    wait_for(
        "the API's store sessions to report their statistics",
        Duration::from_secs(30),
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity
                  WHERE datname = $1 AND application_name LIKE 'pgmon-api%'
                    AND (state <> 'idle' OR state_change > clock_timestamp() - interval '1500 ms'))",
            )
            .bind(db)
            .fetch_one(&admin)
            .await
            .expect("pg_stat_activity")
        },
    )
    .await;
    let n = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(db)
        .fetch_one(&admin)
        .await
        .expect("pg_stat_database");
    admin.close().await;
    n
}

/// Audit rows: (login failures, refused-login aggregates, everything else).
async fn audit_rows(env: &TestEnv) -> (i64, i64, i64) {
    let pool = env.db.pool().await;
    let n = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event = 'login_failed'),
                count(*) FILTER (WHERE event = 'login_rate_limited'),
                count(*) FILTER (WHERE event NOT IN ('login_failed', 'login_rate_limited'))
         FROM audit_sessions",
    )
    .fetch_one(&pool)
    .await
    .expect("audit");
    pool.close().await;
    n
}

async fn scrape(api: &Proc) -> String {
    let resp = http::client()
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.expect("body")
}

fn invalidations(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("pgmon_api_cache_invalidations_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pgmon_api_cache_invalidations_total in\n{metrics}"))
}

/// 10,000 anonymous writes (no token, a path that does not exist, made-up methods, logins with a
/// wrong password) interleaved with an admin's reads: the admin's reads stay cache hits (the store
/// is not read for them again), and the audit grows only by the few rows of the login limits.
#[tokio::test]
async fn anonymous_requests_leave_caches_and_audit_as_they_were() {
    let (env, api) = api_with_metrics().await;
    let admin = http::token(&api.base, "admin", PW).await;
    for _ in 0..2 {
        assert_eq!(
            call("GET", &api.url("/api/servers"), Some(&admin), None).await.0,
            StatusCode::OK
        );
    }
    let audit_before = audit_rows(&env).await;
    let invalidated_before = invalidations(&scrape(&api).await);
    let commits_before = store_commits(&env.db.name).await;

    let client = http::client();
    let foo = reqwest::Method::from_bytes(b"FOO").expect("method");
    let started = std::time::Instant::now();
    let statuses = futures::stream::iter(0..10_000u32)
        .map(|i| {
            let req = match i % 6 {
                0 => client
                    .post(api.url("/api/servers"))
                    .json(&serde_json::json!({"name": "x", "host": "127.0.0.1", "user": "u"})),
                1 => client.post(api.url("/api/no-such-thing")),
                2 => client.request(foo.clone(), api.url("/api/servers")),
                3 => client.delete(api.url("/api/users/viewer")),
                4 => client
                    .post(api.url("/token"))
                    .form(&[("username", "root"), ("password", "guess")]),
                _ if i % 60 == 5 => client.get(api.url("/api/servers")).bearer_auth(&admin),
                _ => client.put(api.url("/api/settings")).json(&serde_json::json!({})),
            };
            async move { req.send().await.map(|r| r.status()).expect("request") }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let secs = started.elapsed().as_secs() as i64;
    assert!(
        statuses.iter().all(|s| !s.is_server_error()),
        "no 5xx under the flood"
    );
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "the guessing was throttled"
    );

    let commits = store_commits(&env.db.name).await - commits_before;
    assert_eq!(
        invalidations(&scrape(&api).await),
        invalidated_before,
        "no anonymous request emptied the caches"
    );
    // The admin's reads were served from the caches; the guesses wrote their failures (5, then one
    // each 12 s), one aggregate row and its updates (one each 2 s at most); the store pool grows
    // under the load, and a new connection prepares each statement it runs (one more commit each):
    // 33 to 37 measured. Before, every anonymous write emptied the caches and every refused login
    // was a row: thousands of transactions.
    assert!(
        commits < 80 + secs,
        "{commits} store transactions for the flood of {secs} s"
    );
    // The pair limit (5 a minute, refilled one every 12 s) lets a few guesses through; every other
    // refusal is counted in one row per client IP and minute.
    let (failed, refused, other) = audit_rows(&env).await;
    assert_eq!(audit_before.2, other, "no other event was recorded");
    assert!(
        failed - audit_before.0 <= 6 + secs / 12,
        "{failed} login failures in {secs} s"
    );
    assert!(
        (1..=2).contains(&(refused - audit_before.1)),
        "{refused} aggregate rows for thousands of refused logins"
    );
    let (status, _) = call("GET", &api.url("/api/users/viewer"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "the anonymous DELETEs deleted nothing");
}

/// `/health` needs no auth: 200 requests at once read the store a few times, not 400.
#[tokio::test]
async fn health_reads_the_store_at_most_once_a_second() {
    let (env, api) = api_with_metrics().await;
    assert_eq!(
        call("GET", &api.url("/api/health"), None, None).await.0,
        StatusCode::OK
    );
    let client = http::client();
    let flood = || async {
        let statuses = futures::stream::iter(0..200)
            .map(|_| {
                let req = client.get(api.url("/api/health"));
                async move { req.send().await.map(|r| r.status()).expect("health") }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    };
    // A first flood opens what store connections the API opens (each new one runs its session
    // settings, which count as transactions); the second is the one measured.
    flood().await;
    let before = store_commits(&env.db.name).await;
    let started = std::time::Instant::now();
    flood().await;
    let commits = store_commits(&env.db.name).await - before;
    // One refresh a second at most (a few statements each) plus the API's own background work
    // (journal, listener, probes: a few dozen transactions on a loaded machine) over the flood
    // and the wait for the statistics. Reading the store per request made 400.
    let secs = started.elapsed().as_secs() + 1;
    let bound = 60 + 4 * secs as i64;
    assert!(
        commits < bound.min(150),
        "{commits} store transactions for 200 health checks in {secs} s"
    );
}

/// A method token a client makes up is counted as `other`, not as a new label held forever.
#[tokio::test]
async fn made_up_methods_are_counted_as_other() {
    let (_env, api) = api_with_metrics().await;
    let client = http::client();
    for m in ["FOO", "BREW", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).expect("method");
        let status = client
            .request(method, api.url("/api/servers"))
            .send()
            .await
            .expect("request")
            .status();
        assert!(status.is_client_error(), "{m}: {status}");
    }
    let metrics = scrape(&api).await;
    let requests: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("pgmon_api_requests_total{"))
        .collect();
    assert!(
        requests.iter().any(|l| l.contains("method=\"other\"")),
        "{requests:#?}"
    );
    for m in ["FOO", "BREW", "PROPFIND"] {
        assert!(
            !metrics.contains(&format!("method=\"{m}\"")),
            "{m} is a label: {requests:#?}"
        );
    }
}
