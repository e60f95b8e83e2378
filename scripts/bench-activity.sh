#!/usr/bin/env bash
# GET /api/servers/{name}/activity benchmark: BENCH_SESSIONS (500) sessions on a throwaway cluster,
# one client and BENCH_CLIENTS (8), against `SELECT * FROM pg_stat_activity` as the baseline. Prints
# p50 / p99, response bytes and pgmon-api's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
pg_super <<'SQL'
SELECT 'CREATE ROLE pgmon_test LOGIN SUPERUSER PASSWORD ''pgmon_test'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgmon_test') \gexec
SQL
export PGMON_TEST_PG_URL="${PGMON_TEST_PG_URL:-postgres://pgmon_test:pgmon_test@127.0.0.1:5432/postgres}"
cargo build --release --locked --bins -p pgmon-api -p pgmon-tests
exec target/release/bench_activity
