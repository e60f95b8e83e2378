//! pgmon-api: the HTTP API over the `pam_stats` store.

pub mod activity;
pub mod app;
pub mod auth;
pub mod cli;
pub mod error;
pub mod history_cache;
pub mod import_original;
pub mod live;
pub mod metrics;
pub mod payload;
pub mod probe_limit;
pub mod remote_pools;
pub mod routes;
pub mod state;
pub mod store_cache;
pub mod web;

pub use cli::{Cli, run};

/// The system log's name for this process.
pub const PROCESS: &str = "api";
