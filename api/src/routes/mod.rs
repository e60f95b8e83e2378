//! One `#[OpenApi]` struct per resource; handlers validate, call the store, map errors.

pub mod activity;
pub mod audit;
pub mod auth;
pub mod fleet;
pub mod health;
pub mod history;
pub mod logs;
pub mod servers;
pub mod settings;
pub mod ssh_keys;
pub mod stats;
pub mod users;

/// The original backend's answer to a delete (and pgmon's to other changes without a body).
#[derive(Debug, poem_openapi::Object)]
pub struct Message {
    pub message: String,
}

/// Every API of the service, in the order Swagger UI lists them.
pub fn apis() -> (
    auth::AuthApi,
    users::UsersApi,
    servers::ServersApi,
    ssh_keys::SshKeysApi,
    stats::StatsApi,
    history::HistoryApi,
    activity::ActivityApi,
    fleet::FleetApi,
    audit::AuditApi,
    settings::SettingsApi,
    logs::LogsApi,
    health::HealthApi,
) {
    (
        auth::AuthApi,
        users::UsersApi,
        servers::ServersApi,
        ssh_keys::SshKeysApi,
        stats::StatsApi,
        history::HistoryApi,
        activity::ActivityApi,
        fleet::FleetApi,
        audit::AuditApi,
        settings::SettingsApi,
        logs::LogsApi,
        health::HealthApi,
    )
}
