//! Fernet encryption of stored secrets (server and SSH passwords, private keys), compatible both ways
//! with Python's `cryptography.fernet`.

/// Holds the key; cheap to clone behind an `Arc`. Its Debug output never shows the key.
pub struct Crypto {
    fernet: fernet::Fernet,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypto(<key>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a stored secret cannot be decrypted with the configured encryption key")]
pub struct DecryptError;

impl Crypto {
    /// `key` is urlsafe base64 of 32 bytes, as `Fernet.generate_key()` writes it.
    pub fn from_key(key: &str) -> Option<Self> {
        fernet::Fernet::new(key).map(|fernet| Self { fernet })
    }

    pub fn encrypt(&self, plain: &str) -> String {
        self.fernet.encrypt(plain.as_bytes())
    }

    pub fn decrypt(&self, token: &str) -> Result<String, DecryptError> {
        let bytes = self.fernet.decrypt(token).map_err(|_| DecryptError)?;
        String::from_utf8(bytes).map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let c = Crypto::from_key(&fernet::Fernet::generate_key()).expect("key");
        let t = c.encrypt("pässword");
        assert_ne!(t, "pässword");
        assert_eq!(c.decrypt(&t).expect("decrypt"), "pässword");
        let other = Crypto::from_key(&fernet::Fernet::generate_key()).expect("key");
        assert!(other.decrypt(&t).is_err());
        assert!(Crypto::from_key("short").is_none());
    }
}
