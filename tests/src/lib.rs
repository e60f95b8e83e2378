//! Harness for the end-to-end tests: a fresh store database per test, a config and secret files in a
//! temporary directory, and the real `pgmon-api` / `pgmon-collector` binaries on random ports.
//!
//! PostgreSQL is the real server on 127.0.0.1:5432 (`PGMON_TEST_PG_URL` overrides the admin URL);
//! `scripts/test.sh` makes sure it runs and builds the binaries before the tests.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod http;
pub mod monitored;
pub mod relay;
pub mod sshd;
pub mod tls;

/// Admin URL of the PostgreSQL server the tests create databases on.
pub fn pg_admin_url() -> String {
    std::env::var("PGMON_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Directory holding the workspace's built binaries: `$PGMON_BIN_DIR`, else the directory of the running
/// executable (a bench binary in target/release), or its parent for test executables in target/*/deps.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGMON_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable dir");
    if dir.ends_with("deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A throwaway database, dropped when the value is dropped (unless made with [`TestDb::kept`]).
pub struct TestDb {
    pub name: String,
    pub url: String,
    keep: bool,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("pgmon_test_{}", uuid::Uuid::new_v4().simple());
        Self::create(name, false).await
    }

    /// A database that outlives the process, created only if missing: benchmarks reuse their
    /// generated data between runs.
    pub async fn kept(name: &str) -> Self {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "database name {name:?}: use lowercase letters, digits and _"
        );
        Self::create(name.to_string(), true).await
    }

    async fn create(name: String, keep: bool) -> Self {
        let admin = sqlx::PgPool::connect(&pg_admin_url())
            .await
            .expect("connect to the test PostgreSQL");
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&admin)
            .await
            .expect("look up database");
        if !(keep && exists) {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .expect("create test database");
        }
        admin.close().await;
        let base = pg_admin_url();
        let url = match base.rsplit_once('/') {
            Some((prefix, _)) => format!("{prefix}/{name}"),
            None => panic!("bad PGMON_TEST_PG_URL"),
        };
        Self { name, url, keep }
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url)
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let name = self.name.clone();
        // Best effort; scripts/test.sh also drops leftovers of earlier runs.
        let _ = Command::new("psql")
            .args([
                &pg_admin_url(),
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A config file and secret files in a temporary directory, pointing at a fresh [`TestDb`].
pub struct TestEnv {
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    /// Extra TOML appended to the generated config (later keys of a section win: put whole sections).
    pub config_path: PathBuf,
    pub fernet_key: String,
}

impl TestEnv {
    /// `extra` is appended to the config; the `[api]` section is generated from `api_extra`.
    pub async fn new(api_extra: &str, extra: &str) -> Self {
        Self::with_db(TestDb::new().await, api_extra, extra)
    }

    pub fn with_db(db: TestDb, api_extra: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let fernet_key = "Ar3CnqBqrMHX3yJfGCu7LRNn2Bz5VtiFYJ3Pv0pUkDY=".to_string();
        let key_path = dir.path().join("encryption_key.key");
        let jwt_path = dir.path().join("jwt_secret");
        write_private(&key_path, &format!("{fernet_key}\n"));
        write_private(
            &jwt_path,
            "test-jwt-secret-0123456789-abcdefghijklmnopqrstuvwxyz\n",
        );
        let config_path = dir.path().join("pgmon.toml");
        let cookies = if api_extra.contains("secure_cookies") {
            ""
        } else {
            "secure_cookies = false"
        };
        let text = format!(
            "[store]\nurl = \"{url}\"\nmax_connections = 10\n\n[api]\nlisten = \"127.0.0.1:0\"\n{cookies}\nbcrypt_cost = 4\n{api_extra}\n\n[secrets]\njwt_secret_file = \"{jwt}\"\nencryption_key_file = \"{key}\"\n\n[log]\nlevel = \"info\"\n\n{extra}\n",
            url = db.url,
            jwt = jwt_path.display(),
            key = key_path.display(),
        );
        std::fs::write(&config_path, text).expect("write config");
        Self {
            db,
            dir,
            config_path,
            fernet_key,
        }
    }

    /// Runs `pgmon-api --config <cfg> <args>` with `stdin` piped in; returns (status, stdout, stderr).
    pub fn api_cli(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        run_cli(&bin("pgmon-api"), &self.config_path, args, stdin)
    }

    /// Creates a user through the CLI (password from stdin).
    pub fn add_user(&self, login: &str, role: &str, password: &str) {
        let (code, out, err) = self.api_cli(&["user", "add", login, "--role", role], Some(password));
        assert_eq!(code, 0, "user add failed: {out} {err}");
    }

    pub async fn spawn_api(&self) -> Proc {
        Proc::spawn(
            &bin("pgmon-api"),
            &self.config_path,
            &["serve"],
            "pgmon-api listening on ",
        )
        .await
    }
}

pub fn write_private(path: &Path, content: &str) {
    std::fs::write(path, content).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The collector's spool directory for a config: `spool/` beside it, so every test has its own
/// (never the system's `/var/lib/pgmon/spool`, where one test's leftovers would be replayed into
/// another test's store) and a restarted collector of the same test finds what the previous one left.
pub fn spool_dir(config: &Path) -> PathBuf {
    config.parent().unwrap_or(Path::new("/tmp")).join("spool")
}

pub fn run_cli(bin: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(config).args(args);
    cmd.env_remove("PGMON_CONFIG")
        .env_remove("LOCAL_DB_DSN")
        .env_remove("SECRET_KEY")
        .env("PGMON_COLLECTOR__SPOOL_DIR", spool_dir(config));
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cli");
    if let Some(input) = stdin
        && let Some(mut s) = child.stdin.take()
    {
        let _ = s.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("cli output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running binary, killed when dropped. Its stderr (logs) is kept in a file for assertions.
pub struct Proc {
    pub child: Child,
    /// `http://127.0.0.1:PORT` for the API; empty for processes that announce no address.
    pub base: String,
    pub log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Proc {
    /// Spawns `bin --config cfg args` and waits (up to 60 s) for a stdout line starting with `ready`;
    /// the rest of that line becomes `base`.
    pub async fn spawn(bin: &Path, config: &Path, args: &[&str], ready: &str) -> Self {
        Self::spawn_env(bin, config, args, ready, &[]).await
    }

    pub async fn spawn_env(
        bin: &Path,
        config: &Path,
        args: &[&str],
        ready: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let log_dir = tempfile::tempdir().expect("tempdir");
        let log_path = log_dir.path().join("stderr.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(config).args(args);
        cmd.env_remove("PGMON_CONFIG")
            .env_remove("LOCAL_DB_DSN")
            .env_remove("SECRET_KEY")
            .env("PGMON_COLLECTOR__SPOOL_DIR", spool_dir(config));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().expect("spawn binary");
        let stdout = child.stdout.take().expect("stdout");
        let ready = ready.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            while let Some(Ok(line)) = lines.next() {
                if !sent && let Some(rest) = line.strip_prefix(&ready) {
                    let _ = tx.send(rest.trim().to_string());
                    sent = true;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            if let Ok(b) = rx.try_recv() {
                break b;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "{} exited with {status} before it was ready: {log}",
                    bin.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} was not ready within 60 s",
                bin.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self {
            child,
            base,
            log_path,
            _log_dir: log_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("kill")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A running API with one user per role: `admin`, `op` (operator) and `view` (viewer), each with its
/// access token. Passwords: `admin-password-1`, `operator-password-1`, `viewer-password-1`.
pub struct Roles {
    pub env: TestEnv,
    pub api: Proc,
    pub admin: String,
    pub operator: String,
    pub viewer: String,
}

impl Roles {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// With `api_extra` added to the `[api]` section.
    pub async fn start_with(api_extra: &str) -> Self {
        Self::start_with_config(api_extra, "").await
    }

    /// With `api_extra` added to the `[api]` section and `extra` (whole sections) to the config.
    pub async fn start_with_config(api_extra: &str, extra: &str) -> Self {
        let env = TestEnv::new(&format!("login_attempts_per_minute = 1000\n{api_extra}"), extra).await;
        env.add_user("admin", "admin", "admin-password-1");
        env.add_user("op", "operator", "operator-password-1");
        env.add_user("view", "viewer", "viewer-password-1");
        let api = env.spawn_api().await;
        let admin = http::token(&api.base, "admin", "admin-password-1").await;
        let operator = http::token(&api.base, "op", "operator-password-1").await;
        let viewer = http::token(&api.base, "view", "viewer-password-1").await;
        Self {
            env,
            api,
            admin,
            operator,
            viewer,
        }
    }
}

/// Runs Python's `cryptography.fernet` (`op` is "encrypt" or "decrypt") on `text` with `key`, as the
/// original backend did, for interoperability tests.
pub fn python_fernet(op: &str, key: &str, text: &str) -> String {
    let script = format!(
        "import sys; from cryptography.fernet import Fernet; \
         print(Fernet(sys.argv[1].encode()).{op}(sys.argv[2].encode()).decode(), end='')"
    );
    output_ok(
        Command::new("python3").args(["-c", &script, key, text]),
        "python3 with cryptography",
    )
}

/// Runs `cmd`, panicking with `what` and its stderr unless it succeeds; returns its stdout.
pub fn output_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Figures for the benchmark binaries.
pub mod bench {
    use std::time::Duration;

    /// Resident set size of `pid` in KiB (0 when it cannot be read).
    pub fn rss_kib(pid: u32) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// The `p` quantile (0..=1) of ascending `sorted`.
    pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[idx.min(sorted.len() - 1)]
    }
}

/// Polls `check` every 200 ms until it returns true; panics after `within`.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
