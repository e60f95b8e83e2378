//! The session audit: what is recorded, filters, paging and counts.

use super::{MANY_LOGINS, PW, with_users};
use pgmon_tests::http::{self, call};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn events(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn records_sessions_and_user_changes_with_filters() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let t0 = chrono::Utc::now();
    assert_eq!(
        http::login(&api.base, "viewer", "not-the-password").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        http::login(&api.base, "mallory", "not-the-password").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, body, cookie) = http::login(&api.base, "admin", PW).await;
    assert!(body["access_token"].is_string());
    let resp = http::client()
        .post(api.url("/refresh"))
        .header("cookie", http::cookie_pair(&cookie.expect("cookie")))
        .header("user-agent", "audit-test/1.0")
        .send()
        .await
        .expect("refresh");
    let admin = resp.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("t")
        .to_string();
    let new = json!({"login": "bob", "password": "bob-password", "role": "viewer", "email": null});
    assert_eq!(
        call("POST", &api.url("/users"), Some(&admin), Some(&new)).await.0,
        StatusCode::OK
    );
    let upd = json!({"role": "operator"});
    assert_eq!(
        call("PUT", &api.url("/users/bob"), Some(&admin), Some(&upd))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call("DELETE", &api.url("/users/bob"), Some(&admin), None).await.0,
        StatusCode::OK
    );
    let viewer = http::token(&api.base, "viewer", PW).await;
    assert_eq!(
        call("POST", &api.url("/logout"), Some(&viewer), None).await.0,
        StatusCode::OK
    );

    let (status, page) = call("GET", &api.url("/audit/sessions"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        events(&page),
        [
            "logout",
            "login_success",
            "user_delete",
            "user_update",
            "user_create",
            "refresh",
            "login_success",
            "login_failed",
            "login_failed"
        ]
    );
    let all = page["items"].as_array().expect("items");
    assert!(all.iter().all(|e| e["ip_address"] == "127.0.0.1"), "{page}");
    let refresh = &all[5];
    assert_eq!(refresh["user_agent"], "audit-test/1.0");
    assert_eq!(refresh["username"], "admin");
    assert!(
        refresh["jti"].as_str().is_some_and(|j| j.len() == 36),
        "{refresh}"
    );
    // A failure records the login that was tried, known or not.
    assert_eq!(all[8]["username"], "viewer");
    assert_eq!(all[7]["username"], "mallory");
    assert_eq!(all[7]["details"], "unknown login");
    // Details are text for people, saying what changed.
    assert_eq!(all[4]["details"], "user bob (viewer)");
    assert_eq!(all[3]["details"], "user bob: role viewer -> operator");
    assert!(!page.to_string().contains("not-the-password"));

    let q = |s: &str| api.url(&format!("/audit/sessions?{s}"));
    let (_, p) = call("GET", &q("event_type=login_failed"), Some(&admin), None).await;
    assert_eq!(p["total"], 2);
    let (_, p) = call(
        "GET",
        &q("username=adm&event_type=login_success"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(events(&p), ["login_success"]);
    // `username` matches part of the login or of the IP, in any case.
    let (_, p) = call("GET", &q("username=MALL"), Some(&admin), None).await;
    assert_eq!(p["total"], 1);
    let (_, p) = call("GET", &q("username=127.0.0"), Some(&admin), None).await;
    assert_eq!(p["total"], 9);
    let (_, p) = call("GET", &q("limit=2&offset=1"), Some(&admin), None).await;
    assert_eq!(events(&p), ["login_success", "user_delete"]);
    assert_eq!(p["total"], 9);
    assert_eq!((p["limit"].clone(), p["offset"].clone()), (json!(2), json!(1)));
    // The original's day filters: date_to includes its whole day.
    let today = t0.format("%Y-%m-%d").to_string();
    let (_, p) = call(
        "GET",
        &q(&format!("date_from={today}&date_to={today}")),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(p["total"], 9);
    let (_, p) = call("GET", &q("date_to=2020-01-01"), Some(&admin), None).await;
    assert_eq!(p["total"], 0);
    for bad in [
        "limit=0",
        "limit=501",
        "offset=-1",
        "limit=ten",
        "date_from=yesterday",
    ] {
        let (status, body) = call("GET", &q(bad), Some(&admin), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(body["detail"].is_string());
    }
    let (status, body) = call("GET", &q("date_from=2026-02-30"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("date_from")),
        "{body}"
    );

    let (status, stats) = call("GET", &api.url("/audit/sessions/stats"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let count = |list: &str, key: &str| {
        stats[list]
            .as_array()
            .expect("list")
            .iter()
            .find(|c| c["key"] == key)
            .map(|c| c["count"].as_i64().unwrap_or(0))
            .unwrap_or(0)
    };
    assert_eq!(count("by_event", "login_failed"), 2);
    assert_eq!(count("by_event", "login_success"), 2);
    // The original's counters.
    assert_eq!(stats["total_events"], 9);
    assert_eq!(stats["logins_today"], 2);
    assert_eq!(stats["unique_users_week"], 2);
    assert_eq!(stats["failed_today"], 2);
    assert_eq!(stats["failed_total"], 2);
    assert_eq!(stats["actions_today"], 3, "user_create, user_update, user_delete");
    assert_eq!(count("by_login", "admin"), 5);
    let days = stats["by_day"].as_array().expect("days");
    assert_eq!(
        days.iter().map(|d| d["count"].as_i64().unwrap_or(0)).sum::<i64>(),
        9
    );
}

/// The client IP of a login as the audit recorded it, newest first.
async fn login_ips(api: &pgmon_tests::Proc) -> Vec<String> {
    let admin = http::token(&api.base, "admin", PW).await;
    let (_, page) = call(
        "GET",
        &api.url("/audit/sessions?event_type=login_success&limit=100"),
        Some(&admin),
        None,
    )
    .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .skip(1) // the login just made to read the audit
        .filter_map(|e| e["ip_address"].as_str().map(str::to_string))
        .collect()
}

async fn login_with(api: &pgmon_tests::Proc, headers: &[(&str, &str)], user: &str) -> StatusCode {
    let mut req = http::client()
        .post(api.url("/token"))
        .form(&[("username", user), ("password", PW)]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("login").status()
}

/// By default no peer is a trusted proxy: a local client (an SSH tunnel, a sidecar) cannot choose
/// its IP with `X-Real-IP` or `X-Forwarded-For`, for the audit or the login limits.
#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_change_nothing() {
    let (_env, api) = with_users("login_attempts_per_minute = 3\nlogin_attempts_per_minute_per_ip = 3").await;
    let forged: [&[(&str, &str)]; 3] = [
        &[("x-real-ip", "203.0.113.7")],
        &[("x-forwarded-for", "198.51.100.4")],
        &[
            ("x-forwarded-for", "198.51.100.5, 127.0.0.1"),
            ("x-real-ip", "203.0.113.8"),
        ],
    ];
    // Three logins, each from a "new" address: the client IP's limit (3) still counts them all.
    for (headers, user) in forged.iter().zip(["admin", "operator", "viewer"]) {
        assert_eq!(login_with(&api, headers, user).await, StatusCode::OK);
    }
    assert_eq!(
        login_with(
            &api,
            &[("x-real-ip", "203.0.113.9"), ("x-forwarded-for", "198.51.100.9")],
            "admin"
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let (_env, api) = with_users(MANY_LOGINS).await;
    for headers in forged {
        assert_eq!(login_with(&api, headers, "admin").await, StatusCode::OK);
    }
    assert_eq!(login_ips(&api).await, ["127.0.0.1"; 3]);
}

/// Behind a trusted proxy, only `api.client_ip_header` names the client: for X-Forwarded-For the
/// right-most address that is not itself a trusted proxy (what the client wrote to the left is
/// ignored), and X-Real-IP is ignored unless it is the configured header.
#[tokio::test]
async fn the_client_ip_comes_from_the_configured_header_of_trusted_proxies() {
    let (_env, api) = with_users(&format!("{MANY_LOGINS}\ntrusted_proxies = [\"127.0.0.0/8\"]")).await;
    for headers in [
        &[("x-real-ip", "203.0.113.7")][..],
        &[("x-forwarded-for", "198.51.100.4, 127.0.0.1")],
        &[
            ("x-forwarded-for", "203.0.113.1, 198.51.100.6"),
            ("x-real-ip", "203.0.113.8"),
        ],
        &[
            ("x-forwarded-for", "203.0.113.2"),
            ("x-forwarded-for", "198.51.100.7"),
        ],
    ] {
        assert_eq!(login_with(&api, headers, "admin").await, StatusCode::OK);
    }
    assert_eq!(
        login_ips(&api).await,
        ["198.51.100.7", "198.51.100.6", "198.51.100.4", "127.0.0.1"]
    );

    let (_env, api) = with_users(&format!(
        "{MANY_LOGINS}\ntrusted_proxies = [\"127.0.0.0/8\"]\nclient_ip_header = \"X-Real-IP\""
    ))
    .await;
    for headers in [
        &[("x-real-ip", "203.0.113.7"), ("x-forwarded-for", "198.51.100.4")][..],
        &[("x-forwarded-for", "198.51.100.5")],
    ] {
        assert_eq!(login_with(&api, headers, "admin").await, StatusCode::OK);
    }
    assert_eq!(login_ips(&api).await, ["127.0.0.1", "203.0.113.7"]);

    // A peer that is not trusted is the client, whatever it sends.
    let (_env, api) = with_users(&format!("{MANY_LOGINS}\ntrusted_proxies = [\"10.9.9.0/24\"]")).await;
    assert_eq!(
        login_with(&api, &[("x-forwarded-for", "198.51.100.4")], "admin").await,
        StatusCode::OK
    );
    assert_eq!(login_ips(&api).await, ["127.0.0.1"]);
}
