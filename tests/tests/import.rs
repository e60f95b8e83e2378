//! `pgmon-api import-original`: an original deployment (its config directory as it lies on disk, and
//! its `pam_stats` store with the original's schema) carried over, checked through the API: the
//! servers, logins, keys and charts a user switching expects to keep.

use pgmon_tests::{TestDb, TestEnv, http, python_fernet};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The original deployment, as captured in the repository (`tests/fixtures/original/`).
fn deployment() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/original/deployment/etc_pg_activity_monitor")
}

/// A writable copy of the deployment in `dir`.
fn copy_deployment(dir: &Path) -> PathBuf {
    let to = dir.join("etc_pg_activity_monitor");
    pgmon_tests::output_ok(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(deployment())
            .arg(&to),
        "cp",
    );
    pgmon_tests::output_ok(
        std::process::Command::new("chmod").args(["-R", "u+w"]).arg(&to),
        "chmod",
    );
    to
}

/// The original's store, with the schema the original creates at start-up, and three days of
/// 10-minute collections of two databases; the original skipped `postgres`.
async fn original_store() -> TestDb {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    sqlx::raw_sql(
        "CREATE TABLE statistics (
            id bigserial, server_name text NOT NULL, ts timestamptz NOT NULL DEFAULT now(),
            datname text NOT NULL, numbackends integer, xact_commit bigint,
            db_size bigint, disk_free bigint, disk_total bigint
         ) PARTITION BY RANGE (ts);
         CREATE INDEX idx_stats_server_ts ON statistics (server_name, ts DESC);
         CREATE TABLE statistics_default PARTITION OF statistics DEFAULT;
         CREATE TABLE db_info (
            server_name text NOT NULL, datname text NOT NULL, oid bigint NOT NULL,
            creation_time timestamptz, first_seen timestamptz NOT NULL DEFAULT now(),
            last_seen timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (server_name, datname));
         CREATE TABLE audit_sessions (
            id bigserial PRIMARY KEY, timestamp timestamptz NOT NULL DEFAULT now(), event_type text NOT NULL,
            username text NOT NULL, ip_address text, user_agent text, jti text, details text);
         INSERT INTO statistics (server_name, ts, datname, numbackends, xact_commit, db_size, disk_free, disk_total)
         SELECT 'local', date_trunc('hour', now()) - interval '3 days' + n * interval '10 minutes', d,
                n % 4, 1000 + 7 * n, CASE WHEN n % 3 = 0 THEN 8000000 + n * 1024 END,
                40000000000, 100000000000
         FROM generate_series(0, 431) n, unnest(ARRAY['orig_demo', 'app']) d;
         INSERT INTO statistics (server_name, ts, datname, numbackends, xact_commit)
         VALUES ('deleted-long-ago', now() - interval '1 day', 'x', 1, 1);
         INSERT INTO db_info VALUES
            ('local', 'orig_demo', 16384, '2026-01-02 03:04:05+00', now() - interval '3 days', now()),
            ('local', 'app', 16385, NULL, now() - interval '3 days', now());
         INSERT INTO audit_sessions (timestamp, event_type, username, ip_address, user_agent, details)
         VALUES (now() - interval '2 days', 'login_success', 'admin', '10.0.0.1', 'Mozilla/5.0', NULL),
                (now() - interval '1 day', 'login_failed', 'bob', '10.0.0.2', 'curl/8', 'Неверный логин или пароль');",
    )
    .execute(&pool)
    .await
    .expect("the original's store");
    pool.close().await;
    db
}

fn import(env: &TestEnv, from: &Path, dsn: Option<&str>, dry_run: bool) -> (i32, String, String) {
    let from = from.display().to_string();
    let mut args = vec!["import-original", "--from", from.as_str()];
    if let Some(d) = dsn {
        args.extend(["--history-dsn", d]);
    }
    if dry_run {
        args.push("--dry-run");
    }
    env.api_cli(&args, None)
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc())
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

async fn count(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .expect("count")
}

