#!/usr/bin/env bash
# Prints /api/health p50/p99 while 16 clients log in continuously, and pgmon-api RSS idle and under load.
# BENCH_SECS sets the storm's length (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
export PGMON_TEST_PG_URL="${PGMON_TEST_PG_URL:-postgres://pgmon_test:pgmon_test@127.0.0.1:5432/postgres}"
cargo build --release --locked --bins -p pgmon-api -p pgmon-tests
exec target/release/bench_auth
