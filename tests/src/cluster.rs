//! Throwaway PostgreSQL clusters (`initdb` + `pg_ctl`) on random ports, for the cases the shared server
//! cannot play: a server that stops and comes back, a store that restarts, many databases.
//!
//! PostgreSQL refuses to run as root, so under root the commands run as the `postgres` OS user
//! (`runuser`), in a temporary directory owned by it. Authentication is `trust` on 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Directory of `initdb` and `pg_ctl`; `PGMON_TEST_PG_BIN` overrides.
pub fn pg_bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PGMON_TEST_PG_BIN") {
        return PathBuf::from(d);
    }
    for v in ["17", "16", "15", "14", "13", "12"] {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if p.join("initdb").exists() {
            return p;
        }
    }
    PathBuf::from("/usr/lib/postgresql/15/bin")
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A running cluster, stopped (immediately) and deleted when dropped.
pub struct Cluster {
    pub port: u16,
    /// The `postgres` role's password when the cluster requires one (see [`Cluster::start_with_password`]).
    pub password: Option<String>,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

impl Cluster {
    /// initdb + start on a free port, `trust` authentication. Blocks for a second or two.
    pub fn start() -> Self {
        Self::init(None)
    }

    /// Like [`Cluster::start`], but TCP logins need `password` (scram-sha-256).
    pub fn start_with_password(password: &str) -> Self {
        Self::init(Some(password))
    }

    fn init(password: Option<&str>) -> Self {
        let as_postgres = id(&["-u"]) == Some(0);
        let dir = tempfile::Builder::new()
            .prefix("pgmon-cluster-")
            .tempdir()
            .expect("cluster tempdir");
        if as_postgres {
            let uid = id(&["-u", "postgres"]).expect("a postgres OS user");
            let gid = id(&["-g", "postgres"]).expect("a postgres OS group");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown cluster dir");
        }
        let c = Self {
            port: 0,
            password: password.map(str::to_string),
            dir,
            as_postgres,
        };
        let data = c.data().display().to_string();
        let mut args = vec![
            "-D",
            &data,
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ];
        let pwfile = c.dir.path().join("pwfile");
        let pwfile_arg = format!("--pwfile={}", pwfile.display());
        match password {
            Some(pw) => {
                std::fs::write(&pwfile, format!("{pw}\n")).expect("pwfile");
                if as_postgres {
                    let uid = id(&["-u", "postgres"]).expect("postgres uid");
                    std::os::unix::fs::chown(&pwfile, Some(uid), None).expect("chown pwfile");
                }
                args.extend(["--auth-local=trust", "--auth-host=scram-sha-256", &pwfile_arg]);
            }
            None => args.extend(["-A", "trust"]),
        }
        c.run("initdb", &args);
        let mut c = c;
        c.port = free_port();
        c.start_again();
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let bin = pg_bin_dir().join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the (stopped) cluster again on the same port.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &log.display().to_string(),
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// Writes a file the server can read (e.g. a TLS certificate or key) into the cluster's directory.
    pub fn install_file(&self, name: &str, content: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write cluster file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if self.as_postgres {
            let uid = id(&["-u", "postgres"]).expect("postgres uid");
            let gid = id(&["-g", "postgres"]).expect("postgres gid");
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown");
        }
        path
    }

    /// Appends `lines` to postgresql.conf and restarts the cluster.
    pub fn reconfigure(&self, lines: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(f, "{lines}").expect("append postgresql.conf");
        self.stop();
        self.start_again();
    }

    /// Stops the cluster (fast shutdown: sessions are disconnected).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-w",
                "-m",
                "fast",
                "stop",
            ],
        );
    }

    /// `postgres://postgres[:password]@127.0.0.1:<port>/<db>` (percent-encoded).
    pub fn url(&self, db: &str) -> String {
        let pw = self
            .password
            .as_deref()
            .map(|p| format!(":{}", percent_encode(p)))
            .unwrap_or_default();
        format!(
            "postgres://postgres{pw}@127.0.0.1:{}/{}",
            self.port,
            percent_encode(db)
        )
    }

    /// This cluster as a monitored server, as its `postgres` role.
    pub fn login(&self) -> crate::monitored::PgLogin {
        crate::monitored::PgLogin {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            password: self.password.clone(),
            dbname: "postgres".into(),
        }
    }

    pub async fn pool(&self, db: &str) -> sqlx::PgPool {
        let mut opts = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .database(db);
        if let Some(pw) = &self.password {
            opts = opts.password(pw);
        }
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .expect("connect to the cluster")
    }

    /// Creates databases named exactly as given (quotes, spaces and all).
    pub async fn create_databases(&self, names: &[&str]) {
        let pool = self.pool("postgres").await;
        for n in names {
            let sql = format!("CREATE DATABASE \"{}\"", n.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("create database");
        }
        pool.close().await;
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let bin = pg_bin_dir().join("pg_ctl");
        let data = self.data();
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let _ = cmd
            .args(["-D", &data.display().to_string(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
