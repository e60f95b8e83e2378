//! `/servers`: CRUD and validation, roles, secrets never returned, Fernet interop with Python,
//! `NOTIFY pgmon_servers`, and `test-connection` against real PostgreSQL servers.

use pgmon_tests::http;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

use pgmon_tests::Roles as Setup;

async fn setup() -> Setup {
    Setup::start().await
}

/// Sends a request and returns the status and the raw body text (to search for leaked secrets).
async fn raw(method: &str, url: &str, token: &str, body: Option<&Value>) -> (StatusCode, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http::client().request(m, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    (resp.status(), resp.text().await.unwrap_or_default())
}

/// The shared test server, with credentials that work whatever its pg_hba.conf says.
fn local_pg(name: &str) -> Value {
    pgmon_tests::monitored::shared().server_json(name)
}

/// A port nothing listens on: a server registered there is refused at once (tests only send traffic
/// to loopback).
fn closed_port() -> u16 {
    pgmon_tests::cluster::free_port()
}

#[tokio::test]
async fn crud_defaults_validation_and_rename() {
    let s = setup().await;
    let url = s.api.url("/servers");
    let port = closed_port();
    let (st, created) = http::call(
        "POST",
        &url,
        Some(&s.operator),
        Some(&json!({"name": "prod-1", "host": "127.0.0.2", "port": port, "user": "pgmon", "password": "pw-1"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{created}");
    assert_eq!(created["port"], port);
    assert_eq!(created["dbname"], "postgres");
    assert_eq!(created["sslmode"], "prefer");
    assert_eq!(created["pool"], "default");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["has_password"], true);
    assert_eq!(created["ssh_enabled"], false);
    assert_eq!(created["ssh_auth_type"], "password");
    assert_eq!(created["has_ssh_password"], false);
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());
    // Registered and probed at once: nothing listens there, which the status says.
    assert_eq!(created["reachable"], false, "{created}");
    assert!(
        created["status"].as_str().is_some_and(|t| t.contains("error")),
        "{created}"
    );

    let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&local_pg("prod-1"))).await;
    assert_eq!(st, StatusCode::CONFLICT, "duplicate name: {body}");

    let bad_inputs = [
        json!({"name": "-bad", "host": "h", "user": "u"}),
        json!({"name": "a b", "host": "h", "user": "u"}),
        json!({"name": "x".repeat(65), "host": "h", "user": "u"}),
        json!({"name": "p2", "host": "h", "user": "u", "port": 0}),
        json!({"name": "p2", "host": "h", "user": "u", "port": 65536}),
        json!({"name": "p2", "host": "db host", "user": "u"}),
        json!({"name": "p2", "host": "h dbname=evil", "user": "u"}),
        json!({"name": "p2", "host": "postgres://h/db", "user": "u"}),
        json!({"name": "p2", "host": "h", "user": "u", "ssh_port": 0, "ssh_password": "x"}),
        json!({"name": "p2", "host": "h", "user": "u", "ssh_data_path": "relative", "ssh_password": "x"}),
        json!({"name": "p2", "host": "h", "user": "u", "ssh_key_id": "not-a-key"}),
        json!({"name": "p2", "user": "u"}),
        json!({"name": "p2", "host": "h"}),
    ];
    for b in &bad_inputs {
        let (st, body) = http::call("POST", &url, Some(&s.admin), Some(b)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{b} -> {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    for (b, field) in [
        (
            json!({"name": "p2", "host": "h", "user": "u", "colour": "red"}),
            "colour",
        ),
        (
            json!({"name": "p2", "host": "h", "user": "u", "port": "5432"}),
            "port",
        ),
    ] {
        let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&b)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b} -> {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(field)),
            "the error names {field}: {body}"
        );
    }
    let (_, list) = http::call("GET", &url, Some(&s.viewer), None).await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "no invalid server was stored: {list}"
    );

    // SSH settings with defaults taken from the server; "" keeps a stored secret.
    let (st, updated) = http::call(
        "PUT",
        &s.api.url("/servers/prod-1"),
        Some(&s.admin),
        Some(&json!({"ssh_password": "ssh-pw", "password": "", "description": "primary"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{updated}");
    assert_eq!(updated["has_password"], true, "an empty password is kept");
    assert_eq!(updated["description"], "primary");
    assert_eq!(updated["user"], "pgmon", "omitted fields keep their values");
    assert_eq!(updated["ssh_enabled"], true);
    assert_eq!(updated["ssh_host"], Value::Null, "SSH follows the host");
    assert_eq!(updated["ssh_port"], 22);
    assert_eq!(updated["ssh_user"], "postgres");
    assert_eq!(updated["ssh_data_path"], "/");
    assert_eq!(updated["has_ssh_password"], true);
    assert_eq!(updated["ssh_auth_type"], "password");
    assert_eq!(updated["ssh_host_key_fingerprint"], Value::Null);

    // A pinned host key survives unrelated edits and is forgotten when the SSH endpoint moves.
    let pool = s.env.db.pool().await;
    let pin = "SHA256:pinned-for-the-test";
    let set_pin =
        sqlx::query("UPDATE servers SET ssh_host_key_fingerprint = $1 WHERE name = 'prod-1'").bind(pin);
    set_pin.execute(&pool).await.expect("pin");
    let put = |body: Value| {
        let url = s.api.url("/servers/prod-1");
        let token = s.admin.clone();
        async move {
            let (st, out) = http::call("PUT", &url, Some(&token), Some(&body)).await;
            assert_eq!(st, StatusCode::OK, "{out}");
            out
        }
    };
    let out = put(json!({"enabled": false, "ssh_data_path": "/srv", "ssh_password": ""})).await;
    assert_eq!(out["ssh_host_key_fingerprint"], pin, "{out}");
    assert_eq!(out["ssh_data_path"], "/srv");
    assert_eq!(out["has_ssh_password"], true, "an empty ssh_password keeps it");
    assert_eq!(out["status"], "disabled");
    // A moved target keeps only the credentials given with the move (see tests/targets.rs).
    let out = put(json!({"host": "127.0.0.3", "password": "pw-2", "ssh_password": "ssh-pw-2"})).await;
    assert_eq!(out["ssh_host"], Value::Null, "{out}");
    assert_eq!(
        out["ssh_host_key_fingerprint"],
        Value::Null,
        "new endpoint, pin forgotten"
    );
    assert_eq!(
        (out["has_password"].clone(), out["has_ssh_password"].clone()),
        (json!(true), json!(true))
    );
    let out = put(json!({"ssh_host": "127.0.0.4", "ssh_password": "ssh-pw-3"})).await;
    assert_eq!(out["ssh_host"], "127.0.0.4");
    let out = put(json!({"host": "127.0.0.5", "password": "pw-3"})).await;
    assert_eq!(out["ssh_host"], "127.0.0.4", "an explicit ssh_host stays");
    assert_eq!(
        out["has_ssh_password"], true,
        "the SSH endpoint did not move: {out}"
    );
    let out = put(json!({"ssh_host": null, "ssh_password": "ssh-pw-4"})).await;
    assert_eq!(out["ssh_host"], Value::Null, "null: follow the host again");

    // Rename, and clear the password.
    let (st, renamed) = http::call(
        "PUT",
        &s.api.url("/servers/prod-1"),
        Some(&s.operator),
        Some(&json!({"name": "prod-2", "password": null, "port": null})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{renamed}");
    assert_eq!(
        renamed["id"], created["id"],
        "a rename keeps the id the stats refer to"
    );
    assert_eq!(renamed["has_password"], false);
    assert_eq!(renamed["port"], 5432, "null is the default port");
    assert_eq!(
        renamed["has_ssh_password"], true,
        "ssh settings were left out, so kept"
    );
    let (st, _) = http::call("GET", &s.api.url("/servers/prod-1"), Some(&s.viewer), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, got) = http::call("GET", &s.api.url("/servers/prod-2"), Some(&s.viewer), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["name"], "prod-2");

    // Turn SSH off (pgmon's `none`), then on again with a password.
    let (_, off) = http::call(
        "PUT",
        &s.api.url("/servers/prod-2"),
        Some(&s.admin),
        Some(&json!({"ssh_auth_type": "none"})),
    )
    .await;
    assert_eq!(off["ssh_enabled"], false, "{off}");
    assert_eq!(off["has_ssh_password"], false, "{off}");
    let (_, on) = http::call(
        "PUT",
        &s.api.url("/servers/prod-2"),
        Some(&s.admin),
        Some(&json!({"ssh_auth_type": "password", "ssh_password": "again", "ssh_user": "ops"})),
    )
    .await;
    assert_eq!(
        (on["ssh_enabled"].clone(), on["ssh_user"].clone()),
        (json!(true), json!("ops"))
    );

    // A rename onto an existing name is a conflict.
    let (st, _) = http::call("POST", &url, Some(&s.admin), Some(&local_pg("other"))).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = http::call(
        "PUT",
        &s.api.url("/servers/other"),
        Some(&s.admin),
        Some(&json!({"name": "prod-2"})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);

    let (st, gone) = http::call("DELETE", &s.api.url("/servers/prod-2"), Some(&s.operator), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(gone["message"], "Server prod-2 deleted");
    let (st, _) = http::call("GET", &s.api.url("/servers/prod-2"), Some(&s.admin), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = http::call("DELETE", &s.api.url("/servers/prod-2"), Some(&s.admin), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = http::call(
        "PUT",
        &s.api.url("/servers/nope"),
        Some(&s.admin),
        Some(&json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let events: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT event, login, details FROM audit_sessions WHERE event LIKE 'server%' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("audit");
    let created = events.iter().filter(|(e, ..)| e == "server_create").count();
    assert_eq!(created, 2, "{events:?}");
    assert!(
        events
            .iter()
            .any(|(e, l, _)| e == "server_update" && l.as_deref() == Some("op")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(e, _, d)| e == "server_update"
            && d.as_deref()
                .is_some_and(|d| d.contains("name prod-1 -> prod-2") && d.contains("password changed"))),
        "the update says what changed: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(e, l, _)| e == "server_delete" && l.as_deref() == Some("op")),
        "{events:?}"
    );
}

/// What the original's server form sends: the whole `GET` object back on save, with empty secrets
/// and read-only fields; key auth picked with a key id, or `""` for none.
#[tokio::test]
async fn the_original_forms_bodies_are_accepted() {
    let s = setup().await;
    let port = closed_port();
    let form = json!({"name": "orig", "host": "127.0.0.2", "user": "postgres", "password": "pw",
        "port": port, "ssh_user": "", "ssh_password": "", "ssh_port": 22, "ssh_auth_type": "password",
        "ssh_key_id": "", "ssh_key_passphrase": ""});
    let (st, created) = http::call("POST", &s.api.url("/servers"), Some(&s.admin), Some(&form)).await;
    assert_eq!(st, StatusCode::OK, "{created}");
    assert_eq!(created["ssh_enabled"], false, "no SSH credential, no SSH");
    assert_eq!(created["ssh_user"], "postgres");
    // The edit page sends back everything GET gave, secrets emptied.
    let (_, list) = http::call("GET", &s.api.url("/servers"), Some(&s.admin), None).await;
    let mut obj = list[0].clone();
    obj["password"] = json!("");
    obj["ssh_password"] = json!("new-ssh-pw");
    obj["ssh_key_passphrase"] = json!("");
    obj["ssh_key_id"] = json!("");
    obj["description"] = json!("edited");
    let (st, saved) = http::call("PUT", &s.api.url("/servers/orig"), Some(&s.admin), Some(&obj)).await;
    assert_eq!(st, StatusCode::OK, "{saved}");
    assert_eq!(
        saved["has_password"], true,
        "the empty password kept the stored one"
    );
    assert_eq!(saved["ssh_enabled"], true);
    assert_eq!(saved["description"], "edited");
    // A key: generate one, pick it in the form.
    let (st, key) = http::call(
        "POST",
        &s.api.url("/ssh-keys/generate"),
        Some(&s.admin),
        Some(&json!({"name": "k1", "key_type": "ed25519", "key_size": null, "passphrase": null, "description": null})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{key}");
    let mut obj = saved.clone();
    obj["ssh_auth_type"] = json!("key");
    obj["ssh_key_id"] = key["id"].clone();
    obj["ssh_password"] = json!("");
    let (st, keyed) = http::call("PUT", &s.api.url("/servers/orig"), Some(&s.admin), Some(&obj)).await;
    assert_eq!(st, StatusCode::OK, "{keyed}");
    assert_eq!(keyed["ssh_auth_type"], "key");
    assert_eq!(keyed["ssh_key_id"], key["id"]);
    assert_eq!(keyed["ssh_key_info"]["name"], "k1");
    assert_eq!(keyed["ssh_key_info"]["fingerprint"], key["fingerprint"]);
    assert_eq!(keyed["has_ssh_password"], false, "a key drops the password");
    let (_, keys) = http::call("GET", &s.api.url("/ssh-keys"), Some(&s.admin), None).await;
    assert_eq!(keys[0]["servers_count"], 1);
}

#[tokio::test]
async fn viewers_read_only_and_anonymous_refused() {
    let s = setup().await;
    let (st, _) = http::call(
        "POST",
        &s.api.url("/servers"),
        Some(&s.admin),
        Some(&local_pg("db")),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    for (method, path, body) in [
        ("POST", "/servers", Some(local_pg("db2"))),
        ("PUT", "/servers/db", Some(json!({"description": "x"}))),
        ("DELETE", "/servers/db", None),
        ("DELETE", "/servers/db/ssh-host-key", None),
        ("POST", "/servers/db/test-connection", None),
        ("POST", "/servers/db/test-pg", None),
        ("POST", "/servers/db/test-ssh", None),
    ] {
        let (st, body) = http::call(method, &s.api.url(path), Some(&s.viewer), body.as_ref()).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "viewer {method} {path}: {body}");
        assert!(
            body["detail"].is_string(),
            "the original's forms show `detail`: {body}"
        );
        let (st, _) = http::call(method, &s.api.url(path), None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "anonymous {method} {path}");
    }
    for path in ["/servers", "/servers/db"] {
        let (st, _) = http::call("GET", &s.api.url(path), Some(&s.viewer), None).await;
        assert_eq!(st, StatusCode::OK, "viewer GET {path}");
        let (st, _) = http::call("GET", &s.api.url(path), None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "anonymous GET {path}");
    }
    let (st, _) = http::call(
        "DELETE",
        &s.api.url("/servers/db/ssh-host-key"),
        Some(&s.operator),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, got) = http::call("GET", &s.api.url("/servers/db"), Some(&s.viewer), None).await;
    assert_eq!(got["description"], "", "the viewer's PUT changed nothing");
}

/// Python's `cryptography.fernet`, as the original backend used it.
fn python_decrypt(key: &str, text: &str) -> String {
    pgmon_tests::python_fernet("decrypt", key, text)
}

#[tokio::test]
async fn secrets_never_leave_encrypted_and_python_reads_them() {
    let s = setup().await;
    let pg_pw = "Pg-Secret-7f3a9";
    let ssh_pw = "Ssh-Secret-2b8c1";
    let body = json!({"name": "sec", "host": "127.0.0.2", "port": closed_port(), "user": "mon",
                      "password": pg_pw, "ssh_user": "ops", "ssh_password": ssh_pw,
                      "ssh_port": closed_port(), "ssh_data_path": "/var/lib/postgresql"});
    let mut texts = Vec::new();
    let (st, t) = raw("POST", &s.api.url("/servers"), &s.operator, Some(&body)).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    texts.push(t);
    texts.push(raw("GET", &s.api.url("/servers"), &s.viewer, None).await.1);
    texts.push(raw("GET", &s.api.url("/servers/sec"), &s.admin, None).await.1);
    texts.push(
        raw(
            "PUT",
            &s.api.url("/servers/sec"),
            &s.admin,
            Some(&json!({"password": "New-Pg-Secret-1"})),
        )
        .await
        .1,
    );
    texts.push(raw("GET", &s.api.url("/openapi.json"), &s.admin, None).await.1);
    for t in &texts {
        for secret in [pg_pw, ssh_pw, "New-Pg-Secret-1"] {
            assert!(!t.contains(secret), "a response contains a secret: {t}");
        }
        assert!(
            !t.contains("password_enc"),
            "a response names the encrypted column: {t}"
        );
    }
    assert!(
        !s.api.logs().contains(pg_pw) && !s.api.logs().contains(ssh_pw),
        "a secret was logged"
    );

    let pool = s.env.db.pool().await;
    let (pw_enc, ssh_enc): (String, String) =
        sqlx::query_as("SELECT password_enc, ssh_password_enc FROM servers WHERE name = 'sec'")
            .fetch_one(&pool)
            .await
            .expect("row");
    assert!(!pw_enc.contains("New-Pg-Secret-1") && !ssh_enc.contains(ssh_pw));
    assert_eq!(python_decrypt(&s.env.fernet_key, &pw_enc), "New-Pg-Secret-1");
    assert_eq!(python_decrypt(&s.env.fernet_key, &ssh_enc), ssh_pw);
}

#[tokio::test]
async fn every_change_notifies_collectors_with_the_server_name() {
    let s = setup().await;
    let mut listener = sqlx::postgres::PgListener::connect(&s.env.db.url)
        .await
        .expect("listener");
    listener.listen("pgmon_servers").await.expect("LISTEN");
    let base = s.api.url("/servers");
    assert_eq!(
        http::call("POST", &base, Some(&s.admin), Some(&local_pg("n1")))
            .await
            .0,
        StatusCode::OK
    );
    let put = json!({"description": "d"});
    assert_eq!(
        http::call("PUT", &format!("{base}/n1"), Some(&s.admin), Some(&put))
            .await
            .0,
        StatusCode::OK
    );
    let rename = json!({"name": "n2"});
    assert_eq!(
        http::call("PUT", &format!("{base}/n1"), Some(&s.admin), Some(&rename))
            .await
            .0,
        StatusCode::OK
    );
    let st = http::call("DELETE", &format!("{base}/n2/ssh-host-key"), Some(&s.admin), None)
        .await
        .0;
    assert_eq!(st, StatusCode::OK);
    let st = http::call("DELETE", &format!("{base}/n2"), Some(&s.admin), None)
        .await
        .0;
    assert_eq!(st, StatusCode::OK);
    // A refused change sends nothing.
    let st = http::call("POST", &base, Some(&s.viewer), Some(&local_pg("n3")))
        .await
        .0;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let mut got = Vec::new();
    for _ in 0..6 {
        let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification within 5 s")
            .expect("notification");
        got.push(n.payload().to_string());
    }
    assert_eq!(got, ["n1", "n1", "n1", "n2", "n2", "n2"]);
    let extra = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(extra.is_err(), "unexpected notification: {extra:?}");
}

const SCRAM_PASSWORD: &str = "right-password-1";

#[tokio::test]
async fn test_connection_reports_version_or_error_class() {
    let s = setup().await;
    // A cluster that asks for a password on TCP (scram-sha-256), as Debian's default does.
    let cluster = pgmon_tests::cluster::Cluster::start_with_password(SCRAM_PASSWORD);
    let closed_port = pgmon_tests::cluster::free_port();
    let shared = pgmon_tests::monitored::shared();
    let scram = cluster.login();
    // A server with TLS on a self-signed certificate, which no CA pgmon trusts vouches for.
    let pki = pgmon_tests::tls::Pki::new();
    pki.self_signed("selfsigned", "IP:127.0.0.1");
    let tls_cluster = pgmon_tests::cluster::Cluster::start();
    pgmon_tests::tls::serve(&tls_cluster, &pki, "selfsigned", "");
    let tls = tls_cluster.login();
    let with = |mut v: Value, extra: Value| {
        for (k, x) in extra.as_object().cloned().unwrap_or_default() {
            v[k] = x;
        }
        v
    };
    let servers = [
        shared.server_json("good"),
        scram.server_json("scram-good"),
        with(
            scram.server_json("scram-bad"),
            json!({"password": "wrong-password-9"}),
        ),
        with(scram.server_json("scram-nopass"), json!({"password": null})),
        with(
            shared.at_port(closed_port).server_json("closed"),
            json!({"password": "wrong-password-9"}),
        ),
        with(tls.server_json("tls-require"), json!({"sslmode": "require"})),
        with(tls.server_json("tls-verify"), json!({"sslmode": "verify-full"})),
    ];
    for b in &servers {
        let (st, body) = http::call("POST", &s.api.url("/servers"), Some(&s.admin), Some(b)).await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    let probe = |name: &str| {
        let url = s.api.url(&format!("/servers/{name}/test-connection"));
        let token = s.operator.clone();
        async move {
            let (st, body) = raw("POST", &url, &token, None).await;
            assert_eq!(st, StatusCode::OK, "{body}");
            assert!(
                !body.contains("wrong-password-9") && !body.contains(SCRAM_PASSWORD),
                "{body}"
            );
            serde_json::from_str::<Value>(&body).expect("json")
        }
    };
    for name in ["good", "scram-good"] {
        let r = probe(name).await;
        assert_eq!(r["ok"], true, "{name}: {r}");
        assert!(r["version"].as_str().is_some_and(|v| v.starts_with("15.")), "{r}");
        assert_eq!(r["in_recovery"], false);
        assert!(r["latency_ms"].as_f64().is_some_and(|l| l >= 0.0));
    }
    let r = probe("scram-bad").await;
    assert_eq!(
        (r["ok"].clone(), r["error"].clone()),
        (json!(false), json!("auth_failed")),
        "{r}"
    );
    assert!(r["message"].is_string());
    // Registered without a password, against a server that asks for one: said in those words.
    let r = probe("scram-nopass").await;
    assert_eq!(r["error"], "auth_failed", "{r}");
    assert_eq!(
        r["message"], "the server asks for a password and none is stored",
        "{r}"
    );
    // The original's test-pg: the same probe as `{success, message}`.
    let pg = |name: &str| {
        let url = s.api.url(&format!("/api/servers/{name}/test-pg"));
        let token = s.operator.clone();
        async move {
            let (st, body) = http::call("POST", &url, Some(&token), None).await;
            assert_eq!(st, StatusCode::OK, "{body}");
            body
        }
    };
    let r = pg("good").await;
    assert_eq!(r["success"], true, "{r}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("PG 15.") && m.contains("акт.")),
        "{r}"
    );
    let r = pg("scram-nopass").await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["message"], "the server asks for a password and none is stored");
    let r = probe("closed").await;
    assert_eq!(r["error"], "unreachable", "{r}");
    // libpq semantics: `require` encrypts without checking the certificate, `verify-full` checks it.
    let r = probe("tls-require").await;
    assert_eq!(r["ok"], true, "{r}");
    let r = probe("tls-verify").await;
    assert_eq!((&r["ok"], &r["error"]), (&json!(false), &json!("tls")), "{r}");
    let (st, _) = http::call(
        "POST",
        &s.api.url("/servers/ghost/test-connection"),
        Some(&s.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// The original frontend polls `GET /servers` every 10 s from every browser: the list answers from
/// what pgmon knows, at once, even with servers that accept TCP and never answer; their probes run in
/// the background and each row says how fresh its status is.
#[tokio::test]
async fn the_server_list_never_waits_on_a_dead_server() {
    let env = pgmon_tests::TestEnv::new(
        "login_attempts_per_minute = 1000\nserver_status_cache_ttl_secs = 1",
        "",
    )
    .await;
    env.add_user("viewer", "viewer", "viewer-password-1");
    let api = env.spawn_api().await;
    let token = http::token(&api.base, "viewer", "viewer-password-1").await;
    let pool = env.db.pool().await;
    let holes: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let shared = pgmon_tests::monitored::shared();
    for (i, h) in holes.iter().enumerate() {
        let port = h.local_addr().expect("addr").port();
        shared
            .at_port(port)
            .register(&pool, &env.fernet_key, &format!("hole-{i}"))
            .await;
    }
    shared.register(&pool, &env.fernet_key, "live").await;
    let url = api.url("/servers");
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    let mut last = Value::Null;
    // Seven seconds of polling: past the black holes' 5 s connect deadline.
    while started.elapsed() < Duration::from_secs(7) {
        let t = std::time::Instant::now();
        let (st, list) = http::call("GET", &url, Some(&token), None).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(st, StatusCode::OK, "{list}");
        last = list;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a request waited {slowest:?} on a probe (the connect deadline is 5 s)"
    );
    let row = |name: &str| {
        last.as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed: {last}"))
    };
    let live = row("live");
    assert_eq!(live["status"], "ok", "{live}");
    assert!(live["version"].is_string(), "{live}");
    for i in 0..3 {
        let hole = row(&format!("hole-{i}"));
        assert_eq!(hole["reachable"], false, "{hole}");
        assert_eq!(hole["error_class"], "timeout", "{hole}");
        assert!(
            hole["status"].as_str().is_some_and(|s| s.contains("error")),
            "{hole}"
        );
        assert_eq!(hole["status_source"], "api");
        assert!(hole["status_checked_at"].is_string());
    }
    drop(holes);
}
