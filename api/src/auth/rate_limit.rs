//! Login throttling, as OWASP recommends: limits per (login, client IP) pair and per client IP, and per
//! login only a slow-down.
//!
//! A refusal per login would be a lock-out anyone can cause: five wrong passwords a minute from
//! anywhere and `admin` could not log in. So each attempt takes a cell from two keyed GCRA limiters
//! (governor) before any bcrypt work: its client IP's (`api.login_attempts_per_minute_per_ip`, a
//! password spray) and its (login, IP) pair's (`api.login_attempts_per_minute`, guessing one
//! password). Per login, recent failures (from anywhere, decaying at the pair's rate) only delay
//! the next attempts, by at most [`MAX_DELAY`]: a distributed guess at one login is slowed, and the
//! owner, from an IP that has not failed, still gets in.
//!
//! Attempts refused by a limiter are audited in aggregate ([`Refusals`]): one row per client IP and
//! minute, updated with the count and the logins tried, so a flood of anonymous attempts cannot
//! grow the audit table (or load the store) with each request.
//!
//! The limits live in the process, as the original's slowapi limits did: each API instance applies
//! them on its own.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use pgmon_shared::store::audit::{self, Actor, event};
use sqlx::PgPool;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest slow-down of a login attempt.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// Slow-down per recent failure of a login beyond what the pair limit lets one client make.
const DELAY_PER_FAILURE: Duration = Duration::from_millis(200);
/// Logins whose failures are remembered at once: the names are the client's, so the map is bounded.
const MAX_LOGINS: usize = 10_000;

#[derive(Clone)]
pub struct LoginLimiter {
    by_pair: Arc<DefaultKeyedRateLimiter<(String, Option<IpAddr>)>>,
    by_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    failures: Arc<Mutex<HashMap<String, Decaying>>>,
    /// The pair limit: failures beyond it (per minute, from all IPs) slow a login down.
    per_minute: f64,
    clock: DefaultClock,
    pub refusals: Arc<Refusals>,
}

/// A count that leaks `per_minute` a minute.
#[derive(Clone, Copy)]
struct Decaying {
    level: f64,
    at: Instant,
}

impl Decaying {
    fn now(self, per_minute: f64, now: Instant) -> f64 {
        let leaked = now.saturating_duration_since(self.at).as_secs_f64() / 60.0 * per_minute;
        (self.level - leaked).max(0.0)
    }
}

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
}

impl LoginLimiter {
    /// `per_pair`: attempts a minute per (login, IP); `per_ip`: per IP whatever the login.
    pub fn new(per_pair: u32, per_ip: u32) -> Self {
        Self {
            by_pair: Arc::new(RateLimiter::keyed(quota(per_pair))),
            by_ip: Arc::new(RateLimiter::keyed(quota(per_ip))),
            failures: Arc::new(Mutex::new(HashMap::new())),
            per_minute: f64::from(per_pair.max(1)),
            clock: DefaultClock::default(),
            refusals: Arc::new(Refusals::default()),
        }
    }

    /// Takes one attempt for `login` from `ip`; `Err(seconds)` says how long until one is allowed.
    /// The IP is checked first, so that one client cannot fill the pair map with made-up logins.
    pub fn check(&self, login: &str, ip: Option<IpAddr>) -> Result<(), u64> {
        let now = self.clock.now();
        let wait = |nu: governor::NotUntil<_>| nu.wait_time_from(now).as_secs() + 1;
        if let Some(ip) = ip {
            self.by_ip.check_key(&ip).map_err(wait)?;
        }
        self.by_pair.check_key(&(login.to_lowercase(), ip)).map_err(wait)
    }

    /// How long to hold an attempt at `login` before checking its password: nothing until its
    /// recent failures exceed the pair limit, then growing with them up to [`MAX_DELAY`].
    pub fn delay(&self, login: &str) -> Duration {
        let level = self
            .failures
            .lock()
            .ok()
            .and_then(|m| m.get(&login.to_lowercase()).copied())
            .map_or(0.0, |d| d.now(self.per_minute, Instant::now()));
        // Bounded before the multiplication: the result is capped anyway.
        let excess = (level - self.per_minute).ceil().min(100.0);
        if excess <= 0.0 {
            return Duration::ZERO;
        }
        DELAY_PER_FAILURE.mul_f64(excess).min(MAX_DELAY)
    }

