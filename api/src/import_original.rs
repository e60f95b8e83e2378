//! `pgmon-api import-original`: carries an original backend's deployment over to pgmon, so that a
//! user switching keeps their servers, logins, SSH keys and charts.
//!
//! Reads the original's config directory (`servers.json` with Fernet-encrypted passwords,
//! `users.json` with bcrypt hashes, `ssh_keys/keys.json` and the Fernet-encrypted private keys under
//! `ssh_keys/private/`, all decrypted with that directory's `encryption_key.key` and re-encrypted
//! with pgmon's key) and, given its store's DSN, its collected history (`statistics`, `db_info`,
//! `audit_sessions`).
//!
//! Everything is checked first (a malformed file or a secret that does not decrypt stops the import
//! before anything is written), then written in one transaction: nothing is half-imported. What
//! pgmon already has (a server, user or key of the same name or id, a sample of the same slot) is
//! left as it is, so a second run changes nothing. `--dry-run` does all of it and rolls back.

use anyhow::{Context, bail};
use chrono::{DateTime, TimeZone, Utc};
use futures::TryStreamExt;
use pgmon_shared::crypto::Crypto;
use pgmon_shared::ssh;
use pgmon_shared::store::servers::{SecretChange, ServerSpec, SshSpec};
use pgmon_shared::store::stats::{AvailabilityRow, DbSizeRow, DiskUsageRow, StatDatabaseRow};
use pgmon_shared::store::{self, ssh_keys, users};
use pgmon_shared::validate::{self, Role};
use pgmon_shared::{Config, secrets};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// What to import.
#[derive(Debug, Clone)]
pub struct Args {
    /// The original's config directory (`/etc/pg_activity_monitor`).
    pub from: PathBuf,
    /// The original's `pam_stats` store, for the collected history.
    pub history_dsn: Option<String>,
    pub dry_run: bool,
}

/// A server as the original's `servers.json` holds it.
#[derive(Debug, Deserialize)]
struct OrigServer {
    name: String,
    host: String,
    user: String,
    #[serde(default)]
    password: Option<String>,
    port: i64,
    #[serde(default)]
    ssh_user: Option<String>,
    #[serde(default)]
    ssh_password: Option<String>,
    #[serde(default)]
    ssh_port: Option<i64>,
    #[serde(default)]
    ssh_auth_type: Option<String>,
    #[serde(default)]
    ssh_key_id: Option<String>,
    #[serde(default)]
    ssh_key_passphrase: Option<String>,
}

/// A user as the original's `users.json` holds it.
#[derive(Debug, Deserialize)]
struct OrigUser {
    login: String,
    /// A bcrypt hash (`$2b$12$...`), which pgmon verifies as it is.
    password: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default = "yes")]
    is_active: bool,
}

fn yes() -> bool {
    true
}

/// An SSH key as the original's `ssh_keys/keys.json` holds it.
#[derive(Debug, Deserialize)]
struct OrigKey {
    id: String,
    name: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    has_passphrase: bool,
    #[serde(default)]
    description: Option<String>,
}

/// One thing to import, checked and ready to write.
struct Plan {
    keys: Vec<(Uuid, ssh_keys::NewSshKey)>,
    users: Vec<PlannedUser>,
    servers: Vec<ServerSpec>,
}

struct PlannedUser {
    login: String,
    hash: String,
    role: Role,
    email: Option<String>,
    active: bool,
    created_at: Option<DateTime<Utc>>,
}

/// Counts of what was (or, in a dry run, would be) written.
#[derive(Debug, Default)]
pub struct Report {
    pub servers: Vec<String>,
    pub servers_present: Vec<String>,
    pub users: Vec<String>,
    pub users_present: Vec<String>,
    pub keys: Vec<String>,
    pub keys_present: Vec<String>,
    pub statistics_read: u64,
    pub samples: u64,
    pub sizes: u64,
    pub disk: u64,
    pub availability: u64,
    pub databases: u64,
    pub audit: u64,
    pub skipped_unknown_server: u64,
}

