//! A real OpenSSH server for the SSH tests: `/usr/sbin/sshd -D -e -f <own config>` on a random
//! loopback port, with a host key generated for each instance and its own `authorized_keys` file.
//!
//! It runs as root (the tests run as root in CI; `scripts/test.sh` installs openssh-server) and lets
//! one local test user in, [`TEST_USER`] with password [`TEST_PASSWORD`], created on first use. The
//! server is killed when the value is dropped.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
pub const TEST_USER: &str = "pgmon_ssh_test";
pub const TEST_PASSWORD: &str = "pgmon-ssh-test-Pa55";

/// Whether sshd is installed and we are root; SSH tests fail with a clear message otherwise.
pub fn available() -> Result<(), String> {
    if !Path::new(SSHD).exists() {
        return Err(format!(
            "{SSHD} is missing: install openssh-server (scripts/test.sh does)"
        ));
    }
    let uid = Command::new("id").arg("-u").output().map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("the sshd harness needs root (it starts sshd and creates a test user)".into());
    }
    Ok(())
}

/// Creates the test user and sets its password, once per process. Tolerates the user existing from
/// an earlier run, and retries while another test process holds the lock on /etc/passwd or /etc/shadow.
fn ensure_user() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut last = String::new();
        for _ in 0..50 {
            match create_user_with_password() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot create the sshd test user: {last}");
    });
}

fn create_user_with_password() -> Result<(), String> {
    let exists = Command::new("id")
        .arg(TEST_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", TEST_USER])
            .output()
            .map_err(|e| e.to_string())?;
        // 9: the user appeared meanwhile (another test process).
        if !out.status.success() && out.status.code() != Some(9) {
            return Err(format!("useradd: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or("chpasswd stdin")?;
        writeln!(stdin, "{TEST_USER}:{TEST_PASSWORD}").map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("chpasswd: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Runs `ssh-keygen` with `args`, panicking with its stderr on failure.
pub fn ssh_keygen(args: &[&str]) -> String {
    crate::output_ok(
        Command::new("ssh-keygen").args(args),
        &format!("ssh-keygen {args:?}"),
    )
}

/// `SHA256:...` of a public key file, as `ssh-keygen -l -E sha256` prints it.
pub fn fingerprint_of(pub_path: &Path) -> String {
    let line = ssh_keygen(&["-l", "-E", "sha256", "-f", &pub_path.display().to_string()]);
    line.split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string()
}

pub struct Sshd {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Sshd {
    /// Starts sshd with a fresh host key and an empty `authorized_keys`.
    pub fn start() -> Self {
        if let Err(e) = available() {
            panic!("{e}");
        }
        ensure_user();
        // Privilege separation needs this directory; it is absent where sshd never ran.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        // The test user reads authorized_keys (sshd opens it with the user's privileges).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, "").expect("authorized_keys");
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        generate_host_key(dir.path());
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn(dir.path(), port);
            if wait_ready(&mut child, port) {
                return Self { port, dir, child };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default();
        panic!("sshd did not start: {log}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The host's public key file.
    pub fn host_pub(&self) -> PathBuf {
        self.dir.path().join("host_ed25519.pub")
    }

    /// The current host key's fingerprint.
    pub fn host_fingerprint(&self) -> String {
        fingerprint_of(&self.host_pub())
    }

    /// Lets a public key (one OpenSSH line) log in as the test user.
    pub fn authorize(&self, public_key_line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .expect("open authorized_keys");
        writeln!(f, "{}", public_key_line.trim()).expect("append authorized_keys");
    }

    /// Restarts sshd on the same port with a new host key, as after a host reinstall (or an attack).
    pub fn replace_host_key(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.path().join("host_ed25519"));
        let _ = std::fs::remove_file(self.host_pub());
        generate_host_key(self.dir.path());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = spawn(self.dir.path(), self.port);
            if wait_ready(&mut child, self.port) {
                self.child = child;
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "sshd did not restart on port {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn generate_host_key(dir: &Path) {
    let path = dir.join("host_ed25519").display().to_string();
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "pgmon-test-host",
        "-f",
        &path,
    ]);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn spawn(dir: &Path, port: u16) -> Child {
    let config = dir.join("sshd_config");
    let text = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_ed25519\nPidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication yes\n\
         KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin no\nAllowUsers {TEST_USER}\n\
         MaxAuthTries 6\nLoginGraceTime 20\nLogLevel ERROR\n",
        dir = dir.display()
    );
    std::fs::write(&config, text).expect("write sshd_config");
    // The readiness probe makes sshd log a reset connection; keep its chatter out of test output.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sshd.log"))
        .expect("sshd.log");
    Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sshd")
}

/// Waits until the port answers with an SSH banner; false if sshd exited (port taken) or hung.
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 8];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
