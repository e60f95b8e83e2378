//! Health, pools, docs, CORS.

use super::{MANY_LOGINS, tokens, with_users};
use pgmon_tests::http::{self, call};
use pgmon_tests::wait_for;
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test]
async fn health_degrades_when_the_store_goes_and_recovers_when_it_returns() {
    let (env, api) = with_users(MANY_LOGINS).await;
    let (status, body) = call("GET", &api.url("/api/health"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"]["reachable"], true);
    assert_eq!(
        body["store"]["schema_version"],
        body["store"]["expected_schema_version"]
    );

    // Make the store refuse connections and drop the API's existing ones.
    let admin = sqlx::PgPool::connect(&pgmon_tests::pg_admin_url())
        .await
        .expect("admin");
    let db = &env.db.name;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {db} ALLOW_CONNECTIONS false"
    )))
    .execute(&admin)
    .await
    .expect("alter");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(db)
        .execute(&admin)
        .await
        .expect("terminate");
    // The store's part of the answer is at most a second old.
    wait_for(
        "health to see the store gone",
        Duration::from_secs(10),
        || async {
            call("GET", &api.url("/api/health"), None, None).await.0 == StatusCode::SERVICE_UNAVAILABLE
        },
    )
    .await;
    let (status, body) = call("GET", &api.url("/api/health"), None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["store"]["reachable"], false);
    assert!(
        !body.to_string().contains("pgmon_test"),
        "no store details leak: {body}"
    );

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {db} ALLOW_CONNECTIONS true"
    )))
    .execute(&admin)
    .await
    .expect("alter");
    wait_for(
        "the API to recover by itself",
        Duration::from_secs(10),
        || async { call("GET", &api.url("/api/health"), None, None).await.0 == StatusCode::OK },
    )
    .await;
}

#[tokio::test]
async fn pools_status_reports_the_store_pool() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let [_, _, viewer] = tokens(&api).await;
    let (status, body) = call("GET", &api.url("/api/pools/status"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["store"]["max"], 10);
    assert!(body["store"]["size"].as_u64().is_some_and(|s| s >= 1), "{body}");
}

#[tokio::test]
async fn swagger_ui_and_spec_are_served() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let resp = http::client().get(api.url("/docs")).send().await.expect("docs");
    let status = resp.status();
    let html = resp.text().await.expect("html");
    assert!(status.is_success() || status.is_redirection(), "{status}");
    if status.is_success() {
        assert!(html.to_lowercase().contains("swagger"), "{html}");
    }
    let spec: serde_json::Value = http::client()
        .get(api.url("/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    let schemes = &spec["components"]["securitySchemes"];
    let (_, scheme) = schemes
        .as_object()
        .and_then(|m| m.iter().next())
        .expect("a security scheme");
    assert_eq!(scheme["type"], "oauth2");
    assert_eq!(scheme["flows"]["password"]["tokenUrl"], "/token");
    for path in [
        "/token",
        "/refresh",
        "/logout",
        "/users",
        "/users/me",
        "/audit/sessions",
        "/health",
        "/servers/{name}/history",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    // One document for both layouts: every path under /api and bare.
    let servers: Vec<&str> = spec["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter_map(|s| s["url"].as_str())
        .collect();
    assert_eq!(servers, ["/api", "/"]);
    // Bodies that refuse unknown fields say so.
    assert_eq!(
        spec["components"]["schemas"]["ServerIn"]["additionalProperties"],
        false
    );
    assert_eq!(
        spec["components"]["schemas"]["UserCreate"]["additionalProperties"],
        false
    );
    let api_spec: serde_json::Value = http::client()
        .get(api.url("/api/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    assert_eq!(api_spec, spec);
}

/// A method a path does not serve: 405 with the methods it does serve in `Allow` (RFC 9110).
#[tokio::test]
async fn undeclared_methods_get_405_with_allow() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    for (method, path, allow) in [
        ("DELETE", "/api/health", "GET"),
        ("PATCH", "/users/me", "GET"),
        ("POST", "/api/users/someone", "DELETE, GET, PUT"),
    ] {
        let resp = http::client()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                api.url(path),
            )
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(
            resp.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn cors_only_for_allowed_origins() {
    let extra = format!("{MANY_LOGINS}\nallowed_origins = [\"https://dash.example.net\"]");
    let (_env, api) = with_users(&extra).await;
    let preflight = |origin: &'static str| {
        http::client()
            .request(reqwest::Method::OPTIONS, api.url("/users/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://dash.example.net").await.expect("preflight");
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://dash.example.net")
    );
    let other = preflight("https://evil.example.com").await.expect("preflight");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