impl Report {
    pub fn lines(&self, dry_run: bool) -> Vec<String> {
        let verb = if dry_run { "would import" } else { "imported" };
        let list = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.join(", "))
            }
        };
        let mut out = vec![
            format!(
                "servers: {verb} {}{}; already present {}{}",
                self.servers.len(),
                list(&self.servers),
                self.servers_present.len(),
                list(&self.servers_present)
            ),
            format!(
                "users: {verb} {}{}; already present {}{}",
                self.users.len(),
                list(&self.users),
                self.users_present.len(),
                list(&self.users_present)
            ),
            format!(
                "ssh keys: {verb} {}{}; already present {}{}",
                self.keys.len(),
                list(&self.keys),
                self.keys_present.len(),
                list(&self.keys_present)
            ),
        ];
        if self.statistics_read > 0 || self.audit > 0 || self.databases > 0 {
            out.push(format!(
                "history: read {} statistics rows; {verb} {} pg_stat_database samples, {} sizes, {} disk \
                 readings, {} availability samples, {} databases, {} audit events{}",
                self.statistics_read,
                self.samples,
                self.sizes,
                self.disk,
                self.availability,
                self.databases,
                self.audit,
                if self.skipped_unknown_server > 0 {
                    format!(
                        "; {} rows of servers not in servers.json skipped",
                        self.skipped_unknown_server
                    )
                } else {
                    String::new()
                }
            ));
        }
        out
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        anyhow::anyhow!("{}: {at}: {}", path.display(), e.into_inner())
    })
}

/// The original's secrets: a Fernet token (it starts `gAAAAA`) is decrypted with its key, anything
/// else was stored in plain text. A passphrase the original encrypted twice is decrypted twice.
fn reveal(orig: &Crypto, what: &str, v: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(mut v) = v.filter(|v| !v.is_empty()).map(str::to_string) else {
        return Ok(None);
    };
    for _ in 0..2 {
        if !v.starts_with("gAAAAA") {
            break;
        }
        v = orig
            .decrypt(&v)
            .map_err(|_| anyhow::anyhow!("{what} does not decrypt with the original's encryption_key.key"))?;
    }
    Ok(Some(v).filter(|v| !v.is_empty()))
}

fn parse_time(what: &str, v: Option<&str>) -> anyhow::Result<Option<DateTime<Utc>>> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    // Python's isoformat(), with "T" or a space, with or without an offset (naive means UTC).
    if let Ok(t) = DateTime::parse_from_rfc3339(&v.replacen(' ', "T", 1)) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let naive = chrono::NaiveDateTime::parse_from_str(&v.replacen(' ', "T", 1), "%Y-%m-%dT%H:%M:%S%.f")
        .with_context(|| format!("{what}: {v:?} is not an ISO 8601 time"))?;
    Ok(Some(naive.and_utc()))
}

