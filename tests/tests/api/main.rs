//! End-to-end tests of pgmon-api's core: auth, users, audit, health, docs, CLI and config.
//! One test binary (modules below) keeps link times down.

mod anonymous;
mod audit;
mod auth;
mod cli;
mod health;
mod settings;
mod smoke;
mod tokens;
mod users;

use pgmon_tests::{Proc, TestEnv, http};

/// Password of every user created by [`with_users`].
pub const PW: &str = "correct-horse-1";

/// A running API with one user per role: admin, operator, viewer (password [`PW`]).
pub async fn with_users(api_extra: &str) -> (TestEnv, Proc) {
    let env = TestEnv::new(api_extra, "").await;
    for (login, role) in [("admin", "admin"), ("operator", "operator"), ("viewer", "viewer")] {
        env.add_user(login, role, PW);
    }
    let api = env.spawn_api().await;
    (env, api)
}

/// Access tokens of admin, operator and viewer.
pub async fn tokens(api: &Proc) -> [String; 3] {
    [
        http::token(&api.base, "admin", PW).await,
        http::token(&api.base, "operator", PW).await,
        http::token(&api.base, "viewer", PW).await,
    ]
}

/// Generous login throttle for tests that log in often from 127.0.0.1.
pub const MANY_LOGINS: &str = "login_attempts_per_minute = 10000";
