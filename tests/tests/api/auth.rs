//! Login, refresh rotation and reuse, logout, revocation across restarts and instances, throttling.

use super::{MANY_LOGINS, PW, with_users};
use pgmon_tests::http::{self, call, cookie_pair};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

async fn refresh(base: &str, cookie: &str) -> (StatusCode, Value, Option<String>) {
    let resp = http::client()
        .post(format!("{base}/refresh"))
        .header("cookie", cookie_pair(cookie))
        .send()
        .await
        .expect("refresh");
    let status = resp.status();
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, resp.json().await.unwrap_or(Value::Null), set)
}

#[tokio::test]
async fn login_returns_bearer_token_and_strict_httponly_cookie() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let (status, body, cookie) = http::login(&api.base, "admin", PW).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    let cookie = cookie.expect("refresh cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    // The test config sets secure_cookies = false.
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn secure_cookie_by_default() {
    let env = pgmon_tests::TestEnv::new("secure_cookies = true", "").await;
    env.add_user("admin", "admin", PW);
    let api = env.spawn_api().await;
    let (_, _, cookie) = http::login(&api.base, "admin", PW).await;
    assert!(cookie.expect("cookie").contains("; Secure"));
}

#[tokio::test]
async fn unknown_login_and_wrong_password_look_the_same() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let (s1, b1, c1) = http::login(&api.base, "admin", "wrong-password").await;
    let (s2, b2, c2) = http::login(&api.base, "nobody", "wrong-password").await;
    let (s3, b3, _) = http::login(&api.base, "bad login with spaces", "wrong-password").await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!((s1, &b1), (s3, &b3));
    assert!(c1.is_none() && c2.is_none());
    assert!(b1["detail"].is_string());
}

