//! The two secret files: the Fernet key (Python cryptography's format, so the original deployment's
//! `encryption_key.key` works unchanged) and the JWT signing secret.
//!
//! Start-up refuses, naming the file, when one is missing, malformed, or readable by group or others.
//! Error messages name files, never contents.

use crate::config::Config;
use crate::crypto::Crypto;
use base64::Engine;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Shortest accepted JWT secret, in bytes.
pub const MIN_JWT_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret file {0}: missing (create it with `pgmon-api init-secrets`)")]
    Missing(String),
    #[error("secret file {0}: cannot be read: {1}")]
    Unreadable(String, String),
    #[error("secret file {0}: readable by group or others (mode {1:o}); run chmod 600 on it")]
    TooOpen(String, u32),
    #[error("secret file {0}: malformed: {1}")]
    Malformed(String, &'static str),
    #[error("SECRET_KEY: shorter than {MIN_JWT_SECRET_LEN} bytes")]
    InlineTooShort,
    #[error("secret file {0}: cannot be created: {1}")]
    Create(String, String),
}

fn read_private(path: &Path) -> Result<Vec<u8>, SecretError> {
    let name = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SecretError::Missing(name)),
        Err(e) => return Err(SecretError::Unreadable(name, e.kind().to_string())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::TooOpen(name, mode));
    }
    std::fs::read(path).map_err(|e| SecretError::Unreadable(name, e.kind().to_string()))
}

/// Loads the Fernet key file.
pub fn load_crypto(cfg: &Config) -> Result<Crypto, SecretError> {
    let path = &cfg.secrets.encryption_key_file;
    let bytes = read_private(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| SecretError::Malformed(path.display().to_string(), "not text"))?;
    Crypto::from_key(text.trim()).ok_or_else(|| {
        SecretError::Malformed(
            path.display().to_string(),
            "not a Fernet key (urlsafe base64 of 32 bytes)",
        )
    })
}

/// Loads the JWT secret: `SECRET_KEY` when set, else the secret file.
pub fn load_jwt_secret(cfg: &Config) -> Result<Vec<u8>, SecretError> {
    if let Some(inline) = &cfg.jwt_secret_inline {
        if inline.len() < MIN_JWT_SECRET_LEN {
            return Err(SecretError::InlineTooShort);
        }
        return Ok(inline.as_bytes().to_vec());
    }
    let path = &cfg.secrets.jwt_secret_file;
    let mut bytes = read_private(path)?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < MIN_JWT_SECRET_LEN {
        return Err(SecretError::Malformed(
            path.display().to_string(),
            "shorter than 32 bytes",
        ));
    }
    Ok(bytes)
}

/// Creates whichever secret file is missing, mode 0600; never overwrites. Returns the files created.
pub fn init_secrets(cfg: &Config) -> Result<Vec<String>, SecretError> {
    let mut created = Vec::new();
    let fernet_key = fernet::Fernet::generate_key();
    let mut jwt = [0u8; 48];
    rand::fill(&mut jwt);
    let jwt_text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jwt);
    for (path, content) in [
        (&cfg.secrets.encryption_key_file, fernet_key),
        (&cfg.secrets.jwt_secret_file, jwt_text),
    ] {
        if path.exists() {
            continue;
        }
        let name = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| SecretError::Create(name.clone(), e.to_string()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| SecretError::Create(name.clone(), e.to_string()))?;
        writeln!(f, "{content}").map_err(|e| SecretError::Create(name.clone(), e.to_string()))?;
        created.push(name);
    }
    Ok(created)
}
