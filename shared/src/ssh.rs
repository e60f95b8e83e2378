//! A small SSH client for monitored hosts (disk usage), over russh.
//!
//! russh is used directly rather than through async-ssh2-tokio: the latter has no connect timeout and
//! cannot hand over the server's host key, which trust-on-first-use pinning needs. Every phase
//! (resolve + TCP + handshake, authentication, command) has its own deadline, all bounded by the
//! caller's overall deadline, so a peer that accepts TCP and never speaks cannot hang a caller. The
//! command's output is capped.
//!
//! The host is resolved and every address checked against `servers.allowed_targets`
//! ([`crate::targets`]) before any packet leaves, and TCP goes to those checked addresses: credentials
//! are never offered to a host the site did not allow.
//!
//! Also here: parsing, converting and generating SSH keys (`russh::keys`, i.e. ssh-key), so the API
//! and the client agree on formats and fingerprints.

use crate::redact::peer_text;
use russh::client;
use russh::keys::ssh_key::{self, LineEnding, PrivateKey};
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deadline for name resolution, TCP connect and the SSH handshake together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for authentication (RSA may wait up to 1 s for the server's signature algorithms).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for the remote command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of stdout kept; `df` of one path prints a few hundred.
const MAX_STDOUT: usize = 64 * 1024;
/// Bytes of stderr kept for the error message.
const MAX_STDERR: usize = 2 * 1024;
/// Characters of an error message, whatever the peer sent.
const MAX_MESSAGE_CHARS: usize = 600;
/// Characters of a mount point shown (the peer's `df` chooses it).
const MAX_MOUNT_CHARS: usize = 512;

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth: SshAuth,
    /// The pinned `SHA256:...` fingerprint; `None` accepts any key (first use) and reports it.
    pub expected_fingerprint: Option<String>,
}

/// Credentials, in plain text in memory only. Debug never shows them.
#[derive(Clone)]
pub enum SshAuth {
    /// An unencrypted OpenSSH private key.
    Key(String),
    Password(String),
}

impl std::fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SshAuth::Key(_) => "Key(<redacted>)",
            SshAuth::Password(_) => "Password(<redacted>)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    pub mount: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct SshOutcome<T> {
    pub value: T,
    /// The server's host key as `ssh-keygen -l -E sha256` prints it; pin it when none is pinned.
    pub host_key_fingerprint: String,
    /// Connect, login and command, end to end.
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshErrorClass {
    AuthFailed,
    Timeout,
    Unreachable,
    HostKeyMismatch,
    CommandFailed,
    /// Not tried: `servers.allowed_targets` refuses the address.
    Refused,
}

impl SshErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            SshErrorClass::AuthFailed => "auth_failed",
            SshErrorClass::Timeout => "timeout",
            SshErrorClass::Unreachable => "unreachable",
            SshErrorClass::HostKeyMismatch => "host_key_mismatch",
            SshErrorClass::CommandFailed => "command_failed",
            SshErrorClass::Refused => "refused",
        }
    }
}

/// A failed SSH call. `message` is meant for operators: it never contains credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", class.as_str())]
pub struct SshError {
    pub class: SshErrorClass,
    pub message: String,
    /// The host key seen before the failure, if the handshake got that far.
    pub host_key_fingerprint: Option<String>,
}

impl SshError {
    /// Every message is cut to printable text: parts of it (stderr, the peer's disconnect reason in
    /// russh's errors) are chosen by whoever answers on the SSH port, and it reaches answers and logs.
    fn new(class: SshErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: peer_text(&message.into(), MAX_MESSAGE_CHARS),
            host_key_fingerprint: None,
        }
    }
}

/// Output of a remote command that exited with status 0.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub stdout: String,
}

/// `SHA256:<base64>`, exactly as `ssh-keygen -l -E sha256` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Quotes `s` for a POSIX shell: the remote side receives one word, whatever `s` contains.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `df -P -B1 -- <data_path>` and parses the line of the file system holding `data_path`.
pub async fn disk_usage(
    target: &SshTarget,
    data_path: &str,
    overall: Duration,
) -> Result<SshOutcome<DiskUsage>, SshError> {
    let command = format!("LC_ALL=C df -P -B1 -- {}", shell_quote(data_path));
    let out = run_command(target, &command, overall).await?;
    let value = parse_df(&out.value.stdout).ok_or_else(|| SshError {
        class: SshErrorClass::CommandFailed,
        message: "unexpected output from df".into(),
        host_key_fingerprint: Some(out.host_key_fingerprint.clone()),
    })?;
    Ok(SshOutcome {
        value,
        host_key_fingerprint: out.host_key_fingerprint,
        latency_ms: out.latency_ms,
    })
}

