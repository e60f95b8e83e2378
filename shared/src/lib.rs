//! Code shared by `pgmon-api` and `pgmon-collector`: configuration, secrets, the `pam_stats` store,
//! connections to monitored servers and SSH.

pub mod config;
pub mod crypto;
pub mod journal;
pub mod redact;
pub mod remote;
pub mod remote_sql;
pub mod secrets;
pub mod settings;
pub mod ssh;
pub mod stats;
pub mod store;
pub mod targets;
pub mod telemetry;
pub mod validate;
pub mod version;

pub use config::Config;
