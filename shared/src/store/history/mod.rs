//! The history families besides `pg_stat_database`, sizes and disk: one module per family, each with
//! its rows, the statement that writes them and how they are read back. Rows are written with
//! `ON CONFLICT DO NOTHING` on their (server, key, slot) primary key, so a slot written twice stays
//! one row, inside the collector's write transaction.

pub mod activity;
pub mod archiver;
pub mod checkpointer;
pub mod io;
pub mod replication;
pub mod statements;
pub mod wal;

use super::Result;
use sqlx::{PgConnection, Postgres, QueryBuilder};

/// Rows per INSERT statement: under PostgreSQL's 65,535 bind parameters for every family here.
const CHUNK: usize = 1000;

/// `INSERT INTO {head} VALUES (...), ... ON CONFLICT DO NOTHING` in chunks, binding each row with
/// `bind`.
pub(crate) async fn insert_rows<T>(
    conn: &mut PgConnection,
    head: &str,
    tail: &str,
    rows: &[&T],
    bind: impl Fn(&mut sqlx::query_builder::Separated<'_, Postgres, &'static str>, &T),
) -> Result<u64> {
    let mut n = 0;
    for chunk in rows.chunks(CHUNK) {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO {head} "));
        q.push_values(chunk.iter(), |mut b, r| bind(&mut b, r));
        q.push(format!(" {tail}"));
        n += q.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(n)
}
