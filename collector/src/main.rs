use pgmon_shared::{Config, telemetry};

#[tokio::main]
async fn main() {
    let cfg = match Config::load(&Config::resolve_path(None)) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("pgmon-collector: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init(&cfg.log);
    if let Err(e) = pgmon_collector::run(cfg).await {
        eprintln!("pgmon-collector: {e:#}");
        std::process::exit(1);
    }
}
