//! Throttling of `test-connection` / `test-pg` / `test-ssh`: each attempt takes a cell from a keyed
//! GCRA limiter (governor) per user, before anything is resolved or connected. Error classes and
//! latencies of probes to arbitrary host:port pairs would otherwise make the API a port scanner for
//! anyone with the operator role (`servers.test_attempts_per_minute`, default 30).
//!
//! The limit lives in the process, as the login limits do: each API instance applies it on its own.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;

#[derive(Clone)]
pub struct ProbeLimiter {
    by_user: Arc<DefaultKeyedRateLimiter<String>>,
    per_minute: u32,
    clock: DefaultClock,
}

impl ProbeLimiter {
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            by_user: Arc::new(RateLimiter::keyed(quota)),
            per_minute,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one probe for `login`; `Err((limit, seconds))` says the limit and how long until the
    /// next probe is allowed.
    pub fn check(&self, login: &str) -> Result<(), (u32, u64)> {
        let now = self.clock.now();
        self.by_user
            .check_key(&login.to_lowercase())
            .map_err(|nu| (self.per_minute, nu.wait_time_from(now).as_secs() + 1))
    }

    /// Forgets users whose limits have fully replenished; called periodically.
    pub fn retain_recent(&self) {
        self.by_user.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_after_the_limit_is_refused_per_user() {
        let l = ProbeLimiter::new(3);
        for _ in 0..3 {
            assert!(l.check("op").is_ok());
        }
        let (limit, wait) = l.check("OP").expect_err("fourth");
        assert_eq!(limit, 3);
        assert!((1..=61).contains(&wait), "{wait}");
        assert!(l.check("admin").is_ok(), "another user has their own budget");
    }
}
