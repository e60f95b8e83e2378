//! The record format of `stat_rollup_chunk.data` (see migrations/0006_rollup_chunks.sql): written by
//! the store itself, as the generated column `stat_rollup.rec` (migrations/0007_rollup_records.sql)
//! that `rollups::pack` moves into chunks, and read here. The reader and [`record_sql`] both follow
//! the field list below, and a test holds the migration's expression to [`record_sql`], so the two
//! sides cannot disagree.

use crate::stats::rates::{Acc, COUNTER_NAMES, COUNTERS};

#[derive(Clone, Copy)]
enum Kind {
    Ts,
    F8,
    Bool,
    I8,
    I4,
}

impl Kind {
    fn width(self) -> usize {
        match self {
            Kind::Ts | Kind::F8 | Kind::I8 => 8,
            Kind::I4 => 4,
            Kind::Bool => 1,
        }
    }
    fn send_fn(self) -> &'static str {
        match self {
            Kind::Ts => "timestamptz_send",
            Kind::F8 => "float8send",
            Kind::Bool => "boolsend",
            Kind::I8 => "int8send",
            Kind::I4 => "int4send",
        }
    }
}

/// The fields of one record, in order; the counters sit between `broken` and `backends_sum`.
const HEAD: [(&str, Kind); 3] = [("bucket", Kind::Ts), ("secs", Kind::F8), ("broken", Kind::Bool)];
const TAIL: [(&str, Kind); 9] = [
    ("backends_sum", Kind::I8),
    ("backends_n", Kind::I4),
    ("size_sum", Kind::F8),
    ("size_n", Kind::I4),
    ("disk_used_sum", Kind::F8),
    ("disk_total_sum", Kind::F8),
    ("disk_n", Kind::I4),
    ("up_n", Kind::I4),
    ("avail_n", Kind::I4),
];

fn fields() -> impl Iterator<Item = (&'static str, Kind)> {
    HEAD.into_iter()
        .chain(COUNTER_NAMES.into_iter().map(|n| (n, Kind::I8)))
        .chain(TAIL)
}

/// Bytes per record.
pub fn record_len() -> usize {
    fields().map(|(_, k)| k.width()).sum()
}

/// SQL expression turning one stat_rollup row into its record: the expression of `stat_rollup.rec`.
pub fn record_sql() -> String {
    fields()
        .map(|(n, k)| format!("{}({n})", k.send_fn()))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().unwrap_or([0; N])
    }
    fn i8(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
    fn f8(&mut self) -> f64 {
        f64::from_be_bytes(self.take())
    }
    fn i4(&mut self) -> i64 {
        i64::from(i32::from_be_bytes(self.take()))
    }
}

/// Calls `f(bucket, acc)` for every record of `data`, `bucket` in microseconds since the Unix
/// epoch (integer time: this runs for every record of every read). `None` if `data` is not a whole
/// number of records (a chunk written by another version of the format).
pub fn decode(data: &[u8], mut f: impl FnMut(i64, Acc)) -> Option<()> {
    let len = record_len();
    if !data.len().is_multiple_of(len) {
        return None;
    }
    for rec in data.chunks_exact(len) {
        let mut r = Reader(rec);
        let micros = r.i8().checked_add(PG_EPOCH_MICROS)?;
        let mut acc = Acc {
            secs: r.f8(),
            ..Acc::default()
        };
        let _broken = r.take::<1>();
        for c in acc.counters.iter_mut().take(COUNTERS) {
            *c = r.i8();
        }
        acc.backends_sum = r.i8();
        acc.backends_n = r.i4();
        acc.size_sum = r.f8();
        acc.size_n = r.i4();
        acc.disk_used_sum = r.f8();
        acc.disk_total_sum = r.f8();
        acc.disk_n = r.i4();
        acc.up_n = r.i4();
        acc.avail_n = r.i4();
        f(micros, acc);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_matches_the_migration() {
        assert_eq!(record_len(), 165);
        assert!(record_sql().starts_with("timestamptz_send(bucket) || float8send(secs) || boolsend(broken)"));
        assert!(record_sql().ends_with("int4send(up_n) || int4send(avail_n)"));
    }

    #[test]
    fn stat_rollup_rec_is_the_record() {
        let migration = include_str!("../../../migrations/0007_rollup_records.sql");
        let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat(migration).contains(&format!("GENERATED ALWAYS AS ( {} ) STORED", record_sql())),
            "0007_rollup_records.sql must compute rec with record_sql()"
        );
    }

    #[test]
    fn a_truncated_chunk_is_refused() {
        assert!(decode(&[0u8; 164], |_, _| {}).is_none());
        let mut n = 0;
        assert!(
            decode(&[0u8; 330], |t, _| {
                assert_eq!(t, 946_684_800_000_000, "2000-01-01T00:00:00Z");
                n += 1;
            })
            .is_some()
        );
        assert_eq!(n, 2);
    }
}
