//! The Debian package, installed with `dpkg --root` into a minimal Debian 12 root (debootstrap,
//! cached by `scripts/debroot.sh`): its files, account and modes, `systemd-analyze verify` of its
//! units, and an upgrade that keeps an edited configuration and the secrets and migrates the store
//! once its URL is set.

use pgmon_tests::TestDb;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `scripts/package-deb.sh` with the binaries the tests run, as `version`.
fn package(version: &str) -> PathBuf {
    let out = run(
        Command::new("bash")
            .arg(repo().join("scripts/package-deb.sh"))
            .env("PGMON_DEB_BINDIR", pgmon_tests::bin_dir())
            .env("PGMON_DEB_COMPRESSOR", "none")
            .env("PGMON_DEB_VERSION", version),
        "package-deb.sh",
    );
    let path = out
        .lines()
        .rev()
        .find(|l| l.ends_with(".deb"))
        .expect("the package's path")
        .trim()
        .to_string();
    repo().join(path)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[tokio::test]
async fn the_package_installs_verifies_and_upgrades_keeping_config_and_secrets() {
    assert!(
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n"),
        "the package test installs into a root with dpkg --root and chroot: run it as root (./scripts/test.sh does)"
    );
    let tarball = run(
        Command::new("bash").arg(repo().join("scripts/debroot.sh")),
        "debroot.sh",
    );
    // The script prints the path; its progress lines (stderr, merged here) come around it.
    let tarball = tarball
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('/') && l.ends_with(".tar"))
        .expect("debroot.sh printed no tarball path")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("root");
    run(
        Command::new("tar").arg("-C").arg(&root).arg("-xf").arg(&tarball),
        "unpack the root",
    );

    let first = package("0.1.0");
    let out = run(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("-i")
            .arg(&first),
        "dpkg -i",
    );
    assert!(out.contains("set store.url"), "{out}");

    // Files, account, modes.
    for f in ["usr/bin/pgmon-api", "usr/bin/pgmon-collector"] {
        assert_eq!(mode(&root.join(f)), 0o755, "{f}");
    }
    for f in [
        "lib/systemd/system/pgmon-api.service",
        "lib/systemd/system/pgmon-collector.service",
        "usr/lib/sysusers.d/pgmon.conf",
        "usr/lib/tmpfiles.d/pgmon.conf",
        "usr/share/doc/pgmon/README.md",
        // The web UI, where api.web_dir points by default.
        "usr/share/pgmon/web/index.html",
    ] {
        assert_eq!(mode(&root.join(f)), 0o644, "{f}");
    }
    let assets: Vec<_> = std::fs::read_dir(root.join("usr/share/pgmon/web/assets"))
        .expect("web assets")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .collect();
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "{assets:?}"
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    let account = passwd
        .lines()
        .find(|l| l.starts_with("pgmon:"))
        .expect("the pgmon account");
    assert!(
        account.ends_with(":/var/lib/pgmon:/usr/sbin/nologin"),
        "{account}"
    );
    assert_eq!(mode(&root.join("var/lib/pgmon")), 0o750);
    let etc = root.join("etc/pgmon");
    assert_eq!(mode(&etc.join("pgmon.toml")), 0o640);
    let key = std::fs::read_to_string(etc.join("encryption_key.key")).expect("key");
    let jwt = std::fs::read_to_string(etc.join("jwt_secret")).expect("jwt");
    assert_eq!(mode(&etc.join("encryption_key.key")), 0o600);
    assert_eq!(mode(&etc.join("jwt_secret")), 0o600);
    assert!(
        key.trim().len() == 44 && jwt.trim().len() >= 32,
        "a Fernet key and a JWT secret"
    );
    let conffiles = run(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
            .args(["-W", "-f=${Conffiles}", "pgmon"]),
        "dpkg-query",
    );
    assert!(conffiles.contains("/etc/pgmon/pgmon.toml"), "{conffiles}");
    // Disabled until the operator sets store.url: nothing links the units into a target.
    assert!(
        !root
            .join("etc/systemd/system/multi-user.target.wants/pgmon-api.service")
            .exists()
    );
    assert!(
        !root
            .join("etc/systemd/system/multi-user.target.wants/pgmon-collector.service")
            .exists()
    );
    run(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .args([
                "/lib/systemd/system/pgmon-api.service",
                "/lib/systemd/system/pgmon-collector.service",
            ]),
        "systemd-analyze verify",
    );

    // The operator sets store.url; the upgrade keeps that and the secrets, and migrates the store.
    let db = TestDb::new().await;
    let conf = etc.join("pgmon.toml");
    let text = std::fs::read_to_string(&conf).expect("config");
    let edited = text.replace("url = \"\"", &format!("url = \"{}\"", db.url));
    assert_ne!(edited, text);
    std::fs::write(&conf, &edited).expect("edit the config");
    let second = package("0.1.0+upgrade1");
    run(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("-i")
            .arg(&second),
        "dpkg -i (upgrade)",
    );
    assert_eq!(
        std::fs::read_to_string(&conf).expect("config"),
        edited,
        "the edited config is kept"
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("encryption_key.key")).expect("key"),
        key
    );
    assert_eq!(std::fs::read_to_string(etc.join("jwt_secret")).expect("jwt"), jwt);
    let version = run(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
            .args(["-W", "-f=${Version}", "pgmon"]),
        "dpkg-query",
    );
    assert_eq!(version.trim(), "0.1.0+upgrade1");
    let pool = db.pool().await;
    let migrated: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .expect("the store was migrated by the upgrade");
    assert_eq!(migrated, pgmon_shared::store::expected_schema_version());
}
