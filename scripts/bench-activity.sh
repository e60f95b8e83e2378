#!/usr/bin/env bash
# GET /api/servers/{name}/activity benchmark: BENCH_SESSIONS (500) sessions on a throwaway cluster,
# one client and BENCH_CLIENTS (8), against `SELECT * FROM pg_stat_activity` as the baseline. Prints
# p50 / p99, response bytes and pgmon-api's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_test_role
cargo build --release --locked --bins -p pgmon-api -p pgmon-tests
exec target/release/bench_activity
