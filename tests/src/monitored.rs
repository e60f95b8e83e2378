//! PostgreSQL servers the tests register as monitored servers, always with credentials that work
//! whatever the server's `pg_hba.conf` says about TCP logins.
//!
//! Every test that registers a server goes through [`PgLogin`]: the shared server with the harness's
//! own role and password (`PGMON_TEST_PG_URL`; `scripts/test.sh` creates `pgmon_test`), or a throwaway
//! [`crate::cluster::Cluster`] that configures its own authentication. A server registered as
//! `postgres` without a password works only where TCP logins are trusted (a development machine), not
//! on a fresh Debian whose PostgreSQL asks for a password.

use serde_json::{Value, json};
use sqlx::PgPool;

/// Where and as whom a monitored server is reached.
#[derive(Debug, Clone)]
pub struct PgLogin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// The server's maintenance database, where the collector connects first.
    pub dbname: String,
}

/// The shared test server (`PGMON_TEST_PG_URL`, else `postgres@127.0.0.1:5432`), with that URL's
/// user and password.
pub fn shared() -> PgLogin {
    let url = crate::pg_admin_url();
    let parsed = reqwest::Url::parse(&url).unwrap_or_else(|e| panic!("PGMON_TEST_PG_URL {url:?}: {e}"));
    let user = match parsed.username() {
        "" => "postgres".to_string(),
        u => percent_decode(u),
    };
    PgLogin {
        host: parsed.host_str().unwrap_or("127.0.0.1").to_string(),
        port: parsed.port().unwrap_or(5432),
        user,
        password: parsed.password().map(percent_decode),
        dbname: "postgres".into(),
    }
}

impl PgLogin {
    /// The same credentials on another port (a proxy in front of the server).
    pub fn at_port(&self, port: u16) -> Self {
        Self { port, ..self.clone() }
    }

    /// The same server with another maintenance database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        Self {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// A session target for `pgmon_shared::remote::connect`, with `sslmode`.
    pub fn target(&self, sslmode: pgmon_shared::remote::SslMode) -> pgmon_shared::remote::Target {
        pgmon_shared::remote::Target {
            host: self.host.clone(),
            port: self.port,
            dbname: self.dbname.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            sslmode,
        }
    }

    /// The body of `POST /servers` registering this server as `name` (no SSH, `sslmode=prefer`).
    pub fn server_json(&self, name: &str) -> Value {
        let mut v = json!({
            "name": name,
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "sslmode": "prefer",
        });
        if let Some(pw) = &self.password {
            v["password"] = json!(pw);
        }
        v
    }

    /// Inserts the server straight into the store (`fernet_key` encrypts the password, as the API
    /// would) and sends `NOTIFY pgmon_servers` so running collectors pick it up. Returns its id.
    pub async fn register(&self, store: &PgPool, fernet_key: &str, name: &str) -> i64 {
        let crypto = pgmon_shared::crypto::Crypto::from_key(fernet_key).expect("fernet key");
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO servers (name, host, port, dbname, username, password_enc, sslmode, pool)
             VALUES ($1, $2, $3, $4, $5, $6, 'prefer', 'default') RETURNING id",
        )
        .bind(name)
        .bind(&self.host)
        .bind(i32::from(self.port))
        .bind(&self.dbname)
        .bind(&self.user)
        .bind(self.password.as_deref().map(|p| crypto.encrypt(p)))
        .fetch_one(store)
        .await
        .expect("insert server");
        sqlx::query("SELECT pg_notify('pgmon_servers', $1)")
            .bind(name)
            .execute(store)
            .await
            .expect("notify");
        id
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
