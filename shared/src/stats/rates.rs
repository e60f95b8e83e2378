//! Rates from cumulative counters, without I/O so the rules can be tested on their own.
//!
//! PostgreSQL's `pg_stat_database` counters only grow until something resets them: `pg_stat_reset()`
//! (visible as a new `stats_reset`), a server restart (a new `postmaster_start`; counters are lost on a
//! crash), the database being dropped and re-created (a new oid), or a counter going down for any other
//! reason. Across such an event the difference of two samples is meaningless, so the delta is refused
//! rather than clamped: a refused delta leaves its interval uncovered, which shows as a shorter
//! denominator or a gap, never as a negative value or a spike. A delta spanning more than `max_gap`
//! (server down, collector stopped) is refused too, so a gap stays a gap instead of a line drawn across.
//!
//! The same rules run in SQL in `store::rollups` (which fills `stat_rollup`); readers combine both.

use chrono::{DateTime, Utc};

/// Number of cumulative counters turned into rates.
pub const COUNTERS: usize = 12;

/// The counters, in the order of [`Sample::counters`] and of the `stat_rollup` columns.
pub const COUNTER_NAMES: [&str; COUNTERS] = [
    "xact_commit",
    "xact_rollback",
    "blks_read",
    "blks_hit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "temp_bytes",
    "deadlocks",
    "conflicts",
];

pub const XACT_COMMIT: usize = 0;
pub const XACT_ROLLBACK: usize = 1;
pub const BLKS_READ: usize = 2;
pub const BLKS_HIT: usize = 3;

/// One `stat_database` row of one database.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub slot: DateTime<Utc>,
    pub collected_at: DateTime<Utc>,
    pub datid: i64,
    pub stats_reset: Option<DateTime<Utc>>,
    pub postmaster_start: Option<DateTime<Utc>>,
    pub numbackends: Option<i32>,
    pub counters: [Option<i64>; COUNTERS],
}

/// Why a delta was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    StatsReset,
    Restart,
    Recreated,
    CounterDown,
    Gap,
    /// Two samples not in time order (or taken at the same instant).
    NotAfter,
}

/// The outcome of comparing a sample with the previous one of the same database.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// `secs` seconds elapsed between the samples and each counter grew by `counters[i]`.
    Valid {
        secs: f64,
        counters: [i64; COUNTERS],
    },
    Refused(Refused),
}

/// Compares `cur` with `prev`, the previous sample of the same database.
pub fn delta(prev: &Sample, cur: &Sample, max_gap_secs: f64) -> Delta {
    let secs = (cur.collected_at - prev.collected_at).as_seconds_f64();
    let slot_gap = (cur.slot - prev.slot).as_seconds_f64();
    if secs <= 0.0 || slot_gap <= 0.0 {
        return Delta::Refused(Refused::NotAfter);
    }
    if cur.datid != prev.datid {
        return Delta::Refused(Refused::Recreated);
    }
    if cur.postmaster_start != prev.postmaster_start {
        return Delta::Refused(Refused::Restart);
    }
    if cur.stats_reset != prev.stats_reset {
        return Delta::Refused(Refused::StatsReset);
    }
    if slot_gap > max_gap_secs {
        return Delta::Refused(Refused::Gap);
    }
    let mut counters = [0i64; COUNTERS];
    for (i, out) in counters.iter_mut().enumerate() {
        if let (Some(a), Some(b)) = (prev.counters[i], cur.counters[i]) {
            if b < a {
                return Delta::Refused(Refused::CounterDown);
            }
            *out = b - a;
        }
    }
    Delta::Valid { secs, counters }
}

/// Additive aggregate of one bucket: sums and counts only, so buckets merge by addition whatever
/// they were computed from (rollup rows or raw rows).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acc {
    /// Seconds covered by valid deltas.
    pub secs: f64,
    pub counters: [i64; COUNTERS],
    pub backends_sum: i64,
    pub backends_n: i64,
    pub size_sum: f64,
    pub size_n: i64,
    pub disk_used_sum: f64,
    pub disk_total_sum: f64,
    pub disk_n: i64,
    pub up_n: i64,
    pub avail_n: i64,
}

impl Acc {
    pub fn merge(&mut self, o: &Acc) {
        self.secs += o.secs;
        for (a, b) in self.counters.iter_mut().zip(o.counters.iter()) {
            *a = a.saturating_add(*b);
        }
        self.backends_sum += o.backends_sum;
        self.backends_n += o.backends_n;
        self.size_sum += o.size_sum;
        self.size_n += o.size_n;
        self.disk_used_sum += o.disk_used_sum;
        self.disk_total_sum += o.disk_total_sum;
        self.disk_n += o.disk_n;
        self.up_n += o.up_n;
        self.avail_n += o.avail_n;
    }

