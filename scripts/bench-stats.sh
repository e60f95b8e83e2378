#!/usr/bin/env bash
# History read benchmark: generates 12 months of 10-minute snapshots for 10 servers x 20 databases
# straight into a fresh store database, rolls them up, then loads the history endpoints with 64
# concurrent clients (7 and 365 days for one database, 30 days for a server). Prints req/s, p50, p99,
# pgmon-api RSS and the same rollup query run directly as the plain-SQL baseline.
# BENCH_SECS sets each scenario's length (default 15). Data generation takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
# The store database is created through the harness default (postgres@127.0.0.1:5432, trust), or
# PGMON_TEST_PG_URL when set.
cargo build --release --locked --bins -p pgmon-api -p pgmon-tests
exec target/release/bench_stats
