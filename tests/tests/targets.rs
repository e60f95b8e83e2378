//! Stored credentials stay with the target they were given for, and pgmon connects only where
//! `servers.allowed_targets` allows: a PUT moving a server to a hostile listener sends it no stored
//! password, a moved SSH endpoint gets no stored SSH credential, link-local / metadata / narrowed-out
//! targets are refused on create, update, probes and by the collector, and probes are limited per user.

use pgmon_tests::sshd::{Sshd, TEST_PASSWORD, TEST_USER};
use pgmon_tests::{Roles, TestEnv, bin, http, monitored, run_cli, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A hostile "PostgreSQL" on loopback: answers SSLRequest with `N`, the startup message with
/// AuthenticationCleartextPassword (`'R'`, length 8, code 3), and records what the client sends next
/// (a password message `'p'` if the client has one), one entry per finished connection.
struct CleartextAsker {
    port: u16,
    after_auth_request: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CleartextAsker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CleartextAsker {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    if let Ok(bytes) = Self::serve(sock).await {
                        record.lock().expect("lock").push(bytes);
                    }
                });
            }
        });
        Self {
            port,
            after_auth_request: seen,
            task,
        }
    }

    async fn read_message(sock: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        sock.read_exact(&mut len).await?;
        let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
        sock.read_exact(&mut body).await?;
        Ok(body)
    }

    async fn serve(mut sock: tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
        let mut first = Self::read_message(&mut sock).await?;
        if first == 80_877_103u32.to_be_bytes() {
            sock.write_all(b"N").await?;
            first = Self::read_message(&mut sock).await?;
        }
        assert_eq!(first[..4], 196_608u32.to_be_bytes(), "a startup message");
        sock.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await?;
        // Whatever comes next, until the client gives up or one whole message has arrived.
        let mut after = Vec::new();
        let mut buf = [0u8; 1024];
        let read_all = async {
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => after.extend_from_slice(&buf[..n]),
                }
                if after.len() >= 5 {
                    let len = u32::from_be_bytes([after[1], after[2], after[3], after[4]]) as usize;
                    if after.len() > len {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(15), read_all).await;
        Ok(after)
    }

    fn connections(&self) -> Vec<Vec<u8>> {
        self.after_auth_request.lock().expect("lock").clone()
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn put(s: &Roles, name: &str, body: Value) -> Value {
    let (st, out) = http::call(
        "PUT",
        &s.api.url(&format!("/servers/{name}")),
        Some(&s.admin),
        Some(&body),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{out}");
    out
}

async fn probe(s: &Roles, token: &str, name: &str, what: &str) -> (StatusCode, Value) {
    http::call(
        "POST",
        &s.api.url(&format!("/servers/{name}/{what}")),
        Some(token),
        None,
    )
    .await
}

#[tokio::test]
async fn a_moved_server_sends_no_stored_password_to_its_new_target() {
    let s = Roles::start().await;
    let pg = monitored::shared();
    let stored_pw = pg
        .password
        .clone()
        .expect("the shared test server has a password");
    let (st, created) = http::call(
        "POST",
        &s.api.url("/servers"),
        Some(&s.admin),
        Some(&pg.server_json("moved")),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{created}");
    assert_eq!(created["has_password"], true);

    // Moved to a listener that asks for a cleartext password, without a new password.
    let hostile = CleartextAsker::start().await;
    let out = put(&s, "moved", json!({"host": "127.0.0.1", "port": hostile.port})).await;
    assert_eq!(out["has_password"], false, "{out}");
    assert_eq!(out["password_cleared"], true, "{out}");
    assert!(
        out["note"].as_str().is_some_and(|n| n.contains("password")),
        "the answer says why: {out}"
    );
    let (st, tested) = probe(&s, &s.operator, "moved", "test-connection").await;
    assert_eq!(st, StatusCode::OK, "{tested}");
    assert_eq!(tested["ok"], false, "{tested}");
    assert_eq!(tested["error"], "auth_failed", "{tested}");
    wait_for(
        "the probe to reach the listener",
        Duration::from_secs(20),
        || async { !hostile.connections().is_empty() },
    )
    .await;
    for after in hostile.connections() {
        assert_ne!(
            after.first(),
            Some(&b'p'),
            "a password message was sent: {after:?}"
        );
        assert!(
            !contains(&after, &stored_pw),
            "the stored password reached the new target"
        );
    }

    // A new password given with the move is the one sent (and proves the listener sees one).
    let seen_before = hostile.connections().len();
    let out = put(
        &s,
        "moved",
        json!({"dbname": "elsewhere", "password": "brand-new-pw"}),
    )
    .await;
    assert_eq!(out["has_password"], true, "{out}");
    assert!(out.get("password_cleared").is_none(), "{out}");
    probe(&s, &s.operator, "moved", "test-connection").await;
    wait_for("the new password to arrive", Duration::from_secs(20), || async {
        hostile.connections()[seen_before..]
            .iter()
            .any(|a| a.first() == Some(&b'p') && contains(a, "brand-new-pw"))
    })
    .await;
    assert!(
        hostile.connections().iter().all(|a| !contains(a, &stored_pw)),
        "the old password never left"
    );

    // The original's edit form: the whole object back, "" for the password, target unchanged.
    let (st, _) = http::call(
        "POST",
        &s.api.url("/servers"),
        Some(&s.admin),
        Some(&pg.server_json("kept")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, mut obj) = http::call("GET", &s.api.url("/servers/kept"), Some(&s.admin), None).await;
    obj["password"] = json!("");
    obj["ssh_password"] = json!("");
    obj["description"] = json!("edited in the form");
    let out = put(&s, "kept", obj).await;
    assert_eq!(out["has_password"], true, "{out}");
    assert!(out.get("password_cleared").is_none(), "{out}");
    let (_, tested) = probe(&s, &s.operator, "kept", "test-connection").await;
    assert_eq!(tested["ok"], true, "the kept password still connects: {tested}");
}

#[tokio::test]
async fn a_moved_ssh_endpoint_forgets_the_ssh_password_and_key() {
    let s = Roles::start().await;
    let first = Sshd::start();
    let other = Sshd::start();
    let mut body = monitored::shared().server_json("h");
    body["ssh_host"] = json!("127.0.0.1");
    body["ssh_port"] = json!(first.port);
    body["ssh_user"] = json!(TEST_USER);
    body["ssh_password"] = json!(TEST_PASSWORD);
    let (st, created) = http::call("POST", &s.api.url("/servers"), Some(&s.admin), Some(&body)).await;
    assert_eq!(st, StatusCode::OK, "{created}");
    let (_, ok) = probe(&s, &s.operator, "h", "test-ssh").await;
    assert_eq!(ok["success"], true, "{ok}");

    // Another sshd that would accept the same password: the move alone sends it nothing.
    let out = put(&s, "h", json!({"ssh_port": other.port})).await;
    assert_eq!(out["has_ssh_password"], false, "{out}");
    assert_eq!(out["ssh_enabled"], false, "{out}");
    assert_eq!(out["ssh_credentials_cleared"], true, "{out}");
    assert_eq!(out["ssh_port"], other.port, "the new endpoint is kept: {out}");
    assert_eq!(out["ssh_host_key_fingerprint"], Value::Null, "{out}");
    assert!(out["note"].as_str().is_some_and(|n| n.contains("SSH")), "{out}");
    assert_eq!(out["has_password"], true, "the PostgreSQL target did not move");
    let (st, refused) = probe(&s, &s.operator, "h", "test-ssh").await;
    assert_eq!(st, StatusCode::CONFLICT, "no SSH credential, no login: {refused}");

    // Given again with the move, it is used.
    let out = put(&s, "h", json!({"ssh_password": TEST_PASSWORD})).await;
    assert_eq!(out["ssh_enabled"], true, "{out}");
    let (_, ok) = probe(&s, &s.operator, "h", "test-ssh").await;
    assert_eq!(ok["success"], true, "{ok}");
    assert_eq!(ok["host_key_fingerprint"], other.host_fingerprint());

    // A key choice is forgotten the same way when the host moves.
    let (st, key) = http::call(
        "POST",
        &s.api.url("/ssh-keys/generate"),
        Some(&s.admin),
        Some(&json!({"name": "k", "key_type": "ed25519"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{key}");
    let out = put(&s, "h", json!({"ssh_auth_type": "key", "ssh_key_id": key["id"]})).await;
    assert_eq!(out["ssh_key_id"], key["id"], "{out}");
    let out = put(&s, "h", json!({"ssh_host": "localhost"})).await;
    assert_eq!(out["ssh_key_id"], Value::Null, "{out}");
    assert_eq!(out["ssh_enabled"], false, "{out}");
    assert_eq!(out["ssh_credentials_cleared"], true, "{out}");
}

fn refused_detail(body: &Value, rule: &str) {
    let d = body["detail"].as_str().unwrap_or_default();
    assert!(
        d.contains("servers.allowed_targets") && d.contains(rule),
        "the 422 names the rule ({rule}): {body}"
    );
}

#[tokio::test]
async fn link_local_and_metadata_targets_are_refused_everywhere() {
    let s = Roles::start().await;
    let url = s.api.url("/servers");
    let meta = json!({"name": "meta", "host": "169.254.169.254", "port": 80, "user": "u", "password": "pw"});
    let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&meta)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    refused_detail(&body, "metadata");
    let mut ssh_ll = monitored::shared().server_json("ssh-ll");
    ssh_ll["ssh_host"] = json!("169.254.10.10");
    ssh_ll["ssh_password"] = json!("pw");
    let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&ssh_ll)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    refused_detail(&body, "169.254.0.0/16 is link-local");
    let v6 = json!({"name": "v6", "host": "fe80::1", "user": "u"});
    let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&v6)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    refused_detail(&body, "link-local");

    let (st, _) = http::call(
        "POST",
        &url,
        Some(&s.admin),
        Some(&monitored::shared().server_json("ok")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = http::call(
        "PUT",
        &s.api.url("/servers/ok"),
        Some(&s.admin),
        Some(&json!({"host": "169.254.169.254", "password": "pw"})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    refused_detail(&body, "metadata");
    let (_, list) = http::call("GET", &url, Some(&s.admin), None).await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "nothing refused was stored: {list}"
    );
    assert_eq!(
        list[0]["host"],
        monitored::shared().host,
        "the refused PUT changed nothing"
    );

    // Written behind the API's back: the probes refuse too, before connecting.
    let pool = s.env.db.pool().await;
    sqlx::query("UPDATE servers SET host = '169.254.169.254' WHERE name = 'ok'")
        .execute(&pool)
        .await
        .expect("update");
    for what in ["test-connection", "test-pg"] {
        let (st, body) = probe(&s, &s.operator, "ok", what).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        refused_detail(&body, "metadata");
    }
    sqlx::query(
        "UPDATE servers SET host = '127.0.0.1', ssh_enabled = true, ssh_host = '169.254.1.2',
         ssh_port = 22, ssh_username = 'u', ssh_password_enc = password_enc WHERE name = 'ok'",
    )
    .execute(&pool)
    .await
    .expect("update ssh");
    let (st, body) = probe(&s, &s.operator, "ok", "test-ssh").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    refused_detail(&body, "link-local");
}

const NARROW: &str = "[servers]\nallowed_targets = [\"10.0.0.0/8\"]\n";

#[tokio::test]
async fn a_narrowed_policy_refuses_loopback_by_address_and_by_name() {
    let s = Roles::start_with_config("", NARROW).await;
    let url = s.api.url("/servers");
    let pg = monitored::shared();
    let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&pg.server_json("lo"))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    refused_detail(&body, "in no allowed network");
    // A name is checked after DNS: localhost resolves to loopback, which is not allowed here.
    let mut by_name = pg.server_json("by-name");
    by_name["host"] = json!("localhost");
    let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&by_name)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    refused_detail(&body, "in no allowed network");

    // A server stored before the policy was narrowed is not reached by the probes.
    let pool = s.env.db.pool().await;
    pg.register(&pool, &s.env.fernet_key, "old").await;
    let (st, body) = probe(&s, &s.operator, "old", "test-connection").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    refused_detail(&body, "in no allowed network");
    // ... nor by the live status, which says why.
    let (_, got) = http::call("GET", &s.api.url("/servers/old"), Some(&s.viewer), None).await;
    assert_eq!(got["reachable"], false, "{got}");
    assert_eq!(got["error_class"], "refused", "{got}");
    // Its description can still be edited: only a moved endpoint is checked on update.
    let out = put(&s, "old", json!({"description": "legacy"})).await;
    assert_eq!(out["description"], "legacy");
}

#[tokio::test]
async fn a_host_name_glob_allows_what_its_cidrs_do_not() {
    let s = Roles::start_with_config(
        "",
        "[servers]\nallowed_targets = [\"10.0.0.0/8\", \"localhost\"]\n",
    )
    .await;
    let mut body = monitored::shared().server_json("named");
    body["host"] = json!("localhost");
    let (st, out) = http::call("POST", &s.api.url("/servers"), Some(&s.admin), Some(&body)).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    let (_, tested) = probe(&s, &s.operator, "named", "test-connection").await;
    assert_eq!(tested["ok"], true, "{tested}");
    let mut by_ip = monitored::shared().server_json("by-ip");
    by_ip["host"] = json!("127.0.0.1");
    let (st, out) = http::call("POST", &s.api.url("/servers"), Some(&s.admin), Some(&by_ip)).await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a glob never admits an address: {out}"
    );
}

#[tokio::test]
async fn a_collector_with_a_narrowed_policy_does_not_connect() {
    let env = TestEnv::new("", NARROW).await;
    let cli = |args: &[&str]| run_cli(&bin("pgmon-collector"), &env.config_path, args, None);
    let (code, out, err) = cli(&["migrate"]);
    assert_eq!(code, 0, "{out} {err}");
    let store = env.db.pool().await;
    let pg = monitored::shared();
    let id = pg.register(&store, &env.fernet_key, "narrowed").await;
    let (code, out, err) = cli(&["once", "--task", "stats"]);
    assert_eq!(code, 0, "a refused server is a per-server failure: {out} {err}");
    let (up, class, error): (bool, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT up, error_class, error FROM availability WHERE server_id = $1 ORDER BY slot DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(&store)
    .await
    .expect("an availability sample");
    assert!(!up);
    assert_eq!(class.as_deref(), Some("refused"));
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("servers.allowed_targets")),
        "{error:?}"
    );
    assert!(err.contains("target refused"), "logged: {err}");
}

#[tokio::test]
async fn the_31st_probe_in_a_minute_by_one_user_is_429() {
    let s = Roles::start().await;
    let closed = pgmon_tests::cluster::free_port();
    let body = json!({"name": "closed", "host": "127.0.0.1", "port": closed, "user": "u"});
    let (st, _) = http::call("POST", &s.api.url("/servers"), Some(&s.admin), Some(&body)).await;
    assert_eq!(st, StatusCode::OK);
    for i in 0..30 {
        let what = if i % 2 == 0 { "test-connection" } else { "test-pg" };
        let (st, out) = probe(&s, &s.operator, "closed", what).await;
        assert_eq!(st, StatusCode::OK, "attempt {}: {out}", i + 1);
    }
    let resp = http::client()
        .post(s.api.url("/servers/closed/test-connection"))
        .bearer_auth(&s.operator)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("30 a minute")),
        "{body}"
    );
    let (st, _) = probe(&s, &s.operator, "closed", "test-ssh").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "test-ssh shares the budget");
    let (st, out) = probe(&s, &s.admin, "closed", "test-connection").await;
    assert_eq!(st, StatusCode::OK, "another user has their own budget: {out}");
}
