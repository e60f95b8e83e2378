//! One `#[OpenApi]` struct per resource; handlers validate, call the store, map errors.

pub mod audit;
pub mod auth;
pub mod health;
pub mod users;

/// Every API of the service, in the order Swagger UI lists them.
pub fn apis() -> (auth::AuthApi, users::UsersApi, audit::AuditApi, health::HealthApi) {
    (auth::AuthApi, users::UsersApi, audit::AuditApi, health::HealthApi)
}
