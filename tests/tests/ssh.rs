//! `POST /servers/{name}/test-ssh` against a real sshd: key and password logins, trust on first use of
//! the host key, and every error class.

use pgmon_tests::http;
use pgmon_tests::sshd::{Sshd, TEST_PASSWORD, TEST_USER, fingerprint_of, ssh_keygen};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The shared role set-up, plus the helpers below.
struct Setup(pgmon_tests::Roles);

impl std::ops::Deref for Setup {
    type Target = pgmon_tests::Roles;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

async fn setup() -> Setup {
    Setup(pgmon_tests::Roles::start().await)
}

impl Setup {
    /// Registers the shared PostgreSQL as `name`, reached over SSH on `port` as the test user with
    /// `ssh` (`ssh_password`, or `ssh_key_id` with `ssh_auth_type` key, and `ssh_data_path`).
    async fn add_server(&self, name: &str, port: u16, ssh: Value) {
        let mut body = pgmon_tests::monitored::shared().server_json(name);
        body["ssh_host"] = json!("127.0.0.1");
        body["ssh_port"] = json!(port);
        body["ssh_user"] = json!(TEST_USER);
        for (k, v) in ssh.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        let (st, b) = http::call("POST", &self.api.url("/servers"), Some(&self.admin), Some(&body)).await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }

