//! Users and roles: CRUD, validation, the last-admin rule and the role matrix.

use super::{MANY_LOGINS, tokens, with_users};
use pgmon_tests::http::{self, call};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn role_matrix() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let [admin, operator, viewer] = tokens(&api).await;
    let new_user = json!({"login": "matrix-{}", "password": "long-enough-1", "role": "viewer"});
    // (method, path, body, [anonymous, viewer, operator, admin])
    let cases: Vec<(&str, &str, Option<Value>, [u16; 4])> = vec![
        ("GET", "/users", None, [401, 403, 403, 200]),
        ("POST", "/users", Some(new_user.clone()), [401, 403, 403, 200]),
        ("GET", "/users/me", None, [401, 200, 200, 200]),
        ("GET", "/users/viewer", None, [401, 403, 403, 200]),
        (
            "PUT",
            "/users/viewer",
            Some(json!({"role": "viewer"})),
            [401, 403, 403, 200],
        ),
        ("DELETE", "/users/victim", None, [401, 403, 403, 200]),
        ("GET", "/audit/sessions", None, [401, 403, 403, 200]),
        ("GET", "/audit/sessions/stats", None, [401, 403, 403, 200]),
        ("GET", "/api/pools/status", None, [401, 200, 200, 200]),
        ("GET", "/api/health", None, [200, 200, 200, 200]),
    ];
    let callers = [
        None,
        Some(viewer.as_str()),
        Some(operator.as_str()),
        Some(admin.as_str()),
    ];
    for (method, path, body, expected) in cases {
        for (i, (caller, want)) in callers.iter().zip(expected).enumerate() {
            if path == "/users/victim" {
                // Something for each allowed DELETE to delete.
                let b = json!({"login": "victim", "password": "long-enough-1", "role": "viewer"});
                let _ = call("POST", &api.url("/users"), Some(&admin), Some(&b)).await;
            }
            let body = body.as_ref().map(|b| {
                let mut b = b.clone();
                if let Some(l) = b.get("login").and_then(Value::as_str) {
                    b["login"] = json!(l.replace("{}", &i.to_string()));
                }
                b
            });
            let (status, resp) = call(method, &api.url(path), *caller, body.as_ref()).await;
            assert_eq!(status.as_u16(), want, "{method} {path} as caller #{i}: {resp}");
            if status.is_client_error() {
                assert!(resp["detail"].is_string(), "{method} {path}: error body {resp}");
            }
        }
    }
    // Logout last: it revokes the token it is called with. Without one it still answers 200.
    for (caller, want) in callers.iter().zip([200, 200, 200, 200]) {
        assert_eq!(
            call("POST", &api.url("/logout"), *caller, None).await.0.as_u16(),
            want
        );
    }
}

