//! `/ssh-keys`: generation (fingerprints as ssh-keygen prints them), import of every supported format,
//! plain and encrypted, the file upload and its limits, renames, deletion while in use, roles, and
//! private keys absent from every response.

use pgmon_tests::http;
use pgmon_tests::sshd::{fingerprint_of, ssh_keygen};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use pgmon_tests::Roles as Setup;

async fn setup() -> Setup {
    Setup::start().await
}

/// Writes a public key line to a file and returns ssh-keygen's fingerprint of it.
fn keygen_fingerprint(dir: &Path, line: &str) -> String {
    let p = dir.join(format!("k{}.pub", uuid::Uuid::new_v4().simple()));
    std::fs::write(&p, format!("{line}\n")).expect("write pub");
    fingerprint_of(&p)
}

/// Generates a key with ssh-keygen: returns (private key path, public key path).
fn keygen(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    let path = dir.join(name);
    let mut all = vec!["-q", "-C", "imported@test", "-f"];
    let p = path.display().to_string();
    all.push(&p);
    all.extend_from_slice(args);
    ssh_keygen(&all);
    (path.clone(), dir.join(format!("{name}.pub")))
}

#[tokio::test]
async fn generated_keys_match_ssh_keygen_and_private_parts_stay_inside() {
    let s = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = s.api.url("/ssh-keys/generate");
    let (st, ed) = http::call(
        "POST",
        &url,
        Some(&s.operator),
        Some(
            &json!({"name": "ed", "key_type": "ed25519", "key_size": null, "comment": "pgmon@prod",
                    "passphrase": "ignored-pass", "description": "the deploy key"}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{ed}");
    assert_eq!(ed["key_type"], "ed25519");
    assert_eq!(ed["description"], "the deploy key");
    assert_eq!(
        ed["has_passphrase"], false,
        "pgmon keeps keys without a passphrase"
    );
    assert_eq!(ed["servers_count"], 0);
    assert_eq!(ed["comment"], "pgmon@prod");
    assert_eq!(ed["created_by"], "op");
    let line = ed["public_key"].as_str().expect("public_key");
    assert!(line.starts_with("ssh-ed25519 ") && line.ends_with(" pgmon@prod") && !line.contains('\n'));
    assert_eq!(ed["fingerprint"], keygen_fingerprint(dir.path(), line));

    let (st, rsa) = http::call(
        "POST",
        &url,
        Some(&s.admin),
        Some(&json!({"name": "rsa", "key_type": "rsa", "key_size": 2048, "passphrase": null, "description": null})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{rsa}");
    assert_eq!(rsa["bits"], 2048, "the original UI's default size");
    assert_eq!(rsa["key_type"], "rsa");
    let line = rsa["public_key"].as_str().expect("public_key");
    assert!(line.starts_with("ssh-rsa "));
    assert_eq!(rsa["fingerprint"], keygen_fingerprint(dir.path(), line));

    for bad in [
        json!({"name": "x", "key_type": "rsa", "key_size": 1024}),
        json!({"name": "", "key_type": "ed25519"}),
        json!({"name": "a/b", "key_type": "ed25519"}),
        json!({"name": "x", "key_type": "ed25519", "comment": "two\nlines"}),
    ] {
        let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&bad)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (st, _) = http::call(
        "POST",
        &url,
        Some(&s.admin),
        Some(&json!({"name": "x", "key_type": "dsa"})),
    )
    .await;
    assert!(st.is_client_error() && st != StatusCode::NOT_FOUND, "dsa: {st}");
    let (st, _) = http::call(
        "POST",
        &url,
        Some(&s.admin),
        Some(&json!({"name": "ed", "key_type": "ed25519"})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "duplicate name");

    // The private key is stored Fernet-encrypted and returned by nothing.
    let pool = s.env.db.pool().await;
    let token: String = sqlx::query_scalar("SELECT private_key_enc FROM ssh_keys WHERE name = 'ed'")
        .fetch_one(&pool)
        .await
        .expect("row");
    assert!(!token.contains("PRIVATE KEY"));
    let private = python_decrypt(&s.env.fernet_key, &token);
    assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    let body_line = private.lines().nth(1).expect("key body");
    let id = ed["id"].as_str().expect("id");
    let mut texts = Vec::new();
    for path in [
        "/ssh-keys".to_string(),
        format!("/ssh-keys/{id}"),
        format!("/ssh-keys/{id}/download-public"),
    ] {
        let resp = http::client()
            .get(s.api.url(&path))
            .bearer_auth(&s.admin)
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        texts.push(resp.text().await.expect("body"));
    }
    texts.push(ed.to_string());
    for t in &texts {
        assert!(
            !t.contains("PRIVATE KEY") && !t.contains(body_line),
            "private key in a response: {t}"
        );
    }
    assert!(!s.api.logs().contains(body_line), "private key in the log");
}

/// Python's `cryptography.fernet`, as the original backend used it.
fn python_decrypt(key: &str, text: &str) -> String {
    pgmon_tests::python_fernet("decrypt", key, text)
}

#[tokio::test]
async fn imports_every_format_and_says_what_is_wrong() {
    let s = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("openssh-ed25519", vec!["-t", "ed25519", "-N", ""], None),
        (
            "openssh-ed25519-enc",
            vec!["-t", "ed25519", "-N", "key-pass-1"],
            Some("key-pass-1"),
        ),
        (
            "pkcs1-rsa",
            vec!["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""],
            None,
        ),
        (
            "pkcs1-rsa-enc",
            vec!["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "key-pass-2"],
            Some("key-pass-2"),
        ),
        (
            "pkcs8-rsa",
            vec!["-t", "rsa", "-b", "2048", "-m", "PKCS8", "-N", ""],
            None,
        ),
        (
            "openssh-rsa-enc",
            vec!["-t", "rsa", "-b", "2048", "-N", "key-pass-3"],
            Some("key-pass-3"),
        ),
        (
            "pkcs8-rsa-enc",
            vec!["-t", "rsa", "-b", "2048", "-m", "PKCS8", "-N", "key-pass-4"],
            Some("key-pass-4"),
        ),
        ("openssh-ecdsa", vec!["-t", "ecdsa", "-b", "256", "-N", ""], None),
    ];
    let url = s.api.url("/ssh-keys/import");
    for (name, args, pass) in &cases {
        let (private, public) = keygen(dir.path(), name, args);
        let text = std::fs::read_to_string(&private).expect("key");
        if let Some(p) = pass {
            let (st, body) = http::call(
                "POST",
                &url,
                Some(&s.admin),
                Some(&json!({"name": name, "private_key": text})),
            )
            .await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{name} without passphrase");
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("passphrase is required")),
                "{body}"
            );
            let (st, body) = http::call(
                "POST",
                &url,
                Some(&s.admin),
                Some(&json!({"name": name, "private_key": text, "passphrase": "not-it"})),
            )
            .await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{name} wrong passphrase");
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("wrong passphrase")),
                "{body}"
            );
            assert!(!body.to_string().contains("not-it") && !body.to_string().contains(p));
        }
        let (st, body) = http::call(
            "POST",
            &url,
            Some(&s.operator),
            Some(&json!({"name": name, "private_key": text, "passphrase": pass})),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["fingerprint"], fingerprint_of(&public), "{name}");
        let expected_type = ["rsa", "ecdsa", "ed25519"]
            .into_iter()
            .find(|t| name.contains(t))
            .unwrap_or("ed25519");
        assert_eq!(body["key_type"], expected_type);
        if expected_type == "rsa" {
            assert_eq!(body["bits"], 2048);
        }
        assert!(!body.to_string().contains("PRIVATE KEY"));
        // A line from the middle of an RSA key file is private material only (OpenSSH files also
        // embed the public key, so their lines may legitimately overlap it).
        let lines: Vec<&str> = text.lines().collect();
        if expected_type == "rsa" {
            let middle = lines[lines.len() / 2];
            assert!(
                !body.to_string().contains(middle),
                "{name}: private key material in the response"
            );
        }
    }
    for garbage in [
        "",
        "hello",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    ] {
        let (st, body) = http::call(
            "POST",
            &url,
            Some(&s.admin),
            Some(&json!({"name": "junk", "private_key": garbage})),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{garbage:?}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("not a private key")),
            "{body}"
        );
    }
    // A public key is not a private key.
    let (_, public) = keygen(dir.path(), "pubonly", &["-t", "ed25519", "-N", ""]);
    let text = std::fs::read_to_string(public).expect("pub");
    let (st, _) = http::call(
        "POST",
        &url,
        Some(&s.admin),
        Some(&json!({"name": "pub", "private_key": text})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // The same key under another name: refused, naming the stored one.
    let (private, _) = keygen(dir.path(), "dupe", &["-t", "ed25519", "-N", ""]);
    let text = std::fs::read_to_string(&private).expect("key");
    let first = json!({"name": "once", "private_key": text, "description": "d"});
    let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&first)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let again = json!({"name": "twice", "private_key": text});
    let (st, body) = http::call("POST", &url, Some(&s.admin), Some(&again)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("once")),
        "{body}"
    );

    // JSON bodies over 64 KiB are refused before parsing.
    let big = json!({"name": "big", "private_key": "A".repeat(70 * 1024)});
    let (st, _) = http::call("POST", &url, Some(&s.admin), Some(&big)).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
}

async fn upload(s: &Setup, name: &str, file: Vec<u8>, passphrase: Option<&str>) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(file).file_name("id_key"))
        .text("name", name.to_string());
    if let Some(p) = passphrase {
        form = form.text("passphrase", p.to_string());
    }
    let resp = http::client()
        .post(s.api.url("/ssh-keys/import-file"))
        .bearer_auth(&s.operator)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn import_file_accepts_keys_and_refuses_large_files() {
    let s = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (private, public) = keygen(dir.path(), "enc", &["-t", "ed25519", "-N", "file-pass"]);
    let bytes = std::fs::read(&private).expect("key");
    let (st, body) = upload(&s, "from-file", bytes.clone(), Some("file-pass")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["fingerprint"], fingerprint_of(&public));
    let (st, body) = upload(&s, "from-file-2", bytes, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");

    // Just over 1 MiB: within the request limit (1 MiB + 16 KiB), refused by the file check.
    let mut big = std::fs::read(&private).expect("key");
    big.resize(1024 * 1024 + 100, b'\n');
    let (st, body) = upload(&s, "big", big, Some("file-pass")).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (st, body) = upload(&s, "binary", vec![0xff, 0xfe, 0x00, 0x01], None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");

    let (_, list) = http::call("GET", &s.api.url("/ssh-keys"), Some(&s.admin), None).await;
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["from-file"]);
}

#[tokio::test]
async fn rename_usage_delete_download_and_roles() {
    let s = setup().await;
    let gen_url = s.api.url("/ssh-keys/generate");
    let (_, key) = http::call(
        "POST",
        &gen_url,
        Some(&s.admin),
        Some(&json!({"name": "deploy", "key_type": "ed25519"})),
    )
    .await;
    let id = key["id"].as_str().expect("id").to_string();
    assert_eq!(key["comment"], "pgmon@deploy", "default comment");
    let key_url = s.api.url(&format!("/ssh-keys/{id}"));

    let (st, renamed) = http::call(
        "PUT",
        &key_url,
        Some(&s.operator),
        Some(&json!({"name": "deploy-2", "description": "rotated"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "deploy-2");
    assert_eq!(renamed["description"], "rotated");
    assert_eq!(renamed["comment"], "pgmon@deploy", "the key's own comment stays");
    assert_eq!(
        renamed["public_key"], key["public_key"],
        "the installed public key line is unchanged"
    );
    let (_, other) = http::call(
        "POST",
        &gen_url,
        Some(&s.admin),
        Some(&json!({"name": "other", "key_type": "ed25519"})),
    )
    .await;
    let (st, _) = http::call("PUT", &key_url, Some(&s.admin), Some(&json!({"name": "other"}))).await;
    assert_eq!(st, StatusCode::CONFLICT);

    // A server uses the key: it cannot be deleted, and everybody may see who uses it.
    let server = json!({"name": "web-db", "host": "127.0.0.2", "port": pgmon_tests::cluster::free_port(),
                        "user": "mon", "ssh_auth_type": "key", "ssh_key_id": id});
    let (st, body) = http::call("POST", &s.api.url("/servers"), Some(&s.admin), Some(&server)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["ssh_key_id"], json!(id));
    let (_, listed) = http::call("GET", &key_url, Some(&s.admin), None).await;
    assert_eq!(listed["servers_count"], 1, "{listed}");
    let (st, users) = http::call(
        "GET",
        &s.api.url(&format!("/ssh-keys/{id}/servers")),
        Some(&s.viewer),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(users, json!(["web-db"]));
    let (st, body) = http::call("DELETE", &key_url, Some(&s.admin), None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("web-db")),
        "{body}"
    );

    // Switching the server to a password frees the key.
    let (st, _) = http::call(
        "PUT",
        &s.api.url("/servers/web-db"),
        Some(&s.admin),
        Some(&json!({"ssh_auth_type": "password", "ssh_password": "ssh-pass"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (_, users) = http::call(
        "GET",
        &s.api.url(&format!("/ssh-keys/{id}/servers")),
        Some(&s.viewer),
        None,
    )
    .await;
    assert_eq!(users, json!([]));

    // Download of the public key, as the original's page reads it: admin only.
    let (st, file) = http::call(
        "GET",
        &s.api.url(&format!("/ssh-keys/{id}/download-public")),
        Some(&s.admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(file["filename"], "deploy-2_id_ed25519.pub");
    assert_eq!(file["content"], key["public_key"]);
    assert_eq!(file["content_type"], "text/plain");

    // Roles: viewers see no key endpoint but the usage list; download needs admin.
    let oid = other["id"].as_str().expect("id");
    for (method, path, body) in [
        ("GET", "/ssh-keys".to_string(), None),
        ("GET", format!("/ssh-keys/{oid}"), None),
        (
            "PUT",
            format!("/ssh-keys/{oid}"),
            Some(json!({"description": "x"})),
        ),
        ("DELETE", format!("/ssh-keys/{oid}"), None),
        (
            "POST",
            "/ssh-keys/generate".to_string(),
            Some(json!({"name": "v", "key_type": "ed25519"})),
        ),
        (
            "POST",
            "/ssh-keys/import".to_string(),
            Some(json!({"name": "v", "private_key": "x"})),
        ),
        ("GET", format!("/ssh-keys/{oid}/download-public"), None),
    ] {
        let (st, _) = http::call(method, &s.api.url(&path), Some(&s.viewer), body.as_ref()).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "viewer {method} {path}");
        let (st, _) = http::call(method, &s.api.url(&path), None, body.as_ref()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "anonymous {method} {path}");
    }
    let (st, _) = http::call(
        "GET",
        &s.api.url(&format!("/ssh-keys/{oid}/download-public")),
        Some(&s.operator),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "operator download");
    let (st, _) = http::call("GET", &s.api.url("/ssh-keys"), Some(&s.operator), None).await;
    assert_eq!(st, StatusCode::OK);

    let (st, gone) = http::call("DELETE", &key_url, Some(&s.operator), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(gone["message"].is_string(), "{gone}");
    let (st, _) = http::call("GET", &key_url, Some(&s.admin), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // An id that is no UUID names no key: 404, as the original answered.
    for path in ["/ssh-keys/not-a-uuid", "/ssh-keys/nope/download-public"] {
        let (st, body) = http::call("GET", &s.api.url(path), Some(&s.admin), None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["detail"].is_string());
    }
}
