//! The original backend's clients against pgmon-api: every call its web frontend makes, sent as the
//! frontend sends it, with every field the frontend reads checked (name, type, unit, value where it is
//! known) and every answer's shape compared with the answer captured from the running original
//! (`tests/fixtures/original/golden/`, see the README there). Run once at the
//! bare paths (the original's first layout) and once under `/api` (its later one), against the real
//! binaries, a real monitored PostgreSQL (the shared test server, collected by the real collector)
//! and a real sshd, as the frontend's pages use them.

use chrono::{DateTime, TimeDelta, Utc};
use pgmon_tests::sshd::{Sshd, TEST_PASSWORD, TEST_USER};
use pgmon_tests::{Proc, TestEnv, bin, http, monitored, run_cli, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const PW: &str = "admin-password-1";
/// What a browser sends as its user agent (the audit page parses it).
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36";
/// The collector's interval here: short, so two collections fall in two slots within the test.
const INTERVAL: i64 = 20;

// ---------------------------------------------------------------------------------------------
// Golden answers

/// Every JSON path of `v` (`$` the value, `.key` a member, `[]` any element) with the types seen there.
fn shape(v: &Value, path: &str, out: &mut BTreeMap<String, BTreeSet<&'static str>>) {
    let t = match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "str",
        Value::Array(a) => {
            for x in a {
                shape(x, &format!("{path}[]"), out);
            }
            "array"
        }
        Value::Object(m) => {
            for (k, x) in m {
                shape(x, &format!("{path}.{k}"), out);
            }
            "object"
        }
    };
    out.entry(path.to_string()).or_default().insert(t);
}

/// The body the running original gave for the call `name`.
fn golden(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/original/golden")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("golden json");
    v["body"].clone()
}

/// Every path of the original's answer `name` is in `ours` with a compatible type (a `null` there
/// admits anything); more fields are allowed, fewer or renamed ones are not.
fn assert_golden_shape(name: &str, ours: &Value) {
    let mut g = BTreeMap::new();
    shape(&golden(name), "$", &mut g);
    let mut o = BTreeMap::new();
    shape(ours, "$", &mut o);
    for (path, types) in &g {
        let Some(have) = o.get(path) else {
            panic!("{name}: {path} is missing from pgmon's answer: {ours}");
        };
        for t in types {
            assert!(
                *t == "null" || have.contains(t),
                "{name}: {path} is {t} in the original, {have:?} in pgmon's answer: {ours}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The frontend's client

/// A browser tab of the original frontend: its bearer token and refresh cookie.
struct Client {
    base: String,
    prefix: &'static str,
    token: Option<String>,
    cookie: Option<String>,
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.base, self.prefix)
    }

    /// As the frontend's axios instance: the bearer header whenever a token is stored.
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = http::client()
            .request(m, self.url(path))
            .header("user-agent", BROWSER);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = &self.cookie {
            req = req.header("cookie", http::cookie_pair(c));
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (st, body) = self.call("GET", path, None).await;
        assert_eq!(st, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// `POST /token` as the login form sends it (url-encoded, the stored token sent along).
    async fn login(&mut self, user: &str, password: &str) -> (StatusCode, Value) {
        let mut req = http::client()
            .post(self.url("/token"))
            .header("user-agent", BROWSER)
            .form(&[("username", user), ("password", password)]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("token");
        let status = resp.status();
        if let Some(c) = set_cookie(&resp) {
            self.cookie = Some(c);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if let Some(t) = body["access_token"].as_str() {
            self.token = Some(t.to_string());
        }
        (status, body)
    }

    /// `POST /refresh` with no body, the cookie sent by the browser.
    async fn refresh(&mut self) -> (StatusCode, Value) {
        let mut req = http::client().post(self.url("/refresh"));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", http::cookie_pair(c));
        }
        let resp = req.send().await.expect("refresh");
        let status = resp.status();
        if let Some(c) = set_cookie(&resp) {
            self.cookie = Some(c);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if let Some(t) = body["access_token"].as_str() {
            self.token = Some(t.to_string());
        }
        (status, body)
    }
}

fn set_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("refresh_token="))
        .map(str::to_string)
}

/// `Date.toISOString()`.
fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc())
        .unwrap_or_else(|| panic!("not an ISO 8601 time: {v}"))
}

fn collect(env: &TestEnv, task: &str) {
    let (code, out, err) = run_cli(
        &bin("pgmon-collector"),
        &env.config_path,
        &["once", "--task", task],
        None,
    );
    assert_eq!(code, 0, "collector once --task {task}: {out} {err}");
}

// ---------------------------------------------------------------------------------------------
// The flows

struct World {
    _env: TestEnv,
    api: Proc,
    sshd: Sshd,
    admin_pool: sqlx::PgPool,
    /// The monitored database the pages look at, collected in two slots with commits in between.
    db: String,
    commits_between: i64,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                &pgmon_tests::pg_admin_url(),
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db),
            ])
            .output();
    }
}

