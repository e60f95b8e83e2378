use pgmon_tests::{TestEnv, http};
use reqwest::StatusCode;

#[tokio::test]
async fn admin_logs_in_and_reads_itself() {
    let env = TestEnv::new("login_attempts_per_minute = 1000", "").await;
    env.add_user("admin", "admin", "admin-password-1");
    let api = env.spawn_api().await;
    let token = http::token(&api.base, "admin", "admin-password-1").await;
    let (status, me) = http::call("GET", &api.url("/users/me"), Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["login"], "admin");
    assert_eq!(me["role"], "admin");
}
