//! Typed configuration shared by both processes: one TOML file plus environment overrides.
//!
//! Precedence, highest first: `PGMON_<SECTION>__<KEY>` variables, the original Python backend's
//! variables (`LOCAL_DB_DSN`, `SECRET_KEY`, `LOG_LEVEL`), the file, the defaults below. Every key is
//! optional except `store.url`; an unknown key or a bad value stops start-up with one line naming it.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the config is read from when neither `--config` nor `$PGMON_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pgmon/pgmon.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Syntax { path: String, reason: String },
    #[error("config key {key}: {reason}")]
    Key { key: String, reason: String },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub store: StoreConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub collector: CollectorConfig,
    #[serde(default)]
    pub secrets: SecretsConfig,
    #[serde(default)]
    pub pools: PoolsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub servers: ServersConfig,
    /// The JWT secret itself when given by the original's `SECRET_KEY` variable; never from the file.
    #[serde(skip)]
    pub jwt_secret_inline: Option<String>,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: String,
    #[serde(default = "d_store_max")]
    pub max_connections: u32,
    /// The store's own limit on one statement (`statement_timeout`; `lock_timeout` is a third of it,
    /// `idle_in_transaction_session_timeout` twice [`Self::call_timeout_secs`]): a store that is slow
    /// or locked answers with an error instead of holding a session forever. 0: no server-side limit.
    #[serde(default = "d_store_statement_timeout")]
    pub statement_timeout_secs: u64,
    /// How long pgmon waits for any one store call (and the API for a whole request) before it gives
    /// up on its own: the server-side limits cannot help when the connection itself is half-open (a
    /// black-holed network), and sqlx exposes no TCP keepalive. Longer than the statement timeout, so
    /// a slow statement is normally cancelled by the store with a clear error first.
    #[serde(default = "d_store_call_timeout")]
    pub call_timeout_secs: u64,
}

impl StoreConfig {
    /// [`Self::call_timeout_secs`] as a duration.
    pub fn call_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.call_timeout_secs)
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("statement_timeout_secs", &self.statement_timeout_secs)
            .field("call_timeout_secs", &self.call_timeout_secs)
            .finish()
    }
}

/// The store URL with its password replaced, for logs and error messages (see [`crate::redact`]).
pub use crate::redact::redact_url;

/// What a viewer sees of the query texts of monitored servers (`api.viewer_query_text`); operators
/// and admins always get the whole text, password literals redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryTextView {
    /// The whole text, password literals redacted.
    Full,
    /// Constants replaced by `$1`, `$2`, ... as `pg_stat_statements` shows statements.
    #[default]
    Normalized,
    /// No text (`null`, or `""` where the original's shape has a plain string).
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub allowed_origins: Vec<String>,
    pub token_expiration_minutes: u32,
    pub refresh_token_expiration_days: u32,
    pub server_status_cache_ttl_secs: u64,
    pub ssh_cache_ttl_secs: u64,
    pub audit_retention_days: u32,
    pub secure_cookies: bool,
    /// Login attempts a minute for one (login, client IP) pair. Per login alone there is only a
    /// slow-down, never a refusal: a limit per login would let anyone lock `admin` out.
    pub login_attempts_per_minute: u32,
    /// Login attempts a minute from one client IP, whatever the logins (a password spray); unset:
    /// 4 × `login_attempts_per_minute`, so that one office behind a NAT can still log in.
    pub login_attempts_per_minute_per_ip: Option<u32>,
    /// bcrypt cost of new hashes (4..=31). 12 in production; tests lower it to save CPU.
    pub bcrypt_cost: u32,
    /// Memory for packed history chunks held by the API (see `store::chunk_cache`); 0 turns it off.
    pub history_cache_mb: u32,
    /// Memory for whole history answers held by the API until their server's data changes (see
    /// pgmon-api's `history_cache`); 0 turns it off.
    pub history_response_cache_mb: u32,
    /// Peers (CIDR) whose [`ApiConfig::client_ip_header`] names the client, as a reverse proxy in
    /// front of the API does; anyone else's header is ignored. Default: none, because any local
    /// process (an SSH tunnel, a sidecar) is a loopback peer and could choose its own IP.
    pub trusted_proxies: Vec<String>,
    /// The one header a trusted proxy sets to name the client: `X-Forwarded-For` (the right-most
    /// address that is not itself a trusted proxy), or `X-Real-IP` or any header a site's proxy sets
    /// (its right-most value). Only the header the proxy overwrites or appends to can be trusted.
    pub client_ip_header: String,
    /// Query texts of sessions are cut to this many characters in listings.
    pub activity_query_chars: usize,
    /// A refresh token presented again within this many seconds of its rotation gets the same
    /// successor (two browser tabs share the cookie); later, it is reuse and revokes its family.
    pub refresh_reuse_grace_secs: u32,
    /// Which signals operators may send to backends of monitored servers: `on` (cancel and
    /// terminate), `cancel` (cancel only) or `off` (a read-only API).
    pub backend_signals: String,
    /// The built web UI (`web/dist`: `index.html` and `assets/`), served at `/`. When it holds no
    /// `index.html`, `/` answers a page saying how to build it; the API is unaffected.
    pub web_dir: std::path::PathBuf,
    /// What viewers see of sessions' and statements' query texts: `full`, `normalized` or `none`.
    /// Query texts carry the data of the statements (and sometimes credentials), which viewers
    /// need not see to follow a server's activity.
    pub viewer_query_text: QueryTextView,
}

