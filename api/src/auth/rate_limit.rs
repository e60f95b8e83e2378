//! Login throttling: every login attempt takes a cell from two keyed GCRA limiters (governor), one per
//! login and one per client IP, before any bcrypt work. With the default of 5 a minute, the sixth
//! attempt within a minute is refused with 429 and Retry-After, whatever its password.
//!
//! The limits live in the process, as the original's slowapi limits did: each API instance applies
//! them on its own.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

#[derive(Clone)]
pub struct LoginLimiter {
    by_login: Arc<DefaultKeyedRateLimiter<String>>,
    by_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl LoginLimiter {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            by_login: Arc::new(RateLimiter::keyed(quota)),
            by_ip: Arc::new(RateLimiter::keyed(quota)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one attempt for `login` from `ip`; `Err(seconds)` says how long until one is allowed.
    pub fn check(&self, login: &str, ip: Option<IpAddr>) -> Result<(), u64> {
        let now = self.clock.now();
        let wait = |nu: governor::NotUntil<_>| nu.wait_time_from(now).as_secs() + 1;
        if let Some(ip) = ip {
            self.by_ip.check_key(&ip).map_err(wait)?;
        }
        self.by_login.check_key(&login.to_lowercase()).map_err(wait)
    }

    /// Forgets keys whose limits have fully replenished; called periodically.
    pub fn retain_recent(&self) {
        self.by_login.retain_recent();
        self.by_ip.retain_recent();
    }
}