/// Reads and checks the original's files; nothing is written.
fn plan(dir: &Path, pgmon: &Crypto) -> anyhow::Result<Plan> {
    let key_path = dir.join("encryption_key.key");
    let key_text =
        std::fs::read_to_string(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    let orig = Crypto::from_key(key_text.trim())
        .with_context(|| format!("{}: not a Fernet key", key_path.display()))?;

    let servers: Vec<OrigServer> = read_json(&dir.join("servers.json"))?;
    let users: Vec<OrigUser> = read_json(&dir.join("users.json"))?;
    let keys_path = dir.join("ssh_keys").join("keys.json");
    let keys: Vec<OrigKey> = if keys_path.exists() {
        read_json(&keys_path)?
    } else {
        Vec::new()
    };

    // The passphrases servers keep for their keys open the keys the original stored encrypted.
    let mut passphrases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &servers {
        if let (Some(k), Some(p)) = (
            s.ssh_key_id.as_deref().filter(|k| !k.is_empty()),
            reveal(
                &orig,
                &format!("servers.json: server {}: ssh_key_passphrase", s.name),
                s.ssh_key_passphrase.as_deref(),
            )?,
        ) {
            passphrases.entry(k.to_string()).or_default().push(p);
        }
    }

    let mut planned_keys = Vec::new();
    let mut key_ids = BTreeSet::new();
    for k in &keys {
        let what = format!("ssh_keys/keys.json: key {:?}", k.name);
        let id = Uuid::parse_str(&k.id).with_context(|| format!("{what}: id {:?} is not a UUID", k.id))?;
        let file = dir
            .join("ssh_keys")
            .join("private")
            .join(format!("key_{}.pem", k.id));
        let token = std::fs::read_to_string(&file)
            .with_context(|| format!("{what}: cannot read {}", file.display()))?;
        let text = reveal(&orig, &format!("{what}: {}", file.display()), Some(token.trim()))?
            .with_context(|| format!("{what}: {} is empty", file.display()))?;
        let candidates: Vec<Option<&str>> = if k.has_passphrase {
            passphrases
                .get(&k.id)
                .map(|v| v.iter().map(|p| Some(p.as_str())).collect())
                .unwrap_or_default()
        } else {
            vec![None]
        };
        let material = candidates
            .iter()
            .find_map(|p| ssh::import_private_key(&text, *p).ok())
            .with_context(|| {
                if k.has_passphrase {
                    format!("{what}: the key is encrypted and no server's ssh_key_passphrase opens it")
                } else {
                    format!("{what}: {}", ssh::KeyError::NotAKey)
                }
            })?;
        let name: String = k.name.chars().take(64).collect();
        key_ids.insert(id);
        planned_keys.push((
            id,
            ssh_keys::NewSshKey {
                id: Some(id),
                created_at: parse_time(&what, k.created_at.as_deref())?,
                name,
                key_type: material.key_type,
                bits: material.bits,
                fingerprint: material.fingerprint,
                public_key: material.public_openssh,
                private_key_enc: pgmon.encrypt(&material.private_openssh),
                comment: material.comment,
                description: k.description.clone().filter(|d| !d.is_empty()),
                created_by: k.created_by.clone(),
            },
        ));
    }

    let mut planned_users = Vec::new();
    for u in &users {
        let what = format!("users.json: user {:?}", u.login);
        if !validate::is_valid_login(&u.login) {
            bail!("{what}: pgmon logins must match ^[A-Za-z0-9_.@-]{{1,64}}$");
        }
        if !u.password.starts_with("$2") {
            bail!("{what}: password is not a bcrypt hash");
        }
        let role: Role = u
            .role
            .as_deref()
            .unwrap_or("viewer")
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{what}: {e}"))?;
        planned_users.push(PlannedUser {
            login: u.login.clone(),
            hash: u.password.clone(),
            role,
            email: u.email.clone().filter(|e| !e.is_empty()),
            active: u.is_active,
            created_at: parse_time(&what, u.created_at.as_deref())?,
        });
    }

    let mut planned_servers = Vec::new();
    for s in &servers {
        let what = format!("servers.json: server {:?}", s.name);
        let e = |m: String| anyhow::anyhow!("{what}: {m}");
        validate::check_server_name(&s.name).map_err(e)?;
        validate::check_host("host", &s.host).map_err(e)?;
        let port = validate::check_port("port", s.port).map_err(e)?;
        validate::check_text("user", &s.user, 63, false).map_err(e)?;
        let password = reveal(&orig, &format!("{what}: password"), s.password.as_deref())?;
        let ssh_password = reveal(&orig, &format!("{what}: ssh_password"), s.ssh_password.as_deref())?;
        let key = match (
            s.ssh_auth_type.as_deref(),
            s.ssh_key_id.as_deref().filter(|k| !k.is_empty()),
        ) {
            (Some("key"), Some(k)) => {
                let id = Uuid::parse_str(k).map_err(|_| e(format!("ssh_key_id {k:?} is not a UUID")))?;
                if !key_ids.contains(&id) {
                    return Err(e(format!("ssh_key_id {k} names no key in ssh_keys/keys.json")));
                }
                Some(id)
            }
            _ => None,
        };
        let ssh_user = s
            .ssh_user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres".into());
        let ssh = if key.is_some() || ssh_password.is_some() {
            validate::check_ssh_user(&ssh_user).map_err(e)?;
            Some(SshSpec {
                host: None,
                port: validate::check_port("ssh_port", s.ssh_port.unwrap_or(22)).map_err(e)?,
                username: ssh_user,
                key_id: key,
                password: match (&key, &ssh_password) {
                    (None, Some(p)) => SecretChange::Set(pgmon.encrypt(p)),
                    _ => SecretChange::Clear,
                },
                data_path: "/".into(),
                enabled: true,
            })
        } else {
            None
        };
        planned_servers.push(ServerSpec {
            name: s.name.clone(),
            host: s.host.clone(),
            port,
            dbname: "postgres".into(),
            username: s.user.clone(),
            password: match password {
                Some(p) => SecretChange::Set(pgmon.encrypt(&p)),
                None => SecretChange::Clear,
            },
            sslmode: "prefer".into(),
            pool: "default".into(),
            enabled: true,
            description: "imported from the original backend".into(),
            ssh,
        });
    }
    Ok(Plan {
        keys: planned_keys,
        users: planned_users,
        servers: planned_servers,
    })
}

/// Runs the import; prints nothing (the caller prints [`Report::lines`]).
pub async fn run(cfg: &Config, args: &Args) -> anyhow::Result<Report> {
    let pgmon = secrets::load_crypto(cfg)?;
    let plan = plan(&args.from, &pgmon)?;
    let history = match &args.history_dsn {
        Some(dsn) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(dsn)
                .await
                .context("cannot connect to the original's store (--history-dsn)")?,
        ),
        None => None,
    };
    // One transaction whose statements may each take minutes: no store-side statement limits.
    let pool = store::connect_unbounded(&cfg.store, "pgmon-api")?;
    store::migrate(&pool).await.context("cannot migrate the store")?;
    let mut tx = pool.begin().await?;
    let mut report = Report::default();
    write_config(&mut tx, &plan, &mut report).await?;
    let mut touched = BTreeSet::new();
    if let Some(orig) = &history {
        let interval = i64::try_from(cfg.collector.collect_interval_secs)
            .unwrap_or(600)
            .max(1);
        import_history(&mut tx, orig, interval, &mut report, &mut touched).await?;
        reset_rollups(&mut tx, &touched).await?;
    }
    if args.dry_run {
        tx.rollback().await?;
        return Ok(report);
    }
    tx.commit().await?;
    // The imported slots are older than what the rollups may already cover: they were reset above
    // and are rebuilt now from the raw rows.
    for id in touched {
        store::rollups::refresh_server(&pool, id).await?;
    }
    Ok(report)
}