    /// Adds a valid delta.
    pub fn add_delta(&mut self, secs: f64, counters: &[i64; COUNTERS]) {
        self.secs += secs;
        for (a, b) in self.counters.iter_mut().zip(counters.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// Per-second rate of counter `i`; `None` when no valid delta fell in the bucket (a gap).
    pub fn rate(&self, i: usize) -> Option<f64> {
        (self.secs > 0.0).then(|| self.counters[i] as f64 / self.secs)
    }

    /// Commits plus rollbacks per second.
    pub fn xact_rate(&self) -> Option<f64> {
        (self.secs > 0.0)
            .then(|| (self.counters[XACT_COMMIT] as f64 + self.counters[XACT_ROLLBACK] as f64) / self.secs)
    }

    /// Share of block requests served from shared buffers over the bucket; `None` without any read.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        let hit = self.counters[BLKS_HIT] as f64;
        let total = hit + self.counters[BLKS_READ] as f64;
        (self.secs > 0.0 && total > 0.0).then(|| hit / total)
    }

    pub fn numbackends(&self) -> Option<f64> {
        (self.backends_n > 0).then(|| self.backends_sum as f64 / self.backends_n as f64)
    }

    pub fn size_bytes(&self) -> Option<f64> {
        (self.size_n > 0).then(|| self.size_sum / self.size_n as f64)
    }

    pub fn disk_used_bytes(&self) -> Option<f64> {
        (self.disk_n > 0).then(|| self.disk_used_sum / self.disk_n as f64)
    }

    pub fn disk_total_bytes(&self) -> Option<f64> {
        (self.disk_n > 0).then(|| self.disk_total_sum / self.disk_n as f64)
    }

    /// Share of availability probes that found the server up.
    pub fn availability(&self) -> Option<f64> {
        (self.avail_n > 0).then(|| self.up_n as f64 / self.avail_n as f64)
    }
}

/// What one slot contributes to its bucket, for one database.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotDelta {
    pub slot: DateTime<Utc>,
    /// `None`: no previous sample (nothing to compare with, not an error).
    pub delta: Option<Delta>,
    pub numbackends: Option<i32>,
}

/// Deltas of one database's samples, sorted by slot; the first sample only serves as a baseline.
pub fn series_deltas(samples: &[Sample], max_gap_secs: f64) -> Vec<SlotDelta> {
    let mut out = Vec::with_capacity(samples.len());
    let mut prev: Option<&Sample> = None;
    for s in samples {
        out.push(SlotDelta {
            slot: s.slot,
            delta: prev.map(|p| delta(p, s, max_gap_secs)),
            numbackends: s.numbackends,
        });
        prev = Some(s);
    }
    out
}

/// Server-wide contribution of one slot from the deltas of its databases at that slot.
///
/// If any database refused its delta (a restart refuses all of them; a reset of one database would
/// otherwise show as a dip), the whole slot is left uncovered. A database without a previous sample
/// (new, or first after the baseline) just adds nothing.
pub fn server_slot(per_db: &[&SlotDelta]) -> Acc {
    let mut acc = Acc::default();
    let mut secs: f64 = 0.0;
    let mut counters = [0i64; COUNTERS];
    let mut refused = false;
    for d in per_db {
        if let Some(n) = d.numbackends {
            acc.backends_sum += i64::from(n);
        }
        match &d.delta {
            Some(Delta::Valid { secs: s, counters: c }) => {
                secs = secs.max(*s);
                for (a, b) in counters.iter_mut().zip(c.iter()) {
                    *a = a.saturating_add(*b);
                }
            }
            Some(Delta::Refused(_)) => refused = true,
            None => {}
        }
    }
    if per_db.iter().any(|d| d.numbackends.is_some()) {
        acc.backends_n = 1;
    }
    if !refused {
        acc.add_delta(secs, &counters);
    }
    acc
}

/// What one slot of one database contributes to its bucket.
pub fn db_slot(d: &SlotDelta) -> Acc {
    let mut acc = Acc::default();
    if let Some(n) = d.numbackends {
        acc.backends_sum = i64::from(n);
        acc.backends_n = 1;
    }
    if let Some(Delta::Valid { secs, counters }) = &d.delta {
        acc.add_delta(*secs, counters);
    }
    acc
}

