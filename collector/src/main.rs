use clap::Parser;
use pgmon_collector::Cli;
use pgmon_shared::{Config, telemetry};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let cfg = match Config::load(&Config::resolve_path(cli.config.as_deref())) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("pgmon-collector: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init(&cfg.log);
    // Before anything connects: every connection of the process is checked against it.
    pgmon_shared::targets::install(cfg.servers.allowed());
    if let Err(e) = pgmon_collector::run(cli, cfg).await {
        eprintln!("pgmon-collector: {e:#}");
        std::process::exit(1);
    }
}
