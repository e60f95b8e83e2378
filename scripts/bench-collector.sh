#!/usr/bin/env bash
# Collector benchmark: one stats slot of BENCH_SERVERS (1000) servers spread over BENCH_CLUSTERS (4)
# throwaway clusters with BENCH_DBS (50) databases each. Prints wall time, collector CPU time and peak
# RSS, rows and rows/s, and the write path against a plain COPY of the same rows.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
pg_super <<'SQL'
SELECT 'CREATE ROLE pgmon_test LOGIN SUPERUSER PASSWORD ''pgmon_test'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgmon_test') \gexec
SQL
export PGMON_TEST_PG_URL="${PGMON_TEST_PG_URL:-postgres://pgmon_test:pgmon_test@127.0.0.1:5432/postgres}"
cargo build --release --locked --bins -p pgmon-api -p pgmon-collector -p pgmon-tests
exec target/release/bench_collector