#[tokio::test]
async fn python_bcrypt_hashes_verify() {
    let (env, api) = with_users(MANY_LOGINS).await;
    // Made by Python's bcrypt 5 (`bcrypt.hashpw(b"python-made-pass", bcrypt.gensalt(12))`).
    let hash = "$2b$12$1ejdEKaoiQMZFIv41vwEqOE53u9CbB4Fao/4r17RI6SX8Aibl0YYq";
    let pool = env.db.pool().await;
    sqlx::query("INSERT INTO users (login, password_hash, role) VALUES ('legacy', $1, 'viewer')")
        .bind(hash)
        .execute(&pool)
        .await
        .expect("insert");
    let (status, _, _) = http::login(&api.base, "legacy", "python-made-pass").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = http::login(&api.base, "legacy", "python-made-pasS").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Short enough for a test to wait it out.
const GRACE: &str = "refresh_reuse_grace_secs = 2";

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let (_env, api) = with_users(&format!("{MANY_LOGINS}\n{GRACE}")).await;
    let (_, body, cookie) = http::login(&api.base, "operator", PW).await;
    let first_access = body["access_token"].as_str().expect("token").to_string();
    let c1 = cookie.expect("cookie");
    let (status, body, c2) = refresh(&api.base, &c1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c2 = c2.expect("rotated cookie");
    assert_ne!(cookie_pair(&c1), cookie_pair(&c2));
    let second_access = body["access_token"].as_str().expect("token").to_string();
    assert_eq!(
        call("GET", &api.url("/users/me"), Some(&second_access), None)
            .await
            .0,
        StatusCode::OK
    );

    // Within the grace window a second tab presenting the same token gets the same successor: the
    // same token id and family (signed anew, so its `iat` may be a second later).
    let (status, _, again) = refresh(&api.base, &c1).await;
    assert_eq!(status, StatusCode::OK);
    let again = again.expect("cookie for the second tab");
    let (id_again, id_c2) = (refresh_ids(&again), refresh_ids(&c2));
    assert!(id_again.0.is_some(), "{again}");
    assert_eq!(id_again, id_c2);
    // Replaying the first refresh token after the window: refused, and the whole family dies with it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(refresh(&api.base, &c1).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&api.base, &c2).await.0, StatusCode::UNAUTHORIZED);
    for t in [&first_access, &second_access] {
        assert_eq!(
            call("GET", &api.url("/users/me"), Some(t), None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Other sessions of the same user are untouched.
    assert_eq!(http::login(&api.base, "operator", PW).await.0, StatusCode::OK);
}

/// The `jti` claim of the JWT in a `refresh_token=...` pair.
fn jti(pair: &str) -> String {
    use base64::Engine;
    let token = pair.trim_start_matches("refresh_token=");
    let payload = token.split('.').nth(1).expect("payload");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("claims");
    claims["jti"].as_str().expect("jti").to_string()
}

/// Two tabs share one refresh cookie and may refresh at the same moment: every one of them gets
/// the same successor token, one rotation happened, and the session goes on.
#[tokio::test]
async fn parallel_refreshes_of_one_token_share_one_rotation() {
    let (env, api) = with_users(MANY_LOGINS).await;
    let pool = env.db.pool().await;
    for _ in 0..3 {
        let (_, _, cookie) = http::login(&api.base, "viewer", PW).await;
        let cookie = cookie.expect("cookie");
        let results = futures::future::join_all((0..4).map(|_| refresh(&api.base, &cookie))).await;
        assert!(
            results.iter().all(|r| r.0 == StatusCode::OK),
            "{:?}",
            results.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        // The same successor token (re-signed for each answer, so compare what it names).
        let successors: std::collections::BTreeSet<String> = results
            .iter()
            .map(|r| jti(&cookie_pair(r.2.as_deref().expect("cookie"))))
            .collect();
        assert_eq!(successors.len(), 1, "{successors:?}");
        let next = cookie_pair(results[0].2.as_deref().expect("cookie"));
        let (status, body, _) = refresh(&api.base, &format!("{next}; Path=/")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let rotations: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE replaced_by IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("rows");
    assert_eq!(
        rotations, 6,
        "one rotation per parallel burst and one per follow-up"
    );
}

#[tokio::test]
async fn refresh_without_cookie_is_401() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let (status, body) = call("POST", &api.url("/refresh"), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn logout_revokes_access_and_refresh_across_restart_and_instances() {
    let (env, mut api) = with_users(MANY_LOGINS).await;
    let second = env.spawn_api().await;
    let (_, body, cookie) = http::login(&api.base, "admin", PW).await;
    let token = body["access_token"].as_str().expect("token").to_string();
    let cookie = cookie.expect("cookie");
    assert_eq!(
        call("GET", &second.url("/users/me"), Some(&token), None).await.0,
        StatusCode::OK
    );

    let resp = http::client()
        .post(api.url("/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), StatusCode::OK);
    let cleared = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        cleared.starts_with("refresh_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    assert_eq!(
        call("GET", &api.url("/users/me"), Some(&token), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("GET", &second.url("/users/me"), Some(&token), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(refresh(&second.base, &cookie).await.0, StatusCode::UNAUTHORIZED);
    // A client whose session is gone still logs out: 200, never a 401 that would send it to
    // /refresh again (the original's frontend loops on that).
    for t in [Some(token.as_str()), None] {
        let (status, body) = call("POST", &api.url("/logout"), t, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["detail"], "Logged out");
    }

    api.terminate(Duration::from_secs(15))
        .await
        .expect("api stops on SIGTERM");
    let restarted = env.spawn_api().await;
    assert_eq!(
        call("GET", &restarted.url("/users/me"), Some(&token), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&restarted.base, &cookie).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sigterm_exits_cleanly() {
    let (_env, mut api) = with_users(MANY_LOGINS).await;
    let status = api.terminate(Duration::from_secs(15)).await.expect("exit");
    assert!(status.success(), "{status}");
}

/// A login through a trusted proxy (loopback here) that names the client `ip`: distinct client IPs
/// from one test. Returns the status, `Retry-After` and how long the answer took.
async fn login_from(
    api: &pgmon_tests::Proc,
    ip: &str,
    user: &str,
    password: &str,
) -> (StatusCode, Option<u64>, Duration) {
    let started = std::time::Instant::now();
    let resp = http::client()
        .post(api.url("/token"))
        .header("x-forwarded-for", ip)
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .expect("token");
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if status == StatusCode::TOO_MANY_REQUESTS {
        let body: Value = resp.json().await.expect("json");
        assert!(body["detail"].is_string(), "{body}");
    }
    (status, retry, started.elapsed())
}

/// OWASP's pattern, each limiter alone: per (login, IP) pair, per IP across logins, and per login
/// only a slow-down, so an attacker spending failures on `admin` cannot lock the admin out. Refused
/// attempts are audited in aggregate: one row per client IP and minute.
#[tokio::test]
async fn failed_logins_are_throttled_per_login_and_per_ip() {
    let (env, api) = with_users(
        "login_attempts_per_minute = 3\nlogin_attempts_per_minute_per_ip = 6\ntrusted_proxies = [\"127.0.0.0/8\"]",
    )
    .await;
    let unauthorized = StatusCode::UNAUTHORIZED;

    // The pair: three failures of admin from A, then even the right password from A is refused...
    for _ in 0..3 {
        assert_eq!(
            login_from(&api, "192.0.2.1", "admin", "wrong-password").await.0,
            unauthorized
        );
    }
    let (status, retry, _) = login_from(&api, "192.0.2.1", "admin", PW).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry = retry.expect("Retry-After in seconds");
    assert!((1..=61).contains(&retry), "{retry}");
    // ...but not another login from A (not the IP's limit), nor admin from B (not the login's).
    assert_eq!(
        login_from(&api, "192.0.2.1", "viewer", PW).await.0,
        StatusCode::OK
    );
    assert_eq!(login_from(&api, "192.0.2.2", "admin", PW).await.0, StatusCode::OK);

    // The IP: six attempts from C, each at another login (no pair is near its limit)...
    for i in 0..6 {
        let user = format!("nobody{i}");
        assert_eq!(
            login_from(&api, "192.0.2.3", &user, "guess").await.0,
            unauthorized
        );
    }
    // ...and C is refused for any login, the right password too; D is not.
    assert_eq!(
        login_from(&api, "192.0.2.3", "operator", PW).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&api, "192.0.2.4", "operator", PW).await.0,
        StatusCode::OK
    );

    // More refusals from C: still one audit row for C (two if a minute boundary fell in between),
    // counting all of them (checked below).
    for i in 0..20 {
        let user = format!("spray{i}");
        assert_eq!(
            login_from(&api, "192.0.2.3", &user, "guess").await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    // The login: failures of admin from eight IPs, each within its own limits, slow admin down...
    let spray = (10..18).map(|i| {
        let ip = format!("198.51.100.{i}");
        let api = &api;
        async move { login_from(api, &ip, "admin", "wrong-password").await.0 }
    });
    for status in futures::future::join_all(spray).await {
        assert_eq!(status, unauthorized);
    }
    // ...yet the admin, from an IP with no failures, gets in: delayed, never refused.
    let (status, _, took) = login_from(&api, "203.0.113.5", "admin", PW).await;
    assert_eq!(status, StatusCode::OK, "admin locked out");
    assert!(took >= Duration::from_millis(1000), "no slow-down: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    let pool = env.db.pool().await;
    pgmon_tests::wait_for("the refusals of C counted in the audit", Duration::from_secs(20), || async {
        let rows: Vec<(Option<String>,)> = sqlx::query_as(
            "SELECT details FROM audit_sessions WHERE event = 'login_rate_limited' AND client_ip = '192.0.2.3'",
        )
        .fetch_all(&pool)
        .await
        .expect("audit");
        let counted: u64 = rows
            .iter()
            .filter_map(|(d,)| d.as_deref()?.split(' ').next()?.parse::<u64>().ok())
            .sum();
        rows.len() <= 2 && counted == 21
    })
    .await;
    let (failures, limited_ips): (i64, Vec<Option<String>>) = (
        sqlx::query_scalar("SELECT count(*) FROM audit_sessions WHERE event = 'login_failed'")
            .fetch_one(&pool)
            .await
            .expect("audit"),
        sqlx::query_scalar(
            "SELECT DISTINCT client_ip FROM audit_sessions WHERE event = 'login_rate_limited' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .expect("audit"),
    );
    assert_eq!(failures, 3 + 6 + 8);
    assert_eq!(
        limited_ips,
        [Some("192.0.2.1".to_string()), Some("192.0.2.3".to_string())]
    );
}

#[tokio::test]
async fn password_change_and_disabling_revoke_tokens() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let [admin, operator, viewer] = super::tokens(&api).await;
    let body = serde_json::json!({"password": "a-brand-new-pass"});
    assert_eq!(
        call("PUT", &api.url("/users/operator"), Some(&admin), Some(&body))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call("GET", &api.url("/users/me"), Some(&operator), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        http::login(&api.base, "operator", PW).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        http::login(&api.base, "operator", "a-brand-new-pass").await.0,
        StatusCode::OK
    );

    let body = serde_json::json!({"is_active": false});
    assert_eq!(
        call("PUT", &api.url("/users/viewer"), Some(&admin), Some(&body))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call("GET", &api.url("/users/me"), Some(&viewer), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        http::login(&api.base, "viewer", PW).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// (jti, fam) of the refresh token a Set-Cookie carries.
fn refresh_ids(set_cookie: &str) -> (Option<String>, Option<String>) {
    use base64::Engine;
    let pair = cookie_pair(set_cookie);
    let token = pair.split_once('=').map(|(_, t)| t).unwrap_or("");
    let claims: serde_json::Value = token
        .split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let s = |k: &str| claims[k].as_str().map(str::to_string);
    (s("jti"), s("fam"))
}