impl ApiConfig {
    /// [`ApiConfig::login_attempts_per_minute_per_ip`] with its default applied.
    pub fn login_ip_attempts_per_minute(&self) -> u32 {
        self.login_attempts_per_minute_per_ip
            .unwrap_or_else(|| self.login_attempts_per_minute.saturating_mul(4))
    }

    /// [`ApiConfig::trusted_proxies`], parsed (validated at load).
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_net(p).ok())
            .collect()
    }
}

/// RFC 9110's `token`: what a header name may be made of.
fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A CIDR block, or a single address as a /32 or /128.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            allowed_origins: Vec::new(),
            token_expiration_minutes: 60,
            refresh_token_expiration_days: 7,
            server_status_cache_ttl_secs: 5,
            ssh_cache_ttl_secs: 30,
            audit_retention_days: 90,
            secure_cookies: true,
            login_attempts_per_minute: 5,
            login_attempts_per_minute_per_ip: None,
            bcrypt_cost: 12,
            history_cache_mb: 128,
            history_response_cache_mb: 64,
            trusted_proxies: Vec::new(),
            client_ip_header: "X-Forwarded-For".into(),
            activity_query_chars: 2000,
            refresh_reuse_grace_secs: 30,
            backend_signals: "on".into(),
            web_dir: "/usr/share/pgmon/web".into(),
            viewer_query_text: QueryTextView::Normalized,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    pub collect_interval_secs: u64,
    pub size_update_interval_secs: u64,
    pub db_check_interval_secs: u64,
    pub retention_months: u32,
    /// Days the system log (`GET /api/logs`) keeps its entries; maintenance purges older ones.
    pub logs_retention_days: u32,
    /// Interval of the activity task: sessions by state, waits, horizons, replication lag and slots.
    pub activity_interval_secs: u64,
    /// Statements kept per server and stats slot (by execution time in the slot); 0: none.
    pub statements_top: usize,
    /// How many servers one task collects at once.
    pub concurrency: usize,
    /// Rows kept in memory while the store is unreachable; beyond this the oldest are dropped and counted.
    pub buffer_max_rows: usize,
    /// Interval of the maintenance task (partitions, retention, audit purge).
    pub maintenance_interval_secs: u64,
    /// Statement timeout of `pg_database_size` on monitored servers.
    pub size_statement_timeout_secs: u64,
    /// Where snapshots the store has not confirmed wait on disk, so a restart, a watchdog kill or an
    /// upgrade during a store outage loses none. Each collector process takes its own
    /// subdirectory (locked while it runs) and replays those of collectors that are gone.
    pub spool_dir: PathBuf,
    /// The most the unconfirmed snapshots may take, on disk and in memory; beyond it the oldest are
    /// dropped, with a system-log entry saying how many rows and bytes.
    pub spool_max_mb: u64,
    /// Deadline of one server's part of one task run (all its families together), after which that
    /// server's run is abandoned as failed so that a server which stops answering mid-run cannot
    /// hold the run (and the next slot of every other server). 0: min(interval / 2, 120 s).
    pub server_deadline_secs: u64,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            collect_interval_secs: 600,
            size_update_interval_secs: 1800,
            db_check_interval_secs: 1800,
            retention_months: 12,
            logs_retention_days: 30,
            activity_interval_secs: 60,
            statements_top: 100,
            concurrency: 32,
            buffer_max_rows: 1_000_000,
            maintenance_interval_secs: 3600,
            size_statement_timeout_secs: 60,
            spool_dir: "/var/lib/pgmon/spool".into(),
            spool_max_mb: 256,
            server_deadline_secs: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    pub jwt_secret_file: PathBuf,
    pub encryption_key_file: PathBuf,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            jwt_secret_file: "/etc/pgmon/jwt_secret".into(),
            encryption_key_file: "/etc/pgmon/encryption_key.key".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PoolSize {
    pub min: usize,
    pub max: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolsConfig {
    pub default: PoolSize,
    pub high_load: PoolSize,
}

impl Default for PoolsConfig {
    fn default() -> Self {
        Self {
            default: PoolSize { min: 1, max: 5 },
            high_load: PoolSize { min: 5, max: 20 },
        }
    }
}

impl PoolsConfig {
    /// The size of a server's pool profile (`default` or `high_load`).
    pub fn profile(&self, name: &str) -> PoolSize {
        if name == "high_load" {
            self.high_load
        } else {
            self.default
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `GET /metrics` on pgmon-api: the fleet's newest values and both processes' own figures in the
/// Prometheus text format. Off unless enabled; a scrape needs the bearer token of `token_file` (when
/// set) and a client address in `allow`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub token_file: Option<PathBuf>,
    pub allow: Vec<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            token_file: None,
            allow: vec!["127.0.0.1/32".into(), "::1/128".into()],
        }
    }
}

impl MetricsConfig {
    pub fn allow_nets(&self) -> Vec<ipnet::IpNet> {
        self.allow.iter().filter_map(|p| parse_net(p).ok()).collect()
    }
}

/// Where pgmon may connect, and how often operators may probe (see `targets`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServersConfig {
    /// CIDR blocks, addresses and host-name globs pgmon may connect to (checked after DNS, on every
    /// connect); link-local and cloud metadata addresses only when listed explicitly.
    pub allowed_targets: Vec<String>,
    /// `test-connection` and `test-ssh` attempts per user and minute, so the API is no port scanner.
    pub test_attempts_per_minute: u32,
}