/// An API, an admin, the shared PostgreSQL registered as `local` by the add-server form (SSH to a
/// real sshd), and a database collected twice with transactions between the two slots.
async fn world(prefix: &'static str) -> (World, Client) {
    let env = TestEnv::new(
        "login_attempts_per_minute = 1000\nserver_status_cache_ttl_secs = 1\nssh_cache_ttl_secs = 1",
        &format!("[collector]\ncollect_interval_secs = {INTERVAL}\n"),
    )
    .await;
    env.add_user("admin", "admin", PW);
    let api = env.spawn_api().await;
    let sshd = Sshd::start();
    let admin_pool = sqlx::PgPool::connect(&pgmon_tests::pg_admin_url())
        .await
        .expect("admin pool");
    let db = format!("orig_demo_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin_pool)
        .await
        .expect("create database");
    let mut c = Client {
        base: api.base.clone(),
        prefix,
        token: None,
        cookie: None,
    };
    let (st, body) = c.login("admin", PW).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // The users page: the admin's e-mail, as the original's accounts have one.
    let (st, body) = c
        .call(
            "PUT",
            "/users/admin",
            Some(&json!({"role": "admin", "email": "admin@example.com"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // ServerList's add dialog.
    let pg = monitored::shared();
    let form = json!({"name": "local", "host": pg.host, "user": pg.user, "password": pg.password,
        "port": pg.port, "ssh_user": TEST_USER, "ssh_password": TEST_PASSWORD, "ssh_port": sshd.port,
        "ssh_auth_type": "password", "ssh_key_id": "", "ssh_key_passphrase": ""});
    let (st, created) = c.call("POST", "/servers", Some(&form)).await;
    assert_eq!(st, StatusCode::OK, "{created}");
    // The dialog closes only when `status` is absent or "ok".
    assert_eq!(created["status"], "ok", "{created}");

    // Two collections in two slots, with transactions in the database between them.
    collect(&env, "all");
    let first_slot = Utc::now().timestamp() / INTERVAL;
    let url = {
        let base = pgmon_tests::pg_admin_url();
        format!("{}/{db}", base.rsplit_once('/').expect("url").0)
    };
    let demo = sqlx::PgPool::connect(&url).await.expect("demo db");
    let xact = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                .bind(db)
                .fetch_one(&pool)
                .await
                .expect("xact_commit")
        }
    };
    let before = xact(&admin_pool).await;
    for _ in 0..25 {
        sqlx::query("SELECT 1").execute(&demo).await.expect("commit");
    }
    demo.close().await;
    // The statistics collector flushes its counters within a second of the sessions going.
    wait_for(
        "the commits in pg_stat_database",
        Duration::from_secs(20),
        || async { xact(&admin_pool).await >= before + 25 },
    )
    .await;
    // The second collection must fall in the next slot: the clock has to move on.
    wait_for(
        "the next collection slot",
        Duration::from_secs(INTERVAL as u64 + 5),
        || async { Utc::now().timestamp() / INTERVAL > first_slot },
    )
    .await;
    let after = xact(&admin_pool).await;
    collect(&env, "stats");
    collect(&env, "sizes");
    assert!(after - before >= 25, "{before} -> {after}");
    let w = World {
        _env: env,
        api,
        sshd,
        admin_pool,
        db,
        commits_between: after - before,
    };
    (w, c)
}

/// Every call of the contract's inventory, as the frontend's pages make them.
async fn frontend_flow(prefix: &'static str) {
    let (w, mut c) = world(prefix).await;

    // 4: the health check, before and after login, within the frontend's 3 s timeout.
    let started = std::time::Instant::now();
    let (st, health) = c.call("GET", "/health", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_golden_shape("health", &health);
    let literal = http::call("GET", &format!("{}/api/health", w.api.base), None, None).await;
    assert_eq!(
        literal.0,
        StatusCode::OK,
        "the literal /api/health of the first layout"
    );

    // 1: login; a wrong password is a 401 whose detail the login form recognises.
    let mut anon = Client {
        base: w.api.base.clone(),
        prefix,
        token: None,
        cookie: None,
    };
    let (st, body) = anon.login("admin", "wrong-password").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "Invalid credentials");
    assert_golden_shape("token_wrong_password", &body);
    let (st, body) = c.login("admin", PW).await;
    assert_eq!(st, StatusCode::OK);
    assert_golden_shape("token", &body);
    let token = body["access_token"].as_str().expect("access_token");
    let claims = token.split('.').nth(1).expect("payload");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).expect("b64"),
    )
    .expect("claims");
    assert!(
        claims["exp"].as_i64().is_some_and(|e| e > Utc::now().timestamp()),
        "{claims}"
    );
    let cookie = c.cookie.clone().expect("refresh cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"));

    // 5: the role gates the pages.
    let me = c.get("/users/me").await;
    assert_eq!(me["role"], "admin");
    assert_golden_shape("users_me", &me);

    // 6: the server list, polled every 10 s: live status from what pgmon knows.
    let live = std::sync::Mutex::new(Value::Null);
    wait_for("a live status with disk", Duration::from_secs(20), || async {
        let list = c.get("/servers").await;
        let ready = list[0]["status"] == "ok" && list[0]["free_space"].is_i64();
        *live.lock().expect("list") = list;
        ready
    })
    .await;
    let servers = live.into_inner().expect("list");
    assert_golden_shape("servers", &servers);
    assert_golden_shape("servers_again_within_5s", &servers);
    let s = &servers[0];
    assert_eq!(s["name"], "local");
    assert!(s["version"].as_str().is_some_and(|v| v.starts_with("15.")), "{s}");
    assert!(s["connections"]["active"].as_i64().is_some_and(|n| n >= 1), "{s}");
    assert!(s["connections"]["idle"].is_i64(), "{s}");
    assert!(s["uptime_hours"].as_f64().is_some_and(|h| h > 0.0), "{s}");
    let (free, total) = (
        s["free_space"].as_i64().expect("bytes"),
        s["total_space"].as_i64().expect("bytes"),
    );
    assert!(free > 0 && free < total, "bytes, free of total: {s}");
    assert_eq!(s["ssh_auth_type"], "password");
    assert_eq!(s["ssh_user"], TEST_USER);
    assert_eq!(s["ssh_port"], w.sshd.port);
    assert!(s["status_checked_at"].is_string());

    // 10: the edit page's SSH test.
    let (st, ssh) = c.call("POST", "/servers/local/test-ssh", None).await;
    assert_eq!(st, StatusCode::OK, "{ssh}");
    assert_eq!(ssh["success"], true, "{ssh}");
    assert!(ssh["message"].is_string());
    assert_golden_shape("servers_test_ssh", &ssh);

    // 11: the server page, default range and the range buttons.
    let now = Utc::now();
    let week = format!(
        "start_date={}&end_date={}",
        iso(now - TimeDelta::days(7)),
        iso(now)
    );
    let page = c.get(&format!("/server/local/stats?{week}")).await;
    assert_golden_shape("server_stats_7d", &page);
    assert_eq!(page["aggregation"], "hour");
    let default = c.get("/server/local/stats").await;
    assert_eq!(
        default["aggregation"], "hour",
        "the original's default range is 7 days"
    );
    let db = &w.db;
    let entry = page["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .find(|d| d["name"] == json!(db))
        .cloned()
        .expect("the database is listed");
    assert_eq!(entry["exists"], true);
    assert!(time(&entry["creation_time"]) <= Utc::now());
    let day = format!(
        "start_date={}&end_date={}",
        iso(now - TimeDelta::hours(1)),
        iso(now + TimeDelta::minutes(1))
    );
    let raw = c.get(&format!("/server/local/stats?{day}")).await;
    assert_eq!(raw["aggregation"], "raw");
    let points: Vec<&Value> = raw["connection_timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|p| p["datname"] == json!(db))
        .collect();
    assert_eq!(points.len(), 2, "one point per collection: {raw}");
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size($1)")
        .bind(db)
        .fetch_one(&w.admin_pool)
        .await
        .expect("size");
    let gib = points[1]["size_gb"].as_f64().expect("GiB");
    assert!(
        (gib * 1024.0 * 1024.0 * 1024.0 - size as f64).abs() < 1024.0 * 1024.0,
        "size_gb is GiB: {gib} for {size} bytes"
    );
    assert!(points[1]["connections"].is_i64());
    assert!(time(&raw["last_stat_update"]) <= Utc::now());
    let (st, bad) = c
        .call("GET", "/server/local/stats?start_date=yesterday", None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(bad["detail"], "Невалидный формат даты: yesterday");
    assert_golden_shape("server_stats_bad_date", &bad);
    let (st, nope) = c.call("GET", &format!("/server/nope/stats?{week}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_golden_shape("server_stats_unknown_server", &nope);

    // 12, 13: the database page (both GETs, as it polls them).
    let info = c.get(&format!("/server/local/db/{db}")).await;
    assert_golden_shape("db_orig_demo", &info);
    assert!(
        (info["size_mb"].as_f64().expect("MiB") * 1_048_576.0 - size as f64).abs() < 1_048_576.0,
        "size_mb is MiB: {info}"
    );
    assert!(info["commits"].as_i64().is_some_and(|n| n > 0));
    assert!(info["connections"].is_i64());
    assert!(time(&info["last_update"]) <= Utc::now());
    let postgres = c.get("/server/local/db/postgres").await;
    assert_golden_shape("db_postgres", &postgres);
    let stats = c.get(&format!("/server/local/db/{db}/stats?{day}")).await;
    assert_golden_shape("db_orig_demo_stats_7d", &stats);
    let timeline = stats["timeline"].as_array().expect("timeline");
    assert_eq!(timeline.len(), 2);
    assert!(
        stats["total_commits"]
            .as_i64()
            .is_some_and(|n| n >= w.commits_between && n <= w.commits_between + 10),
        "commits in the range, not a sum of counters: {stats} vs {}",
        w.commits_between
    );
    assert_eq!(timeline[1]["commits"], stats["total_commits"], "{stats}");
    assert!(stats["max_connections"].as_i64() >= stats["min_connections"].as_i64());
    let week_stats = c.get(&format!("/server/local/db/postgres/stats?{week}")).await;
    assert_golden_shape("db_postgres_stats_7d", &week_stats);

    // 14-19: the SSH-keys page.
    let empty = c.get("/ssh-keys").await;
    assert_golden_shape("ssh_keys_list_empty", &empty);
    let (st, key) = c
        .call(
            "POST",
            "/ssh-keys/generate",
            Some(
                &json!({"name": "k1", "key_type": "rsa", "key_size": 2048, "passphrase": null,
                         "description": "d"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{key}");
    assert_golden_shape("ssh_keys_generate", &key);
    assert_eq!(
        key["key_type"].as_str().map(str::to_uppercase).as_deref(),
        Some("RSA")
    );
    let list = c.get("/ssh-keys").await;
    assert_golden_shape("ssh_keys_list", &list);
    let id = key["id"].as_str().expect("id").to_string();
    let (st, file) = c
        .call("GET", &format!("/ssh-keys/{id}/download-public"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_golden_shape("ssh_keys_download_public", &file);
    assert_eq!(file["content"], key["public_key"]);
    assert!(file["filename"].as_str().is_some_and(|f| f.ends_with(".pub")));
    let (st, unknown) = c.call("GET", "/ssh-keys/nope/download-public", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_golden_shape("ssh_keys_download_unknown", &unknown);
    let private = {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("id");
        pgmon_tests::sshd::ssh_keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "x@y",
            "-f",
            &p.display().to_string(),
        ]);
        std::fs::read_to_string(p).expect("key")
    };
    let (st, imported) = c
        .call(
            "POST",
            "/ssh-keys/import",
            Some(&json!({"name": "imp", "private_key": private, "passphrase": null, "description": "imported"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{imported}");
    assert_golden_shape("ssh_keys_generate", &imported);
    let imp = imported["id"].as_str().expect("id").to_string();
    let (st, renamed) = c
        .call(
            "PUT",
            &format!("/ssh-keys/{imp}"),
            Some(&json!({"name": "imp2", "description": ""})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "imp2");
    let (st, _) = c.call("DELETE", &format!("/ssh-keys/{imp}"), None).await;
    assert_eq!(st, StatusCode::OK);

    // 8: the edit page sends the whole server back, with empty secrets; switching to the key.
    let mut obj = servers[0].clone();
    obj["password"] = json!("");
    obj["ssh_password"] = json!("");
    obj["ssh_key_passphrase"] = json!("");
    obj["ssh_auth_type"] = json!("key");
    obj["ssh_key_id"] = json!(id);
    let (st, saved) = c.call("PUT", "/servers/local", Some(&obj)).await;
    assert_eq!(st, StatusCode::OK, "{saved}");
    assert_eq!(saved["ssh_auth_type"], "key");
    assert_eq!(
        saved["has_password"], true,
        "the empty password kept the stored one"
    );
    assert_eq!(
        saved["status"], "ok",
        "the PostgreSQL credentials still work: {saved}"
    );
    let list = c.get("/ssh-keys").await;
    assert_eq!(
        list[0]["servers_count"], 1,
        "the key is in use: delete is disabled"
    );
    let (st, refused) = c.call("DELETE", &format!("/ssh-keys/{id}"), None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("local")));

    // 20-23: the users page.
    let users = c.get("/users").await;
    assert_golden_shape("users_list", &users);
    let (st, vic) = c
        .call(
            "POST",
            "/users",
            Some(&json!({"login": "vic", "password": "viewer-pass-1", "role": "viewer", "email": "v@example.com"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{vic}");
    assert_golden_shape("users_create", &vic);
    assert_eq!(vic["is_active"], true);
    let (st, dup) = c
        .call(
            "POST",
            "/users",
            Some(&json!({"login": "vic", "password": "viewer-pass-1", "role": "viewer", "email": null})),
        )
        .await;
    assert!(st.is_client_error(), "{dup}");
    assert_golden_shape("users_create_duplicate", &dup);
    let users = c.get("/users").await;
    assert_golden_shape("users_list_after_create", &users);
    let (st, edited) = c
        .call(
            "PUT",
            "/users/vic",
            Some(&json!({"role": "operator", "email": "vic@example.com"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{edited}");
    assert_eq!(
        (edited["role"].clone(), edited["email"].clone()),
        (json!("operator"), json!("vic@example.com"))
    );
    let (st, _) = c
        .call(
            "PUT",
            "/users/vic",
            Some(&json!({"role": "operator", "email": null, "password": "new-pass-12"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = c.call("DELETE", "/users/vic", None).await;
    assert_eq!(st, StatusCode::OK);

    // 9: delete a server.
    let spare = json!({"name": "spare", "host": "127.0.0.2", "user": "u", "password": "",
        "port": pgmon_tests::cluster::free_port(), "ssh_user": "", "ssh_password": "", "ssh_port": 22,
        "ssh_auth_type": "password", "ssh_key_id": "", "ssh_key_passphrase": ""});
    let (st, added) = c.call("POST", "/servers", Some(&spare)).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        added["status"].as_str().is_some_and(|s| s.contains("error")),
        "unreachable: the dialog shows the status: {added}"
    );
    let (st, gone) = c.call("DELETE", "/servers/spare", None).await;
    assert_eq!(st, StatusCode::OK, "{gone}");

    // 24, 25: the audit page with its filters, and its counters.
    let audit = c
        .get("/audit/sessions?limit=25&offset=0&username=adm&event_type=login_success&date_from=2020-01-01&date_to=2099-12-31")
        .await;
    assert_golden_shape("audit_sessions", &audit);
    assert!(audit["items"].as_array().is_some_and(|i| !i.is_empty()));
    assert!(
        audit["items"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["event_type"] == "login_success")
    );
    let all = c.get("/audit/sessions?limit=25&offset=0").await;
    assert!(
        all["items"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["details"].is_string() || e["details"].is_null()),
        "details render as text: {all}"
    );
    let counters = c.get("/audit/sessions/stats").await;
    assert_golden_shape("audit_sessions_stats", &counters);
    assert!(counters["failed_today"].as_i64().is_some_and(|n| n >= 1));

    // 2, 3: refresh, then logout with the token, then logout after the session is gone.
    let (st, body) = c.refresh().await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, bye) = c.call("POST", "/logout", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_golden_shape("logout_with_token", &bye);
    let (st, after) = c.call("GET", "/users/me", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_golden_shape("users_me_after_logout", &after);
    c.token = None;
    let (st, after) = c.call("GET", "/users/me", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_golden_shape("users_me_without_token", &after);
    let (st, bye) = c.call("POST", "/logout", None).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "no 401 that would send the frontend to /refresh again"
    );
    assert_golden_shape("logout_without_token", &bye);
}

#[tokio::test]
async fn the_original_frontends_calls_at_the_bare_paths() {
    frontend_flow("").await;
}

#[tokio::test]
async fn the_original_frontends_calls_under_api() {
    frontend_flow("/api").await;
}

/// The frontend logs out when its refresh fails, after dropping the token: with a refresh cookie
/// that has expired, `/logout` answers 200 and clears it, so the frontend does not loop.
#[tokio::test]
async fn logout_after_the_refresh_cookie_has_expired() {
    let env = TestEnv::new("login_attempts_per_minute = 1000", "").await;
    env.add_user("admin", "admin", PW);
    let api = env.spawn_api().await;
    let (_, body, _) = http::login(&api.base, "admin", PW).await;
    let access = body["access_token"].as_str().expect("token");
    // The same refresh token as the API issues, signed with the test's secret, expired an hour ago.
    let claims: Value = {
        let payload = access.split('.').nth(1).expect("payload");
        serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).expect("b64"),
        )
        .expect("claims")
    };
    let mut expired = claims.clone();
    expired["kind"] = json!("refresh");
    expired["jti"] = json!(uuid::Uuid::new_v4());
    expired["exp"] = json!(Utc::now().timestamp() - 3600);
    expired["iat"] = json!(Utc::now().timestamp() - 7200);
    let secret = "test-jwt-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
    let cookie = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &expired,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("jwt");
    for prefix in ["", "/api"] {
        let refresh = http::client()
            .post(format!("{}{prefix}/refresh", api.base))
            .header("cookie", format!("refresh_token={cookie}"))
            .send()
            .await
            .expect("refresh");
        assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
        let resp = http::client()
            .post(format!("{}{prefix}/logout", api.base))
            .header("cookie", format!("refresh_token={cookie}"))
            .send()
            .await
            .expect("logout");
        assert_eq!(resp.status(), StatusCode::OK);
        let cleared = set_cookie(&resp).expect("cookie cleared");
        assert!(
            cleared.starts_with("refresh_token=;") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["detail"], "Logged out");
    }
    // The family of the expired token is revoked with it: the access token of that login is refused.
    let (st, _) = http::call("GET", &api.url("/users/me"), Some(access), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

/// The shape check itself: a renamed field (`active` for `is_active`) or a wrong type fails it.
#[test]
fn the_shape_check_catches_renamed_fields_and_wrong_types() {
    let ok = json!({"login": "a", "role": "admin", "email": "x@y", "created_at": "2026-01-01T00:00:00Z",
                    "last_login": null, "is_active": true, "extra": 1});
    assert_golden_shape("users_me", &ok);
    let renamed = std::panic::catch_unwind(|| {
        let mut v = ok.clone();
        v["active"] = v["is_active"].take();
        v.as_object_mut().map(|m| m.remove("is_active"));
        assert_golden_shape("users_me", &v);
    });
    assert!(renamed.is_err());
    let retyped = std::panic::catch_unwind(|| {
        let mut v = ok.clone();
        v["is_active"] = json!("yes");
        assert_golden_shape("users_me", &v);
    });
    assert!(retyped.is_err());
}
