//! pgmon-api: the HTTP API over the `pam_stats` store.

pub mod app;
pub mod auth;
pub mod cli;
pub mod error;
pub mod remote_pools;
pub mod routes;
pub mod state;

pub use cli::{Cli, run};
