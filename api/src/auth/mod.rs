//! Authentication: JWTs, the request guard, password hashing and login throttling.

pub mod guard;
pub mod jwt;
pub mod password;
pub mod rate_limit;

pub use guard::{Auth, Principal};