    /// Counts a wrong password (or unknown login) for the slow-down of `login`.
    pub fn failed(&self, login: &str) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        let now = Instant::now();
        let key = login.to_lowercase();
        if map.len() >= MAX_LOGINS && !map.contains_key(&key) {
            let per_minute = self.per_minute;
            map.retain(|_, d| d.now(per_minute, now) > 0.0);
            if map.len() >= MAX_LOGINS {
                return;
            }
        }
        let level = map.get(&key).map_or(0.0, |d| d.now(self.per_minute, now));
        map.insert(
            key,
            Decaying {
                level: level + 1.0,
                at: now,
            },
        );
    }

    /// Forgets keys whose limits have fully replenished; called periodically.
    pub fn retain_recent(&self) {
        self.by_pair.retain_recent();
        self.by_ip.retain_recent();
        if let Ok(mut map) = self.failures.lock() {
            let (per_minute, now) = (self.per_minute, Instant::now());
            map.retain(|_, d| d.now(per_minute, now) > 0.0);
        }
    }
}

/// Logins listed in one aggregate row.
const MAX_LOGINS_LISTED: usize = 10;
/// Client IPs counted at once; past this, refusals are counted under "no IP" (`client_ip` NULL).
const MAX_IPS: usize = 10_000;

/// Refused attempts of one client IP in one minute: one audit row, inserted at the first refusal and
/// updated by [`Refusals::flush`] as more come.
struct Window {
    minute: i64,
    /// The audit row, once inserted.
    id: Option<i64>,
    count: u64,
    logins: Vec<String>,
    more_logins: bool,
    /// Counted since the row was last written.
    dirty: bool,
}

impl Window {
    fn details(&self) -> String {
        let mut logins = self.logins.join(", ");
        if self.more_logins {
            logins.push_str(", ...");
        }
        let n = self.count;
        let s = if n == 1 { "" } else { "s" };
        format!("{n} login attempt{s} refused by the throttle in this minute; logins tried: {logins}")
    }
}

/// The aggregate audit of refused login attempts (see the module docs).
#[derive(Default)]
pub struct Refusals {
    inner: Mutex<RefusalsInner>,
}

#[derive(Default)]
struct RefusalsInner {
    windows: HashMap<Option<IpAddr>, Window>,
    /// Rows of past minutes not written since their last counts: (id, details).
    finished: Vec<(i64, String)>,
}

impl Refusals {
    /// Counts one refused attempt; `Some(details)` when it opens the IP's minute, and the caller
    /// writes the row (then [`Self::inserted`]).
    fn count(&self, ip: Option<IpAddr>, login: &str, minute: i64) -> Option<(Option<IpAddr>, String)> {
        let mut g = self.inner.lock().ok()?;
        let inner = &mut *g;
        let key = if inner.windows.len() >= MAX_IPS && !inner.windows.contains_key(&ip) {
            None
        } else {
            ip
        };
        if let Some(w) = inner.windows.get(&key)
            && w.minute != minute
        {
            if let (true, Some(id)) = (w.dirty, w.id) {
                inner.finished.push((id, w.details()));
            }
            inner.windows.remove(&key);
        }
        let login: String = login.chars().take(128).collect();
        match inner.windows.get_mut(&key) {
            Some(w) => {
                w.count += 1;
                w.dirty = true;
                if !w.logins.contains(&login) {
                    if w.logins.len() < MAX_LOGINS_LISTED {
                        w.logins.push(login);
                    } else {
                        w.more_logins = true;
                    }
                }
                None
            }
            None => {
                let w = Window {
                    minute,
                    id: None,
                    count: 1,
                    logins: vec![login],
                    more_logins: false,
                    dirty: false,
                };
                let details = w.details();
                inner.windows.insert(key, w);
                Some((key, details))
            }
        }
    }

