#!/usr/bin/env bash
# GET /servers benchmark: BENCH_SERVERS (200) registered servers on a throwaway cluster, BENCH_BLACKHOLED
# (10) of them black-holed, polled by BENCH_CLIENTS (20) concurrent clients for BENCH_SECS (30) s.
# Prints p50, p99 and the slowest request, and pgmon-api's RSS.
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
exec target/release/bench_servers