/// Parses POSIX `df -P -B1` output. The row is read around its capacity column (`NN%`), because
/// both the file system name and the mount point may contain spaces.
pub fn parse_df(output: &str) -> Option<DiskUsage> {
    let line = output.lines().skip(1).find(|l| !l.trim().is_empty())?;
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let cap = tokens
        .iter()
        .enumerate()
        .skip(4)
        .find(|(_, t)| {
            t.len() > 1 && t.ends_with('%') && t[..t.len() - 1].chars().all(|c| c.is_ascii_digit())
        })
        .map(|(i, _)| i)?;
    let num = |i: usize| tokens[i].parse::<u64>().ok();
    let (total, used, avail) = (num(cap - 3)?, num(cap - 2)?, num(cap - 1)?);
    let cap_token = tokens[cap];
    let cap_pos = line
        .find(&format!(" {cap_token} "))
        .map(|p| p + cap_token.len() + 2)?;
    let mount = peer_text(line[cap_pos..].trim(), MAX_MOUNT_CHARS);
    if mount.is_empty() {
        return None;
    }
    Some(DiskUsage {
        mount,
        total_bytes: total,
        used_bytes: used,
        available_bytes: avail,
    })
}

/// Connects, logs in, runs `command` and returns its stdout if it exits with status 0.
pub async fn run_command(
    target: &SshTarget,
    command: &str,
    overall: Duration,
) -> Result<SshOutcome<CommandOutput>, SshError> {
    let started = Instant::now();
    let deadline = started + overall;
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let result = session(target, command, deadline, seen.clone()).await;
    let fingerprint_seen = seen.lock().ok().and_then(|g| g.clone());
    match result {
        Ok(stdout) => Ok(SshOutcome {
            value: CommandOutput { stdout },
            host_key_fingerprint: fingerprint_seen.unwrap_or_default(),
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        }),
        Err(mut e) => {
            e.host_key_fingerprint = fingerprint_seen;
            Err(e)
        }
    }
}

