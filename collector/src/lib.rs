//! pgmon-collector: snapshots every enabled monitored server into the `pam_stats` store on five
//! schedules (stats, sizes, db_info, activity, maintenance).
//!
//! Layout: [`servers`] keeps the list of servers and their back-off, [`families`] holds one module per
//! collected metric family (what it runs on a monitored server), [`tasks`] collects one slot of one
//! task with the families registered for it, [`writer`] buffers and writes snapshots, and
//! [`scheduler`] runs it all as a service.

pub mod families;
pub mod liveness;
pub mod scheduler;
pub mod servers;
pub mod spool;
pub mod tasks;
pub mod writer;

use anyhow::Context as _;
use pgmon_shared::crypto::Crypto;
use pgmon_shared::journal::Journal;
use pgmon_shared::settings::Settings;
use pgmon_shared::{Config, secrets, store};
use sqlx::PgPool;
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

pub use tasks::Task;

/// The system log's name for this process.
pub const PROCESS: &str = "collector";

/// `application_name` of every session the collector opens, on the store and on monitored servers.
pub const APP_NAME: &str = "pgmon-collector";

#[derive(Debug, clap::Parser)]
#[command(
    name = "pgmon-collector",
    version,
    about = "pgmon collector: snapshots monitored servers"
)]
pub struct Cli {
    /// Config file; else $PGMON_CONFIG, else /etc/pgmon/pgmon.toml.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the schedules until SIGTERM (the default).
    Run,
    /// Collect the current slot of one task (or all) now, print a summary and exit.
    Once {
        #[arg(long, value_enum, default_value = "all")]
        task: TaskArg,
        /// Leave the read API's rollups for the next run or maintenance (the benchmark times them apart).
        #[arg(long)]
        skip_rollups: bool,
    },
    /// Apply pending store migrations and exit.
    Migrate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskArg {
    Stats,
    Sizes,
    #[value(name = "db_info")]
    DbInfo,
    Activity,
    Maintenance,
    All,
}

impl TaskArg {
    fn tasks(self) -> Vec<Task> {
        match self {
            TaskArg::Stats => vec![Task::Stats],
            TaskArg::Sizes => vec![Task::Sizes],
            TaskArg::DbInfo => vec![Task::DbInfo],
            TaskArg::Activity => vec![Task::Activity],
            TaskArg::Maintenance => vec![Task::Maintenance],
            // Maintenance first: it creates the partitions the others write into.
            TaskArg::All => vec![
                Task::Maintenance,
                Task::DbInfo,
                Task::Stats,
                Task::Sizes,
                Task::Activity,
            ],
        }
    }
}

/// What every task needs; cheap to share behind an `Arc`.
pub struct Ctx {
    pub cfg: Config,
    pub pool: PgPool,
    pub crypto: Crypto,
    pub instance: Uuid,
    pub writer: Arc<writer::Writer>,
    pub servers: servers::Registry,
    /// Held while rollups are refreshed after a stats slot, so refreshes never pile up.
    pub rollup_lock: tokio::sync::Mutex<()>,
    /// Per task (by [`Task::index`]), the Unix time its current run started, 0 when idle.
    pub busy_since: [std::sync::atomic::AtomicI64; 5],
    /// The statements family's previous snapshots and known texts, per server.
    pub statements: families::statements::State,
    /// Running totals for `/metrics`, sent with each heartbeat.
    pub counters: Counters,
    /// The system log's writer.
    pub journal: Journal,
    /// The effective runtime settings; task loops watch it to reschedule.
    pub settings: tokio::sync::watch::Sender<Settings>,
    /// A `once` run: it collects every server (no affinity) and takes the slot's claims even from
    /// live collectors.
    pub once: bool,
}

impl Ctx {
    fn new(cfg: Config, once: bool) -> anyhow::Result<Self> {
        let pool = store::connect_lazy(&cfg.store, APP_NAME)?;
        // Server passwords are Fernet tokens: the collector needs the same key file as the API.
        let crypto = secrets::load_crypto(&cfg)?;
        let spool_bytes =
            usize::try_from(cfg.collector.spool_max_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let writer = Arc::new(writer::Writer::new(
            cfg.collector.buffer_max_rows,
            spool_bytes,
            cfg.store.call_timeout(),
        ));
        let instance = Uuid::new_v4();
        let journal = Journal::new(PROCESS, Some(instance));
        journal.set_call_timeout(cfg.store.call_timeout());
        let (settings, _) = tokio::sync::watch::channel(Settings::defaults(&cfg));
        Ok(Self {
            cfg,
            pool,
            crypto,
            instance,
            writer,
            servers: servers::Registry::default(),
            rollup_lock: tokio::sync::Mutex::new(()),
            busy_since: Default::default(),
            statements: Default::default(),
            counters: Counters::default(),
            journal,
            settings,
            once,
        })
    }

    /// The effective runtime settings as last read.
    pub fn settings(&self) -> Settings {
        *self.settings.borrow()
    }

    /// Runs one store call with `store.call_timeout_secs` as its deadline (see [`store::deadline`]).
    pub async fn store<T>(&self, call: impl Future<Output = store::Result<T>>) -> store::Result<T> {
        store::deadline(self.cfg.store.call_timeout(), call).await
    }

    /// Takes this process's spool directory and queues what gone collectors left there. Without a
    /// usable directory the collector still runs, its snapshots waiting in memory only: said loudly.
    pub fn open_spool(&self) {
        let root = &self.cfg.collector.spool_dir;
        match spool::Spool::open(root, self.instance) {
            Ok(sp) => {
                let rows = self.writer.attach_spool(sp);
                if rows > 0 {
                    self.journal.log(
                        pgmon_shared::store::system_log::NewEntry::new(
                            pgmon_shared::store::system_log::Level::Info,
                            pgmon_shared::store::system_log::source::SYSTEM,
                            format!("replaying {rows} rows left in the spool by a collector that stopped"),
                        )
                        .details(format!("from {}", root.display())),
                    );
                }
            }
            Err(e) => self.journal.log(
                pgmon_shared::store::system_log::NewEntry::new(
                    pgmon_shared::store::system_log::Level::Error,
                    pgmon_shared::store::system_log::source::SYSTEM,
                    "cannot use the spool directory: unwritten snapshots are kept in memory only",
                )
                .details(format!("collector.spool_dir = {}: {e}", root.display())),
            ),
        }
    }
}

/// This process's running totals (since it started), for pgmon-api's `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Claims taken over from a collector whose heartbeat stopped.
    pub claim_takeovers: std::sync::atomic::AtomicU64,
    /// Per task (by [`Task::index`]): runs, and their milliseconds.
    pub runs: [std::sync::atomic::AtomicU64; 5],
    pub run_ms: [std::sync::atomic::AtomicU64; 5],
}

impl Ctx {
    /// The totals as the heartbeat stores them.
    pub fn counters_json(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let w = self.writer.stats();
        let mut tasks = serde_json::Map::new();
        for t in Task::ALL {
            tasks.insert(
                t.as_str().into(),
                serde_json::json!({
                    "runs": self.counters.runs[t.index()].load(Relaxed),
                    "run_seconds": self.counters.run_ms[t.index()].load(Relaxed) as f64 / 1000.0,
                }),
            );
        }
        serde_json::json!({
            "rows_written": w.written_rows,
            "rows_dropped": w.dropped_rows,
            "rows_pending": w.pending_rows,
            "bytes_pending": w.pending_bytes,
            "bytes_dropped": w.dropped_bytes,
            "claim_takeovers": self.counters.claim_takeovers.load(Relaxed),
            "log_entries_pending": self.journal.pending(),
            "tasks": tasks,
        })
    }
}

/// Re-reads the runtime settings from the store; when it cannot, the last ones read stay in force.
/// Task loops are told when a value changed.
pub async fn load_settings(ctx: &Ctx) -> Settings {
    match ctx
        .store(store::settings::load(&ctx.pool, Settings::defaults(&ctx.cfg)))
        .await
    {
        Ok((s, _)) => {
            ctx.settings.send_if_modified(|cur| {
                let changed = *cur != s;
                if changed {
                    tracing::info!(changes = %s.changes_from(cur), "runtime settings changed");
                }
                *cur = s;
                changed
            });
            s
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the runtime settings; keeping the last ones");
            ctx.settings()
        }
    }
}

/// Runs the command line's command.
pub async fn run(cli: Cli, cfg: Config) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Migrate => {
            let pool = store::connect_lazy(&cfg.store, APP_NAME)?;
            store::migrate(&pool).await.context("migrate")?;
            println!(
                "pgmon-collector: store schema at version {}",
                store::schema_version(&pool).await?
            );
            Ok(())
        }
        Command::Run => scheduler::run(Arc::new(Ctx::new(cfg, false)?)).await,
        Command::Once { task, skip_rollups } => {
            scheduler::once(Arc::new(Ctx::new(cfg, true)?), &task.tasks(), !skip_rollups).await
        }
    }
}
