//! Small HTTP helpers over reqwest for the API tests.

use reqwest::StatusCode;
use serde_json::Value;

/// A client that does not follow redirects and keeps no cookies unless asked.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// Logs in through `/token`; returns (status, body, Set-Cookie header of the refresh token).
pub async fn login(base: &str, user: &str, password: &str) -> (StatusCode, Value, Option<String>) {
    let resp = client()
        .post(format!("{base}/token"))
        .form(&[
            ("username", user),
            ("password", password),
            ("grant_type", "password"),
        ])
        .send()
        .await
        .expect("POST /token");
    let status = resp.status();
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("refresh_token="))
        .map(str::to_string);
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, cookie)
}

/// Logs in and returns the access token, panicking on failure.
pub async fn token(base: &str, user: &str, password: &str) -> String {
    let (status, body, _) = login(base, user, password).await;
    assert_eq!(status, StatusCode::OK, "login of {user} failed: {body}");
    body["access_token"].as_str().expect("access_token").to_string()
}

/// The `refresh_token=...` pair from a Set-Cookie header, as a Cookie header value.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or("").to_string()
}

/// Sends a request with an optional bearer token and JSON body; returns (status, JSON body or Null).
pub async fn call(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (StatusCode, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(m, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
