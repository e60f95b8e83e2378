//! Throwaway certificates for TLS tests, made with the `openssl` CLI (which `scripts/test.sh`
//! installs): a private CA, certificates it signs, self-signed ones, and a [`Cluster`] serving one.
//!
//! Made per test rather than kept as files: a stored certificate expires and then fails tests for
//! reasons unrelated to the change under test. Keys are P-256, certificates live two days.

use crate::cluster::Cluster;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private CA in a temporary directory, and the certificates made there.
pub struct Pki {
    dir: tempfile::TempDir,
}

const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

impl Pki {
    /// A new CA (`ca.pem`, `ca.key`).
    pub fn new() -> Self {
        let pki = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let mut args = vec!["req", "-x509"];
        args.extend(EC);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=pgmon test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pki.openssl(&args);
        pki
    }

    /// The CA's certificate, for `PGSSLROOTCERT`.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `name`.pem / `name`.key: a server certificate signed by the CA for `san` (an OpenSSL
    /// subjectAltName value such as `IP:127.0.0.1,DNS:localhost`).
    pub fn issue(&self, name: &str, san: &str) {
        let (key, csr, ext, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
            format!("{name}.pem"),
        );
        let mut args = vec!["req"];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=pgmon test server"]);
        self.openssl(&args);
        std::fs::write(
            self.dir.path().join(&ext),
            format!("subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
        )
        .expect("ext file");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    /// `name`.pem / `name`.key: a self-signed certificate for `san`, which no CA vouches for.
    pub fn self_signed(&self, name: &str, san: &str) {
        let (key, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("subjectAltName={san}"),
        );
        let mut args = vec!["req", "-x509"];
        args.extend(EC);
        args.extend([
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            "/CN=pgmon self-signed",
            "-addext",
            &ext,
        ]);
        self.openssl(&args);
    }

    fn openssl(&self, args: &[&str]) {
        crate::output_ok(
            Command::new("openssl").args(args).current_dir(self.dir.path()),
            &format!("openssl {args:?} (./scripts/test.sh installs openssl)"),
        );
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(file)).expect("read certificate file")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// Restarts `cluster` with `ssl = on` and the certificate `name` of `pki`; `conf` is appended too.
pub fn serve(cluster: &Cluster, pki: &Pki, name: &str, conf: &str) {
    let cert = cluster.install_file("server.pem", &pki.read(&format!("{name}.pem")), 0o644);
    let key = cluster.install_file("server.key", &pki.read(&format!("{name}.key")), 0o600);
    cluster.reconfigure(&format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n{conf}",
        cert.display(),
        key.display()
    ));
}
