//! bcrypt hashing off the async workers. A semaphore keeps at most one hash per spare core running, so
//! a login storm cannot take the CPU away from the request workers.
//!
//! bcrypt reads 72 bytes of a password and ignores the rest. A longer password (a passphrase, or a
//! shorter one in a script with multi-byte characters) is hashed as the base64 of its SHA-256, and
//! the stored hash says so with a `$sha256` prefix; passwords of 72 bytes or less are plain bcrypt,
//! so hashes move between pgmon and Python's bcrypt (the original's `users.json`) both ways.

use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Hasher {
    cost: u32,
    permits: Arc<Semaphore>,
    /// Verified against when the login is unknown, so unknown and known logins take the same time.
    dummy_hash: Arc<String>,
}

impl Hasher {
    pub fn new(cost: u32) -> Result<Self, bcrypt::BcryptError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            cost,
            permits: Arc::new(Semaphore::new(cores.saturating_sub(1).max(1))),
            dummy_hash: Arc::new(bcrypt::hash("pgmon-dummy-password", cost)?),
        })
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let cost = self.cost;
        Ok(tokio::task::spawn_blocking(move || {
            if password.len() > BCRYPT_BYTES {
                bcrypt::hash(prehash(&password), cost).map(|h| format!("{PREHASHED}{h}"))
            } else {
                bcrypt::hash(password, cost)
            }
        })
        .await??)
    }

    /// `hash = None` verifies against the dummy hash and returns false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = tokio::task::spawn_blocking(move || match hash.strip_prefix(PREHASHED) {
            Some(h) => bcrypt::verify(prehash(&password), h).unwrap_or(false),
            None => password.len() <= BCRYPT_BYTES && bcrypt::verify(password, &hash).unwrap_or(false),
        })
        .await
        .unwrap_or(false);
        ok && known
    }
}

/// What bcrypt reads of a password.
const BCRYPT_BYTES: usize = 72;
/// Marks a hash of [`prehash`]ed input.
const PREHASHED: &str = "$sha256";

fn prehash(password: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(password.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_passwords_count_to_their_last_byte() {
        let h = Hasher::new(4).expect("hasher");
        let long = "é".repeat(40);
        let hash = h.hash(long.clone()).await.expect("hash");
        assert!(hash.starts_with("$sha256$2"), "{hash}");
        assert!(h.verify(long.clone(), Some(hash.clone())).await);
        // bcrypt alone would accept this one: it differs after byte 72.
        let mut other = long[..78].to_string();
        other.push('x');
        assert!(!h.verify(other, Some(hash)).await);
        // Short passwords stay plain bcrypt, as Python's bcrypt writes and reads them.
        let short = h.hash("short-pass-1".into()).await.expect("hash");
        assert!(short.starts_with("$2"));
        assert!(h.verify("short-pass-1".into(), Some(short)).await);
    }
}
