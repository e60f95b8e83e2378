//! bcrypt hashing off the async workers. A semaphore keeps at most one hash per spare core running, so
//! a login storm cannot take the CPU away from the request workers.

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
        Ok(tokio::task::spawn_blocking(move || bcrypt::hash(password, cost)).await??)
    }

    /// `hash = None` verifies against the dummy hash and returns false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        ok && known
    }
}