impl Default for ServersConfig {
    fn default() -> Self {
        Self {
            allowed_targets: crate::targets::DEFAULT_ALLOWED
                .iter()
                .map(|s| s.to_string())
                .collect(),
            test_attempts_per_minute: 30,
        }
    }
}

impl ServersConfig {
    /// [`ServersConfig::allowed_targets`], parsed (validated at load).
    pub fn allowed(&self) -> crate::targets::AllowedTargets {
        crate::targets::AllowedTargets::parse(&self.allowed_targets).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

fn d_store_max() -> u32 {
    10
}

fn d_store_statement_timeout() -> u64 {
    30
}

fn d_store_call_timeout() -> u64 {
    45
}

impl Config {
    /// The config path: `--config`, else `$PGMON_CONFIG`, else [`DEFAULT_CONFIG_PATH`].
    pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
        cli.map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PGMON_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    /// Reads the file at `path` (a missing file is an error unless the environment gives `store.url`)
    /// and applies the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && env_has_store_url() => String::new(),
            Err(e) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        Self::from_toml_and_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses `text` and applies the overrides in `env`; separated from [`Config::load`] for tests.
    pub fn from_toml_and_env(
        text: &str,
        origin: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: origin.to_string(),
            reason: e.message().to_string(),
        })?;
        // Defaults first, the file over them, then the environment: a partial table such as
        // `[pools.high_load] max = 30` keeps the other defaults of its section.
        let mut table = template_table();
        merge(&mut table, file);
        let env: Vec<(String, String)> = env.collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(v) = get("LOCAL_DB_DSN") {
            set_path(&mut table, &["store", "url"], toml::Value::String(v));
        }
        if let Some(v) = get("LOG_LEVEL") {
            set_path(
                &mut table,
                &["log", "level"],
                toml::Value::String(v.to_lowercase()),
            );
        }
        let template = template_table();
        for (name, raw) in &env {
            // Only SECTION__KEY names are config keys; other PGMON_* variables (PGMON_CONFIG, the test
            // harness's PGMON_TEST_PG_URL, ...) belong to someone else.
            let Some(rest) = name.strip_prefix("PGMON_").filter(|r| r.contains("__")) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            let value = env_value(&template, &refs, raw);
            set_path(&mut table, &refs, value);
        }
        let mut cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            let reason = e.into_inner().message().to_string();
            ConfigError::Key {
                key: if key == "." { "(top level)".into() } else { key },
                reason,
            }
        })?;
        cfg.jwt_secret_inline = get("SECRET_KEY").filter(|s| !s.is_empty());
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| {
            Err(ConfigError::Key {
                key: key.into(),
                reason: reason.into(),
            })
        };
        if self.store.url.trim().is_empty() {
            return bad(
                "store.url",
                "missing (set it in the file, PGMON_STORE__URL or LOCAL_DB_DSN)",
            );
        }
        if self.store.max_connections == 0 {
            return bad("store.max_connections", "must be at least 1");
        }
        if self.store.statement_timeout_secs > 86_400 {
            return bad(
                "store.statement_timeout_secs",
                "must be at most 86400 (0: no limit)",
            );
        }
        if !(1..=86_400).contains(&self.store.call_timeout_secs) {
            return bad("store.call_timeout_secs", "must be between 1 and 86400");
        }
        if self.store.statement_timeout_secs > 0
            && self.store.call_timeout_secs <= self.store.statement_timeout_secs
        {
            return bad(
                "store.call_timeout_secs",
                "must be longer than store.statement_timeout_secs (the store cancels a slow statement first)",
            );
        }
        if self.collector.spool_dir.as_os_str().is_empty() || !self.collector.spool_dir.is_absolute() {
            return bad("collector.spool_dir", "must be an absolute path");
        }
        if !(1..=1_048_576).contains(&self.collector.spool_max_mb) {
            return bad("collector.spool_max_mb", "must be between 1 and 1048576");
        }
        if self.api.token_expiration_minutes == 0 {
            return bad("api.token_expiration_minutes", "must be at least 1");
        }
        if self.api.refresh_token_expiration_days == 0 {
            return bad("api.refresh_token_expiration_days", "must be at least 1");
        }
        if self.api.login_attempts_per_minute == 0 {
            return bad("api.login_attempts_per_minute", "must be at least 1");
        }
        if self.api.login_attempts_per_minute_per_ip == Some(0) {
            return bad("api.login_attempts_per_minute_per_ip", "must be at least 1");
        }
        if !is_header_name(&self.api.client_ip_header) {
            return bad(
                "api.client_ip_header",
                "must be an HTTP header name such as \"X-Forwarded-For\" or \"X-Real-IP\"",
            );
        }
        if !(4..=31).contains(&self.api.bcrypt_cost) {
            return bad("api.bcrypt_cost", "must be between 4 and 31");
        }
        for p in &self.api.trusted_proxies {
            if let Err(reason) = parse_net(p) {
                return bad("api.trusted_proxies", &reason);
            }
        }
        for p in &self.metrics.allow {
            if let Err(reason) = parse_net(p) {
                return bad("metrics.allow", &reason);
            }
        }
        if let Err(reason) = crate::targets::AllowedTargets::parse(&self.servers.allowed_targets) {
            return bad("servers.allowed_targets", &reason);
        }
        if self.servers.test_attempts_per_minute == 0 {
            return bad("servers.test_attempts_per_minute", "must be at least 1");
        }
        if self.api.refresh_reuse_grace_secs > 300 {
            return bad("api.refresh_reuse_grace_secs", "must be at most 300");
        }
        if !["on", "cancel", "off"].contains(&self.api.backend_signals.as_str()) {
            return bad("api.backend_signals", "must be \"on\", \"cancel\" or \"off\"");
        }
        if !(1..=1_000_000).contains(&self.api.activity_query_chars) {
            return bad("api.activity_query_chars", "must be between 1 and 1000000");
        }
        for (key, v) in [
            (
                "collector.collect_interval_secs",
                self.collector.collect_interval_secs,
            ),
            (
                "collector.size_update_interval_secs",
                self.collector.size_update_interval_secs,
            ),
            (
                "collector.db_check_interval_secs",
                self.collector.db_check_interval_secs,
            ),
            (
                "collector.maintenance_interval_secs",
                self.collector.maintenance_interval_secs,
            ),
            (
                "collector.activity_interval_secs",
                self.collector.activity_interval_secs,
            ),
            (
                "collector.size_statement_timeout_secs",
                self.collector.size_statement_timeout_secs,
            ),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.collector.retention_months == 0 {
            return bad("collector.retention_months", "must be at least 1");
        }
        if self.collector.logs_retention_days == 0 {
            return bad("collector.logs_retention_days", "must be at least 1");
        }
        if self.collector.statements_top > 10_000 {
            return bad("collector.statements_top", "must be at most 10000");
        }
        if self.collector.concurrency == 0 {
            return bad("collector.concurrency", "must be at least 1");
        }
        if self.collector.server_deadline_secs > 86_400 {
            return bad(
                "collector.server_deadline_secs",
                "must be at most 86400 (0: derived from the task's interval)",
            );
        }
        for (key, p) in [
            ("pools.default", self.pools.default),
            ("pools.high_load", self.pools.high_load),
        ] {
            if p.max == 0 || p.min > p.max {
                return bad(key, "needs 0 <= min <= max and max >= 1");
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad(
                "log.level",
                "not a valid level or filter (error, warn, info, debug, trace)",
            );
        }
        Ok(())
    }
}