    fn inserted(&self, key: Option<IpAddr>, minute: i64, id: i64) {
        if let Ok(mut g) = self.inner.lock()
            && let Some(w) = g.windows.get_mut(&key).filter(|w| w.minute == minute)
        {
            w.id = Some(id);
        }
    }

    /// Audits one refused attempt: a store write only for the first of its IP's minute.
    pub async fn record(&self, pool: &PgPool, ip: Option<IpAddr>, login: &str, user_agent: Option<String>) {
        let minute = chrono::Utc::now().timestamp().div_euclid(60);
        let Some((key, details)) = self.count(ip, login, minute) else {
            return;
        };
        // Not the login: people type passwords into the login field.
        tracing::warn!(client_ip = ?key, "login attempts refused by the throttle");
        let who = Actor {
            login: Some(login.chars().take(128).collect()),
            client_ip: key.map(|i| i.to_string()),
            user_agent,
        };
        match audit::record_returning_id(pool, event::LOGIN_RATE_LIMITED, &who, Some(&details)).await {
            Ok(id) => self.inserted(key, minute, id),
            Err(e) => tracing::warn!(error = %e, "audit write failed"),
        }
    }

    /// Writes the counts gathered since the last flush, and forgets past minutes.
    pub async fn flush(&self, pool: &PgPool) {
        let minute = chrono::Utc::now().timestamp().div_euclid(60);
        let rows = {
            let Ok(mut g) = self.inner.lock() else { return };
            let mut rows = std::mem::take(&mut g.finished);
            for w in g.windows.values_mut() {
                if let (true, Some(id)) = (w.dirty, w.id) {
                    rows.push((id, w.details()));
                    w.dirty = false;
                }
            }
            // A row whose insert failed is never written: forget it with its minute.
            g.windows.retain(|_, w| w.minute == minute);
            rows
        };
        for (id, details) in rows {
            if let Err(e) = audit::update_details(pool, id, &details).await {
                tracing::warn!(error = %e, "audit write failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_a_login_down_without_refusing_it() {
        let l = LoginLimiter::new(3, 100);
        for _ in 0..3 {
            l.failed("Admin");
        }
        assert_eq!(l.delay("admin"), Duration::ZERO, "within the pair limit");
        l.failed("admin");
        assert!(l.delay("ADMIN") >= Duration::from_millis(150));
        for _ in 0..100 {
            l.failed("admin");
        }
        assert_eq!(l.delay("admin"), MAX_DELAY);
        assert_eq!(l.delay("operator"), Duration::ZERO);
    }

    #[test]
    fn the_pair_and_the_ip_limits_are_separate() {
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let l = LoginLimiter::new(2, 3);
        assert!(l.check("admin", Some(a)).is_ok());
        assert!(l.check("admin", Some(a)).is_ok());
        assert!(l.check("admin", Some(a)).is_err(), "the pair");
        assert!(l.check("admin", Some(b)).is_ok(), "another IP");
        assert!(l.check("viewer", Some(b)).is_ok());
        assert!(l.check("operator", Some(b)).is_ok());
        assert!(l.check("root", Some(b)).is_err(), "the IP");
    }

    #[test]
    fn refusals_make_one_row_per_ip_and_minute() {
        let r = Refusals::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let (key, details) = r.count(Some(a), "admin", 10).expect("first");
        assert_eq!(key, Some(a));
        assert!(details.starts_with("1 login attempt refused"), "{details}");
        r.inserted(key, 10, 42);
        for i in 0..30 {
            assert!(r.count(Some(a), &format!("user{i}"), 10).is_none());
        }
        let g = r.inner.lock().expect("lock");
        let w = &g.windows[&Some(a)];
        assert_eq!(w.count, 31);
        assert_eq!(w.logins.len(), MAX_LOGINS_LISTED);
        assert!(w.details().ends_with(", ..."), "{}", w.details());
        drop(g);
        assert!(r.count(Some(a), "admin", 11).is_some(), "a new minute, a new row");
        assert_eq!(r.inner.lock().expect("lock").finished.len(), 1);
    }
}