async fn write_config(conn: &mut PgConnection, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    for (id, key) in &plan.keys {
        let present: Option<(Uuid, String)> =
            sqlx::query_as("SELECT id, name FROM ssh_keys WHERE id = $1 OR name = $2 OR fingerprint = $3")
                .bind(id)
                .bind(&key.name)
                .bind(&key.fingerprint)
                .fetch_optional(&mut *conn)
                .await?;
        match present {
            Some((same, _)) if same == *id => report.keys_present.push(key.name.clone()),
            Some((_, other)) => bail!(
                "ssh key {:?} ({}): pgmon already has another key named {other:?} with this name or \
                 fingerprint; rename or delete it first",
                key.name,
                id
            ),
            None => {
                ssh_keys::create_in(conn, key).await?;
                report.keys.push(key.name.clone());
            }
        }
    }
    for u in &plan.users {
        let present: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE login = $1)")
            .bind(&u.login)
            .fetch_one(&mut *conn)
            .await?;
        if present {
            report.users_present.push(u.login.clone());
            continue;
        }
        users::create_in(
            conn,
            &users::NewUser {
                login: &u.login,
                password_hash: &u.hash,
                role: u.role,
                email: u.email.as_deref(),
                disabled: !u.active,
                created_at: u.created_at,
            },
        )
        .await?;
        report.users.push(u.login.clone());
    }
    for s in &plan.servers {
        let present: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM servers WHERE name = $1)")
            .bind(&s.name)
            .fetch_one(&mut *conn)
            .await?;
        if present {
            report.servers_present.push(s.name.clone());
            continue;
        }
        store::servers::create_in(conn, s).await?;
        report.servers.push(s.name.clone());
    }
    Ok(())
}