fn env_has_store_url() -> bool {
    std::env::var_os("PGMON_STORE__URL").is_some() || std::env::var_os("LOCAL_DB_DSN").is_some()
}

/// Defaults as a TOML table, used to tell which environment values are strings.
fn template_table() -> toml::Table {
    let cfg = Config {
        store: StoreConfig {
            url: String::new(),
            max_connections: d_store_max(),
            statement_timeout_secs: d_store_statement_timeout(),
            call_timeout_secs: d_store_call_timeout(),
        },
        api: ApiConfig::default(),
        collector: CollectorConfig::default(),
        secrets: SecretsConfig::default(),
        pools: PoolsConfig::default(),
        log: LogConfig::default(),
        metrics: MetricsConfig::default(),
        servers: ServersConfig::default(),
        jwt_secret_inline: None,
    };
    toml::Table::try_from(&cfg).unwrap_or_default()
}

/// An environment value typed after the default at the same path: strings stay strings, anything else
/// is read as a TOML value (`60`, `true`, `["https://a"]`), so a bad one is reported against its key.
fn env_value(template: &toml::Table, path: &[&str], raw: &str) -> toml::Value {
    let mut cur: Option<&toml::Value> = None;
    let mut table = Some(template);
    for part in path {
        cur = table.and_then(|t| t.get(*part));
        table = cur.and_then(toml::Value::as_table);
    }
    match cur {
        Some(toml::Value::String(_)) | None => toml::Value::String(raw.to_string()),
        Some(_) => format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let Some(t) = entry.as_table_mut() else { return };
        cur = t;
    }
    cur.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_and_env(
            text,
            "test.toml",
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
    }

    #[test]
    fn defaults_apply_and_env_overrides() {
        let c = load(
            "[store]\nurl = \"postgres://u:pw@h/db\"\n",
            &[
                ("PGMON_API__TOKEN_EXPIRATION_MINUTES", "5"),
                ("PGMON_POOLS__HIGH_LOAD__MAX", "30"),
            ],
        )
        .expect("config");
        assert_eq!(c.api.token_expiration_minutes, 5);
        assert_eq!(c.api.refresh_token_expiration_days, 7);
        assert_eq!(c.pools.high_load, PoolSize { min: 5, max: 30 });
        assert_eq!(c.collector.collect_interval_secs, 600);
        assert_eq!(
            (c.store.statement_timeout_secs, c.store.call_timeout_secs),
            (30, 45)
        );
        assert_eq!(c.collector.spool_max_mb, 256);
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let e = load("[store]\nurl = \"x\"\n[api]\nlisten_port = 1\n", &[]).expect_err("unknown key");
        assert!(e.to_string().contains("api"), "{e}");
        assert!(e.to_string().contains("listen_port"), "{e}");
        let e = load(
            "[store]\nurl = \"x\"\n",
            &[("PGMON_API__LISTEN", "nope"), ("PGMON_TEST_PG_URL", "x")],
        )
        .expect_err("bad value");
        assert!(e.to_string().contains("api.listen"), "{e}");
        let e =
            load("[store]\nurl = \"x\"\nstatement_timeout_secs = 60\n", &[]).expect_err("call <= statement");
        assert!(e.to_string().contains("store.call_timeout_secs"), "{e}");
        let e =
            load("[store]\nurl = \"x\"\n[collector]\nspool_dir = \"spool\"\n", &[]).expect_err("relative");
        assert!(e.to_string().contains("collector.spool_dir"), "{e}");
        let e = load("", &[]).expect_err("missing store.url");
        assert!(e.to_string().contains("store"), "{e}");
    }

    #[test]
    fn client_ip_and_login_limits_default_to_trusting_no_proxy() {
        let c = load("[store]\nurl = \"x\"\n", &[]).expect("config");
        assert!(c.api.trusted_proxy_nets().is_empty());
        assert_eq!(c.api.client_ip_header, "X-Forwarded-For");
        assert_eq!(c.api.login_ip_attempts_per_minute(), 20);
        let c = load(
            "[store]\nurl = \"x\"\n[api]\nlogin_attempts_per_minute_per_ip = 7\nclient_ip_header = \"X-Real-IP\"\n",
            &[],
        )
        .expect("config");
        assert_eq!(c.api.login_ip_attempts_per_minute(), 7);
        for bad in [
            "client_ip_header = \"X Real IP\"",
            "client_ip_header = \"\"",
            "login_attempts_per_minute_per_ip = 0",
        ] {
            let e = load(&format!("[store]\nurl = \"x\"\n[api]\n{bad}\n"), &[]).expect_err(bad);
            let key = bad.split(' ').next().unwrap_or_default();
            assert!(e.to_string().contains(&format!("api.{key}")), "{e}");
        }
    }

    #[test]
    fn original_variables_are_honoured() {
        let c = load(
            "",
            &[
                ("LOCAL_DB_DSN", "postgres://a@b/c"),
                ("SECRET_KEY", "s3cr3t"),
                ("LOG_LEVEL", "DEBUG"),
            ],
        )
        .expect("config");
        assert_eq!(c.store.url, "postgres://a@b/c");
        assert_eq!(c.jwt_secret_inline.as_deref(), Some("s3cr3t"));
        assert_eq!(c.log.level, "debug");
    }

    #[test]
    fn allowed_targets_default_and_bad_entries_are_named() {
        let c = load("[store]\nurl = \"x\"\n", &[]).expect("config");
        assert_eq!(c.servers.allowed_targets, ["0.0.0.0/0", "::/0"]);
        assert_eq!(c.servers.test_attempts_per_minute, 30);
        let c = load(
            "[store]\nurl = \"x\"\n[servers]\nallowed_targets = [\"10.0.0.0/8\", \"*.db.example.com\"]\n",
            &[],
        )
        .expect("config");
        assert_eq!(c.servers.allowed_targets.len(), 2);
        let e = load(
            "[store]\nurl = \"x\"\n[servers]\nallowed_targets = [\"10.0.0.0/99\"]\n",
            &[],
        )
        .expect_err("bad cidr");
        assert!(e.to_string().contains("servers.allowed_targets"), "{e}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        for url in [
            "postgres://u@h/db?password=s3cr3tpw",
            "postgres://u@h/db?sslmode=disable&password=s3cr3tpw",
            "host=h password=s3cr3tpw dbname=db",
        ] {
            let c = load(&format!("[store]\nurl = \"{url}\"\n"), &[]).expect("config");
            assert!(!format!("{c:?}").contains("s3cr3tpw"), "{url}");
        }
    }

    #[test]
    fn viewer_query_text_is_one_of_three() {
        let base = "[store]\nurl = \"x\"\n";
        assert_eq!(
            load(base, &[]).expect("default").api.viewer_query_text,
            QueryTextView::Normalized
        );
        let c = load(base, &[("PGMON_API__VIEWER_QUERY_TEXT", "none")]).expect("env");
        assert_eq!(c.api.viewer_query_text, QueryTextView::None);
        let c = load(&format!("{base}[api]\nviewer_query_text = \"full\"\n"), &[]).expect("file");
        assert_eq!(c.api.viewer_query_text, QueryTextView::Full);
        let e = load(&format!("{base}[api]\nviewer_query_text = \"some\"\n"), &[]).expect_err("bad");
        assert!(e.to_string().contains("api.viewer_query_text"), "{e}");
    }
}
