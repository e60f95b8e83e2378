//! The `pgmon-api` command line.

use crate::app;
use anyhow::{Context, bail};
use pgmon_shared::validate::{self, Role};
use pgmon_shared::{Config, secrets, store};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

#[derive(Debug, clap::Parser)]
#[command(name = "pgmon-api", version, about = "pgmon HTTP API")]
pub struct Cli {
    /// Config file; else $PGMON_CONFIG, else /etc/pgmon/pgmon.toml.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending store migrations and exit.
    Migrate,
    /// Create the missing secret files (mode 0600); never overwrites.
    InitSecrets,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Print the OpenAPI document as JSON.
    Openapi,
    /// Import an original backend's deployment: its servers, users and SSH keys, and, with
    /// --history-dsn, its collected history. A second run changes nothing.
    ImportOriginal {
        /// The original's config directory (servers.json, users.json, ssh_keys/, encryption_key.key).
        #[arg(long, default_value = "/etc/pg_activity_monitor")]
        from: PathBuf,
        /// The original's pam_stats store (postgres://...), to import its statistics and db_info.
        #[arg(long)]
        history_dsn: Option<String>,
        /// Check and count everything, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from stdin when piped, else generated and printed once.
    Add {
        login: String,
        #[arg(long)]
        role: String,
    },
    /// Set a user's password from stdin; revokes the user's tokens.
    Passwd { login: String },
}

impl Cli {
    /// Whether the command runs without a config file.
    pub fn needs_config(&self) -> bool {
        !matches!(self.command, Some(Command::Openapi))
    }
}

pub async fn run(cli: Cli, cfg: Option<Config>) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        println!("{}", app::openapi_document());
        return Ok(());
    }
    let cfg = cfg.context("no configuration")?;
    match command {
        Command::Serve => app::serve(cfg).await,
        Command::Migrate => {
            let pool = store::connect_lazy(&cfg.store, "pgmon-api")?;
            store::migrate(&pool).await?;
            println!(
                "store migrated to version {}",
                store::schema_version(&pool).await?
            );
            Ok(())
        }
        Command::InitSecrets => {
            let created = secrets::init_secrets(&cfg)?;
            if created.is_empty() {
                println!("secret files already exist; nothing changed");
            }
            for f in created {
                println!("created {f}");
            }
            Ok(())
        }
        Command::User(cmd) => user(cmd, cfg).await,
        Command::ImportOriginal {
            from,
            history_dsn,
            dry_run,
        } => {
            let args = crate::import_original::Args {
                from,
                history_dsn,
                dry_run,
            };
            let report = crate::import_original::run(&cfg, &args).await?;
            if dry_run {
                println!("dry run: nothing was written");
            }
            for line in report.lines(dry_run) {
                println!("{line}");
            }
            Ok(())
        }
        Command::Openapi => Ok(()),
    }
}

fn read_stdin_password() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the password from stdin")?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

fn generate_password() -> String {
    use base64::Engine;
    let mut b = [0u8; 15];
    rand::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

async fn user(cmd: UserCommand, cfg: Config) -> anyhow::Result<()> {
    let pool = store::connect_lazy(&cfg.store, "pgmon-api")?;
    store::migrate(&pool).await?;
    let hasher = crate::auth::password::Hasher::new(cfg.api.bcrypt_cost)?;
    match cmd {
        UserCommand::Add { login, role } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            if !validate::is_valid_login(&login) {
                bail!("login must match ^[A-Za-z0-9_.@-]{{1,64}}$");
            }
            // A terminal or an empty stdin means "generate one"; a pipe supplies the password.
            let piped = if std::io::stdin().is_terminal() {
                String::new()
            } else {
                read_stdin_password()?
            };
            let (password, generated) = if piped.is_empty() {
                (generate_password(), true)
            } else {
                (piped, false)
            };
            validate::check_password(&password).map_err(anyhow::Error::msg)?;
            let hash = hasher.hash(password.clone()).await?;
            store::users::create(&pool, &login, &hash, role, None).await?;
            if generated {
                println!(
                    "created {} {login}; password (shown once): {password}",
                    role.as_str()
                );
            } else {
                println!("created {} {login}", role.as_str());
            }
        }
        UserCommand::Passwd { login } => {
            let password = read_stdin_password()?;
            validate::check_password(&password).map_err(anyhow::Error::msg)?;
            let hash = hasher.hash(password).await?;
            let change = store::users::UserChange {
                password_hash: Some(hash),
                ..Default::default()
            };
            store::users::update(&pool, &login, change)
                .await
                .map_err(|e| match e {
                    store::StoreError::NotFound => anyhow::anyhow!("user {login} not found"),
                    e => e.into(),
                })?;
            println!("password of {login} changed; its tokens are revoked");
        }
    }
    Ok(())
}
