//! Every forged-token case of the auth contract, each next to a control token that is accepted.

use super::{MANY_LOGINS, with_users};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pgmon_tests::http::{self, call};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The JWT secret TestEnv writes.
const SECRET: &[u8] = b"test-jwt-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

fn claims(kind: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": "admin", "role": "admin", "iat": now, "exp": now + 600, "jti": uuid::Uuid::new_v4(),
           "kind": kind, "fam": uuid::Uuid::new_v4(), "ver": 0})
}

fn sign(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).expect("sign")
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn status_with(base: &str, token: &str) -> StatusCode {
    call("GET", &format!("{base}/users/me"), Some(token), None)
        .await
        .0
}

#[tokio::test]
async fn forged_tokens_are_rejected() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    let base = &api.base;
    // Control: a token we sign correctly is accepted, so every rejection below is about its one defect.
    assert_eq!(
        status_with(base, &sign(Algorithm::HS256, SECRET, &claims("access"))).await,
        StatusCode::OK
    );

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("access"))
    );
    assert_eq!(
        status_with(base, &none).await,
        StatusCode::UNAUTHORIZED,
        "alg none"
    );
    let hs512 = sign(Algorithm::HS512, SECRET, &claims("access"));
    assert_eq!(status_with(base, &hs512).await, StatusCode::UNAUTHORIZED, "HS512");
    let wrong_key = sign(
        Algorithm::HS256,
        b"another-secret-another-secret-another",
        &claims("access"),
    );
    assert_eq!(
        status_with(base, &wrong_key).await,
        StatusCode::UNAUTHORIZED,
        "wrong key"
    );

    let mut expired = claims("access");
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 120);
    assert_eq!(
        status_with(base, &sign(Algorithm::HS256, SECRET, &expired)).await,
        StatusCode::UNAUTHORIZED,
        "expired"
    );
    let mut no_exp = claims("access");
    no_exp.as_object_mut().expect("object").remove("exp");
    assert_eq!(
        status_with(base, &sign(Algorithm::HS256, SECRET, &no_exp)).await,
        StatusCode::UNAUTHORIZED,
        "exp missing"
    );
    let mut str_exp = claims("access");
    str_exp["exp"] = json!((chrono::Utc::now().timestamp() + 600).to_string());
    assert_eq!(
        status_with(base, &sign(Algorithm::HS256, SECRET, &str_exp)).await,
        StatusCode::UNAUTHORIZED,
        "exp as a string"
    );
    let refresh_as_bearer = sign(Algorithm::HS256, SECRET, &claims("refresh"));
    assert_eq!(
        status_with(base, &refresh_as_bearer).await,
        StatusCode::UNAUTHORIZED,
        "refresh as bearer"
    );

    // A real refresh token as bearer, and a real access token as the refresh cookie.
    let (_, body, cookie) = http::login(base, "admin", super::PW).await;
    let cookie = cookie.expect("refresh cookie");
    let real_refresh = http::cookie_pair(&cookie)
        .trim_start_matches("refresh_token=")
        .to_string();
    assert_eq!(status_with(base, &real_refresh).await, StatusCode::UNAUTHORIZED);
    let access = body["access_token"].as_str().expect("token");
    let resp = http::client()
        .post(format!("{base}/refresh"))
        .header("cookie", format!("refresh_token={access}"))
        .send()
        .await
        .expect("refresh");
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "access token at /refresh"
    );
    let body: Value = resp.json().await.expect("json");
    assert!(body["detail"].is_string(), "401 body is JSON with detail: {body}");
}

#[tokio::test]
async fn malformed_authorization_is_a_json_401() {
    let (_env, api) = with_users(MANY_LOGINS).await;
    for header in ["Bearer", "Bearer not.a.jwt", "Basic YWRtaW46eA==", "Bearer ....."] {
        let resp = http::client()
            .get(api.url("/users/me"))
            .header("authorization", header)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{header}");
        let body: Value = resp.json().await.expect("JSON body");
        assert!(body["detail"].is_string());
    }
}