#[tokio::test]
async fn crud_and_responses_never_carry_hashes() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let [admin, ..] = tokens(&api).await;
    let body = json!({"login": "alice@example.org", "password": "alice-password", "role": "operator",
                      "email": "alice@example.org"});
    let (status, created) = call("POST", &api.url("/users"), Some(&admin), Some(&body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created["login"], "alice@example.org");
    assert_eq!(created["role"], "operator");
    assert_eq!(created["is_active"], true);
    assert_eq!(created["email"], "alice@example.org");
    assert!(created["created_at"].is_string());
    assert!(created["last_login"].is_null());
    assert_eq!(
        call("POST", &api.url("/users"), Some(&admin), Some(&body))
            .await
            .0,
        StatusCode::CONFLICT
    );

    let alice = http::token(&api.base, "alice@example.org", "alice-password").await;
    let (_, me) = call("GET", &api.url("/users/me"), Some(&alice), None).await;
    assert!(me["last_login"].is_string());

    let (_, list) = call("GET", &api.url("/users"), Some(&admin), None).await;
    let text = list.to_string();
    assert!(!text.contains("$2"), "a bcrypt hash leaked: {text}");
    assert!(!text.contains("password"), "{text}");
    let logins: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|u| u["login"].as_str())
        .collect();
    assert_eq!(logins, ["admin", "alice@example.org", "operator", "viewer"]);

    let (status, updated) = call(
        "PUT",
        &api.url("/users/alice@example.org"),
        Some(&admin),
        Some(&json!({"role": "viewer", "email": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["role"], "viewer");
    assert_eq!(updated["email"], "alice@example.org", "null keeps the address");
    let (_, updated) = call(
        "PUT",
        &api.url("/users/alice@example.org"),
        Some(&admin),
        Some(&json!({"email": ""})),
    )
    .await;
    assert_eq!(updated["email"], Value::Null, "\"\" removes it");
    // A role change revokes the tokens issued under the old role.
    assert_eq!(
        call("GET", &api.url("/users/me"), Some(&alice), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (status, gone) = call("DELETE", &api.url("/users/alice@example.org"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(gone["message"].is_string(), "{gone}");
    assert_eq!(
        call("GET", &api.url("/users/alice@example.org"), Some(&admin), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call("DELETE", &api.url("/users/alice@example.org"), Some(&admin), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            "PUT",
            &api.url("/users/ghost"),
            Some(&admin),
            Some(&json!({"is_active": false}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_input_is_a_4xx_with_a_reason() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let [admin, ..] = tokens(&api).await;
    let cases = [
        json!({"login": "shorty", "password": "7-bytes", "role": "viewer"}),
        json!({"login": "longy", "password": "x".repeat(1025), "role": "viewer"}),
        json!({"login": "bad login", "password": "long-enough-1", "role": "viewer"}),
        json!({"login": "x".repeat(65), "password": "long-enough-1", "role": "viewer"}),
        json!({"login": "ok", "password": "long-enough-1", "role": "superuser"}),
        json!({"login": "ok", "password": "long-enough-1", "role": "viewer", "is_admin": true}),
        json!({"login": "ok", "role": "viewer"}),
    ];
    for body in cases {
        let (status, resp) = call("POST", &api.url("/users"), Some(&admin), Some(&body)).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {status} {resp}"
        );
        assert!(resp["detail"].as_str().is_some_and(|d| !d.is_empty()), "{resp}");
    }
    // A password past bcrypt's 72 bytes counts to its last character: one that differs only after
    // byte 72 is refused.
    let long = "é".repeat(60);
    let body = json!({"login": "utf8", "password": long, "role": "viewer"});
    assert_eq!(
        call("POST", &api.url("/users"), Some(&admin), Some(&body))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(http::login(&api.base, "utf8", &long).await.0, StatusCode::OK);
    let almost = format!("{}x", &long[..118]);
    assert_eq!(
        http::login(&api.base, "utf8", &almost).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A field nobody knows: 422 naming it.
    let body = json!({"login": "x1", "password": "long-enough-1", "role": "viewer", "colour": "red"});
    let (status, resp) = call("POST", &api.url("/users"), Some(&admin), Some(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        resp["detail"].as_str().is_some_and(|d| d.contains("colour")),
        "{resp}"
    );

    let resp = http::client()
        .post(api.url("/users"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.expect("json error body");
    assert!(body["detail"].is_string());
    let (status, _) = call(
        "PUT",
        &api.url("/users/viewer"),
        Some(&admin),
        Some(&json!({"password": "short"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        "PUT",
        &api.url("/users/viewer"),
        Some(&admin),
        Some(&json!({"password": "with\u{0}nul-1"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call("GET", &api.url("/no/such/route"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_last_enabled_admin_stays() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let [admin, ..] = tokens(&api).await;
    // Nobody deletes their own account (the original's rule too).
    let (status, body) = call("DELETE", &api.url("/users/admin"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("own")));
    for change in [json!({"is_active": false}), json!({"role": "operator"})] {
        assert_eq!(
            call("PUT", &api.url("/users/admin"), Some(&admin), Some(&change))
                .await
                .0,
            StatusCode::CONFLICT
        );
    }
    // With a second admin, the first may go.
    let body = json!({"login": "admin2", "password": "long-enough-2", "role": "admin"});
    assert_eq!(
        call("POST", &api.url("/users"), Some(&admin), Some(&body))
            .await
            .0,
        StatusCode::OK
    );
    let admin2 = http::token(&api.base, "admin2", "long-enough-2").await;
    assert_eq!(
        call(
            "PUT",
            &api.url("/users/admin"),
            Some(&admin2),
            Some(&json!({"role": "viewer"}))
        )
        .await
        .0,
        StatusCode::OK
    );
    // admin2 is now the last one.
    assert_eq!(
        call(
            "PUT",
            &api.url("/users/admin2"),
            Some(&admin2),
            Some(&json!({"is_active": false}))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    // Two concurrent demotions of two admins cannot both succeed.
    let body = json!({"login": "admin3", "password": "long-enough-3", "role": "admin"});
    assert_eq!(
        call("POST", &api.url("/users"), Some(&admin2), Some(&body))
            .await
            .0,
        StatusCode::OK
    );
    let demote = json!({"role": "operator"});
    let (u2, u3) = (api.url("/users/admin2"), api.url("/users/admin3"));
    let (a, b) = tokio::join!(
        call("PUT", &u2, Some(&admin2), Some(&demote)),
        call("PUT", &u3, Some(&admin2), Some(&demote)),
    );
    let mut statuses = [a.0.as_u16(), b.0.as_u16()];
    statuses.sort_unstable();
    // admin2's token dies with its demotion, so the other call is either a 409 or a 401; never both 200.
    assert_ne!(statuses, [200, 200]);
    assert!(statuses.contains(&200), "{statuses:?}");
}
