//! A monitored server's `server_version_num`, and which catalog it has. Both processes branch their
//! queries on it for PostgreSQL 12 to 18.

/// `server_version_num`, e.g. 150010.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(pub i32);

impl Version {
    /// The newest major whose catalog pgmon knows.
    pub const NEWEST_KNOWN: i32 = 18;

    pub fn major(self) -> i32 {
        self.0 / 10_000
    }

    /// True when the server is at least `major` and pgmon knows its catalog: for what a version
    /// added (a column, a view), an unknown newer major is treated as the oldest supported one, so
    /// it gets what every version shares instead of an error.
    pub fn has(self, major: i32) -> bool {
        self.major() >= major && self.major() <= Self::NEWEST_KNOWN
    }

    /// True from `major` on, newer unknown majors included: for what a version changed or removed
    /// (the 17 split of `pg_stat_bgwriter`), where the old layout surely no longer exists.
    pub fn since(self, major: i32) -> bool {
        self.major() >= major
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_newer_major_gets_what_all_versions_share() {
        assert!(Version(150010).has(14));
        assert!(!Version(130005).has(14));
        assert!(Version(180001).has(17));
        assert!(!Version(190000).has(13), "19 is not known yet");
        assert!(Version(190000).since(17), "but it surely has 17's layout changes");
    }
}
