//! pgmon-collector: snapshots every monitored server into the `pam_stats` store on schedules.

use pgmon_shared::{Config, store};

/// Connects to the store and applies migrations.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let pool = store::connect_lazy(&cfg.store, "pgmon-collector")?;
    store::migrate(&pool).await?;
    tracing::info!("store migrated");
    Ok(())
}
