#!/usr/bin/env bash
# Statements benchmark: a server with 5,000 statements and 500 MB of query text; per slot of a running
# collector: wall time, collector CPU and RSS, bytes from the server; against SELECT * FROM
# pg_stat_statements. BENCH_STATEMENTS and BENCH_TEXT_KB change the size.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
pg_super <<'SQL'
SELECT 'CREATE ROLE pgmon_test LOGIN SUPERUSER PASSWORD ''pgmon_test'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgmon_test') \gexec
SQL
export PGMON_TEST_PG_URL="${PGMON_TEST_PG_URL:-postgres://pgmon_test:pgmon_test@127.0.0.1:5432/postgres}"
cargo build --release --locked --bins -p pgmon-collector -p pgmon-tests
exec target/release/bench_statements