async fn counts(pool: &sqlx::PgPool) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        "servers",
        "users",
        "ssh_keys",
        "stat_database",
        "db_size",
        "disk_usage",
        "availability",
        "databases",
        "audit_sessions",
    ] {
        out.push(count(pool, t).await);
    }
    out
}

#[tokio::test]
async fn an_original_deployment_and_its_history_carry_over_once() {
    let env = TestEnv::new("login_attempts_per_minute = 1000", "").await;
    let (code, out, err) = env.api_cli(&["migrate"], None);
    assert_eq!(code, 0, "{out} {err}");
    let pool = env.db.pool().await;
    let orig = original_store().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let from = copy_deployment(dir.path());

    // A dry run says what it would do and writes nothing.
    let before = counts(&pool).await;
    let (code, out, err) = import(&env, &from, Some(&orig.url), true);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("servers: would import 1 (local)"), "{out}");
    assert!(out.contains("users: would import 2 (admin, vic)"), "{out}");
    assert!(out.contains("ssh keys: would import 1 (k1)"), "{out}");
    assert!(out.contains("would import 864 pg_stat_database samples"), "{out}");
    assert!(
        out.contains("1 rows of servers not in servers.json skipped"),
        "{out}"
    );
    assert_eq!(counts(&pool).await, before, "a dry run writes nothing");

    let (code, out, err) = import(&env, &from, Some(&orig.url), false);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("servers: imported 1 (local)"), "{out}");
    assert!(
        out.contains("imported 864 pg_stat_database samples, 288 sizes, 432 disk"),
        "{out}"
    );
    assert!(out.contains("2 audit events"), "{out}");

    // The original's logins work with their passwords (bcrypt hashes carried over as they are).
    let api = env.spawn_api().await;
    let admin = http::token(&api.base, "admin", "admin-pass-1").await;
    http::token(&api.base, "vic", "viewer-pass-1").await;
    let (_, me) = http::call("GET", &api.url("/users/me"), Some(&admin), None).await;
    assert_eq!(me["role"], "admin");
    assert_eq!(me["email"], "admin@example.com");
    assert_eq!(
        time(&me["created_at"]),
        time(&Value::from("2026-12-01T10:40:54.020032+00:00"))
    );

    // The server, its secrets re-encrypted with pgmon's key.
    let (_, servers) = http::call("GET", &api.url("/servers"), Some(&admin), None).await;
    let local = &servers[0];
    assert_eq!(local["name"], "local");
    assert_eq!(local["host"], "127.1");
    assert_eq!(local["port"], 5432);
    assert_eq!(local["user"], "postgres");
    assert_eq!(local["has_password"], true);
    assert_eq!(local["ssh_enabled"], true);
    assert_eq!(local["ssh_auth_type"], "password");
    assert_eq!(local["has_ssh_password"], true);
    let files: Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("servers.json")).expect("servers.json"))
            .expect("json");
    let orig_key = std::fs::read_to_string(from.join("encryption_key.key")).expect("key");
    let (pw, ssh_pw): (String, String) =
        sqlx::query_as("SELECT password_enc, ssh_password_enc FROM servers WHERE name = 'local'")
            .fetch_one(&pool)
            .await
            .expect("server row");
    for (token, original) in [(&pw, &files[0]["password"]), (&ssh_pw, &files[0]["ssh_password"])] {
        let original = original.as_str().expect("token");
        assert_ne!(token, original, "re-encrypted with pgmon's key");
        assert_eq!(
            python_fernet("decrypt", &env.fernet_key, token),
            python_fernet("decrypt", orig_key.trim(), original)
        );
    }

    // The key keeps its id (servers refer to it), fingerprint and description.
    let (_, keys) = http::call("GET", &api.url("/ssh-keys"), Some(&admin), None).await;
    let k = &keys[0];
    assert_eq!(k["id"], "d0f45943-3d71-4962-b1c5-6e17e2a6cd2b");
    assert_eq!(
        k["fingerprint"],
        "SHA256:4pnYQbYhtvIoDEJab9/UFt17Tqu7c4fIlR0ZsVsEPG4"
    );
    assert_eq!(k["key_type"], "ed25519");
    assert_eq!(k["description"], "d");
    assert_eq!(k["created_by"], "admin");
    assert!(
        k["public_key"].as_str().is_some_and(|p| p
            .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFmIOrng29TJltVM5tMRuPjwE6PTs6POk9qniavwyGwg")),
        "{k}"
    );

    // The charts: three days of commits, sizes and connections, rolled up like collected ones.
    let now = chrono::Utc::now();
    let range = format!(
        "start_date={}&end_date={}",
        (now - chrono::TimeDelta::days(4)).format("%Y-%m-%dT%H:%M:%S.000Z"),
        now.format("%Y-%m-%dT%H:%M:%S.000Z")
    );
    let (st, db) = http::call(
        "GET",
        &api.url(&format!("/server/local/db/orig_demo/stats?{range}")),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{db}");
    assert_eq!(db["aggregation"], "hour");
    assert_eq!(
        db["total_commits"],
        7 * 431,
        "every commit between the first and last sample"
    );
    assert_eq!(
        time(&db["creation_time"]),
        time(&Value::from("2026-01-02T03:04:05Z"))
    );
    assert_eq!(db["timeline"].as_array().map(Vec::len), Some(72));
    assert!(
        db["timeline"][71]["size_mb"].as_f64().is_some_and(|s| s > 7.0),
        "{db}"
    );
    let (_, server) = http::call(
        "GET",
        &api.url(&format!("/server/local/stats?{range}")),
        Some(&admin),
        None,
    )
    .await;
    let names: Vec<&str> = server["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["app", "orig_demo"]);
    assert!(
        server["total_size_gb"].as_f64().is_some_and(|g| g > 0.0),
        "{server}"
    );

    // The original's audit, with its own texts.
    let (_, audit) = http::call(
        "GET",
        &api.url("/audit/sessions?event_type=login_failed&username=bob"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(audit["total"], 1, "{audit}");
    assert_eq!(audit["items"][0]["details"], "Неверный логин или пароль");
    assert_eq!(audit["items"][0]["ip_address"], "10.0.0.2");

    // A second run changes nothing.
    let after = counts(&pool).await;
    let (code, out, err) = import(&env, &from, Some(&orig.url), false);
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.contains("servers: imported 0; already present 1 (local)"),
        "{out}"
    );
    assert!(
        out.contains("imported 0 pg_stat_database samples, 0 sizes, 0 disk"),
        "{out}"
    );
    assert!(out.contains("0 audit events"), "{out}");
    assert_eq!(counts(&pool).await, after);
}

#[tokio::test]
async fn a_malformed_deployment_is_refused_whole_with_the_reason() {
    let env = TestEnv::new("", "").await;
    let (code, out, err) = env.api_cli(&["migrate"], None);
    assert_eq!(code, 0, "{out} {err}");
    let pool = env.db.pool().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let from = copy_deployment(dir.path());
    let servers = from.join("servers.json");
    let text = std::fs::read_to_string(&servers).expect("servers.json");

    let cases = [
        (
            text.replace("\"127.1\"", "\"bad host\""),
            "server \"local\": host must be a host name",
        ),
        (
            text.replace("\"port\": 5432", "\"port\": \"5432\""),
            "servers.json: [0].port",
        ),
        (
            text.replace("gAAAAABrDqQ2tqH", "gAAAAABrDqQ2XXX"),
            "password does not decrypt",
        ),
        ("[{\"name\": \"x\"".to_string(), "servers.json"),
    ];
    for (content, reason) in cases {
        std::fs::write(&servers, content).expect("write");
        let (code, out, err) = import(&env, &from, None, false);
        assert_eq!(code, 1, "{out} {err}");
        assert!(err.contains(reason), "expected {reason:?} in: {err}");
        assert!(!err.contains("gAAAA"), "no secret in the message: {err}");
    }
    assert_eq!(count(&pool, "users").await, 0, "nothing half-imported");
    assert_eq!(count(&pool, "ssh_keys").await, 0, "nothing half-imported");
    std::fs::remove_file(&servers).expect("rm");
    let (code, _, err) = import(&env, &from, None, false);
    assert_eq!(code, 1);
    assert!(err.contains("servers.json"), "{err}");
}