/// Waits for `fut` until the earlier of `phase` from now and `deadline`.
async fn within<T>(
    deadline: Instant,
    phase: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T, SshError> {
    let limit = phase.min(deadline.saturating_duration_since(Instant::now()));
    tokio::time::timeout(limit, fut).await.map_err(|_| {
        SshError::new(
            SshErrorClass::Timeout,
            format!("{what} timed out after {limit:?}"),
        )
    })
}

async fn session(
    target: &SshTarget,
    command: &str,
    deadline: Instant,
    seen: Arc<Mutex<Option<String>>>,
) -> Result<String, SshError> {
    let handler = Pinning {
        expected: target.expected_fingerprint.clone(),
        seen: seen.clone(),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    });
    let mut handle = within(deadline, CONNECT_TIMEOUT, "connecting", async {
        let stream = tcp_connect(&target.host, target.port).await?;
        client::connect_stream(config, stream, handler)
            .await
            .map_err(|e| handshake_error(e, target, &seen))
    })
    .await??;

    let authenticated = within(deadline, AUTH_TIMEOUT, "authentication", async {
        match &target.auth {
            SshAuth::Password(p) => handle.authenticate_password(&target.username, p).await,
            SshAuth::Key(text) => {
                let key = russh::keys::decode_secret_key(text, None)
                    .map_err(|_| russh::Error::Keys(russh::keys::Error::CouldNotReadKey))?;
                let hash = if key.algorithm().is_rsa() {
                    handle.best_supported_rsa_hash().await?.flatten()
                } else {
                    None
                };
                handle
                    .authenticate_publickey(&target.username, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                    .await
            }
        }
    })
    .await?
    .map_err(|e| match e {
        russh::Error::Keys(_) => {
            SshError::new(SshErrorClass::AuthFailed, "the stored private key cannot be read")
        }
        other => SshError::new(
            SshErrorClass::Unreachable,
            format!("connection lost during login: {other}"),
        ),
    })?;
    if !authenticated.success() {
        return Err(SshError::new(
            SshErrorClass::AuthFailed,
            format!("the server refused the credentials for user {}", target.username),
        ));
    }

    let output = within(
        deadline,
        COMMAND_TIMEOUT,
        "the remote command",
        exec(&handle, command),
    )
    .await?;
    // Best effort: the connection is dropped either way.
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    output
}

async fn tcp_connect(host: &str, port: u16) -> Result<tokio::net::TcpStream, SshError> {
    let addrs = crate::targets::resolve(host, port).await.map_err(|e| {
        let class = if e.is_refused() {
            SshErrorClass::Refused
        } else {
            SshErrorClass::Unreachable
        };
        SshError::new(class, e.to_string())
    })?;
    let mut last = format!("{host} resolves to no address");
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(SshError::new(SshErrorClass::Unreachable, last))
}

fn handshake_error(e: russh::Error, target: &SshTarget, seen: &Mutex<Option<String>>) -> SshError {
    let seen = seen.lock().ok().and_then(|g| g.clone());
    match (&e, &target.expected_fingerprint, &seen) {
        (russh::Error::UnknownKey, Some(expected), Some(got)) if expected != got => SshError::new(
            SshErrorClass::HostKeyMismatch,
            format!("the host key changed: pinned {expected}, server presented {got}"),
        ),
        _ => SshError::new(SshErrorClass::Unreachable, format!("SSH handshake failed: {e}")),
    }
}

async fn exec(handle: &client::Handle<Pinning>, command: &str) -> Result<String, SshError> {
    let lost =
        |e: russh::Error| SshError::new(SshErrorClass::CommandFailed, format!("SSH channel failed: {e}"));
    let mut channel = handle.channel_open_session().await.map_err(lost)?;
    channel.exec(true, command).await.map_err(lost)?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut status = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => append_capped(&mut stdout, &data, MAX_STDOUT),
            russh::ChannelMsg::ExtendedData { data, .. } => append_capped(&mut stderr, &data, MAX_STDERR),
            russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            russh::ChannelMsg::ExitSignal { signal_name, .. } => {
                return Err(SshError::new(
                    SshErrorClass::CommandFailed,
                    format!("the command was killed by signal {signal_name:?}"),
                ));
            }
            _ => {}
        }
    }
    match status {
        Some(0) => Ok(String::from_utf8_lossy(&stdout).into_owned()),
        Some(code) => {
            let err = peer_text(String::from_utf8_lossy(&stderr).trim(), 300);
            Err(SshError::new(
                SshErrorClass::CommandFailed,
                format!("the command exited with status {code}: {err}"),
            ))
        }
        None => Err(SshError::new(
            SshErrorClass::CommandFailed,
            "the channel closed without an exit status",
        )),
    }
}

fn append_capped(buf: &mut Vec<u8>, data: &[u8], cap: usize) {
    let room = cap.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

/// Records the server's key and accepts it only if it matches the pinned fingerprint (or none is).
struct Pinning {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinning {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKey) -> Result<bool, Self::Error> {
        let fp = fingerprint(key);
        let ok = self.expected.as_deref().is_none_or(|e| e == fp);
        if let Ok(mut g) = self.seen.lock() {
            *g = Some(fp);
        }
        Ok(ok)
    }
}

// ---------------------------------------------------------------------------------------------
// Keys

/// A private key in the form pgmon stores it, with what the API shows about it.
#[derive(Clone)]
pub struct KeyMaterial {
    /// Unencrypted OpenSSH private key text: encrypt it before it leaves memory.
    pub private_openssh: String,
    /// One `authorized_keys` line.
    pub public_openssh: String,
    pub fingerprint: String,
    /// `ed25519`, `rsa`, `ecdsa`.
    pub key_type: String,
    pub bits: Option<i32>,
    pub comment: String,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("fingerprint", &self.fingerprint)
            .field("key_type", &self.key_type)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// Why a key was refused; the messages say which problem it is and never quote the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a private key in a supported format (OpenSSH, PEM PKCS#1 or PKCS#8)")]
    NotAKey,
    #[error("the private key is encrypted: a passphrase is required")]
    PassphraseRequired,
    #[error("wrong passphrase for the encrypted private key")]
    WrongPassphrase,
    #[error("unsupported key type: {0}")]
    Unsupported(String),
    #[error("key generation failed: {0}")]
    Generation(String),
}

/// Which key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    Rsa { bits: usize },
}

fn looks_encrypted(text: &str) -> bool {
    text.contains("ENCRYPTED")
}