    async fn test_ssh(&self, name: &str) -> Value {
        let resp = http::client()
            .post(self.api.url(&format!("/servers/{name}/test-ssh")))
            .bearer_auth(&self.operator)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("test-ssh");
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.expect("body");
        assert!(!text.contains(TEST_PASSWORD), "the password came back: {text}");
        serde_json::from_str(&text).expect("json")
    }
}

fn assert_ok(r: &Value, sshd: &Sshd) {
    assert_eq!(r["success"], true, "{r}");
    assert!(
        r["message"].as_str().is_some_and(|m| m.starts_with("SSH OK")),
        "{r}"
    );
    assert_eq!(r["host_key_fingerprint"], sshd.host_fingerprint(), "{r}");
    let disk = &r["disk"];
    let total = disk["total_bytes"].as_u64().expect("total");
    let used = disk["used_bytes"].as_u64().expect("used");
    let avail = disk["available_bytes"].as_u64().expect("available");
    assert!(total > 0 && used <= total && avail <= total, "{disk}");
    assert!(
        disk["mount"].as_str().is_some_and(|m| m.starts_with('/')),
        "{disk}"
    );
    assert!(r["latency_ms"].as_f64().is_some_and(|l| l > 0.0));
}

#[tokio::test]
async fn generated_key_pins_the_host_key_then_refuses_a_changed_one_until_cleared() {
    let s = setup().await;
    let mut sshd = Sshd::start();
    let (st, key) = http::call(
        "POST",
        &s.api.url("/ssh-keys/generate"),
        Some(&s.admin),
        Some(&json!({"name": "gen", "key_type": "ed25519"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{key}");
    sshd.authorize(key["public_key"].as_str().expect("public_key"));
    s.add_server(
        "h1",
        sshd.port,
        json!({"ssh_auth_type": "key", "ssh_key_id": key["id"], "ssh_data_path": "/tmp"}),
    )
    .await;

    let first = s.test_ssh("h1").await;
    assert_ok(&first, &sshd);
    let (_, server) = http::call("GET", &s.api.url("/servers/h1"), Some(&s.admin), None).await;
    assert_eq!(
        server["ssh_host_key_fingerprint"],
        sshd.host_fingerprint(),
        "pinned at first contact"
    );
    assert_ok(&s.test_ssh("h1").await, &sshd);

    let old = sshd.host_fingerprint();
    sshd.replace_host_key();
    let new = sshd.host_fingerprint();
    assert_ne!(old, new);
    let r = s.test_ssh("h1").await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["auth_type"], "key", "{r}");
    assert_eq!(r["error"], "host_key_mismatch", "{r}");
    assert_eq!(r["host_key_fingerprint"], new);
    let (_, server) = http::call("GET", &s.api.url("/servers/h1"), Some(&s.admin), None).await;
    assert_eq!(
        server["ssh_host_key_fingerprint"], old,
        "a mismatch keeps the pin"
    );

    let (st, _) = http::call(
        "DELETE",
        &s.api.url("/servers/h1/ssh-host-key"),
        Some(&s.operator),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_ok(&s.test_ssh("h1").await, &sshd);
    let (_, server) = http::call("GET", &s.api.url("/servers/h1"), Some(&s.admin), None).await;
    assert_eq!(server["ssh_host_key_fingerprint"], new, "the new key is pinned");
}

#[tokio::test]
async fn imported_rsa_and_encrypted_keys_log_in_and_a_wrong_key_is_auth_failed() {
    let s = setup().await;
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ids = Vec::new();
    for (name, args, pass) in [
        (
            "rsa-pem",
            vec!["-t", "rsa", "-b", "3072", "-m", "PEM", "-N", ""],
            None,
        ),
        (
            "ed-enc",
            vec!["-t", "ed25519", "-N", "imp-pass-1"],
            Some("imp-pass-1"),
        ),
        ("unauthorized", vec!["-t", "ed25519", "-N", ""], None),
    ] {
        let path = dir.path().join(name);
        let p = path.display().to_string();
        let mut all = vec!["-q", "-C", "t@test", "-f", p.as_str()];
        all.extend(args);
        ssh_keygen(&all);
        let public = std::fs::read_to_string(dir.path().join(format!("{name}.pub"))).expect("pub");
        if name != "unauthorized" {
            sshd.authorize(&public);
        }
        let private = std::fs::read_to_string(&path).expect("key");
        let (st, key) = http::call(
            "POST",
            &s.api.url("/ssh-keys/import"),
            Some(&s.admin),
            Some(&json!({"name": name, "private_key": private, "passphrase": pass})),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{key}");
        assert_eq!(
            key["fingerprint"],
            fingerprint_of(&dir.path().join(format!("{name}.pub")))
        );
        ids.push((name, key["id"].clone()));
    }
    for (name, id) in &ids {
        s.add_server(name, sshd.port, json!({"ssh_auth_type": "key", "ssh_key_id": id}))
            .await;
    }
    assert_ok(&s.test_ssh("rsa-pem").await, &sshd);
    assert_ok(&s.test_ssh("ed-enc").await, &sshd);
    let r = s.test_ssh("unauthorized").await;
    assert_eq!(
        (r["success"].clone(), r["error"].clone()),
        (json!(false), json!("auth_failed")),
        "{r}"
    );
    let (_, server) = http::call("GET", &s.api.url("/servers/unauthorized"), Some(&s.admin), None).await;
    assert_eq!(
        server["ssh_host_key_fingerprint"],
        Value::Null,
        "only a successful login pins"
    );
}

/// Python's `cryptography.fernet`, as the original backend used it.
fn python_encrypt(key: &str, text: &str) -> String {
    pgmon_tests::python_fernet("encrypt", key, text)
}

#[tokio::test]
async fn password_login_including_a_password_encrypted_by_python() {
    let s = setup().await;
    let sshd = Sshd::start();
    s.add_server(
        "pw",
        sshd.port,
        json!({"ssh_password": TEST_PASSWORD, "ssh_data_path": "/"}),
    )
    .await;
    assert_ok(&s.test_ssh("pw").await, &sshd);

    s.add_server("wrong-pw", sshd.port, json!({"ssh_password": "not-the-password"}))
        .await;
    let r = s.test_ssh("wrong-pw").await;
    assert_eq!(r["error"], "auth_failed", "{r}");

    // A token written by Python's Fernet with the same key file decrypts and logs in.
    let pool = s.env.db.pool().await;
    let token = python_encrypt(&s.env.fernet_key, TEST_PASSWORD);
    sqlx::query("UPDATE servers SET ssh_password_enc = $1 WHERE name = 'wrong-pw'")
        .bind(&token)
        .execute(&pool)
        .await
        .expect("update");
    assert_ok(&s.test_ssh("wrong-pw").await, &sshd);
}

#[tokio::test]
async fn unreachable_silent_peer_and_failing_command() {
    let s = setup().await;
    let sshd = Sshd::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    s.add_server("closed", closed, json!({"ssh_password": TEST_PASSWORD}))
        .await;
    let r = s.test_ssh("closed").await;
    assert_eq!(r["error"], "unreachable", "{r}");

    // Accepts TCP, never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    s.add_server("silent", silent_port, json!({"ssh_password": TEST_PASSWORD}))
        .await;
    let started = Instant::now();
    let r = s.test_ssh("silent").await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "test-ssh must answer within 15 s"
    );
    assert_eq!(r["error"], "timeout", "{r}");
    hold.abort();

    // The data path reaches df as one quoted word: no shell injection, just a failing df.
    let marker = std::env::temp_dir().join(format!("pgmon-injected-{}", uuid::Uuid::new_v4().simple()));
    let path = format!("/nonexistent'; touch {}; echo '", marker.display());
    s.add_server(
        "inject",
        sshd.port,
        json!({"ssh_password": TEST_PASSWORD, "ssh_data_path": path}),
    )
    .await;
    let r = s.test_ssh("inject").await;
    assert_eq!(r["error"], "command_failed", "{r}");
    assert!(!marker.exists(), "the data path was executed by the shell");
    // Only a complete success pins the host key.
    let (_, server) = http::call("GET", &s.api.url("/servers/inject"), Some(&s.admin), None).await;
    assert_eq!(server["ssh_host_key_fingerprint"], Value::Null);

    // No SSH settings at all: a client error, not a probe result.
    let body = pgmon_tests::monitored::shared().server_json("nossh");
    http::call("POST", &s.api.url("/servers"), Some(&s.admin), Some(&body)).await;
    let (st, _) = http::call(
        "POST",
        &s.api.url("/servers/nossh/test-ssh"),
        Some(&s.operator),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
}

/// `GET /server_stats/{name}`: the disk part comes over SSH, pins the host key on first use, is
/// served from the cache while sshd is gone, and a dead SSH endpoint is a failed disk part of a
/// normal answer.
#[tokio::test]
async fn live_status_reads_disk_usage_over_ssh_and_caches_it() {
    let s = setup().await;
    let sshd = Sshd::start();
    s.add_server(
        "disk",
        sshd.port,
        json!({"ssh_password": TEST_PASSWORD, "ssh_data_path": "/"}),
    )
    .await;
    let url = s.api.url("/server_stats/disk");
    let (st, first) = http::call("GET", &url, Some(&s.viewer), None).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(first["reachable"], true, "{first}");
    let disk = &first["disk"];
    assert_eq!(disk["ok"], true, "{first}");
    let total = disk["total_bytes"].as_u64().expect("total");
    let used = disk["used_bytes"].as_u64().expect("used");
    assert!(total > 0 && used <= total, "{disk}");
    assert!(
        disk["mount"].as_str().is_some_and(|m| m.starts_with('/')),
        "{disk}"
    );
    assert!(!first.to_string().contains(TEST_PASSWORD));
    let pool = s.env.db.pool().await;
    let pinned: Option<String> =
        sqlx::query_scalar("SELECT ssh_host_key_fingerprint FROM servers WHERE name = 'disk'")
            .fetch_one(&pool)
            .await
            .expect("fingerprint");
    assert_eq!(pinned.as_deref(), Some(sshd.host_fingerprint().as_str()));

    // Within ssh_cache_ttl_secs the disk part is not fetched again: sshd can be gone.
    let port = sshd.port;
    drop(sshd);
    let (_, second) = http::call("GET", &url, Some(&s.viewer), None).await;
    assert_eq!(second["disk"], first["disk"], "{second}");

    // Nothing listens on that port any more: the disk part fails, the answer is still normal.
    s.add_server(
        "disk-down",
        port,
        json!({"ssh_password": TEST_PASSWORD, "ssh_data_path": "/"}),
    )
    .await;
    let t = Instant::now();
    let (st, down) = http::call(
        "GET",
        &s.api.url("/server_stats/disk-down"),
        Some(&s.viewer),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{down}");
    assert_eq!(down["reachable"], true, "{down}");
    assert_eq!(down["disk"]["ok"], false, "{down}");
    assert_eq!(down["disk"]["error_class"], "unreachable", "{down}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}