/// Start of the `step_secs`-wide bucket holding `t`, buckets aligned on the Unix epoch (as SQL's
/// `date_bin(step, t, 'epoch')`).
pub fn bucket_start(t: DateTime<Utc>, step_secs: i64) -> DateTime<Utc> {
    let step_us = step_secs.max(1) * 1_000_000;
    let us = t.timestamp_micros();
    let b = us.div_euclid(step_us) * step_us;
    DateTime::from_timestamp_micros(b).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    fn sample(slot: i64, commits: i64) -> Sample {
        Sample {
            slot: t(slot),
            collected_at: t(slot + 3),
            datid: 5,
            stats_reset: None,
            postmaster_start: Some(t(-100_000)),
            numbackends: Some(4),
            counters: [
                Some(commits),
                Some(1),
                Some(commits / 10),
                Some(commits / 10 * 9),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            ],
        }
    }

    fn commits_of(d: &SlotDelta) -> Option<i64> {
        match &d.delta {
            Some(Delta::Valid { counters, .. }) => Some(counters[XACT_COMMIT]),
            _ => None,
        }
    }

    #[test]
    fn steady_counters_give_rates() {
        let s = [sample(0, 100), sample(600, 700), sample(1200, 1900)];
        let d = series_deltas(&s, 1200.0);
        assert_eq!(d[0].delta, None);
        assert_eq!(commits_of(&d[1]), Some(600));
        let mut acc = Acc::default();
        for x in &d {
            acc.merge(&db_slot(x));
        }
        assert_eq!(acc.secs, 1200.0);
        assert_eq!(acc.rate(XACT_COMMIT), Some(1800.0 / 1200.0));
        assert_eq!(acc.numbackends(), Some(4.0));
        assert_eq!(acc.cache_hit_ratio(), Some(0.9));
    }

    #[test]
    fn stats_reset_refuses_the_delta() {
        let mut after = sample(600, 5);
        after.stats_reset = Some(t(550));
        let d = series_deltas(&[sample(0, 1_000_000), after, sample(1200, 0)], 1200.0);
        assert_eq!(d[1].delta, Some(Delta::Refused(Refused::StatsReset)));
        // The sample after the reset has the old stats_reset again: still a change, still refused.
        assert_eq!(d[2].delta, Some(Delta::Refused(Refused::StatsReset)));
        let mut next = sample(1800, 65);
        next.stats_reset = Some(t(550));
        let mut mid = sample(1200, 5);
        mid.stats_reset = Some(t(550));
        let d = series_deltas(&[mid, next], 1200.0);
        assert_eq!(commits_of(&d[1]), Some(60));
    }

    #[test]
    fn restart_refuses_the_delta_even_if_counters_grew() {
        let mut after = sample(600, 2_000_000);
        after.postmaster_start = Some(t(500));
        let d = series_deltas(&[sample(0, 1_000_000), after], 1200.0);
        assert_eq!(d[1].delta, Some(Delta::Refused(Refused::Restart)));
    }

    #[test]
    fn counter_going_down_is_refused_never_negative() {
        let d = series_deltas(&[sample(0, 500), sample(600, 400)], 1200.0);
        assert_eq!(d[1].delta, Some(Delta::Refused(Refused::CounterDown)));
        let acc = db_slot(&d[1]);
        assert_eq!(acc.rate(XACT_COMMIT), None);
    }

    #[test]
    fn gap_stays_a_gap() {
        let d = series_deltas(&[sample(0, 0), sample(600, 600), sample(4200, 4200)], 1200.0);
        assert_eq!(d[2].delta, Some(Delta::Refused(Refused::Gap)));
        // Buckets of 600 s: the one after the gap holds no valid delta, so it has no rate.
        assert_eq!(db_slot(&d[2]).rate(XACT_COMMIT), None);
    }

    #[test]
    fn recreated_database_and_disorder_are_refused() {
        let mut other = sample(600, 700);
        other.datid = 6;
        assert_eq!(
            delta(&sample(0, 100), &other, 1200.0),
            Delta::Refused(Refused::Recreated)
        );
        assert_eq!(
            delta(&sample(600, 100), &sample(0, 50), 1200.0),
            Delta::Refused(Refused::NotAfter)
        );
    }

    #[test]
    fn server_slot_sums_databases_and_drops_a_slot_with_a_reset() {
        let a = SlotDelta {
            slot: t(600),
            delta: Some(Delta::Valid {
                secs: 600.0,
                counters: [60; COUNTERS],
            }),
            numbackends: Some(2),
        };
        let b = SlotDelta {
            slot: t(600),
            delta: Some(Delta::Valid {
                secs: 598.0,
                counters: [6; COUNTERS],
            }),
            numbackends: Some(3),
        };
        let new_db = SlotDelta {
            slot: t(600),
            delta: None,
            numbackends: Some(1),
        };
        let acc = server_slot(&[&a, &b, &new_db]);
        assert_eq!(acc.secs, 600.0);
        assert_eq!(acc.counters[XACT_COMMIT], 66);
        assert_eq!(acc.numbackends(), Some(6.0));
        let reset = SlotDelta {
            slot: t(600),
            delta: Some(Delta::Refused(Refused::StatsReset)),
            numbackends: Some(1),
        };
        let acc = server_slot(&[&a, &reset]);
        assert_eq!(acc.secs, 0.0);
        assert_eq!(acc.rate(XACT_COMMIT), None);
        assert_eq!(acc.numbackends(), Some(3.0));
    }

    #[test]
    fn buckets_align_on_the_epoch() {
        let x = Utc
            .timestamp_opt(3_600 * 5 + 1_799, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(bucket_start(x, 3600).timestamp(), 3_600 * 5);
        assert_eq!(bucket_start(x, 600).timestamp(), 3_600 * 5 + 1_200);
        let before_epoch = Utc.timestamp_opt(-1, 0).single().unwrap_or_default();
        assert_eq!(bucket_start(before_epoch, 600).timestamp(), -600);
    }
}
