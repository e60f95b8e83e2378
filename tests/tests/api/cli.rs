//! The command line: config errors, secret-file checks, init-secrets, user management, openapi.

use pgmon_tests::{TestEnv, bin, http, run_cli, write_private};
use reqwest::StatusCode;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn config_with(env: &TestEnv, text: &str) -> std::path::PathBuf {
    let p = env.dir.path().join("other.toml");
    std::fs::write(&p, text).expect("write");
    p
}

fn store_and_secrets(env: &TestEnv) -> String {
    let dir = env.dir.path().display();
    format!(
        "[store]\nurl = \"{}\"\n[secrets]\njwt_secret_file = \"{dir}/jwt_secret\"\nencryption_key_file = \"{dir}/encryption_key.key\"\n",
        env.db.url
    )
}

fn serve(config: &Path) -> (i32, String) {
    // A config or secret problem stops `serve` before it binds, so this returns promptly.
    let (code, _out, err) = run_cli(&bin("pgmon-api"), config, &["serve"], None);
    (code, err)
}

#[tokio::test]
async fn config_errors_name_the_key_in_one_line() {
    let env = TestEnv::new("", "").await;
    let base = store_and_secrets(&env);
    let cases = [
        (format!("{base}[api]\nlisten_port = 80\n"), "listen_port"),
        (
            format!("{base}[api]\nlisten = \"not an address\"\n"),
            "api.listen",
        ),
        (
            format!("{base}[api]\ntoken_expiration_minutes = \"sixty\"\n"),
            "api.token_expiration_minutes",
        ),
        (
            format!("{base}[collector]\nretention_months = 0\n"),
            "collector.retention_months",
        ),
        (format!("{base}[log]\nformat = \"xml\"\n"), "log.format"),
        (format!("{base}[nonsense]\nx = 1\n"), "nonsense"),
        ("[api]\nlisten = \"127.0.0.1:0\"\n".to_string(), "store"),
        (format!("{base}[api\n"), "other.toml"),
    ];
    for (text, key) in cases {
        let (code, err) = serve(&config_with(&env, &text));
        assert_ne!(code, 0, "{text}");
        assert!(err.contains(key), "error for {key} should name it: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("pgmon_test_"), "no store URL in: {err}");
    }
    let (code, _, err) = run_cli(
        &bin("pgmon-api"),
        Path::new("/nonexistent/pgmon.toml"),
        &["migrate"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/pgmon.toml"), "{err}");
}

#[tokio::test]
async fn store_password_never_reaches_the_logs() {
    let env = TestEnv::new("", "").await;
    // A role that does not exist, with a password on the URL: the error must not echo the password.
    let (scheme, rest) = env.db.url.split_once("://").expect("url");
    let host_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let url = format!("{scheme}://nosuchrole:sup3rs3cret@{host_db}");
    let dir = env.dir.path().display();
    let text = format!(
        "[store]\nurl = \"{url}\"\n[secrets]\njwt_secret_file = \"{dir}/jwt_secret\"\nencryption_key_file = \"{dir}/encryption_key.key\"\n"
    );
    let (code, err) = serve(&config_with(&env, &text));
    assert_ne!(code, 0);
    assert!(!err.contains("sup3rs3cret"), "{err}");
}

#[tokio::test]
async fn secret_files_are_checked_at_start() {
    let env = TestEnv::new("", "").await;
    let key = env.dir.path().join("encryption_key.key");
    let jwt = env.dir.path().join("jwt_secret");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, err) = serve(&env.config_path);
    assert_ne!(code, 0);
    assert!(
        err.contains("encryption_key.key") && err.contains("group or others"),
        "{err}"
    );

    write_private(&key, "not-a-fernet-key\n");
    let (code, err) = serve(&env.config_path);
    assert_ne!(code, 0);
    assert!(
        err.contains("encryption_key.key") && err.contains("malformed"),
        "{err}"
    );
    assert!(!err.contains("not-a-fernet-key"), "contents never echoed: {err}");

    write_private(&key, &format!("{}\n", env.fernet_key));
    write_private(&jwt, "too-short\n");
    let (code, err) = serve(&env.config_path);
    assert_ne!(code, 0);
    assert!(err.contains("jwt_secret") && err.contains("32"), "{err}");

    std::fs::remove_file(&jwt).expect("rm");
    let (code, err) = serve(&env.config_path);
    assert_ne!(code, 0);
    assert!(err.contains("jwt_secret") && err.contains("missing"), "{err}");

    // init-secrets creates the missing one, 0600, and leaves the existing key alone.
    let before = std::fs::read_to_string(&key).expect("read");
    let (code, out, err) = env.api_cli(&["init-secrets"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("jwt_secret"), "{out}");
    assert_eq!(std::fs::read_to_string(&key).expect("read"), before);
    let mode = std::fs::metadata(&jwt).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(&jwt).expect("read");
    assert!(secret.trim().len() >= 32);
    let (code, out, _) = env.api_cli(&["init-secrets"], None);
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(std::fs::read_to_string(&jwt).expect("read"), secret);
}

#[tokio::test]
async fn init_secrets_writes_a_python_compatible_fernet_key() {
    let env = TestEnv::new("", "").await;
    let dir = env.dir.path().join("fresh");
    let text = format!(
        "[store]\nurl = \"{}\"\n[secrets]\njwt_secret_file = \"{d}/jwt\"\nencryption_key_file = \"{d}/key\"\n",
        env.db.url,
        d = dir.display()
    );
    let cfg = config_with(&env, &text);
    let (code, out, err) = run_cli(&bin("pgmon-api"), &cfg, &["init-secrets"], None);
    assert_eq!(code, 0, "{out}{err}");
    let key = std::fs::read_to_string(dir.join("key")).expect("key");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; from cryptography.fernet import Fernet; f = Fernet(open(sys.argv[1]).read().strip()); print(f.decrypt(f.encrypt(b'ok')).decode())",
            dir.join("key").to_str().expect("path"),
        ])
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(key.trim().len(), 44);
}

#[tokio::test]
async fn user_commands() {
    let env = TestEnv::new("", "").await;
    // No stdin: a password is generated and printed once.
    let (code, out, err) = env.api_cli(&["user", "add", "root", "--role", "admin"], None);
    assert_eq!(code, 0, "{err}");
    let generated = out
        .rsplit("password (shown once): ")
        .next()
        .expect("password")
        .trim()
        .to_string();
    assert!(generated.len() >= 16, "{out}");
    // Piped stdin supplies it.
    env.add_user("ops", "operator", "piped-password");
    let (code, _, err) = env.api_cli(&["user", "add", "ops", "--role", "viewer"], Some("another-pass"));
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = env.api_cli(&["user", "add", "x", "--role", "god"], Some("another-pass"));
    assert_ne!(code, 0);
    assert!(err.contains("role"), "{err}");
    let (code, _, err) = env.api_cli(&["user", "add", "shorty", "--role", "viewer"], Some("short"));
    assert_ne!(code, 0);
    assert!(err.contains("at least 8"), "{err}");

    let api = env.spawn_api().await;
    assert_eq!(http::login(&api.base, "root", &generated).await.0, StatusCode::OK);
    let ops = http::token(&api.base, "ops", "piped-password").await;

    let (code, _, err) = env.api_cli(&["user", "passwd", "ops"], Some("rotated-password\n"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        http::call("GET", &api.url("/users/me"), Some(&ops), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        http::login(&api.base, "ops", "rotated-password").await.0,
        StatusCode::OK
    );
    let (code, _, err) = env.api_cli(&["user", "passwd", "ghost"], Some("rotated-password"));
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test]
async fn migrate_and_openapi_commands() {
    let env = TestEnv::new("", "").await;
    let (code, out, err) = env.api_cli(&["migrate"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("migrated"), "{out}");
    // Concurrent migrations of one store are safe.
    let a = std::thread::spawn({
        let cfg = env.config_path.clone();
        move || run_cli(&bin("pgmon-api"), &cfg, &["migrate"], None).0
    });
    let b = env.api_cli(&["migrate"], None).0;
    assert_eq!((a.join().expect("thread"), b), (0, 0));

    let (code, out, _) = run_cli(&bin("pgmon-api"), Path::new("/nonexistent"), &["openapi"], None);
    assert_eq!(code, 0);
    let spec: serde_json::Value = serde_json::from_str(&out).expect("JSON spec");
    assert!(spec["paths"]["/token"]["post"].is_object());
}

#[tokio::test]
async fn environment_overrides_the_file() {
    let env = TestEnv::new("", "").await;
    env.add_user("admin", "admin", "env-test-password");
    let api = pgmon_tests::Proc::spawn_env(
        &bin("pgmon-api"),
        &env.config_path,
        &["serve"],
        "pgmon-api listening on ",
        &[("PGMON_API__TOKEN_EXPIRATION_MINUTES", "5")],
    )
    .await;
    let (_, body, _) = http::login(&api.base, "admin", "env-test-password").await;
    assert_eq!(body["expires_in"], 300);
}
