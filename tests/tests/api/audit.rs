//! The session audit: what is recorded, filters, paging and counts.

use super::{MANY_LOGINS, PW, with_users};
use pgmon_tests::http::{self, call};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn events(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
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
    let new = json!({"login": "bob", "password": "bob-password", "role": "viewer"});
    assert_eq!(
        call("POST", &api.url("/users"), Some(&admin), Some(&new)).await.0,
        StatusCode::CREATED
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
        StatusCode::NO_CONTENT
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
            "user_deleted",
            "user_updated",
            "user_created",
            "refresh",
            "login_success",
            "login_failure",
            "login_failure"
        ]
    );
    let all = page["events"].as_array().expect("events");
    assert!(all.iter().all(|e| e["client_ip"] == "127.0.0.1"), "{page}");
    let refresh = &all[5];
    assert_eq!(refresh["user_agent"], "audit-test/1.0");
    assert_eq!(refresh["login"], "admin");
    // A failure records the login that was tried, known or not.
    assert_eq!(all[8]["login"], "viewer");
    assert_eq!(all[7]["login"], "mallory");
    assert_eq!(all[2]["details"]["target"], "bob");
    assert!(!page.to_string().contains("not-the-password"));

    let q = |s: &str| api.url(&format!("/audit/sessions?{s}"));
    let (_, p) = call("GET", &q("event=login_failure"), Some(&admin), None).await;
    assert_eq!(p["total"], 2);
    let (_, p) = call("GET", &q("login=admin&event=login_success"), Some(&admin), None).await;
    assert_eq!(events(&p), ["login_success"]);
    let (_, p) = call("GET", &q("limit=2&offset=1"), Some(&admin), None).await;
    assert_eq!(events(&p), ["login_success", "user_deleted"]);
    assert_eq!(p["total"], 9);
    let from = urlencode(&t0.to_rfc3339());
    let (_, p) = call("GET", &q(&format!("from={from}")), Some(&admin), None).await;
    assert_eq!(p["total"], 9);
    let (_, p) = call("GET", &q(&format!("to={from}")), Some(&admin), None).await;
    assert_eq!(p["total"], 0);
    for bad in [
        "limit=0",
        "limit=501",
        "offset=-1",
        "from=yesterday",
        "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
    ] {
        let (status, body) = call("GET", &q(bad), Some(&admin), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["detail"].is_string());
    }

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
    assert_eq!(count("by_event", "login_failure"), 2);
    assert_eq!(count("by_event", "login_success"), 2);
    assert_eq!(count("by_login", "admin"), 5);
    let days = stats["by_day"].as_array().expect("days");
    assert_eq!(
        days.iter().map(|d| d["count"].as_i64().unwrap_or(0)).sum::<i64>(),
        9
    );
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