/// Parses an OpenSSH, PEM PKCS#1 or PKCS#8 private key, plain or encrypted, into stored form.
pub fn import_private_key(text: &str, passphrase: Option<&str>) -> Result<KeyMaterial, KeyError> {
    let passphrase = passphrase.filter(|p| !p.is_empty());
    let key = match russh::keys::decode_secret_key(text, None) {
        Ok(k) => k,
        Err(russh::keys::Error::KeyIsEncrypted) => decrypt_with(text, passphrase)?,
        Err(_) if looks_encrypted(text) => decrypt_with(text, passphrase)?,
        Err(_) => return Err(KeyError::NotAKey),
    };
    let comment: &str = key.comment().as_ref();
    let comment = comment.to_string();
    material(key, &comment)
}

fn decrypt_with(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, KeyError> {
    let pass = passphrase.ok_or(KeyError::PassphraseRequired)?;
    russh::keys::decode_secret_key(text, Some(pass)).map_err(|_| KeyError::WrongPassphrase)
}

/// The same key with another comment (the comment ends the public key line).
pub fn with_comment(m: KeyMaterial, comment: &str) -> Result<KeyMaterial, KeyError> {
    let key = russh::keys::decode_secret_key(&m.private_openssh, None).map_err(|_| KeyError::NotAKey)?;
    material(key, comment)
}

/// Generates a key. RSA 4096 takes seconds: call it from `spawn_blocking`.
pub fn generate_key(kind: KeyKind, comment: &str) -> Result<KeyMaterial, KeyError> {
    let mut rng = rand::rng();
    let key = match kind {
        KeyKind::Ed25519 => PrivateKey::random(&mut rng, Algorithm::Ed25519),
        KeyKind::Rsa { bits } => ssh_key::private::RsaKeypair::random(&mut rng, bits)
            .and_then(|kp| PrivateKey::new(ssh_key::private::KeypairData::from(kp), comment)),
    }
    .map_err(|e| KeyError::Generation(e.to_string()))?;
    material(key, comment)
}

fn material(mut key: PrivateKey, comment: &str) -> Result<KeyMaterial, KeyError> {
    key.set_comment(comment);
    let algorithm = key.algorithm();
    let (key_type, bits) = match &algorithm {
        Algorithm::Ed25519 => ("ed25519", Some(256)),
        Algorithm::Rsa { .. } => (
            "rsa",
            key.key_data()
                .rsa()
                .and_then(|k| i32::try_from(k.public().key_size()).ok()),
        ),
        Algorithm::Ecdsa { curve } => (
            "ecdsa",
            Some(match curve {
                ssh_key::EcdsaCurve::NistP256 => 256,
                ssh_key::EcdsaCurve::NistP384 => 384,
                ssh_key::EcdsaCurve::NistP521 => 521,
            }),
        ),
        other => return Err(KeyError::Unsupported(other.as_str().to_string())),
    };
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| KeyError::Generation(e.to_string()))?
        .to_string();
    let public_openssh = key
        .public_key()
        .to_openssh()
        .map_err(|e| KeyError::Generation(e.to_string()))?;
    Ok(KeyMaterial {
        private_openssh,
        public_openssh,
        fingerprint: fingerprint(key.public_key()),
        key_type: key_type.to_string(),
        bits,
        comment: comment.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_output_is_parsed_around_the_capacity_column() {
        let out = "Filesystem     1-blocks      Used Available Capacity Mounted on\n\
                   /dev/sda1   1000000 400000 600000 40% /var/lib/my data\n";
        assert_eq!(
            parse_df(out),
            Some(DiskUsage {
                mount: "/var/lib/my data".into(),
                total_bytes: 1_000_000,
                used_bytes: 400_000,
                available_bytes: 600_000
            })
        );
        assert_eq!(parse_df("Filesystem 1-blocks\n"), None);
    }

    #[test]
    fn quoting_keeps_one_word() {
        assert_eq!(shell_quote("/a b/'c'"), r"'/a b/'\''c'\'''");
    }

    #[test]
    fn generated_ed25519_round_trips_through_import() {
        let k = generate_key(KeyKind::Ed25519, "me@host").expect("generate");
        assert!(k.public_openssh.starts_with("ssh-ed25519 "));
        assert!(k.public_openssh.ends_with(" me@host"));
        let again = import_private_key(&k.private_openssh, None).expect("import");
        assert_eq!(again.fingerprint, k.fingerprint);
        assert_eq!(import_private_key("garbage", None).err(), Some(KeyError::NotAKey));
    }
}
