#!/usr/bin/env bash
# GET /servers benchmark: BENCH_SERVERS (200) registered servers on a throwaway cluster, BENCH_BLACKHOLED
# (10) of them black-holed, polled by BENCH_CLIENTS (20) concurrent clients for BENCH_SECS (30) s.
# Prints p50, p99 and the slowest request, and pgmon-api's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_test_role
cargo build --release --locked --bins -p pgmon-api -p pgmon-tests
exec target/release/bench_servers