/// One row of the original's `statistics`.
#[derive(sqlx::FromRow)]
struct OrigSample {
    server_name: String,
    ts: DateTime<Utc>,
    datname: String,
    numbackends: Option<i32>,
    xact_commit: Option<i64>,
    db_size: Option<i64>,
    disk_free: Option<i64>,
    disk_total: Option<i64>,
}

/// One row of the original's `db_info`: server, database, oid, creation, first and last seen.
type OrigDbInfo = (
    String,
    String,
    i64,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// Rows written per statement.
const BATCH: usize = 5000;

fn slot_of(t: DateTime<Utc>, interval: i64) -> DateTime<Utc> {
    let s = t.timestamp().div_euclid(interval) * interval;
    Utc.timestamp_opt(s, 0).single().unwrap_or(t)
}

#[derive(Default)]
struct Batch {
    samples: Vec<StatDatabaseRow>,
    sizes: Vec<DbSizeRow>,
    disk: Vec<DiskUsageRow>,
    up: Vec<AvailabilityRow>,
    servers: BTreeSet<i64>,
}

impl Batch {
    /// Writes the batch; the servers that got new rows join `touched`.
    async fn flush(
        &mut self,
        conn: &mut PgConnection,
        report: &mut Report,
        touched: &mut BTreeSet<i64>,
    ) -> anyhow::Result<()> {
        let samples = store::stats::insert_stat_database(conn, &self.samples).await?;
        let sizes = store::stats::insert_db_size(conn, &self.sizes).await?;
        let disk = store::stats::insert_disk_usage(conn, &self.disk).await?;
        let up = store::stats::insert_availability(conn, &self.up).await?.len() as u64;
        report.samples += samples;
        report.sizes += sizes;
        report.disk += disk;
        report.availability += up;
        if samples + sizes + disk + up > 0 {
            touched.append(&mut self.servers);
        }
        *self = Batch::default();
        Ok(())
    }
}

/// The original's `statistics`, `db_info` and `audit_sessions`, for the servers pgmon now has. Each
/// `statistics` row becomes a `pg_stat_database` sample of the slot its time falls in (its
/// connections and cumulative commits), a size sample where it has a size, a disk reading and an
/// "up" availability sample for its server and slot.
async fn import_history(
    conn: &mut PgConnection,
    orig: &PgPool,
    interval: i64,
    report: &mut Report,
    touched: &mut BTreeSet<i64>,
) -> anyhow::Result<()> {
    let ids: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>("SELECT name, id FROM servers")
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let has = |t: &'static str| {
        sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
            .bind(t)
            .fetch_one(orig)
    };
    if !has("statistics").await? {
        bail!("--history-dsn: the database has no `statistics` table: is it the original's pam_stats?");
    }
    let span: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT min(ts), max(ts) FROM statistics")
            .fetch_one(orig)
            .await?;
    if let (Some(lo), Some(hi)) = span {
        sqlx::query("SELECT pgmon_ensure_partitions($1, $2)")
            .bind(lo)
            .bind(hi)
            .execute(&mut *conn)
            .await?;
    }
    // The oid of each database, from the original's db_info; 0 where it never recorded one.
    let oids: BTreeMap<(String, String), i64> = if has("db_info").await? {
        let rows: Vec<OrigDbInfo> = sqlx::query_as(
            "SELECT server_name, datname, oid, creation_time, first_seen, last_seen FROM db_info",
        )
        .fetch_all(orig)
        .await?;
        for (server, datname, oid, created, first, last) in &rows {
            let Some(id) = ids.get(server) else { continue };
            report.databases += sqlx::query(
                "INSERT INTO databases (server_id, oid, name, created_at, first_seen, last_seen)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (server_id, oid, name) DO NOTHING",
            )
            .bind(id)
            .bind(oid)
            .bind(datname)
            .bind(created)
            .bind(first)
            .bind(last)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
        rows.into_iter().map(|(s, d, oid, ..)| ((s, d), oid)).collect()
    } else {
        BTreeMap::new()
    };
    let mut rows = sqlx::query_as::<_, OrigSample>(
        "SELECT server_name, ts, datname, numbackends, xact_commit, db_size, disk_free, disk_total
         FROM statistics ORDER BY server_name, ts, datname",
    )
    .fetch(orig);
    let mut batch = Batch::default();
    let mut last_slot: Option<(i64, DateTime<Utc>)> = None;
    while let Some(r) = rows.try_next().await? {
        report.statistics_read += 1;
        let Some(&server_id) = ids.get(&r.server_name) else {
            report.skipped_unknown_server += 1;
            continue;
        };
        batch.servers.insert(server_id);
        let slot = slot_of(r.ts, interval);
        batch.samples.push(StatDatabaseRow {
            server_id,
            slot,
            datid: oids
                .get(&(r.server_name.clone(), r.datname.clone()))
                .copied()
                .unwrap_or(0),
            datname: r.datname.clone(),
            collected_at: r.ts,
            postmaster_start: None,
            stats_reset: None,
            numbackends: r.numbackends,
            xact_commit: r.xact_commit,
            ..StatDatabaseRow::default()
        });
        if let Some(size) = r.db_size {
            batch.sizes.push(DbSizeRow {
                server_id,
                slot,
                datname: r.datname.clone(),
                collected_at: r.ts,
                size_bytes: size,
            });
        }
        if last_slot != Some((server_id, slot)) {
            last_slot = Some((server_id, slot));
            batch.up.push(AvailabilityRow {
                server_id,
                slot,
                collected_at: r.ts,
                up: true,
                latency_ms: None,
                error_class: None,
                error: None,
            });
            if let (Some(free), Some(total)) = (r.disk_free, r.disk_total) {
                batch.disk.push(DiskUsageRow {
                    server_id,
                    slot,
                    collected_at: r.ts,
                    mount: String::new(),
                    total_bytes: total,
                    used_bytes: (total - free).max(0),
                    available_bytes: free,
                });
            }
        }
        if batch.samples.len() >= BATCH {
            batch.flush(conn, report, touched).await?;
        }
    }
    batch.flush(conn, report, touched).await?;
    drop(rows);
    if has("audit_sessions").await? {
        import_audit(conn, orig, report).await?;
    }
    Ok(())
}

/// The original's audit events, each once (an event already present is not added again).
async fn import_audit(conn: &mut PgConnection, orig: &PgPool, report: &mut Report) -> anyhow::Result<()> {
    type Row = (
        DateTime<Utc>,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT timestamp, event_type, username, ip_address, user_agent, jti, details
         FROM audit_sessions ORDER BY timestamp, id",
    )
    .fetch_all(orig)
    .await?;
    for chunk in rows.chunks(BATCH) {
        report.audit += sqlx::query(
            "INSERT INTO audit_sessions (at, event, login, client_ip, user_agent, jti, details)
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[]) AS u(at, event, login, ip, ua, jti, details)
             WHERE NOT EXISTS (SELECT 1 FROM audit_sessions a
                               WHERE a.at = u.at AND a.event = u.event AND a.login IS NOT DISTINCT FROM u.login
                                 AND a.jti IS NOT DISTINCT FROM u.jti)",
        )
        .bind(chunk.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.1.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.2.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.3.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.4.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.5.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.6.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(())
}

/// Forgets the rollups of servers that received history, so the next refresh rebuilds them from the
/// raw rows (imported slots are older than what the rollups may already cover).
async fn reset_rollups(conn: &mut PgConnection, servers: &BTreeSet<i64>) -> anyhow::Result<()> {
    let ids: Vec<i64> = servers.iter().copied().collect();
    for table in [
        "stat_rollup",
        "stat_rollup_chunk",
        "stat_rollup_state",
        "stat_rollup_packed",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE server_id = ANY($1)"
        )))
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
