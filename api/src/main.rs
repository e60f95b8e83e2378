use clap::Parser;
use pgmon_api::Cli;
use pgmon_shared::{Config, telemetry};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let cfg = if cli.needs_config() {
        match Config::load(&Config::resolve_path(cli.config.as_deref())) {
            Ok(cfg) => {
                telemetry::init(&cfg.log);
                // Before anything connects: every connection of the process is checked against it.
                pgmon_shared::targets::install(cfg.servers.allowed());
                Some(cfg)
            }
            Err(e) => {
                eprintln!("pgmon-api: {e}");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    if let Err(e) = pgmon_api::run(cli, cfg).await {
        eprintln!("pgmon-api: {e:#}");
        std::process::exit(1);
    }
}
